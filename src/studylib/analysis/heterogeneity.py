"""Extent when persons differ in how catchable they are: the closed-population models of Rcapture.

This module owns the log-linear heterogeneity models exactly as the R package Rcapture's
``closedp.t`` defines them, in the same Poisson GLM frame as :mod:`studylib.analysis.loglinear`:
every observable capture history is a cell (zero cells included), ``k`` is the number of
lists that hold a history, and the unseen count is ``exp(intercept)``. The design columns
besides the intercept:

============  =====================================================================
M0            ``k`` (every list alike, every person alike)
Mt            one column per list (lists differ; the independent-lists model)
Mh Chao       ``k`` and ``max(k - j + 1, 0)`` for ``j = 3..t`` (a lower bound)
Mh Poisson2   ``k`` and ``2**k - 1``
Mh Darroch    ``k`` and ``k**2 / 2``
Mh Gamma3.5   ``k`` and ``-log(3.5 + k) + log(3.5)``
Mth ...       the list columns of Mt plus the heterogeneity column(s) of Mh ...
============  =====================================================================

Two-list interactions (``pairs``) can be added to any model with list columns, as
``closedpCI.t(mX = ~ . + c1:c2, h = ...)`` does. As in Rcapture (``neg = TRUE``), a Chao
model whose heterogeneity coefficients come out negative has the first negative one removed
and is refitted, until none is negative. The standard error is Rcapture's
``sqrt(exp(b0) + exp(2 b0) Var(b0))`` and the interval the multinomial profile likelihood of
``profileCI`` (found by root finding on a continuous unseen count instead of a grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats
from scipy.special import gammaln

from studylib.analysis.loglinear import CaptureData, Design, EstimationError, check_design, poisson_glm

#: The models of ``closedp.t`` (Mb and Mbh need lists ordered in time, which ours are not).
MODELS = (
    "M0",
    "Mt",
    "Mh Chao",
    "Mh Poisson2",
    "Mh Darroch",
    "Mh Gamma3.5",
    "Mth Chao",
    "Mth Poisson2",
    "Mth Darroch",
    "Mth Gamma3.5",
)

#: What each heterogeneity form assumes, in words (for the report's table of models).
ASSUMPTIONS = {
    "M0": "every list equally likely to see a person, every person alike",
    "Mt": "lists differ, persons alike and lists independent",
    "Chao": "persons differ in catchability; a lower bound that uses the persons seen once and twice most",
    "Poisson2": "persons differ; catchability spread as a Poisson mixture (theta 2)",
    "Darroch": "persons differ; catchability spread as a normal mixture (Darroch)",
    "Gamma3.5": "persons differ; catchability spread as a gamma mixture (theta 3.5), allowing many hard-to-see persons",
}

INTERVALS = ("profile", "normal", "none")


def heterogeneity_columns(k: np.ndarray, t: int, form: str) -> np.ndarray:
    """The heterogeneity column(s) of ``form`` for histories seen by ``k`` of ``t`` lists."""
    k = np.asarray(k, dtype=float)
    if form == "Chao":
        return np.column_stack([np.maximum(k - j + 1, 0.0) for j in range(3, t + 1)]) if t >= 3 else np.zeros((len(k), 0))
    if form == "Poisson2":
        return (2.0**k - 1.0)[:, None]
    if form == "Darroch":
        return (k**2 / 2.0)[:, None]
    if form == "Gamma3.5":
        return (-np.log(3.5 + k) + math.log(3.5))[:, None]
    raise EstimationError(f"unknown heterogeneity form {form!r}: choose Chao, Poisson2, Darroch or Gamma3.5", reason="bad_model")


def parse_model(model: str) -> tuple[str, str | None]:
    """``"Mth Chao"`` -> ``("Mth", "Chao")``; ``"Mt"`` -> ``("Mt", None)``."""
    parts = model.split()
    base = parts[0] if parts else ""
    form = parts[1] if len(parts) == 2 else None
    ok = (base in ("M0", "Mt") and len(parts) == 1) or (base in ("Mh", "Mth") and form in ASSUMPTIONS and form not in ("M0", "Mt"))
    if not ok:
        raise EstimationError(f"unknown model {model!r}: choose one of {', '.join(MODELS)}", reason="bad_model")
    return base, form


@dataclass(frozen=True)
class Columns:
    """A model's design without its intercept, with names; heterogeneity columns last."""

    matrix: np.ndarray
    names: tuple[str, ...]
    n_fixed: int  # columns before the heterogeneity ones


