"""Regional briefs (issue 18, item 1): years combined until a table is safe, the catalogues'
checklist and referral procedure as catalogue text, and the two-page layout.

Oracles: hand-built persons with the cells counted in the test (pandas crosstab), the
catalogue files read with yaml directly, and the audit and the exporter run on real outputs.
The published briefs themselves (five regions beside the national reports, the release
attacked across them) are checked in test_studies.py on the demo release.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from studylib.errors import ConfigError
from studylib.privacy import DisclosureError
from studylib.privacy.audit import audit_html, audit_notebook
from studylib.privacy.marker import STANDALONE_NUMBER, marker_attribute, marker_for
from studylib.report import configure, indicator_checklist, referral_procedure, years_until_safe

ROOT = Path(__file__).resolve().parents[1]
INDICATORS = ROOT / "src" / "studylib" / "indicators" / "catalogue.yaml"
FORMS = ROOT / "src" / "studylib" / "data" / "form_catalogue.yaml"


def _persons(counts: dict[tuple[int, str], int]) -> pd.DataFrame:
    """One row per person: ``counts[(year, sex)]`` persons of each year and sex."""
    rows = [(year, sex) for (year, sex), n in counts.items() for _ in range(n)]
    frame = pd.DataFrame(rows, columns=["first_contact_year", "sex"])
    return frame.assign(person_id=[f"p{i}" for i in range(len(frame))])


def _small(frame: pd.DataFrame, first: int, last: int, column: str, min_cell: int) -> bool:
    """The test's own count: does a table by ``column`` over first..last hold a cell 1..min_cell-1?"""
    chosen = frame[frame.first_contact_year.between(first, last)]
    counts = chosen[column].value_counts()
    return bool(((counts >= 1) & (counts < min_cell)).any())


# ---------------------------------------------------------------- years combined until safe


def test_years_are_combined_back_from_the_last_until_no_cell_is_small(fresh_report):
    # 2024 alone: 4 men (small at 5); 2023-2024: 7 men; earlier years hold few persons
    frame = _persons({(2022, "female"): 2, (2023, "female"): 6, (2023, "male"): 3, (2024, "female"): 9, (2024, "male"): 4})
    assert _small(frame, 2024, 2024, "sex", 5) and not _small(frame, 2023, 2024, "sex", 5)
    span = years_until_safe(frame, "sex", last=2024)
    assert (span.first, span.last, span.safe, span.combined, span.label) == (2023, 2024, True, True, "2023–2024")
    assert sorted(span.select(frame).first_contact_year.unique()) == [2023, 2024]
    assert span.period.text() == "2023–2024"
    before = span.before()
    assert (before.first, before.last) == (2021, 2022)
    # the other side of the threshold: at a minimum cell of 4 the last year alone is safe
    configure(min_cell=4)
    assert not _small(frame, 2024, 2024, "sex", 4)
    span = years_until_safe(frame, "sex", last=2024)
    assert (span.first, span.last, span.safe, span.combined, span.label) == (2024, 2024, True, False, "2024")


def test_every_table_given_must_be_safe_over_the_span(fresh_report):
    frame = _persons({(2023, "female"): 6, (2023, "male"): 6, (2024, "female"): 6, (2024, "male"): 6})
    frame = frame.assign(decision=["identified"] * 20 + ["pending"] * 4)  # the last four persons, of 2024, are pending
    assert not _small(frame, 2024, 2024, "sex", 5) and _small(frame, 2024, 2024, "decision", 5)
    assert years_until_safe(frame, "sex", last=2024).first == 2024
    both = years_until_safe(frame, "sex", "decision", last=2024)
    assert (both.first, both.safe) == (2023, False)  # 2023 adds no pending person: never safe within the data
    assert both.years == 2


def test_the_span_stops_at_at_most_years_and_at_the_first_year(fresh_report):
    frame = _persons({(year, "male"): 1 for year in range(2015, 2025)})
    capped = years_until_safe(frame, "sex", last=2024, at_most=3)
    assert (capped.first, capped.last, capped.safe) == (2022, 2024, False)
    assert years_until_safe(frame, "sex", last=2024, at_most=5).first == 2020  # 5 men in 2020-2024: safe
    assert years_until_safe(frame, "sex", last=2024, at_most=5).safe
    bounded = years_until_safe(frame, "sex", last=2024, at_most=8, first=2023)
    assert (bounded.first, bounded.safe) == (2023, False)  # may not reach before 2023


