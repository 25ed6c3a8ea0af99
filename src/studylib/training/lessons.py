"""The lesson notebooks: one percent-format source per lesson, built into two notebooks.

A source (``notebooks/source/NN_name.py``) is Python with cell markers, as JupyterLab's
jupytext and VS Code read it::

    # %% [markdown]
    # ## Exercise 1: how many persons did no organisation see?

    # %% tags=["exercise"]
    unseen = None  # your code here

    # %% tags=["solution"]
    unseen = int((~truth["registered"]).sum())

:func:`build_lesson` makes the **student** version (without the ``solution`` cells) and the
**teacher** version (without the ``exercise`` cells, with a note that it holds the
solutions); every other cell is in both. Cells are stored without outputs, with stable ids,
so that building again gives the same bytes; ``studylib training notebooks --out DIR``
writes ``DIR/student/`` and ``DIR/teacher/``. The built notebooks are committed in
``notebooks/student/`` and ``notebooks/teacher/`` and a test builds them again and compares.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from studylib.data.atomic import replace_folder, write_file
from studylib.errors import StudylibError

VERSIONS = ("student", "teacher")
#: Tags with a meaning here: exercise (student only), solution (teacher only), parameters (papermill).
TAGS = ("exercise", "solution", "parameters")
_HEADER = re.compile(r"^# %%(?P<rest>.*)$")
_REST = re.compile(r"^\s*(?P<md>\[markdown\])?\s*(?:tags=(?P<tags>\[.*\]))?\s*$")
TEACHER_NOTE = ("**Teacher version**: this notebook holds the solutions (cells tagged `solution`). "
                "Students get the student version, built from the same source.")


class LessonError(StudylibError):
    """A lesson source that cannot be built; the message names the file and line."""


@dataclass(frozen=True)
class SourceCell:
    kind: str  # code or markdown
    source: str
    tags: tuple[str, ...]
    line: int


def parse_source(path: Path) -> list[SourceCell]:
    """The cells of a percent-format source file (a LessonError names the file and line)."""
    text = Path(path).read_text(encoding="utf-8")
    cells: list[SourceCell] = []
    current: dict | None = None
    body: list[str] = []

    def close() -> None:
        if current is None:
            if "".join(body).strip():
                raise LessonError(f"{path}: line 1: text before the first '# %%' cell marker")
            return
        lines = body[:]
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if current["kind"] == "markdown":
            bad = [i for i, l in enumerate(lines) if l.strip() and not l.startswith("#")]
            if bad:
                raise LessonError(f"{path}: line {current['line'] + 1 + bad[0]}: a markdown cell's lines must start with '#'")
            lines = [l[2:] if l.startswith("# ") else l[1:] for l in lines]
        cells.append(SourceCell(current["kind"], "\n".join(lines), current["tags"], current["line"]))

    for number, line in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(line)
        if not m:
            body.append(line)
            continue
        close()
        rest = _REST.match(m.group("rest"))
        if not rest:
            raise LessonError(f"{path}: line {number}: cannot read the cell marker {line!r} "
                              "(write '# %%', '# %% [markdown]' and optionally tags=[\"exercise\"])")
        tags: tuple[str, ...] = ()
        if rest.group("tags"):
            try:
                tags = tuple(json.loads(rest.group("tags")))
            except json.JSONDecodeError:
                raise LessonError(f"{path}: line {number}: tags must be a JSON list of strings, like tags=[\"solution\"]") from None
            unknown = [t for t in tags if t not in TAGS]
            if unknown:
                raise LessonError(f"{path}: line {number}: unknown tag(s) {unknown}; tags are {', '.join(TAGS)}")
            if "exercise" in tags and "solution" in tags:
                raise LessonError(f"{path}: line {number}: a cell is either an exercise or a solution, not both")
        current = {"kind": "markdown" if rest.group("md") else "code", "tags": tags, "line": number}
        body = []
    close()
    if not cells:
        raise LessonError(f"{path}: no cells (a source starts each cell with '# %%')")
    if not any("solution" in c.tags for c in cells) or not any("exercise" in c.tags for c in cells):
        raise LessonError(f"{path}: a lesson needs at least one exercise cell and one solution cell")
    return cells


def build_lesson(path: Path, version: str) -> str:
    """The student or teacher notebook of one source, as the text of an .ipynb file."""
    if version not in VERSIONS:
        raise LessonError(f"version must be one of {', '.join(VERSIONS)}, not {version!r}")
    path = Path(path)
    dropped = "solution" if version == "student" else "exercise"
    cells = [c for c in parse_source(path) if dropped not in c.tags]
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3 (studylib)", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"},
                   "studylib": {"lesson": path.stem, "version": version,
                                "source": f"notebooks/source/{path.name}",
                                "source_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}}
    out = []
    if version == "teacher":
        out.append(nbformat.v4.new_markdown_cell(TEACHER_NOTE))
    for c in cells:
        make = nbformat.v4.new_code_cell if c.kind == "code" else nbformat.v4.new_markdown_cell
        cell = make(c.source)
        if c.tags:
            cell.metadata["tags"] = list(c.tags)
        out.append(cell)
    for i, cell in enumerate(out):
        cell.id = f"{path.stem[:40]}-{i:03d}"
    nb.cells = out
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def lesson_sources(source_dir: Path) -> list[Path]:
    sources = sorted(Path(source_dir).glob("[0-9][0-9]_*.py"))
    if not sources:
        raise LessonError(f"{source_dir}: no lesson sources (files named NN_name.py)")
    return sources


def default_source_dir() -> Path:
    from studylib import paths

    return paths.project_root() / "notebooks" / "source"


def build_lessons(out: Path, source_dir: Path | None = None, versions: tuple[str, ...] = VERSIONS) -> list[Path]:
    """Write ``out/<version>/NN_name.ipynb`` for every source; each version folder appears whole."""
    source_dir = Path(source_dir) if source_dir else default_source_dir()
    sources = lesson_sources(source_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for version in versions:
        built = {src.with_suffix(".ipynb").name: build_lesson(src, version) for src in sources}
        target = out / version
        others = sorted(p.name for p in target.iterdir() if p.suffix != ".ipynb" and p.name != ".ipynb_checkpoints") if target.is_dir() else []
        if others:
            # a version folder holds only built notebooks (and JupyterLab's checkpoints); never
            # replace a folder with other files
            raise LessonError(f"{target}: holds files other than built notebooks ({', '.join(others[:3])}); choose another --out")
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".tmp", dir=out))
        try:
            tmp.chmod(0o755)
            for name, text in built.items():
                write_file(tmp / name, text)
            replace_folder(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        written += [target / name for name in built]
    return written


__all__ = ["LessonError", "SourceCell", "build_lesson", "build_lessons", "lesson_sources", "parse_source"]
