"""Study files and templates are checked before any kernel starts: errors name file, line and key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import nbformat
import pytest
import yaml
from typer.testing import CliRunner

from runner_fixtures import ROOT, make_dataset, make_project, write_study
from studylib.cli import app
from studylib.data import atomic
from studylib.errors import ValidationError
from studylib.privacy.rounding import BASES
from studylib.runner import publish
from studylib.runner.batch import BatchSettings, plan_batch, run_batch
from studylib.runner.study import Disclosure, accepts, combination_name, parameter_problems, read_study, reports_of
from studylib.runner.kernel import kernel_environment
from studylib.runner.template import TemplateError, template_parameters


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "dataset", n=120)


def _study(**over) -> dict:
    base = {
        "id": "cleaning", "title": "Cleaning", "template": str(ROOT / "templates" / "sector_study.ipynb"), "data": "demo",
        "parameters": {"sector": "cleaning"}, "disclosure": {"min_cell": 5, "rounding": None}, "formats": ["html", "pdf"],
    }
    base.update(over)
    return base


def _problems(path: Path) -> str:
    with pytest.raises(ValidationError) as info:
        read_study(path)
    return str(info.value)


def test_every_study_in_the_project_reads_and_fits_its_template(tmp_path, dataset):
    files = sorted((ROOT / "studies").glob("*.yaml"))
    assert {f.stem for f in files} >= {"au_pair", "agriculture", "cleaning", "overview"}
    project = make_project(tmp_path, dataset, studies=tuple(f.stem for f in files))
    for file in files:
        raw = yaml.safe_load(file.read_text())
        assert raw["data"] == "demo", f"{file.name}: default studies run on the demo dataset"
        study = read_study(project / "studies" / file.name)
        assert parameter_problems(study, template_parameters(study.template)) == []


def test_unknown_key_wrong_type_and_missing_files_are_all_reported_with_line_and_key(tmp_path, dataset):
    path = write_study(tmp_path, _study(data=str(tmp_path / "nowhere"), template="missing.ipynb", colour="red",
                                        disclosure={"min_cell": "5", "rounding": 4}, formats=["html", "docx"]))
    text = _problems(path)
    lines = {k: i + 1 for i, line in enumerate(path.read_text().splitlines()) for k in [line.split(":")[0].strip()]}
    assert f"{path} line {lines['colour']}, key 'colour': unknown key" in text
    assert "key 'disclosure.min_cell'" in text and "valid integer" in text
    assert "key 'disclosure.rounding'" in text
    assert "key 'formats.1'" in text
    # schema problems come first; files are checked once the schema is right
    path = write_study(tmp_path, _study(data=str(tmp_path / "nowhere"), template="missing.ipynb"))
    text = _problems(path)
    assert "key 'template': template not found" in text and "key 'data': not a dataset folder" in text
    assert "2 problem(s)" in text


def test_id_must_match_the_file_and_data_goes_through_the_data_key(tmp_path, dataset):
    path = write_study(tmp_path, _study(data=str(dataset), parameters={"data_dir": "/elsewhere"}))
    path.rename(tmp_path / "studies" / "other.yaml")
    text = _problems(tmp_path / "studies" / "other.yaml")
    assert "key 'id': id must equal the file name 'other'" in text
    assert "key 'parameters.data_dir'" in text


def test_parameters_are_checked_against_the_parameters_cell_before_any_kernel(tmp_path, dataset):
    path = write_study(tmp_path, _study(data=str(dataset), parameters={"sector": 3, "colour": "red"}, matrix={"year_from": ["2019"]}))
    study = read_study(path)
    problems = parameter_problems(study, template_parameters(study.template))
    text = "\n".join(map(str, problems))
    assert "key 'parameters.colour': template sector_study.ipynb has no parameter 'colour'" in text
    assert "key 'parameters.sector': template sector_study.ipynb declares sector: str" in text
    assert "key 'matrix.year_from'" in text and "Optional[int]" in text
    # the batch reports it as an invalid study, and starts no kernel for it
    plan = plan_batch([path], BatchSettings(reports=tmp_path / "reports"))
    assert plan.run == [] and plan.done[0].status == "invalid" and "colour" in plan.done[0].message


def test_matrix_fans_out_into_one_report_per_combination(tmp_path, dataset):
    path = write_study(tmp_path, _study(data=str(dataset), matrix={"region": ["hovedstaden", "sjaelland"], "year_from": [2016, 2020]}))
    reports = reports_of(read_study(path))
    assert [r.key for r in reports] == [
        "cleaning/region-hovedstaden__year_from-2016", "cleaning/region-hovedstaden__year_from-2020",
        "cleaning/region-sjaelland__year_from-2016", "cleaning/region-sjaelland__year_from-2020",
    ]
    assert reports[1].parameters == {"sector": "cleaning", "region": "hovedstaden", "year_from": 2020, "data_dir": str(dataset)}
    assert combination_name({"region": "a b/c"}) == "region-a_b_c"
    text = _problems(write_study(tmp_path, _study(data=str(dataset), matrix={"sector": ["x"]})))
    assert "key 'matrix.sector'" in text and "not both" in text


def test_type_annotations_accept_what_papermill_would_inject():
    assert accepts("int", 3) and not accepts("int", "3") and not accepts("int", True)
    assert accepts("Optional[int]", None) and accepts("Optional[int]", 2020) and not accepts("Optional[int]", "2020")
    assert accepts("float", 1) and accepts("list[str]", ["a"]) and accepts("None", object()) and accepts("Whatever", 1)


def test_rounding_bases_agree_with_disclosure_control():
    rounding = Disclosure.model_fields["rounding"].annotation
    allowed = {a for arg in typing.get_args(rounding) for a in typing.get_args(arg)}
    assert allowed == set(BASES)


def test_template_without_parameters_cell_is_a_clear_error(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, tmp_path / "t.ipynb")
    with pytest.raises(TemplateError, match="no cell tagged 'parameters'"):
        template_parameters(tmp_path / "t.ipynb")


def test_inspect_and_new_study_commands(tmp_path, dataset):
    runner = CliRunner(env={"COLUMNS": "240"})
    shown = runner.invoke(app, ["inspect", str(ROOT / "templates" / "sector_study.ipynb")])
    assert shown.exit_code == 0, shown.output
    assert "sector" in shown.output and "data_dir" in shown.output and "Optional[int]" in shown.output
    made = runner.invoke(app, ["new-study", "hotels", "--template", str(ROOT / "templates" / "sector_study.ipynb"),
                               "--data", str(dataset), "--studies", str(tmp_path)])
    assert made.exit_code == 0, made.output
    study = read_study(tmp_path / "hotels.yaml")
    assert study.spec.parameters == {} and study.template == ROOT / "templates" / "sector_study.ipynb"
    again = runner.invoke(app, ["new-study", "hotels", "--studies", str(tmp_path)])
    assert again.exit_code != 0 and "exists already" in again.output
    listed = runner.invoke(app, ["list", "--studies", str(tmp_path), "--reports", str(tmp_path / "reports")])
    assert listed.exit_code == 0 and "hotels" in listed.output and "never run" in listed.output


def test_every_template_and_study_is_stored_as_data():
    for path in (ROOT / "templates").glob("*.ipynb"):
        nb = json.loads(path.read_text())
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb["cells"]), path.name
        assert "data_dir" in template_parameters(path), path.name


def test_a_kernel_gets_the_study_settings_but_never_a_secret():
    env = kernel_environment({"STUDYLIB_MIN_CELL": "10"}, base={"HOME": "/home/x", "STUDYLIB_KEY_FILE": "/k", "AWS_SECRET_ACCESS_KEY": "s", "DB_PASSWORD": "p"})
    assert env["STUDYLIB_MIN_CELL"] == "10" and env["HOME"] == "/home/x" and env["PYTHONHASHSEED"] == "0"
    assert not {"STUDYLIB_KEY_FILE", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"} & set(env)


# --- publishing mechanics (no kernel) -------------------------------------------------------------


def _folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "report.html").write_text(text)
    return path


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_replace_folder_swaps_a_report_in_one_step(tmp_path, monkeypatch, exchange):
    if exchange:  # Linux: one atomic renameat2(RENAME_EXCHANGE)
        a, b = _folder(tmp_path / "a", "a"), _folder(tmp_path / "b", "b")
        assert atomic._exchange(a, b) and (a / "report.html").read_text() == "b"
    else:
        monkeypatch.setattr(atomic, "_EXCHANGE", None)
    target = _folder(tmp_path / "reports" / "cleaning", "old")
    new = _folder(tmp_path / "reports" / ".staging" / "1-cleaning", "new")
    atomic.replace_folder(new, target)
    assert (target / "report.html").read_text() == "new" and not new.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [".staging", "cleaning"]


def test_recover_puts_back_a_report_moved_aside_by_a_crash(tmp_path):
    reports = tmp_path / "reports"
    _folder(reports / ".cleaning.old-4242-abcd1234", "last good")
    atomic.recover(reports / "cleaning")
    assert (reports / "cleaning" / "report.html").read_text() == "last good"


def test_staging_left_by_a_dead_batch_is_removed_and_a_live_one_kept(tmp_path):
    reports = tmp_path / "reports"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    _folder(reports / ".staging" / f"{dead}-cleaning-x", "partial")
    live = _folder(reports / ".staging" / f"{os.getpid()}-overview-y", "in progress")
    removed = publish.remove_stale_staging(reports)
    assert [p.name for p in removed] == [f"{dead}-cleaning-x"] and live.exists()


def test_an_invalid_study_shows_as_failed_in_the_index_with_its_problems(tmp_path, dataset):
    path = write_study(tmp_path, _study(data=str(dataset), colour="red"))
    result = run_batch([path], BatchSettings(reports=tmp_path / "reports", studies_dir=tmp_path / "studies", state=tmp_path / "state"))
    assert not result.ok and result.outcomes[0].status == "invalid"
    index = (tmp_path / "reports" / "index.html").read_text()
    assert 'class="status-failed"' in index and "see the staff index" in index and "run.log" not in index
    assert "unknown key" not in index  # why it failed is for staff
    assert "unknown key" in (tmp_path / "state" / "failed" / "index.html").read_text()


def test_a_new_study_stays_valid_when_any_parameter_line_is_uncommented(tmp_path):
    from studylib.runner.study import new_study_text, read_study
    from studylib.runner.template import template_parameters

    template = ROOT / "templates" / "sector_study.ipynb"
    text = new_study_text("trial", "Trial", str(template), "demo", template_parameters(template))
    lines = text.splitlines()
    commented = [i for i, line in enumerate(lines) if line.startswith("  # ")]
    assert len(commented) >= 4
    assert read_study(_write(tmp_path / "trial.yaml", text)).spec.parameters == {}
    for i in commented:
        variant = "\n".join(lines[:i] + [lines[i].replace("  # ", "  ", 1)] + lines[i + 1:])
        study = read_study(_write(tmp_path / f"trial{i}.yaml", variant.replace("id: trial", f"id: trial{i}")))
        assert len(study.spec.parameters) == 1


def _write(path, text):
    path.write_text(text)
    return path


def test_a_matrix_study_titles_each_report_with_the_names_of_its_values(tmp_path, dataset):
    from studylib.runner.study import read_study, reports_of

    template = tmp_path / "t.ipynb"
    template.write_text((ROOT / "templates" / "regional_brief.ipynb").read_text())
    base = {"id": "briefs", "title": "Regional briefs", "template": "t.ipynb", "data": str(dataset),
            "disclosure": {"min_cell": 10, "rounding": None}, "formats": ["html"],
            "matrix": {"region": ["nordjylland", "hovedstaden"], "years_at_most": [3]}}
    (tmp_path / "briefs.yaml").write_text(yaml.safe_dump({**base, "report_title": "Brief for the {region}, {years_at_most} years"}))
    study = read_study(tmp_path / "briefs.yaml")
    assert study.title == "Regional briefs"
    assert [r.title for r in reports_of(study)] == ["Brief for the North Denmark Region, 3 years",
                                                    "Brief for the Capital Region of Denmark, 3 years"]
    (tmp_path / "briefs.yaml").write_text(yaml.safe_dump(base))
    assert reports_of(read_study(tmp_path / "briefs.yaml"))[0].title == "Regional briefs (region: nordjylland, years_at_most: 3)"
    (tmp_path / "briefs.yaml").write_text(yaml.safe_dump({**base, "report_title": "Brief for the {county}"}))
    with pytest.raises(ValidationError, match=r"report_title names \{county\}, which the matrix does not have \(its keys: region, years_at_most\)"):
        read_study(tmp_path / "briefs.yaml")
