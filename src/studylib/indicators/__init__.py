"""studylib.indicators: the indicator catalogue (a data file) and case classification.

:func:`catalogue` returns the ILO / European Commission 2009 indicators (or a local
catalogue that adjusts them) as a long table; :func:`dimensions` and :func:`indicator_codes`
are the lookups other stages use (the generator draws indicators by dimension).
"""

from studylib.indicators.catalogue import CatalogueError, catalogue, dimensions, indicator_codes

__all__ = ["CatalogueError", "catalogue", "dimensions", "indicator_codes"]
