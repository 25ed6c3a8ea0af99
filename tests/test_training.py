"""studylib.training: vignettes, keys, the keyword reader, check, cohorts and the lesson builder.

Oracles independent of the code under test: the phrasings file read with yaml directly and
rendered here, the catalogue table, studylib.indicators.classify called directly, set
arithmetic for the feedback, byte comparison of files, nbformat's validator.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from studylib import training
from studylib.cli import app
from studylib.indicators import catalogue, classify
from studylib.training import CheckError, ExerciseSet, answer_key, answer_keys, check, draw_case, vignette
from studylib.training.cohort import CohortError, make_cohort
from studylib.training.lessons import LessonError, build_lesson, build_lessons, parse_source
from studylib.training.reader import read_indicators
from studylib.training.vignettes import PHRASINGS_PATH

ROOT = Path(__file__).resolve().parents[1]
N_CASES = 500
PHRASES = yaml.safe_load(PHRASINGS_PATH.read_text(encoding="utf-8"))
CAT = catalogue()
CODES = list(dict.fromkeys(CAT["code"]))


@pytest.fixture(scope="module")
def cases():
    return [draw_case(seed) for seed in range(N_CASES)]


@pytest.fixture(scope="module")
def texts(cases):
    return {lang: [vignette(c, lang) for c in cases] for lang in ("en", "da")}


def rendered_phrasings(case, code: str, lang: str) -> list[str]:
    """Every phrasing of ``code`` filled in for ``case``, from the YAML read here."""
    values = dict(PHRASES["pronouns"][lang][case.pronouns])
    work, place = PHRASES["sectors"][case.sector][lang]
    values.update(name=case.name, age=case.age, work=work, place=place,
                  org=PHRASES["organisations"][case.organisation][lang])
    return [p.format(**values) for p in PHRASES["indicators"][code][lang]]


def words(text: str) -> int:
    return len(text.split())


# --- vignettes and keys ------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "da"])
def test_the_text_carries_exactly_the_keys_indicators(cases, texts, lang):
    """For 500 cases: an indicator's sentence is in the text if and only if the key holds it."""
    keys = answer_keys(cases)
    for case, key, text in zip(cases, keys, texts[lang]):
        in_text = {code for code in CODES if any(p in text for p in rendered_phrasings(case, code, lang))}
        assert set(key.codes) == in_text == set(case.indicators), case.seed
        assert set(case.indicators) <= set(case.drawn)


@pytest.mark.parametrize("lang", ["en", "da"])
def test_vignettes_are_120_to_250_words(texts, lang):
    counts = [words(t) for t in texts[lang]]
    assert min(counts) >= 120 and max(counts) <= 250, (min(counts), max(counts))


def test_no_vignette_names_an_indicator(texts):
    names = {t.lower() for t in CAT["text"]}
    for text in texts["en"]:
        low = text.lower()
        assert not [n for n in names if n in low]


def test_same_seed_same_text_and_phrasings_vary(cases, texts):
    again = [vignette(draw_case(c.seed)) for c in cases[:50]]
    assert again == texts["en"][:50]
    assert len(set(texts["en"])) == N_CASES  # different seeds, different stories
    # several phrasings of one indicator are used across cases
    for code in ("ec_excessive_hours", "cd_documents_confiscated", "rv_economic_reasons"):
        used = set()
        for case, text in zip(cases, texts["en"]):
            if code in case.indicators:
                used |= {i for i, p in enumerate(rendered_phrasings(case, code, "en")) if p in text}
        assert len(used) >= 2, code


@pytest.mark.parametrize("lang", ["en", "da"])
def test_keyword_reader_recovers_at_least_90_percent(cases, texts, lang):
    told = found = 0
    for case, text in zip(cases, texts[lang]):
        read = set(read_indicators(text, lang))
        told += len(case.indicators)
        found += len(read & set(case.indicators))
    assert told > 1000
    assert found / told >= 0.90, found / told


