"""Combining years until a table is safe: the period a small area's figures can be shown for.

A region that meets a dozen persons a year cannot show them by sex or form of exploitation
year by year without hiding most cells. :func:`years_until_safe` widens the period back from
its last year, one year at a time, until every table it is given has no cell in the
sensitive range (``1..min_cell-1``, ``0`` too when zeros are disclosive) under the study's
settings, or until ``at_most`` years; it returns the :class:`YearSpan` to count in, which
says which years it combines (``span.label``, ``span.period`` for a sentence).

The choice tells a reader only that a shorter period had some small cell, which is what
"years combined" says in any published table. Nothing is shown or recorded here: the tables
are counted again by :func:`studylib.report.safe_table` over the span, and protected there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from studylib.privacy.disclosure import DisclosureError
from studylib.report.counting import count_persons
from studylib.report.sentences import Years, period
from studylib.report.settings import current_settings

#: the column a person's year of first contact is in (:func:`studylib.data.first_contact_in`)
YEAR = "first_contact_year"


@dataclass(frozen=True)
class YearSpan:
    """The years a table is counted over: ``first``..``last``, and whether they make it safe."""

    first: int
    last: int
    safe: bool  # every table given has no small cell over these years
    column: str = YEAR

    @property
    def years(self) -> int:
        return self.last - self.first + 1

    @property
    def combined(self) -> bool:
        """More than one year is counted together."""
        return self.years > 1

    @property
    def label(self) -> str:
        """``2024`` or ``2021–2024`` (for captions)."""
        return self.period.text()

    @property
    def period(self) -> Years:
        """The span for a sentence: ``sentence("In {years} ...", years=span.period)``."""
        return period(self.first, self.last)

    def before(self) -> "YearSpan | None":
        """The span of as many years just before this one (None when it would start before 1900)."""
        if self.first - self.years < 1900:
            return None
        return YearSpan(self.first - self.years, self.first - 1, safe=False, column=self.column)

    def select(self, persons: pd.DataFrame) -> pd.DataFrame:
        """The persons whose year falls in the span."""
        years = persons[self.column]
        return persons[(years >= self.first) & (years <= self.last)]


def years_until_safe(
    persons: pd.DataFrame,
    *tables: str | Sequence[str],
    last: int,
    at_most: int = 5,
    first: int | None = None,
    year: str = YEAR,
    merge: Mapping[str, Any] | None = None,
    order: Mapping[str, Sequence] | None = None,
) -> YearSpan:
    """The shortest span ending in ``last`` over which every table is safe (at most ``at_most`` years).

    ``persons``: one row per person (``person_id``) with the column ``year``; ``tables``: each
    a column or a list of columns a table will count by. ``first``: the earliest year the span
    may reach (default: the first in the data). ``merge`` and ``order``: as for
    :func:`studylib.report.safe_table` (default merges: the study's). When even ``at_most``
    years leave a small cell, the span of ``at_most`` years is returned with ``safe=False``:
    its tables then show hidden cells as usual.

    Example::

        span = years_until_safe(region, "sex", "decision", last=2024, at_most=5)
        safe_table(span.select(region), rows="sex", caption=f"Persons by sex, {span.label}")
    """
    if not tables:
        raise DisclosureError("years_until_safe() needs the columns of at least one table: years_until_safe(persons, 'sex', ...)")
    if isinstance(at_most, bool) or not isinstance(at_most, (int, np.integer)) or at_most < 1:
        raise DisclosureError(f"at_most must be a whole number of years of at least 1, not {at_most!r}")
    if year not in persons.columns:
        raise DisclosureError(f"years_until_safe(): the persons have no column {year!r} to combine years by")
    last = int(last)
    years = pd.to_numeric(persons[year], errors="coerce")
    if first is not None:
        earliest = int(first)
    else:
        earliest = int(years.min()) if years.notna().any() else last
    settings = current_settings()
    merge = settings.merge if merge is None else merge
    low = 0 if settings.zeros_disclosive else 1
    span = YearSpan(last, last, safe=False, column=year)
    for count in range(1, int(at_most) + 1):
        start = last - count + 1
        if start < earliest and count > 1:
            break
        span = YearSpan(start, last, safe=False, column=year)
        chosen = persons[(years >= start) & (years <= last)]
        if len(chosen) and all(_safe(chosen, table, settings.min_cell, low, merge, order) for table in tables):
            return YearSpan(start, last, safe=True, column=year)
    return span


def _safe(persons: pd.DataFrame, table: str | Sequence[str], min_cell: int, low: int, merge, order) -> bool:
    by = [table] if isinstance(table, str) else list(table)
    counts = np.asarray(count_persons(persons, by, merge=merge, min_cell=min_cell, order=order).counts).ravel()
    return not bool(((counts >= low) & (counts <= min_cell - 1)).any())
