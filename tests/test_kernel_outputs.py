"""A forked kernel and a launched kernel give the same outputs for the same notebook (issue 15, item 9).

The same notebook runs in a kernel launched the usual way (``STUDYLIB_KERNEL_FORK=0``) and in one
forked from the batch's fork server; every output is compared, cell by cell: its type, its MIME
bundle and its content (a ``plt.show()`` gives a PNG in both, and the same PNG), plus the display
formatters, the displayhook and every matplotlib setting the kernel ends up with.
"""

from __future__ import annotations

import base64
import json
import struct

import nbformat
import pytest

from studylib.runner import kernel_fork
from studylib.runner.execute import Limits, execute_report
from studylib.runner.kernel import kernel_environment

pytestmark = pytest.mark.slow

CELLS = [
    "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 3, 2])\nplt.show()",
    "fig2, ax2 = plt.subplots(figsize=(3, 2))\nax2.bar(['a', 'b'], [2, 5])\nfig2",
    "import pandas as pd\npd.DataFrame({'sector': ['au_pair', 'cleaning'], 'share': [0.25, 0.75]})",
    "from IPython.display import Markdown, display\ndisplay(Markdown('**bold**'))\nprint('plain text')",
    "import json, sys, matplotlib\nip = get_ipython()\n"
    "print(json.dumps({'backend': matplotlib.get_backend(), 'interactive': matplotlib.is_interactive(),\n"
    "    'rc': {k: repr(v) for k, v in sorted(matplotlib.rcParams.items())},\n"
    "    'active_types': list(ip.display_formatter.active_types),\n"
    "    'png_printers': sorted(f'{t.__module__}.{t.__qualname__}' for t in ip.display_formatter.formatters['image/png'].type_printers),\n"
    "    'displayhook': type(sys.displayhook).__name__, 'post_execute': len(ip.events.callbacks['post_execute']),\n"
    "    'figures_open': len(plt.get_fignums())}))",
]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    folder = tmp_path_factory.mktemp("outputs") / "templates"
    folder.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "outputs.ipynb"
    nbformat.write(nb, path)
    return path


def _outputs(template, name: str) -> list[list[dict]]:
    nb = execute_report(template, template.parent.parent / f"{name}.ipynb", {}, env={}, cwd=template.parent,
                        limits=Limits(cell=120, report=300))
    return [[{k: v for k, v in output.items() if k not in ("execution_count", "metadata")} for output in cell.outputs]
            for cell in nb.cells]


def _png_size(data: str) -> tuple[int, int]:
    raw = base64.b64decode(data)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", raw[16:24])


def test_a_forked_and_a_launched_kernel_give_the_same_outputs(template, monkeypatch):
    monkeypatch.setenv(kernel_fork.SWITCH, "0")
    with kernel_fork.batch_forks(kernel_environment({})) as none:
        assert none is None
        launched = _outputs(template, "launched")
    monkeypatch.delenv(kernel_fork.SWITCH)
    with kernel_fork.batch_forks(kernel_environment({})) as forks:
        assert forks is not None
        forked = _outputs(template, "forked")

    for outputs in (launched, forked):
        [shown] = outputs[0]  # plt.show(): an image, not the text "<Figure size 640x480 with 1 Axes>"
        assert shown["output_type"] == "display_data" and "image/png" in shown["data"], shown
        assert _png_size(shown["data"]["image/png"])[0] > 100
        assert outputs[1] and all("image/png" in o["data"] for o in outputs[1]), outputs[1]  # a figure as a result
        assert "text/html" in outputs[2][0]["data"]
        assert [o["output_type"] for o in outputs[3]] == ["display_data", "stream"]

    probe_launched, probe_forked = (json.loads(o[4][0]["text"]) for o in (launched, forked))
    assert probe_launched["backend"] == probe_forked["backend"] == "module://matplotlib_inline.backend_inline"
    differing = {k: (probe_launched["rc"][k], probe_forked["rc"].get(k)) for k in probe_launched["rc"]
                 if probe_launched["rc"][k] != probe_forked["rc"].get(k)}
    assert not differing, differing
    assert probe_launched == probe_forked
    assert launched[:4] == forked[:4]  # every output, byte for byte: the PNGs too


def test_the_fork_server_never_loads_the_inline_backend_before_a_shell_exists():
    """What the server imports (its preload and the studylib modules of every template) leaves the
    inline backend unloaded: loaded there, it would find no shell and register no figure formatter."""
    import subprocess
    import sys
    from pathlib import Path

    from studylib.runner.template import studylib_imports

    root = Path(__file__).resolve().parents[1]
    modules = sorted({*kernel_fork.PRELOAD, *(m for t in (root / "templates").glob("*.ipynb") for m in studylib_imports(t))})
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            "print('matplotlib_inline.backend_inline' in sys.modules)")
    env = {**kernel_environment({}), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
