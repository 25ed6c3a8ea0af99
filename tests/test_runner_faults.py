"""Faults on real kernels and real files: a cell that raises, a dying kernel, a hanging cell, a
report past its timeout, SIGTERM to a batch, two batches at once, a full disk. The other reports
complete, the last good reports stay intact, nothing partial is published, and the message says
which study, which cell and why."""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from runner_fixtures import make_dataset, write_study
from studylib.runner.batch import BatchSettings, run_batch
from studylib.runner.lock import report_lock
from studylib.runner.planning import plan_batch
from studylib.runner.scheduling import longest_first
from studylib.runner.study import find_studies

pytestmark = pytest.mark.slow

DRILL = [
    ("md", "# Fault drill", "remove-cell"),
    ("code", "data_dir: str = ''  # dataset folder\nmode: str = 'ok'  # ok, raise, die, hang or big\nseconds: float = 0  # sleep this long in cell 5", "parameters"),
    ("md", "## Work"),
    ("code", "import os, sys, time\nprint('study', os.environ['STUDYLIB_STUDY_ID'], 'disclosure', os.environ['STUDYLIB_DISCLOSURE'], file=sys.stderr)"),
    ("code", "time.sleep(seconds)"),
    ("code", "if mode == 'raise':\n    raise ValueError('the data say no')\nif mode == 'die':\n    os._exit(3)\n"
             "if mode == 'hang':\n    time.sleep(3600)\nif mode == 'big':\n    print('x' * 3_000_000)"),
    ("code", "if mode == 'leak':\n    from IPython.display import HTML, display\n    display(HTML('<table><tr><td>persons</td><td>3</td></tr></table>'))"),
    ("md", "## Done"),
    ("code", "print('done', file=sys.stderr)"),
]


