"""The indicator-performance helpers on small hand-built studies, against independent oracles.

Every expected value is computed here, not copied from the code: counts with plain pandas
(sets, groupby) written in the test, Wilson intervals with statsmodels ``proportion_confint``,
kappa from its textbook formula (its variance from statsmodels ``cohens_kappa``), likelihood
ratios and their log-method intervals from their formulas, and the identification model
with a statsmodels GLM Binomial fitted here from a formula. Cases sit on both sides of each
threshold (a total of 0 and 1, a cell of 0 and 1, a factor of one and two levels, ties).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
import yaml
from scipy import stats
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import proportion_confint

from studylib.analysis import indicator_performance as perf
from studylib.errors import Problem
from studylib.indicators import catalogue, classify

DIMS = ["deceptive_recruitment", "coercive_recruitment", "recruitment_vulnerability",
        "exploitative_conditions", "coercion_destination", "destination_vulnerability"]
VERSION = "ilo-2009-r1"


@pytest.fixture(scope="module")
def local_catalogue(tmp_path_factory):
    """A local catalogue on the shipped one, without ``rv_general_context`` (version t-1)."""
    path = tmp_path_factory.mktemp("catalogue") / "t.yaml"
    path.write_text(yaml.safe_dump({"version": "t-1", "base": "default", "remove": ["rv_general_context"]}), encoding="utf-8")
    return catalogue(path)


def _codes(cat=None) -> pd.DataFrame:
    """Indicator codes and their dimension, in catalogue order (read from the catalogue table)."""
    table = catalogue() if cat is None else cat
    return table.drop_duplicates("code")[["dimension", "code"]].reset_index(drop=True)


def _problems(excinfo) -> list[Problem]:
    return list(excinfo.value.problems)


def _classification(ids, presumed, dims=DIMS, seed=0, version="test-1", flags=None) -> pd.DataFrame:
    """A classification table as ``classify`` returns it (dimension columns recorded in attrs)."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"person_id": list(ids)})
    for dim in dims:
        table[dim] = (flags[dim] if flags and dim in flags else rng.random(len(table)) < 0.5)
    table["presumed_victim"] = list(presumed)
    table.attrs = {"dimensions": list(dims), "catalogue_version": version}
    return table


# -- classify_cases and missing columns --------------------------------------------------------

def test_classify_cases_uses_age_at_first_contact_and_the_given_catalogue(local_catalogue):
    cases = pd.DataFrame({"person_id": ["a", "b", "c"], "age_at_first_contact": [17, 18, 40],
                          "age": [50, 50, 50], "exploitation": ["labour", "labour", "sexual"]})
    indicators = pd.DataFrame({"person_id": ["a", "a", "b", "c"],
                               "indicator": ["dr_deceived_job", "ec_excessive_hours", "dr_deceived_job", "cd_violence"]})
    got = perf.classify_cases(indicators, cases)
    persons = pd.DataFrame({"person_id": ["a", "b", "c"], "age": [17, 18, 40], "exploitation": ["labour", "labour", "sexual"]})
    pd.testing.assert_frame_equal(got, classify(indicators, persons))
    assert got["rule"].tolist() == ["child", "adult", "adult"]  # 17 is a child at first contact, 18 an adult
    assert got.attrs["catalogue_version"] == VERSION
    assert perf.classify_cases(indicators, cases, local_catalogue).attrs["catalogue_version"] == "t-1"
    with pytest.raises(perf.PerformanceError) as err:
        perf.classify_cases(indicators, cases.drop(columns=["age_at_first_contact", "exploitation"]))
    assert _problems(err) == [Problem(where="cases", column="age_at_first_contact", rule="missing column"),
                              Problem(where="cases", column="exploitation", rule="missing column")]
    assert err.value.summary == "cases lacks columns"


# -- prevalence ---------------------------------------------------------------------------------

CASES = pd.DataFrame({
    "person_id": ["p1", "p2", "p3", "p4", "p5", "p6", "p7"],
    "sector": ["cleaning", "cleaning", "au_pair", "agriculture", "cleaning", "au_pair", "zz_other_site"],
    "site": [10, 9, 10, 9, 10, 10, 9],
    "decision": ["identified", "not_identified", "identified", "pending", "not_identified", "identified", "not_identified"],
})
INDICATORS = pd.DataFrame([
    ("p1", "cd_violence"), ("p1", "cd_violence"), ("p1", "dr_deceived_job"), ("p2", "cd_violence"),
    ("p3", "ec_hazardous_work"), ("p3", "cd_violence"), ("p4", "cd_violence"), ("p5", "dr_deceived_job"),
    ("p7", "rv_general_context"),
    ("outsider", "cd_violence"), ("outsider", "not_a_code"),  # a person not in cases: left out, unchecked
], columns=["person_id", "indicator"])


