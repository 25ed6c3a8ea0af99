"""Time to decision (Kaplan-Meier) and yearly trends (Poisson / negative binomial) of
studylib.analysis.survival and .trends, against statsmodels and a product-limit computed by
hand in the test, on hand-built data; and small data: a clear "too few" result, never a crash."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.duration.survfunc import SurvfuncRight

from studylib.analysis import survival, trends

# --- time to decision --------------------------------------------------------------------------


def _cases(rows, start="2020-01-01"):
    """rows: (days to decision or None, decision)."""
    first = pd.Timestamp(start)
    return pd.DataFrame({
        "person_id": [f"p{i}" for i in range(len(rows))],
        "first_contact_date": [first] * len(rows),
        "decision": [decision for _, decision in rows],
        "decision_date": [first + pd.Timedelta(days=d) if d is not None else pd.NaT for d, _ in rows],
    })


def test_decision_times_censor_pending_cases_at_the_data_date():
    cases = _cases([(10, "identified"), (40, "not_identified"), (None, "pending"), (25, "pending")])
    times = survival.decision_times(cases, pd.Timestamp("2020-03-01"))
    assert times.days.tolist() == [10, 40, 60, 60]  # pending: to the data date, whatever F05 said
    assert times.decided.tolist() == [True, True, False, False]


def test_form_times_run_to_the_first_such_form_and_censor_the_others_at_the_data_date():
    cases = _cases([(None, "pending")] * 5)
    cases.loc[4, "first_contact_date"] = pd.NaT
    events = pd.DataFrame({"person_id": ["p0", "p0", "p1", "p2", "p3"], "form": ["F13", "F13", "F13", "F05", "F13"],
                           "date": pd.to_datetime(["2020-01-21", "2020-01-11", "2019-12-01", "2020-01-05", "2020-02-10"])})
    times = survival.form_times(cases, events, "F13", pd.Timestamp("2020-03-01"))
    # p0: the first of its two notifications; p1: before the first contact counts as day 0; p2: none (censored);
    # p4: no first contact date, left out
    assert times.person_id.tolist() == ["p0", "p1", "p2", "p3"]
    assert times.days.tolist() == [10, 0, 60, 40] and times.decided.tolist() == [True, True, False, True]
    few = survival.time_to_decision(times, min_persons=20, what=("notification", "notifications"))
    assert not few.reported and few.reason == "too few persons to estimate the time to notification"


def _product_limit(days, events):
    """Kaplan-Meier by hand: S(t) = prod over event times u <= t of (1 - d_u / n_u)."""
    days, events = np.asarray(days, float), np.asarray(events, bool)
    curve, s = {}, 1.0
    for u in sorted(set(days[events])):
        at_risk = (days >= u).sum()
        died = ((days == u) & events).sum()
        s *= 1 - died / at_risk
        curve[u] = s
    return curve


def test_kaplan_meier_quantiles_and_shares_match_statsmodels_and_a_hand_computation():
    rng = np.random.default_rng(7)
    days = np.r_[rng.integers(5, 200, 30), [30, 30, 90]].astype(float)
    decided = np.r_[rng.random(30) < 0.7, [True, False, True]]
    times = pd.DataFrame({"person_id": [f"p{i}" for i in range(len(days))], "days": days, "decided": decided})
    result = survival.time_to_decision(times, min_persons=20, min_decided=10, within=(30, 90, 180))
    assert result.reported and result.persons == len(days) and result.decided == int(decided.sum())
    oracle = SurvfuncRight(days, decided.astype(int))
    for p in (0.25, 0.5, 0.75):
        low, high = oracle.quantile_ci(p)
        expected = (float(oracle.quantile(p)), float(low), float(high))
        assert np.allclose(result.quantiles[p], expected, equal_nan=True)
    curve = _product_limit(days, decided)
    for t in (30, 90, 180):
        s = min((v for u, v in curve.items() if u <= t), default=1.0)
        assert result.decided_within[t] == pytest.approx(1 - s)
    # the median by hand: the first event time at which S drops to one half or below
    median = min((u for u, v in curve.items() if v <= 0.5), default=math.nan)
    assert result.median == pytest.approx(median)


def test_a_curve_that_never_reaches_one_half_has_no_median():
    times = pd.DataFrame({"person_id": [f"p{i}" for i in range(30)], "days": np.arange(1, 31, dtype=float),
                          "decided": [True] * 10 + [False] * 20})
    result = survival.time_to_decision(times)
    assert result.reported and math.isnan(result.median)


@pytest.mark.parametrize("persons, decided, reported", [(19, 19, False), (20, 20, True), (30, 9, False), (30, 10, True)])
def test_too_few_persons_or_decisions_is_said_not_modelled(persons, decided, reported):
    times = pd.DataFrame({"person_id": [f"p{i}" for i in range(persons)], "days": np.arange(persons, dtype=float) + 1,
                          "decided": [True] * decided + [False] * (persons - decided)})
    result = survival.time_to_decision(times, min_persons=20, min_decided=10)
    assert result.reported is reported
    if not reported:
        assert "too few" in result.reason and result.quantiles == {}


def test_no_person_at_all_is_too_few():
    result = survival.time_to_decision(pd.DataFrame({"person_id": [], "days": [], "decided": []}))
    assert not result.reported and "too few persons" in result.reason


# --- trends -------------------------------------------------------------------------------------

YEARS = list(range(2015, 2025))


def _series(values):
    return pd.Series(values, index=pd.RangeIndex(2015, 2015 + len(values), name="year"), name="persons")


def test_yearly_counts_include_years_with_nobody():
    years = pd.Series([2016, 2016, 2018, 2014, None, 2025], dtype="Int64")
    counts = trends.yearly_counts(years, 2015, 2019)
    assert counts.to_dict() == {2015: 0, 2016: 2, 2017: 0, 2018: 1, 2019: 0}


def test_an_equidispersed_series_is_a_poisson_glm_with_its_rate_ratio():
    y = [20, 22, 19, 25, 21, 24, 23, 26, 22, 27]
    result = trends.fit_trend(_series(y))
    frame = pd.DataFrame({"y": y, "year": YEARS})
    oracle = smf.glm("y ~ year", data=frame, family=sm.families.Poisson()).fit()
    assert result.reported and result.model == "Poisson"
    assert result.rate_ratio == pytest.approx(math.exp(oracle.params["year"]))
    low, high = oracle.conf_int().loc["year"]
    assert (result.low, result.high) == (pytest.approx(math.exp(low)), pytest.approx(math.exp(high)))
    assert result.p_value == pytest.approx(oracle.pvalues["year"])
    assert result.overdispersion.pearson_ratio == pytest.approx(oracle.pearson_chi2 / oracle.df_resid)
    # Cameron and Trivedi's auxiliary regression, written out here
    mu = oracle.mu
    aux = smf.ols("z ~ mu - 1", data=pd.DataFrame({"z": ((np.array(y) - mu) ** 2 - np.array(y)) / mu, "mu": mu})).fit()
    assert result.overdispersion.alpha == pytest.approx(aux.params["mu"])
    assert result.overdispersion.p_value == pytest.approx(stats.t.sf(aux.tvalues["mu"], aux.df_resid))
    assert result.overdispersion.p_value >= 0.05


def test_an_overdispersed_series_is_refitted_as_a_negative_binomial():
    y = [5, 40, 8, 60, 3, 50, 10, 70, 4, 45]
    result = trends.fit_trend(_series(y))
    frame = pd.DataFrame({"y": y, "year": YEARS})
    poisson = smf.glm("y ~ year", data=frame, family=sm.families.Poisson()).fit()
    assert poisson.pearson_chi2 / poisson.df_resid > 5  # the oracle agrees it is overdispersed
    frame["t"] = frame.year - frame.year.mean()  # centred: the MLE does not converge on raw years
    oracle = smf.negativebinomial("y ~ t", data=frame, loglike_method="nb2").fit(disp=0, maxiter=200)
    assert oracle.mle_retvals["converged"]
    assert result.model == "negative binomial" and result.overdispersion.p_value < 0.05
    assert result.rate_ratio == pytest.approx(math.exp(oracle.params["t"]), rel=1e-4)
    low, high = oracle.conf_int().loc["t"]
    assert result.low == pytest.approx(math.exp(low), rel=1e-4) and result.high == pytest.approx(math.exp(high), rel=1e-4)


def test_direction_of_a_trend():
    rising = trends.fit_trend(_series([10, 13, 16, 20, 25, 31, 39, 48, 60, 75]))
    falling = trends.fit_trend(_series([75, 60, 48, 39, 31, 25, 20, 16, 13, 10]))
    flat = trends.fit_trend(_series([20, 22, 19, 25, 21, 24, 23, 26, 22, 20]))
    assert (rising.direction, falling.direction, flat.direction) == ("rising", "falling", "no_clear_trend")
    assert rising.low > 1 and falling.high < 1 and flat.low < 1 < flat.high


@pytest.mark.parametrize("values, reported", [([5, 5, 5, 5], False), ([4, 4, 4, 4, 3], False), ([4, 4, 4, 4, 4], True),
                                              ([0] * 10, False)])
def test_too_few_years_or_persons_for_a_trend(values, reported):
    result = trends.fit_trend(_series(values), min_years=5, min_persons=20)
    assert result.reported is reported
    if not reported:
        assert "too few" in result.reason and math.isnan(result.rate_ratio) and result.direction == "no_clear_trend"


def test_the_difference_of_two_trends_is_the_interaction_and_the_ratio_of_their_rate_ratios():
    sector = _series([10, 12, 11, 14, 13, 15, 17, 16, 18, 20])
    others = _series([200, 205, 198, 210, 202, 199, 207, 203, 201, 206])
    result = trends.compare_trends(sector, others)
    frame = pd.DataFrame({"y": np.r_[sector.to_numpy(), others.to_numpy()], "year": YEARS * 2, "sector": [1] * 10 + [0] * 10})
    oracle = smf.glm("y ~ year * sector", data=frame, family=sm.families.Poisson()).fit()
    assert result.reported and result.model == "Poisson"
    assert result.ratio == pytest.approx(math.exp(oracle.params["year:sector"]))
    assert result.p_value == pytest.approx(oracle.pvalues["year:sector"])
    low, high = oracle.conf_int().loc["year:sector"]
    assert (result.low, result.high) == (pytest.approx(math.exp(low)), pytest.approx(math.exp(high)))
    # a full interaction reproduces the two separate fits
    alone = trends.fit_trend(sector), trends.fit_trend(others)
    assert result.ratio == pytest.approx(alone[0].rate_ratio / alone[1].rate_ratio)


def test_the_difference_of_two_trends_with_too_few_persons_or_other_years():
    small = _series([1, 2, 1, 3, 2, 1, 2, 1, 3, 2])
    assert not trends.compare_trends(small, _series([50] * 10)).reported
    assert not trends.compare_trends(_series([5, 5, 5, 5]), _series([50] * 4)).reported
    with pytest.raises(ValueError, match="same years"):
        trends.compare_trends(_series([5] * 10), _series([5] * 9))


def test_persons_without_a_decision_date_are_left_out_of_the_time_to_decision():
    from studylib.analysis import survival

    cases = pd.DataFrame({"person_id": ["a", "b", "c"], "first_contact_date": pd.to_datetime(["2024-01-01"] * 3),
                          "decision": ["identified", "not_identified", "pending"],
                          "decision_date": pd.to_datetime(["2024-01-11", None, None])})
    times = survival.decision_times(cases, "2024-03-01")
    assert list(times.person_id) == ["a", "c"] and list(times.days) == [10.0, 60.0] and list(times.decided) == [True, False]
    no_dates = survival.time_to_decision(survival.decision_times(cases.assign(decision_date=pd.NaT), "2024-03-01"), min_persons=1, min_decided=1)
    assert not no_dates.reported and "too few decisions" in no_dates.reason
