"""The chart of extent estimates: every model's estimate and range, drawn by the library.

``estimates_figure(frame, estimate="total", lower="lower", upper="upper", label="model",
caption=...)`` draws one horizontal line per row (its range) with a dot at the estimate,
optionally a shaded band for a recommended range and a dashed line for a known truth (on
synthetic data). It is drawn only from estimates, never from counts of persons, so it
carries the marker of a statistics table (rule ``statistics``, the study's minimum cell).
The result is a :class:`~studylib.report.figures.SafeFigure`: embedded PNG, caption, and an
alt text that repeats every text and every figure of the chart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from studylib.privacy.marker import marker_for
from studylib.report.figures import SafeFigure, _alt_text, _png
from studylib.report.settings import current_settings, next_number


def estimates_figure(
    frame: pd.DataFrame,
    estimate: str = "total",
    lower: str = "lower",
    upper: str = "upper",
    *,
    label: str = "model",
    caption: str | None = None,
    recommended: tuple[float, float] | None = None,
    truth: float | None = None,
    xlabel: str = "persons in all (estimate and range)",
    min_cell: int | None = None,
) -> SafeFigure:
    """A chart of each row's ``estimate`` with its ``lower``-``upper`` range, labelled by ``label``.

    ``recommended``: (lower, upper) drawn as a shaded band; ``truth``: a dashed vertical
    line (only for synthetic data, where the truth is known). Rows without an estimate are
    left out and named in the note. Raises ``KeyError`` naming a missing column.
    """
    missing = [c for c in (estimate, lower, upper, label) if c not in frame.columns]
    if missing:
        raise KeyError(f"columns {missing} are not in the table (columns: {list(frame.columns)})")
    values = frame[[label, estimate, lower, upper]].copy()
    for col in (estimate, lower, upper):
        values[col] = pd.to_numeric(values[col], errors="coerce")
    ok = np.isfinite(values[estimate].to_numpy(float))
    left_out = [str(v) for v in values.loc[~ok, label]]
    values = values[ok].iloc[::-1]  # first row on top
    figure = Figure(figsize=(6.4, 0.45 * max(len(values), 2) + 1.4))
    axes = figure.add_subplot()
    ys = np.arange(len(values))
    if recommended is not None and all(np.isfinite(recommended)):
        axes.axvspan(recommended[0], recommended[1], color="#d9e8f5", zorder=0, label="recommended range")
    lo = values[lower].to_numpy(float)
    hi = values[upper].to_numpy(float)
    mid = values[estimate].to_numpy(float)
    has_range = np.isfinite(lo) & np.isfinite(hi)
    axes.hlines(ys[has_range], lo[has_range], hi[has_range], color="#1f4e79", linewidth=2)
    axes.plot(mid, ys, "o", color="#1f4e79", label="estimate")
    if truth is not None and np.isfinite(truth):
        axes.axvline(truth, color="#b22222", linestyle="--", label=f"truth (synthetic data): {truth:,.0f}")
    axes.set_yticks(ys, [str(v) for v in values[label]])
    axes.set_ylim(-0.7, len(values) - 0.3)
    axes.set_xlabel(xlabel)
    axes.grid(axis="x", color="#dddddd")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, fontsize="small", frameon=False)
    figure.tight_layout()
    png = _png(figure)
    ranges = "; ".join(
        f"{name}: {m:,.0f}" + (f" ({a:,.0f} to {b:,.0f})" if np.isfinite(a) and np.isfinite(b) else "")
        for name, m, a, b in zip(values[label][::-1], mid[::-1], lo[::-1], hi[::-1])
    )
    alt = _alt_text(figure, "range", caption) + ". Figures: " + ranges
    if recommended is not None:
        alt += f". Recommended range {recommended[0]:,.0f} to {recommended[1]:,.0f}"
    note = f"Not drawn (no estimate): {', '.join(left_out)}." if left_out else None
    m = int(min_cell or current_settings().min_cell)
    return SafeFigure(png, marker_for("statistics", m, None, False, False), caption, note, alt, next_number("figure"), figure)
