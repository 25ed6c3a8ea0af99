"""A report's downloads: tables as CSV and XLSX, figures as PNG and SVG, a data package, all audited.

The exhibits are the library's own (safe_table, safe_statistics, safe_figure on hand-built
persons), shown in a notebook as a kernel shows them (their mime bundles); the expected
values are counted by pandas in the test, and the files are read back with the stdlib csv
module, openpyxl and an XML parser. The audit is tried on both sides of every rule: the files
as written pass; a small count, a file or sheet the package does not describe, a name in a
cell, a broken marker fail.
"""

from __future__ import annotations

import csv
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from studylib.errors import ConfigError
from studylib.privacy.audit import audit_path
from studylib.privacy.marker import marker_for
from studylib.report import safe_figure, safe_statistics, safe_table
from studylib.runner.downloads import PACKAGE, cell_value, exhibits_of, number_format, write_downloads
from studylib.runner.publisher import read_release_info

FORMATS = ("xlsx", "csv", "png", "svg")


pytestmark = pytest.mark.usefixtures("fresh_report")


def _persons() -> pd.DataFrame:
    # region North: 40 female, 2 male (hidden), region South: 31 female, 12 male; 1,234 in West
    groups = [("North", "female", 40), ("North", "male", 2), ("South", "female", 31), ("South", "male", 12),
              ("West", "female", 1234), ("West", "male", 1000)]
    rows = [(region, sex) for region, sex, n in groups for _ in range(n)]
    frame = pd.DataFrame(rows, columns=["region", "sex"])
    frame.insert(0, "person_id", [f"tok{i:05d}" for i in range(len(frame))])
    return frame


def _notebook(*exhibits) -> dict:
    cells = []
    for exhibit in exhibits:
        data, metadata = exhibit._repr_mimebundle_()
        cells.append({"cell_type": "code", "source": "", "metadata": {}, "outputs": [
            {"output_type": "display_data", "data": data, "metadata": metadata}]})
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def written(tmp_path):
    persons = _persons()
    by_region = safe_table(persons, rows="region", columns="sex", caption="Persons by region and sex")
    stats = safe_statistics(pd.DataFrame({"rate ratio": [1.0, 0.95]}, index=pd.Index(["au pair", "others"], name="group")),
                            caption="Rate ratios", formats={"rate ratio": "{:.2f}"})
    by_sex = safe_figure(persons, rows="sex", kind="bar", caption="Persons by sex")
    exhibits = exhibits_of(_notebook(by_region, stats, by_sex, by_region))  # shown twice: downloaded once
    files = write_downloads(tmp_path, exhibits, FORMATS, "A study", "a_study",
                            {"Publisher": "The centre", "Next release": "June 2027"}, "[c]: confidential")
    return tmp_path, files, persons