def _prevalence_oracle(indicators, cases, by, groups, codes) -> pd.DataFrame:
    rows = []
    for group in groups:
        members = cases if group == "all" else cases[cases[by] == group]
        ids = set(members["person_id"])
        for dim, code in zip(codes["dimension"], codes["code"]):
            having = set(indicators.loc[indicators["indicator"] == code, "person_id"]) & ids
            rows.append((group, dim, code, len(members), len(having)))
    out = pd.DataFrame(rows, columns=[by, "dimension", "indicator", "persons", "with_indicator"])
    return out.astype({"persons": "int64", "with_indicator": "int64"})


def test_indicator_prevalence_counts_against_sets_of_persons(local_catalogue):
    codes = _codes()
    got = perf.indicator_prevalence_counts(INDICATORS, CASES)
    # vocabulary order (au_pair, agriculture, cleaning), then codes outside it, then all
    want = _prevalence_oracle(INDICATORS, CASES, "sector", ["au_pair", "agriculture", "cleaning", "zz_other_site", "all"], codes)
    pd.testing.assert_frame_equal(got, want)
    assert got.attrs == {"catalogue_version": VERSION, "counts": ["persons", "with_indicator"]}
    assert got.set_index(["sector", "indicator"]).loc[("cleaning", "cd_violence"), "with_indicator"] == 2  # p1 twice counts once
    no_all = perf.indicator_prevalence_counts(INDICATORS, CASES, overall=False)
    pd.testing.assert_frame_equal(no_all, want[want["sector"] != "all"].reset_index(drop=True))
    # a grouping that is no vocabulary: sorted as text (10 before 9)
    by_site = perf.indicator_prevalence_counts(INDICATORS, CASES, by="site")
    pd.testing.assert_frame_equal(by_site, _prevalence_oracle(INDICATORS, CASES, "site", [10, 9, "all"], codes), check_dtype=False)
    assert by_site["site"].drop_duplicates().tolist() == [10, 9, "all"]
    # groups outside the vocabulary come after it, also sorted as text
    mixed = CASES.assign(sector=["cleaning", 10, "au_pair", 9, "cleaning", "au_pair", 10])
    got_mixed = perf.indicator_prevalence_counts(INDICATORS, mixed)
    assert got_mixed["sector"].drop_duplicates().tolist() == ["au_pair", "cleaning", 10, 9, "all"]
    pd.testing.assert_frame_equal(got_mixed, _prevalence_oracle(INDICATORS, mixed, "sector", ["au_pair", "cleaning", 10, 9, "all"], codes),
                                  check_dtype=False)
    # the given catalogue is the one used: its codes, its version
    local = perf.indicator_prevalence_counts(INDICATORS[INDICATORS["person_id"] != "p7"], CASES, catalogue=local_catalogue)
    assert local.attrs["catalogue_version"] == "t-1"
    assert "rv_general_context" not in set(local["indicator"])
    assert len(local) == 5 * (len(codes) - 1)


def test_unknown_indicator_codes_are_all_named(local_catalogue):
    bad = pd.concat([INDICATORS, pd.DataFrame({"person_id": ["p2", "p1", "p2"], "indicator": ["zz_b", "aa_a", "zz_b"]})])
    with pytest.raises(perf.PerformanceError) as err:
        perf.indicator_prevalence_counts(bad, CASES)
    rule = f"unknown indicator code (not in catalogue {VERSION})"
    assert _problems(err) == [Problem(where="indicators", column="indicator", value="aa_a", rule=rule),
                              Problem(where="indicators", column="indicator", value="zz_b", rule=rule)]
    assert err.value.summary == "unknown indicators"
    with pytest.raises(perf.PerformanceError) as err:  # p7's code is not in the local catalogue
        perf.indicator_prevalence_counts(INDICATORS, CASES, catalogue=local_catalogue)
    assert _problems(err) == [Problem(where="indicators", column="indicator", value="rv_general_context",
                                      rule="unknown indicator code (not in catalogue t-1)")]
    with pytest.raises(perf.PerformanceError) as err:
        perf.indicator_prevalence_counts(INDICATORS.drop(columns=["indicator"]), CASES)
    assert _problems(err) == [Problem(where="indicators", column="indicator", rule="missing column")]
    assert err.value.summary == "indicators lacks columns"
    with pytest.raises(perf.PerformanceError) as err:
        perf.indicator_prevalence_counts(INDICATORS, CASES, by="region")
    assert _problems(err) == [Problem(where="cases", column="region", rule="missing column")]