def test_a_zero_cell_is_small_when_zeros_are_disclosive(fresh_report):
    frame = _persons({(2023, "female"): 5, (2023, "male"): 5, (2024, "female"): 5, (2024, "male"): 5})
    frame = frame.assign(decision=["pending"] * 5 + ["identified"] * 10 + ["pending"] * 5)
    # by sex and decision: 2024 alone has no pending woman and no identified man (two zero cells), 2023-2024 five in each
    assert years_until_safe(frame, ["sex", "decision"], last=2024).first == 2024
    configure(zeros_disclosive=True)
    assert years_until_safe(frame, ["sex", "decision"], last=2024).first == 2023


def test_years_until_safe_says_what_is_wrong(fresh_report):
    frame = _persons({(2024, "female"): 5})
    with pytest.raises(DisclosureError, match="at least one table"):
        years_until_safe(frame, last=2024)
    with pytest.raises(DisclosureError, match="at_most"):
        years_until_safe(frame, "sex", last=2024, at_most=0)
    with pytest.raises(DisclosureError, match="no column 'year_of_decision'"):
        years_until_safe(frame, "sex", last=2024, year="year_of_decision")


# ---------------------------------------------------------------- catalogue text


def _checklist_oracle(age: str) -> list[tuple[str, bool]]:
    """(text, provisional) of the indicators graded strong on some list of ``age``, read from the YAML."""
    raw = yaml.safe_load(INDICATORS.read_text())
    order = [d["code"] for d in raw["dimensions"]]
    found: dict[str, list[bool]] = {}
    for entry in sorted(raw["indicators"], key=lambda e: order.index(e["dimension"])):
        strong = [name for name, grade in entry["grades"].items() if name.startswith(age + "_") and grade == "strong"]
        if strong:
            found.setdefault(entry["text"], []).extend(name in entry.get("provisional", []) for name in strong)
    return [(text, all(flags)) for text, flags in found.items()]


def test_the_checklist_lists_the_strong_indicators_of_the_catalogue_for_adults_and_children(fresh_report):
    shown = indicator_checklist()
    assert [g.heading for g in shown.groups] == ["Adults", "Children (under eighteen)"]
    for group, age in zip(shown.groups, ("adult", "child")):
        assert [(title, note == "(provisional grade)") for title, note in group.entries] == _checklist_oracle(age)
    assert shown.marker["rule"] == "catalogue" and "ilo-2009-r1" in shown.note
    bundle, metadata = shown._repr_mimebundle_()
    assert metadata["studylib_safe"]["rule"] == "catalogue"
    assert bundle["text/html"].count("<li>") == sum(len(g.entries) for g in shown.groups)
    assert audit_notebook(_notebook(_display(shown)), strict=True) == []


def test_a_catalogue_text_holding_a_number_is_refused(tmp_path, fresh_report):
    local = tmp_path / "local.yaml"
    local.write_text(yaml.safe_dump({
        "version": "local-1", "base": "default",
        "add": [{"code": "cd_three_months", "dimension": "coercion_destination", "text": "Unpaid for 3 months",
                 "grades": {"adult_labour": "strong", "child_labour": "strong", "adult_sexual": "medium", "child_sexual": "medium"}}],
    }))
    with pytest.raises(DisclosureError, match="indicator catalogue: the text 'Unpaid for 3 months' holds a number"):
        indicator_checklist(str(local))


def test_the_referral_procedure_is_the_form_catalogues_steps_with_who_may_take_them(fresh_report):
    raw = yaml.safe_load(FORMS.read_text())
    forms = {f["code"]: f for f in raw["forms"]}
    shown = referral_procedure()
    (group,) = shown.groups
    assert [title for title, _ in group.entries] == [step["step"] for step in raw["referral"]]
    for (title, text), step in zip(group.entries, raw["referral"]):
        assert text.startswith(" ".join(step["text"].split()))
        who = list(dict.fromkeys(org for code in step["forms"] for org in forms[code]["submitted_by"]))
        said = re.search(r"Who: (.*?)\. Recorded on", text).group(1).split(", ")
        assert said == [("NGO" if org == "ngo" else org.replace("_", " ")) for org in who]
        for code in step["forms"]:
            assert f"{forms[code]['title']} ({code})" in text
        assert not STANDALONE_NUMBER.search(text)
    text = shown.to_text()
    assert text.splitlines()[0].startswith("  a. Refer: ") and "  g. " in text  # lettered: no number in the text
    assert audit_notebook(_notebook(_display(shown)), strict=True) == []


