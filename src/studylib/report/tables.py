"""Safe tables for notebooks and reports: counted from persons, protected, hidden cells as ``[c]``.

``safe_table(cases, rows="sex", columns="decision", caption=...)`` counts the persons of a
frame with one row per person (:mod:`studylib.report.counting`), protects the counts with the
study's settings (:mod:`studylib.report.settings`; plus the cells the release plan hides,
:mod:`studylib.report.recording`), records in the release ledger which person falls in which
cell, and shows the table: every hidden cell as the one neutral symbol (``[c]`` by default,
whatever the reason) with a note under the table, rounded tables with a note on the base,
codes as words. ``flags=[...]`` counts the persons with each of several yes/no columns (a
person may have several). Pre-aggregated counts are refused in a study run (the error says how
to pass the persons) and accepted with a warning in an interactive session.

Its HTML ``<table>`` carries the safe marker (:mod:`studylib.privacy.marker`), which the
disclosure audit requires of every table in a report; the notebook output carries it in
its metadata as well. Captions are not numbered in the text (the report's stylesheet
numbers them); the number is in ``data-studylib-number`` and in the plain-text form.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from studylib.data import vocabularies as v
from studylib.privacy.disclosure import (
    TOTAL,
    DisclosureError,
    DisclosureSettings,
    ProtectedTable,
    assembled_table,
    mask_frame,
    protect_table,
    published_shares,
)
from studylib.privacy.suppression import Rule
from studylib.report.counting import PersonCount, count_persons, is_person_frame
from studylib.report.exhibit import Exhibit, heading, table_html
from studylib.report.exhibit import escape as _e
from studylib.report.recording import next_table_id, planned_hide, record_table
from studylib.report.settings import current_settings, in_study_run, next_number

SHARES_OF = ("rows", "columns", "total")

#: How to pass persons, for the errors that refuse pre-aggregated counts.
HOW_TO_COUNT = ("pass the persons and the columns to count by, e.g. safe_table(cases, rows='sex', "
                "columns='decision'): the library counts them itself, so that it can protect every table "
                "of the release together")


class CountsRefused(DisclosureError):
    """Pre-aggregated counts given to a safe table or figure in a study run."""


def study_settings(settings: DisclosureSettings | dict | None) -> DisclosureSettings:
    """The settings a table uses: the study's, or stricter ones given for this table."""
    base = current_settings()
    if settings is None:
        return base
    if isinstance(settings, dict):
        settings = replace(base, **settings)
    if in_study_run() and settings.min_cell < base.min_cell:
        raise DisclosureError(f"the study's minimum cell is {base.min_cell}; a table may not use {settings.min_cell}")
    return settings


def refuse_counts(what: str) -> None:
    """Pre-aggregated counts: refused in a study run, a warning in an interactive session."""
    message = f"{what} was given counts, not persons; {HOW_TO_COUNT}"
    if in_study_run():
        raise CountsRefused(message)
    warnings.warn(message + " (accepted here because this is not a study run)", UserWarning, stacklevel=3)


def protect_for_report(data, settings: DisclosureSettings | dict | None = None, hide=None) -> ProtectedTable:
    """A protected table that meets the study's settings: protects counts (plus ``hide``, the
    cells a release plan hides), or checks a :class:`ProtectedTable`."""
    settings = study_settings(settings)
    if isinstance(data, ProtectedTable):
        if data.min_cell < settings.min_cell:
            raise DisclosureError(
                f"the table was protected with minimum cell {data.min_cell}, but the study requires "
                f"{settings.min_cell}; protect it again (or pass the persons)"
            )
        if settings.zeros_disclosive and not data.zeros_disclosive:
            raise DisclosureError("the study treats zeros as disclosive, but the table was protected without")
        if data.rule != settings.rule and settings.cell_key is not None:
            raise DisclosureError(f"the study perturbs its counts by the cell key method; this table was protected by {data.rule}")
        return data
    if settings.cell_key is not None:
        from studylib.privacy.perturbed import NEEDS_RECORD_KEYS

        raise DisclosureError("counts cannot be perturbed without their persons: " + NEEDS_RECORD_KEYS)
    extra = {} if hide is None else {"hide": hide}
    protected = protect_table(
        data,
        min_cell=settings.min_cell,
        margins=settings.margins,
        zeros_disclosive=settings.zeros_disclosive,
        rounding=settings.rounding,
        **extra,
    )
    return replace(protected, settings=replace(protected.settings, symbol=settings.symbol))


