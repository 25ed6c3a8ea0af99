"""Time from first contact to the identification decision: Kaplan-Meier, pending cases censored.

:func:`decision_times` turns the cases table into one duration per person: days from first
contact to the decision for persons identified or not identified (an event), days from first
contact to the date the data run to for pending persons (censored: they may still be decided).
:func:`time_to_decision` estimates the survival function with statsmodels' ``SurvfuncRight``
and returns the median and quartiles with 95% intervals and the share decided within given
days. :func:`form_times` times another step the same way (first contact to a child protection
notification, F13). With fewer persons or decisions than asked for it returns a result that says "too few to
report" and why, never a model of a handful of persons.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

DECIDED = ("identified", "not_identified")
#: the quantiles of the time to decision that a result holds
QUANTILES = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class TimeToDecision:
    """The Kaplan-Meier estimate of days to decision, or why there is none (``reported`` False)."""

    persons: int
    decided: int
    reported: bool
    reason: str | None = None
    #: quantile -> (days, lower, upper); NaN where the curve does not reach it (or no bound)
    quantiles: dict = field(default_factory=dict)
    #: days -> share of persons decided within that many days (1 - S(days))
    decided_within: dict = field(default_factory=dict)

    @property
    def median(self) -> float:
        return self.quantiles.get(0.5, (math.nan,) * 3)[0]


def decision_times(cases: pd.DataFrame, as_of) -> pd.DataFrame:
    """``person_id``, ``days`` and ``decided`` (True: a decision, False: pending, censored at ``as_of``).

    A decision dated before the first contact counts as on its day (0 days). A person whose
    decision or first contact has no date (data imported from a partner, say) cannot be timed
    and is left out: with too few left, :func:`time_to_decision` says so."""
    start = pd.to_datetime(cases["first_contact_date"])
    decided = cases["decision"].astype(str).isin(DECIDED).to_numpy()
    dates = cases["decision_date"] if "decision_date" in cases else pd.Series(pd.NaT, index=cases.index)
    end = pd.to_datetime(dates).where(decided, pd.Timestamp(as_of))
    timed = (end.notna() & start.notna()).to_numpy()
    days = (end - start).dt.days.clip(lower=0)
    return pd.DataFrame({"person_id": cases["person_id"].to_numpy()[timed], "days": days.to_numpy(dtype=float)[timed],
                         "decided": decided[timed]})


def form_times(cases: pd.DataFrame, events: pd.DataFrame, form: str, as_of) -> pd.DataFrame:
    """``person_id``, ``days`` and ``decided`` for the time from first contact to a person's first
    ``form`` (F13, the child protection notification, say): ``decided`` True when the form was
    made (an event), False when it was not by ``as_of`` (censored). A form dated before the first
    contact counts as on its day (0 days); a person without a first contact date is left out."""
    made = events.loc[events["form"] == form, ["person_id", "date"]]
    first_form = pd.to_datetime(made["date"]).groupby(made["person_id"]).min()
    when = cases["person_id"].map(first_form)
    start = pd.to_datetime(cases["first_contact_date"])
    happened = when.notna().to_numpy()
    end = pd.to_datetime(when).where(happened, pd.Timestamp(as_of))
    timed = start.notna().to_numpy()
    days = (end - start).dt.days.clip(lower=0)
    return pd.DataFrame({"person_id": cases["person_id"].to_numpy()[timed], "days": days.to_numpy(dtype=float)[timed],
                         "decided": happened[timed]})


def time_to_decision(times: pd.DataFrame, *, min_persons: int = 20, min_decided: int = 10,
                     within: tuple[int, ...] = (30, 90, 180, 365), alpha: float = 0.05,
                     what: tuple[str, str] = ("decision", "decisions")) -> TimeToDecision:
    """Kaplan-Meier of ``times`` (from :func:`decision_times`, or :func:`form_times`): quantiles with
    (1 - alpha) intervals (statsmodels' cloglog-transformed intervals) and the share decided within
    each of ``within`` days. ``what``: the event in the "too few" reasons (singular, plural)."""
    persons, decided = len(times), int(times["decided"].sum())
    if persons < min_persons:
        return TimeToDecision(persons, decided, False, f"too few persons to estimate the time to {what[0]}")
    if decided < min_decided:
        return TimeToDecision(persons, decided, False, f"too few {what[1]} to estimate the time to {what[0]}")
    from statsmodels.duration.survfunc import SurvfuncRight

    fit = SurvfuncRight(times["days"].to_numpy(dtype=float), times["decided"].to_numpy(dtype=int))
    quantiles = {}
    for p in QUANTILES:
        estimate = float(fit.quantile(p))
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # log(0) at a curve's end: no bound there
            low, high = fit.quantile_ci(p, alpha=alpha)
        quantiles[p] = (estimate, _finite(low), _finite(high))
    share = {}
    for days in within:
        at = np.searchsorted(fit.surv_times, days, side="right") - 1
        share[int(days)] = 0.0 if at < 0 else float(1.0 - fit.surv_prob[at])
    return TimeToDecision(persons, decided, True, None, quantiles, share)


def _finite(value) -> float:
    value = float(value) if value is not None else math.nan
    return value if math.isfinite(value) else math.nan
