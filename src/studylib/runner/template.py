"""Notebook templates: their ``parameters`` cell, read with papermill's own inspection.

:func:`template_parameters` returns what papermill infers from the cell tagged
``parameters`` (name, type from the annotation, default, help from the trailing comment);
``studylib inspect`` shows it and the study checks compare study files against it.
:func:`studylib_imports` lists the studylib modules a template imports, which a batch loads
once before forking the template's kernels (:mod:`studylib.runner.kernel_fork`).
"""

from __future__ import annotations

import ast
import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from studylib.errors import StudylibError


class TemplateError(StudylibError):
    """A template cannot be read or has no ``parameters`` cell."""


@dataclass(frozen=True)
class TemplateParameter:
    """One parameter of a template as papermill infers it."""

    name: str
    inferred_type_name: str
    default: str
    help: str


def papermill_module():
    """Import papermill (only when a template is really read or run), without one slow optional import.

    papermill loads nbformat, which loads jsonschema, whose optional IRI format checker
    (``rfc3987_syntax``) compiles a grammar for about a second. Notebook validation never
    uses that format, so it is marked absent before the import; jsonschema skips it.
    """
    if "papermill" not in sys.modules and "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    import papermill

    return papermill


def _has_parameters_cell(path: Path) -> bool:
    try:
        nb = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TemplateError(f"{path}: not a readable notebook ({exc})") from None
    return any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.get("cells", []))


def template_parameters(path: str | Path) -> dict[str, TemplateParameter]:
    """The parameters declared in the template's ``parameters`` cell, in order."""
    path = Path(path)
    if not path.is_file():
        raise TemplateError(f"{path}: template not found")
    if not _has_parameters_cell(path):
        raise TemplateError(f"{path}: no cell tagged 'parameters' (tag the cell that sets the defaults)")
    found = papermill_module().inspect_notebook(str(path))
    return {name: TemplateParameter(**p) for name, p in found.items()}


#: Python 3.11's ast module keeps its recursion depth in state shared by threads: two reports'
#: threads parsing at once fail with "SystemError: AST constructor recursion depth mismatch"
#: (CPython gh-106905). The runner's parses take turns.
_AST_LOCK = threading.Lock()


def parse_python(source: str, mode: str = "exec") -> ast.AST:
    """``ast.parse`` taking turns with the batch's other threads (see :data:`_AST_LOCK`)."""
    with _AST_LOCK:
        return ast.parse(source, mode=mode)


def studylib_imports(path: str | Path) -> list[str]:
    """The ``studylib`` modules that the template's code cells import, in order (cells with magics are skipped)."""
    try:
        cells = json.loads(Path(path).read_text()).get("cells", [])
    except (OSError, json.JSONDecodeError):
        return []
    found: dict[str, None] = {}
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell.get("source", ""))
        try:
            tree = parse_python(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # ``from studylib.analysis import extent``: the name may be a module of a lazy package
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names if _is_module(node.module, a.name))]
            else:
                names = []
            found.update((n, None) for n in names if n == "studylib" or n.startswith("studylib."))
    return list(found)


def _is_module(package: str, name: str) -> bool:
    """Whether ``package.name`` is a module file of the installed studylib (checked without importing)."""
    import studylib

    root = Path(studylib.__file__).parent
    folder = root.joinpath(*package.split(".")[1:])
    return (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()
