"""studylib.report: what notebooks call to show things safely.

- :func:`safe_table` and :func:`safe_figure` show count tables and charts protected with
  the study's disclosure settings, carrying the safe marker the audit requires;
- :func:`configure` sets those settings for the kernel (defaults from the environment:
  ``STUDYLIB_MIN_CELL``, ``STUDYLIB_ROUNDING``);
- ``look`` holds the report's nbconvert template and stylesheet.
"""

from studylib.privacy.disclosure import published_rates, published_shares
from studylib.report.figures import SafeFigure, safe_figure
from studylib.report.settings import configure, current_settings
from studylib.report.statistics import SafeStatistics, safe_statistics
from studylib.report.tables import SafeTable, safe_table

__all__ = [
    "SafeFigure",
    "SafeStatistics",
    "SafeTable",
    "configure",
    "current_settings",
    "published_rates",
    "published_shares",
    "safe_figure",
    "safe_statistics",
    "safe_table",
]
