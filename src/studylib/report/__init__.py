"""studylib.report: what notebooks call to show things safely.

- :func:`safe_table` and :func:`safe_figure` count persons and show the counts protected
  with the study's disclosure settings (hidden cells as ``[c]``), recording each table in
  the release ledger; :func:`safe_statistics` shows estimates whose count columns are
  counted the same way; all carry the safe marker the audit requires;
- :func:`sentence` (with :func:`share`, :func:`year`, :func:`period`) says findings in
  words, every number a published cell;
- :func:`years_until_safe` finds the years to combine so that a small area's tables are
  safe; :func:`indicator_checklist` and :func:`referral_procedure` print the catalogues'
  signs and steps for a referral group's brief;
- :func:`configure` sets the settings for the kernel (default: ``STUDYLIB_DISCLOSURE``);
- ``look`` holds the report's nbconvert template and stylesheet.

Names are imported on first use, so that the runner can read ``look`` without loading
pandas, scipy and matplotlib.
"""

from studylib.lazy_exports import lazy_dir, lazy_getattr

#: Public names and the module that holds each.
_EXPORTS = {
    "SafeFigure": "studylib.report.figures",
    "safe_figure": "studylib.report.figures",
    "SafeStatistics": "studylib.report.statistics",
    "safe_statistics": "studylib.report.statistics",
    "SafeTable": "studylib.report.tables",
    "safe_table": "studylib.report.tables",
    "configure": "studylib.report.settings",
    "in_study_run": "studylib.report.settings",
    "sentence": "studylib.report.sentences",
    "share": "studylib.report.sentences",
    "year": "studylib.report.sentences",
    "period": "studylib.report.sentences",
    "name": "studylib.report.sentences",
    "estimate": "studylib.report.sentences",
    "SafeSentence": "studylib.report.sentences",
    "count_persons": "studylib.report.counting",
    "years_until_safe": "studylib.report.pooling",
    "YearSpan": "studylib.report.pooling",
    "indicator_checklist": "studylib.report.guidance",
    "referral_procedure": "studylib.report.guidance",
    "SafeGuidance": "studylib.report.guidance",
    "CountsRefused": "studylib.report.tables",
    "current_settings": "studylib.report.settings",
    "published_rates": "studylib.privacy.disclosure",
    "published_shares": "studylib.privacy.disclosure",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)


__dir__ = lazy_dir(globals(), _EXPORTS)


__all__ = sorted(_EXPORTS)
