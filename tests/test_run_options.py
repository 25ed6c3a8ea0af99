"""`studylib run` as papermill's world expects it: --dry-run with reasons, -p, --json, a bad cluster address,
and reports that are due when an input file they read changes (through the real CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_release_runner import _dataset, _study, _template

pytestmark = pytest.mark.slow

STUDYLIB = str(Path(sys.executable).parent / "studylib")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([STUDYLIB, "run", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture
def project(tmp_path):
    data = _dataset(tmp_path)
    settings = tmp_path / "templates" / "settings.yaml"  # beside the template: its kernel may read it
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text("colour: blue\n")
    _template(tmp_path, [("code", f"from studylib.config import read_yaml\n_ = read_yaml({str(settings)!r})")])
    study = _study(tmp_path, data, "nation")
    return tmp_path, study, settings


def _plan(root: Path, study: Path, *extra: str) -> dict:
    done = _run(str(study), "--reports", str(root / "reports"), "--dry-run", "--json", *extra)
    assert done.returncode == 0, done.stderr
    return {row["report"]: (row["plan"], row["why"]) for row in json.loads(done.stdout)}


def test_dry_run_says_why_and_a_changed_input_file_makes_a_report_due(project):
    root, study, settings = project
    assert _plan(root, study) == {"nation": ("would run", "never published")}
    assert not (root / "reports" / "nation").exists()  # a dry run runs nothing
    done = _run(str(study), "--reports", str(root / "reports"), "--json", "--quiet")
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["ok"] and result["outcomes"][0]["status"] == "published", done.stdout
    manifest = json.loads((root / "reports" / "nation" / "manifest.json").read_text())
    assert str(settings.resolve()) in manifest["inputs"] and manifest["run"]["executor"] == "this machine"
    assert _plan(root, study)["nation"][0] == "current"
    settings.write_text("colour: red\n")
    plan, why = _plan(root, study)["nation"]
    assert plan == "would run" and why.startswith("an input it reads changed") and "settings.yaml" in why


def test_a_template_saved_with_outputs_is_the_same_template(project):
    import nbformat

    root, study, _ = project
    assert _run(str(study), "--reports", str(root / "reports"), "--quiet").returncode == 0
    template = root / "templates" / "by_sector.ipynb"
    nb = nbformat.read(template, as_version=4)
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="saved in JupyterLab\n")]
    nb.cells[0].execution_count = 7
    nbformat.write(nb, template)
    assert _plan(root, study)["nation"][0] == "current"


def test_p_sets_a_parameter_and_is_checked_against_the_template(project):
    root, study, _ = project
    plan = _run(str(study), "--reports", str(root / "reports"), "--dry-run", "--json", "-p", "no_such=1")
    rows = json.loads(plan.stdout)
    assert rows[0]["plan"] == "invalid" and "has no parameter 'no_such'" in rows[0]["why"]
    done = _run(str(study), "--reports", str(root / "reports"), "--json", "-p", "region_out=hovedstaden")
    assert json.loads(done.stdout)["outcomes"][0]["status"] == "published"
    manifest = json.loads((root / "reports" / "nation" / "manifest.json").read_text())
    assert manifest["parameters"]["region_out"] == "hovedstaden"
    bad = _run(str(study), "-p", "region_out")
    assert bad.returncode != 0 and "KEY=VALUE" in bad.stdout + bad.stderr


def test_a_wrong_cluster_address_is_one_line_and_exit_2(project):
    root, study, _ = project
    done = _run(str(study), "--reports", str(root / "reports"), "--cluster", "tcp://127.0.0.1:9")
    assert done.returncode == 2
    assert "no Dask scheduler answers there" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_parameter_domains_declared_in_the_template_are_checked_at_planning(tmp_path):
    import nbformat

    from runner_fixtures import make_dataset, write_study
    from studylib.runner.batch import BatchSettings, plan_batch

    data = make_dataset(tmp_path / "dataset", n=30)
    cell = nbformat.v4.new_code_cell(
        "data_dir: str = ''\nsector: str = 'au_pair'  # the sector [vocabulary: sector]\n"
        "method: str = 'main'  # model [one of: stepwise, main, bic]\nyears: int = 3  # window [range: 1..10]\n"
        "catalogue: str = 'x.yaml'  # a catalogue [file]")
    cell.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "templates").mkdir()
    nbformat.write(nb, tmp_path / "templates" / "t.ipynb")
    (tmp_path / "templates" / "x.yaml").write_text("a: 1\n")

    def plan(**parameters):
        study = write_study(tmp_path, {"id": "s", "title": "s", "template": "../templates/t.ipynb", "data": str(data),
                                       "parameters": parameters, "disclosure": {"min_cell": 5, "rounding": None}, "formats": ["html"]})
        return plan_batch([study], BatchSettings(reports=tmp_path / "reports", state=tmp_path / "state"))

    assert [r.key for r in plan(sector="cleaning", method="bic", years=10).run] == ["s"]
    for parameters, expected in [({"sector": "claening"}, "did you mean 'cleaning'"),
                                 ({"method": "best"}, "'best' is not one of stepwise, main, bic"),
                                 ({"years": 11}, "outside 1..10"), ({"years": 0}, "outside 1..10"),
                                 ({"catalogue": "missing.yaml"}, "does not exist")]:
        outcome = plan(**parameters).done[0]
        assert outcome.status == "invalid" and expected in outcome.message and "s.yaml line" in outcome.message, outcome.message
