"""A cohort: one exercise set per student (a notebook and a vignette file) and the teacher's key.

``studylib training cohort --students N --cases M --seed S --out DIR`` writes::

    DIR/cohort.json                         seed, sizes, language, versions (no key)
    DIR/README.md                           what is where, for the teacher
    DIR/students/student_001/exercises.ipynb   the student's notebook (no outputs, no key)
    DIR/students/student_001/vignettes.md      the same vignettes to read or print
    ...
    DIR/teacher/key.csv                     one row per student, case and indicator
    DIR/teacher/key.json                    per student and case: indicators, grades, classification
    DIR/teacher/key.md                      the key to read

Give each student their own folder and keep ``teacher/`` to yourself. The folder is written
under a temporary name beside ``DIR`` and renamed into place when complete; an existing
cohort is replaced only with ``overwrite``, and a folder that is not a cohort never.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from studylib.data.atomic import replace_folder
from studylib.errors import StudylibError
from studylib.training.exercises import CHILD_SHARE, exercise_case
from studylib.training.vignettes import LANGUAGES, answer_keys, versions, vignette

MARKER = "cohort.json"
MAX_STUDENTS, MAX_CASES = 10_000, 100


class CohortError(StudylibError):
    """A cohort that cannot be made (bad sizes, an output folder that is not a cohort, ...)."""


@dataclass(frozen=True)
class CohortResult:
    out: Path
    students: int
    cases: int
    files: int


def _cell(kind: str, source: str, tags: tuple[str, ...] = ()) -> dict:
    cell = {"cell_type": kind, "metadata": {"tags": list(tags)} if tags else {}, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _notebook(cells: list[dict]) -> str:
    nb = {
        "cells": cells,
        "metadata": {"kernelspec": {"display_name": "Python 3 (studylib)", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:03d}"
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.splitlines())


def student_notebook(seed: int, student: int, cases: int, texts: list[str], language: str, child_share: float) -> str:
    """The exercise notebook of one student: the vignettes, an answer cell and a check per case."""
    made_with = versions()
    cells = [
        _cell("markdown", f"# Recognising indicators of trafficking: exercises of student {student}\n\n"
              f"Each case below is a **synthetic** person (made up by studylib; no real person is described). "
              "Read the vignette, decide which ILO indicators of trafficking it shows, and write their codes "
              "into the answer cell under it, then run the cell: `check` tells you what you found, what you "
              "missed and what you marked wrongly, and how the person is classified with your indicators.\n\n"
              "Mark only what the text says. If a vignette shows no indicator, answer `\"none\"`."),
        _cell("code", "from studylib.training import ExerciseSet, indicator_table\n\n"
              f"exercises = ExerciseSet(seed={seed}, student={student}, cases={cases}, language={language!r}, "
              f"child_share={child_share!r},\n                        made_with={made_with!r})\n"
              "check = exercises.check\n"
              "indicator_table()  # the codes to choose from"),
    ]
    for k, text in enumerate(texts, start=1):
        cells.append(_cell("markdown", f"## Exercise {k}: case {k}\n\n{_quote(text)}", ("exercise",)))
        cells.append(_cell("code", f"answers_{k} = set()  # your indicator codes, as a set of strings (see indicator_table())\n"
                           f"check(answers_{k}, case={k})", ("exercise",)))
    return _notebook(cells)


def _key_markdown(student: int, keys, cases) -> list[str]:
    lines = [f"## Student {student}", ""]
    for k, (case, key) in enumerate(zip(cases, keys), start=1):
        verdict = "presumed victim" if key.presumed_victim else "not presumed a victim"
        lines.append(f"### Case {k}: {case.name}, {case.age}, {case.sector.replace('_', ' ')} ({key.rule} rule, {key.list_name}): {verdict}")
        lines += [f"- `{r['code']}` {r['text']} ({r['dimension_title']}, {r['grade']})" for r in key.indicators] or ["- no indicator"]
        lines += [f"- classification: {key.explanation or 'no dimension present'}", ""]
    return lines


def _check_request(students: int, cases: int, language: str, child_share: float) -> None:
    problems = []
    if not isinstance(students, int) or not 1 <= students <= MAX_STUDENTS:
        problems.append(f"--students must be 1 to {MAX_STUDENTS}, not {students!r}")
    if not isinstance(cases, int) or not 1 <= cases <= MAX_CASES:
        problems.append(f"--cases must be 1 to {MAX_CASES}, not {cases!r}")
    if language not in LANGUAGES:
        problems.append(f"--language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    if not 0.0 <= child_share <= 1.0:
        problems.append(f"--child-share must be between 0 and 1, not {child_share!r}")
    if problems:
        raise CohortError("; ".join(problems))


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CohortError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise CohortError(f"{out}: is a folder with other content (no {MARKER}); choose an empty or new folder")
        if not overwrite:
            raise CohortError(f"{out}: holds a cohort already; pass --overwrite to replace it")


def make_cohort(out: str | Path, students: int, cases: int, seed: int, language: str = "en",
                child_share: float = CHILD_SHARE, overwrite: bool = False) -> CohortResult:
    """Write a cohort (see the module docstring); the same arguments give the same files."""
    _check_request(students, cases, language, child_share)
    out = Path(out)
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        files = _write_cohort(tmp, students, cases, seed, language, child_share)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CohortResult(out=out, students=students, cases=cases, files=files)


def _write_cohort(tmp: Path, students: int, cases: int, seed: int, language: str, child_share: float) -> int:
    all_cases = [[exercise_case(seed, s, k, child_share) for k in range(1, cases + 1)] for s in range(1, students + 1)]
    flat = [c for per in all_cases for c in per]
    keys = answer_keys(flat)
    key_rows, key_json, key_md = [], [], ["# Answer key (teacher only)", ""]
    files = 0
    (tmp / "students").mkdir()
    for s, per in enumerate(all_cases, start=1):
        texts = [vignette(c, language) for c in per]
        folder = tmp / "students" / f"student_{s:03d}"
        folder.mkdir()
        (folder / "exercises.ipynb").write_text(student_notebook(seed, s, cases, texts, language, child_share), encoding="utf-8")
        (folder / "vignettes.md").write_text(
            f"# Vignettes of student {s}\n\nSynthetic cases for training; no real person is described.\n\n"
            + "\n\n".join(f"## Case {k}\n\n{t}" for k, t in enumerate(texts, start=1)) + "\n", encoding="utf-8")
        files += 2
        per_keys = keys[(s - 1) * cases: s * cases]
        key_md += _key_markdown(s, per_keys, per)
        for k, (case, key) in enumerate(zip(per, per_keys), start=1):
            key_json.append({"student": s, "case": k, "name": case.name, "age": case.age, "sector": case.sector,
                             "exploitation": case.exploitation, **key.as_dict()})
            for r in key.indicators or ({"code": "", "dimension": "", "grade": "", "text": ""},):
                key_rows.append([s, k, case.seed, key.rule, key.list_name, key.presumed_victim,
                                 r["code"], r["dimension"], r["grade"] or "", r["text"]])
    teacher = tmp / "teacher"
    teacher.mkdir()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", "case", "case_seed", "rule", "list", "presumed_victim", "indicator", "dimension", "grade", "text"])
    writer.writerows(key_rows)
    (teacher / "key.csv").write_text(buffer.getvalue(), encoding="utf-8")
    (teacher / "key.json").write_text("[\n" + ",\n".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in key_json)
                                      + "\n]\n", encoding="utf-8")  # one case per line
    (teacher / "key.md").write_text("\n".join(key_md) + "\n", encoding="utf-8")
    meta = {"seed": seed, "students": students, "cases": cases, "language": language, "child_share": child_share,
            "versions": versions(), "made_by": "studylib training cohort"}
    (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (tmp / "README.md").write_text(
        f"# Training cohort (seed {seed}): {students} students x {cases} cases\n\n"
        "Synthetic cases only. Give each student their folder under `students/`; they open "
        "`exercises.ipynb` in JupyterLab (with studylib installed) or read `vignettes.md`.\n"
        "Keep `teacher/` to yourself: `key.md` to read, `key.csv` and `key.json` to mark with.\n"
        f"The same command with seed {seed} makes the same cohort again.\n", encoding="utf-8")
    return files + 5
