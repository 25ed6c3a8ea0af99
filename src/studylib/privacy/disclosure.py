"""Disclosure control of count tables: what may be published of a table, and proof of it.

:func:`protect_table` takes a pandas count table (a Series for one dimension, a DataFrame
for two, a Series or DataFrame with a MultiIndex for more), adds Totals, marks the primary
cells (counts ``1..min_cell-1``; zeros too when ``zeros_disclosive``), and either
suppresses further cells until the attacker's linear programme can neither recover a
hidden cell nor narrow it into the sensitive range (:mod:`studylib.privacy.suppression`),
or applies controlled rounding (:mod:`studylib.privacy.rounding`). It runs :func:`attack`
on its own result before returning. Percentages and rates come only from published cells
(:func:`published_shares`, :func:`published_rates`).

A :class:`ProtectedTable` shows itself only as a summary: its true counts never reach a
notebook output by accident. Tables for readers are drawn by :mod:`studylib.report`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import sparse

from studylib.errors import Problem, StudylibError, ValidationError
from studylib.privacy.intruder import intruder_bounds, relation_matrix
from studylib.privacy.marker import marker_for, min_cell_problem
from studylib.privacy.rounding import BASES, controlled_rounding
from studylib.privacy.suppression import Rule, add_hypercubes, cell_costs, protect_linked

TOTAL = "Total"
#: The one neutral symbol a hidden cell shows by default, whatever the reason (UK GSS guidance).
HIDDEN_SYMBOL = "[c]"
#: The cell key method's settings unless a study says otherwise: counts move by at most 3,
#: with variance 2, and no 1 or 2 is ever published (as the ABS and the ONS 2021 census do).
CELL_KEY_DEFAULTS = {"max_deviation": 3, "variance": 2.0, "no_small": 2}
#: Labels that mean a table already carries margins (ours, and pandas' crosstab/pivot_table).
MARGIN_LABELS = (TOTAL, "All")


class DisclosureError(StudylibError):
    """A table cannot be protected as asked, or a protection does not meet the study's settings."""