def _template(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source, *tags in DRILL:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _study(root: Path, study_id: str, data: Path, cell: float = 60, report: float = 120, **parameters) -> Path:
    return write_study(root, {
        "id": study_id, "title": f"Drill {study_id}", "template": "../templates/drill.ipynb", "data": str(data),
        "parameters": parameters, "disclosure": {"min_cell": 5}, "formats": ["html", "pdf"],
        "timeout": {"cell": cell, "report": report},
    })


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _good(reports: Path, key: str) -> dict[str, str]:
    return {name: _sha(reports / key / name) for name in ("report.html", "report.pdf", "manifest.json")}


def _leftovers(reports: Path) -> list[Path]:
    return [p for p in (reports / ".staging").glob("*")] + [p for p in reports.rglob(".*.old-*")]


def _staff(reports: Path) -> Path:
    """The staff area of failed runs (the runner's state folder beside the reports)."""
    return reports.resolve().parent / ".studylib-state" / "failed"


def _kernel_folders(tmp: Path) -> list[Path]:
    return list(tmp.glob("studylib-kernel-*"))


def _processes_in(folder: Path) -> list[int]:
    """Processes working in ``folder`` or naming it on their command line (kernels, launched or forked)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmdline or Path(cwd).is_relative_to(folder):
            found.append(int(proc.name))
    return found


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    """A project with five drill studies, all published once in good shape."""
    root = tmp_path_factory.mktemp("drill")
    data = make_dataset(root / "dataset", n=60)
    _template(root / "templates" / "drill.ipynb")
    for name in ("f_ok", "f_raise", "f_die", "f_hang", "f_slow", "f_leak"):
        _study(root, name, data)
    tmp = root / "tmp"
    tmp.mkdir()
    settings = BatchSettings(reports=root / "reports", workers=2, studies_dir=root / "studies")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(tmp))
        first = run_batch(find_studies(root / "studies"), settings)
    assert [o.status for o in first.outcomes] == ["published"] * 6, [o.message for o in first.outcomes]
    return root, data, settings, tmp


@pytest.fixture(scope="module")
def faulty(drill):
    """The same studies gone wrong in four ways, run as one batch."""
    root, data, settings, tmp = drill
    before = {k: _good(settings.reports, k) for k in ("f_ok", "f_raise", "f_die", "f_hang", "f_slow", "f_leak")}
    _study(root, "f_ok", data, seconds=0.1)
    _study(root, "f_raise", data, mode="raise")
    _study(root, "f_die", data, mode="die")
    _study(root, "f_hang", data, cell=2, mode="hang")
    _study(root, "f_slow", data, report=3, seconds=60)
    _study(root, "f_leak", data, mode="leak")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(tmp))
        result = run_batch(find_studies(root / "studies"), settings)
    return result, before


def test_other_reports_complete_and_each_failure_names_study_cell_and_why(faulty):
    result, _ = faulty
    by_key = {o.key: o for o in result.outcomes}
    assert by_key["f_ok"].status == "published"
    assert {k: by_key[k].status for k in ("f_raise", "f_die", "f_hang", "f_slow")} == dict.fromkeys(("f_raise", "f_die", "f_hang", "f_slow"), "failed")
    assert not result.ok
    cell = "cell 6 (\"if mode == 'raise':\", section 'Work')"
    assert by_key["f_raise"].message == f"f_raise: {cell}: raised ValueError: the data say no"
    assert by_key["f_die"].message.startswith(f"f_die: {cell}: the kernel died")
    assert by_key["f_hang"].message == f"f_hang: {cell}: ran longer than the cell timeout of 2 s"
    assert by_key["f_slow"].message.startswith("f_slow: cell 5 ('time.sleep(seconds)', section 'Work'): the report ran longer than its timeout of 3 s")
    assert [by_key[k].kind for k in ("f_raise", "f_die", "f_hang", "f_slow")] == ["error", "kernel_died", "cell_timeout", "report_timeout"]


def test_a_report_that_fails_the_audit_is_never_published(faulty, drill):
    result, before = faulty
    reports = drill[2].reports
    leak = next(o for o in result.outcomes if o.key == "f_leak")
    assert leak.status == "failed" and leak.kind == "audit"
    assert leak.message.startswith("f_leak: the disclosure audit failed: ") and "table without the safe marker" in leak.message
    assert _good(reports, "f_leak") == before["f_leak"]
    assert sorted(p.name for p in (_staff(reports) / "f_leak").iterdir()) == ["failure.json", "notebook.ipynb", "run.log"]
    assert not (reports / "f_leak" / "failed").exists()


def test_last_good_reports_stay_and_failed_runs_leave_notebook_and_log(faulty, drill):
    result, before = faulty
    root, _, settings, tmp = drill
    reports = settings.reports
    for key in ("f_raise", "f_die", "f_hang", "f_slow"):
        assert _good(reports, key) == before[key], f"{key}: the last good report changed"
        failed = _staff(reports) / key
        assert not (reports / key / "failed").exists()
        assert sorted(p.name for p in failed.iterdir()) == ["failure.json", "notebook.ipynb", "run.log"]
        record = json.loads((failed / "failure.json").read_text())
        assert record["study"] == key and record["message"] == next(o.message for o in result.outcomes if o.key == key)
        nb = nbformat.read(failed / "notebook.ipynb", as_version=4)
        banner = nb.cells[0].source
        assert "papermill-error-cell-tag" in nb.cells[0].metadata.get("tags", []) or "studylib-error" in nb.cells[0].metadata.get("tags", []), banner
        assert f'study {key} disclosure {{"margins": true, "merge": {{}}, "min_cell": 5' in (failed / "run.log").read_text()
    assert _good(reports, "f_ok") != before["f_ok"]
    assert not (_staff(reports) / "f_ok").exists()
    assert _leftovers(reports) == []
    assert _kernel_folders(tmp) == []
    index = (reports / "index.html").read_text()
    assert index.count("class=\"status-failed\"") == 5 and "run.log" not in index and "see the staff index" in index
    assert "f_raise/run.log" in (_staff(reports) / "index.html").read_text()


def test_a_failure_is_superseded_by_the_next_good_run(drill, faulty):
    root, data, settings, tmp = drill
    _study(root, "f_raise", data, mode="ok", seconds=0.2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(tmp))
        again = run_batch([root / "studies" / "f_raise.yaml"], settings)
    assert [o.status for o in again.outcomes] == ["published"]
    assert not (_staff(settings.reports) / "f_raise").exists()


# --- whole batches in their own processes ----------------------------------------------------------


def _cli(*args: str, env: dict | None = None, limit_bytes: int | None = None) -> subprocess.Popen:
    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.Popen(
        [sys.executable, "-m", "studylib.cli", "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "250", **(env or {})}, preexec_fn=limit,
    )


@pytest.fixture(scope="module")
def sleepers(tmp_path_factory):
    """Three studies that take a few seconds each, published once."""
    root = tmp_path_factory.mktemp("sleepers")
    data = make_dataset(root / "dataset", n=60)
    _template(root / "templates" / "drill.ipynb")
    for name in ("s1", "s2", "s3"):
        _study(root, name, data, seconds=0)
    settings = BatchSettings(reports=root / "reports", workers=2, studies_dir=root / "studies")
    assert run_batch(find_studies(root / "studies"), settings).ok
    for name in ("s1", "s2", "s3"):
        _study(root, name, data, seconds=3)
    return root, settings


def test_sigterm_stops_a_batch_without_publishing_anything_half_done(sleepers, request):
    root, settings = sleepers
    before = {k: _good(settings.reports, k) for k in ("s1", "s2", "s3")}
    # a short folder of its own: a temp root of 60 characters or more (pytest's under xdist) is
    # not used for kernel sockets, and the kernels would go to /tmp where the test cannot see them
    tmp = Path(tempfile.mkdtemp(prefix="sigterm-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(tmp, ignore_errors=True))
    proc = _cli("--all", "--studies", str(root / "studies"), "--reports", str(settings.reports), "--workers", "2", env={"TMPDIR": str(tmp)})
    deadline = time.monotonic() + 60
    while not _kernel_folders(tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _kernel_folders(tmp), "no kernel started"
    while not _processes_in(root / "templates") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_in(root / "templates"), "no kernel runs in the templates folder"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, out + err
    assert "cancelled" in out and "cancelled by signal" in err
    assert {k: _good(settings.reports, k) for k in ("s1", "s2", "s3")} == before
    assert _leftovers(settings.reports) == []
    assert _kernel_folders(tmp) == []
    deadline = time.monotonic() + 10  # a killed kernel may take a moment to leave the process table
    while (_processes_in(root / "templates") or _processes_in(tmp)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_in(root / "templates") == [] and _processes_in(tmp) == [], "a kernel outlived its batch"


def test_two_batches_at_once_write_each_report_once(sleepers):
    root, settings = sleepers
    reports = root / "reports-twice"
    args = ("--all", "--studies", str(root / "studies"), "--reports", str(reports))
    first, second = _cli(*args), _cli(*args)
    outputs = [p.communicate(timeout=240) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    text = "\n".join(out for out, _ in outputs)
    assert len(re.findall(r"│ s\d\s+│ published", text)) == 3, text
    assert len(re.findall(r"│ s\d\s+│ skipped", text)) == 3, text
    for key in ("s1", "s2", "s3"):
        manifest = json.loads((reports / key / "manifest.json").read_text())
        assert manifest["files"]["report.pdf"]["sha256"] == _sha(reports / key / "report.pdf")
    assert _leftovers(reports) == []


def test_a_report_another_run_is_writing_does_not_hold_back_the_rest_of_the_batch(sleepers):
    """While one report waits for another run's lock, the batch's other reports pass the release gate
    without it (they would otherwise wait for it, and two batches at once would wait on each other)."""
    root, settings = sleepers
    reports = root / "reports-locked"
    assert run_batch(find_studies(root / "studies"), BatchSettings(reports=reports, workers=2)).ok
    before = {k: _good(reports, k) for k in ("s1", "s2", "s3")}
    with report_lock(reports, "s3", wait=1):  # another run is writing s3
        proc = _cli("--all", "--force", "--studies", str(root / "studies"), "--reports", str(reports))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(_good(reports, k) == before[k] for k in ("s1", "s2")):
            time.sleep(0.2)
        assert all(_good(reports, k) != before[k] for k in ("s1", "s2")), "s1 and s2 waited for s3's lock"
        assert _good(reports, "s3") == before["s3"] and proc.poll() is None
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert len(re.findall(r"│ s\d\s+│ published", out)) == 3, out  # s3 too, once its lock was free


def test_a_report_another_run_is_writing_gives_its_kernel_turn_to_the_next(sleepers):
    """With one kernel at a time, the report queued first waits for another run's lock: the reports
    queued after it run meanwhile (kept in the queue, they would wait for it, and two batches at
    once, each waiting for a report the other writes, would wait on each other for ever)."""
    root, settings = sleepers
    reports = root / "reports-queue"
    queued = longest_first(plan_batch(find_studies(root / "studies"), BatchSettings(reports=reports)).run, reports)
    first, rest = queued[0].key, [r.key for r in queued[1:]]
    with report_lock(reports, first, wait=1):  # another run is writing the first report
        proc = _cli("--all", "--workers", "1", "--studies", str(root / "studies"), "--reports", str(reports))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all((reports / k / "manifest.json").is_file() for k in rest):
            time.sleep(0.2)
        assert all((reports / k / "manifest.json").is_file() for k in rest), f"{rest} waited for {first}'s kernel turn"
        assert not (reports / first / "manifest.json").exists() and proc.poll() is None
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert len(re.findall(r"│ s\d\s+│ published", out)) == 3, out


def test_a_full_disk_fails_the_report_and_keeps_the_last_good_one(sleepers):
    root, settings = sleepers
    data = Path(yaml.safe_load((root / "studies" / "s1.yaml").read_text())["data"])
    before = _good(settings.reports, "s1")
    _study(root, "s1", data, mode="big")
    try:
        proc = _cli(str(root / "studies" / "s1.yaml"), "--reports", str(settings.reports), limit_bytes=1_000_000)
        out, err = proc.communicate(timeout=120)
    finally:
        _study(root, "s1", data, seconds=3)
    assert proc.returncode == 1, out + err
    assert "s1" in out and "File too large" in out and "could not write the report" in out
    assert _good(settings.reports, "s1") == before
    failed = _staff(settings.reports) / "s1"
    kept = {path.name: path for path in failed.iterdir()}
    assert "failure.json" in kept, sorted(kept)
    assert json.loads(kept["failure.json"].read_text())["study"] == "s1"
    for path in kept.values():  # whatever else was kept of the failed run is complete
        if path.suffix in (".json", ".ipynb"):
            json.loads(path.read_text())
    assert _leftovers(settings.reports) == []


def test_many_kernels_start_at_once_without_colliding(tmp_path):
    """Six kernels started together: each has its own IPC sockets in a private folder (no TCP ports)."""
    data = make_dataset(tmp_path / "dataset", n=30)
    _template(tmp_path / "templates" / "drill.ipynb")
    names = [f"k{i}" for i in range(6)]
    for name in names:
        _study(tmp_path, name, data)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    seen: set[str] = set()
    real_folder = tempfile.mkdtemp

    def watching(*args, **kwargs):
        folder = real_folder(*args, **kwargs)
        if "studylib-kernel-" in folder:
            seen.add(folder)
        return folder

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(tmp))
        mp.setattr(tempfile, "mkdtemp", watching)
        result = run_batch(find_studies(tmp_path / "studies"), BatchSettings(reports=tmp_path / "reports", workers=6))
    assert [o.status for o in result.outcomes] == ["published"] * 6, [o.message for o in result.outcomes]
    assert len(seen) == 6, "one private folder per kernel"
    assert not any(Path(f).exists() for f in seen), "removed afterwards"


SAVES = [
    ("code", "out: str = ''  # the output notebook, read back by the next cell\nmode: str = 'ok'", "parameters"),
    ("code", "print('first cell ran')"),
    ("code", "import json\nsaved = json.load(open(out))\n"
             "print('saved outputs', sum(len(c.get('outputs', [])) for c in saved['cells']))"),
    ("code", "if mode == 'raise':\n    raise ValueError('stop here')\nprint('last cell ran')"),
]


@pytest.mark.parametrize("mode", ["ok", "raise"])
def test_the_output_notebook_is_written_at_the_start_and_the_end_not_after_every_cell(tmp_path, mode):
    """papermill's engine rewrites the notebook around every cell; ours writes it when the run starts and
    when it ends (a failed run too), so a cell that reads it back finds it as it was at the start."""
    from studylib.runner.execute import ExecutionFailure, Limits, execute_report

    template = tmp_path / "saves.ipynb"
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    for kind, source, *tags in SAVES:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    nbformat.write(nb, template)
    output = tmp_path / "out.ipynb"
    run = lambda: execute_report(template, output, {"out": str(output), "mode": mode}, env={}, cwd=tmp_path,  # noqa: E731
                                 limits=Limits(cell=60, report=120))
    if mode == "raise":
        with pytest.raises(ExecutionFailure, match="stop here"):
            run()
    else:
        run()
    final = nbformat.read(output, as_version=4)
    texts = ["".join(o.get("text", "") for o in c.get("outputs", []) if o.get("output_type") == "stream") for c in final.cells]
    assert "first cell ran" in "".join(texts)
    assert any("saved outputs 0" in t for t in texts), texts  # read back mid-run: as written at the start
    if mode == "raise":
        assert any(o.get("ename") == "ValueError" for c in final.cells for o in c.get("outputs", []))
    else:
        assert any("last cell ran" in t for t in texts)
