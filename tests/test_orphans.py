"""Orphans (issue 15, item 8): reports whose study or matrix combination is gone are marked on the
index and removed by `studylib prune`; published reports keep their notebook and log for staff.

Everything runs through the real CLI (subprocesses) on real kernels; the oracles are the files on
disk (folders, bytes of the ledgers, the index page), never the code's own lists.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from test_release_runner import _dataset, _study, _template
from runner_fixtures import write_study

pytestmark = pytest.mark.slow

STUDYLIB = str(Path(sys.executable).parent / "studylib")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([STUDYLIB, *args], capture_output=True, text=True, timeout=600)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path):
    data = _dataset(tmp_path)
    _template(tmp_path)
    _study(tmp_path, data, "nation")
    _study(tmp_path, data, "capital", region_out="sjaelland")
    write_study(tmp_path, {"id": "years", "title": "years", "template": "../templates/by_sector.ipynb", "data": str(data),
                           "parameters": {}, "matrix": {"year_to": [2020, 2024]},
                           "disclosure": {"min_cell": 5, "rounding": None}, "formats": ["html"]})
    where = ["--studies", str(tmp_path / "studies"), "--reports", str(tmp_path / "reports"), "--state", str(tmp_path / "state")]
    done = _cli("run", "--all", *where, "--quiet", "--workers", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp_path, where


def test_published_reports_keep_their_notebook_and_log_in_the_staff_area(project):
    root, _ = project
    state = root / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for key in ("nation", "capital", "years/year_to-2020", "years/year_to-2024"):
        kept = state / "runs" / key
        nb = nbformat.read(kept / "notebook.ipynb", as_version=4)
        assert any(cell.get("outputs") for cell in nb.cells)  # the executed notebook, not the template
        assert (kept / "run.log").read_text().startswith("studylib run ")
        record = json.loads((kept / "run.json").read_text())
        manifest = json.loads((root / "reports" / key / "manifest.json").read_text())
        assert record["run"] == manifest["run"]["id"] and record["audit"]["passed"] is True, record
        assert not (root / "reports" / key / "notebook.ipynb").exists() and not (root / "reports" / key / "run.log").exists()
    staff = (state / "failed" / "index.html").read_text()
    assert 'href="../runs/nation/notebook.ipynb"' in staff and 'href="../runs/years/year_to-2020/run.log"' in staff
    assert "runs/" not in (root / "reports" / "index.html").read_text()  # the public index never links them


def test_a_leaky_log_is_found_by_the_audit_of_the_kept_run(tmp_path):
    """The other side: a log that holds a person token is recorded as not passed."""
    import pandas as pd

    data = _dataset(tmp_path)
    token = pd.read_parquet(data / "persons.parquet").person_id.iloc[0]
    # stderr goes to the log, never into the report: the kernel writes a whole token there
    _template(tmp_path, [("code", "import sys\nprint(read_dataset(data_dir).persons.person_id.iloc[0], file=sys.stderr)")])
    study = _study(tmp_path, data, "leaky")
    done = _cli("run", str(study), "--reports", str(tmp_path / "reports"), "--state", str(tmp_path / "state"), "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    kept = tmp_path / "state" / "runs" / "leaky"
    assert token in (kept / "run.log").read_text()
    record = json.loads((kept / "run.json").read_text())
    assert record["audit"]["passed"] is False and record["audit"]["findings"], record


def test_orphans_are_marked_and_pruned_with_their_staff_records_and_their_ledgers_kept(project):
    root, where = project
    studies, reports, state = root / "studies", root / "reports", root / "state"
    lineage = json.loads((reports / "nation" / "manifest.json").read_text())["release"]["lineage"]
    nation_ledger = _files(state / lineage / "published" / "nation")
    assert nation_ledger  # the report has tables: its ledger is not empty
    (studies / "nation.yaml").unlink()  # the study is gone
    years = yaml.safe_load((studies / "years.yaml").read_text())
    years["matrix"]["year_to"] = [2024]  # one combination is gone
    (studies / "years.yaml").write_text(yaml.safe_dump(years))
    (studies / "capital.yaml").write_text("id: capital\ntitle: [unclosed\n")  # unreadable: its report is unknown, kept

    dry = _cli("prune", *where, "--json")
    assert dry.returncode == 0, dry.stderr
    listed = {o["report"]: o for o in json.loads(dry.stdout)["orphans"]}
    assert set(listed) == {"nation", "years/year_to-2020"}
    assert "is gone" in listed["nation"]["why"] and "matrix" in listed["years/year_to-2020"]["why"]
    assert (reports / "nation" / "report.html").is_file() and (state / "runs" / "nation").is_dir()  # a dry run removes nothing

    # the index marks them (rewritten by any run; this one has nothing to do)
    assert _cli("run", "years", *where, "--quiet").returncode == 0
    index = (reports / "index.html").read_text()
    rows = {key: row for row in index.split("<tr>")[1:] for key in ("nation", "year_to-2020", "year_to-2024", "capital")
            if f"<code>{key}</code>" in row or f"· {key}" in row}
    assert "orphaned" in rows["nation"] and "studylib prune" in rows["nation"]
    assert "orphaned" in rows["year_to-2020"]
    assert "orphaned" not in rows["year_to-2024"] and "orphaned" not in rows["capital"]

    done = _cli("prune", *where, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nation" in done.stdout and "year_to-2020" in done.stdout
    assert not (reports / "nation").exists() and not (reports / "years" / "year_to-2020").exists()
    assert not (state / "runs" / "nation").exists() and not (state / "runs" / "years" / "year_to-2020").exists()
    assert (reports / "years" / "year_to-2024" / "report.html").is_file() and (reports / "capital" / "report.html").is_file()
    assert (state / "runs" / "years" / "year_to-2024" / "notebook.ipynb").is_file()
    # the pruned ledger was out there: it moved, byte for byte, to the history (later releases stay protected against it)
    assert not (state / lineage / "published" / "nation").exists()
    moved = [p for p in (state / lineage / "history").iterdir() if p.name.endswith("-nation-pruned")]
    assert len(moved) == 1 and _files(moved[0]) == nation_ledger
    assert (state / lineage / "published" / "years__year_to-2024").is_dir()
    index = (reports / "index.html").read_text()
    assert "<code>nation</code>" not in index and "year_to-2020" not in index and "year_to-2024" in index
    again = _cli("prune", *where)
    assert again.returncode == 0 and "nothing to prune" in again.stderr


def test_a_ledger_published_since_from_another_reports_folder_stays(project):
    root, where = project
    studies, reports, state = root / "studies", root / "reports", root / "state"
    lineage = json.loads((reports / "nation" / "manifest.json").read_text())["release"]["lineage"]
    other = root / "elsewhere"  # a second project sharing the runner's state
    (other / "studies").mkdir(parents=True)
    study = yaml.safe_load((studies / "nation.yaml").read_text())
    study["template"] = str(root / "templates" / "by_sector.ipynb")
    (other / "studies" / "nation.yaml").write_text(yaml.safe_dump(study))
    done = _cli("run", str(other / "studies" / "nation.yaml"), "--studies", str(other / "studies"), "--reports",
                str(other / "reports"), "--state", str(state), "-p", "year_to=2022", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    published = _files(state / lineage / "published" / "nation")
    (studies / "nation.yaml").unlink()
    done = _cli("prune", *where, "--yes", "--json")
    assert done.returncode == 0, done.stderr
    [orphan] = json.loads(done.stdout)["orphans"]
    assert orphan["report"] == "nation" and not any("release ledger" in line for line in orphan["removes"])
    assert not (reports / "nation").exists()
    assert (state / "runs" / "nation" / "notebook.ipynb").is_file()  # the kept run of the other folder's version stays
    assert _files(state / lineage / "published" / "nation") == published  # the other folder's version stays published
    assert (other / "reports" / "nation" / "report.html").is_file()


def test_prune_refuses_without_study_files(tmp_path):
    (tmp_path / "studies").mkdir()
    done = _cli("prune", "--studies", str(tmp_path / "studies"), "--reports", str(tmp_path / "reports"), "--yes")
    assert done.returncode == 2 and "no study files" in done.stderr
