"""Exercise sets and checking a student's answer: :func:`check` and :class:`ExerciseSet`.

An exercise set is the cases of one student of a cohort: case ``k`` of student ``s`` in a
cohort of seed ``S`` has its own seed (numpy ``SeedSequence(S, spawn_key=(s, k))``), so
each student gets different cases, the same cohort seed gives the same cases again, and a
notebook only needs ``(S, s, k)`` to find its case: the key is never stored in it.

:func:`check` compares the indicators a student marked with the case's key: per indicator
found, missed or wrongly marked, with the catalogue's text, dimension and grade on the
person's list; the classification that the student's indicators give against the key's;
and a score (found / (found + missed + wrongly marked)). Until something is marked it shows
nothing of the key; a student who finds no indicator answers ``"none"``.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from studylib.errors import StudylibError
from studylib.training.vignettes import (
    AnswerKey,
    Case,
    _catalogue_lookup,
    _stage,
    answer_key,
    classify_sets,
    draw_case,
    indicator_rows,
    versions,
    vignette,
)

#: Share of a set's cases drawn as children (12-17) on top of the profiles' own minors.
CHILD_SHARE = 0.2
#: What a student answers when the vignette carries no indicator.
NONE_FOUND = "none"
VERDICTS = ("found", "missed", "wrong")
_SPLIT = re.compile(r"[\s,;]+")


class CheckError(StudylibError):
    """An answer that cannot be checked (unknown codes, a case that does not exist, ...)."""


# --- which case ----------------------------------------------------------------------------------


def case_seed(cohort_seed: int, student: int, case: int) -> int:
    """The seed of case ``case`` (1-based) of student ``student`` (1-based) in a cohort."""
    state = np.random.SeedSequence(int(cohort_seed), spawn_key=(int(student), int(case))).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))  # fits a signed 64-bit integer (JSON, Parquet)


def _is_child(seed: int, child_share: float) -> bool | None:
    """True for a case drawn as a child; None: the profile's own age."""
    return True if np.random.default_rng([seed, 16]).random() < child_share else None


def exercise_case(cohort_seed: int, student: int, case: int, child_share: float = CHILD_SHARE) -> Case:
    seed = case_seed(cohort_seed, student, case)
    return draw_case(seed, child=_is_child(seed, child_share))


# --- the answer ------------------------------------------------------------------------------------


def parse_answers(answers) -> tuple[str, ...] | None:
    """Indicator codes from a set, list or text (``"dr_deceived_job, cd_isolation"``).

    None when nothing was marked yet; ``()`` for the answer ``"none"`` (no indicator found).
    Unknown codes raise :class:`CheckError`, naming each with the closest catalogue codes.
    """
    if answers is None:
        return None
    if isinstance(answers, str):
        items = [a for a in _SPLIT.split(answers.strip()) if a]
    else:
        try:
            items = list(answers)
        except TypeError:
            raise CheckError(f"answers must be indicator codes (a set, list or text), not {type(answers).__name__}") from None
        bad = [a for a in items if not isinstance(a, str)]
        if bad:
            raise CheckError(f"answers must be indicator codes (text), not {bad[0]!r}")
        items = [a.strip() for a in items if a.strip()]
    if not items:
        return None
    lowered = [a.lower() for a in items]
    if NONE_FOUND in lowered:
        if len(set(lowered)) > 1:
            raise CheckError(f"answer {NONE_FOUND!r} (no indicator found) cannot be given together with indicator codes")
        return ()
    look = _catalogue_lookup()
    unknown = [a for a in dict.fromkeys(lowered) if a not in look["order"]]
    if unknown:
        hints = []
        for a in unknown:
            close = difflib.get_close_matches(a, look["codes"], n=2, cutoff=0.6)
            hints.append(f"{a!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        raise CheckError(f"not indicator codes of catalogue {look['version']}: {', '.join(hints)}; "
                         f"the codes are in the catalogue table (training.indicator_table())")
    return tuple(sorted(set(lowered), key=look["order"].__getitem__))


