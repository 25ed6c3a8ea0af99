"""Safe statistics tables: estimates, intervals, rates and ratios derived from the data.

A statistics table is not a table of counts, so cell suppression does not apply to it, but it
must not leak a small group either. Its count columns (persons observed, group sizes) are
counted by the library from persons, like a safe table's cells: ``counts={"persons": cases}``
with ``by="sector"`` counts the persons of ``cases`` in each row's sector (the frame's index
holds the sector codes), and ``counts={"presumed": {"ILO 2009": frame_a, "local": frame_b}}``
counts the persons of one frame per row. Each count column is recorded in the release ledger
(so that it is protected together with every other table of the release) and follows the
study's minimum cell; a row with a hidden count shows no statistics at all (a rate or an
estimate from three persons says too much about them), every such cell as the one symbol
``[c]``. Counts that are not of the dataset's persons (a synthetic truth) are declared
``external=`` and follow the minimum cell without entering the ledger. In a study run,
counts passed as numbers (``counts=["persons"]``) and whole-number columns that are not
declared are refused. The HTML carries the safe marker with rule ``statistics``, so the
disclosure audit still checks every whole number in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from studylib.privacy.disclosure import DisclosureError
from studylib.privacy.marker import marker_for
from studylib.report.counting import count_persons
from studylib.report.exhibit import Exhibit, heading, table_html
from studylib.report.exhibit import escape as _e
from studylib.report.settings import current_settings, in_study_run, next_number
from studylib.report.tables import CountsRefused, display_labels, protect_count, refuse_counts

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
    symbol: str = "[c]"

    def notes(self) -> list[str]:
        out = [self.note] if self.note else []
        if self.hidden_rows or self.cells.isin([self.symbol]).to_numpy().any():
            out.append(
                f"{self.symbol}: confidential, not shown: a count that could identify the persons counted, or a "
                "figure computed from so few persons that it could."
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
    counts: Mapping[str, object] | Iterable[str] = (),
    by: str | None = None,
    external: Iterable[str] = (),
    formats: Mapping[str, Formatter | str] | None = None,
    decimals: int = 2,
    note: str | None = None,
    min_cell: int | None = None,
) -> SafeStatistics:
    """Show a table of statistics (one row per group) safely.

    ``counts``: column -> persons: a frame with one row per person, counted by ``by`` (the
    table's index holds the codes of that column), or a mapping row label -> persons frame.
    The library computes these columns itself. ``external``: count columns that do not count
    the dataset's persons (given as numbers; minimum cell applied, not recorded). ``formats``:
    per column a format string (``"{:,.0f}"``) or a function; other floats get ``decimals``.

    ``note``: a note under the table; ``min_cell``: the minimum cell (default: the study's).

    Example::

        safe_statistics(fit, caption="Odds of identification", counts={"persons": cases}, by="sector")
    """
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    frame = frame.copy()
    settings = current_settings()
    m = max(int(min_cell or settings.min_cell), settings.min_cell) if in_study_run() else int(min_cell or settings.min_cell)
    symbol = settings.symbol
    hidden = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    if isinstance(counts, Mapping):
        for column, spec in counts.items():
            values, mask = _counted_column(frame, column, spec, by, m, settings)
            frame[column] = values
            hidden[column] = mask
    else:
        named = list(counts)
        if named:
            refuse_counts("safe_statistics")
        external = [*external, *named]
    hidden = hidden.reindex(columns=frame.columns, fill_value=False)
    for column in external:
        if column not in frame.columns:
            raise KeyError(f"count column {column!r} is not in the table (columns: {list(frame.columns)})")
        values = pd.to_numeric(frame[column], errors="coerce")
        hidden[column] = values.between(1, m - 1).to_numpy()
    counted = set(counts) if isinstance(counts, Mapping) else set()
    declared = counted | set(external)
    if in_study_run():
        whole = [c for c in frame.columns if c not in declared and pd.api.types.is_integer_dtype(frame[c].dtype)
                 and not pd.api.types.is_bool_dtype(frame[c].dtype)]
        if whole:
            raise CountsRefused(
                f"column {whole[0]!r} holds whole numbers but is not a declared count: if it counts persons, pass "
                f"them (counts={{{whole[0]!r}: persons}}, by=...); if it is an estimate, make it a float"
            )
    small = hidden[list(declared)].any(axis=1).to_numpy() if declared else np.zeros(len(frame), dtype=bool)
    formats = dict(formats or {})
    cells = pd.DataFrame(index=frame.index, columns=frame.columns, dtype=object)
    for col in frame.columns:
        fmt = formats.get(col)
        show = (lambda v, f=fmt: "–" if pd.isna(v) else f.format(v)) if isinstance(fmt, str) else (fmt or (lambda v: _number(v, decimals)))
        shown = frame[col].map(show)
        if col in declared:
            shown = shown.mask(hidden[col].to_numpy(), symbol)
        else:
            shown = shown.mask(pd.Series(small, index=frame.index), symbol)
        cells[col] = shown
    cells.index = display_labels(cells.index)
    # counted columns are rounded (perturbed) when the study rounds (perturbs): the audit then accepts
    # their multiples (any count but 1..no_small)
    computed = isinstance(counts, Mapping) and bool(counts)
    rounded = settings.rounding if computed else None
    perturbed = dict(settings.cell_key) if computed and settings.cell_key is not None else None
    marker = marker_for("statistics", m, rounded, False, False, cell_key=perturbed)
    return SafeStatistics(cells, m, int(small.sum()), caption, next_number("table"), note, marker, symbol)


def _counted_column(frame: pd.DataFrame, column: str, spec, by: str | None, m: int, settings) -> tuple[pd.Series, np.ndarray]:
    """A count column computed from persons, protected (1-D, no Total) and recorded in the ledger."""
    from dataclasses import replace

    flat = replace(settings, margins=False, min_cell=m)  # rounded when the study rounds: one policy per release
    if isinstance(spec, Mapping):
        rows = list(spec)
        missing = [r for r in rows if r not in frame.index]
        if missing:
            raise KeyError(f"counts[{column!r}] names rows {missing} that are not in the table's index")
        pieces = [frame_spec.assign(_row=str(row)) for row, frame_spec in spec.items()]
        persons = {str(r): p for r, p in zip(rows, pieces)}
        values, mask = {}, {}
        for row in rows:
            count = count_persons(persons[str(row)], ["_row"], order={"_row": [str(row)]}, keep_empty=True, min_cell=m)
            _, protected = protect_count(count, flat, "statistics", f"{column} ({row})", hide_small=True)
            values[row] = _shown(protected).iloc[0]
            mask[row] = bool(protected.suppressed.iloc[0])
        index = frame.index
        return pd.Series([values.get(r, np.nan) for r in index], index=index), np.array([mask.get(r, False) for r in index])
    if by is None:
        raise DisclosureError(f"counts[{column!r}] is a persons frame: say which column the rows are (by='sector')")
    codes = list(frame.index)
    count = count_persons(spec, [by], order={by: codes}, keep_empty=True, min_cell=m)
    _, protected = protect_count(count, flat, "statistics", column, hide_small=True)
    published = _shown(protected).reindex(codes)
    hidden = protected.suppressed.reindex(codes).fillna(False).to_numpy(dtype=bool)
    return pd.Series(published.to_numpy(), index=frame.index), hidden


def _shown(protected) -> pd.Series:
    """What a count column shows of a protected count: its rounded or perturbed values when the
    study rounds or perturbs, else the counts (hidden cells are masked by the caller)."""
    values = protected.published if protected.rule != "suppression" else protected.counts
    return values.fillna(0).astype(int)
