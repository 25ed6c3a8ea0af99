"""Yearly counts and their trend: Poisson GLM, an overdispersion test, negative binomial when needed.

:func:`yearly_counts` counts persons by year of first contact over a period (zeros included).
:func:`fit_trend` fits ``log E[count] = a + b * year`` as a Poisson GLM, tests it for
overdispersion (:func:`overdispersion`: Pearson chi2 / df, and Cameron and Trivedi's (1990)
regression test of var = mu + alpha * mu^2 against var = mu), and refits as a negative binomial
(NB2, statsmodels' ``NegativeBinomial``) when the test rejects at ``level``. The rate ratio per
year ``exp(b)`` comes with its 95% interval. :func:`compare_trends` sets two series (a sector
and all other sectors) side by side in one model with a year-by-group interaction: the ratio
of their rate ratios and its test. Too few years or persons give a result that says "too few
to report" and why, never a model of a handful of persons.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

POISSON, NEGATIVE_BINOMIAL = "Poisson", "negative binomial"


@dataclass(frozen=True)
class Overdispersion:
    """Pearson chi2 / df of a Poisson fit, and Cameron and Trivedi's one-sided test of alpha > 0."""

    pearson_ratio: float
    alpha: float  # the auxiliary regression's coefficient (var = mu + alpha mu^2)
    statistic: float  # its t statistic
    p_value: float  # one-sided


@dataclass(frozen=True)
class Trend:
    """The rate ratio per year of a yearly series, or why there is none (``reported`` False)."""

    persons: int
    years: int
    reported: bool
    reason: str | None = None
    model: str | None = None
    rate_ratio: float = math.nan
    low: float = math.nan
    high: float = math.nan
    p_value: float = math.nan
    overdispersion: Overdispersion | None = None

    @property
    def direction(self) -> str:
        """``rising``, ``falling`` or ``no_clear_trend`` (the 95% interval holds 1)."""
        if not self.reported or not (self.low > 1 or self.high < 1):
            return "no_clear_trend"
        return "rising" if self.low > 1 else "falling"


@dataclass(frozen=True)
class TrendDifference:
    """How the trend of one group differs from another's: the ratio of their rate ratios per year."""

    reported: bool
    reason: str | None = None
    model: str | None = None
    ratio: float = math.nan
    low: float = math.nan
    high: float = math.nan
    p_value: float = math.nan


def yearly_counts(years: pd.Series, first: int, last: int) -> pd.Series:
    """Persons per year from ``first`` to ``last`` (a year with nobody is 0), indexed by year."""
    values = pd.to_numeric(pd.Series(years), errors="coerce").dropna().astype(int)
    counts = values[values.between(first, last)].value_counts()
    index = pd.RangeIndex(int(first), int(last) + 1, name="year")
    return counts.reindex(index, fill_value=0).astype(int).rename("persons")


def _design(years: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(years)), years - years.mean()])


def overdispersion(y: np.ndarray, mu: np.ndarray, df_resid: float) -> Overdispersion:
    """Pearson chi2 / df, and the auxiliary OLS ((y - mu)^2 - y) / mu = alpha * mu + e without
    constant (Cameron and Trivedi 1990): a one-sided t test of alpha > 0."""
    import statsmodels.api as sm

    y, mu = np.asarray(y, dtype=float), np.asarray(mu, dtype=float)
    pearson = float(((y - mu) ** 2 / mu).sum() / df_resid) if df_resid > 0 else math.nan
    aux = sm.OLS(((y - mu) ** 2 - y) / mu, mu).fit()
    t = float(aux.tvalues[0])
    return Overdispersion(pearson, float(aux.params[0]), t, float(stats.t.sf(t, aux.df_resid)))


def _fit(y: np.ndarray, X: np.ndarray, negative_binomial: bool):
    import statsmodels.api as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if negative_binomial:
            model = sm.NegativeBinomial(y, X, loglike_method="nb2")
            fit = model.fit(disp=0, maxiter=200)
            if not fit.mle_retvals.get("converged", True):
                fit = model.fit(disp=0, maxiter=2000, method="bfgs")
            return fit
        return sm.GLM(y, X, family=sm.families.Poisson()).fit()


def fit_trend(counts: pd.Series, *, min_years: int = 5, min_persons: int = 20, level: float = 0.05) -> Trend:
    """The trend of yearly ``counts`` (from :func:`yearly_counts`): rate ratio per year, 95% interval."""
    y = counts.to_numpy(dtype=float)
    years, persons = len(y), int(y.sum())
    if years < min_years:
        return Trend(persons, years, False, f"too few years for a trend (fewer than {_word(min_years)})")
    if persons < min_persons:
        return Trend(persons, years, False, "too few persons for a trend")
    X = _design(counts.index.to_numpy(dtype=float))
    poisson = _fit(y, X, False)
    test = overdispersion(y, poisson.mu, poisson.df_resid)
    chosen, model = poisson, POISSON
    if test.p_value < level:
        chosen, model = _fit(y, X, True), NEGATIVE_BINOMIAL
    slope = float(np.asarray(chosen.params)[1])
    low, high = np.asarray(chosen.conf_int(0.05))[1]
    return Trend(persons, years, True, None, model, math.exp(slope), math.exp(low), math.exp(high),
                 float(np.asarray(chosen.pvalues)[1]), test)


def compare_trends(counts: pd.Series, others: pd.Series, *, min_years: int = 5, min_persons: int = 20,
                   level: float = 0.05) -> TrendDifference:
    """One model of both yearly series: ``log E = a + b year + c group + d year x group``;
    ``exp(d)`` is the ratio of the first series' rate ratio per year to the second's."""
    if not counts.index.equals(others.index):
        raise ValueError("the two yearly series must cover the same years")
    if len(counts) < min_years:
        return TrendDifference(False, f"too few years for a trend (fewer than {_word(min_years)})")
    if int(counts.sum()) < min_persons or int(others.sum()) < min_persons:
        return TrendDifference(False, "too few persons for a trend")
    years = counts.index.to_numpy(dtype=float)
    t = np.r_[years, years] - years.mean()
    group = np.r_[np.ones(len(years)), np.zeros(len(years))]
    X = np.column_stack([np.ones(len(t)), t, group, t * group])
    y = np.r_[counts.to_numpy(dtype=float), others.to_numpy(dtype=float)]
    poisson = _fit(y, X, False)
    test = overdispersion(y, poisson.mu, poisson.df_resid)
    chosen, model = poisson, POISSON
    if test.p_value < level:
        chosen, model = _fit(y, X, True), NEGATIVE_BINOMIAL
    d = float(np.asarray(chosen.params)[3])
    low, high = np.asarray(chosen.conf_int(0.05))[3]
    return TrendDifference(True, None, model, math.exp(d), math.exp(low), math.exp(high), float(np.asarray(chosen.pvalues)[3]))


def _word(n: int) -> str:
    words = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    return words[n] if 0 <= n < len(words) else "the years asked for"