@dataclass(frozen=True, repr=False)
class Feedback:
    """What :func:`check` says; shown as a table in a notebook, as text elsewhere."""

    answered: bool
    rows: tuple[dict, ...]  # code, verdict, dimension_title, grade, text, hint
    score: float | None
    answer_presumed_victim: bool | None
    key_presumed_victim: bool | None
    answer_dimensions: tuple[str, ...]
    key_dimensions: tuple[str, ...]
    rule: str | None

    def _codes(self, verdict: str) -> tuple[str, ...]:
        return tuple(r["code"] for r in self.rows if r["verdict"] == verdict)

    @property
    def found(self) -> tuple[str, ...]:
        return self._codes("found")

    @property
    def missed(self) -> tuple[str, ...]:
        return self._codes("missed")

    @property
    def wrong(self) -> tuple[str, ...]:
        return self._codes("wrong")

    @property
    def classification_agrees(self) -> bool | None:
        return None if not self.answered else self.answer_presumed_victim == self.key_presumed_victim

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows), columns=["code", "verdict", "dimension_title", "grade", "text", "hint"])

    def _verdict_lines(self) -> list[str]:
        if not self.answered:
            return ["No indicator marked yet: mark the indicator codes you find in the vignette "
                    f"(or {NONE_FOUND!r} if you find none) and run the cell again."]
        by = {"adult": "the adult rule (recruitment, exploitation and coercion or abuse of vulnerability at destination)",
              "child": "the child rule (recruitment and exploitation; no means needed)"}
        verdict = lambda v: "presumed a victim" if v else "not presumed a victim"
        return [
            f"Score {self.score:.0%}: {len(self.found)} found, {len(self.missed)} missed, {len(self.wrong)} wrongly marked.",
            f"With your indicators the person is {verdict(self.answer_presumed_victim)} under {by[self.rule]}; "
            f"with the key's, {verdict(self.key_presumed_victim)}"
            + (" (the same)." if self.classification_agrees else " (different)."),
        ]

    def __str__(self) -> str:
        lines = self._verdict_lines()
        for r in self.rows:
            grade = f", {r['grade']}" if r["grade"] else ", not on this person's list"
            lines.append(f"  {r['verdict']:<6} {r['code']}: {r['text']} ({r['dimension_title']}{grade}){' - ' + r['hint'] if r['hint'] else ''}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<p>{html.escape(line)}</p>" for line in self._verdict_lines())
        if not self.rows:
            return f"<div class='studylib-feedback'>{head}</div>"
        marks = {"found": "✔ found", "missed": "✘ missed", "wrong": "✘ wrongly marked"}
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in (
                marks[r["verdict"]], r["code"], r["text"], r["dimension_title"], r["grade"] or "not on this list", r["hint"])) + "</tr>"
            for r in self.rows)
        header = "".join(f"<th>{h}</th>" for h in ("", "code", "indicator", "dimension", "grade", "why"))
        return f"<div class='studylib-feedback'>{head}<table><tr>{header}</tr>{body}</table></div>"


_HINTS = {
    "missed": {"recruitment": "the first paragraph (life and recruitment) tells it",
               "destination": "the second paragraph (work and life in Denmark) tells it"},
    "wrong": {"recruitment": "nothing in the first paragraph (life and recruitment) says so",
              "destination": "nothing in the second paragraph (work and life in Denmark) says so"},
}


