"""Extent by every family of models side by side, and the range the report recommends.

This module owns the comparison of the three families of extent models and the rule that
turns them into one recommended range:

- *list dependence* (:mod:`studylib.analysis.extent`): log-linear models with two-list
  interactions chosen stepwise; assumes persons alike within the model's terms;
- *heterogeneity* (:mod:`studylib.analysis.heterogeneity`): Rcapture's Mth models, lists
  different and persons differing in catchability, lists otherwise independent;
- *latent classes* (:mod:`studylib.analysis.latent_class`): LCMCR, persons in classes that
  differ in how each list sees them; dependence and heterogeneity both come from the classes.

The recommended range spans the ranges of the families the diagnostics support: stepwise
always (when it has an estimate); the heterogeneity family always (its range spans the Mth
models within 2 AIC of the best, the models the data support about equally, as Burnham and
Anderson advise), because list overlaps can never rule heterogeneity out: adding one
heterogeneity column to the independent-lists model Mt costs 2 in AIC and never worsens the
fit, so Mt never beats the best Mth model by more than 2; LCMCR when its chains converged.
When the supported ranges do not overlap, the models disagree and the report must say so.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from studylib.analysis.extent import ExtentWarning, _as_data, estimate_population, interaction_words
from studylib.analysis.heterogeneity import closed_population_models
from studylib.analysis.latent_class import estimate_latent_class
from studylib.analysis.loglinear import EstimationError

#: Models within this much AIC of the best are about equally supported (Burnham and Anderson);
#: an Mth model that beats Mt by more than this shows heterogeneity.
AIC_MARGIN = 2.0

HETEROGENEITY_MODELS = ("Mt", "Mth Chao", "Mth Poisson2", "Mth Darroch", "Mth Gamma3.5")

COLUMNS = ("family", "model", "total", "lower", "upper", "assumes", "supported", "why")


def compare_families(table, level: float = 0.95, seed: int | None = None, latent_class: dict | None = None, stepwise: dict | None = None) -> pd.DataFrame:
    """One row per family (and the recommended range last): estimate, range, support, why.

    ``latent_class``: options for :func:`~studylib.analysis.latent_class.estimate_latent_class`
    (``burn_in``, ``samples``, ``thin``, ``chains``); ``stepwise``: options for
    :func:`~studylib.analysis.extent.estimate_population` (``pthresh``, ``interval``, ...).
    Columns: ``family``, ``model``, ``total``, ``lower``, ``upper``, ``assumes``,
    ``supported`` (bool) and ``why`` (in words). Figures only: no counts of persons.

    ``table``: an overlap table (or its CSV path); ``level``: the level of every interval;
    ``seed``: the random seed of the samplers and the bootstrap.

    Example::

        compare_families(overlap_table(cases), level=0.9, seed=1)
    """
    data = _as_data(table)
    rows = []
    try:
        est = estimate_population(data, "stepwise", level=level, **(stepwise or {}))
        rows.append(_row("list dependence", "stepwise: " + (interaction_words(est.terms) or "main effects"), est.total, est.lower, est.upper,
                         "lists may depend on each other in pairs; persons alike otherwise", True,
                         "always shown: the established method"))
    except EstimationError as err:
        rows.append(_row("list dependence", "stepwise", np.nan, np.nan, np.nan, "", False, f"no estimate: {err}"))
    if len(data.lists) >= 3:
        rows.append(_heterogeneity_row(closed_population_models(data, HETEROGENEITY_MODELS, level=level)))
    options = {"seed": seed, "level": level, **(latent_class or {})}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExtentWarning)
        lc = estimate_latent_class(data, **options)
    why = f"chains converged (R-hat {lc.rhat:.3f}, effective sample size {lc.ess:,.0f})" if lc.converged else (
        f"chains not converged (R-hat {lc.rhat:.3f}, effective sample size {lc.ess:,.0f})")
    rows.append(_row("latent classes", f"LCMCR, {lc.classes} classes at most", lc.total, lc.lower, lc.upper,
                     "persons fall in classes that each list sees differently (heterogeneity and dependence)", lc.converged, why))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return pd.concat([frame, pd.DataFrame([recommended_range(frame)], columns=list(COLUMNS))], ignore_index=True)


def _heterogeneity_row(models: pd.DataFrame) -> dict:
    """The heterogeneity family: the Mth models within :data:`AIC_MARGIN` of the best one."""
    ok = models[np.isfinite(models["total"]) & models["converged"] & np.isfinite(models["lower"])]
    mt = ok[ok["model"] == "Mt"]
    het = ok[ok["model"] != "Mt"]
    if het.empty:
        return _row("heterogeneity", "Mth", np.nan, np.nan, np.nan, "", False, "no heterogeneity model has an estimate")
    best = het.loc[het["aic"].idxmin()]
    near = het[het["aic"] <= best["aic"] + AIC_MARGIN]
    gain = float(mt["aic"].iloc[0] - best["aic"]) if len(mt) else np.nan
    shown = "shows" if np.isfinite(gain) and gain > AIC_MARGIN else "cannot rule out"
    why = (f"the overlaps {shown} persons differing in catchability (best Mth model's AIC {gain:.1f} below independent "
           f"lists; an independent-lists model can never beat it by more than {AIC_MARGIN:g}); range spans the Mth models "
           f"within {AIC_MARGIN:g} AIC of the best")
    names = ", ".join(m.replace("Mth ", "") for m in near["model"])
    return _row("heterogeneity", f"Mth {names}", best["total"], near["lower"].min(), near["upper"].max(),
                "persons differ in catchability; lists otherwise independent", True, why)


def _row(family, model, total, lower, upper, assumes, supported, why) -> dict:
    return {"family": family, "model": model, "total": float(total), "lower": float(lower), "upper": float(upper),
            "assumes": assumes, "supported": bool(supported), "why": why}


def recommended_range(frame: pd.DataFrame) -> dict:
    """The envelope of the supported families' ranges, and why (one row like those of the frame).

    Example::

        recommended_range(compare_families(overlap_table(cases)).iloc[:-1])
    """
    usable = frame[frame["supported"] & np.isfinite(frame["lower"]) & np.isfinite(frame["upper"])]
    if usable.empty:
        return _row("recommended", "none", np.nan, np.nan, np.nan, "", False, "no family has a supported estimate")
    lower, upper = float(usable["lower"].min()), float(usable["upper"].max())
    disagree = models_disagree(usable)
    names = ", ".join(usable["family"])
    why = f"spans the ranges of the families the diagnostics support ({names})"
    if disagree:
        why += "; their ranges do not overlap, so the models disagree"
    return _row("recommended", "envelope", float(usable["total"].median()), lower, upper, "", True, why)


def models_disagree(frame: pd.DataFrame) -> bool:
    """Whether some two ranges in ``frame`` do not overlap."""
    lowers, uppers = frame["lower"].to_numpy(float), frame["upper"].to_numpy(float)
    return bool(lowers.max() > uppers.min())
