"""Safe figures: charts drawn by the library from its own table's published cells, as PNG with the marker.

``safe_figure(cases, rows="age_band", kind="bar", caption=...)`` counts persons like
:func:`studylib.report.safe_table` (recording the table in the release ledger), protects the
counts and draws a bar, horizontal bar or line chart of the published cells only: a hidden
cell is never drawn (a bar is missing, a line has a gap) and is marked ``[c]`` on the axis,
and a note under the figure says which values are not drawn and why; a figure whose every
value is hidden is not drawn at all, and its note says why. ``shares=`` draws percentages of
published Totals; ``table=`` draws the published cells of a :class:`SafeTable` already shown.

A figure drawn by hand (a matplotlib ``Figure``) is refused in a study run: nothing links its
marks to published cells. In an interactive session it is accepted, with a warning, when it
names the protected tables it was drawn from (``sources=``).

The figure is shown as ``<figure data-studylib-safe=...><img src="data:image/png;base64,...">``
with a caption and an ``alt`` text that repeats every text of the chart (title, axis labels,
categories, legend), so that the audit can read what the picture says.
"""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure
from matplotlib.text import Text

from studylib.privacy.disclosure import TOTAL, DisclosureError, DisclosureSettings, ProtectedTable, published_shares
from studylib.privacy.marker import marker_attribute
from studylib.report.exhibit import Exhibit, heading
from studylib.report.exhibit import escape as _e
from studylib.report.settings import next_number
from studylib.data import vocabularies as v
from studylib.report.counting import count_persons, is_person_frame
from studylib.report.settings import in_study_run
from studylib.report.tables import (
    SHARES_OF,
    CountsRefused,
    SafeTable,
    disclosure_note,
    hidden_symbol,
    protect_count,
    protect_for_report,
    refuse_counts,
    study_settings,
)

KINDS = ("bar", "barh", "line")
_DPI = 110
_SIZE = (6.4, 3.6)
_LISTED = 12
#: Bars are labelled with their values up to this many bars (more would overlap).
_LABELLED = 40
#: The Okabe-Ito colours, told apart with every common colour-vision deficiency.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


@dataclass(repr=False)
class SafeFigure(Exhibit):
    """A chart as an embedded PNG with caption, note, alt text and the safe marker."""

    png: bytes | None
    marker: dict
    caption: str | None = None
    note: str | None = None
    alt: str = ""
    number: int = 0
    figure: Figure | None = field(default=None, repr=False, compare=False)  # the matplotlib figure drawn

    def safe_marker(self) -> dict:
        return self.marker

    def to_html(self) -> str:
        parts = [f'<figure class="studylib-figure"{marker_attribute(self.marker)} data-studylib-number="{self.number}">']
        if self.png is not None:
            data = base64.b64encode(self.png).decode("ascii")
            parts.append(f'<img src="data:image/png;base64,{data}" alt="{_e(self.alt)}">')
        if self.caption:
            parts.append(f"<figcaption>{_e(self.caption)}</figcaption>")
        if self.note:
            parts.append(f'<p class="figure-note">{_e(self.note)}</p>')
        parts.append("</figure>")
        return "".join(parts)

    def to_text(self) -> str:
        return "\n".join(x for x in (heading("Figure", self.number, self.caption), self.alt, self.note) if x)

    def svg(self) -> str | None:
        """The chart as SVG (the same drawing as the PNG), for the report's downloads; None if not drawn."""
        if self.png is None or self.figure is None:
            return None
        return _svg(self.figure)

    def _repr_mimebundle_(self, include=None, exclude=None):
        data, metadata = super()._repr_mimebundle_(include, exclude)
        svg = self.svg()
        if svg is not None:  # the page shows the HTML (PNG); the runner saves the SVG beside the report
            data["image/svg+xml"] = svg
        return data, metadata


