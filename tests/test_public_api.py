"""The public names of the lazy packages (issue 15, item 5): listed, and every function documented.

Each package whose ``__init__`` uses :func:`studylib.lazy_exports.lazy_getattr` lists its public
names in ``__all__`` and ``dir()``; every function among them has a docstring that names each of
its parameters and ends in an ``Example::`` block of Python that parses; every class has a docstring.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "studylib"
LAZY = sorted(p.parent.name for p in SRC.glob("*/__init__.py") if "lazy_getattr" in p.read_text())


def example_of(doc: str) -> str | None:
    """The code of a docstring's ``Example::`` block (its indented lines), or None."""
    lines = doc.split("\n")
    for i, line in enumerate(lines):
        if line.strip() in ("Example::", "Examples::"):
            block = []
            for more in lines[i + 1:]:
                if more.strip() and not more.startswith((" ", "\t")):
                    break
                block.append(more)
            code = textwrap.dedent("\n".join(block)).strip()
            return code or None
    return None


def undocumented(function) -> list[str]:
    doc = inspect.getdoc(function) or ""
    return [name for name in inspect.signature(function).parameters
            if name not in ("self", "cls") and not re.search(rf"``{re.escape(name)}``|\b{re.escape(name)}\b", doc)]


def test_the_lazy_packages_are_found():
    assert {"analysis", "data", "privacy", "report"} <= set(LAZY)


@pytest.mark.parametrize("package", LAZY)
def test_every_public_function_has_its_parameters_and_an_example(package):
    module = importlib.import_module(f"studylib.{package}")
    assert set(module.__all__) <= set(dir(module)), "dir() hides public names"
    problems = []
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            if not inspect.getdoc(obj):
                problems.append(f"{name}: no docstring")
            continue
        if not inspect.isfunction(obj):
            continue  # constants and vocabularies
        doc = inspect.getdoc(obj)
        if not doc:
            problems.append(f"{name}: no docstring")
            continue
        missing = undocumented(obj)
        if missing:
            problems.append(f"{name}: the docstring does not name {missing}")
        example = example_of(doc)
        if example is None:
            problems.append(f"{name}: no Example:: block")
        else:
            try:
                ast.parse(example)
            except SyntaxError as err:
                problems.append(f"{name}: the example is not Python ({err})")
    assert not problems, f"studylib.{package}:\n" + "\n".join(problems)


def test_the_checks_find_what_they_look_for():
    """The other side: a function without an example or with an unnamed parameter is caught."""

    def documented(table, level=0.95):
        """Do it to ``table`` at ``level``.

        Example::

            documented(t, level=0.9)
        """

    def bare(table, level=0.95):
        """Do it to ``table``."""

    assert undocumented(documented) == [] and example_of(inspect.getdoc(documented)) == "documented(t, level=0.9)"
    assert undocumented(bare) == ["level"] and example_of(inspect.getdoc(bare)) is None
