"""Tables counted from persons: counts, order, merges, the ledger, the plan, sentences, strict content.

Every count here is checked against pandas counting the same hand-built persons in the test,
and every merge and threshold on both of its sides.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from studylib.privacy import DisclosureError, attack
from studylib.privacy.audit import audit_notebook
from studylib.privacy.ledger import PlanEntry, read_ledger, table_signature, write_plan
from studylib.privacy.marker import marker_attribute, marker_for
from studylib.report import CountsRefused, period, safe_figure, safe_table, sentence, share
from studylib.report import settings as report_settings


pytestmark = pytest.mark.usefixtures("fresh_report")


def persons_of(**groups) -> pd.DataFrame:
    """Persons from ``(sex, decision)=n`` style groups: sex_decision=n."""
    rows = []
    for key, n in groups.items():
        sex, decision = key.split("__")
        rows += [(sex, decision)] * n
    frame = pd.DataFrame(rows, columns=["sex", "decision"])
    frame.insert(0, "person_id", [f"tok{i:04d}" for i in range(len(frame))])
    return frame


def au_pairs() -> pd.DataFrame:
    # the demo's au pair shape: 119 women, 3 men
    return persons_of(female__identified=42, female__not_identified=57, female__pending=20,
                      male__identified=2, male__not_identified=1)


def test_counts_equal_pandas_counting_the_same_persons_in_vocabulary_order():
    persons = au_pairs()
    shown = safe_table(persons, rows="sex", columns="decision")
    oracle = pd.crosstab(persons.sex, persons.decision)
    counts = shown.protected.counts.drop(index="Total", columns="Total")
    assert list(counts.index) == ["female", "male"]  # transgender, unknown: nobody, left out
    assert list(counts.columns) == ["identified", "not_identified", "pending"]  # the vocabulary's order
    assert (counts == oracle.loc[counts.index, counts.columns]).all().all()
    # male pending is 0 but stays: the column holds persons; an all-zero row or column would go
    assert counts.loc["male", "pending"] == 0


def test_every_hidden_cell_shows_one_neutral_symbol_and_no_hidden_cell_reads_as_small():
    shown = safe_table(au_pairs(), rows="sex", columns="decision", caption="Au pairs by sex")
    cells = shown.cells()
    hidden = shown.protected.suppressed
    assert hidden.loc["female", "identified"]  # the 42 women hide to protect the 2 men
    assert set(cells.to_numpy()[hidden.to_numpy()]) == {"[c]"}
    html = shown.to_html()
    assert "&lt;5" not in html and "fewer than" not in html
    assert "[c]: confidential" in html
    assert "not identified" in html and "not_identified" not in html  # codes shown as words


def test_a_study_symbol_replaces_the_default(monkeypatch):
    from studylib.privacy import DisclosureSettings

    monkeypatch.setenv("STUDYLIB_DISCLOSURE", DisclosureSettings(symbol="..").to_json())
    shown = safe_table(au_pairs(), rows="sex", columns="decision")
    assert ".." in set(shown.cells().to_numpy().ravel()) and "[c]" not in shown.to_html()


def test_empty_rows_are_left_out_unless_asked():
    persons = au_pairs()
    assert list(safe_table(persons, rows="sex").protected.counts.index) == ["female", "male", "Total"]
    kept = safe_table(persons, rows="sex", keep_empty=True).protected.counts
    assert list(kept.index) == ["female", "male", "transgender", "unknown", "Total"]
    assert kept.loc["transgender"] == 0


def test_where_selects_the_persons_counted():
    persons = au_pairs()
    shown = safe_table(persons, rows="decision", where=persons.sex == "female")
    assert int(shown.protected.counts.loc["Total"]) == 119
    assert int(safe_table(persons, rows="decision", where="sex == 'female'").protected.counts.loc["Total"]) == 119


@pytest.mark.parametrize("transgender, merged", [(4, True), (5, False), (0, False)])
def test_sex_merges_other_and_unknown_only_when_one_of_them_would_be_hidden(transgender, merged):
    persons = persons_of(female__identified=30, male__identified=20, **({"transgender__identified": transgender} if transgender else {}),
                         unknown__identified=6)
    shown = safe_table(persons, rows="sex", merge={"sex": "other_or_unknown"})
    labels = list(shown.protected.counts.index)
    if merged:
        assert labels == ["female", "male", "other or unknown", "Total"]
        assert int(shown.protected.counts.loc["other or unknown"]) == transgender + 6
    else:
        assert "other or unknown" not in labels


def test_top_n_names_the_largest_categories_and_counts_the_rest_as_other():
    nationality = ["PL"] * 30 + ["RO"] * 20 + ["UA"] * 9 + ["VN"] * 2 + ["XX"] * 6
    persons = pd.DataFrame({"person_id": [f"t{i}" for i in range(len(nationality))], "nationality": nationality})
    counts = safe_table(persons, rows="nationality", merge={"nationality": {"top": 2}}).protected.counts
    assert list(counts.index) == ["PL", "RO", "other", "unknown", "Total"]
    assert int(counts.loc["other"]) == 11 and int(counts.loc["unknown"]) == 6


@pytest.mark.parametrize("vn, named", [(2, ["PL", "RO", "UA"]), (5, ["PL", "RO", "UA"]), (6, ["PL", "RO", "UA"])])
def test_top_n_names_fewer_while_other_would_be_hidden(vn, named):
    # VN under 5 is never named; at 5 or 6 top 4 would name it and leave KE (3) alone as 'other', hidden
    nationality = ["PL"] * 30 + ["RO"] * 20 + ["UA"] * 9 + ["VN"] * vn + ["KE"] * 3
    persons = pd.DataFrame({"person_id": [f"t{i}" for i in range(len(nationality))], "nationality": nationality})
    counts = safe_table(persons, rows="nationality", merge={"nationality": {"top": 4}}).protected.counts
    assert list(counts.index)[:-2] == named, counts
    assert int(counts.loc["other"]) == len(nationality) - sum(nationality.count(x) for x in named)
    assert int(counts.loc["other"]) >= 5


@pytest.mark.parametrize("oldest, expected", [(4, ["18-24", "25-34", "35-44", "45+"]), (5, ["18-24", "25-34", "35-44", "45-54", "55+"])])
def test_adjacent_age_bands_merge_only_while_a_band_would_be_hidden(oldest, expected):
    bands = ["18-24"] * 20 + ["25-34"] * 30 + ["35-44"] * 12 + ["45-54"] * 8 + ["55+"] * oldest
    persons = pd.DataFrame({"person_id": [f"t{i}" for i in range(len(bands))], "age_band": bands})
    counts = safe_table(persons, rows="age_band", merge={"age_band": "adjacent"}).protected.counts
    assert list(counts.index)[:-1] == expected
    assert int(counts.loc["Total"]) == len(bands)


def test_counts_are_refused_in_a_study_run_and_accepted_with_a_warning_outside(monkeypatch):
    counts = pd.Series([3, 40], index=pd.Index(["a", "b"], name="x"))
    with pytest.warns(UserWarning, match="not a study run"):
        safe_table(counts)
    monkeypatch.setenv("STUDYLIB_REPORT", "au_pair")
    with pytest.raises(CountsRefused, match=r"safe_table\(cases, rows='sex'"):
        safe_table(counts)
    with pytest.raises(CountsRefused):
        safe_figure(counts)
    from matplotlib.figure import Figure

    with pytest.raises(CountsRefused, match="drawn by hand"):
        safe_figure(Figure())


def test_a_person_counted_twice_is_refused():
    persons = au_pairs()
    twice = pd.concat([persons, persons.iloc[:1]])
    with pytest.raises(DisclosureError, match="more than once"):
        safe_table(twice, rows="sex")


def test_the_ledger_records_which_person_falls_in_which_cell(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDYLIB_REPORT", "au_pair")
    monkeypatch.setenv("STUDYLIB_LEDGER", str(tmp_path))
    persons = au_pairs()
    shown = safe_table(persons, rows="sex", columns="decision", caption="by sex")
    safe_figure(persons, rows="decision", caption="by decision")
    entries = read_ledger(tmp_path)
    assert [e.id for e in entries] == ["au_pair#1", "au_pair#2"] and [e.kind for e in entries] == ["table", "figure"]
    entry = entries[0]
    labels = entry.labels
    for token, cell in zip(entry.persons, entry.cells):
        row, col = np.unravel_index(cell, entry.shape)
        person = persons.set_index("person_id").loc[token]
        assert (labels[0][row], labels[1][col]) == (person.sex, person.decision)
    assert entry.hidden_array().tolist() == shown.protected.suppressed.to_numpy().tolist()
    assert (entry.counts() == shown.protected.counts.to_numpy()).all()


def test_a_release_plan_hides_its_cells_and_the_table_stays_safe_on_its_own(tmp_path, monkeypatch):
    persons = persons_of(female__identified=30, female__not_identified=25, male__identified=20, male__not_identified=15)
    plain = safe_table(persons, rows="sex", columns="decision")
    assert not plain.protected.suppressed.to_numpy().any()
    labels = (("female", "male"), ("identified", "not_identified"))
    hide = np.zeros((3, 3), dtype=bool)
    hide[1, 1] = True  # male, not identified
    plan = tmp_path / "plan.json"
    write_plan(plan, {"au_pair#1": PlanEntry(table_signature(("sex", "decision"), labels, True), tuple(np.flatnonzero(hide)))})
    report_settings.reset()
    monkeypatch.setenv("STUDYLIB_REPORT", "au_pair")
    monkeypatch.setenv("STUDYLIB_RELEASE_PLAN", str(plan))
    planned = safe_table(persons, rows="sex", columns="decision")
    assert planned.protected.suppressed.loc["male", "not_identified"]
    assert planned.protected.suppressed.to_numpy().sum() >= 4  # a hidden cell needs its rectangle
    bounds = attack(planned.protected)
    assert bounds["safe"].all() and (bounds["upper"] > bounds["lower"]).all()


def test_a_plan_for_another_layout_is_not_applied(tmp_path, monkeypatch):
    persons = persons_of(female__identified=30, male__identified=20)
    plan = tmp_path / "plan.json"
    write_plan(plan, {"au_pair#1": PlanEntry("not-this-table", (0,))})
    monkeypatch.setenv("STUDYLIB_REPORT", "au_pair")
    monkeypatch.setenv("STUDYLIB_RELEASE_PLAN", str(plan))
    assert not safe_table(persons, rows="sex").protected.suppressed.to_numpy().any()


def test_a_figure_draws_only_its_own_published_cells_and_none_when_all_are_hidden():
    ages = ["18-24"] * 2 + ["25-34"] * 30 + ["35-44"] * 12
    persons = pd.DataFrame({"person_id": [f"t{i}" for i in range(len(ages))], "age_band": ages})
    figure = safe_figure(persons, rows="age_band", kind="bar")
    drawn = sorted(bar.get_height() for bar in figure.figure.axes[0].patches)
    published = safe_table(persons, rows="age_band").protected
    assert drawn == sorted(float(v) for v, h in zip(published.counts.drop("Total"), published.suppressed.drop("Total")) if not h)
    assert 2.0 not in drawn
    few = persons.iloc[:3].assign(age_band=["18-24", "25-34", "35-44"])
    empty = safe_figure(few, rows="age_band")
    assert empty.png is None and "Not drawn" in empty.note and "<img" not in empty.to_html()


def test_a_sentence_takes_published_cells_only():
    shown = safe_table(au_pairs(), rows="decision")
    said = sentence("{n} au pairs were identified in {when} ({p} of those registered).", n=shown.value("identified"),
                    when=period(2015, 2024), p=share(shown.value("identified"), shown.value("Total")))
    assert said.text == "44 au pairs were identified in 2015–2024 (36 % of those registered)."
    bundle, metadata = said._repr_mimebundle_()
    assert metadata["studylib_safe"]["rule"] == "sentence"
    with pytest.raises(DisclosureError, match="no digits"):
        sentence(f"{len(au_pairs())} au pairs")  # an f-string count is refused
    with pytest.raises(DisclosureError, match="only published values"):
        sentence("{n} au pairs", n=122)


def test_a_hidden_cell_in_a_sentence_shows_the_symbol():
    shown = safe_table(au_pairs(), rows="sex", columns="decision")
    said = sentence("{n} women were identified.", n=shown.value("female", "identified"))
    assert said.text == "[c] women were identified."


def test_the_front_matter_summary_takes_sentences_only(monkeypatch):
    from studylib.report.look import front_matter

    with pytest.raises(TypeError, match="safe sentences only"):
        front_matter(summary="122 au pairs were registered")
    with pytest.raises(ValueError, match="not a year"):
        front_matter(subtitle="Au pairs (122 persons)")


# ---------------------------------------------------------------- strict content


def _cell(*outputs) -> dict:
    return {"cell_type": "code", "source": "x", "metadata": {}, "outputs": list(outputs), "execution_count": 1}


def _notebook(*cells) -> dict:
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


MARKER = marker_for("suppression", 5, None, True, False)

LEAKS = {
    "print of CSV text": {"output_type": "stream", "name": "stdout", "text": "sex,count\nfemale,119\n"},
    "print of a dict": {"output_type": "stream", "name": "stdout", "text": "{'female': 119, 'male': 3}\n"},
    "a loop of prints": {"output_type": "stream", "name": "stdout", "text": "female 119\n"},
    "plain display": {"output_type": "execute_result", "data": {"text/plain": "3"}, "metadata": {}, "execution_count": 1},
    "Markdown display": {"output_type": "display_data", "data": {"text/markdown": "Of 122 persons, 3 were men."}, "metadata": {}},
    "HTML list": {"output_type": "display_data", "data": {"text/html": "<ul><li>male: 3</li></ul>"}, "metadata": {}},
    "image by hand": {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo="}, "metadata": {}},
    "a float": {"output_type": "execute_result", "data": {"text/plain": "3.0"}, "metadata": {}, "execution_count": 1},
}


@pytest.mark.parametrize("form", sorted(LEAKS))
def test_strict_content_refuses_every_unmarked_output_naming_the_cell_and_its_first_line(form):
    notebook = _notebook(_cell(), _cell(LEAKS[form]))
    findings = audit_notebook(notebook, strict=True)
    assert [f.rule for f in findings if f.rule == "unmarked-output"] == ["unmarked-output"]
    found = next(f for f in findings if f.rule == "unmarked-output")
    assert found.where.startswith("cell 2 (code) output 1")
    assert audit_notebook(notebook, strict=False) == [] or form in ("image by hand",)


def test_strict_content_accepts_marked_outputs():
    table = {"output_type": "display_data", "metadata": {"studylib_safe": MARKER},
             "data": {"text/html": f"<table{marker_attribute(MARKER)}><tr><td>42</td></tr></table>", "text/plain": "42"}}
    said = sentence("Nothing to report.")
    bundle, metadata = said._repr_mimebundle_()
    words = {"output_type": "display_data", "metadata": metadata, "data": bundle}
    assert audit_notebook(_notebook(_cell(table), _cell(words)), strict=True) == []
    forged = {"output_type": "display_data", "metadata": {"studylib_safe": {"rule": "nonsense"}}, "data": {"text/plain": "3"}}
    rules = {f.rule for f in audit_notebook(_notebook(_cell(forged)), strict=True)}
    assert {"bad-marker", "unmarked-output"} <= rules


def test_settings_json_round_trip_and_stricter():
    from studylib.privacy import DisclosureSettings

    a = DisclosureSettings(min_cell=5, merge={"sex": "other_or_unknown"})
    assert DisclosureSettings.from_json(a.to_json()) == a
    b = DisclosureSettings(min_cell=10, zeros_disclosive=True)
    both = a.stricter(b)
    assert (both.min_cell, both.zeros_disclosive) == (10, True)
    with pytest.raises(DisclosureError, match="symbol"):
        DisclosureSettings(symbol="<5")
    assert json.loads(a.to_json())["symbol"] == "[c]"


def test_a_table_that_can_show_nothing_of_its_rows_is_not_drawn_as_a_grid_of_symbols():
    # 3 men, one in each column: their row is hidden, and the women's then too (column totals are shown)
    persons = persons_of(female__identified=42, female__not_identified=57, female__pending=20,
                         male__identified=1, male__not_identified=1, male__pending=1)
    withheld = safe_table(persons, rows="sex", columns="decision", caption="Persons by sex and identification")
    hidden = withheld.protected.suppressed
    assert hidden.drop(index="Total").to_numpy().all() and not hidden.loc["Total"].any()
    assert withheld.withheld()
    page = withheld.to_html()
    assert "<td" not in page and "Not shown: every count of this table is confidential ([c])" in page
    assert "Persons by sex and identification" in page and "data-studylib-safe=" in page
    assert "Not shown" in withheld.to_text() and "119" not in withheld.to_text()
    # the men's pending cell an empty zero: the women's pending 20 shows, so the table tells something
    partly = safe_table(au_pairs(), rows="sex", columns="decision")
    assert not partly.withheld() and "<td" in partly.to_html()
    # every inner cell small, but each row's total shown: the table still tells something by row
    by_total = safe_table(persons_of(female__identified=3, female__not_identified=3, male__identified=2, male__not_identified=4),
                          rows="sex", columns="decision")
    hidden = by_total.protected.suppressed
    assert hidden.drop(index="Total", columns="Total").to_numpy().all() and not hidden["Total"].any()
    assert not by_total.withheld() and "<td" in by_total.to_html()
    # a 1-D table with every category hidden shows only its note
    alone = safe_table(persons_of(female__identified=3, male__identified=4), rows="sex")
    assert alone.withheld() and "<td" not in alone.to_html()