def test_dimension_prevalence_counts_against_groupby():
    ids = [f"q{i}" for i in range(12)]
    classification = _classification(ids + ["not_in_cases"], [i % 3 == 0 for i in range(13)], seed=4)
    cases = pd.DataFrame({"person_id": ids[::-1] + ["no_classification"],
                          "sector": ["cleaning", "agriculture", "au_pair", "cleaning"] * 3 + ["au_pair"]})
    merged = cases.merge(classification, on="person_id")
    items = [*DIMS, "presumed_victim"]
    rows = []
    for group in ["au_pair", "agriculture", "cleaning", "all"]:
        sub = merged if group == "all" else merged[merged["sector"] == group]
        rows += [(group, item, len(sub), int(sub[item].sum())) for item in items]
    want = pd.DataFrame(rows, columns=["sector", "dimension", "persons", "present"]).astype({"persons": "int64", "present": "int64"})
    got = perf.dimension_prevalence_counts(classification, cases)
    pd.testing.assert_frame_equal(got, want, check_names=False)
    assert got.attrs == {"catalogue_version": "test-1", "counts": ["persons", "present"]}
    assert got.loc[got["sector"] == "all", "persons"].eq(12).all()
    no_all = perf.dimension_prevalence_counts(classification, cases, overall=False)
    pd.testing.assert_frame_equal(no_all, want[want["sector"] != "all"].reset_index(drop=True), check_names=False)
    # the dimensions recorded in attrs are the ones counted, in their order
    two = _classification(ids, [False] * 12, dims=["coercion_destination", "deceptive_recruitment"], seed=5)
    got_two = perf.dimension_prevalence_counts(two, cases, overall=False)
    assert got_two["dimension"].tolist()[:3] == ["coercion_destination", "deceptive_recruitment", "presumed_victim"]
    # attrs lost: the shipped catalogue's dimensions
    lost = classification.copy()
    lost.attrs = {}
    got_lost = perf.dimension_prevalence_counts(lost, cases)
    pd.testing.assert_frame_equal(got_lost, want, check_names=False)
    assert got_lost.attrs["catalogue_version"] is None
    with pytest.raises(perf.PerformanceError) as err:
        perf.dimension_prevalence_counts(classification.drop(columns=["coercion_destination"]), cases)
    assert _problems(err) == [Problem(where="classification", column="coercion_destination", rule="missing column")]
    with pytest.raises(perf.PerformanceError) as err:
        perf.dimension_prevalence_counts(classification.drop(columns=["presumed_victim"]), cases)
    assert _problems(err) == [Problem(where="classification", column="presumed_victim", rule="missing column")]
    with pytest.raises(perf.PerformanceError) as err:
        perf.dimension_prevalence_counts(classification, cases.drop(columns=["sector"]))
    assert _problems(err) == [Problem(where="cases", column="sector", rule="missing column")]
    with pytest.raises(pd.errors.MergeError):  # one row per person
        perf.dimension_prevalence_counts(classification, pd.concat([cases, cases.head(1)]))


# -- Wilson rates ---------------------------------------------------------------------------------

def test_wilson_rates_against_proportion_confint():
    k = [0, 1, 3, 10, 5, None, "<5", 1, 2]
    n = [10, 1, 10, 10, 0, 8, 8, -1, "n/a"]
    counts = pd.DataFrame({"k": k, "n": n}, dtype=object)
    counts.attrs = {"source": "hand"}
    before = counts.copy()
    got = perf.wilson_rates(counts, "k", "n", alpha=0.1)
    pd.testing.assert_frame_equal(counts, before)  # the input is left alone
    assert list(got.columns) == ["k", "n", "proportion", "ci_low", "ci_high"]
    for i, (ki, ni) in enumerate(zip(k, n)):
        if isinstance(ki, int) and isinstance(ni, int) and ni > 0:
            low, high = proportion_confint(ki, ni, alpha=0.1, method="wilson")
            assert got.loc[i, ["proportion", "ci_low", "ci_high"]].tolist() == pytest.approx([ki / ni, low, high])
        else:
            assert got.loc[i, ["proportion", "ci_low", "ci_high"]].isna().all(), i
    assert got.attrs == {"source": "hand", "interval": "Wilson 90%"}
    # default total and alpha; nullable integers with a suppressed (NA) count
    nullable = pd.DataFrame({"with_indicator": pd.array([2, pd.NA, 7], dtype="Int64"), "persons": pd.array([4, 4, 7], dtype="Int64")})
    got = perf.wilson_rates(nullable, "with_indicator")
    low, high = proportion_confint(np.array([2, 7]), np.array([4, 7]), alpha=0.05, method="wilson")
    np.testing.assert_allclose(got["ci_low"].to_numpy()[[0, 2]], low)
    np.testing.assert_allclose(got["ci_high"].to_numpy()[[0, 2]], high)
    np.testing.assert_allclose(got["proportion"].to_numpy()[[0, 2]], [0.5, 1.0])
    assert got.loc[1, ["proportion", "ci_low", "ci_high"]].isna().all()
    assert got.attrs["interval"] == "Wilson 95%"
    none_ok = perf.wilson_rates(pd.DataFrame({"k": [1, 2], "persons": [0, 0]}), "k")
    assert none_ok[["proportion", "ci_low", "ci_high"]].isna().all().all()
    with pytest.raises(perf.PerformanceError) as err:
        perf.wilson_rates(counts, "k")
    assert _problems(err) == [Problem(where="counts", column="persons", rule="missing column")]
    assert err.value.summary == "counts lacks columns"


# -- agreement ----------------------------------------------------------------------------------