@dataclass(frozen=True)
class DisclosureSettings:
    """A study's disclosure settings: minimum cell, optional rounding base, margins, zeros."""

    min_cell: int = 5
    rounding: int | None = None
    margins: bool = True
    zeros_disclosive: bool = False
    #: what every hidden cell shows, whatever the reason (UK GSS: ``[c]``, confidential)
    symbol: str = HIDDEN_SYMBOL
    #: category merges a study allows before cells are hidden: column -> rule
    #: (``other_or_unknown``, ``adjacent`` or ``{"top": N}``; see :mod:`studylib.report.counting`)
    merge: Mapping[str, Any] = field(default_factory=dict)
    #: the cell key method instead of suppression: ``max_deviation``, ``variance``, ``no_small``
    #: (missing ones take :data:`CELL_KEY_DEFAULTS`; see :mod:`studylib.privacy.cell_key`)
    cell_key: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.cell_key is not None:
            problems += self._check_cell_key()
        if not isinstance(self.symbol, str) or not self.symbol.strip() or any(ch.isdigit() for ch in self.symbol):
            problems.append(f"the hidden-cell symbol must be a short text without digits, not {self.symbol!r}")
        if not isinstance(self.merge, Mapping):
            problems.append(f"merge must map column names to merge rules, not {self.merge!r}")
        if problem := min_cell_problem(self.min_cell):
            problems.append(problem)
        if self.rounding is not None and self.rounding not in BASES:
            problems.append(f"rounding must be one of {BASES} or none, not {self.rounding!r}")
        if self.rounding is not None and self.rounding in BASES and isinstance(self.min_cell, int) \
                and self.min_cell > 2 * self.rounding - 1:
            problems.append(
                f"rounding to base {self.rounding} cannot protect a minimum cell of {self.min_cell} (a published "
                f"{self.rounding} means 1 to {2 * self.rounding - 1}); use base 5 or suppression"
            )
        if self.rounding is not None and self.zeros_disclosive:
            problems.append("rounding publishes zeros as zero, so it cannot protect disclosive zeros; use suppression")
        if problems:
            raise DisclosureError("invalid disclosure settings: " + "; ".join(problems))

    def _check_cell_key(self) -> list[str]:
        if not isinstance(self.cell_key, Mapping):
            return [f"cell_key must map {', '.join(CELL_KEY_DEFAULTS)} to numbers, not {self.cell_key!r}"]
        unknown = sorted(set(self.cell_key) - set(CELL_KEY_DEFAULTS))
        if unknown:
            return [f"cell_key: unknown setting(s) {', '.join(map(str, unknown))} (known: {', '.join(CELL_KEY_DEFAULTS)})"]
        chosen = {**CELL_KEY_DEFAULTS, **self.cell_key}
        object.__setattr__(self, "cell_key", chosen)
        problems = []
        if self.rounding is not None:
            problems.append("the cell key method and rounding exclude each other; choose one")
        if self.zeros_disclosive:
            problems.append("the cell key method publishes zeros as zero, so it cannot protect disclosive zeros; use suppression")
        try:
            from studylib.privacy.cell_key import perturbation_table

            perturbation_table(**chosen)
        except (TypeError, ValueError) as err:
            problems.append(f"cell_key: {err}")
        return problems

    @property
    def rule(self) -> str:
        if self.cell_key is not None:
            return "cell_key"
        return "suppression" if self.rounding is None else "rounding"

    def marker(self) -> dict[str, Any]:
        """The machine marker that safe tables and figures carry (see :mod:`studylib.privacy.marker`)."""
        return marker_for(self.rule, self.min_cell, self.rounding, self.margins, self.zeros_disclosive,
                          cell_key=None if self.cell_key is None else dict(self.cell_key))

    def to_json(self) -> str:
        """The settings as one JSON text: how the runner hands them to a report's kernel."""
        perturbation = {} if self.cell_key is None else {"cell_key": dict(self.cell_key)}
        return json.dumps({"min_cell": self.min_cell, "rounding": self.rounding, "margins": self.margins,
                           "zeros_disclosive": self.zeros_disclosive, "symbol": self.symbol,
                           "merge": dict(self.merge), **perturbation}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "disclosure settings") -> "DisclosureSettings":
        """Settings read back from :meth:`to_json`; a DisclosureError names what is wrong."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise DisclosureError(f"{where}: not JSON ({err.msg})") from None
        if not isinstance(raw, dict):
            raise DisclosureError(f"{where}: not a JSON object")
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise DisclosureError(f"{where}: unknown setting(s) {', '.join(unknown)}")
        return cls(**raw)

    def stricter(self, other: "DisclosureSettings") -> "DisclosureSettings":
        """The settings of a release shared by two studies: the larger minimum cell, rounding if
        either rounds (the larger base), zeros disclosive if either treats them so."""
        bases = [b for b in (self.rounding, other.rounding) if b is not None]
        return replace(self, min_cell=max(self.min_cell, other.min_cell), rounding=max(bases) if bases else None,
                       zeros_disclosive=self.zeros_disclosive or other.zeros_disclosive)


@dataclass(frozen=True)
class _Layout:
    """How an N-dimensional array with Totals maps to and from pandas objects."""

    names: tuple
    labels: tuple[tuple, ...]
    margins: bool

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(level) for level in self.labels)

    def frame(self, array: np.ndarray, dtype=None) -> pd.Series | pd.DataFrame:
        array = np.asarray(array)
        if len(self.labels) == 1:
            out = pd.Series(array, index=pd.Index(self.labels[0], name=self.names[0]))
        elif len(self.labels) == 2:
            out = pd.DataFrame(
                array,
                index=pd.Index(self.labels[0], name=self.names[0]),
                columns=pd.Index(self.labels[1], name=self.names[1]),
            )
        else:
            index = pd.MultiIndex.from_product(self.labels[:-1], names=self.names[:-1])
            columns = pd.Index(self.labels[-1], name=self.names[-1])
            out = pd.DataFrame(array.reshape(-1, array.shape[-1]), index=index, columns=columns)
        return out if dtype is None else out.astype(dtype)

    def cell_index(self, cells: np.ndarray) -> pd.Index:
        """Labels of the cells at the given flat positions."""
        coords = np.unravel_index(np.asarray(cells, dtype=np.int64), self.shape)
        columns = [np.asarray(self.labels[a], dtype=object)[coords[a]] for a in range(len(self.labels))]
        if len(columns) == 1:
            return pd.Index(columns[0], name=self.names[0], dtype=object)
        return pd.MultiIndex.from_arrays(columns, names=list(self.names))


@dataclass(frozen=True, repr=False)
class ProtectedTable:
    """A count table with its protection: true counts, primary and hidden cells, what is published.

    ``counts`` holds the true counts (with a ``Total`` on every axis when ``margins``);
    ``primary`` and ``suppressed`` are boolean tables of the same shape; ``published`` is
    what may be shown (suppressed cells missing, or rounded counts when ``settings.rounding``).
    """

    counts: pd.Series | pd.DataFrame
    primary: pd.Series | pd.DataFrame
    suppressed: pd.Series | pd.DataFrame
    published: pd.Series | pd.DataFrame
    settings: DisclosureSettings
    _layout: _Layout = field(compare=False)
    _values: np.ndarray = field(compare=False)
    _primary: np.ndarray = field(compare=False)
    _hidden: np.ndarray = field(compare=False)
    _published: np.ndarray = field(compare=False)

    @property
    def min_cell(self) -> int:
        return self.settings.min_cell

    @property
    def margins(self) -> bool:
        return self.settings.margins

    @property
    def zeros_disclosive(self) -> bool:
        return self.settings.zeros_disclosive

    @property
    def rounding(self) -> int | None:
        return self.settings.rounding

    @property
    def rule(self) -> str:
        return self.settings.rule

    @property
    def dims(self) -> tuple:
        return self._layout.names

    def marker(self) -> dict[str, Any]:
        return self.settings.marker()

    def __repr__(self) -> str:  # never the true counts
        shape = "x".join(str(n - (1 if self.margins else 0)) for n in self._layout.shape)
        hidden = int(self._hidden.sum())
        return (
            f"<ProtectedTable {shape} by {list(self.dims)}: {self.rule}, min cell {self.min_cell}, "
            f"{int(self._primary.sum())} primary, {hidden - int((self._primary & self._hidden).sum())} secondary>"
        )


def protect_table(
    table: pd.Series | pd.DataFrame,
    min_cell: int = 5,
    margins: bool = True,
    zeros_disclosive: bool = False,
    rounding: int | None = None,
    hide: pd.Series | pd.DataFrame | None = None,
) -> ProtectedTable:
    """Protect a count table: primary and secondary suppression (or controlled rounding).

    ``hide`` (a boolean table labelled like the counts; Totals may be included, cells it
    does not name stay as they are) names cells to hide besides the primary ones: the
    cells a release plan hid (:func:`studylib.privacy.release.protect_release`). When the
    primary and these cells are already safe together nothing more is hidden, so a plan's
    masks replay exactly; else secondary suppression adds cells but never gives these back.

    Secondary suppression hides hypercubes around every hidden cell, asks the attacker
    (:func:`attack`) which cells it can still narrow, hides more until it finds none, and
    for small tables (at most :data:`PRUNE_MAX_CELLS` cells) then gives back every
    secondary cell whose release the attacker cannot exploit. The final result is attacked
    once more before it is returned; a cell the attacker could pin or narrow into
    ``1..min_cell-1`` is an error, never a published table.

    ``margins``: add Totals (and protect them); ``zeros_disclosive``: zero cells count as small.

    Example::

        counts = cases.groupby(["sector", "region"]).size().unstack(fill_value=0)
        protect_table(counts, min_cell=5, rounding=None)
    """
    settings = DisclosureSettings(min_cell, rounding, margins, zeros_disclosive)
    values, layout = _table_array(table, margins)
    rule = Rule(settings.min_cell, settings.zeros_disclosive)
    primary = rule.is_sensitive(values)
    forced = None if hide is None else _hide_mask(hide, layout)
    if settings.rounding is not None:
        hidden = np.zeros(values.shape, dtype=bool) if forced is None else forced.copy()
        published = controlled_rounding(values, settings.rounding, margins)
    else:
        hidden, published = primary.copy(), values
        if forced is not None:
            hidden |= forced
            if margins and not _bounds(values, hidden, values, settings, relation_matrix(values.shape), False)[3].all():
                _suppress_secondary(values, hidden, settings, forced=forced)
        elif margins and primary.any():
            _suppress_secondary(values, hidden, settings)
    protected = _assemble(values, primary, hidden, published, settings, layout)
    bounds = attack(protected, exact=False)
    if not bounds["safe"].all():
        unsafe = bounds.index[~bounds["safe"].to_numpy()]
        raise DisclosureError(
            f"{settings.rule} leaves {len(unsafe)} cell(s) that an attacker can narrow into "
            f"{rule.sensitive_low}..{settings.min_cell - 1} or recover (first: {unsafe[0]!r})"
            + ("; use suppression" if settings.rounding else "")
        )
    return protected


def _hide_mask(hide, layout: _Layout) -> np.ndarray:
    """The cells ``hide`` marks, as a boolean array shaped like the table with Totals."""
    if not isinstance(hide, (pd.Series, pd.DataFrame)):
        raise DisclosureError(f"hide must be a boolean pandas table labelled like the counts, not {type(hide).__name__}")
    if isinstance(hide, pd.DataFrame) and len(layout.labels) > 2 and not isinstance(hide.index, pd.MultiIndex):
        raise DisclosureError("hide must be labelled like the counts (a MultiIndex for more than two dimensions)")
    shape_frame = layout.frame(np.zeros(layout.shape, dtype=bool))
    if isinstance(hide, pd.DataFrame) != isinstance(shape_frame, pd.DataFrame):
        raise DisclosureError("hide must have the form of the table (a Series for one dimension, a DataFrame for more)")
    unknown = [label for label in hide.index if label not in shape_frame.index]
    if isinstance(hide, pd.DataFrame):
        unknown += [label for label in hide.columns if label not in shape_frame.columns]
    if unknown:
        raise DisclosureError(f"hide names {unknown[0]!r}, which is not a category of the table (nor Total)")
    mask = hide.reindex_like(shape_frame).astype("boolean").fillna(False).astype(bool)
    return mask.to_numpy().reshape(layout.shape)


#: Tables up to this many cells (Totals included) get the pruning pass of protect_table.
PRUNE_MAX_CELLS = 400


def _suppress_secondary(
    values: np.ndarray, hidden: np.ndarray, settings: DisclosureSettings, forced: np.ndarray | None = None,
    extra_cost: np.ndarray | None = None,
) -> None:
    """Hide secondary cells in place until the attacker finds no unsafe cell, then prune.

    ``forced`` marks cells that must stay hidden (a release plan hid them): the pruning
    pass never gives them back. ``extra_cost`` is added to the cost of hiding each cell (the
    release planner makes cells that other published tables already give away expensive).
    """
    rule = Rule(settings.min_cell, settings.zeros_disclosive)
    cost = cell_costs(values, settings.margins)
    if extra_cost is not None:
        cost = cost + extra_cost
    relations = relation_matrix(values.shape)
    protect_linked(values, hidden, cost, rule, list(zip(*np.nonzero(hidden))))
    while True:
        targets, _, _, safe = _bounds(values, hidden, values, settings, relations, exact=False)
        if safe.all():
            break
        cells = np.array(np.unravel_index(targets[~safe], values.shape)).T
        added = add_hypercubes(values, hidden, cost, rule, [tuple(int(i) for i in c) for c in cells])
        protect_linked(values, hidden, cost, rule, added)
    if values.size > PRUNE_MAX_CELLS:
        return
    keep = rule.is_sensitive(values)
    if forced is not None:
        keep = keep | forced
    secondary = np.flatnonzero((hidden & ~keep).ravel())
    for flat in secondary[np.argsort(-cost.ravel()[secondary], kind="stable")]:
        cell = np.unravel_index(flat, values.shape)
        hidden[cell] = False
        if not _bounds(values, hidden, values, settings, relations, exact=False)[3].all():
            hidden[cell] = True


def _bounds(values, hidden, published, settings, relations, exact: bool, networks: bool = True):
    """Array-level attack: (target flat indices, lower, upper, safe) for a protection."""
    rule = Rule(settings.min_cell, settings.zeros_disclosive)
    flat_values = values.ravel().astype(float)
    if settings.rounding is None:
        known = ~hidden.ravel()
        lower = np.zeros(values.size)
        upper = np.full(values.size, np.inf)
        targets = np.flatnonzero(~known)
        safe = rule.is_safe
    else:
        base = settings.rounding
        shown = np.asarray(published, dtype=float).ravel()
        known = np.zeros(values.size, dtype=bool)
        lower = np.maximum(shown - (base - 1), 0.0)
        upper = shown + (base - 1)
        targets = np.flatnonzero(lower <= settings.min_cell - 1)
        safe = partial(_rounding_safe, rule)
    lo, hi = intruder_bounds(flat_values, known, lower, upper, targets, relations, None if exact else safe, networks)
    return targets, lo, hi, safe(lo, hi)


def apply_suppression(
    table: pd.Series | pd.DataFrame,
    suppressed: pd.Series | pd.DataFrame,
    min_cell: int = 5,
    margins: bool = True,
    zeros_disclosive: bool = False,
) -> ProtectedTable:
    """A table with a given suppression pattern, unchecked: for testing a pattern with :func:`attack`.

    ``suppressed`` is a boolean table labelled like the table (Totals may be included);
    cells it does not name stay published.

    ``min_cell``: the smallest count that may be published; ``margins``: the table has Totals;
    ``zeros_disclosive``: zero cells count as small.

    Example::

        protected = apply_suppression(counts, counts < 5, min_cell=5)
        attack(protected)
    """
    settings = DisclosureSettings(min_cell, None, margins, zeros_disclosive)
    values, layout = _table_array(table, margins)
    rule = Rule(settings.min_cell, settings.zeros_disclosive)
    shape_frame = layout.frame(np.zeros(layout.shape, dtype=bool))
    mask = suppressed.reindex_like(shape_frame).fillna(False).astype(bool).to_numpy().reshape(layout.shape)
    return _assemble(values, rule.is_sensitive(values), mask, values, settings, layout)


def attack(protected: ProtectedTable, exact: bool = True, networks: bool = True) -> pd.DataFrame:
    """The attacker's bounds for every hidden cell, from the published table alone.

    Suppressed cells are unknown (at least 0); rounded cells lie within ``base - 1`` of
    their published value. The attacker solves linear programmes (scipy HiGHS) over the
    additivity of the table and rounds the results inward to whole numbers. Returns one
    row per suppressed cell (for a rounded table: per cell whose rounding interval reaches
    below ``min_cell``) with the true ``count``, ``lower``, ``upper``, ``primary`` and
    ``safe`` (the interval is wider than a point and not inside the sensitive range).
    The true counts are in the result: it is for the data owner, not for a report.

    With ``exact=False`` (what :func:`protect_table` uses) a cell stops being refined once
    the values it can take already make it safe; unsafe cells still get exact bounds.

    Bounds of one- and two-dimensional tables are found as maximum flows, which give the
    linear programmes' bounds many times faster; ``networks=False`` solves the programmes
    themselves (the reference path, for tests and the benchmark).

    ``protected``: the table as published (:class:`ProtectedTable`).

    Example::

        bool(attack(protect_table(counts, min_cell=5))['safe'].all())
    """
    values = protected._values
    relations = relation_matrix(values.shape) if protected.margins else sparse.csr_matrix((0, values.size))
    targets, lo, hi, safe = _bounds(
        values, protected._hidden, protected._published, protected.settings, relations, exact, networks
    )
    result = pd.DataFrame(
        {
            "count": values.ravel()[targets].astype(np.int64),
            "lower": lo,
            "upper": hi,
            "primary": protected._primary.ravel()[targets],
            "safe": safe,
        },
        index=protected._layout.cell_index(targets),
    )
    return result


def published_shares(protected: ProtectedTable, of: str = "total") -> pd.Series | pd.DataFrame:
    """Percentages computed from published cells only: of the grand ``"total"``, of each
    row's Total (``"rows"``) or of each column's Total (``"columns"``, 2-D tables).

    A share is missing where its cell or its Total is not published. Needs ``margins``.

    ``protected``: the protected table (:func:`protect_table`).

    Example::

        published_shares(protect_table(counts), of="rows")
    """
    if not protected.margins:
        raise DisclosureError("shares need published Totals: protect the table with margins=True")
    shown = protected._published.astype(float)
    shown = np.where(protected._hidden, np.nan, shown)
    ndim = shown.ndim
    if of == "total":
        denominator = shown[(-1,) * ndim]
    elif of == "rows" and ndim >= 2:
        denominator = shown[..., -1:]
    elif of == "columns" and ndim == 2:
        denominator = shown[-1:, :]
    else:
        raise DisclosureError(f"shares 'of' must be 'total', 'rows' (2-D and more) or 'columns' (2-D), not {of!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(denominator > 0, 100.0 * shown / denominator, np.nan)
    return protected._layout.frame(share, dtype="Float64")


def published_rates(protected: ProtectedTable, population, per: float = 100_000) -> pd.Series | pd.DataFrame:
    """Rates per ``per`` of a population (a number, or a table labelled like the published
    table, e.g. residents per region) from published cells only; missing where hidden.

    ``protected``: the protected table (:func:`protect_table`).

    Example::

        published_rates(protect_table(by_region), residents_by_region, per=100_000)
    """
    shown = protected.published.astype("Float64")
    if isinstance(population, (pd.Series, pd.DataFrame)):
        population = population.reindex_like(shown).astype("Float64")
    rates = shown / population * per
    return rates.where(~protected.suppressed)


def _rounding_safe(rule: Rule, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """For rounded tables only narrowing matters: a big count known exactly discloses nothing."""
    inside = (np.asarray(lower) >= rule.sensitive_low) & (np.asarray(upper) <= rule.min_cell - 1)
    return ~inside


def _assemble(values, primary, hidden, published, settings, layout) -> ProtectedTable:
    shown = np.asarray(published, dtype=np.int64)
    published_frame = layout.frame(shown, dtype="Int64")
    published_frame = published_frame.mask(layout.frame(hidden))
    return ProtectedTable(
        counts=layout.frame(values.astype(np.int64)),
        primary=layout.frame(primary),
        suppressed=layout.frame(hidden),
        published=published_frame,
        settings=settings,
        _layout=layout,
        _values=values.astype(np.int64),
        _primary=primary,
        _hidden=hidden,
        _published=shown,
    )


def mask_frame(table, margins: bool, mask: np.ndarray) -> pd.Series | pd.DataFrame:
    """A flat or N-D boolean ``mask`` over ``table``'s full layout (Totals last when
    ``margins``) as a pandas object labelled like :func:`protect_table`'s output: the form
    ``hide=`` takes (a release plan's cells, say)."""
    values, layout = _table_array(table, margins)
    return layout.frame(np.asarray(mask, dtype=bool).reshape(values.shape))


def assembled_table(counts: pd.DataFrame, hidden: pd.DataFrame, settings: DisclosureSettings) -> ProtectedTable:
    """A 1- or 2-D table without margins put together from columns protected one by one:
    ``hidden`` (same labels as ``counts``) is what they hide; nothing more is hidden here. A
    one-column frame whose column is named like its axis is a 1-D table."""
    values = counts.to_numpy(dtype=np.int64)
    if values.shape[1] == 1 and counts.columns[0] == counts.columns.name:
        values = values[:, 0]
        layout = _Layout((counts.index.name,), (tuple(counts.index),), False)
    else:
        layout = _Layout((counts.index.name, counts.columns.name), (tuple(counts.index), tuple(counts.columns)), False)
    primary = (values >= 1) & (values < settings.min_cell)
    mask = hidden.to_numpy(dtype=bool).reshape(values.shape)
    return _assemble(values, primary, mask, values, settings, layout)


def _table_array(table, margins: bool) -> tuple[np.ndarray, _Layout]:
    """The counts as an N-D array (with Totals appended when ``margins``) and its layout."""
    if isinstance(table, pd.DataFrame) and (
        isinstance(table.index, pd.MultiIndex) or isinstance(table.columns, pd.MultiIndex)
    ):
        table = _frame_to_series(table)
    if not isinstance(table, (pd.Series, pd.DataFrame)):
        raise DisclosureError(f"a count table must be a pandas Series or DataFrame, not {type(table).__name__}")
    if table.size == 0:
        raise DisclosureError("the table is empty")
    for axis in table.axes:
        if axis.has_duplicates:
            raise DisclosureError(f"the table has the label {axis[axis.duplicated()][0]!r} more than once")

    if isinstance(table, pd.DataFrame):
        levels = [tuple(table.index), tuple(table.columns)]
        names = (table.index.name, table.columns.name)
        values = _counts(table)
    elif isinstance(table.index, pd.MultiIndex):
        levels = [tuple(dict.fromkeys(table.index.get_level_values(i))) for i in range(table.index.nlevels)]
        names = tuple(table.index.names)
        full = pd.MultiIndex.from_product(levels, names=table.index.names)
        flat = pd.Series(_counts(table), index=table.index).reindex(full, fill_value=0.0).to_numpy()
        values = flat.reshape([len(level) for level in levels])
    else:
        levels = [tuple(table.index)]
        names = (table.index.name,)
        values = _counts(table)

    values = np.rint(values).astype(np.int64)
    clash = [(names[a], label) for a, level in enumerate(levels) for label in level if str(label) in MARGIN_LABELS]
    if clash:
        raise DisclosureError(
            f"the table already has a margin ({clash[0][1]!r} on {clash[0][0] or 'an axis'}); pass the table "
            "without margins (no margins=True in pd.crosstab): protect_table adds and protects them"
        )
    if margins:
        for axis in range(values.ndim):
            values = np.concatenate([values, values.sum(axis=axis, keepdims=True)], axis=axis)
        levels = [level + (TOTAL,) for level in levels]
    return values, _Layout(tuple(names), tuple(levels), margins)


def _frame_to_series(frame: pd.DataFrame) -> pd.Series:
    """A DataFrame with MultiIndex rows or columns as one Series over all its dimensions."""
    rows = [r if isinstance(r, tuple) else (r,) for r in frame.index]
    cols = [c if isinstance(c, tuple) else (c,) for c in frame.columns]
    keys = [r + c for r in rows for c in cols]
    names = list(frame.index.names) + list(frame.columns.names)
    return pd.Series(frame.to_numpy(dtype=object).ravel(), index=pd.MultiIndex.from_tuples(keys, names=names))


def _counts(table: pd.Series | pd.DataFrame) -> np.ndarray:
    """The cells as floats, each checked to be a whole number of at least zero (all problems together)."""
    frame = table.to_frame() if isinstance(table, pd.Series) else table
    problems, columns = [], []
    for position, column in enumerate(frame.columns):
        raw = frame.iloc[:, position]
        if pd.api.types.is_bool_dtype(raw.dtype):
            numeric = pd.Series(np.nan, index=raw.index)
        else:
            numeric = pd.to_numeric(raw.astype(object), errors="coerce").astype(float)
        for label, value, number in zip(frame.index, raw.tolist(), numeric.tolist()):
            if math.isnan(number):
                rule = "is missing or not a number"
            elif number < 0:
                rule = "is negative; a count is at least 0"
            elif number != int(number):
                rule = "is not a whole number"
            else:
                continue
            where = f"table cell {label!r}" if isinstance(table, pd.Series) else f"table row {label!r}, column {column!r}"
            problems.append(Problem(where, rule, value=value))
        columns.append(numeric.to_numpy())
    if problems:
        raise ValidationError(problems, summary="not a table of counts")
    array = np.column_stack(columns)
    return array[:, 0] if isinstance(table, pd.Series) else array