def test_key_grades_dimensions_and_classification_agree_with_the_catalogue(cases):
    keys = answer_keys(cases[:200])
    for case, key in zip(cases[:200], keys):
        for row in key.indicators:
            cat_row = CAT[(CAT["code"] == row["code"]) & (CAT["list"] == case.list_name)].iloc[0]
            assert (row["dimension"], row["grade"], row["text"]) == (cat_row["dimension"], cat_row["grade"], cat_row["text"])
        ind = pd.DataFrame({"person_id": "p", "indicator": list(case.indicators)}, columns=["person_id", "indicator"])
        direct = classify(ind, pd.DataFrame({"person_id": ["p"], "age": [case.age], "exploitation": [case.exploitation]})).iloc[0]
        assert key.presumed_victim == bool(direct["presumed_victim"])
        assert key.rule == direct["rule"] == ("child" if case.age < 18 else "adult")
        # the told indicators classify as the whole drawn checklist does
        ind_all = pd.DataFrame({"person_id": "p", "indicator": list(case.drawn)}, columns=["person_id", "indicator"])
        whole = classify(ind_all, pd.DataFrame({"person_id": ["p"], "age": [case.age], "exploitation": [case.exploitation]})).iloc[0]
        assert key.presumed_victim == bool(whole["presumed_victim"])
    assert 0.2 < sum(k.presumed_victim for k in keys) / len(keys) < 0.8  # both kinds of case occur


def test_child_cases_use_the_child_lists():
    for seed in range(40):
        case = draw_case(seed, child=True)
        assert 12 <= case.age <= 17 and case.list_name.startswith("child_")
        assert answer_key(case).rule == "child"
        on_list = set(CAT.loc[(CAT["list"] == case.list_name) & CAT["grade"].notna(), "code"])
        assert set(case.drawn) <= on_list
        adult = draw_case(seed, child=False)
        assert adult.age >= 18 and adult.list_name.startswith("adult_")


def test_bad_requests_say_what_to_fix():
    with pytest.raises(training.vignettes.VignetteError, match="language 'fr'"):
        vignette(draw_case(1), "fr")
    with pytest.raises(training.vignettes.VignetteError, match="sector 'fishing' has no profile"):
        draw_case(1, sector="fishing")


# --- check ---------------------------------------------------------------------------------------


def _victim_case():
    return next(c for c in (draw_case(s) for s in range(100)) if answer_key(c).presumed_victim and len(c.indicators) >= 6)


def _answer_classified(codes, case) -> bool:
    ind = pd.DataFrame({"person_id": "p", "indicator": list(codes)}, columns=["person_id", "indicator"])
    return bool(classify(ind, pd.DataFrame({"person_id": ["p"], "age": [case.age], "exploitation": [case.exploitation]}))["presumed_victim"].iloc[0])


def test_check_perfect_answer():
    case = _victim_case()
    fb = check(set(case.indicators), case)
    assert fb.answered and fb.score == 1.0
    assert set(fb.found) == set(case.indicators) and not fb.missed and not fb.wrong
    assert fb.answer_presumed_victim is True and fb.classification_agrees
    assert "Score 100%" in str(fb)
    text_of = dict(zip(CAT["code"], CAT["text"]))
    for code in case.indicators:  # the catalogue's explanation of each indicator is shown
        assert text_of[code] in str(fb) and text_of[code] in fb._repr_html_()


@pytest.mark.parametrize("empty", [set(), None, "", [], "  "])
def test_check_empty_answer_shows_nothing_of_the_key(empty):
    case = _victim_case()
    fb = check(empty, case)
    assert not fb.answered and fb.rows == () and fb.score is None and fb.key_presumed_victim is None
    shown = str(fb) + fb._repr_html_() + repr(fb)
    assert not [code for code in CODES if code in shown]
    assert "presumed" not in shown


