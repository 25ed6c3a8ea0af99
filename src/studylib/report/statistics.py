"""Safe statistics tables: estimates, intervals, rates and ratios derived from the data.

A statistics table is not a table of counts, so cell suppression does not apply to it, but it
must not leak a small group either: its count columns (persons observed, group sizes) follow
the study's minimum cell, and a row whose count is below it shows no statistics at all (a
rate or an estimate from three persons says too much about them). Everything else is shown
with decimals or as a whole number the author chose. The HTML carries the safe marker with
rule ``statistics``, so the disclosure audit still checks every whole number in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from studylib.privacy.marker import marker_for
from studylib.report.exhibit import Exhibit, heading, table_html
from studylib.report.exhibit import escape as _e
from studylib.report.settings import current_settings, next_number

Formatter = Callable[[object], str]


def _number(value, decimals: int = 2) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):,.{decimals}f}"
    return str(value)


@dataclass(repr=False)
class SafeStatistics(Exhibit):
    """A statistics table ready to show: small-count rows blanked, formatted, marked."""

    cells: pd.DataFrame
    min_cell: int
    hidden_rows: int
    caption: str | None = None
    number: int = 0
    note: str | None = None
    marker: dict = field(default_factory=dict)

    def notes(self) -> list[str]:
        out = [self.note] if self.note else []
        if self.hidden_rows:
            out.append(
                f"<{self.min_cell}: fewer than {self.min_cell} persons; –: not shown, because a figure "
                f"computed from fewer than {self.min_cell} persons could identify them."
            )
        return out

    def safe_marker(self) -> dict:
        return self.marker

    def to_html(self) -> str:
        c = self.cells
        index_names = [n or "" for n in c.index.names]
        head = "<tr>" + "".join(f"<th>{_e(n)}</th>" for n in index_names) + "".join(f"<th>{_e(col)}</th>" for col in c.columns) + "</tr>"
        body = []
        for label, row in c.iterrows():
            labels = label if isinstance(label, tuple) else (label,)
            body.append("<tr>" + "".join(f"<th>{_e(x)}</th>" for x in labels) + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>")
        return table_html("studylib-table studylib-statistics", self.marker, self.number, self.caption,
                          f"<thead>{head}</thead>", "<tbody>" + "".join(body) + "</tbody>", self.notes())

    def to_text(self) -> str:
        return "\n".join([heading("Table", self.number, self.caption), self.cells.to_string(), *self.notes()])


def safe_statistics(
    frame: pd.DataFrame,
    caption: str | None = None,
    *,
    counts: Iterable[str] = (),
    formats: Mapping[str, Formatter | str] | None = None,
    decimals: int = 2,
    note: str | None = None,
    min_cell: int | None = None,
) -> SafeStatistics:
    """Show a table of statistics (one row per group) safely.

    ``counts``: the columns that count persons (group sizes, persons observed); a value from 1
    to ``min_cell - 1`` shows as ``<5`` and the row's other figures as ``–``. ``formats``: per
    column a format string (``"{:,.0f}"``) or a function; other floats get ``decimals``.
    ``min_cell`` defaults to the study's setting.
    """
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    counts = list(counts)
    missing = [c for c in counts if c not in frame.columns]
    if missing:
        raise KeyError(f"count columns {missing} are not in the table (columns: {list(frame.columns)})")
    m = int(min_cell or current_settings().min_cell)
    small = np.zeros(len(frame), dtype=bool)
    for col in counts:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        small |= (values >= 1) & (values < m)
    formats = dict(formats or {})
    cells = pd.DataFrame(index=frame.index, columns=frame.columns, dtype=object)
    for col in frame.columns:
        fmt = formats.get(col)
        show = (lambda v, f=fmt: "–" if pd.isna(v) else f.format(v)) if isinstance(fmt, str) else (fmt or (lambda v: _number(v, decimals)))
        shown = frame[col].map(show)
        if col in counts:
            values = pd.to_numeric(frame[col], errors="coerce")
            shown = shown.mask(values.between(1, m - 1), f"<{m}")
        else:
            shown = shown.mask(pd.Series(small, index=frame.index), "–")
        cells[col] = shown
    marker = marker_for("statistics", m, None, False, False)
    return SafeStatistics(cells, m, int(small.sum()), caption, next_number("table"), note, marker)
