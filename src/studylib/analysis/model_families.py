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
always (when it has an estimate); the heterogeneity family when its best Mth model beats
the independent-lists model Mt by more than 2 in AIC; LCMCR when its chains converged.
When the supported ranges do not overlap, the models disagree and the report must say so.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from studylib.analysis.extent import ExtentWarning, _as_data, estimate_population
from studylib.analysis.heterogeneity import closed_population_models
from studylib.analysis.latent_class import estimate_latent_class
from studylib.analysis.loglinear import EstimationError

#: The Mth model must beat Mt by more than this in AIC for the data to show heterogeneity.
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
    """
    data = _as_data(table)
    rows = []
    try:
        est = estimate_population(data, "stepwise", level=level, **(stepwise or {}))
        rows.append(_row("list dependence", "stepwise: " + (", ".join(est.terms) or "main effects"), est.total, est.lower, est.upper,
                         "lists may depend on each other in pairs; persons alike otherwise", True,
                         "always shown: the established method"))
    except EstimationError as err:
        rows.append(_row("list dependence", "stepwise", np.nan, np.nan, np.nan, "", False, f"no estimate: {err}"))
    if len(data.lists) >= 3:
        models = closed_population_models(data, HETEROGENEITY_MODELS, level=level)
        ok = models[np.isfinite(models["total"]) & models["converged"]]
        mt = ok[ok["model"] == "Mt"]
        het = ok[ok["model"] != "Mt"]
        if len(het):
            best = het.loc[het["aic"].idxmin()]
            gain = float(mt["aic"].iloc[0] - best["aic"]) if len(mt) else np.nan
            supported = bool(np.isfinite(gain) and gain > AIC_MARGIN)
            why = (f"its AIC is {gain:.1f} below the independent-lists model" if supported
                   else f"its AIC is not more than {AIC_MARGIN:g} below the independent-lists model ({gain:.1f})")
            rows.append(_row("heterogeneity", str(best["model"]), best["total"], best["lower"], best["upper"], str(best["assumes"]), supported, why))
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


def _row(family, model, total, lower, upper, assumes, supported, why) -> dict:
    return {"family": family, "model": model, "total": float(total), "lower": float(lower), "upper": float(upper),
            "assumes": assumes, "supported": bool(supported), "why": why}


def recommended_range(frame: pd.DataFrame) -> dict:
    """The envelope of the supported families' ranges, and why (one row like those of the frame)."""
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
