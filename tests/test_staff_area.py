"""Failed runs for staff only, and nothing left behind by a killed batch (issue 12, items 4 and 6).

A failed run's notebook and log go to ``<state>/failed/<key>/`` (mode 700), audited first
(the verdict in ``failure.json``); the public index links none of them, the staff index
does. A batch killed with SIGKILL takes its fork server and kernels with it within 2 s,
and the next run removes the kernel folder it left in the temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from runner_fixtures import make_dataset, write_study
from studylib.runner.batch import BatchSettings, run_batch
from studylib.runner.study import find_studies

pytestmark = pytest.mark.slow

LEAK = ("from IPython.display import HTML, display\n"
        "display(HTML('<table><tr><td>persons</td><td>3</td></tr></table>'))\n"
        "raise ValueError('the data say no')")
CLEAN = "raise ValueError('the data say no')"
HANG = ("import os, time, pathlib\n"
        "ledger = pathlib.Path(os.environ['STUDYLIB_LEDGER'])\n"
        "ledger.mkdir(parents=True, exist_ok=True)\n"
        "(ledger / 'pids.tmp').write_text(f\"{os.getpid()} {os.environ['JPY_PARENT_PID']}\")\n"
        "(ledger / 'pids.tmp').rename(ledger / 'pids')\n"
        "time.sleep(600)")


def _template(path: Path, source: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("data_dir: str = ''")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(source)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def _study(root: Path, study_id: str, template: str, data: Path) -> None:
    write_study(root, {"id": study_id, "title": f"Staff {study_id}", "template": f"../templates/{template}.ipynb",
                       "data": str(data), "disclosure": {"min_cell": 5}, "formats": ["html"],
                       "timeout": {"cell": 120, "report": 240}})


def test_failed_runs_go_to_the_staff_area_audited_and_only_the_staff_index_links_them(tmp_path):
    data = make_dataset(tmp_path / "dataset", n=40)
    _template(tmp_path / "templates" / "leak.ipynb", LEAK)
    _template(tmp_path / "templates" / "clean.ipynb", CLEAN)
    _study(tmp_path, "leaky", "leak", data)
    _study(tmp_path, "clean", "clean", data)
    reports = tmp_path / "reports"
    result = run_batch(find_studies(tmp_path / "studies"), BatchSettings(reports=reports, workers=2))
    assert sorted(o.status for o in result.outcomes) == ["failed", "failed"]

    staff = tmp_path / ".studylib-state" / "failed"
    assert stat.S_IMODE(staff.stat().st_mode) == 0o700
    assert stat.S_IMODE(staff.parent.stat().st_mode) == 0o700
    for key in ("leaky", "clean"):
        assert sorted(p.name for p in (staff / key).iterdir()) == ["failure.json", "notebook.ipynb", "run.log"]
        assert not (reports / key).exists()  # nothing of a failed run under reports/
    leaky = json.loads((staff / "leaky" / "failure.json").read_text())
    clean = json.loads((staff / "clean" / "failure.json").read_text())
    assert leaky["audit"]["passed"] is False
    assert any("safe marker" in f for f in leaky["audit"]["findings"]), leaky["audit"]
    assert not any("safe marker" in f for f in clean["audit"]["findings"]), clean["audit"]  # the other side: no table, no such finding

    public = (reports / "index.html").read_text()
    links = re.findall(r'href="([^"]+)"', public)
    assert links == []  # no report was published, and no failed file is linked
    assert public.count("see the staff index") == 2 and "notebook" not in public and "studylib-state" not in public
    index = (staff / "index.html").read_text()
    assert set(re.findall(r'href="([^"]+)"', index)) == {f"{k}/{n}" for k in ("leaky", "clean")
                                                           for n in ("run.log", "notebook.ipynb", "failure.json")}
    assert f'{len(leaky["audit"]["findings"])} findings' in index


def _wait_for(path: Path, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_a_killed_batch_takes_its_fork_server_and_kernels_with_it_and_the_next_run_cleans_up(tmp_path):
    data = make_dataset(tmp_path / "dataset", n=40)
    _template(tmp_path / "templates" / "hang.ipynb", HANG)
    _study(tmp_path, "hang", "hang", data)
    driver = ("import sys; from pathlib import Path; from studylib.runner.batch import BatchSettings, run_batch; "
              "from studylib.runner.study import find_studies; root = Path(sys.argv[1]); "
              "run_batch(find_studies(root / 'studies'), BatchSettings(reports=root / 'reports', workers=1))")
    batch = subprocess.Popen([sys.executable, "-c", driver, str(tmp_path)], stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    try:
        state = tmp_path / ".studylib-state"
        deadline = time.monotonic() + 120
        while not list(state.glob("*/.runs/*/ledger-1/pids")):
            assert batch.poll() is None, batch.stderr.read()
            assert time.monotonic() < deadline, "the kernel never started"
            time.sleep(0.05)
        kernel, server = map(int, next(state.glob("*/.runs/*/ledger-1/pids")).read_text().split())
        folders = list(Path("/tmp").glob(f"studylib-kernel-{batch.pid}-*"))
        assert len(folders) == 1
        watched = {os.pidfd_open(kernel): "kernel", os.pidfd_open(server): "fork server"}
        batch.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while watched and time.monotonic() - killed < 2.0:
            for fd in select.select(list(watched), [], [], max(0.0, 2.0 - (time.monotonic() - killed)))[0]:
                os.close(fd)
                del watched[fd]
        assert not watched, f"still running 2 s after the batch was killed: {sorted(watched.values())}"
    finally:
        batch.kill()
        batch.wait()
    assert folders[0].exists()  # a killed batch cannot clean up ...
    run_batch([], BatchSettings(reports=tmp_path / "reports"))
    assert not folders[0].exists()  # ... the next run does
