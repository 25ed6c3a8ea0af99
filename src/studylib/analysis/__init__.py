"""studylib.analysis: descriptive statistics, models, extent estimation.

Pure computations on the tables of a dataset (never display, never I/O beyond reading a
table it is given). Extent estimation (multiple systems estimation of how many persons no
organisation saw) is in :mod:`studylib.analysis.extent`, its log-linear models in
:mod:`studylib.analysis.loglinear`.
"""

from studylib.analysis.extent import (
    EstimationError,
    ExtentWarning,
    OverlapTableError,
    PopulationEstimate,
    check_terms,
    estimate_by,
    estimate_population,
    overlap_table,
    read_overlap_table,
    sensitivity,
)

__all__ = [
    "EstimationError",
    "ExtentWarning",
    "OverlapTableError",
    "PopulationEstimate",
    "check_terms",
    "estimate_by",
    "estimate_population",
    "overlap_table",
    "read_overlap_table",
    "sensitivity",
]