def protect_count(count: PersonCount, settings: DisclosureSettings, kind: str, caption: str | None,
                  hide_small: bool = False) -> tuple[str, ProtectedTable]:
    """Protect a person count (with what the release plan hides in it) and record it in the ledger.

    ``hide_small``: a rounded count hides its small cells too (a statistic's row of few
    persons shows nothing, whether the study rounds or suppresses)."""
    table_id = next_table_id()
    full = tuple(n + (1 if settings.margins else 0) for n in count.shape)
    hide = planned_hide(table_id, count.dims, count.labels, settings.margins, full)
    if hide_small and settings.rule != "suppression" and not settings.margins:
        small = Rule(settings.min_cell, settings.zeros_disclosive).is_sensitive(np.asarray(count.counts).reshape(full))
        hide = small if hide is None else (hide | small)
    hide_frame = None
    if hide is not None:
        hide_frame = mask_frame(count.counts, settings.margins, hide)
    if settings.cell_key is not None:
        from studylib.privacy.perturbed import perturb_table

        protected = perturb_table(count.counts, count.cells, count.record_keys, settings, hide=hide_frame)
    else:
        protected = protect_for_report(count.counts, settings, hide=hide_frame)
    record_table(table_id, kind, caption, count, protected)
    return table_id, protected


def hidden_symbol(protected: ProtectedTable) -> str:
    """What every hidden cell shows, whatever the reason (``[c]`` unless the study sets another)."""
    return protected.settings.symbol


def disclosure_note(protected: ProtectedTable, hidden_shown: bool) -> str | None:
    """The note under a table or figure that says how it was protected (None if nothing to say)."""
    if protected.settings.cell_key is not None:
        perturbation = protected.settings.cell_key
        small = perturbation["no_small"]
        never = {0: "", 1: " (never to 1)", 2: " (never to 1 or 2)"}.get(small, f" (never to a number from 1 to {small})")
        return (
            f"Counts are perturbed by the cell key method: each is changed by at most {perturbation['max_deviation']}"
            f"{never}, and the same persons get the same number in every table. Totals are perturbed on their own, "
            "so rows and columns need not add up."
            + (f" {hidden_symbol(protected)}: confidential, not shown." if hidden_shown else "")
        )
    if protected.rounding is not None:
        return (
            f"Counts and totals are rounded to a multiple of {protected.rounding} (controlled rounding: "
            "each line still adds up to its rounded total)."
        )
    if hidden_shown:
        return (
            f"{hidden_symbol(protected)}: confidential, not shown to protect the persons counted (a small count, "
            "or a count that would let a small one be worked out from this or another published table)."
        )
    return None


def display_name(name, names: Mapping[str, str] | None = None) -> str:
    """A dimension's name as readers see it (``age_band`` -> ``age band``), unless ``names`` renames it."""
    if names and name in names:
        return str(names[name])
    return v.label(str(name)) if name is not None else ""


def display_labels(index: pd.Index, names: Mapping[str, str] | None = None) -> pd.Index:
    """An axis with codes shown as words and its name(s) as readers see them."""
    def word(x):
        return v.label(x) if isinstance(x, str) and x != TOTAL else x

    if isinstance(index, pd.MultiIndex):
        out = pd.MultiIndex.from_tuples([tuple(word(x) for x in t) for t in index],
                                        names=[display_name(n, names) for n in index.names])
        return out
    return pd.Index([word(x) for x in index], name=display_name(index.name, names) if index.name is not None else None, dtype=object)


