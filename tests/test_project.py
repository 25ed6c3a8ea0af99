"""The project's own promises: dependencies in sync, notebooks without outputs, module docstrings, names."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {d.replace(" ", "") for d in env["dependencies"] if isinstance(d, str) and not d.startswith(("python", "pip"))}
    assert {_name(r) for r in wanted} == {_name(r) for r in conda}
    # versions agree too, not only names
    assert wanted == conda


def test_every_notebook_is_stored_without_outputs():
    notebooks = [p for d in ("templates", "notebooks") for p in (ROOT / d).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                assert not cell.outputs, f"{path.relative_to(ROOT)} cell {i} has stored outputs"
                assert cell.execution_count is None, f"{path.relative_to(ROOT)} cell {i} has an execution count"


def test_every_module_has_a_docstring_and_no_grab_bag_names():
    for path in (ROOT / "src" / "studylib").rglob("*.py"):
        rel = path.relative_to(ROOT)
        assert path.stem not in {"utils", "helpers", "manager", "misc", "common"}, f"{rel}: name the module for the domain"
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{rel} has no module docstring saying what it owns"


def test_the_data_dictionary_is_what_the_schemas_say():
    from studylib.data.dictionary import data_dictionary_markdown

    assert (ROOT / "docs" / "data-dictionary.md").read_text() == data_dictionary_markdown() + "\n", \
        "regenerate it: studylib data-dictionary > docs/data-dictionary.md"


def test_no_link_of_the_docs_leaves_the_repository():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)", path.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (path.parent / target).resolve()
            assert resolved.is_relative_to(ROOT) and resolved.exists(), f"{path.relative_to(ROOT)} links {target}"
