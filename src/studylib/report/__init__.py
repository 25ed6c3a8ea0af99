"""studylib.report: what notebooks call to show things safely.

- :func:`safe_table` and :func:`safe_figure` show count tables and charts protected with
  the study's disclosure settings, carrying the safe marker the audit requires;
- :func:`configure` sets those settings for the kernel (defaults from the environment:
  ``STUDYLIB_MIN_CELL``, ``STUDYLIB_ROUNDING``);
- ``look`` holds the report's nbconvert template and stylesheet.

Names are imported on first use, so that the runner can read ``look`` without loading
pandas, scipy and matplotlib.
"""

from studylib.lazy_exports import lazy_getattr

#: Public names and the module that holds each.
_EXPORTS = {
    "SafeFigure": "studylib.report.figures",
    "safe_figure": "studylib.report.figures",
    "SafeStatistics": "studylib.report.statistics",
    "safe_statistics": "studylib.report.statistics",
    "SafeTable": "studylib.report.tables",
    "safe_table": "studylib.report.tables",
    "configure": "studylib.report.settings",
    "current_settings": "studylib.report.settings",
    "published_rates": "studylib.privacy.disclosure",
    "published_shares": "studylib.privacy.disclosure",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
