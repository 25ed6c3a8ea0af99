"""Extent over time and by stratum (issue 17): windows of years, the closure test, strata summed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from studylib.analysis import estimate_population, overlap_table
from studylib.analysis.extent_strata import closure_test, estimate_periods, estimate_strata

LISTS = ("police", "ngo", "hotline", "municipality")


def _cases(rng, years, probs_by_year, n=1500, sector="cleaning"):
    frames = []
    for year in years:
        p = np.asarray(probs_by_year(year))
        flags = rng.random((n, len(LISTS))) < p
        flags = flags[flags.any(axis=1)]
        frame = pd.DataFrame(flags, columns=[f"list_{x}" for x in LISTS])
        frame["first_contact_year"] = year
        frame["sector"] = sector
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _closure_by_hand(cases):
    """The same likelihood-ratio test with statsmodels and pandas dummies, written here."""
    rows = []
    for year, group in cases.groupby("first_contact_year"):
        for code in range(1, 2 ** len(LISTS)):
            h = [(code >> i) & 1 for i in range(len(LISTS))]
            hit = np.ones(len(group), dtype=bool)
            for i, x in enumerate(LISTS):
                hit &= group[f"list_{x}"].to_numpy() == bool(h[i])
            rows.append({"year": year, **{x: h[i] for i, x in enumerate(LISTS)}, "n": int(hit.sum())})
    frame = pd.DataFrame(rows)
    years = pd.get_dummies(frame["year"], dtype=float)
    closed = np.column_stack([years.to_numpy(), frame[list(LISTS)].to_numpy(float)])
    opened = np.column_stack([years.to_numpy()] + [years.to_numpy() * frame[[x]].to_numpy(float) for x in LISTS])
    fit = lambda x: sm.GLM(frame["n"].to_numpy(float), x, family=sm.families.Poisson()).fit(tol=1e-12)  # noqa: E731
    stat = fit(closed).deviance - fit(opened).deviance
    df = (years.shape[1] - 1) * len(LISTS)
    return stat, df, stats.chi2.sf(stat, df)


def test_closure_test_passes_when_the_lists_are_the_same_every_year_and_fails_when_one_changes():
    rng = np.random.default_rng(4)
    steady = _cases(rng, [2015, 2016, 2017], lambda y: [0.3, 0.2, 0.25, 0.15])
    changing = _cases(rng, [2015, 2016, 2017], lambda y: [0.3, 0.2 if y < 2017 else 0.05, 0.25, 0.15])
    a, b = closure_test(steady), closure_test(changing)
    assert a["df"] == 2 * 4 and a["years"] == 3
    assert a["p_value"] > 0.05
    assert b["p_value"] < 1e-6
    for got, cases in ((a, steady), (b, changing)):
        stat, df, p = _closure_by_hand(cases)
        assert got["statistic"] == pytest.approx(stat, rel=1e-6, abs=1e-6) and got["df"] == df
        assert got["p_value"] == pytest.approx(p, rel=1e-5, abs=1e-12)


def test_periods_give_every_year_and_every_window_with_the_sum_of_its_years():
    rng = np.random.default_rng(8)
    cases = _cases(rng, range(2015, 2022), lambda y: [0.3, 0.2, 0.25, 0.15], n=800)
    out = estimate_periods(cases, window=3, method="main")
    years = out[out.kind == "year"]
    windows = out[out.kind == "window"].set_index("period")
    assert list(years.period) == [str(y) for y in range(2015, 2022)]
    # counted back from the last year: the last window is whole (a report's headline covers it)
    assert list(windows.index) == ["2015", "2016–2018", "2019–2021"]
    for label, (start, end) in {"2016–2018": (2016, 2018), "2019–2021": (2019, 2021)}.items():
        part = cases[cases.first_contact_year.between(start, end)]
        direct = estimate_population(overlap_table(part), "main")
        assert windows.loc[label, "total"] == pytest.approx(direct.total)
        assert windows.loc[label, "persons"] == len(part)
        each = [estimate_population(overlap_table(cases[cases.first_contact_year == y]), "main").total for y in range(start, end + 1)]
        assert windows.loc[label, "sum_of_years"] == pytest.approx(sum(each))
        assert windows.loc[label, "closed"] is True or windows.loc[label, "closed"] == True  # noqa: E712
    # every window covers its truth (800 persons a year, lists independent)
    assert (windows.loc[["2016–2018", "2019–2021"], "lower"] <= 2400).all()
    assert (windows.loc[["2016–2018", "2019–2021"], "upper"] >= 2400).all()
    assert windows.loc["2015", "persons"] == (cases.first_contact_year == 2015).sum()
    with pytest.raises(Exception, match="window must be"):
        estimate_periods(cases, window=0)


def test_strata_are_summed_beside_the_pooled_estimate():
    rng = np.random.default_rng(2)
    easy = _cases(rng, [2020], lambda y: [0.5, 0.4, 0.45, 0.35], n=1000, sector="cleaning")
    hard = _cases(rng, [2020], lambda y: [0.12, 0.1, 0.15, 0.08], n=1000, sector="au_pair")
    cases = pd.concat([easy, hard], ignore_index=True)
    out = estimate_strata(cases, "sector", method="main").set_index("sector")
    each = {s: estimate_population(overlap_table(cases[cases.sector == s]), "main") for s in ("cleaning", "au_pair")}
    assert out.loc["sum of strata", "total"] == pytest.approx(sum(e.total for e in each.values()))
    assert out.loc["sum of strata", "persons"] == len(cases)
    assert out.loc["pooled", "total"] == pytest.approx(estimate_population(overlap_table(cases), "main").total)
    # sectors that differ in catchability: pooling hides persons, the sum of strata does not
    assert out.loc["pooled", "total"] < out.loc["sum of strata", "total"]
    assert abs(out.loc["sum of strata", "total"] - 2000) < abs(out.loc["pooled", "total"] - 2000)
