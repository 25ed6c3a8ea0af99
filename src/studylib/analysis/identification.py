"""Who is identified: a logistic model of the identification decision on traits of the person.

:func:`identification_model` fits ``logit P(identified) = a + b1 x1 + ...`` over the persons
with a decision (identified or not identified; pending cases are left out, they have no
outcome yet), each ``x`` a yes/no trait (a woman, a minor, presumed a victim by the ILO
indicators, first registered by the police ...). It is a binomial GLM of statsmodels; the
result holds per trait the odds ratio ``exp(b)`` with its 95% interval and p-value.

The data must carry the model: a trait that too few persons have (or lack), or whose
persons are all decided the same way (separation: no finite odds ratio), is left out and the
result says which and why; the rest must keep ``min_per_term`` persons with the rarer
decision per trait (the usual ten events per variable), else traits are left out from the
last; with too few persons, or too few of either decision, or no trait left, the result says
"too few to report" and why, never a model of a handful of persons.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

DECIDED = ("identified", "not_identified")
#: the columns of a result's ``terms``
COLUMNS = ("odds ratio", "lower 95%", "upper 95%", "p-value")


@dataclass(frozen=True)
class IdentificationModel:
    """Odds ratios of identification per trait, or why there is no model (``reported`` False)."""

    persons: int  # persons with a decision
    identified: int
    reported: bool
    reason: str | None = None
    #: trait label -> odds ratio, 95% interval and p-value (:data:`COLUMNS`), in the order given
    terms: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(COLUMNS)))
    #: trait label -> why it was left out
    left_out: dict = field(default_factory=dict)


def identification_model(persons: pd.DataFrame, traits: Mapping[str, object], *, min_persons: int = 40,
                         min_level: int = 10, min_per_term: int = 10) -> IdentificationModel:
    """The logistic model of identification on ``traits`` over ``persons`` (one row per person,
    with ``decision``).

    ``traits``: label -> a boolean Series aligned with ``persons`` (or the name of a boolean
    column); missing counts as no. ``min_persons``: fewest persons with a decision;
    ``min_level``: fewest persons with, and without, a trait for it to enter the model;
    ``min_per_term``: fewest persons with the rarer decision per trait in the model.
    """
    if "decision" not in persons.columns:
        raise KeyError("the persons frame has no decision column (the dataset's cases table has one)")
    decided = persons["decision"].astype(str).isin(DECIDED).to_numpy()
    y = (persons["decision"].astype(str).to_numpy()[decided] == "identified").astype(float)
    n, identified = int(decided.sum()), int(y.sum())
    if n < min_persons:
        return IdentificationModel(n, identified, False, "too few persons with a decision for a model of identification")
    rarer = min(identified, n - identified)
    if rarer < min_per_term:
        which = "identified" if identified <= n - identified else "not identified"
        return IdentificationModel(n, identified, False, f"too few persons {which} for a model of identification")
    columns, left_out = {}, {}
    for label, trait in traits.items():
        x = _trait(persons, trait, label)[decided]
        with_it = int(x.sum())
        if min(with_it, n - with_it) < min_level:
            left_out[label] = "too few persons with it" if with_it < n - with_it else "too few persons without it"
        elif _separates(x, y):
            left_out[label] = "all its persons, or all the others, had the same decision"
        else:
            columns[label] = x.astype(float)
    while columns and rarer < min_per_term * len(columns):
        label = list(columns)[-1]
        del columns[label]
        left_out[label] = "too few decisions for this many traits"
    if not columns:
        return IdentificationModel(n, identified, False, "no trait that enough persons have and lack", left_out=left_out)
    fit = _fit(y, np.column_stack([np.ones(n), *columns.values()]))
    if fit is None:
        return IdentificationModel(n, identified, False, "the model does not converge on these data", left_out=left_out)
    params, ci, p = np.asarray(fit.params), np.asarray(fit.conf_int(0.05)), np.asarray(fit.pvalues)
    terms = pd.DataFrame({"odds ratio": np.exp(params[1:]), "lower 95%": np.exp(ci[1:, 0]), "upper 95%": np.exp(ci[1:, 1]),
                          "p-value": p[1:]}, index=pd.Index(list(columns), name="trait"))
    return IdentificationModel(n, identified, True, None, terms, left_out)


def _trait(persons: pd.DataFrame, trait, label: str) -> np.ndarray:
    if isinstance(trait, str):
        if trait not in persons.columns:
            raise KeyError(f"trait {label!r}: column {trait!r} is not in the persons frame")
        trait = persons[trait]
    values = pd.Series(trait)
    if len(values) != len(persons):
        raise ValueError(f"trait {label!r} has {len(values)} values for {len(persons)} persons")
    return values.astype("boolean").fillna(False).to_numpy(dtype=bool)


def _separates(x: np.ndarray, y: np.ndarray) -> bool:
    """True when the persons with the trait, or those without, all had the same decision."""
    return any(len(set(y[group])) < 2 for group in (x, ~x))


def _fit(y: np.ndarray, X: np.ndarray):
    import statsmodels.api as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = sm.GLM(y, X, family=sm.families.Binomial()).fit()
        except (ValueError, np.linalg.LinAlgError):
            return None
    finite = np.isfinite(np.asarray(fit.params)).all() and np.isfinite(np.asarray(fit.bse)).all()
    return fit if finite and bool(getattr(fit, "converged", True)) and float(np.max(np.abs(fit.params))) < math.log(1e6) else None