def test_tables_are_written_as_csv_and_xlsx_with_the_published_counts(written):
    folder, files, persons = written
    assert sorted(files) == sorted(["data/table-01.csv", "data/table-02.csv", "tables.xlsx",
                                    "figures/figure-01.png", "figures/figure-01.svg", PACKAGE])
    expected = pd.crosstab(persons.region, persons.sex, margins=True, margins_name="Total")
    with open(folder / "data/table-01.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["region", "sex / female", "sex / male", "sex / Total"]
    body = {r[0]: r[1:] for r in rows[1:]}
    assert list(body) == ["North", "South", "West", "Total"]
    columns = ["female", "male", "Total"]
    for region, values in body.items():  # every shown cell is pandas' count; a hidden one the page's symbol
        for column, value in zip(columns, values):
            assert value in ("[c]", str(expected.loc[region, column])), (region, column, value)
    assert body["North"][1] == "[c]"  # 2 persons
    assert sum(v == "[c]" for values in body.values() for v in values) >= 2  # and a second cell protects it
    assert body["West"] == ["1234", "1000", "2234"]  # no thousands separator in data

    sheet = load_workbook(folder / "tables.xlsx")["Table 1"]
    values = [[v for v in r if v is not None] for r in sheet.iter_rows(values_only=True)]
    assert values[0] == ["Table 1. Persons by region and sex"]
    header = values.index(["region", "sex / female", "sex / male", "sex / Total"])
    by_label = {r[0]: r[1:] for r in values[header + 1:]}
    assert by_label["West"] == [1234, 1000, 2234]  # numbers as numbers
    for region, row in by_label.items():  # the same cells as the CSV
        assert [str(v) for v in row] == body[region]
    assert sheet.cell(header + 4, 2).number_format == "#,##0"  # West female, shown 1,234 on the page

    stats_sheet = load_workbook(folder / "tables.xlsx")["Table 2"]
    cells = [c for row in stats_sheet.iter_rows() for c in row if isinstance(c.value, (int, float))]
    assert [(c.value, c.number_format) for c in cells] == [(1, "0.00"), (0.95, "0.00")]  # shown as 1.00, as on the page


def test_the_contents_sheet_and_package_carry_the_release_facts_and_each_marker(written):
    folder, _, _ = written
    contents = [r for r in load_workbook(folder / "tables.xlsx")["Contents"].iter_rows(values_only=True)]
    assert ("Publisher", "The centre") in contents and ("Next release", "June 2027") in contents
    assert ("Symbols", "[c]: confidential") in contents
    assert ("Table 1", "Table 1. Persons by region and sex") in contents
    package = json.loads((folder / PACKAGE).read_text())
    assert package["studylib"]["release"] == {"Publisher": "The centre", "Next release": "June 2027"}
    table = next(r for r in package["resources"] if r["path"] == "data/table-01.csv")
    assert table["studylib"]["marker"] == marker_for("suppression", 5, None, True, False)
    rows = list(csv.reader((folder / "data/table-01.csv").open(newline="")))[1:]
    hidden = [any(r[i] == "[c]" for r in rows) for i in (1, 2, 3)]
    assert any(hidden)
    assert [f["type"] for f in table["schema"]["fields"]] == ["string"] + ["string" if h else "integer" for h in hidden]
    stats = next(r for r in package["resources"] if r["path"] == "data/table-02.csv")
    assert [f["type"] for f in stats["schema"]["fields"]] == ["string", "number"]


def test_figures_are_the_png_the_page_shows_and_an_svg_with_the_same_texts(written):
    folder, _, persons = written
    figure = safe_figure(persons, rows="sex", kind="bar", caption="Persons by sex")
    assert (folder / "figures/figure-01.png").read_bytes() == figure.png
    svg = ET.parse(folder / "figures/figure-01.svg").getroot()
    texts = {t.text.strip() for t in svg.iter("{http://www.w3.org/2000/svg}text") if t.text and t.text.strip()}
    assert {"female", "male"} <= texts  # text stays text (fonttype none): readable and auditable


def test_the_downloads_as_written_pass_the_audit(written):
    folder, _, _ = written
    result = audit_path(folder, min_cell=5, strict=True)
    assert result.findings == [], [str(f) for f in result.findings]
    assert {Path(f).name for f in result.files} >= {"table-01.csv", "tables.xlsx", "figure-01.png", "figure-01.svg", PACKAGE}


def _rules(folder: Path) -> set[tuple[str, str]]:
    return {(Path(f.file).name, f.rule) for f in audit_path(folder, min_cell=5).findings}


def test_a_small_count_written_into_a_csv_fails_at_its_row_and_column(written):
    folder, _, _ = written
    path = folder / "data/table-01.csv"
    rows = list(csv.reader(path.open(newline="")))
    rows[2][2] = "4"  # below the minimum cell 5
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    findings = [f for f in audit_path(folder, min_cell=5).findings if f.rule == "small-count"]
    assert [(Path(f.file).name, f.where) for f in findings] == [("table-01.csv", "row 3 column 3")]
    rows[2][2] = "5"  # at the minimum: fine
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    assert ("table-01.csv", "small-count") not in _rules(folder)


def test_a_small_count_in_a_sheet_fails_and_a_statistic_shown_with_decimals_does_not(written):
    folder, _, _ = written
    book = load_workbook(folder / "tables.xlsx")
    book["Table 1"]["B5"] = 3
    book["Table 2"]["B4"] = 2.0
    book["Table 2"]["B4"].number_format = "0.00"
    book.save(folder / "tables.xlsx")
    findings = [f for f in audit_path(folder, min_cell=5).findings if f.rule == "small-count"]
    assert [f.where for f in findings] == ["sheet 'Table 1' row 5 column 2"]
    book["Table 2"]["B4"].number_format = "0"  # the same 2 shown as a whole number is a count
    book.save(folder / "tables.xlsx")
    assert len([f for f in audit_path(folder, min_cell=5).findings if f.rule == "small-count"]) == 2


def test_a_rounded_table_may_show_multiples_of_its_base_only(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/table-01.csv").write_text("sex,persons\nfemale,3\nmale,4\n")
    marker = marker_for("rounding", 5, 3, True, False)
    (tmp_path / PACKAGE).write_text(json.dumps({"resources": [
        {"path": "data/table-01.csv", "studylib": {"kind": "table", "marker": marker, "labels": 1}}]}))
    findings = audit_path(tmp_path, min_cell=5).findings
    assert [(f.where, f.detail) for f in findings] == [("row 3 column 2", "4 (minimum cell 5)")]


def test_files_the_package_does_not_describe_are_refused(written):
    folder, _, _ = written
    shutil.copy(folder / "data/table-01.csv", folder / "data/extra.csv")
    shutil.copy(folder / "figures/figure-01.png", folder / "figures/extra.png")
    book = load_workbook(folder / "tables.xlsx")
    book.create_sheet("Scratch").append(["region", 3])
    book.save(folder / "tables.xlsx")
    rules = _rules(folder)
    assert ("extra.csv", "unmarked-table") in rules and ("extra.png", "unmarked-figure") in rules
    assert ("tables.xlsx", "unmarked-table") in rules
    assert ("table-01.csv", "unmarked-table") not in rules
    (folder / PACKAGE).unlink()  # no package: nothing is described
    rules = _rules(folder)
    assert {("table-01.csv", "unmarked-table"), ("figure-01.svg", "unmarked-figure"), ("tables.xlsx", "unmarked-table")} <= rules


def test_a_broken_marker_in_the_package_is_refused(written):
    folder, _, _ = written
    package = json.loads((folder / PACKAGE).read_text())
    package["resources"][0]["studylib"]["marker"] = {"rule": "suppression", "min_cell": 2}
    (folder / PACKAGE).write_text(json.dumps(package))
    rules = _rules(folder)
    assert ("table-01.csv", "bad-marker") in rules or ("table-01.csv", "weak-marker") in rules


def test_personal_data_in_any_download_is_found(written):
    folder, _, _ = written
    book = load_workbook(folder / "tables.xlsx")
    book["Contents"]["B2"] = "ask anna.hansen@example.dk"
    book.save(folder / "tables.xlsx")
    svg = folder / "figures/figure-01.svg"
    svg.write_text(svg.read_text().replace("female", "CPR 010190-1234"))
    rules = _rules(folder)
    assert ("tables.xlsx", "email") in rules and ("figure-01.svg", "cpr") in rules


def test_text_that_would_start_a_formula_is_kept_as_text(tmp_path):
    persons = pd.DataFrame({"person_id": [f"t{i}" for i in range(12)], "channel": ["=HYPERLINK(x)"] * 6 + ["@cmd"] * 6})
    table = safe_table(persons, rows="channel", caption="Channels")
    write_downloads(tmp_path, exhibits_of(_notebook(table)), ("xlsx", "csv"), "T", "t")
    sheet = load_workbook(tmp_path / "tables.xlsx")["Table 1"]
    texts = [c.value for row in sheet.iter_rows() for c in row if isinstance(c.value, str)]
    assert "'=HYPERLINK(x)" in texts and "'@cmd" in texts
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)
    assert "'=HYPERLINK(x)" in (tmp_path / "data/table-01.csv").read_text()


@pytest.mark.parametrize("text, value, fmt", [
    ("1,234", 1234, "#,##0"), ("12", 12, "0"), ("0.950", 0.95, "0.000"), ("-3.5", -3.5, "0.0"),
    ("12.5 %", "12.5 %", None), ("[c]", "[c]", None), ("–", "–", None), ("1,234.50", 1234.5, "#,##0.00"),
])
def test_a_shown_cell_becomes_data_as_a_reader_would_read_it(text, value, fmt):
    assert cell_value(text) == value and type(cell_value(text)) is type(value)
    assert number_format(text) == fmt


def test_nothing_is_written_without_a_download_format(tmp_path):
    assert write_downloads(tmp_path, [], ("html", "pdf"), "T", "t") == []
    assert list(tmp_path.iterdir()) == []


def test_the_release_file_is_read_beside_the_studies_folder(tmp_path):
    (tmp_path / "studies").mkdir()
    study = tmp_path / "studies" / "a.yaml"
    assert read_release_info(study) is None
    (tmp_path / "release.yaml").write_text("publisher: The centre\ncontact: https://example.org\nnext_release: 2027-06-01\n")
    info = read_release_info(study)
    assert info.shown("2026-11-30") == {"Publisher": "The centre", "Contact": "https://example.org",
                                        "Data as at": "2026-11-30", "Next release": "2027-06-01"}
    (tmp_path / "release.yaml").write_text("publisher: The centre\ncontact: research@example.org\n")
    with pytest.raises(ConfigError, match=r"release.yaml: contact: .*e-mail address"):
        read_release_info(study)
    (tmp_path / "release.yaml").write_text("publisher: The centre\ncontact: x\nnext: soon\n")
    with pytest.raises(ConfigError, match=r"release.yaml: next: Extra inputs"):
        read_release_info(study)


def test_row_labels_that_are_small_numbers_are_not_counts(tmp_path):
    # persons by the number of lists that registered them: the labels 1, 2, 3 are categories, not cells
    (tmp_path / "data").mkdir()
    (tmp_path / "data/table-01.csv").write_text("lists,persons\n1,40\n2,12\n3,4\n")
    marker = marker_for("suppression", 5, None, False, False)
    (tmp_path / PACKAGE).write_text(json.dumps({"resources": [
        {"path": "data/table-01.csv", "studylib": {"kind": "table", "marker": marker, "labels": 1}}]}))
    findings = audit_path(tmp_path, min_cell=5).findings
    assert [(f.where, f.rule) for f in findings] == [("row 4 column 2", "small-count")]  # the 4, not the labels