def safe_figure(
    data,
    rows: str | None = None,
    columns: str | None = None,
    *,
    kind: str = "bar",
    caption: str | None = None,
    where=None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    shares: str | None = None,
    keep_empty: bool = False,
    order=None,
    merge=None,
    sources=None,
    settings: DisclosureSettings | dict | None = None,
) -> SafeFigure:
    """Count persons by ``rows`` (and ``columns``), protect and draw the published cells.

    ``data`` is a frame with one row per person, or a :class:`~studylib.report.SafeTable`
    whose published cells are drawn (no second table is recorded).

    ``where``: a boolean Series or query text selecting the persons counted; ``title``,
    ``xlabel``: the figure's title and axis label; ``shares``: draw percentages of ``"total"``,
    ``"rows"`` or ``"columns"`` instead of counts; ``keep_empty``: keep categories with no person;
    ``order``: per column the categories in the order wanted; ``merge``: category merges allowed;
    ``sources``: source notes under the figure; ``settings``: disclosure settings other than the
    study's (:func:`current_settings`).

    Example::

        safe_figure(cases, rows="age_band", kind="bar", caption="Persons by age", ylabel="persons")
    """
    if isinstance(data, Figure):
        return _wrap_figure(data, caption, sources, settings)
    if kind not in KINDS:
        raise DisclosureError(f"kind must be one of {KINDS}, not {kind!r}")
    if shares is not None and shares not in SHARES_OF:
        raise DisclosureError(f"shares must be one of {SHARES_OF} or None, not {shares!r}")
    chosen = study_settings(settings)
    if isinstance(data, SafeTable):
        protected = data.protected
    elif is_person_frame(data):
        by = [c for c in (rows, columns) if c is not None]
        count = count_persons(data, by, where=where, keep_empty=keep_empty,
                              merge=chosen.merge if merge is None else merge, min_cell=chosen.min_cell, order=order)
        protected = protect_count(count, chosen, "figure", caption)[1]
    else:
        refuse_counts("safe_figure")
        protected = protect_for_report(data, chosen)
    if len(protected.dims) > 2:
        raise DisclosureError("a figure draws a 1-D or 2-D table; draw slices of a larger table one by one")
    values, hidden, row_labels, column_labels = _drawable(protected, shares)
    row_labels = [_word(x) for x in row_labels]
    column_labels = [_word(x) for x in column_labels]
    symbol = hidden_symbol(protected)
    if hidden.all():
        note = (f"Not drawn: every value of this figure is confidential ({symbol}), so there is nothing to show "
                "without identifying the persons counted.")
        return SafeFigure(None, protected.marker(), caption, note, f"figure not drawn: {note}", next_number("figure"))
    if ylabel is None and shares is not None:
        ylabel = "percent"
    figure = Figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    axes = figure.add_subplot()
    _draw(axes, kind, values, hidden, row_labels, column_labels, symbol, percent=shares is not None)
    if title:
        axes.set_title(title)
    if xlabel:
        axes.set_xlabel(xlabel)
    if ylabel:
        axes.set_ylabel(ylabel)
    png = _png(figure)
    not_drawn = _hidden_labels(hidden, row_labels, column_labels)
    note = disclosure_note(protected, bool(not_drawn))
    if not_drawn:
        listed = ", ".join(not_drawn[:_LISTED]) + (f" and {len(not_drawn) - _LISTED} more" if len(not_drawn) > _LISTED else "")
        note = f"Not drawn: {listed}. {note}"
    if shares is not None:
        note = f"Percentages computed from published counts only. {note or ''}".strip()
    alt = _alt_text(figure, kind, caption)
    return SafeFigure(png, protected.marker(), caption, note, alt, next_number("figure"), figure)


def _word(label) -> str:
    return label if label == TOTAL else v.label(str(label))


def _wrap_figure(figure: Figure, caption, sources, settings) -> SafeFigure:
    if in_study_run():
        raise CountsRefused(
            "a figure drawn by hand cannot be published: nothing ties its marks to published cells. "
            "Let the library draw it: safe_figure(cases, rows='...', kind='bar'|'barh'|'line', caption=...)"
        )
    if not sources:
        raise DisclosureError(
            "a figure drawn by hand must name the protected tables it was drawn from: "
            "safe_figure(fig, caption=..., sources=[protected, ...])"
        )
    sources = [sources] if isinstance(sources, ProtectedTable) else list(sources)
    if not all(isinstance(s, ProtectedTable) for s in sources):
        raise DisclosureError("sources must be ProtectedTable objects (from protect_table or safe_table(...).protected)")
    warnings.warn("a figure drawn by hand is accepted only outside a study run", UserWarning, stacklevel=3)
    checked = [protect_for_report(s, settings) for s in sources]
    strictest = max(checked, key=lambda s: s.min_cell)
    png = _png(figure)
    alt = _alt_text(figure, "chart", caption)
    try:  # a pyplot figure would be shown again, unmarked, at the end of the cell
        import matplotlib.pyplot as plt

        plt.close(figure)
    except Exception:  # noqa: BLE001 - closing is a courtesy
        pass
    note = disclosure_note(strictest, any(bool(s.suppressed.to_numpy().any()) for s in checked))
    return SafeFigure(png, strictest.marker(), caption, note, alt, next_number("figure"), figure)


