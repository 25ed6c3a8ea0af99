"""The default studies on real kernels and real files: published HTML and PDF, manifests, the
index, incremental skip and --force, a matrix study on a real Dask LocalCluster."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path

import nbformat
import pytest
import yaml
from pypdf import PdfReader

from runner_fixtures import ROOT, make_dataset, make_project, write_study
from studylib.data import read_dataset
from studylib.privacy.tokens import read_key
from studylib.runner.batch import BatchSettings, plan_batch, run_batch
from studylib.runner.export import headings, to_pdf
from studylib.runner.study import find_studies

pytestmark = pytest.mark.slow

DEFAULT = ("au_pair", "agriculture", "cleaning", "overview")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The project's default studies and templates, on a fixture dataset, run once as a batch."""
    root = tmp_path_factory.mktemp("project")
    key = Path(os.environ["STUDYLIB_KEY_FILE"])  # the session's (tests/conftest.py): the audit looks for it everywhere
    dataset = make_dataset(root / "dataset", n=400, key=key)
    make_project(root, dataset, DEFAULT)
    tmp = root / "tmp"
    tmp.mkdir()
    settings = BatchSettings(reports=root / "reports", workers=2, studies_dir=root / "studies")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(tmp))
        mp.setenv("STUDYLIB_KEY_FILE", str(key))
        result = run_batch(find_studies(root / "studies"), settings)
    return root, dataset, settings, result, tmp


def _html(root: Path, key: str) -> str:
    return (root / "reports" / key / "report.html").read_text()


def test_default_studies_publish_html_pdf_and_manifest(project):
    root, _, _, result, tmp = project
    assert {o.key: o.status for o in result.outcomes} == dict.fromkeys(DEFAULT, "published"), [o.message for o in result.outcomes]
    assert result.ok
    for key in DEFAULT:
        folder = root / "reports" / key
        assert sorted(p.name for p in folder.iterdir()) == ["data", "datapackage.json", "figures", "manifest.json",
                                                            "report.html", "report.pdf", "tables.xlsx"]
    assert list((root / "reports" / ".staging").iterdir()) == []
    assert list(tmp.glob("studylib-kernel-*")) == [], "kernel folders (IPC sockets, connection files) are removed"


def test_html_has_no_code_no_external_url_and_embedded_images(project):
    root = project[0]
    for key in DEFAULT:
        page = _html(root, key)
        assert "<script" not in page.lower() and "<link" not in page.lower()
        assert "jp-CodeMirrorEditor" not in page and "highlight-ipynb" not in page and "jp-InputPrompt" not in page
        assert "read_dataset" not in page and "import pandas" not in page and "front_matter" not in page
        assert "Traceback" not in page and "Warning" not in page
        for attr, value in re.findall(r"""\b(src|href|action|poster)\s*=\s*["']([^"']*)["']""", page, re.I):
            assert not re.match(r"^(https?:)?//", value), f"{key}: {attr}={value[:60]}"
            assert attr.lower() != "href" or value.startswith("#"), f"{key}: links only within the page: {value[:60]}"
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", page), f"{key}: CSS fetches from elsewhere"
        images = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]+)\"", page)
        assert images, f"{key}: a report has figures"
        for src in images:
            assert src.startswith("data:image/png;base64,")
            assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_has_title_block_contents_numbered_captions_methods_and_provenance(project):
    root, dataset, _, _, _ = project
    page = _html(root, "cleaning")
    assert '<h1 class="report-title">Cleaning</h1>' in page
    assert "Persons registered in cleaning (ISIC section N)" in page and "<dt>Period</dt><dd>2015–2024</dd>" in page
    toc = re.search(r'<nav[^>]*report-toc[^>]*>.*?</nav>', page, re.S).group(0)
    sections = [text for level, _, text in headings(page) if level == 2]
    assert sections[:3] == ["1. Key results", "2. Who the persons are", "3. Recruitment"] and sections[-1] == "Methods"
    for ident in re.findall(r'href="#([^"]+)"', toc):
        assert f'id="{ident}"' in page
    assert page.count("<caption>") >= 10 and page.count("<figcaption>") == 2
    marked = page.count("<caption>") + page.count("<figcaption>") + page.count('class="studylib-sentence"')
    assert page.count("data-studylib-safe=") == marked, "every table, figure and sentence carries the safe marker"
    assert 'id="methods"' in page and "Counts from 1 to 4 are" in page
    manifest = json.loads((root / "reports" / "cleaning" / "manifest.json").read_text())
    footer = re.search(r'<footer[^>]*report-provenance[^>]*>.*?</footer>', page, re.S).group(0)
    for value in ("cleaning", manifest["data"]["content_hash"], manifest["template"]["sha256"], "studylib 0", manifest["run"]["started"]):
        assert value in footer
    assert "injected" not in page and "STUDYLIB_" not in page