def _agreement_study():
    """tp 3, fp 2, fn 1, tn 4; two pending, one missing decision; one person only in cases, one only classified."""
    plan = ([(True, "identified")] * 3 + [(True, "not_identified")] * 2 + [(False, "identified")] * 1
            + [(False, "not_identified")] * 4 + [(True, "pending"), (False, "pending"), (True, None)])
    ids = [f"a{i:02d}" for i in range(len(plan))]
    classification = _classification(ids + ["only_classified"], [p for p, _ in plan] + [True], seed=1)
    cases = pd.DataFrame({"person_id": ["only_in_cases", *ids[::-1]], "decision": ["identified", *[d for _, d in plan][::-1]],
                          "sector": "cleaning"})
    return classification, cases


def test_agreement_counts_is_the_confusion_table():
    classification, cases = _agreement_study()
    table = perf.agreement_counts(classification, cases)
    want = pd.DataFrame([[3, 2], [1, 4]], index=pd.Index(["presumed_victim", "not_presumed"], name="ilo_classification"),
                        columns=pd.Index(["identified", "not_identified"], name="decision"), dtype="int64")
    pd.testing.assert_frame_equal(table, want)
    assert table.attrs == {"catalogue_version": "test-1", "excluded_pending": 3}
    # an empty row and an empty column are zeros
    everyone = classification.assign(presumed_victim=True)
    decided_only = cases[cases["decision"] != "not_identified"]
    table = perf.agreement_counts(everyone, decided_only)
    assert table.to_numpy().tolist() == [[4, 0], [0, 0]]
    with pytest.raises(perf.PerformanceError) as err:
        perf.agreement_counts(classification, cases.assign(decision=["maybe", "appeal", *cases["decision"][2:]]))
    rule = "unknown decision; codes are identified, not_identified, pending"
    assert _problems(err) == [Problem(where="cases", column="decision", value="appeal", rule=rule),
                              Problem(where="cases", column="decision", value="maybe", rule=rule)]
    assert err.value.summary == "unknown decisions"
    with pytest.raises(perf.PerformanceError) as err:
        perf.agreement_counts(classification, cases.drop(columns=["decision"]))
    assert _problems(err) == [Problem(where="cases", column="decision", rule="missing column")]
    with pytest.raises(pd.errors.MergeError):
        perf.agreement_counts(classification, pd.concat([cases, cases.tail(1)]))


def _kappa_oracle(t: np.ndarray, alpha: float) -> tuple[float, float, float]:
    n = t.sum()
    po = np.trace(t) / n
    pe = (t.sum(axis=1) @ t.sum(axis=0)) / n**2
    kappa = (po - pe) / (1 - pe)
    se = np.sqrt(cohens_kappa(t).var_kappa)
    z = stats.norm.ppf(1 - alpha / 2)
    return kappa, kappa - z * se, kappa + z * se


