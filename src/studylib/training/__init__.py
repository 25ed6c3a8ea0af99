"""studylib.training: exercises for students on synthetic cases, and checking their answers.

- :mod:`~studylib.training.vignettes`: training cases drawn from the generator's sector
  profiles, told as short narratives (English or Danish) from which the indicators can be
  inferred, and their answer keys (indicators, dimensions, grades, ILO classification);
- :mod:`~studylib.training.reader`: a simple keyword reader of vignettes;
- :mod:`~studylib.training.exercises`: a student's exercise set and :func:`check`;
- :mod:`~studylib.training.cohort`: ``studylib training cohort``, one set per student and the
  teacher's key;
- :mod:`~studylib.training.lessons`: the lesson notebooks in ``notebooks/``, one source each,
  built into a student and a teacher version (``studylib training notebooks``).
"""

from studylib.training.exercises import (
    CheckError,
    ExerciseSet,
    Feedback,
    case_seed,
    check,
    exercise_case,
    indicator_table,
)
from studylib.training.vignettes import AnswerKey, Case, answer_key, answer_keys, draw_case, vignette

__all__ = [
    "AnswerKey",
    "Case",
    "CheckError",
    "ExerciseSet",
    "Feedback",
    "answer_key",
    "answer_keys",
    "case_seed",
    "check",
    "draw_case",
    "exercise_case",
    "indicator_table",
    "vignette",
]