def model_columns(data: CaptureData, model: str, pairs=()) -> Columns:
    """The design columns (no intercept) of ``model`` plus two-list interactions ``pairs``."""
    base, form = parse_model(model)
    h = data.histories.astype(float)
    t = h.shape[1]
    k = h.sum(axis=1)
    if pairs and base in ("M0", "Mh"):
        raise EstimationError(f"two-list interactions need list effects: use Mt or Mth, not {model}", reason="bad_model")
    if base in ("M0", "Mh"):
        fixed, names = [k], ["k"]
    else:
        fixed, names = list(h.T), [f"list:{n}" for n in data.lists]
    for i, j in pairs:
        if data.overlap((i, j)) == 0:
            raise EstimationError(
                f"the lists {data.lists[i]} and {data.lists[j]} never overlap, so their interaction cannot be estimated",
                terms=(data.term((i, j)),),
                reason="no_mle",
            )
        fixed.append(h[:, i] * h[:, j])
        names.append(data.term((i, j)))
    het = heterogeneity_columns(k, t, form) if form else np.zeros((len(k), 0))
    if form and het.shape[1] == 0:
        raise EstimationError(f"model {model} needs at least three lists", reason="too_few_lists")
    het_names = [f"eta{j}" for j in range(3, t + 1)] if form == "Chao" else ([f"tau:{form}"] if form else [])
    return Columns(np.column_stack([*fixed, *het.T]), tuple(names + het_names), len(fixed))


def _fit_dropping_negative(x: np.ndarray, y: np.ndarray, n_fixed: int, drop_negative: bool):
    """Fit ``[1, x]``; while a column past ``n_fixed`` has a negative coefficient, remove the
    first such column and refit (Rcapture's ``Chao.neg``). Returns the fit and kept columns."""
    keep = list(range(x.shape[1]))
    while True:
        design = np.column_stack([np.ones(len(y)), x[:, keep]])
        fit = poisson_glm(design, y)
        if not drop_negative:
            return fit, keep
        het = [c for c in range(len(keep)) if keep[c] >= n_fixed]
        negative = [c for c in het if fit.params[1 + c] < 0]
        if not negative:
            return fit, keep
        keep.pop(negative[0])


@dataclass(frozen=True, eq=False)
class HeterogeneityFit:
    """One fitted closed-population model: its estimate, Rcapture's standard error, fit statistics."""

    model: str
    terms: tuple[str, ...]  # two-list interactions added
    total: float
    stderr: float
    deviance: float
    df: int
    aic: float
    converged: bool
    removed: tuple[str, ...]  # Chao heterogeneity columns set to zero (negative coefficients)
    intercept: float
    intercept_var: float
    observed: int
    columns: tuple[str, ...]  # the columns kept, intercept excluded

    @property
    def unseen(self) -> float:
        return self.total - self.observed


def fit_heterogeneity(data: CaptureData, model: str, pairs=(), drop_negative: bool = True) -> HeterogeneityFit:
    """Fit one model of :data:`MODELS` (plus ``pairs``) to the capture histories of ``data``.

    ``data``: capture histories (:class:`CaptureData`); ``model``: a name of :data:`MODELS`;
    ``pairs``: two-list interactions (``"A:B"``) added; ``drop_negative``: leave out
    heterogeneity terms fitted as negative.

    Example::

        fit_heterogeneity(capture_data(overlap_table(cases)), "Mh Chao")
    """
    cols = model_columns(data, model, pairs)
    y = data.counts
    fit, keep = _fit_dropping_negative(cols.matrix, y, cols.n_fixed, drop_negative and model.endswith("Chao"))
    _check_estimate_exists(data, model, np.column_stack([np.ones(len(y)), cols.matrix[:, keep]]))
    b0 = float(fit.params[0])
    var0 = float(fit.cov[0, 0])
    unseen = math.exp(b0) if np.isfinite(b0) else float("nan")
    stderr = math.sqrt(unseen + unseen**2 * var0) if np.isfinite(var0) and var0 >= 0 else float("nan")
    n_par = 1 + len(keep)
    return HeterogeneityFit(
        model=model,
        terms=tuple(data.term(p) for p in pairs),
        total=data.observed + unseen,
        stderr=stderr,
        deviance=fit.deviance,
        df=len(y) - n_par,
        aic=-2.0 * fit.llf + 2.0 * n_par,
        converged=fit.converged,
        removed=tuple(cols.names[c] for c in range(len(cols.names)) if c not in keep),
        intercept=b0,
        intercept_var=var0,
        observed=data.observed,
        columns=tuple(cols.names[c] for c in keep),
    )