@dataclass(repr=False)
class SafeTable(Exhibit):
    """A protected table ready to show: HTML with the safe marker, plain text, a caption."""

    protected: ProtectedTable
    caption: str | None = None
    number: int = 0
    shares: str | None = None
    value_label: str = "count"
    names: Mapping[str, str] = field(default_factory=dict)
    table_id: str = ""
    percent_columns: list = field(default_factory=list)

    def cells(self) -> pd.Series | pd.DataFrame:
        """The table as shown: strings, hidden cells as the symbol (``[c]``), codes as words."""
        p = self.protected
        if self.shares is None:
            shown = p.published.astype(object).map(_count_text).mask(p.suppressed, hidden_symbol(p))
            for column in self.percent_columns:
                shown[column] = p.published[column].astype(object).map(lambda x: f"{int(x)} %" if x is not pd.NA else "").mask(
                    p.suppressed[column], hidden_symbol(p))
        else:
            shown = published_shares(p, of=self.shares).astype(object).map(lambda x: _share_text(x, hidden_symbol(p)))
        shown = shown.copy()
        shown.index = display_labels(shown.index, self.names)
        if isinstance(shown, pd.DataFrame):
            shown.columns = display_labels(shown.columns, self.names)
        return shown

    def value(self, *labels) -> "PublishedValue":
        """One published cell (by its codes; ``"Total"`` for a margin), for a safe sentence."""
        from studylib.report.sentences import PublishedValue

        return PublishedValue.of_table(self, labels)

    def note(self) -> str | None:
        p = self.protected
        if self.shares is None:
            note = disclosure_note(p, bool(p.suppressed.to_numpy().any()))
            if self.percent_columns:
                note = ("Percentages of the persons in the row, computed from published counts only. " + (note or "")).strip()
            return note
        of = {"rows": "its row's total", "columns": "its column's total", "total": "the grand total"}[self.shares]
        text = (f"Percentages of {of}, computed from published counts only; {hidden_symbol(p)}: not shown "
                "(the count or its total is confidential).")
        rounded = disclosure_note(p, False)
        return text if rounded is None else f"{text} {rounded}"

    def safe_marker(self) -> dict:
        return self.protected.marker()

    def withheld(self) -> bool:
        """True when the table would show nothing of its first dimension: every inner cell is
        hidden, and so is every row's total. It is then not shown as a grid of symbols; a note
        says why (as for a figure whose every value is hidden)."""
        hidden = self.protected.suppressed
        inner = hidden.loc[[not _has_total(x) for x in hidden.index]]
        if isinstance(inner, pd.DataFrame):
            if TOTAL in inner.columns and not bool(inner[TOTAL].all()):
                return False
            inner = inner.loc[:, [c for c in inner.columns if not _has_total(c)]]
        return bool(np.asarray(inner, dtype=bool).all())

    def withheld_note(self) -> str:
        return (f"Not shown: every count of this table is confidential ({hidden_symbol(self.protected)}); too few "
                "persons fall in some of its categories to show any of them without identifying the persons counted.")

    def to_html(self) -> str:
        if self.withheld():
            return table_html("studylib-table studylib-withheld", self.safe_marker(), self.number, self.caption,
                              "", "", [self.withheld_note()])
        cells = self.cells()
        return table_html("studylib-table", self.safe_marker(), self.number, self.caption,
                          _html_head(cells, self.value_label), _html_body(cells), [self.note()])

    def to_text(self) -> str:
        if self.withheld():
            return heading("Table", self.number, self.caption) + "\n" + self.withheld_note()
        cells = self.cells()
        frame = cells.to_frame(self.value_label) if isinstance(cells, pd.Series) else cells
        note = self.note()
        return heading("Table", self.number, self.caption) + "\n" + frame.to_string() + (f"\n{note}" if note else "")


def _has_total(label) -> bool:
    return TOTAL in label if isinstance(label, tuple) else label == TOTAL


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def safe_table(
    data,
    rows: str | Sequence[str] | None = None,
    columns: str | Sequence[str] | None = None,
    *,
    where=None,
    flags: Sequence[str] | Mapping[str, str] | None = None,
    caption: str | None = None,
    shares: str | None = None,
    keep_empty: bool = False,
    names: Mapping[str, str] | None = None,
    order: Mapping[str, Sequence] | None = None,
    merge: Mapping[str, Any] | None = None,
    settings: DisclosureSettings | dict | None = None,
    value_label: str | None = None,
) -> SafeTable:
    """Count persons, protect the counts and show them; hidden cells show as ``[c]``.

    ``data``: a frame with one row per person (``person_id``). ``rows`` / ``columns``: the
    column(s) to count by (up to 4 in all); ``where``: a boolean Series or query text selecting
    the persons counted; ``flags``: instead of rows, yes/no columns (a list, or a mapping column ->
    label) to count the persons with each; ``shares``: ``"rows"``, ``"columns"`` or ``"total"``
    to show percentages of published Totals; ``names``: display names of dimensions;
    ``order``: categories per column; ``merge``: merges allowed per column (default: the
    study's); ``settings``: stricter settings for this table only.

    ``keep_empty``: keep categories with no person; ``value_label``: the heading of the count
    column of a one-way table.

    Example::

        safe_table(cases, rows="sex", columns="decision", caption="Persons by sex and identification")
    """
    if shares is not None and shares not in SHARES_OF and not (flags is not None and shares == "population"):
        raise DisclosureError(f"shares must be one of {SHARES_OF} or None, not {shares!r}")
    chosen = study_settings(settings)
    if is_person_frame(data) and flags is not None:
        if shares not in (None, "population"):
            raise DisclosureError("a table of flags shows shares='population' (of each row's persons) or none")
        return _flag_table(data, flags, rows, where, caption, chosen, names or {}, value_label or "persons", shares, order)
    if is_person_frame(data):
        by = _as_list(rows) + _as_list(columns)
        count = count_persons(data, by, where=where, keep_empty=keep_empty,
                              merge=chosen.merge if merge is None else merge, min_cell=chosen.min_cell, order=order)
        table_id, protected = protect_count(count, chosen, "table", caption)
        return SafeTable(protected, caption, next_number("table"), shares, value_label or "persons", dict(names or {}), table_id)
    if rows is not None or columns is not None or flags is not None:
        raise DisclosureError("rows=, columns= and flags= count persons: the frame needs a person_id column")
    refuse_counts("safe_table")
    if value_label is None:
        name = getattr(data, "name", None) if isinstance(data, pd.Series) else None
        value_label = str(name) if name is not None else "count"
    protected = protect_for_report(data, chosen)
    return SafeTable(protected, caption, next_number("table"), shares, value_label, dict(names or {}))