def test_a_referral_step_naming_an_unknown_form_is_refused(tmp_path):
    from studylib.data.form_catalogue import load_catalogue

    raw = yaml.safe_load(FORMS.read_text())
    raw["referral"][0]["forms"] = ["F03", "F15"]
    bad = tmp_path / "forms.yaml"
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ConfigError, match=r"referral step 1 \('Refer'\) names unknown forms \['F15'\]"):
        load_catalogue(bad)


# ---------------------------------------------------------------- the audit of catalogue text


def _display(shown) -> dict:
    bundle, metadata = shown._repr_mimebundle_()
    return {"output_type": "display_data", "metadata": metadata, "data": bundle}


def _notebook(*outputs) -> dict:
    cells = [{"cell_type": "code", "source": "x", "metadata": {}, "outputs": [o], "execution_count": 1} for o in outputs]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.mark.parametrize("strict", [True, False])
def test_the_audit_refuses_catalogue_text_that_holds_a_number(strict):
    marker = marker_for("catalogue", 10, None, False, False)
    forged = {"output_type": "display_data", "metadata": {"studylib_safe": marker},
              "data": {"text/plain": "Signs: 7 women in Hjørring", "text/html": "<div>Signs</div>"}}
    findings = audit_notebook(_notebook(forged), strict=strict)
    assert [(f.rule, f.detail) for f in findings] == [("unmarked-output", "catalogue text holding a number (7)")]
    clean = dict(forged, data={"text/plain": "Signs: Debt bondage (F03, ilo-2009-r1)"})
    assert audit_notebook(_notebook(clean), strict=strict) == []
    page = f"<html><body><div{marker_attribute(marker)}><ul><li>Debt bondage</li><li>12 persons</li></ul></div></body></html>"
    assert [f.rule for f in audit_html(page)] == ["unmarked-output"]
    assert audit_html(page.replace("12 persons", "Violence on victims")) == []


# ---------------------------------------------------------------- the brief layout


def test_the_brief_layout_has_no_contents_and_asks_for_two_columns(fresh_report):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from studylib.report import look
    from studylib.runner.export import ReportPage, to_html, to_pdf

    def page_for(layout: str | None) -> str:
        matter = {"subtitle": "Brief for the referral group", **({"layout": layout} if layout else {})}
        nb = new_notebook(cells=[new_code_cell("x", outputs=[new_output("display_data", data={look.FRONT_MATTER_MIME: matter})]),
                                 new_code_cell("y", outputs=[new_output("display_data", data={"text/html": "<h2 id='a'>A</h2>"})])])
        nbformat.validate(nb)
        return to_html(nb, ReportPage("brief", "Brief", "2026-12-04", "2026-12-04T00:00:00", 10, 0))

    brief, report = page_for("brief"), page_for(None)
    assert re.search(r"<html[^>]*class=\"layout-brief\"", brief) and 'class="report-toc"' not in brief
    assert re.search(r"<html[^>]*class=\"layout-report\"", report) and 'class="report-toc"' in report
    assert "html.layout-brief .report-body { columns: 2; column-gap: 7mm; column-fill: auto; }" in look.stylesheet()
    assert to_pdf(brief).startswith(b"%PDF")
    with pytest.raises(ValueError, match="layout=.*report, brief"):
        look.front_matter(layout="leaflet")


def test_the_region_names_cover_the_five_regions_of_the_vocabulary():
    from studylib.data import vocabularies as v

    assert list(v.REGION_NAMES) == [r for r in v.REGION if r not in ("abroad", "unknown")]
    study = yaml.safe_load((ROOT / "studies" / "regional_brief.yaml").read_text())
    assert study["matrix"]["region"] == list(v.REGION_NAMES)
    assert study["disclosure"]["min_cell"] > 5  # stricter than the national reports


def test_the_template_runs_as_it_is_on_the_demo_data_as_in_jupyterlab(tmp_path, fresh_report):
    """Its defaults (North Denmark Region, the demo dataset): a real kernel, no study run, no error."""
    import nbformat
    import papermill

    out = tmp_path / "brief.ipynb"
    papermill.execute_notebook(str(ROOT / "templates" / "regional_brief.ipynb"), str(out), cwd=str(ROOT / "templates"),
                               progress_bar=False, kernel_name="python3")
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    text = "\n".join(o.get("data", {}).get("text/plain", "") for c in nb.cells for o in c.get("outputs", []))
    assert "North Denmark Region" in text and "Debt bondage" in text and "a. Refer: " in text
    assert re.search(r"Table 1\. Persons registered in the region by identification, \d{4}", text)
