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
    shown = safe_statistics(_estimates(), "Estimates by sector", counts=["observed"], formats={"estimate": "{:,.0f}"})
    assert shown.cells.loc["au_pair"].tolist() == ["<5", "–", "–"]
    assert shown.cells.loc["agriculture"].tolist() == ["120", "300", "1.50"]
    assert shown.cells.loc["begging"].tolist() == ["0", "–", "1.00"]
    assert shown.hidden_rows == 1
    html = shown.to_html()
    assert audit_html(html) == []
    assert "fewer than 5 persons" in html
    marker = parse_marker(shown._repr_mimebundle_()[1]["studylib_safe"])
    assert marker["rule"] == "statistics" and marker["min_cell"] == 5


def test_an_undeclared_small_count_is_caught_by_the_audit():
    shown = safe_statistics(_estimates(), "Estimates by sector")  # 'observed' not declared as counts
    findings = audit_html(shown.to_html())
    assert [f.rule for f in findings] == ["small-count"]


def test_the_study_minimum_cell_reaches_the_table_without_being_passed():
    configure(min_cell=50)
    shown = safe_statistics(_estimates(), counts=["observed"])
    assert shown.cells["observed"].tolist() == ["120", "<50", "<50", "0"]
    assert audit_html(shown.to_html(), min_cell=50) == []


def test_unknown_count_columns_are_named():
    with pytest.raises(KeyError, match="persons"):
        safe_statistics(_estimates(), counts=["persons"])
