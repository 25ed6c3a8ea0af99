"""The project's own studies, as `make reports` runs them: every study in studies/ on the demo
dataset (made through synth -> ingest on demand), executed on real kernels, exported, audited
and published; then the reports say what their templates promise."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
import yaml
from pypdf import PdfReader

from studylib import paths
from studylib.privacy.audit import audit_path
from studylib.privacy.denylist import DenyList, deny_list_path
from studylib.privacy.tokens import read_key
from studylib.runner.study import find_studies

# the first test builds the whole demo release (eight studies, protected together): minutes on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def published(demo_release):
    return demo_release


def _text(reports: Path, study: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", (reports / study / "report.html").read_text())))


def _keys(result) -> list[str]:
    """Every report the batch made: a study's id, or ``<id>/<combination>`` for each of a matrix's."""
    return sorted(o.key for o in result.outcomes)


def _min_cell(key: str) -> int:
    study = yaml.safe_load((ROOT / "studies" / f"{key.split('/')[0]}.yaml").read_text())
    return study["disclosure"]["min_cell"]


def test_every_study_publishes_html_and_pdf_that_pass_the_audit(published):
    reports, result = published
    studies = sorted(p.stem for p in find_studies(ROOT / "studies"))
    assert {"au_pair", "agriculture", "cleaning", "overview", "extent", "indicator_review", "regional_brief"} <= set(studies)
    assert {o.study: o.status for o in result.outcomes} == {s: "published" for s in studies}, [o.message for o in result.outcomes]
    assert {o.status for o in result.outcomes} == {"published"}
    assert len(result.outcomes) == len(studies) - 1 + 5  # the regional brief: one report per region
    key = read_key(paths.demo_key_file())
    deny = DenyList.read(deny_list_path(paths.demo_dataset_dir()))
    for study in _keys(result):
        manifest = json.loads((reports / study / "manifest.json").read_text())
        assert manifest["audit"]["status"] == "passed"
        assert manifest["audit"]["key_checked"] and manifest["audit"]["deny_list_checked"]
        assert (reports / study / "report.pdf").stat().st_size > 10_000
        root = PdfReader(reports / study / "report.pdf").trailer["/Root"]  # tagged PDF: structure for screen readers
        assert bool(root["/MarkInfo"]["/Marked"]) and "/StructTreeRoot" in root and root["/Lang"] == "en"
        # audited again here, independently of the runner: no finding, with the key and deny list
        found = audit_path(reports / study, min_cell=_min_cell(study), deny_list=deny, key=key)
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

    from openpyxl import load_workbook

    reports, result = published
    release = yaml.safe_load((ROOT / "release.yaml").read_text())
    for study in _keys(result):
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


# ---------------------------------------------------------------- regional briefs (issue 18, item 1)

REGIONS = ("hovedstaden", "sjaelland", "syddanmark", "midtjylland", "nordjylland")


def _first_contacts(region: str):
    from studylib.demo import load_dataset

    cases = load_dataset(str(paths.demo_dataset_dir())).cases
    return cases[cases.region == region]


def test_a_brief_per_region_fits_two_pages_and_combines_years_where_a_year_is_too_small(published):
    reports, _ = published
    for region in REGIONS:
        key = f"regional_brief/region-{region}"
        assert len(PdfReader(reports / key / "report.pdf").pages) <= 2, key
        text = _text(reports, key)
        manifest = json.loads((reports / key / "manifest.json").read_text())
        assert manifest["audit"]["status"] == "passed"
        assert "Signs to look for" in text and "Debt bondage" in text and "Who: police, NGO, municipality" in text
        # the span the brief names: its last year is the data's last; its first is where every region
        # table by identification and by form holds no count 1-9 (the test's own count, with pandas)
        span = re.search(r"Persons registered in the region by identification, (\d{4})(?:–(\d{4}))?", text)
        first, last = int(span.group(1)), int(span.group(2) or span.group(1))
        persons = _first_contacts(region)
        assert last == int(persons.first_contact_year.max())
        forms = persons.exploitation.map({"sexual": "sexual", "labour": "labour"}).fillna("other")

        def small(start: int) -> bool:
            chosen = persons.first_contact_year.between(start, last)
            return any(((c >= 1) & (c <= 9)).any() for c in (persons[chosen].decision.value_counts(), forms[chosen].value_counts()))

        assert not small(first) or last - first + 1 == 5, region
        assert first == last or small(first + 1), region  # no shorter span would do
        assert ("the figures combine the years" in text) == (first < last), region
    combined = [r for r in REGIONS if "the figures combine the years" in _text(reports, f"regional_brief/region-{r}")]
    assert "nordjylland" in combined and "hovedstaden" not in combined


def test_the_release_attacker_finds_nothing_across_the_briefs_and_the_national_reports(published):
    from studylib.privacy.release import attack_release
    from studylib.runner.release import PUBLISHED, Stored, build_release, default_state, entries_of

    reports, _ = published
    (lineage,) = [p for p in default_state(reports).iterdir() if (p / PUBLISHED).is_dir()]
    folders = sorted(p for p in (Stored(lineage).root / PUBLISHED).iterdir() if p.is_dir() and not p.name.startswith("."))
    entries = entries_of(folders)
    assert {e.report for e in entries} >= {"overview", *(f"regional_brief/region-{r}" for r in REGIONS)}
    assert {e.min_cell for e in entries if e.report.startswith("regional_brief/")} == {10}
    release = build_release(entries, [], min_cell=5, zeros_disclosive=False)
    verdict = attack_release(release)
    assert len(verdict) > 0 and verdict["safe"].all(), verdict[~verdict["safe"]].head().to_string()
