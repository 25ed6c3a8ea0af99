"""studylib.analysis: descriptive statistics, models, extent estimation.

Pure computations on the tables of a dataset (never display, never I/O beyond reading a
table it is given). Extent estimation (multiple systems estimation of how many persons no
organisation saw) is in :mod:`studylib.analysis.extent`, its log-linear models in
:mod:`studylib.analysis.loglinear`; models of persons who differ in catchability in
:mod:`~studylib.analysis.heterogeneity` (Rcapture) and :mod:`~studylib.analysis.latent_class`
(LCMCR); every family side by side in :mod:`~studylib.analysis.model_families`; years,
windows and strata in :mod:`~studylib.analysis.extent_strata`. What the sector studies
describe: :mod:`~studylib.analysis.descriptive` (country names, reporting years, bands, groups),
:mod:`~studylib.analysis.consent` (the persons a study's legal basis allows),
:mod:`~studylib.analysis.survival` (Kaplan-Meier time to decision) and
:mod:`~studylib.analysis.trends` (yearly counts: Poisson or negative binomial).
"""

from studylib.lazy_exports import lazy_dir, lazy_getattr

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

_EXPORTS.update({name: "studylib.analysis.heterogeneity" for name in ("closed_population_models", "fit_heterogeneity", "profile_interval")})
_EXPORTS.update({name: "studylib.analysis.latent_class" for name in ("LatentClassEstimate", "estimate_latent_class")})
_EXPORTS.update({name: "studylib.analysis.extent_strata" for name in ("closure_test", "estimate_periods", "estimate_strata")})
_EXPORTS.update({name: "studylib.analysis.model_families" for name in ("compare_families", "recommended_range")})

__getattr__ = lazy_getattr(__name__, _EXPORTS)
__dir__ = lazy_dir(globals(), _EXPORTS)  # tab completion and dir() see the lazy names


__all__ = sorted(_EXPORTS)