def _statistics_oracle(tp, fp, fn, tn, alpha) -> pd.DataFrame:
    rows = []
    for measure, k, n in [("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp), ("positive_predictive_value", tp, tp + fp),
                          ("negative_predictive_value", tn, tn + fn), ("observed_agreement", tp + tn, tp + fp + fn + tn)]:
        low, high = proportion_confint(k, n, alpha=alpha, method="wilson") if n > 0 else (np.nan, np.nan)
        rows.append((measure, k / n if n > 0 else np.nan, low, high, float(k), float(n)))
    with np.errstate(all="ignore"):
        n = tp + fp + fn + tn
        kappa, low, high = _kappa_oracle(np.array([[tp, fp], [fn, tn]], dtype=float), alpha) if n > 0 else (np.nan,) * 3
    rows.append(("cohens_kappa", kappa, low, high, np.nan, float(tp + fp + fn + tn)))
    return pd.DataFrame(rows, columns=["measure", "estimate", "ci_low", "ci_high", "numerator", "denominator"])


def test_agreement_statistics_against_formulas():
    confusion = pd.DataFrame([[30, 10], [5, 55]], index=["presumed_victim", "not_presumed"], columns=["identified", "not_identified"])
    confusion.attrs = {"catalogue_version": "test-1", "excluded_pending": 7}
    got = perf.agreement_statistics(confusion, alpha=0.1)
    pd.testing.assert_frame_equal(got, _statistics_oracle(30, 10, 5, 55, 0.1))
    assert got.attrs == {"catalogue_version": "test-1", "excluded_pending": 7, "interval": "90%",
                         "reference": "official identification decision"}
    assert perf.agreement_statistics(confusion).attrs["interval"] == "95%"
    pd.testing.assert_frame_equal(perf.agreement_statistics(confusion), _statistics_oracle(30, 10, 5, 55, 0.05))
    # rows and columns in another order, with margins: only the four cells count
    shuffled = confusion.loc[["not_presumed", "presumed_victim"], ["not_identified", "identified"]]
    shuffled["Total"] = shuffled.sum(axis=1)
    shuffled.loc["Total"] = shuffled.sum()
    pd.testing.assert_frame_equal(perf.agreement_statistics(shuffled, alpha=0.1), _statistics_oracle(30, 10, 5, 55, 0.1))
    # perfect agreement: kappa 1 with a zero-width interval (variance exactly 0)
    perfect = perf.agreement_statistics(pd.DataFrame([[5, 0], [0, 7]], index=confusion.index, columns=confusion.columns)).set_index("measure")
    assert perfect.loc["cohens_kappa", ["estimate", "ci_low", "ci_high"]].tolist() == [1.0, 1.0, 1.0]
    assert perfect.loc["specificity", ["numerator", "denominator"]].tolist() == [7.0, 7.0]
    # no identified person: what divides by them is NaN, the rest is computed
    none = perf.agreement_statistics(pd.DataFrame([[0, 3], [0, 4]], index=confusion.index, columns=confusion.columns)).set_index("measure")
    assert none.loc["sensitivity", ["estimate", "ci_low", "ci_high"]].isna().all()
    assert none.loc["sensitivity", ["numerator", "denominator"]].tolist() == [0.0, 0.0]
    assert none.loc["negative_predictive_value", "estimate"] == 1.0
    assert none.loc["positive_predictive_value", "estimate"] == 0.0
    assert none.loc["cohens_kappa", "estimate"] == 0.0  # observed agreement equals chance agreement
    # degenerate tables (nobody, one person, nobody identified): NaN where undefined, and no floating-point warnings
    for cells in ([0, 0, 0, 0], [0, 1, 0, 0], [0, 3, 0, 4], [1, 3, 0, 4]):
        table = pd.DataFrame(np.reshape(cells, (2, 2)), index=confusion.index, columns=confusion.columns)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = perf.agreement_statistics(table)
        pd.testing.assert_frame_equal(got, _statistics_oracle(*cells, 0.05), check_dtype=False)
    one = perf.agreement_statistics(pd.DataFrame([[0, 1], [0, 0]], index=confusion.index, columns=confusion.columns)).set_index("measure")
    assert one.loc["cohens_kappa", ["estimate", "ci_low", "ci_high"]].tolist() == [0.0, 0.0, 0.0]
    # a suppressed cell (missing, or a text marker): what needs it is NaN
    hidden = confusion.astype(object)
    hidden.loc["presumed_victim", "identified"] = "<5"
    partial = perf.agreement_statistics(hidden).set_index("measure")
    for measure in ("sensitivity", "positive_predictive_value", "observed_agreement", "cohens_kappa"):
        assert partial.loc[measure, ["estimate", "ci_low", "ci_high"]].isna().all(), measure
    assert np.isnan(partial.loc["cohens_kappa", "denominator"])
    assert partial.loc["specificity", "estimate"] == pytest.approx(55 / 65)
    assert partial.loc["negative_predictive_value", "ci_low"] == pytest.approx(proportion_confint(55, 60, method="wilson")[0])
    for missing in (confusion.drop(index="not_presumed"), confusion.drop(columns="identified")):
        with pytest.raises(perf.PerformanceError) as err:
            perf.agreement_statistics(missing)
        assert _problems(err) == [Problem(where="confusion table", rule="needs rows presumed_victim, not_presumed and columns identified, not_identified (as agreement_counts returns)")]
        assert err.value.summary == "not a confusion table"


# -- per-indicator accuracy ---------------------------------------------------------------------

def _accuracy_counts_oracle(indicators, cases, codes) -> pd.DataFrame:
    rows = []
    for dim, code in zip(codes["dimension"], codes["code"]):
        having = set(indicators.loc[indicators["indicator"] == code, "person_id"])
        row = [dim, code]
        for decision in ("identified", "not_identified"):
            ids = set(cases.loc[cases["decision"] == decision, "person_id"])
            row += [len(ids & having), len(ids - having)]
        rows.append(row)
    out = pd.DataFrame(rows, columns=["dimension", "indicator", "identified_with", "identified_without",
                                      "not_identified_with", "not_identified_without"])
    return out.astype({c: "int64" for c in out.columns[2:]})


def test_indicator_accuracy_counts_against_sets_of_persons(local_catalogue):
    indicators = INDICATORS[INDICATORS["person_id"] != "outsider"]
    got = perf.indicator_accuracy_counts(indicators, CASES)
    pd.testing.assert_frame_equal(got, _accuracy_counts_oracle(indicators, CASES, _codes()))
    assert got.attrs == {"catalogue_version": VERSION, "excluded_pending": 1,
                         "counts": ["identified_with", "identified_without", "not_identified_with", "not_identified_without"]}
    row = got.set_index("indicator").loc["cd_violence"]
    assert row[["identified_with", "identified_without", "not_identified_with", "not_identified_without"]].tolist() == [2, 1, 1, 2]
    # nobody not identified (and one person more pending): those columns are zeros
    only_identified = CASES.assign(decision=CASES["decision"].replace({"not_identified": "pending"}))
    got = perf.indicator_accuracy_counts(indicators, only_identified, catalogue=local_catalogue)
    pd.testing.assert_frame_equal(got, _accuracy_counts_oracle(indicators[indicators["person_id"] != "p7"], only_identified,
                                                               _codes(local_catalogue)))
    assert (got["not_identified_with"] == 0).all() and (got["not_identified_without"] == 0).all()
    assert (got["identified_with"] + got["identified_without"] == 3).all()
    assert got.attrs["catalogue_version"] == "t-1" and got.attrs["excluded_pending"] == 4
    nobody_identified = CASES.assign(decision=CASES["decision"].replace({"identified": "not_identified"}))
    got = perf.indicator_accuracy_counts(indicators, nobody_identified)
    assert (got["identified_with"] == 0).all() and (got["identified_without"] == 0).all()
    assert (got["not_identified_with"] + got["not_identified_without"] == 6).all()
    with pytest.raises(perf.PerformanceError) as err:
        perf.indicator_accuracy_counts(indicators, CASES.drop(columns=["decision"]))
    assert _problems(err) == [Problem(where="cases", column="decision", rule="missing column")]


def test_indicator_accuracy_against_formulas():
    # a, b, c, d = identified with / without, not identified with / without
    cells = [(8, 2, 3, 7), (0, 10, 2, 8), (5, 5, 0, 10), (10, 0, 4, 6), (5, 5, 10, 0), (1, 1, 1, 1), (np.nan, 4, 2, 3)]
    counts = pd.DataFrame(cells, columns=["identified_with", "identified_without", "not_identified_with", "not_identified_without"])
    counts.insert(0, "indicator", [f"i{i}" for i in range(len(cells))])
    counts.attrs = {"catalogue_version": "test-1", "excluded_pending": 2}
    alpha = 0.1
    z = stats.norm.ppf(1 - alpha / 2)
    with warnings.catch_warnings():  # zero cells (ratios of 0 and inf) give no floating-point warnings
        warnings.simplefilter("error")
        got = perf.indicator_accuracy(counts, alpha=alpha)
    for i, (a, b, c, d) in enumerate(cells):
        row = got.iloc[i]
        if np.isnan(a):
            assert row[["sensitivity", "sensitivity_low", "lr_positive", "lr_negative", "lr_positive_low", "lr_negative_high"]].isna().all()
            assert row["specificity"] == pytest.approx(3 / 5)
            continue
        sens, spec = a / (a + b), d / (c + d)
        assert row[["sensitivity", "sensitivity_low", "sensitivity_high"]].tolist() == pytest.approx(
            [sens, *proportion_confint(a, a + b, alpha=alpha, method="wilson")])
        assert row[["specificity", "specificity_low", "specificity_high"]].tolist() == pytest.approx(
            [spec, *proportion_confint(d, c + d, alpha=alpha, method="wilson")])
        lr_pos = sens / (1 - spec) if spec < 1 else np.nan
        lr_neg = (1 - sens) / spec if spec > 0 else np.nan
        assert row["lr_positive"] == pytest.approx(lr_pos, nan_ok=True), i
        assert row["lr_negative"] == pytest.approx(lr_neg, nan_ok=True), i
        # log-method interval of a ratio of two proportions x/(a+b) over y/(c+d)
        for name, ratio, x, y in (("lr_positive", lr_pos, a, c), ("lr_negative", lr_neg, b, d)):
            limits = row[[f"{name}_low", f"{name}_high"]]
            if x > 0 and y > 0:
                se = np.sqrt(1 / x - 1 / (a + b) + 1 / y - 1 / (c + d))
                assert limits.tolist() == pytest.approx([ratio * np.exp(-z * se), ratio * np.exp(z * se)]), (name, i)
            else:
                assert limits.isna().all(), (name, i)
    assert got.iloc[1]["lr_positive"] == 0.0 and got.iloc[3]["lr_negative"] == 0.0  # a ratio of 0 is kept, its interval is not
    assert got.attrs == {"catalogue_version": "test-1", "excluded_pending": 2, "interval": "90%",
                         "reference": "official identification decision"}
    pd.testing.assert_frame_equal(got[counts.columns], counts)
    derived = [c for c in got.columns if c not in counts.columns]
    assert len(derived) == 12 and (got[derived].dtypes == "float64").all()
    # a text marker of a suppressed count is a missing count
    marked = counts.astype({"not_identified_without": object})
    marked.loc[0, "not_identified_without"] = "<5"
    got_marked = perf.indicator_accuracy(marked, alpha=alpha)
    assert got_marked.loc[0, ["specificity", "lr_positive", "lr_negative"]].isna().all()
    assert got_marked.loc[0, "sensitivity"] == pytest.approx(0.8)
    # nobody identified, or nobody not identified: NaN, and no floating-point warnings
    empty = pd.DataFrame([(0, 0, 3, 4), (2, 3, 0, 0)], columns=counts.columns[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got_empty = perf.indicator_accuracy(empty)
    assert got_empty.loc[0, ["sensitivity", "lr_positive", "lr_negative", "lr_positive_low", "lr_negative_high"]].isna().all()
    assert got_empty.loc[0, "specificity"] == pytest.approx(4 / 7)
    assert got_empty.loc[1, ["specificity", "lr_positive", "lr_negative", "lr_positive_low", "lr_negative_high"]].isna().all()
    assert got_empty.loc[1, "sensitivity"] == pytest.approx(2 / 5)
    default = perf.indicator_accuracy(counts)
    se = np.sqrt(1 / 8 - 1 / 10 + 1 / 3 - 1 / 10)
    assert default.loc[0, "lr_positive_high"] == pytest.approx(0.8 / 0.3 * np.exp(stats.norm.ppf(0.975) * se))
    assert default.loc[0, "sensitivity_low"] == pytest.approx(proportion_confint(8, 10, method="wilson")[0])
    assert default.attrs["interval"] == "95%"
    with pytest.raises(perf.PerformanceError) as err:
        perf.indicator_accuracy(counts.drop(columns=["not_identified_with"]))
    assert _problems(err) == [Problem(where="counts", column="not_identified_with", rule="missing column")]


# -- the identification model -------------------------------------------------------------------

def _model_study(n=240, seed=3):
    rng = np.random.default_rng(seed)
    ids = [f"m{i:03d}" for i in range(n)]
    flags = {dim: rng.random(n) < 0.4 for dim in DIMS}
    flags["recruitment_vulnerability"] = np.zeros(n, dtype=bool)  # constant: dropped (not the last dimension)
    classification = _classification(ids, flags["coercion_destination"] & flags["exploitative_conditions"], flags=flags)
    # sex tied among the decided persons (female wins by vocabulary order); cleaning the most frequent sector
    sex = np.array(["male", "female"] * (n // 2))
    sector = rng.choice(["cleaning", "agriculture", "au_pair"], n, p=[0.5, 0.3, 0.2])
    age_band = rng.choice(["18-24", "25-34", "35-44"], n, p=[0.25, 0.5, 0.25])
    eta = -0.8 + 1.2 * flags["coercion_destination"] + 0.7 * flags["deceptive_recruitment"] + 0.5 * (sector == "agriculture")
    decision = np.where(rng.random(n) < 1 / (1 + np.exp(-eta)), "identified", "not_identified")
    decision[[0, 1]] = "pending"  # one male and one female: the tie among the decided stays
    cases = pd.DataFrame({"person_id": ids, "decision": decision, "sex": sex, "sector": sector, "age_band": age_band,
                          "region": "hovedstaden"})
    return classification, cases


def test_model_counts_against_groupby():
    classification, cases = _model_study()
    got = perf.model_counts(classification, cases)
    data = cases[cases["decision"] != "pending"].merge(classification, on="person_id")
    data["y"] = data["decision"] == "identified"
    rows = [(dim, "present", int(data[dim].sum()), int((data[dim] & data["y"]).sum())) for dim in DIMS]
    levels = {"sex": ["female", "male"], "age_band": ["18-24", "25-34", "35-44"], "sector": ["au_pair", "agriculture", "cleaning"]}
    for var, order in levels.items():
        rows += [(var, level, int((data[var] == level).sum()), int((data["y"] & (data[var] == level)).sum())) for level in order]
    want = pd.DataFrame(rows, columns=["variable", "level", "persons", "identified"])
    pd.testing.assert_frame_equal(got, want)
    assert got.attrs == {"excluded_pending": 2, "counts": ["persons", "identified"]}
    one = perf.model_counts(classification, cases, covariates=("region",))
    assert one["variable"].tolist() == [*DIMS, "region"] and one["persons"].iloc[-1] == len(data)
    nothing = classification.copy()
    nothing.attrs = {"dimensions": []}
    assert list(perf.model_counts(nothing, cases, covariates=()).columns) == ["variable", "level", "persons", "identified"]
    with pytest.raises(perf.PerformanceError) as err:
        perf.model_counts(classification, cases, covariates=("nationality",))
    assert _problems(err) == [Problem(where="cases", column="nationality", rule="missing column")]


def test_identification_model_against_a_glm_fitted_here():
    classification, cases = _model_study()
    got = perf.identification_model(classification, cases, covariates=("sex", "region", "age_band", "sector"), alpha=0.1)
    data = cases[cases["decision"] != "pending"].merge(classification, on="person_id")
    assert (data["sex"] == "female").sum() == (data["sex"] == "male").sum()  # the tie is real
    data["y"] = (data["decision"] == "identified").astype(float)
    kept = [d for d in DIMS if d != "recruitment_vulnerability"]
    for dim in kept:
        data[dim] = data[dim].astype(float)
    formula = ("y ~ " + " + ".join(kept) + " + C(sex, Treatment('female')) + C(age_band, Treatment('25-34'))"
               " + C(sector, Treatment('cleaning'))")
    assert data["age_band"].value_counts().idxmax() == "25-34" and data["sector"].value_counts().idxmax() == "cleaning"
    fit = smf.glm(formula, data, family=sm.families.Binomial()).fit()
    names = {"const": "Intercept", **{d: d for d in kept}, "sex[male]": "C(sex, Treatment('female'))[T.male]",
             "age_band[18-24]": "C(age_band, Treatment('25-34'))[T.18-24]", "age_band[35-44]": "C(age_band, Treatment('25-34'))[T.35-44]",
             "sector[au_pair]": "C(sector, Treatment('cleaning'))[T.au_pair]",
             "sector[agriculture]": "C(sector, Treatment('cleaning'))[T.agriculture]"}
    assert got["term"].tolist() == list(names)
    ci = fit.conf_int(alpha=0.1)
    for i, (term, name) in enumerate(names.items()):
        row = got.iloc[i]
        assert row["coef"] == pytest.approx(fit.params[name], rel=1e-6, abs=1e-9), term
        assert row["std_err"] == pytest.approx(fit.bse[name], rel=1e-6), term
        assert row["p_value"] == pytest.approx(fit.pvalues[name], rel=1e-5), term
        assert row[["odds_ratio", "ci_low", "ci_high"]].tolist() == pytest.approx(
            np.exp([fit.params[name], ci.loc[name, 0], ci.loc[name, 1]]), rel=1e-6), term
    meta = got.set_index("term")[["variable", "level", "reference"]]
    assert meta.loc["const", ["variable", "level"]].tolist() == ["intercept", ""] and pd.isna(meta.loc["const", "reference"])
    assert meta.loc["coercion_destination"].tolist() == ["coercion_destination", "present", "absent"]
    assert meta.loc["sex[male]"].tolist() == ["sex", "male", "female"]
    assert meta.loc["sector[au_pair]"].tolist() == ["sector", "au_pair", "cleaning"]
    assert got.attrs == {"n": len(data), "identified": int(data["y"].sum()), "excluded_pending": 2,
                         "dropped": ["recruitment_vulnerability", "region"], "warnings": [], "interval": "90%",
                         "catalogue_version": "test-1"}
    default = perf.identification_model(classification, cases)
    ci95 = fit.conf_int(alpha=0.05)
    assert default.set_index("term").loc["sex[male]", "ci_low"] == pytest.approx(np.exp(ci95.loc[names["sex[male]"], 0]), rel=1e-6)
    assert default.attrs["interval"] == "95%" and default.attrs["dropped"] == ["recruitment_vulnerability"]
    # the tie broken the other way once male is one person more: male becomes the reference
    more_male = cases.assign(decision=np.where(cases.index == 0, "not_identified", cases["decision"]))
    assert perf.identification_model(classification, more_male, covariates=("sex",)).set_index("term").loc["sex[female]", "reference"] == "male"
    # a tie between au_pair and agriculture: au_pair comes first in the vocabulary (not in the alphabet)
    tied = cases.assign(sector=np.where(np.arange(len(cases)) % 2 == 0, "agriculture", "au_pair"))
    terms = perf.identification_model(classification, tied, covariates=("sector",)).set_index("term")
    assert terms.loc["sector[agriculture]", "reference"] == "au_pair"


def test_identification_model_separation_and_one_outcome():
    n = 40
    ids = [f"s{i}" for i in range(n)]
    marker = np.arange(n) % 2 == 0
    flags = {dim: np.arange(n) % 3 == 0 for dim in DIMS}
    flags["coercion_destination"] = marker
    classification = _classification(ids, marker, flags=flags)
    cases = pd.DataFrame({"person_id": ids, "decision": np.where(marker, "identified", "not_identified"),
                          "sex": np.where(np.arange(n) % 4 < 2, "female", "male")})
    got = perf.identification_model(classification, cases, covariates=("sex",))
    data = cases.merge(classification, on="person_id")
    X = pd.DataFrame({"const": 1.0, **{d: data[d].astype(float) for d in DIMS}, "sex[male]": (data["sex"] == "male").astype(float)})
    with warnings.catch_warnings(record=True) as caught, np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        warnings.simplefilter("always")
        fit = sm.GLM(marker.astype(float), X, family=sm.families.Binomial()).fit()
    assert got.attrs["warnings"] == sorted({str(w.message) for w in caught}) and got.attrs["warnings"]
    assert got["term"].tolist() == list(X.columns)
    np.testing.assert_allclose(got["coef"], fit.params.to_numpy(), rtol=1e-6, atol=1e-6)
    for only in ("identified", "not_identified"):
        with pytest.raises(perf.PerformanceError) as err:
            perf.identification_model(classification, cases.assign(decision=only), covariates=("sex",))
        assert _problems(err) == [Problem(where="cases", column="decision", rule="the model needs both identified and not_identified persons")]
        assert err.value.summary == "cannot fit the identification model"
    with pytest.raises(perf.PerformanceError):
        perf.identification_model(classification, cases.assign(decision="pending"), covariates=("sex",))
