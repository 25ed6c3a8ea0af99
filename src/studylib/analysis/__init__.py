"""studylib.analysis: descriptive statistics, models, extent estimation.

Pure computations on the tables of a dataset (never display, never I/O beyond reading a
table it is given). Extent estimation (multiple systems estimation of how many persons no
organisation saw) is in :mod:`studylib.analysis.extent`, its log-linear models in
:mod:`studylib.analysis.loglinear`.
"""

from studylib.lazy_exports import lazy_getattr

#: Public names and the module that holds each; imported on first use, so that a template
#: using one kind of analysis does not pay for the others (statsmodels, scipy.stats).
_EXPORTS = {
    name: "studylib.analysis.extent"
    for name in (
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
    )
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