def test_pdf_pages_text_and_same_html_gives_same_bytes(project):
    root = project[0]
    for key in DEFAULT:
        reader = PdfReader(root / "reports" / key / "report.pdf")
        assert 2 <= len(reader.pages) <= 16, f"{key}: {len(reader.pages)} pages"  # the sector study has ten sections
        text = "\n".join(page.extract_text() for page in reader.pages)
        assert "Contents" in text and "Methods" in text and "Provenance" in text and "Table 1" in text and "Figure 1" in text
        assert f"Page 1 of {len(reader.pages)}" in text
    page = _html(root, "au_pair")
    assert "Au pairs in Denmark" in PdfReader(io.BytesIO(to_pdf(page))).pages[1].extract_text()  # running header
    assert to_pdf(page) == (root / "reports" / "au_pair" / "report.pdf").read_bytes()


def test_manifest_records_parameters_hashes_timings_audit_and_no_personal_data(project):
    root, dataset, settings, _, _ = project
    tokens = set(read_dataset(dataset).persons.person_id)
    for key in DEFAULT:
        text = (root / "reports" / key / "manifest.json").read_text()
        manifest = json.loads(text)
        assert manifest["study"] == key and manifest["parameters"]["data_dir"] == str(dataset)
        assert manifest["template"]["sha256"] == hashlib.sha256(Path(manifest["template"]["path"]).read_bytes()).hexdigest()
        assert manifest["data"]["content_hash"] == json.loads((dataset / "dataset.json").read_text())["content_hash"]
        assert set(manifest["timings"]) >= {"execute", "html", "pdf", "total"} and manifest["timings"]["total"] > 0
        assert manifest["audit"]["status"] == "passed" and manifest["audit"]["key_checked"] is True
        downloads = sorted(name for name in manifest["files"] if name not in ("report.html", "report.pdf"))
        assert "tables.xlsx" in downloads and "datapackage.json" in downloads
        assert sorted(manifest["audit"]["files"]) == sorted(["notebook.ipynb", "report.html", "report.pdf", *downloads])
        for name, entry in manifest["files"].items():
            assert entry["sha256"] == hashlib.sha256((root / "reports" / key / name).read_bytes()).hexdigest()
        html_text = _html(root, key)
        assert not any(t in text or t in html_text for t in tokens), "no person token leaves the dataset"
        assert read_key(os.environ["STUDYLIB_KEY_FILE"]).hex() not in text + html_text


def test_a_reports_time_leaves_out_its_wait_for_a_kernel(project):
    root, _, settings, result, _ = project
    seconds = {o.key: o.seconds for o in result.outcomes}
    timings = {key: json.loads((root / "reports" / key / "manifest.json").read_text())["timings"] for key in DEFAULT}
    assert len(DEFAULT) > settings.workers and max(t["queued"] for t in timings.values()) > 0  # some reports waited
    for key, t in timings.items():
        assert t["total"] >= t["execute"] + t["html"] + t["pdf"] + t["audit"]
        assert seconds[key] >= t["total"] - 0.01  # the summary's time (rounded) is the report's own
    waited = max(timings, key=lambda k: timings[k]["queued"])
    # the summary leaves the wait out: whatever publishing adds is far less than a wait for a kernel slot
    assert seconds[waited] - timings[waited]["total"] < 0.5 * timings[waited]["queued"]


