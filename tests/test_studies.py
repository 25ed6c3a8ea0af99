"""The project's own studies, as `make reports` runs them: every study in studies/ on the demo
dataset (made through synth -> ingest on demand), executed on real kernels, exported, audited
and published; then the reports say what their templates promise."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from pypdf import PdfReader

from studylib import paths
from studylib.privacy.audit import audit_path
from studylib.privacy.denylist import DenyList, deny_list_path
from studylib.privacy.tokens import read_key
from runner_fixtures import publish_demo_studies
from studylib.runner.study import find_studies

# the first test builds the whole demo release (eight studies, protected together): minutes on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    result = publish_demo_studies(reports, find_studies(ROOT / "studies"), ROOT / "studies", workers=2)
    return reports, result


def _text(reports: Path, study: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", (reports / study / "report.html").read_text())))


def test_every_study_publishes_html_and_pdf_that_pass_the_audit(published):
    reports, result = published
    studies = sorted(p.stem for p in find_studies(ROOT / "studies"))
    assert {"au_pair", "agriculture", "cleaning", "overview", "extent", "indicator_review"} <= set(studies)
    assert {o.study: o.status for o in result.outcomes} == {s: "published" for s in studies}, [o.message for o in result.outcomes]
    key = read_key(paths.demo_key_file())
    deny = DenyList.read(deny_list_path(paths.demo_dataset_dir()))
    for study in studies:
        manifest = json.loads((reports / study / "manifest.json").read_text())
        assert manifest["audit"]["status"] == "passed"
        assert manifest["audit"]["key_checked"] and manifest["audit"]["deny_list_checked"]
        assert (reports / study / "report.pdf").stat().st_size > 10_000
        root = PdfReader(reports / study / "report.pdf").trailer["/Root"]  # tagged PDF: structure for screen readers
        assert bool(root["/MarkInfo"]["/Marked"]) and "/StructTreeRoot" in root and root["/Lang"] == "en"
        # audited again here, independently of the runner: no finding, with the key and deny list
        found = audit_path(reports / study, min_cell=5, deny_list=deny, key=key)
        assert found.findings == [], [str(f) for f in found.findings]


def _last_line_on_each_page(page_html: str) -> list[list[str]]:
    """For each page but the last, the elements around the last line of text (running header and footer left out)."""
    from weasyprint import HTML

    found = []
    for page in HTML(string=page_html).render().pages[:-1]:
        last: list[str] = []

        def walk(box, chain):
            nonlocal last
            tag = getattr(box, "element_tag", None)
            chain = chain + [tag] if tag else chain
            if type(box).__name__ == "TextBox" and box.text.strip():
                last = chain
            for child in getattr(box, "children", None) or []:
                walk(child, chain)

        for child in page._page_box.children:
            if type(child).__name__ != "MarginBox":
                walk(child, [])
        found.append(last)
    return found


def test_no_pdf_page_ends_with_a_heading(published):
    reports, result = published
    for outcome in result.outcomes:
        page_html = (reports / outcome.key / "report.html").read_text()
        stranded = [i + 1 for i, chain in enumerate(_last_line_on_each_page(page_html)) if {"h2", "h3"} & set(chain)]
        assert stranded == [], f"{outcome.key}: a heading at the foot of page(s) {stranded}"


def test_the_extent_report_shows_ranges_of_several_models_and_the_truth(published):
    reports, _ = published
    text = _text(reports, "extent")
    assert re.search(r"model puts the number of persons in all, registered or not, between [\d,]+ and [\d,]+ in \d{4}–\d{4}", text)
    assert re.search(r"The recommended range, the span of the families the diagnostics support, is [\d,]+ to [\d,]+ persons", text)
    for model in ("main effects only", "stepwise, p < 0.02", "all two-list interactions"):
        assert model in text
    assert "True population and estimated ranges" in text
    assert "by period of first contact" in text
    assert "underestimates" in text  # the plain-language caveat on heterogeneity
    pdf = " ".join(page.extract_text() for page in PdfReader(reports / "extent" / "report.pdf").pages)
    assert "Estimates by sector" in pdf


def test_the_indicator_review_compares_two_catalogue_versions(published):
    reports, _ = published
    text = _text(reports, "indicator_review")
    assert "ilo-2009-r1" in text and "centre-adjusted-2026-1" in text
    assert "cohens kappa" in text and "Odds of identification" in text
    assert "provisional" in text  # the sexual lists' grades are flagged


def _page_tables(page_html: str) -> dict[int, list[list[str]]]:
    """Each numbered table of a report page: its body rows' cell texts (th and td), read with regular expressions."""
    out = {}
    for number, table in re.findall(r'<table[^>]*data-studylib-number="(\d+)"[^>]*>(.*?)</table>', page_html, re.S):
        body = re.search(r"<tbody>(.*?)</tbody>", table, re.S)
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S) if body else []
        out[int(number)] = [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)]
                            for r in rows]
    return out


def test_every_report_publishes_its_tables_and_figures_as_the_page_shows_them(published):
    import csv
    import xml.etree.ElementTree as ET

    import yaml
    from openpyxl import load_workbook

    reports, _ = published
    release = yaml.safe_load((ROOT / "release.yaml").read_text())
    for study in sorted(p.stem for p in find_studies(ROOT / "studies")):
        folder = reports / study
        page = (folder / "report.html").read_text()
        manifest = json.loads((folder / "manifest.json").read_text())
        package = json.loads((folder / "datapackage.json").read_text())
        assert {r["path"] for r in package["resources"]} | {"datapackage.json"} <= set(manifest["files"])
        tables = _page_tables(page)
        csvs = {r["studylib"]["number"]: r["path"] for r in package["resources"] if r["path"].endswith(".csv")}
        assert set(csvs) == {n for n, rows in tables.items() if rows}, study  # every table the page shows, no other
        book = load_workbook(folder / "tables.xlsx")
        for number, path in csvs.items():
            rows = list(csv.reader((folder / path).open(newline="", encoding="utf-8")))[1:]
            shown = [[c.replace(",", "") if re.fullmatch(r"-?[\d,]+(\.\d+)?", c) else c for c in row] for row in tables[number]]
            assert rows == shown, (study, path)
            sheet = [r for r in book[f"Table {number}"].iter_rows(values_only=True)]
            assert len([r for r in sheet if r[0] is not None]) >= len(rows) + 2, (study, number)  # title, header, rows
        figures = re.findall(r'<figure[^>]*data-studylib-number="(\d+)"[^>]*><img src="data:image/png;base64,([^"]+)"', page)
        for number, data in figures:
            import base64

            assert (folder / f"figures/figure-{int(number):02d}.png").read_bytes() == base64.b64decode(data)
            ET.parse(folder / f"figures/figure-{int(number):02d}.svg")  # well-formed
        text = _text(reports, study)
        assert release["publisher"] in text and release["next_release"] in text, study
        contents = [r for r in book["Contents"].iter_rows(values_only=True)]
        assert ("Publisher", release["publisher"]) in contents
