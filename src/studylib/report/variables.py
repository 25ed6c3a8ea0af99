"""The environment variables by which the runner hands a report's kernel its study's settings.

The runner writes them (:func:`kernel_variables`) and :mod:`studylib.report.settings` reads
them inside the kernel; both take the names from here. This module loads nothing else, so
the runner can use it without loading the disclosure code.

- ``STUDYLIB_DISCLOSURE``: the study's disclosure settings, one JSON object
  (:meth:`studylib.privacy.DisclosureSettings.to_json`), the one way they reach a kernel;
- ``STUDYLIB_STUDY_ID`` and ``STUDYLIB_REPORT``: which study and report this is (a kernel
  with ``STUDYLIB_REPORT`` set is a study run: tables must be counted from persons);
- ``STUDYLIB_LEDGER``: the private folder where the kernel records, for every published
  table, which person falls in which cell (the release ledger, :mod:`studylib.privacy.ledger`);
- ``STUDYLIB_RELEASE_PLAN``: the runner's plan of cells the release must hide in this report.
"""

from __future__ import annotations

DISCLOSURE_VARIABLE = "STUDYLIB_DISCLOSURE"
STUDY_VARIABLE = "STUDYLIB_STUDY_ID"
REPORT_VARIABLE = "STUDYLIB_REPORT"
LEDGER_VARIABLE = "STUDYLIB_LEDGER"
PLAN_VARIABLE = "STUDYLIB_RELEASE_PLAN"


def kernel_variables(disclosure_json: str, study_id: str, report_key: str,
                     ledger: str | None = None, plan: str | None = None) -> dict[str, str]:
    """The variables for one report: its disclosure settings (JSON), study, report, ledger and plan."""
    out = {DISCLOSURE_VARIABLE: disclosure_json, STUDY_VARIABLE: study_id, REPORT_VARIABLE: report_key}
    if ledger:
        out[LEDGER_VARIABLE] = ledger
    if plan:
        out[PLAN_VARIABLE] = plan
    return out
