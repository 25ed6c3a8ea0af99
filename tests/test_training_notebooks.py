"""The lesson notebooks, student and teacher versions, run top to bottom with papermill (real kernels).

And a cohort's student notebook runs as handed out. The student versions' outputs must not
hold what the teacher's solutions print or compute.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import papermill
import pytest

from studylib.training import ExerciseSet
from studylib.training.cohort import make_cohort
from studylib.training.lessons import parse_source

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p.stem for p in (ROOT / "notebooks" / "source").glob("[0-9][0-9]_*.py"))

pytestmark = pytest.mark.slow


def _run(notebook: Path, out: Path) -> nbformat.NotebookNode:
    papermill.execute_notebook(str(notebook), str(out), kernel_name="python3", cwd=str(notebook.parent),
                               progress_bar=False, log_output=False)
    return nbformat.read(out, as_version=4)


def _outputs(cell) -> str:
    """What a cell shows as text (streams and text/plain; HTML repeats it with markup)."""
    parts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            parts.append(output["text"])
        plain = output.get("data", {}).get("text/plain")
        if plain:
            parts.append(plain)
    return "\n".join(parts)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every lesson run once in each version (module scope: 12 kernels in all)."""
    out = tmp_path_factory.mktemp("lessons")
    done = {}
    for version in ("teacher", "student"):
        for lesson in LESSONS:
            done[(version, lesson)] = _run(ROOT / "notebooks" / version / f"{lesson}.ipynb", out / f"{version}-{lesson}.ipynb")
    return done