def test_index_lists_every_study_with_status_and_links(project):
    root = project[0]
    index = (root / "reports" / "index.html").read_text()
    for key in DEFAULT:
        assert f'href="{key}/report.html"' in index and f'href="{key}/report.pdf"' in index
    assert index.count('class="status-ok"') == 4 and "Trafficking in human beings in Denmark" in index


def test_nothing_changed_skips_and_force_or_a_change_runs_again(project):
    root, dataset, settings, _, tmp = project
    files = find_studies(root / "studies")
    before = {k: (root / "reports" / k / "manifest.json").read_text() for k in DEFAULT}
    again = run_batch(files, settings)
    assert [o.status for o in again.outcomes] == ["skipped"] * 4 and again.ok
    assert {k: (root / "reports" / k / "manifest.json").read_text() for k in DEFAULT} == before

    # a changed parameter re-runs that study only; --force re-runs one more
    raw = yaml.safe_load((root / "studies" / "cleaning.yaml").read_text())
    raw["parameters"]["top_nationalities"] = 4
    write_study(root, raw)
    forced = BatchSettings(**{**settings.__dict__, "force": True})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(tmp))
        changed = run_batch([root / "studies" / "cleaning.yaml", root / "studies" / "agriculture.yaml"], settings)
        assert {o.key: o.status for o in changed.outcomes} == {"cleaning": "published", "agriculture": "skipped"}
        redo = run_batch([root / "studies" / "overview.yaml"], forced)
    assert [o.status for o in redo.outcomes] == ["published"]
    assert json.loads((root / "reports" / "overview" / "manifest.json").read_text())["run"]["id"] != json.loads(before["overview"])["run"]["id"]

    # new data: every report is due again (planned only; nothing runs)
    make_dataset(dataset, n=400, seed=8)
    plan = plan_batch(files, settings)
    assert sorted(r.key for r in plan.run) == sorted(DEFAULT) and plan.done == []


def test_template_runs_as_it_is_with_papermill(project, tmp_path):
    """`papermill templates/sector_study.ipynb out.ipynb -p sector cleaning` (here: on the fixture data)."""
    import papermill as pm

    root, dataset = project[0], project[1]
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(ROOT / "templates" / "sector_study.ipynb"), str(out), parameters={"sector": "cleaning", "data_dir": str(dataset)},
                        progress_bar=False, cwd=str(ROOT / "templates"))
    nb = nbformat.read(out, as_version=4)
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "text/html" in o.get("data", {})]
    assert len(shown) >= 5 and all("data-studylib-safe" in o["data"]["text/html"] for o in shown if "<table" in o["data"]["text/html"])


def test_a_matrix_study_fans_out_on_a_dask_local_cluster(project, tmp_path):
    from distributed import LocalCluster

    root, dataset = project[0], project[1]
    raw = yaml.safe_load((ROOT / "studies" / "cleaning.yaml").read_text())
    raw.update(id="cleaning_by_region", title="Cleaning by region", matrix={"region": ["hovedstaden", "midtjylland"]})
    study = write_study(root, raw, data=dataset)
    reports = tmp_path / "reports"
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        result = run_batch([study], BatchSettings(reports=reports, cluster=cluster.scheduler_address, studies_dir=root / "studies"))
    assert {o.key: o.status for o in result.outcomes} == {
        "cleaning_by_region/region-hovedstaden": "published", "cleaning_by_region/region-midtjylland": "published"}, [o.message for o in result.outcomes]
    for region in ("hovedstaden", "midtjylland"):
        folder = reports / "cleaning_by_region" / f"region-{region}"
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["combination"] == {"region": region} and manifest["parameters"]["region"] == region
        assert f"region {region}" in (folder / "report.html").read_text()
    index = (reports / "index.html").read_text()
    assert "cleaning_by_region/region-midtjylland/report.html" in index
    assert "Cleaning by region" in index and index.count('class="status-never"') == 4  # the other studies never ran here
