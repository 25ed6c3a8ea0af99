"""Safe tables for notebooks and reports: protected counts, ``<5`` for hidden cells, a marker.

``safe_table(table, caption=...)`` protects a count table with the study's settings
(:mod:`studylib.report.settings`) unless it is already a
:class:`~studylib.privacy.ProtectedTable`, and shows it: hidden cells as ``<5`` (the
study's minimum cell) with a note under the table, rounded tables with a note on the base.
Its HTML ``<table>`` carries the safe marker (:mod:`studylib.privacy.marker`), which the
disclosure audit requires of every table in a report; the notebook output carries it in
its metadata as well. Captions are not numbered in the text (the report's stylesheet
numbers them); the number is in ``data-studylib-number`` and in the plain-text form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from studylib.privacy.disclosure import (
    TOTAL,
    DisclosureError,
    DisclosureSettings,
    ProtectedTable,
    protect_table,
    published_shares,
)
from studylib.report.exhibit import Exhibit, heading, table_html
from studylib.report.exhibit import escape as _e
from studylib.report.settings import current_settings, next_number

SHARES_OF = ("rows", "columns", "total")


def protect_for_report(data, settings: DisclosureSettings | dict | None = None) -> ProtectedTable:
    """A protected table that meets the study's settings: protects raw counts, checks a
    :class:`ProtectedTable` (its minimum cell may not be lower than the study's)."""
    if settings is None:
        settings = current_settings()
    elif isinstance(settings, dict):
        settings = DisclosureSettings(**settings)
    if isinstance(data, ProtectedTable):
        if data.min_cell < settings.min_cell:
            raise DisclosureError(
                f"the table was protected with minimum cell {data.min_cell}, but the study requires "
                f"{settings.min_cell}; protect it again (or pass the raw counts)"
            )
        if settings.zeros_disclosive and not data.zeros_disclosive:
            raise DisclosureError("the study treats zeros as disclosive, but the table was protected without")
        return data
    return protect_table(
        data,
        min_cell=settings.min_cell,
        margins=settings.margins,
        zeros_disclosive=settings.zeros_disclosive,
        rounding=settings.rounding,
    )


def hidden_symbol(protected: ProtectedTable) -> str:
    """What a hidden cell shows: ``<`` and the minimum cell."""
    return f"<{protected.min_cell}"


def disclosure_note(protected: ProtectedTable, hidden_shown: bool) -> str | None:
    """The note under a table or figure that says how it was protected (None if nothing to say)."""
    m = protected.min_cell
    if protected.rounding is not None:
        return (
            f"Counts and totals are rounded to a multiple of {protected.rounding} (controlled rounding: "
            "each line still adds up to its rounded total)."
        )
    if hidden_shown:
        return (
            f"<{m}: not shown; fewer than {m} persons, or hidden so that a count below {m} "
            "cannot be worked out from the totals."
        )
    return None


@dataclass(repr=False)
class SafeTable(Exhibit):
    """A protected table ready to show: HTML with the safe marker, plain text, a caption."""

    protected: ProtectedTable
    caption: str | None = None
    number: int = 0
    shares: str | None = None
    value_label: str = "count"

    def cells(self) -> pd.Series | pd.DataFrame:
        """The table as shown: strings, hidden cells as ``<5`` (or ``–`` for a share)."""
        p = self.protected
        if self.shares is None:
            return p.published.astype(object).map(_count_text).mask(p.suppressed, hidden_symbol(p))
        shares = published_shares(p, of=self.shares).astype(object)
        return shares.map(_share_text)

    def note(self) -> str | None:
        p = self.protected
        if self.shares is None:
            return disclosure_note(p, bool(p.suppressed.to_numpy().any()))
        of = {"rows": "its row's total", "columns": "its column's total", "total": "the grand total"}[self.shares]
        text = f"Percentages of {of}, computed from published counts only; –: not shown (the count is hidden)."
        rounded = disclosure_note(p, False)
        return text if rounded is None else f"{text} {rounded}"

    def safe_marker(self) -> dict:
        return self.protected.marker()

    def to_html(self) -> str:
        cells = self.cells()
        return table_html("studylib-table", self.safe_marker(), self.number, self.caption,
                          _html_head(cells, self.value_label), _html_body(cells), [self.note()])

    def to_text(self) -> str:
        cells = self.cells()
        frame = cells.to_frame(self.value_label) if isinstance(cells, pd.Series) else cells
        note = self.note()
        return heading("Table", self.number, self.caption) + "\n" + frame.to_string() + (f"\n{note}" if note else "")


def safe_table(
    table,
    caption: str | None = None,
    *,
    shares: str | None = None,
    settings: DisclosureSettings | dict | None = None,
    value_label: str | None = None,
) -> SafeTable:
    """Protect (if needed) and show a count table; hidden cells show as ``<5``.

    ``table``: a count Series or DataFrame, or a :class:`ProtectedTable`. ``shares``:
    ``"rows"``, ``"columns"`` or ``"total"`` to show percentages of published Totals instead
    of counts. ``settings``: only to override the study's settings for this table.
    """
    if shares is not None and shares not in SHARES_OF:
        raise DisclosureError(f"shares must be one of {SHARES_OF} or None, not {shares!r}")
    if value_label is None:
        name = getattr(table, "name", None) if isinstance(table, pd.Series) else None
        value_label = str(name) if name is not None else "count"
    protected = protect_for_report(table, settings)
    return SafeTable(protected, caption, next_number("table"), shares, value_label)


def _count_text(value) -> str:
    if value is None or value is pd.NA:
        return ""
    return f"{int(value):,}"


def _share_text(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{float(value):.1f} %"


def _html_head(cells, value_label: str) -> str:
    if isinstance(cells, pd.Series):
        return f"<thead><tr><th>{_e(cells.index.name or '')}</th><th>{_e(value_label)}</th></tr></thead>"
    rows = []
    row_names = [n or "" for n in cells.index.names]
    if cells.columns.name:
        rows.append(
            "<tr>" + "".join("<th></th>" for _ in row_names)
            + f'<th colspan="{len(cells.columns)}">{_e(cells.columns.name)}</th></tr>'
        )
    rows.append(
        "<tr>" + "".join(f"<th>{_e(n)}</th>" for n in row_names)
        + "".join(f"<th{_total_class(c)}>{_e(c)}</th>" for c in cells.columns) + "</tr>"
    )
    return "<thead>" + "".join(rows) + "</thead>"


def _html_body(cells) -> str:
    rows = []
    if isinstance(cells, pd.Series):
        for label, value in cells.items():
            cls = _total_class(label)
            rows.append(f"<tr{cls}><th>{_e(label)}</th><td>{_e(value)}</td></tr>")
    else:
        for label, row in cells.iterrows():
            labels = label if isinstance(label, tuple) else (label,)
            cls = _total_class(TOTAL if TOTAL in labels else None)
            heads = "".join(f"<th>{_e(x)}</th>" for x in labels)
            values = "".join(f"<td{_total_class(c)}>{_e(v)}</td>" for c, v in row.items())
            rows.append(f"<tr{cls}>{heads}{values}</tr>")
    return "<tbody>" + "".join(rows) + "</tbody>"


def _total_class(label) -> str:
    return ' class="studylib-total"' if label == TOTAL else ""