def _check_estimate_exists(data: CaptureData, model: str, matrix: np.ndarray) -> None:
    """Raise :class:`EstimationError` when the fitted design's MLE does not exist or is not
    identifiable (the Fienberg-Rinaldo linear programme and rank check of the log-linear
    models). Without it a fit whose intercept runs off to minus infinity looks converged and
    gives "no one unseen" (e.g. Mh Darroch on three lists when no person is on all three)."""
    verdict = check_design(data, Design(pairs=(), dropped=(), keep=np.ones(len(data.counts), dtype=bool), matrix=matrix))
    if not verdict.ok:
        raise EstimationError(f"no estimate for the model {model}: {verdict.explain()}", reason=verdict.reason)


# ---------------------------------------------------------------- profile likelihood


def profile_loglik(data: CaptureData, model: str, unseen: float, pairs=(), drop_negative: bool = True) -> float:
    """Rcapture's multinomial profile log-likelihood of the population ``observed + unseen``.

    The Poisson GLM is fitted to the capture histories plus the unseen cell (count
    ``unseen``, design row zero but for the intercept); the log-likelihood is
    ``-(deviance - 2 c) / 2`` with ``c = log(n0^n0 N! / (N^N n0!))`` (``profileCI``; here with
    ``lgamma`` for every ``N``, where Rcapture switches to Stirling's formula above 100).
    """
    cols = model_columns(data, model, pairs)
    x = np.vstack([cols.matrix, np.zeros((1, cols.matrix.shape[1]))])
    y = np.append(data.counts, unseen)
    fit, _ = _fit_dropping_negative(x, y, cols.n_fixed, drop_negative and model.endswith("Chao"))
    n0 = float(unseen)
    total = data.observed + n0
    c = (n0 * math.log(n0) if n0 > 0 else 0.0) + gammaln(total + 1) - total * math.log(total) - gammaln(n0 + 1)
    return -(fit.deviance - 2.0 * c) / 2.0


def profile_interval(data: CaptureData, model: str, level: float = 0.95, pairs=(), drop_negative: bool = True, start: float | None = None) -> tuple[float, float, float]:
    """(lower, upper, maximiser) of the population by the multinomial profile likelihood.

    The ends are where the profile log-likelihood falls ``chi2_1(level) / 2`` below its
    maximum; the lower end is the persons observed when the likelihood never falls that far
    on the way down to no one unseen (as in Rcapture).

    ``data``: capture histories; ``model``: a name of :data:`MODELS`; ``level``: the
    interval's level; ``pairs``: two-list interactions added; ``drop_negative``: as for
    :func:`fit_heterogeneity`; ``start``: where the search begins (default: the fit's estimate).

    Example::

        lower, upper, best = profile_interval(capture_data(overlap_table(cases)), "Mt", level=0.95)
    """
    def ll(n0: float) -> float:
        return profile_loglik(data, model, n0, pairs, drop_negative)

    guess = float(start) if start is not None and np.isfinite(start) and start > 0 else max(1.0, data.observed * 0.5)
    hi = max(4.0 * guess, 10.0)
    res = optimize.minimize_scalar(lambda v: -ll(v), bounds=(0.0, hi), method="bounded", options={"xatol": 1e-6 * max(1.0, guess)})
    best = float(res.x)
    while best > 0.95 * hi and hi < 1e9:  # the maximum lies beyond the bracket: widen it
        hi *= 4
        res = optimize.minimize_scalar(lambda v: -ll(v), bounds=(0.0, hi), method="bounded", options={"xatol": 1e-6 * max(1.0, best)})
        best = float(res.x)
    lmax = ll(best)
    cut = lmax - stats.chi2.ppf(level, 1) / 2.0
    lower = float(data.observed)
    if ll(0.0) < cut:
        lower = data.observed + optimize.brentq(lambda v: ll(v) - cut, 0.0, best, xtol=1e-8)
    top = max(2.0 * best, best + 10.0)
    while ll(top) > cut:
        top *= 2
        if top > 1e10:
            return lower, float("inf"), data.observed + best
    upper = data.observed + optimize.brentq(lambda v: ll(v) - cut, best, top, xtol=1e-8)
    return lower, upper, data.observed + best


