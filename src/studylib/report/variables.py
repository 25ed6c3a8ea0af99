"""The environment variables by which the runner hands a report's kernel its study's settings.

The runner writes them (:func:`kernel_variables`) and :mod:`studylib.report.settings` reads
them inside the kernel; both take the names from here. This module loads nothing else, so
the runner can use it without loading the disclosure code.
"""

from __future__ import annotations

MIN_CELL_VARIABLE = "STUDYLIB_MIN_CELL"
ROUNDING_VARIABLE = "STUDYLIB_ROUNDING"
STUDY_VARIABLE = "STUDYLIB_STUDY_ID"
REPORT_VARIABLE = "STUDYLIB_REPORT"


def kernel_variables(min_cell: int, rounding: int | None, study_id: str, report_key: str) -> dict[str, str]:
    """The variables for one report: minimum cell, rounding base (``none`` for suppression), study and report."""
    return {
        MIN_CELL_VARIABLE: str(min_cell),
        ROUNDING_VARIABLE: "none" if rounding is None else str(rounding),
        STUDY_VARIABLE: study_id,
        REPORT_VARIABLE: report_key,
    }
