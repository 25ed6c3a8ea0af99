"""Extent estimation (issue 7): published MSE figures reproduced, bad input refused, BCa, strata."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studylib.analysis import (
    EstimationError,
    ExtentWarning,
    OverlapTableError,
    check_terms,
    estimate_by,
    estimate_population,
    overlap_table,
    read_overlap_table,
    sensitivity,
)
from studylib.errors import StudylibError

MSE = Path(__file__).resolve().parent / "reference" / "mse"  # copy of ../shared/reference/mse (published overlap tables)


def reference(name: str) -> pd.DataFrame:
    return read_overlap_table(MSE / f"{name}.csv")


def close(value: float, published: float, rel: float = 0.01) -> bool:
    return abs(value - published) <= rel * published


# ---------------------------------------------------------------- published figures


def test_uk_2013_stepwise_reproduces_the_home_office_figure():
    est = estimate_population(reference("uk_2013_5lists"), method="stepwise", pthresh=0.02)
    assert abs(est.total - 11313) <= 0.5
    assert close(est.lower, 9884) and close(est.upper, 13027)
    assert est.observed == 2744
    assert est.unseen == pytest.approx(est.total - 2744)
    assert est.lists == ("LA", "NG", "PFNCA", "GO", "GP")
    assert len(est.terms) > 0 and est.dropped == ()
    # the comparison table walks the stepwise path: one more term per step, last one chosen
    models = est.models
    assert list(models["n_terms"]) == list(range(len(est.terms) + 1))
    assert models["selected"].tolist() == [False] * len(est.terms) + [True]
    assert (models["p_value"].iloc[1:] < 0.02).all()
    assert {"terms", "deviance", "aic", "bic", "estimate", "status"} <= set(models.columns)
    assert models["estimate"].iloc[-1] == pytest.approx(est.total)


def test_uk_2013_main_effects():
    est = estimate_population(reference("uk_2013_5lists"), method="main")
    assert abs(est.total - 13444) <= 0.5
    assert est.terms == ()
    assert est.lower < est.total < est.upper


def test_new_orleans_stepwise_selects_d_e():
    est = estimate_population(reference("new_orleans_8lists"), method="stepwise")
    assert est.terms == ("D:E",)
    assert abs(est.total - 1184) <= 0.5


def test_new_orleans_main_effects_with_interval():
    est = estimate_population(reference("new_orleans_8lists"), method="main")
    assert abs(est.total - 997) <= 0.5
    assert close(est.lower, 644) and close(est.upper, 1618)
    assert est.observed == 185


def test_korea_with_b_c_and_main_effects():
    table = reference("korea_3lists")
    assert abs(estimate_population(table, "fixed", terms=["b:c"]).total - 268.78) <= 0.5
    assert abs(estimate_population(table, "fixed", terms=["c:b"]).total - 268.78) <= 0.5  # either order
    assert abs(estimate_population(table, "main").total - 141.99) <= 0.5
    # the stepwise rule picks that interaction itself
    assert estimate_population(table).terms == ("b:c",)


def test_korea_mle_does_not_exist_with_b_c_and_b_d():
    table = reference("korea_3lists")
    verdict = check_terms(table, ["b:c", "b:d"])
    assert not verdict.exists and verdict.identifiable
    with pytest.raises(EstimationError, match="does not exist") as info:
        estimate_population(table, "fixed", terms=["b:c", "b:d"])
    assert info.value.reason == "no_mle"
    assert "b:c + b:d" in str(info.value)


def test_artificial_no_estimate_with_a_b_and_not_identifiable_with_all_three():
    table = reference("artificial_3lists")
    assert abs(estimate_population(table, "main").total - 539.09) <= 0.5
    with pytest.raises(EstimationError, match="does not exist") as info:
        estimate_population(table, "fixed", terms=["A:B"])
    assert info.value.reason == "no_mle"
    with pytest.raises(EstimationError, match="not identifiable") as info:
        estimate_population(table, "fixed", terms=["A:B", "A:C", "B:C"])
    assert info.value.reason == "not_identifiable"
    # the stepwise rule never adds a pair whose model has no estimate
    assert "A:B" not in estimate_population(table).terms


def test_non_overlapping_pairs_are_dropped_with_their_cells_and_reported():
    table = reference("artificial_3lists")
    # SparseMSE's own example: A:C and B:C never overlap, the model passes both checks
    assert check_terms(table, ["A:C", "B:C"]).ok
    est = estimate_population(table, "fixed", terms=["A:C", "B:C"])
    assert est.dropped == ("A:C", "B:C")
    assert est.terms == ()
    assert np.isfinite(est.total) and est.lower < est.total < est.upper
    assert est.models["dropped"].iloc[0] == "A:C + B:C"
    assert "never overlapping, left out: A:C, B:C" in est.summary()


def test_bic_picks_the_lowest_bic_among_models_with_an_estimate():
    est = estimate_population(reference("korea_3lists"), method="bic")
    models = est.models
    assert len(models) == 2**3
    ok = models[models["status"] == "ok"]
    chosen = models[models["selected"]]
    assert len(chosen) == 1
    assert chosen["bic"].iloc[0] == ok["bic"].min()
    assert chosen["estimate"].iloc[0] == pytest.approx(est.total)
    # the models without an estimate are listed with the reason, not a number
    failed = models[models["status"] != "ok"]
    assert "b:c + b:d" in set(failed["terms"]) and failed["estimate"].isna().all()


def test_bic_is_limited_to_five_lists():
    with pytest.raises(EstimationError, match="limited to 5 lists"):
        estimate_population(reference("uk_2013_6lists"), method="bic")


def test_estimate_ignores_row_order_and_split_rows():
    table = reference("korea_3lists")
    a = estimate_population(table)
    shuffled = table.sample(frac=1, random_state=3).reset_index(drop=True)
    split = pd.concat([shuffled, shuffled.assign(count=0)], ignore_index=True)
    halves = pd.concat(
        [shuffled.assign(count=shuffled["count"] // 2), shuffled.assign(count=shuffled["count"] - shuffled["count"] // 2)],
        ignore_index=True,
    )
    for other in (shuffled, split, halves):
        b = estimate_population(other)
        assert b.total == pytest.approx(a.total) and b.upper == pytest.approx(a.upper)


def test_summary_gives_a_range_in_words():
    est = estimate_population(reference("uk_2013_5lists"))
    text = est.summary()
    assert "between 9,884 and 13,027" in text and "2,744" in text and "stepwise" in text
    assert est.to_dict()["terms"] == list(est.terms)


# ---------------------------------------------------------------- bad input


def _table(rows, lists=("A", "B", "C")) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[*lists, "count"])


GOOD = [[1, 0, 0, 10], [0, 1, 0, 8], [0, 0, 1, 7], [1, 1, 0, 3], [0, 1, 1, 2], [1, 0, 1, 2]]


@pytest.mark.parametrize(
    ("rows", "lists", "needle"),
    [
        ([[1, 0, 0, 10], [2, 1, 0, 3], [0, 1, 1, 2]], ("A", "B", "C"), "row 1, column 'A': a list column holds only 0 or 1"),
        ([[1, 0, 0, 10], [1, 1, 0, -3], [0, 1, 1, 2]], ("A", "B", "C"), "row 1, column 'count': count must not be negative"),
        ([[1, 0, 0, 10], [1, 1, 0, 2.5], [0, 1, 1, 2]], ("A", "B", "C"), "row 1, column 'count': count must be a whole number"),
        ([[1, 10], [1, 3]], ("A",), "needs at least two lists"),
        ([[1, 0, 0, 10], [0, 0, 0, 4], [0, 1, 1, 2]], ("A", "B", "C"), "row 1: row is on no list"),
        ([], ("A", "B", "C"), "is empty"),
        ([[1, 0, 0, 0], [0, 1, 1, 0]], ("A", "B", "C"), "has no persons"),
        ([[1, 0, 0, 10], [1, 1, 0, 3]], ("A", "B", "C"), "every person is on this list"),
        ([[1, 0, 0, 10], [0, 1, 0, 3], [0, 0, 1, 4]], ("A", "B", "C"), "no person is on more than one list"),
        ([[1, 0, 0, 10], [0, 1, 0, 3], [1, 1, 0, 4]], ("A", "B", "C"), "column 'C': list has no persons"),
        ([[1, 0, 10], [1, 1, 3]], ("A:x", "B"), "without ':'"),
        ([[1] * 13 + [4]], tuple("ABCDEFGHIJKLM"), "has 13 lists; at most 12"),
    ],
)
def test_bad_tables_are_refused_with_a_clear_message(rows, lists, needle):
    with pytest.raises(OverlapTableError) as info:
        estimate_population(_table(rows, lists))
    assert needle in str(info.value)
    assert isinstance(info.value, StudylibError)


def test_all_persons_on_one_list_names_every_problem():
    with pytest.raises(OverlapTableError) as info:
        estimate_population(_table([[1, 0, 0, 10], [1, 0, 0, 5]]))
    text = str(info.value)
    assert "column 'A': every person is on this list" in text
    assert "column 'B': list has no persons" in text and "column 'C': list has no persons" in text


def test_all_problems_are_reported_together():
    rows = [[1, 0, 0, 10], [3, 1, 0, 3], [0, 1, 1, -2], [0, 0, 0, 1], [1, 0, 1, 0.5]]
    with pytest.raises(OverlapTableError) as info:
        estimate_population(_table(rows))
    problems = info.value.problems
    assert {(p.row, p.column) for p in problems} >= {(1, "A"), (2, "count"), (3, None), (4, "count")}


def test_missing_count_column_and_non_table():
    with pytest.raises(OverlapTableError, match="no 'count' column"):
        estimate_population(pd.DataFrame({"A": [1, 0], "B": [0, 1]}))
    with pytest.raises(OverlapTableError, match="not a table"):
        estimate_population([[1, 0, 3]])


def test_a_bad_csv_is_named_with_its_line(tmp_path):
    path = tmp_path / "lists.csv"
    path.write_text("A,B,count\n1,0,4\n0,1,x\n1,1,2\n")
    with pytest.raises(OverlapTableError) as info:
        estimate_population(path)
    assert str(path) in str(info.value) and "row 3, column 'count'" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"method": "aic"}, "method 'aic' is not one of"),
        ({"interval": "profile"}, "interval 'profile' is not one of"),
        ({"method": "fixed"}, "needs terms"),
        ({"terms": ["b:c"]}, "only used with method='fixed'"),
        ({"method": "fixed", "terms": ["b:z"]}, "unknown two-list interaction 'b:z'"),
        ({"pthresh": 2}, "pthresh must lie between 0 and 1"),
        ({"interval": "bca", "n_boot": 5}, "n_boot must be"),
    ],
)
def test_bad_arguments_are_refused(kwargs, needle):
    with pytest.raises(EstimationError, match=needle):
        estimate_population(reference("korea_3lists"), **kwargs)


# ---------------------------------------------------------------- BCa bootstrap


def test_bca_interval_is_reproducible_and_contains_the_estimate():
    table = reference("korea_3lists")
    a = estimate_population(table, interval="bca", n_boot=120, seed=11, workers=2)
    assert a.lower <= a.total <= a.upper
    assert a.lower >= a.observed
    b = estimate_population(table, interval="bca", n_boot=120, seed=11, workers=1)
    assert (a.lower, a.upper) == (b.lower, b.upper)  # same seed, any number of processes
    np.testing.assert_array_equal(a.bootstrap.replicates, b.bootstrap.replicates)
    c = estimate_population(table, interval="bca", n_boot=120, seed=12, workers=1)
    assert (c.lower, c.upper) != (a.lower, a.upper)
    assert a.total == estimate_population(table).total  # the point estimate is the data's own
    assert a.bootstrap.n_boot == 120 and np.isfinite(a.bootstrap.acceleration)
    # the bootstrap repeats the selection: resamples do not all land on the data's model
    assert np.unique(np.round(a.bootstrap.replicates, 6)).size > 20


# ---------------------------------------------------------------- from cases


def _cases(flags: list[tuple], lists=("police", "ngo", "hotline")) -> pd.DataFrame:
    frame = pd.DataFrame(flags, columns=[f"list_{n}" for n in lists]).astype(bool)
    frame.insert(0, "person_id", [f"p{i}" for i in range(len(frame))])
    return frame


def test_overlap_table_from_a_hand_made_cases_frame():
    cases = _cases([(1, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (1, 1, 0), (1, 1, 1), (0, 0, 1)])
    cases["list_trade_union"] = False
    table = overlap_table(cases)
    assert list(table.columns) == ["police", "ngo", "hotline", "count"]  # empty list left out
    got = {tuple(r[:3]): r[3] for r in table.itertuples(index=False)}
    assert got == {(1, 0, 0): 2, (0, 1, 0): 1, (0, 0, 1): 1, (1, 1, 0): 2, (1, 1, 1): 1}
    assert table["count"].sum() == len(cases)
    # explicitly named lists are kept even when empty; persons on none of them are left out
    with pytest.warns(ExtentWarning, match="2 persons are on none of the lists police, trade_union"):
        named = overlap_table(cases, lists=["police", "trade_union"])
    assert list(named.columns) == ["police", "trade_union", "count"]
    assert named["count"].sum() == 5
    with pytest.raises(OverlapTableError, match="has no column for list 'union'"):
        overlap_table(cases, lists=["police", "union"])
    bad = cases.assign(list_ngo=["yes"] * len(cases))
    with pytest.raises(OverlapTableError, match="column 'list_ngo'"):
        overlap_table(bad)


def test_a_wholly_wrong_list_column_is_summarised_not_listed_row_by_row():
    cases = _cases([(1, 0, 1)] * 500).assign(list_ngo="unknown")
    with pytest.raises(OverlapTableError) as info:
        overlap_table(cases)
    problems = info.value.problems
    assert len(problems) == 21
    assert "480 more rows like the above" in str(problems[-1])


def _expand(table: pd.DataFrame) -> pd.DataFrame:
    lists = [c for c in table.columns if c != "count"]
    rows = table.loc[table.index.repeat(table["count"]), lists].reset_index(drop=True)
    return _cases(rows.to_numpy().tolist(), lists)


def test_cases_give_the_same_estimate_as_their_table():
    table = reference("korea_3lists")
    est = estimate_population(overlap_table(_expand(table)))
    assert abs(est.total - 268.78) <= 0.5 and est.terms == ("b:c",)


def _simulated_cases(seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = {"cleaning": 900, "agriculture": 700, "au_pair": 25}
    frames = []
    for sector, n in sizes.items():
        p = np.array([0.35, 0.3, 0.25])
        flags = rng.random((n, 3)) < p
        flags = flags[flags.any(axis=1)]
        frame = _cases(flags.tolist())
        frame["sector"] = sector
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_estimate_by_sector_notes_sparse_strata():
    cases = _simulated_cases()
    with pytest.warns(ExtentWarning, match="au_pair"):
        result = estimate_by(cases, by="sector")
    assert list(result["sector"]) == ["agriculture", "au_pair", "cleaning"]
    rows = result.set_index("sector")
    assert rows.loc["au_pair", "note"].startswith("only ")
    assert rows.loc["cleaning", "note"] == "" and rows.loc["agriculture", "note"] == ""
    assert (rows["persons"] == cases.groupby("sector").size()).all()
    for sector in ("cleaning", "agriculture"):
        direct = estimate_population(overlap_table(cases[cases["sector"] == sector]))
        assert rows.loc[sector, "total"] == pytest.approx(direct.total)
        assert rows.loc[sector, "lower"] < rows.loc[sector, "total"] < rows.loc[sector, "upper"]


def test_estimate_by_keeps_going_when_a_stratum_has_no_estimate():
    cases = _simulated_cases()
    lonely = _cases([(1, 0, 0)] * 6)
    lonely["sector"] = "begging"
    cases = pd.concat([cases, lonely], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtentWarning)
        result = estimate_by(cases, by="sector").set_index("sector")
    assert np.isnan(result.loc["begging", "total"])
    assert "at least two lists" in result.loc["begging", "note"]
    assert np.isfinite(result.loc["cleaning", "total"])
    with pytest.raises(OverlapTableError, match="no column 'region'"):
        estimate_by(cases, by="region")


def test_sensitivity_table_across_methods():
    result = sensitivity(reference("korea_3lists"))
    assert list(result["method"]) == ["main", "stepwise", "stepwise", "stepwise", "stepwise", "bic", "fixed"]
    main = result.iloc[0]
    assert main["total"] == pytest.approx(estimate_population(reference("korea_3lists"), "main").total)
    every = result.iloc[-1]
    assert np.isnan(every["total"]) and "does not exist" in every["note"]
    six = sensitivity(reference("uk_2013_6lists"), pthresholds=(0.02,))
    assert "limited to 5 lists" in six.set_index("method").loc["bic", "note"]


def test_interaction_terms_are_named_in_words_for_readers():
    from studylib.analysis.extent import interaction_words
    from studylib.data import vocabularies as v

    terms = ["centre_outreach:hotline", "police:health_clinic"]
    words = interaction_words(terms)
    assert words == f"{v.label('centre_outreach')} × {v.label('hotline')}, {v.label('police')} × {v.label('health_clinic')}"
    assert "_" not in words and ":" not in words
    assert interaction_words([]) == ""
