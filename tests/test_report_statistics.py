"""Safe statistics tables: count columns follow the minimum cell, small rows show nothing, the audit agrees."""

from __future__ import annotations

import pandas as pd
import pytest

from studylib.privacy.audit import audit_html
from studylib.privacy.marker import parse_marker
from studylib.report import configure, safe_statistics
from studylib.report.settings import reset


@pytest.fixture(autouse=True)
def _fresh_settings():
    reset()
    yield
    reset()


def _estimates() -> pd.DataFrame:
    return pd.DataFrame(
        {"observed": [120, 3, 40, 0], "estimate": [300.4, 10.2, 88.0, float("nan")], "ratio": [1.5, 2.0, 0.25, 1.0]},
        index=pd.Index(["agriculture", "au_pair", "cleaning", "begging"], name="sector"),
    )


def test_rows_with_a_small_count_show_no_statistics_and_the_audit_passes():
    with pytest.warns(UserWarning, match="not persons"):  # counts given as numbers: interactive only
        shown = safe_statistics(_estimates(), "Estimates by sector", counts=["observed"], formats={"estimate": "{:,.0f}"})
    assert shown.cells.loc["au pair"].tolist() == ["[c]", "[c]", "[c]"]
    assert shown.cells.loc["agriculture"].tolist() == ["120", "300", "1.50"]
    assert shown.cells.loc["begging"].tolist() == ["0", "–", "1.00"]
    assert shown.hidden_rows == 1
    html = shown.to_html()
    assert audit_html(html) == []
    assert "[c]: confidential" in html and "&lt;5" not in html
    marker = parse_marker(shown._repr_mimebundle_()[1]["studylib_safe"])
    assert marker["rule"] == "statistics" and marker["min_cell"] == 5


def test_an_undeclared_small_count_is_caught_by_the_audit():
    shown = safe_statistics(_estimates(), "Estimates by sector")  # 'observed' not declared as counts
    findings = audit_html(shown.to_html())
    assert [f.rule for f in findings] == ["small-count"]


def test_the_study_minimum_cell_reaches_the_table_without_being_passed():
    configure(min_cell=50)
    shown = safe_statistics(_estimates(), external=["observed"])
    assert shown.cells["observed"].tolist() == ["120", "[c]", "[c]", "0"]
    assert audit_html(shown.to_html(), min_cell=50) == []


def test_unknown_count_columns_are_named():
    with pytest.raises(KeyError, match="persons"):
        safe_statistics(_estimates(), external=["persons"])


def _persons() -> pd.DataFrame:
    sectors = ["agriculture"] * 120 + ["au_pair"] * 3 + ["cleaning"] * 40
    return pd.DataFrame({"person_id": [f"p{i:03d}" for i in range(len(sectors))], "sector": sectors})


def test_count_columns_are_counted_from_persons_by_the_library():
    persons = _persons()
    fit = _estimates().drop(columns="observed")
    shown = safe_statistics(fit, "Estimates by sector", counts={"persons": persons}, by="sector")
    oracle = persons.groupby("sector").size()  # counted here, independently
    assert shown.cells.loc["agriculture", "persons"] == f"{oracle['agriculture']:,}"
    assert shown.cells.loc["cleaning", "persons"] == str(oracle["cleaning"])
    assert shown.cells.loc["au pair"].tolist() == ["[c]", "[c]", "[c]"]  # 3 persons: nothing shown
    assert shown.cells.loc["begging", "persons"] == "0"


def test_a_study_that_rounds_publishes_its_count_columns_rounded_and_hides_rows_of_few_persons():
    # one policy per release: an exact count beside the study's rounded tables would undo their rounding
    configure(min_cell=5, rounding=3)
    persons = _persons()
    persons = pd.concat([persons, persons.iloc[:1].assign(person_id="p999", sector="agriculture")])  # 121
    fit = _estimates().drop(columns="observed")
    shown = safe_statistics(fit, "Estimates by sector", counts={"persons": persons}, by="sector")
    oracle = persons.groupby("sector").size()
    for sector in ("agriculture", "cleaning"):
        published = int(shown.cells.loc[sector, "persons"].replace(",", ""))
        assert published % 3 == 0 and abs(published - oracle[sector]) <= 2, (sector, published)
    assert int(shown.cells.loc["agriculture", "persons"]) != oracle["agriculture"]  # 121 is no multiple of 3
    assert shown.cells.loc["au pair"].tolist() == ["[c]", "[c]", "[c]"]  # 3 persons: nothing shown, rounded or not


def test_counts_per_row_from_their_own_persons():
    persons = _persons()
    frame = pd.DataFrame({"kappa": [0.4, 0.5]}, index=pd.Index(["first", "second"], name="catalogue"))
    shown = safe_statistics(frame, counts={"presumed": {"first": persons.iloc[:30], "second": persons.iloc[:4]}})
    assert shown.cells["presumed"].tolist() == ["30", "[c]"]
    assert shown.cells["kappa"].tolist() == ["0.40", "[c]"]


def test_a_study_run_refuses_counts_given_as_numbers_and_undeclared_whole_numbers(monkeypatch):
    from studylib.report import CountsRefused

    monkeypatch.setenv("STUDYLIB_REPORT", "cleaning")
    with pytest.raises(CountsRefused, match="pass the persons"):
        safe_statistics(_estimates(), counts=["observed"])
    with pytest.raises(CountsRefused, match="'observed' holds whole numbers"):
        safe_statistics(_estimates())
    fit = _estimates().drop(columns="observed")
    shown = safe_statistics(fit, counts={"persons": _persons()}, by="sector")  # the way that works
    assert shown.cells.loc["cleaning", "persons"] == "40"
