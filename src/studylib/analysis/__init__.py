"""studylib.analysis: descriptive statistics, models, extent estimation.

Pure computations on the tables of a dataset (never display, never I/O beyond reading a
table it is given). Extent estimation (multiple systems estimation of how many persons no
organisation saw) is in :mod:`studylib.analysis.extent`, its log-linear models in
:mod:`studylib.analysis.loglinear`.
"""

from importlib import import_module

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


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'studylib.analysis' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