def test_check_half_right_answer():
    case = _victim_case()
    key = list(case.indicators)
    half = set(key[: len(key) // 2])
    wrong = {c for c in CODES if c not in key and CAT[(CAT["code"] == c) & (CAT["list"] == case.list_name)]["grade"].notna().all()}
    wrong = set(sorted(wrong)[:2])
    fb = check(sorted(half | wrong), case)
    assert set(fb.found) == half
    assert set(fb.missed) == set(key) - half
    assert set(fb.wrong) == wrong
    assert fb.score == pytest.approx(len(half) / (len(half) + len(set(key) - half) + len(wrong)))
    assert fb.answer_presumed_victim == _answer_classified(half | wrong, case)
    assert fb.key_presumed_victim is True
    table = fb.table()
    assert list(table["verdict"].value_counts().sort_index().items()) == sorted(
        {"found": len(half), "missed": len(key) - len(half), "wrong": 2}.items())
    assert "the first paragraph" in str(fb) or "the second paragraph" in str(fb)  # where to look again


def test_check_none_and_text_answers():
    empty_case = next(c for c in (draw_case(s) for s in range(300)) if not c.indicators)
    assert check("none", empty_case).score == 1.0
    victim = _victim_case()
    fb = check("none", victim)
    assert fb.answered and set(fb.missed) == set(victim.indicators) and fb.score == 0.0
    codes = list(victim.indicators)
    assert check(", ".join(codes).upper(), victim).score == 1.0  # text, any case, commas
    with pytest.raises(CheckError, match="cannot be given together"):
        check(["none", codes[0]], victim)


def test_check_unknown_codes_are_named_with_a_suggestion():
    case = _victim_case()
    with pytest.raises(CheckError) as err:
        check({"dr_deceived_jobs", "zz_nothing"}, case)
    message = str(err.value)
    assert "'dr_deceived_jobs' (did you mean dr_deceived_job" in message and "'zz_nothing'" in message
    with pytest.raises(CheckError, match="not 3"):
        check({3}, case)


def test_exercise_set_cases_and_versions():
    ex = ExerciseSet(seed=5, student=2, cases=3)
    assert [c.seed for c in ex.cases] == [training.case_seed(5, 2, k) for k in (1, 2, 3)]
    assert ex.check(list(ex.case(2).indicators) or "none", case=2).score == 1.0
    with pytest.raises(CheckError, match="there is no case 4"):
        ex.check(set(), case=4)
    with pytest.raises(CheckError, match="were made with"):
        ExerciseSet(seed=5, student=2, cases=3, made_with={"vignettes": "old", "catalogue": "old"})


# --- cohorts -----------------------------------------------------------------------------------


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cohort_is_reproducible_and_differs_between_students(tmp_path):
    a = make_cohort(tmp_path / "a", students=6, cases=4, seed=11).out
    b = make_cohort(tmp_path / "b", students=6, cases=4, seed=11).out
    c = make_cohort(tmp_path / "c", students=6, cases=4, seed=12).out
    assert _hashes(a) == _hashes(b)
    assert _hashes(a)["teacher/key.csv"] != _hashes(c)["teacher/key.csv"]
    vignettes = [(a / "students" / f"student_{s:03d}" / "vignettes.md").read_text() for s in range(1, 7)]
    assert len(set(vignettes)) == 6
    seeds = pd.read_csv(a / "teacher" / "key.csv").groupby("student")["case_seed"].apply(tuple)
    assert seeds.nunique() == 6


def test_cohort_files_and_key(tmp_path):
    out = make_cohort(tmp_path / "cohort", students=3, cases=5, seed=3, language="da").out
    meta = json.loads((out / "cohort.json").read_text())
    assert (meta["seed"], meta["students"], meta["cases"], meta["language"]) == (3, 3, 5, "da")
    key = json.loads((out / "teacher" / "key.json").read_text())
    assert len(key) == 15
    for s in range(1, 4):
        folder = out / "students" / f"student_{s:03d}"
        nb = nbformat.read(folder / "exercises.ipynb", as_version=4)
        nbformat.validate(nb)
        assert all(cell.get("outputs", []) == [] for cell in nb.cells)
        raw = (folder / "exercises.ipynb").read_text()
        assert not [code for code in CODES if code in raw]  # no key in the student's notebook
        ex = ExerciseSet(seed=3, student=s, cases=5, language="da")
        for k in range(1, 6):
            entry = next(e for e in key if e["student"] == s and e["case"] == k)
            assert [r["code"] for r in entry["indicators"]] == list(ex.case(k).indicators)
            assert ex.vignette(k).split("\n")[0] in (folder / "vignettes.md").read_text()
            assert ex.vignette(k).split("\n")[0] in raw.replace('\\"', '"')
    rows = pd.read_csv(out / "teacher" / "key.csv", keep_default_na=False)
    assert set(rows.columns) >= {"student", "case", "indicator", "grade", "presumed_victim"}


def test_cohort_never_replaces_other_folders_and_leaves_no_temporaries(tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(CohortError, match="other content"):
        make_cohort(other, students=2, cases=2, seed=1)
    assert (other / "mine.txt").read_text() == "keep me"
    first = make_cohort(tmp_path / "cohort", students=2, cases=2, seed=1).out
    with pytest.raises(CohortError, match="--overwrite"):
        make_cohort(first, students=2, cases=2, seed=2)
    make_cohort(first, students=3, cases=2, seed=2, overwrite=True)
    assert json.loads((first / "cohort.json").read_text())["students"] == 3
    with pytest.raises(CohortError, match="--students must be 1 to"):
        make_cohort(tmp_path / "bad", students=0, cases=2, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort", "notes"]


def test_cli_training_cohort(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["training", "cohort", "--students", "2", "--cases", "3", "--seed", "9", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "students" / "student_002" / "exercises.ipynb").is_file()
    bad = runner.invoke(app, ["training", "cohort", "--students", "2", "--seed", "9", "--out", str(tmp_path / "d"), "--language", "fr"])
    assert bad.exit_code == 2 and "--language must be one of en, da" in bad.output


# --- lessons -----------------------------------------------------------------------------------


SOURCES = sorted((ROOT / "notebooks" / "source").glob("[0-9][0-9]_*.py"))


def test_six_lessons_and_committed_notebooks_are_built_from_their_sources(tmp_path):
    assert [p.name[:2] for p in SOURCES] == ["01", "02", "03", "04", "05", "06"]
    build_lessons(tmp_path)
    for version in ("student", "teacher"):
        built = _hashes(tmp_path / version)
        committed = _hashes(ROOT / "notebooks" / version)
        assert built == committed, f"notebooks/{version} is not what the sources build: run studylib training notebooks --out notebooks"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_student_version_has_no_solution_and_teacher_has_them(source):
    cells = parse_source(source)
    student = nbformat.reads(build_lesson(source, "student"), as_version=4)
    teacher = nbformat.reads(build_lesson(source, "teacher"), as_version=4)
    student_text = "\n".join(c.source for c in student.cells)
    teacher_text = "\n".join(c.source for c in teacher.cells)
    solutions = [c.source for c in cells if "solution" in c.tags]
    exercises = [c.source for c in cells if "exercise" in c.tags]
    assert solutions and exercises
    for solution in solutions:
        assert solution in teacher_text
        # no line of a solution that is not also in the student version's own cells
        own = [line for line in solution.splitlines() if line.strip() and line not in student_text]
        assert own, "a solution cell that the student version also holds"
        assert solution not in student_text
    for exercise in exercises:
        assert exercise in student_text and exercise not in teacher_text
    assert all("solution" not in c.metadata.get("tags", []) for c in student.cells)
    assert any(re.search(r"Exercise \d", c.source) for c in student.cells if c.cell_type == "markdown")
    assert [c.metadata.get("tags") for c in student.cells if "parameters" in c.metadata.get("tags", [])] == [["parameters"]]


def test_lesson_source_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "01_bad.py"
    bad.write_text('# %% [markdown]\n# title\n\n# %% tags=["exercise", "solution"]\nx = 1\n')
    with pytest.raises(LessonError, match=r"01_bad.py: line 4: a cell is either"):
        parse_source(bad)
    bad.write_text('# %% tags=["answer"]\nx = 1\n')
    with pytest.raises(LessonError, match=r"line 1: unknown tag"):
        parse_source(bad)
    bad.write_text('x = 1\n# %%\ny = 2\n')
    with pytest.raises(LessonError, match="before the first"):
        parse_source(bad)
    bad.write_text('# %% [markdown]\nnot a comment\n# %% tags=["exercise"]\n# %% tags=["solution"]\n')
    with pytest.raises(LessonError, match="line 2: a markdown cell"):
        parse_source(bad)


@pytest.mark.parametrize("lang", ["en", "da"])
def test_every_phrasing_carries_a_cue_of_its_own_indicator(lang):
    """Several phrasings per indicator; each one, for either pronoun set, is read as its indicator."""
    base = draw_case(1)
    for code in CODES:
        assert len(PHRASES["indicators"][code][lang]) >= 2, code
        stage_first = CAT.loc[CAT["code"] == code, "dimension"].iloc[0] in (
            "deceptive_recruitment", "coercive_recruitment", "recruitment_vulnerability")
        for pronouns in ("female", "male"):
            case = training.Case(**{**base.__dict__, "pronouns": pronouns})
            for sentence in rendered_phrasings(case, code, lang):
                text = f"{sentence}\n\nNothing here." if stage_first else f"Nothing here.\n\n{sentence}"
                assert code in read_indicators(text, lang), (code, pronouns, sentence)


def test_building_lessons_never_replaces_a_folder_with_other_files(tmp_path):
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / ".ipynb_checkpoints").mkdir()  # JupyterLab's: replaced with the folder
    build_lessons(tmp_path, versions=("student",))
    assert len(list((tmp_path / "student").glob("*.ipynb"))) == 6
    (tmp_path / "student" / "my_notes.md").write_text("mine")
    with pytest.raises(LessonError, match=r"other than built notebooks \(my_notes.md\)"):
        build_lessons(tmp_path, versions=("student",))
    assert (tmp_path / "student" / "my_notes.md").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]  # no temporaries left


def test_cli_training_notebooks(tmp_path):
    result = CliRunner().invoke(app, ["training", "notebooks", "--out", str(tmp_path), "--version", "teacher"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]
    bad = CliRunner().invoke(app, ["training", "notebooks", "--out", str(tmp_path), "--version", "pupil"])
    assert bad.exit_code == 2 and "--version must be one of student, teacher" in bad.output


def test_readme_student_section_commands_work(tmp_path):
    """The README's student section: its commands run as written (output folders moved to tmp)
    and what it tells a student to open exists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## For students and teachers", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\.venv/bin/studylib (training [^#\n]+?)\s*(?:#.*)?$", section, re.M)
    assert sorted(c.split()[1] for c in commands) == ["cohort", "notebooks"], commands
    runner = CliRunner()
    for command in commands:
        args = command.split()
        out = args.index("--out") + 1
        args[out] = str(tmp_path / args[out])
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (command, result.output)
    cohort = next(c for c in commands if c.startswith("training cohort")).split()
    folder = tmp_path / cohort[cohort.index("--out") + 1]
    students = int(cohort[cohort.index("--students") + 1])
    assert len(list((folder / "students").glob("student_*/exercises.ipynb"))) == students
    assert {"key.md", "key.csv", "key.json"} <= {p.name for p in (folder / "teacher").iterdir()}
    for opened in re.findall(r"`(notebooks/student/[\w.]+\.ipynb)`", section):
        assert (ROOT / opened).is_file(), opened
    assert "make lab" in section and re.search(r"^lab:", (ROOT / "Makefile").read_text(), re.M)