def _drawable(protected: ProtectedTable, shares):
    """Published values without the Totals, the hidden mask, row and column labels."""
    if shares is None:
        shown = protected.published.astype("Float64")
    else:
        shown = published_shares(protected, of=shares)
    shown = shown.to_numpy(dtype="float64", na_value=np.nan)
    hidden = np.isnan(shown)
    layout_labels = protected._layout.labels
    rows = [str(x) for x in layout_labels[0]]
    columns = [str(x) for x in layout_labels[1]] if len(layout_labels) > 1 else []
    if protected.margins:
        keep_r = [i for i, x in enumerate(layout_labels[0]) if x != TOTAL]
        rows = [rows[i] for i in keep_r]
        if shown.ndim == 2:
            keep_c = [j for j, x in enumerate(layout_labels[1]) if x != TOTAL]
            columns = [columns[j] for j in keep_c]
            shown, hidden = shown[np.ix_(keep_r, keep_c)], hidden[np.ix_(keep_r, keep_c)]
        else:
            shown, hidden = shown[keep_r], hidden[keep_r]
    if shown.ndim == 1:
        shown, hidden = shown[:, None], hidden[:, None]
    return shown, hidden, rows, columns


def _draw(axes, kind: str, values, hidden, rows, columns, symbol: str, percent: bool = False) -> None:
    """Draw the published values: bars carry their value (the companion table in the picture),
    a count axis has whole-number ticks, colours are the Okabe-Ito colour-blind safe set."""
    from matplotlib.ticker import MaxNLocator

    n_rows, n_cols = values.shape
    axes.set_prop_cycle(color=COLOURS)
    text = (lambda v: f"{v:.1f} %") if percent else (lambda v: f"{v:,.0f}")
    positions = np.arange(n_rows, dtype=float)
    width = 0.8 / n_cols
    for j in range(n_cols):
        label = columns[j] if columns else None
        published = ~hidden[:, j]
        if kind == "line":
            axes.plot(positions, values[:, j], marker="o", label=label)
            spots = positions[hidden[:, j]]
        else:
            offset = positions + (j - (n_cols - 1) / 2) * width
            if kind == "bar":
                bars = axes.bar(offset[published], values[published, j], width=width, label=label)
            else:
                bars = axes.barh(offset[published], values[published, j], height=width, label=label)
            if n_rows * n_cols <= _LABELLED:
                axes.bar_label(bars, labels=[text(v) for v in values[published, j]], padding=2, fontsize=7)
            spots = offset[hidden[:, j]]
        for spot in spots:  # the symbol at the axis, never a value
            if kind == "barh":
                axes.annotate(symbol, (0, spot), xytext=(2, 0), textcoords="offset points", va="center", fontsize=7, color="#5b6770")
            else:
                axes.annotate(symbol, (spot, 0), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7, color="#5b6770")
    edge = (-0.6, n_rows - 0.4)
    if kind == "barh":
        axes.set_yticks(positions, rows)
        axes.set_ylim(edge[1], edge[0])  # first category on top
        axes.set_xlim(left=0)
    else:
        rotate = n_rows > 6 or max((len(r) for r in rows), default=0) > 8
        axes.set_xticks(positions, rows, rotation=30 if rotate else 0, ha="right" if rotate else "center")
        axes.set_xlim(*edge)
        axes.set_ylim(bottom=0)
    if not percent:  # persons come whole: no tick at 2.5
        (axes.xaxis if kind == "barh" else axes.yaxis).set_major_locator(MaxNLocator(integer=True))
    if kind != "line":  # room above the longest bar for its value label
        top = float(np.nanmax(np.where(hidden, 0, values), initial=0)) * 1.15 or 1.0
        (axes.set_xlim if kind == "barh" else axes.set_ylim)(0, top)
    if n_cols > 1:
        axes.legend(fontsize=8, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)


def _hidden_labels(hidden, rows, columns) -> list[str]:
    out = []
    for i, j in zip(*np.nonzero(hidden)):
        out.append(rows[i] if not columns or hidden.shape[1] == 1 else f"{rows[i]} / {columns[j]}")
    return out


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _svg(figure: Figure) -> str:
    """SVG text of a figure, the same bytes for the same drawing (no date, fixed ids)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "studylib", "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", dpi=_DPI, metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def _alt_text(figure: Figure, kind: str, caption) -> str:
    """Every text the picture shows (drawn already by savefig), in order, once each."""
    texts = []
    for artist in figure.findobj(Text):
        text = artist.get_text().strip()
        if text and artist.get_visible() and text not in texts:
            texts.append(text)
    head = f"{kind} chart" + (f": {caption}" if caption else "")
    return head + (". Texts: " + "; ".join(texts) if texts else "")