# ---------------------------------------------------------------- the table of models


def closed_population_models(table, models=MODELS, pairs=(), interval: str = "profile", level: float = 0.95, drop_negative: bool = True) -> pd.DataFrame:
    """Every model of ``models`` fitted to an overlap table: Rcapture's ``closedp.t`` and more.

    ``table``: an overlap table (see :func:`studylib.analysis.extent.overlap_table`), a path to
    one as CSV, or :class:`CaptureData`. ``pairs``: two-list interactions (``"A:B"``) added to
    every model with list effects (Mt, Mth ...). ``interval``: ``"profile"`` (multinomial
    profile likelihood, as Rcapture's ``closedpCI.t``), ``"normal"`` (estimate plus or minus
    ``z`` Rcapture standard errors, floored at the persons observed) or ``"none"``.

    Returns one row per model: ``model``, ``family`` (``homogeneous``, ``list effects``,
    ``heterogeneity``, ``lists and heterogeneity``), ``terms``, ``total``, ``stderr``,
    ``lower``, ``upper``, ``deviance``, ``df``, ``aic``, ``converged``, ``removed`` (Chao
    columns set to zero) and ``assumes`` (in words). A model that cannot be fitted gets NaN
    and the reason in ``note``.

    ``level``: the confidence level of the intervals; ``drop_negative``: leave out the
    heterogeneity terms a model fits as negative (as Rcapture does).

    Example::

        closed_population_models(overlap_table(cases), models=("M0", "Mh Chao"), level=0.9)
    """
    from studylib.analysis.extent import _as_data  # reading and checking tables lives there

    if interval not in INTERVALS:
        raise EstimationError(f"interval {interval!r} is not one of {', '.join(INTERVALS)}", reason="bad_argument")
    data = _as_data(table)
    pair_idx = [data.pair_of(p) for p in pairs]
    z = stats.norm.ppf(0.5 + level / 2)
    rows = []
    for model in models:
        base, form = parse_model(model)
        use_pairs = pair_idx if base in ("Mt", "Mth") else []
        family = {"M0": "homogeneous", "Mt": "list effects", "Mh": "heterogeneity", "Mth": "lists and heterogeneity"}[base]
        row = {
            "model": model + (" + " + " + ".join(data.term(p) for p in use_pairs) if use_pairs else ""),
            "family": family,
            "terms": ", ".join(data.term(p) for p in use_pairs),
            "total": np.nan,
            "stderr": np.nan,
            "lower": np.nan,
            "upper": np.nan,
            "deviance": np.nan,
            "df": np.nan,
            "aic": np.nan,
            "converged": False,
            "removed": "",
            "assumes": ASSUMPTIONS[form or base],
            "note": "",
        }
        try:
            fit = fit_heterogeneity(data, model, use_pairs, drop_negative)
        except EstimationError as err:
            row["note"] = str(err)
            rows.append(row)
            continue
        row.update(total=fit.total, stderr=fit.stderr, deviance=fit.deviance, df=fit.df, aic=fit.aic, converged=fit.converged, removed=", ".join(fit.removed))
        if not fit.converged or not np.isfinite(fit.total):
            row["note"] = "the Poisson GLM did not converge (the estimate may not exist)"
        elif interval == "profile":
            try:
                row["lower"], row["upper"], _ = profile_interval(data, model, level, use_pairs, drop_negative, start=fit.unseen)
            except (ValueError, FloatingPointError) as err:
                row["note"] = f"no profile interval: {err}"
        elif interval == "normal":
            row["lower"] = max(float(data.observed), fit.total - z * fit.stderr)
            row["upper"] = fit.total + z * fit.stderr
        rows.append(row)
    return pd.DataFrame(rows)
