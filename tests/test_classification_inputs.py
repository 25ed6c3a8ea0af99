"""classify's input checks, word for word, on both sides of each threshold (ages 0 and 130,
child under 18), with every problem of a call reported together."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from studylib.errors import Problem
from studylib.indicators.catalogue import CatalogueError
from studylib.indicators.classification import classify

_NO_INDICATORS = pd.DataFrame({"person_id": pd.Series([], dtype="str"), "indicator": pd.Series([], dtype="str")})


def _persons(ages, exploitation=None) -> pd.DataFrame:
    n = len(ages)
    return pd.DataFrame({"person_id": [f"p{i}" for i in range(n)], "age": ages,
                         "exploitation": exploitation if exploitation is not None else ["labour"] * n})


def _problems(indicators, persons) -> list[Problem]:
    with pytest.raises(CatalogueError) as caught:
        classify(indicators, persons)
    assert caught.value.summary == "cannot classify" or caught.value.summary
    return caught.value.problems


def test_tables_that_are_not_tables_or_lack_columns_are_all_named():
    with pytest.raises(CatalogueError) as caught:
        classify([1, 2], "persons")
    assert caught.value.summary == "cannot classify"
    assert caught.value.problems == [Problem(where="indicators", rule="must be a table (DataFrame), not list"),
                                     Problem(where="persons", rule="must be a table (DataFrame), not str")]
    with pytest.raises(CatalogueError) as caught:
        classify(pd.DataFrame({"person_id": []}), pd.DataFrame({"age": []}))
    assert caught.value.problems == [
        Problem(where="indicators", rule="missing column", column="indicator"),
        Problem(where="persons", rule="missing column", column="person_id"),
        Problem(where="persons", rule="missing column", column="exploitation"),
    ]


@pytest.mark.parametrize("age, bad", [(-1, True), (-0.5, True), (0, False), (0.5, False), (130, False), (130.5, True), (131, True)])
def test_ages_from_0_to_130_are_accepted(age, bad):
    persons = _persons([40, age])
    if not bad:
        assert len(classify(_NO_INDICATORS, persons)) == 2
        return
    [problem] = _problems(_NO_INDICATORS, persons)
    assert problem == Problem(where="persons", row=1, column="age", value=str(age), rule="age out of range 0-130 (1 row(s))")


def test_bad_ages_and_codes_are_reported_together_once_per_value_sorted():
    persons = _persons(["x", 200, "x", 30, 200, None], ["labour", "sexual", "labour", "slavery", "slavery", None])
    problems = _problems(_NO_INDICATORS, persons)
    assert [(p.column, p.value, p.row, p.rule) for p in problems] == [
        ("age", "x", 0, "age is not a number (2 row(s))"),
        ("age", "200", 1, "age out of range 0-130 (2 row(s))"),
        ("exploitation", "slavery", 3,
         "unknown exploitation; codes are labour, sexual, criminal, mixed, other, unknown (2 row(s))"),
    ]


@pytest.mark.parametrize("age, rule", [(17, "child"), (17.9, "child"), (18, "adult"), (np.nan, "adult"), (0, "child")])
def test_the_child_rule_is_for_ages_under_18_and_unknown_ages_get_the_adult_rule(age, rule):
    out = classify(_NO_INDICATORS, _persons([age], ["sexual"]))
    assert out["rule"].tolist() == [rule]
    assert out["age_unknown"].tolist() == [bool(np.isnan(age))]


def test_missing_exploitation_uses_the_list_of_unknown():
    out = classify(_NO_INDICATORS, _persons([30, 30, 12, 12], [None, "unknown", None, "sexual"]))
    assert out["list"].iloc[0] == out["list"].iloc[1]
    assert out["list"].iloc[2] != out["list"].iloc[3]