@pytest.mark.parametrize("lesson", LESSONS)
def test_lessons_run_top_to_bottom_in_both_versions(executed, lesson):
    for version in ("teacher", "student"):
        nb = executed[(version, lesson)]
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(c.get("execution_count") for c in code), (version, lesson)
        assert not [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.parametrize("lesson", LESSONS)
def test_student_outputs_hold_no_teacher_answer(executed, lesson):
    teacher, student = executed[("teacher", lesson)], executed[("student", lesson)]
    student_text = "\n".join(_outputs(c) + "\n" + c.source for c in student.cells)
    solution_outputs = [_outputs(c) for c in teacher.cells if "solution" in c.metadata.get("tags", [])]
    for text in solution_outputs:
        for line in filter(str.strip, text.splitlines()):
            assert line not in student_text, (lesson, line)
    # cells in both versions whose output differs (they show the answer): the teacher's lines
    # with figures are nowhere in the student version
    shared_teacher = {c.source: _outputs(c) for c in teacher.cells if not c.metadata.get("tags")}
    shared_student = {c.source: _outputs(c) for c in student.cells if not c.metadata.get("tags")}
    differing = [src for src in shared_teacher if src in shared_student and shared_teacher[src] != shared_student[src]]
    for src in differing:
        for line in filter(str.strip, shared_teacher[src].splitlines()):
            if line in shared_student[src] or not any(ch.isdigit() for ch in line):
                continue
            assert line not in student_text, (lesson, line)


def test_lesson_2_student_check_reveals_no_key(executed):
    student = executed[("student", "02_recognise_indicators")]
    keys = ExerciseSet(seed=2007, student=1, cases=2).keys()
    checks = [c for c in student.cells if c.source.startswith("check(answers_")]
    assert len(checks) == 2
    for cell, key in zip(checks, keys):
        shown = _outputs(cell)
        assert "No indicator marked yet" in shown
        assert not [code for code in key.codes if code in shown]
    teacher = executed[("teacher", "02_recognise_indicators")]
    teacher_checks = [_outputs(c) for c in teacher.cells if c.source.startswith("check(answers_")]
    assert all("Score 100%" in text for text in teacher_checks)


def test_cohort_notebook_runs_as_handed_out(tmp_path):
    out = make_cohort(tmp_path / "cohort", students=2, cases=3, seed=4).out
    folder = out / "students" / "student_002"
    nb = _run(folder / "exercises.ipynb", tmp_path / "run.ipynb")
    checks = [c for c in nb.cells if c.source.splitlines()[-1:] and c.source.splitlines()[-1].startswith("check(answers_")]
    assert len(checks) == 3 and all("No indicator marked yet" in _outputs(c) for c in checks)
    # a student fills in case 1 with the right codes: the feedback says so
    ex = ExerciseSet(seed=4, student=2, cases=3)
    answer = sorted(ex.case(1).indicators) or "none"
    filled = nbformat.read(folder / "exercises.ipynb", as_version=4)
    cell = next(c for c in filled.cells if c.source.startswith("answers_1 = "))
    cell.source = f"answers_1 = {answer!r}\ncheck(answers_1, case=1)"
    nbformat.write(filled, tmp_path / "filled.ipynb")
    shutil.copy(tmp_path / "filled.ipynb", folder / "filled.ipynb")
    done = _run(folder / "filled.ipynb", tmp_path / "filled-run.ipynb")
    shown = _outputs(next(c for c in done.cells if c.source.startswith("answers_1 = ")))
    assert "Score 100%" in shown


def _cell_output(nb, starts: str) -> str:
    return _outputs(next(c for c in nb.cells if c.source.startswith(starts)))


def test_lesson_3_times_the_dictionary_attack_and_hmac_defeats_it(executed):
    teacher = executed[("teacher", "03_pseudonymise")]
    timed = _cell_output(teacher, "start_day = ")
    assert re.search(r"^[\d,]+ hashes per second; the whole CPR space in [\d,.]+ minutes on one core$", timed.strip()), timed
    attack = _cell_output(teacher, "t0 = time.perf_counter()\nfound = dictionary_attack")
    assert re.search(r"^recovered: \d{6}-\d{4} in \d+\.\d{3} s; correct: True$", attack.strip()), attack
    keyed = _cell_output(teacher, "from studylib.privacy.tokens import keyed_digests")
    assert "the dictionary attack on the keyed token finds: None" in keyed
    assert "stdlib hmac agrees: True" in _cell_output(teacher, "SEP = ")
    # the student's unanswered exercise recovers nothing (and says so, not an error)
    assert "correct: False" in _cell_output(executed[("student", "03_pseudonymise")], "t0 = time.perf_counter()\nfound = dictionary_attack")


def test_lesson_5_shows_heterogeneity_biasing_the_estimate_below_the_truth(executed):
    shown = _cell_output(executed[("teacher", "05_estimate_the_unseen")], "pd.Series(errors")
    errors = {float(sd): float(err) for sd, err in re.findall(r"^(\d\.\d)\s+(-?\d+\.\d+(?:e-?\d+)?)$", shown, re.M)}
    assert sorted(errors) == [0.0, 0.5, 1.0, 1.5, 2.0], shown
    assert abs(errors[0.0]) < 0.1, errors  # equal catchability: close to the known truth of 2000
    assert errors[2.0] < -0.2 and errors[2.0] < errors[0.0] - 0.2, errors  # hidden persons: far too low
    student = _cell_output(executed[("student", "05_estimate_the_unseen")], "pd.Series(errors")
    assert not re.search(r"^\d\.\d\s+-?\d", student, re.M)  # the student's table is empty until answered


def test_lesson_6_child_rule_presumes_the_child_and_not_the_adult(executed):
    teacher = executed[("teacher", "06_children")]
    table = _cell_output(teacher, 'told = ["dr_deceived_job"')
    rows = {line.split()[1] + " " + line.split()[2]: line for line in table.splitlines()[1:] if line.split()[1:2] == ["age"]}
    assert re.search(r"\bchild\b.*\bTrue\b", rows["age 16"]) and re.search(r"\badult\b.*\bFalse\b", rows["age 25"]), table
    assert "list applies" in _cell_output(teacher, "def adult_rule_presumes") and "child" in _cell_output(teacher, "def adult_rule_presumes")
    assert "Score 100%" in _cell_output(teacher, "training.check(answers, case)")
    assert "the person is presumed a victim under the child rule" in _cell_output(teacher, "training.check(answers, case)")
