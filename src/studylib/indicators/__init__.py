"""studylib.indicators: the indicator catalogue (a data file) and case classification.

:func:`catalogue` returns the ILO / European Commission 2009 indicators (or a local
catalogue that adjusts them) as a long table; :func:`dimensions` and :func:`indicator_codes`
are the lookups other stages use (the generator draws indicators by dimension);
:func:`classify` applies the catalogue's combination rule to the persons of a dataset.
"""

from studylib.indicators.catalogue import CatalogueError, catalogue, dimensions, indicator_codes
from studylib.indicators.classification import classify

__all__ = ["CatalogueError", "catalogue", "classify", "dimensions", "indicator_codes"]
