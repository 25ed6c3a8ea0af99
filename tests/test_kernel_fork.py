"""Kernels forked from a batch's preloaded process behave as launched kernels do.

Real kernels run a probe notebook with papermill, once launched the usual way and once
forked from the fork server: the same working folder, environment (no secrets), module
path, matplotlib backend and settings; a fresh random state each; only the parent differs.
When the batch process is killed, the server and its kernels go too; a server that is
gone leaves kernels to be launched as usual.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from studylib.runner import kernel_fork
from studylib.runner.execute import Limits, execute_report
from studylib.runner.kernel import kernel_environment
from studylib.runner.template import studylib_imports

pytestmark = pytest.mark.slow

PROBE = """\
import json, os, sys
import numpy as np
import matplotlib
import beside
print(json.dumps({
    "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
    "report": os.environ.get("STUDYLIB_REPORT"), "secret": "PROBE_API_TOKEN" in os.environ,
    "beside": beside.VALUE, "random": float(np.random.random()),
    "backend": matplotlib.get_backend(), "dpi": matplotlib.rcParams["figure.dpi"],
    "argv0": os.path.basename(sys.argv[0]), "parent_handle": get_ipython().kernel.parent.parent_handle
        if hasattr(get_ipython().kernel, "parent") else None,
}))
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe") / "templates"
    folder.mkdir()
    (folder / "beside.py").write_text("VALUE = 42\n")
    (folder / "matplotlibrc").write_text("figure.dpi: 123\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(PROBE)]
    template = folder / "probe.ipynb"
    nbformat.write(nb, template)
    return template


def _run(template: Path, report: str) -> dict:
    nb = execute_report(template, template.parent.parent / f"{report}.ipynb", {}, env={"STUDYLIB_REPORT": report},
                        cwd=template.parent, limits=Limits(cell=60, report=120))
    return json.loads(nb.cells[0].outputs[0]["text"])


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in {"Z", "X"}  # a zombie has ended; only its parent's bookkeeping is left


def test_a_forked_kernel_sees_what_a_launched_kernel_sees(probe, monkeypatch):
    monkeypatch.setenv("PROBE_API_TOKEN", "not for kernels")
    launched = _run(probe, "launched")
    with kernel_fork.batch_forks(kernel_environment({})) as forks:
        assert forks is not None and kernel_fork.active() is forks
        assert forks.prefix == kernel_fork.launch_prefix(kernel_fork.spec_command())  # the spec's options, if any
        first, second = _run(probe, "first"), _run(probe, "second")
    assert kernel_fork.active() is None
    assert launched["ppid"] == os.getpid()
    assert first["ppid"] == second["ppid"] == forks.pid != os.getpid()
    assert first["pid"] != second["pid"]
    same = ("cwd", "secret", "beside", "backend", "dpi", "argv0")
    assert {k: first[k] for k in same} == {k: second[k] for k in same} == {k: launched[k] for k in same}
    assert launched["cwd"] == str(probe.parent) and launched["secret"] is False and launched["dpi"] == 123
    assert (launched["report"], first["report"], second["report"]) == ("launched", "first", "second")
    assert first["random"] != second["random"]  # each kernel has its own random state, as a new process would
    assert first["parent_handle"] == forks.pid  # ipykernel watches its parent, as it does when launched


def test_the_server_runs_with_the_python_and_options_of_the_kernel_spec():
    python = os.path.abspath(sys.executable)
    assert kernel_fork.launch_prefix([sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "k.json"]) \
        == (python, ("-Xfrozen_modules=off",))
    assert kernel_fork.launch_prefix([sys.executable, "-m", "ipykernel_launcher", "-f", "k.json"]) == (python, ())
    assert kernel_fork.launch_prefix(["R", "--slave", "-e", "IRkernel::main()", "--args", "k.json"]) is None
    with kernel_fork.KernelForks(kernel_environment({}), [sys.executable, "-X", "utf8", "-m", "ipykernel_launcher"]) as forks:
        assert forks.can_launch([sys.executable, "-X", "utf8", "-m", "ipykernel_launcher", "-f", "k.json"])
        assert not forks.can_launch([sys.executable, "-m", "ipykernel_launcher", "-f", "k.json"])
        deadline = time.monotonic() + 30  # on a loaded machine the server may still be starting
        while not (command := Path(f"/proc/{forks.pid}/cmdline").read_bytes().split(b"\0"))[1:] and time.monotonic() < deadline:
            time.sleep(0.1)
        state = Path(f"/proc/{forks.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert command[1:5] == [b"-X", b"utf8", b"-m", b"studylib.runner.kernel_fork"], (command, "process state", state)
        assert command[1:5] == [b"-X", b"utf8", b"-m", b"studylib.runner.kernel_fork"]


def test_kernel_fork_0_launches_every_kernel_as_its_own_process(probe, monkeypatch):
    monkeypatch.setenv(kernel_fork.SWITCH, "0")
    with kernel_fork.batch_forks(kernel_environment({})) as forks:
        assert forks is None
        assert _run(probe, "plain")["ppid"] == os.getpid()


def test_a_server_that_is_gone_leaves_kernels_to_be_launched_as_usual(probe):
    with kernel_fork.batch_forks(kernel_environment({})) as forks:
        os.kill(forks.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not _gone(forks.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _run(probe, "after")["ppid"] == os.getpid()


BATCH = """
import asyncio, sys, time
from studylib.runner import kernel_fork
from studylib.runner.kernel import StudyKernel, kernel_environment
with kernel_fork.batch_forks(kernel_environment({})) as forks:
    km = StudyKernel(kernel_folder=sys.argv[1], kernel_name="python3")
    asyncio.run(km.start_kernel())
    print(km.provisioner.pid, forks.pid, flush=True)
    time.sleep(120)
"""


def test_when_the_batch_is_killed_its_server_and_kernels_end(tmp_path):
    folder = tmp_path / "k"
    folder.mkdir()
    batch = subprocess.Popen([sys.executable, "-c", BATCH, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        kernel, server = map(int, batch.stdout.readline().split())
        assert not _gone(kernel) and not _gone(server)
    finally:
        batch.kill()
        batch.wait()
    deadline = time.monotonic() + 15
    while not (_gone(kernel) and _gone(server)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(server), "the fork server outlived its batch"
    assert _gone(kernel), "a forked kernel outlived its batch"


def test_studylib_imports_lists_the_modules_a_template_loads(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import pandas as pd\nimport studylib.report\nfrom studylib import paths"),
        nbformat.v4.new_code_cell("%matplotlib inline\nimport studylib.privacy"),  # magics: not Python, skipped
        nbformat.v4.new_markdown_cell("import studylib.synthetic"),
        nbformat.v4.new_code_cell("from studylib.analysis import extent, estimate_population\nfrom . import x\n"
                                  "def f():\n    import studylib.indicators.classification"),
    ]
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, path)
    assert studylib_imports(path) == ["studylib.report", "studylib", "studylib.paths", "studylib.analysis",
                                      "studylib.analysis.extent", "studylib.indicators.classification"]
    assert studylib_imports(tmp_path / "missing.ipynb") == []


CACHES = """\
import importlib, json
from studylib.data.form_catalogue import form_catalogue
indicators = importlib.import_module("studylib.indicators.catalogue")
before = {"forms": form_catalogue.cache_info().currsize, "indicators": indicators._read_checked.cache_info().currsize}
table = indicators.catalogue()
print(json.dumps({**before, "version": table.attrs["version"], "rows": len(table), "steps": len(form_catalogue().referral)}))
"""


def test_a_forked_kernel_finds_the_catalogues_already_read(tmp_path):
    """The server reads the indicator and form catalogues once; a forked kernel starts with them, a launched one reads them."""
    folder = tmp_path / "templates"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(CACHES)]
    template = folder / "caches.ipynb"
    nbformat.write(nb, template)
    launched = _run(template, "launched")
    with kernel_fork.batch_forks(kernel_environment({})):
        forked = _run(template, "forked")
    assert (launched["forms"], launched["indicators"]) == (0, 0)
    assert (forked["forms"], forked["indicators"]) == (1, 1)
    same = ("version", "rows", "steps")
    assert {k: forked[k] for k in same} == {k: launched[k] for k in same}