def check(answers, case: Case, key: AnswerKey | None = None) -> Feedback:
    """Feedback on the indicators a student marked for ``case`` (see the module docstring)."""
    if not isinstance(case, Case):
        raise CheckError(f"check needs the case (a training Case), not {type(case).__name__}")
    marked = parse_answers(answers)
    if marked is None:
        return Feedback(False, (), None, None, None, (), (), None)
    key = key or answer_key(case)
    truth = set(key.codes)
    rows = []
    for row in indicator_rows(truth | set(marked), case.list_name):
        code = row["code"]
        verdict = "found" if code in truth and code in marked else ("missed" if code in truth else "wrong")
        hint = "" if verdict == "found" else _HINTS[verdict][_stage(code)]
        if row["grade"] is None:
            hint = f"not on the {case.list_name.replace('_', ' ')} list: it counts for nothing here"
        rows.append({"code": code, "verdict": verdict, "dimension_title": row["dimension_title"],
                     "grade": row["grade"], "text": row["text"], "hint": hint})
    n = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    total = n["found"] + n["missed"] + n["wrong"]
    score = 1.0 if total == 0 else n["found"] / total
    result = classify_sets([marked], [case.age], [case.exploitation])
    dims = [d["code"] for d in _catalogue_lookup()["spec"]["dimensions"]]
    row = next(result.itertuples(index=False))
    return Feedback(
        answered=True, rows=tuple(rows), score=score,
        answer_presumed_victim=bool(row.presumed_victim), key_presumed_victim=key.presumed_victim,
        answer_dimensions=tuple(d for d in dims if getattr(row, d)), key_dimensions=key.dimensions_present,
        rule=key.rule,
    )


def indicator_table(list_name: str | None = None) -> pd.DataFrame:
    """The catalogue's indicators to choose from: code, dimension, text (and grade on one list)."""
    look = _catalogue_lookup()
    rows = indicator_rows(look["codes"], list_name or "adult_labour")
    table = pd.DataFrame(list(rows))
    return table[["code", "dimension", "text", "grade"]] if list_name else table[["code", "dimension", "text"]]


# --- a student's set -------------------------------------------------------------------------------


class ExerciseSet:
    """The cases of one student: ``ExerciseSet(seed, student, cases)``; case numbers start at 1.

    ``made_with`` (from the cohort's notebook) is compared with this studylib's vignette and
    catalogue versions: a different version would tell other cases, so it is an error.
    """

    def __init__(self, seed: int, student: int, cases: int, language: str = "en", child_share: float = CHILD_SHARE,
                 made_with: dict | None = None) -> None:
        if made_with is not None and made_with != versions():
            raise CheckError(f"these exercises were made with {made_with}, this studylib has {versions()}: "
                             "ask your teacher for a cohort made with this version")
        if int(cases) < 1 or int(student) < 1:
            raise CheckError(f"student and cases count from 1 (got student {student}, cases {cases})")
        if not 0.0 <= float(child_share) <= 1.0:
            raise CheckError(f"child_share must be between 0 and 1, not {child_share}")
        self.seed, self.student, self.n, self.language, self.child_share = int(seed), int(student), int(cases), language, float(child_share)
        self._cases: dict[int, Case] = {}

    def case(self, k: int) -> Case:
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= self.n:
            raise CheckError(f"there is no case {k!r}: this set has cases 1 to {self.n}")
        if k not in self._cases:
            self._cases[k] = exercise_case(self.seed, self.student, int(k), self.child_share)
        return self._cases[k]

    @property
    def cases(self) -> list[Case]:
        return [self.case(k) for k in range(1, self.n + 1)]

    def vignette(self, k: int) -> str:
        return vignette(self.case(k), self.language)

    def check(self, answers, case: int) -> Feedback:
        """Feedback on the indicators marked for case ``case`` of this set."""
        return check(answers, self.case(case))

    def keys(self) -> list[AnswerKey]:
        """The keys (for the teacher)."""
        from studylib.training.vignettes import answer_keys

        return answer_keys(self.cases)


__all__ = ["CHILD_SHARE", "CheckError", "ExerciseSet", "Feedback", "NONE_FOUND", "case_seed", "check",
           "exercise_case", "indicator_table", "parse_answers"]