def _flag_table(data: pd.DataFrame, flags, rows, where, caption, settings: DisclosureSettings, names, value_label,
                shares, order) -> SafeTable:
    """Persons with each of several yes/no columns (a person may have several): one ledger
    table per flag, no Total across flags. With ``rows``, each flag is counted by that column
    (with its Total), beside the persons counted in each row; ``shares="population"`` shows
    each flag as a percentage of the row's persons, from published counts only."""
    flags = dict(flags) if isinstance(flags, Mapping) else {f: display_name(f) for f in flags}
    missing = [f for f in flags if f not in data.columns]
    if missing:
        raise DisclosureError(f"flag column(s) {missing} are not in the persons frame")
    frame = data
    if where is not None:
        from studylib.report.counting import _selection

        frame = data[_selection(data, where)]
    if rows is None:
        flat = replace(settings, margins=False)
        values, hidden = {}, {}
        ids = []
        for column, label in flags.items():
            chosen = frame[frame[column].fillna(False).astype(bool)].assign(_flag=column)
            count = count_persons(chosen, ["_flag"], keep_empty=True, order={"_flag": [column]}, min_cell=settings.min_cell)
            table_id, protected = protect_count(count, flat, "table", caption)
            ids.append(table_id)
            values[label] = int(protected.counts.iloc[0])
            hidden[label] = bool(protected.suppressed.iloc[0])
        index = pd.Index(list(values), name=names.get("flag", "") if names else "")
        counts = pd.Series(values, index=index, name=value_label)
        shown = assembled_table(counts.to_frame(value_label), pd.Series(hidden, index=index).to_frame(value_label), flat)
        return SafeTable(shown, caption, next_number("table"), None, value_label, dict(names or {}), ",".join(ids))
    base = count_persons(frame, [rows], min_cell=settings.min_cell, order=order)
    base_id, base_protected = protect_count(base, settings, "table", caption)
    levels = list(base.labels[0])
    columns = {"persons": base_protected}
    for column, label in flags.items():
        chosen = frame[frame[column].fillna(False).astype(bool)]
        count = count_persons(chosen, [rows], keep_empty=True, order={rows: levels}, min_cell=settings.min_cell)
        columns[label] = protect_count(count, settings, "table", caption)[1]
    index = list(base_protected.counts.index)
    counts = pd.DataFrame({k: p.counts.reindex(index).fillna(0).astype(int).to_numpy() for k, p in columns.items()},
                          index=pd.Index(index, name=rows))
    hidden = pd.DataFrame({k: p.suppressed.reindex(index).fillna(False).to_numpy(dtype=bool) for k, p in columns.items()},
                          index=counts.index)
    if shares == "population":
        with np.errstate(divide="ignore", invalid="ignore"):
            shown_counts = counts.where(~hidden)
            pct = shown_counts.iloc[:, 1:].div(shown_counts["persons"], axis=0) * 100
        counts = pd.concat([counts[["persons"]], pct.round(0)], axis=1)
        hidden = hidden | counts.isna()
        counts = counts.fillna(0)
    shown = assembled_table(counts, hidden, replace(settings, margins=False))
    table = SafeTable(shown, caption, next_number("table"), None, value_label, dict(names or {}), base_id)
    table.percent_columns = list(flags.values()) if shares == "population" else []
    return table


def _count_text(value) -> str:
    if value is None or value is pd.NA:
        return ""
    return f"{int(value):,}"


def _share_text(value, symbol: str = "[c]") -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return symbol
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
