"""Disclosure control of a whole release: every table published from one lineage, attacked together.

A release is many tables counted from the same persons, and a reader holds all of them.
Each table is given as a :class:`CountedTable`: for every person of the release, the inner
cell the table counts them in (or ``-1``), which cells it hides and what it publishes.

:func:`attack_release` is the reader: one linear programme over the distinct person
*profiles* (the tuple of a person's cells over all tables; only profiles that hold a
person are variables, which only makes the reader stronger) bounds

- every hidden cell (inner or Total): unsafe when recovered exactly, or narrowed into
  ``1..min_cell-1`` of its table's own ``min_cell`` (``0..min_cell-1`` when zeros are
  disclosive);
- every cell of a rounded or perturbed table whose interval (``published`` less and plus
  its ``spread``) reaches below its table's ``min_cell`` (kind ``"rounded"``): unsafe when
  narrowed into the sensitive range (a perturbed count of persons is 0 only if at most
  ``deviation``, and never 0 when it is published above 0: zeros are never perturbed);
- every *difference*: for tables A and B whose populations overlap but differ, the
  persons of an inner cell of A that B does not count (persons by sector for the nation
  against the same without one region; 2015-2024 against 2015-2023): unsafe when narrowed
  into the sensitive range of the stricter of the two tables' ``min_cell``.

Each table keeps the minimum cell its report was protected with (``CountedTable.min_cell``;
None: the release's): a regional brief at 10 beside national reports at 5 protects its own
cells at 10 without making the national tables hide more than their own rule needs.

:func:`protect_release` hides more cells, where the reader wins on a small cell or a
difference, until it finds nothing, keeping every table safe on its own at its own minimum
cell (:func:`studylib.privacy.disclosure._suppress_secondary`) and never changing a frozen table
(one published in an earlier release); then it shows the hidden cells that are not small
and that the release pins to one value (hiding them protects nobody and would read as a
small count). What cannot be made safe is refused, naming the tables that combine and the
cell. A hidden cell of a frozen table that is not small is no target: it cannot change, and
knowing it tells nothing about anyone.

Everything here holds true counts: it is for the runner's private state, never a report.
"""

from __future__ import annotations

import math
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from studylib.machine import usable_cores
from studylib.privacy.disclosure import TOTAL, DisclosureError, DisclosureSettings, _suppress_secondary
from studylib.privacy.marker import min_cell_problem
from studylib.privacy.rounding import BASES

_TOL = 1e-6
#: Rounds of "hide a cell, attack again" after which protect_release refuses what is left.
MAX_ROUNDS = 100
#: Witness programmes (pushing many targets up at once) tried before single programmes.
_WITNESS_ROUNDS = 4


class ReleaseError(DisclosureError):
    """A release is not well formed (a table's ledger does not fit its shape, ids clash, ...)."""


@dataclass(frozen=True)
class CountedTable:
    """One published table of a release, as counted from persons.

    ``cell`` holds, for every person of the release, the flat row-major index of their
    inner cell in ``shape``, or ``-1`` when the table does not count them. ``hidden`` has
    the shape of the published table (one more on every axis when ``margins``: the Total is
    the last index of each axis). ``published`` holds the rounded values of a rounded
    table, or the perturbed values of a perturbed one (``deviation``: by at most how much);
    None means the true counts are published.
    """

    id: str
    shape: tuple[int, ...]
    margins: bool
    cell: np.ndarray
    hidden: np.ndarray
    rounding: int | None = None
    published: np.ndarray | None = None
    labels: tuple[tuple, ...] | None = None
    report: str = ""
    #: a perturbed table (cell key method): ``published`` is at most this far from each count
    deviation: int | None = None
    #: the minimum cell this table is judged by (its report's); None: the release's ``min_cell``
    min_cell: int | None = None

    def __post_init__(self) -> None:
        where = f"table {self.id!r}" + (f" of report {self.report!r}" if self.report else "")
        shape = tuple(int(n) for n in self.shape)
        if not 1 <= len(shape) <= 4 or min(shape) < 1:
            raise ReleaseError(f"{where}: shape must have 1 to 4 dimensions of at least 1 category, not {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        cell = np.asarray(self.cell)
        if cell.ndim != 1 or not np.issubdtype(cell.dtype, np.integer):
            raise ReleaseError(f"{where}: cell must be a 1-D integer array (one entry per person), not {cell.dtype} {cell.shape}")
        size = math.prod(shape)
        bad = np.flatnonzero((cell < -1) | (cell >= size))
        if len(bad):
            raise ReleaseError(
                f"{where}: person {int(bad[0])} has cell {int(cell[bad[0]])}; cells are -1 (not counted) or 0..{size - 1}"
            )
        object.__setattr__(self, "cell", cell)
        hidden = np.asarray(self.hidden)
        if hidden.shape != self.full_shape or hidden.dtype != bool:
            raise ReleaseError(f"{where}: hidden must be a boolean array of shape {self.full_shape}, not {hidden.dtype} {hidden.shape}")
        if self.rounding is not None:
            if self.rounding not in BASES:
                raise ReleaseError(f"{where}: rounding must be one of {BASES} or None, not {self.rounding!r}")
            if self.published is None:
                raise ReleaseError(f"{where}: a rounded table needs its published (rounded) values")
        if self.deviation is not None:
            if self.rounding is not None or isinstance(self.deviation, bool) or not isinstance(self.deviation, int) \
                    or self.deviation < 1:
                raise ReleaseError(f"{where}: deviation must be a whole number of at least 1 and excludes rounding, not {self.deviation!r}")
            if self.published is None:
                raise ReleaseError(f"{where}: a perturbed table needs its published (perturbed) values")
        if self.published is not None:
            published = np.asarray(self.published)
            if published.shape != self.full_shape:
                raise ReleaseError(f"{where}: published must have shape {self.full_shape}, not {published.shape}")
            if self.spread is not None:
                counts = self.counts()
                off = np.flatnonzero((np.abs(published - counts) > self.spread).ravel() & ~hidden.ravel())
                if len(off):
                    what = f"a rounding to base {self.rounding}" if self.rounding else f"a perturbation by at most {self.deviation}"
                    raise ReleaseError(
                        f"{where}: published cell {self.cell_label(int(off[0]))!r} is {int(published.flat[off[0]])}, more "
                        f"than {self.spread} from its count: not {what}"
                    )
        if self.labels is not None and tuple(len(level) for level in self.labels) != shape:
            raise ReleaseError(f"{where}: labels have {[len(level) for level in self.labels]} categories, shape is {shape}")
        if self.min_cell is not None and (problem := min_cell_problem(self.min_cell)):
            raise ReleaseError(f"table {self.where()}: {problem}")

    @property
    def spread(self) -> int | None:
        """How far a published value may be from its count: ``rounding - 1``, the perturbation's
        ``deviation``, or None when the counts are published exactly."""
        if self.rounding is not None:
            return self.rounding - 1
        return self.deviation

    @property
    def full_shape(self) -> tuple[int, ...]:
        """The shape of the published table (with a Total on every axis when ``margins``)."""
        return tuple(n + 1 for n in self.shape) if self.margins else self.shape

    def counts(self) -> np.ndarray:
        """True counts with Totals (bincount of ``cell``), shaped like ``hidden``."""
        counted = self.cell[self.cell >= 0]
        values = np.bincount(counted, minlength=math.prod(self.shape)).astype(np.int64).reshape(self.shape)
        if self.margins:
            for axis in range(values.ndim):
                values = np.concatenate([values, values.sum(axis=axis, keepdims=True)], axis=axis)
        return values

    def cell_label(self, flat: int) -> tuple:
        """The cell at a flat index of the published table: its labels ('Total' for a margin),
        or its position on every axis when the table has no labels."""
        coords = np.unravel_index(int(flat), self.full_shape)
        out = []
        for axis, i in enumerate(coords):
            if self.margins and i == self.shape[axis]:
                out.append(TOTAL)
            elif self.labels is not None:
                out.append(self.labels[axis][i])
            else:
                out.append(int(i))
        return tuple(out)

    def cell_flat(self, label: tuple) -> int:
        """The flat index of a cell named as :meth:`cell_label` names it."""
        coords = []
        for axis, name in enumerate(label):
            if self.margins and name == TOTAL:
                coords.append(self.shape[axis])
            elif self.labels is not None:
                coords.append(list(self.labels[axis]).index(name))
            else:
                coords.append(int(name))
        return int(np.ravel_multi_index(coords, self.full_shape))

    def where(self) -> str:
        return f"{self.id!r}" + (f" ({self.report})" if self.report else "")


@dataclass(frozen=True)
class Release:
    """Every table a release publishes (and the earlier ones still out there), from ``persons`` persons."""

    persons: int
    tables: tuple[CountedTable, ...]
    min_cell: int = 5
    zeros_disclosive: bool = False
    #: ids of the tables published in earlier releases (they cannot change)
    frozen: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if problem := min_cell_problem(self.min_cell):
            raise ReleaseError(f"release: {problem}")
        object.__setattr__(self, "tables", tuple(self.tables))
        object.__setattr__(self, "frozen", frozenset(self.frozen))
        unknown = sorted(self.frozen - {table.id for table in self.tables})
        if unknown:
            raise ReleaseError(f"release: frozen names table(s) {unknown} that the release does not hold")
        seen = set()
        for table in self.tables:
            if table.id in seen:
                raise ReleaseError(f"release: table id {table.id!r} is used more than once; ids must be unique")
            seen.add(table.id)
            if len(table.cell) != self.persons:
                raise ReleaseError(
                    f"release: table {table.where()} has a cell for {len(table.cell)} persons, the release has {self.persons}"
                )

    def table(self, id: str) -> CountedTable:
        for table in self.tables:
            if table.id == id:
                return table
        raise KeyError(id)

    def min_cell_of(self, table: CountedTable) -> int:
        """The minimum cell a table is judged by: its own, else the release's."""
        return self.min_cell if table.min_cell is None else table.min_cell


# --------------------------------------------------------------------------------------
# the reader's model: profiles, rows (published cells) and targets


@dataclass
class _Target:
    table: int                 # index of the table in the release
    flat: int                  # flat cell in the table's published shape (hidden / rounded) or inner (difference)
    kind: str                  # "hidden" | "rounded" | "difference"
    other: int                 # the other table of a difference, else -1
    truth: int
    point: bool                # exact recovery is unsafe too (hidden cells of persons)
    min_cell: int              # its table's (a difference: the stricter of its two tables')
    component: int = -1
    columns: np.ndarray | None = None   # the profiles (local to the component) it sums
    lower: float = 0.0
    upper: float = 0.0
    safe: bool = True
    support: list = field(default_factory=list)  # groups of (table, flat): published cells its proof uses
    exact: bool = False        # the reader's programme pins it to one value (before rounding inward)


def _profiles(release: Release) -> tuple[np.ndarray, np.ndarray]:
    """Distinct person profiles: (matrix profiles x tables of cells, persons per profile)."""
    tables = release.tables
    if release.persons == 0 or not tables:
        return np.zeros((0, len(tables)), dtype=np.int64), np.zeros(0, dtype=np.int64)
    key = np.zeros(release.persons, dtype=np.int64)
    span = 1
    for table in tables:
        radix = math.prod(table.shape) + 1
        if span * radix >= 2**62:
            _, key = np.unique(key, return_inverse=True)
            span = int(key.max()) + 1
        key = key * radix + (table.cell.astype(np.int64) + 1)
        span *= radix
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    matrix = np.column_stack([table.cell[first].astype(np.int64) for table in tables])
    weight = np.bincount(inverse.ravel(), minlength=len(first)).astype(np.int64)
    counted = (matrix >= 0).any(axis=1)
    return matrix[counted], weight[counted]


def _phantoms(release: Release, matrix: np.ndarray, weight: np.ndarray):
    """With disclosive zeros, a hidden empty cell must not be known empty: give each one a
    profile of its own (counted by that table only) that holds nobody."""
    extra = []
    for t, table in enumerate(release.tables):
        inner_hidden = table.hidden[tuple(slice(0, n) for n in table.shape)].ravel()
        empty = np.bincount(table.cell[table.cell >= 0], minlength=math.prod(table.shape)) == 0
        for flat in np.flatnonzero(inner_hidden & empty):
            row = np.full(len(release.tables), -1, dtype=np.int64)
            row[t] = flat
            extra.append(row)
    if not extra:
        return matrix, weight
    return np.vstack([matrix, np.array(extra)]), np.concatenate([weight, np.zeros(len(extra), dtype=np.int64)])


def _covering(table: CountedTable, inner: np.ndarray) -> np.ndarray:
    """For inner cells (flat, in ``shape``), every published cell that counts them: one
    column per set of axes replaced by their Total (column 0: the inner cell itself)."""
    coords = np.unravel_index(inner, table.shape)
    k = len(table.shape)
    if not table.margins:
        return np.asarray(inner, dtype=np.int64)[:, None]
    columns = []
    for mask in range(2**k):
        full = [np.full(len(inner), table.shape[a]) if mask >> a & 1 else coords[a] for a in range(k)]
        columns.append(np.ravel_multi_index(full, table.full_shape))
    return np.column_stack(columns).astype(np.int64)


class _Programme:
    """The reader's linear programme of one component: profiles ``x >= 0``, ``lo <= A x <= hi``.

    Solved with scipy's HiGHS (its bindings kept, so that one model serves every objective
    and each solve starts from the last basis); scipy's ``linprog`` where they are missing.
    """

    def __init__(self, a: sparse.csr_matrix, lo: np.ndarray, hi: np.ndarray, scale: float) -> None:
        self.a, self.lo, self.hi, self.scale = a, lo, hi, scale
        self.n = a.shape[1]
        self.cap = max(2.0 * scale, 1.0) + 1.0
        try:
            from scipy.optimize._highspy import _core as highs
        except ImportError:  # pragma: no cover - older scipy
            highs = None
        self._highs = highs
        if highs is not None:
            csc = sparse.csc_matrix(a)
            lp = highs.HighsLp()
            lp.num_col_, lp.num_row_ = self.n, a.shape[0]
            lp.col_cost_ = np.zeros(self.n)
            lp.col_lower_ = np.zeros(self.n)
            lp.col_upper_ = np.full(self.n, np.inf)
            lp.row_lower_ = np.asarray(lo, dtype=float)
            lp.row_upper_ = np.asarray(hi, dtype=float)
            lp.a_matrix_.format_ = highs.MatrixFormat.kColwise
            lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = self.n, a.shape[0]
            lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
            lp.a_matrix_.index_ = csc.indices.astype(np.int32)
            lp.a_matrix_.value_ = csc.data.astype(float)
            self.model = highs._Highs()
            self.model.setOptionValue("output_flag", False)
            # primal simplex: every solve changes only the objective, so the last optimal basis
            # stays feasible and is a warm start (the default dual simplex restarts: 0.6 s per
            # solve on the demo release against 0.01-0.2 s)
            self.model.setOptionValue("simplex_strategy", 4)
            # presolve off: each solve starts from the last basis and changes few costs, so
            # presolving the whole model again costs more than it saves (1M persons: 143 s -> 64 s)
            self.model.setOptionValue("presolve", "off")
            self.model.passModel(lp)
            self._columns = np.arange(self.n, dtype=np.int32)
            self._capped = False
            self._cost = np.zeros(self.n)

    def constant(self, row_dual: np.ndarray, col_dual: np.ndarray | None) -> bool:
        """Whether an optimum's duals prove that the objective takes one value on every
        feasible point: no reduced cost, and only rows published exactly in the proof
        (then objective = duals . published values for every x). Where the true counts
        are strictly inside every rounded row and every profile holds a person, any optimal
        dual shows it when the objective is pinned, so this loses nothing."""
        if col_dual is None:
            return False
        if np.abs(col_dual).max(initial=0.0) > 1e-7:
            return False
        used = np.abs(row_dual) > 1e-9
        return bool(np.all(self.lo[used] == self.hi[used]))

    def twin(self) -> "_Programme":
        """A model of its own of the same programme (for another thread)."""
        return _Programme(self.a, self.lo, self.hi, self.scale)

    def basis(self):
        """The current basis (None without HiGHS's bindings), for :meth:`restart`."""
        return None if self._highs is None else self.model.getBasis()

    def restart(self, basis) -> None:
        """Forget every earlier solve and start the next one from ``basis``: what follows
        is then the same on any model of the same programme."""
        if self._highs is not None and basis is not None:
            self.model.clearSolver()
            self.model.setBasis(basis)

    def solve(self, objective: np.ndarray, maximise: bool, capped: bool = False, cold: bool = False):
        """(x, row duals, column duals or None) at the optimum, or None when unbounded."""
        if self._highs is None:
            return self._linprog(objective, maximise, capped)
        highs = self._highs
        if capped != self._capped:
            upper = np.full(self.n, self.cap if capped else np.inf)
            self.model.changeColsBounds(self.n, self._columns, np.zeros(self.n), upper)
            self._capped = capped
        objective = np.asarray(objective, dtype=float)
        changed = np.flatnonzero(objective != self._cost).astype(np.int32)
        if len(changed):  # only the costs that differ from the last solve's
            self.model.changeColsCost(len(changed), changed, objective[changed])
            self._cost = objective
        self.model.changeObjectiveSense(highs.ObjSense.kMaximize if maximise else highs.ObjSense.kMinimize)
        # the first solve, from no basis: the dual simplex gets there faster (1M persons: 6-9 s -> 2 s)
        status = self._run_dual() if cold else self._run()
        if status not in (highs.HighsModelStatus.kOptimal, highs.HighsModelStatus.kUnbounded,
                          highs.HighsModelStatus.kUnboundedOrInfeasible):
            # the warm-started primal simplex can stop without a verdict ("Unknown"): solve
            # this one again from scratch with the dual simplex
            self.model.clearSolver()
            status = self._run_dual()
        if status in (highs.HighsModelStatus.kUnbounded, highs.HighsModelStatus.kUnboundedOrInfeasible):
            return None
        if status != highs.HighsModelStatus.kOptimal:
            raise ReleaseError(
                f"the release attacker's linear programme failed ({self.model.modelStatusToString(status)}): "
                "the published tables are inconsistent with the persons counted"
            )
        solution = self.model.getSolution()
        return np.asarray(solution.col_value), np.asarray(solution.row_dual), np.asarray(solution.col_dual)

    def _run(self):
        self.model.run()
        return self.model.getModelStatus()

    def _run_dual(self):
        """One run with HiGHS's dual simplex, then back to the primal one of the warm starts."""
        self.model.setOptionValue("simplex_strategy", 1)
        try:
            return self._run()
        finally:
            self.model.setOptionValue("simplex_strategy", 4)

    def _linprog(self, objective, maximise, capped):  # pragma: no cover - fallback
        from scipy.optimize import linprog

        sign = -1.0 if maximise else 1.0
        exact = self.lo == self.hi
        a_eq, b_eq = self.a[exact], self.lo[exact]
        ranged = ~exact
        a_ub = sparse.vstack([self.a[ranged], -self.a[ranged]])
        b_ub = np.concatenate([self.hi[ranged], -self.lo[ranged]])
        result = linprog(
            sign * np.asarray(objective, dtype=float), A_ub=a_ub if a_ub.shape[0] else None,
            b_ub=b_ub if a_ub.shape[0] else None, A_eq=a_eq if a_eq.shape[0] else None,
            b_eq=b_eq if a_eq.shape[0] else None, bounds=(0, self.cap if capped else None), method="highs",
        )
        if result.status == 3:
            return None
        if result.status != 0:
            raise ReleaseError(f"the release attacker's linear programme failed: {result.message}")
        dual = np.zeros(self.a.shape[0])
        dual[np.flatnonzero(exact)] = result.eqlin.marginals
        if a_ub.shape[0]:
            m = int(ranged.sum())
            dual[np.flatnonzero(ranged)] = result.ineqlin.marginals[:m] + result.ineqlin.marginals[m:]
        return result.x, dual, None


@dataclass
class _Component:
    """Tables that share persons, their profiles, the published cells as rows, the targets."""

    tables: list[int]
    profiles: np.ndarray        # global profile indices
    rows: sparse.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    row_cells: list[list[tuple[int, int]]]  # each row's published cells (table, flat)


def _rows(release: Release, tables: list[int], matrix: np.ndarray, weight: np.ndarray):
    """The published cells of ``tables`` as rows over the profiles (``matrix`` is the
    component's profiles). An exact table's margin counts only its hidden inner cells (the
    published ones are rows of their own); identical rows are kept once."""
    entries_r, entries_c, keys, lo, hi = [], [], [], [], []
    n_rows = 0
    for t in tables:
        table = release.tables[t]
        js = np.flatnonzero(matrix[:, t] >= 0)
        if len(js) == 0:
            continue
        cover = _covering(table, matrix[js, t])
        hidden = table.hidden.ravel()
        inner_hidden = hidden[cover[:, 0]]
        published = None if table.spread is None else np.asarray(table.published).ravel()
        for s in range(cover.shape[1]):
            f = cover[:, s]
            keep = ~hidden[f]
            if table.spread is None and s > 0:
                keep &= inner_hidden
            if not keep.any():
                continue
            cells, local = np.unique(f[keep], return_inverse=True)
            entries_r.append(n_rows + local.ravel())
            entries_c.append(js[keep])
            keys.extend((t, int(c)) for c in cells)
            if published is None:
                value = np.bincount(local.ravel(), weights=weight[js[keep]], minlength=len(cells))
                lo.append(value)
                hi.append(value)
            else:
                shown = published[cells]
                lo.append(np.maximum(shown - table.spread, 0 if table.deviation is None else np.minimum(shown, 1)).astype(float))
                hi.append((shown + table.spread).astype(float))
            n_rows += len(cells)
    n = matrix.shape[0]
    if n_rows == 0:
        return sparse.csr_matrix((0, n)), np.zeros(0), np.zeros(0), []
    a = sparse.csr_matrix(
        (np.ones(sum(len(r) for r in entries_r)), (np.concatenate(entries_r), np.concatenate(entries_c))),
        shape=(n_rows, n),
    )
    lo, hi = np.concatenate(lo), np.concatenate(hi)
    # identical rows (the same cell in two tables, one table in two reports) are one row
    signature = _signatures(a)
    order = np.lexsort((np.arange(n_rows), signature))
    groups = np.split(order, np.flatnonzero(np.diff(signature[order]) != 0) + 1)
    keep, cells_of = [], []
    new_lo, new_hi = [], []
    for group in groups:
        first = group[0]
        keep.append(first)
        cells_of.append([keys[i] for i in sorted(group)])
        new_lo.append(lo[group].max())
        new_hi.append(hi[group].min())
    keep = np.array(keep)
    order = np.argsort(keep, kind="stable")
    return a[keep[order]], np.array(new_lo)[order], np.array(new_hi)[order], [cells_of[i] for i in order]


def _signatures(a: sparse.csr_matrix) -> np.ndarray:
    """A 64-bit fingerprint of each row's set of columns (equal rows, equal fingerprints)."""
    rng = np.random.default_rng(20261101)
    tokens = rng.integers(1, 2**62, size=a.shape[1], dtype=np.int64).astype(np.uint64)
    coo = a.tocoo()
    out = np.zeros(a.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.add.at(out, coo.row, tokens[coo.col])
        out = out * np.uint64(1000003) + np.diff(a.indptr).astype(np.uint64)
    return out.view(np.int64)


#: Which targets an attack bounds: every one (the verdict on a release), the ones that guard
#: persons (small hidden cells, rounded small cells, differences), or the hidden cells that are
#: not small (whose exact recovery only misleads: they are shown when the release pins them).
_WHICH = ("all", "small", "large")


def _targets(release: Release, tables: list[int], matrix: np.ndarray, weight: np.ndarray, exact: bool,
             which: str = "all", extra: frozenset = frozenset()) -> list[_Target]:
    """The component's hidden cells, rounded small cells and differences, as ``which`` says
    (``extra``: keys of cells that are bounded in ``"small"`` too)."""
    cells = _cell_targets(release, tables, matrix, which, extra)
    return cells if which == "large" else cells + _difference_targets(release, tables, matrix, weight, exact)


def _cell_targets(release: Release, tables: list[int], matrix: np.ndarray, which: str, extra: frozenset) -> list[_Target]:
    """Hidden cells and rounded small cells of the component's tables, as ``which`` says. A
    hidden cell of a frozen table that is not small is never a target: it cannot change, and
    knowing it exactly tells nothing about anyone."""
    rule_low = 0 if release.zeros_disclosive else 1
    targets: list[_Target] = []
    for t in tables:
        table = release.tables[t]
        m = release.min_cell_of(table)
        js = np.flatnonzero(matrix[:, t] >= 0)
        cover = _covering(table, matrix[js, t])
        counts = table.counts().ravel()
        hidden = table.hidden.ravel()
        small_cell = (counts >= rule_low) & (counts <= m - 1)
        frozen = table.id in release.frozen
        if which == "large":
            keep = hidden & ~small_cell & (not frozen)
        elif which == "small":
            keep = hidden & small_cell
            for key in extra:
                if key[0] == t and key[2] == "hidden":
                    keep[key[1]] = hidden[key[1]]
        else:
            keep = hidden & (small_cell | (not frozen))
        cells = set(np.flatnonzero(keep).tolist())
        if table.spread is not None and which != "large":
            shown = np.asarray(table.published).ravel()
            small = np.flatnonzero(~hidden & (shown - table.spread <= m - 1))
            rounded = set(small.tolist())
        else:
            rounded = set()
        if not cells and not rounded:
            continue
        pair_j = np.repeat(js, cover.shape[1])
        pair_f = cover.ravel()
        order = np.argsort(pair_f, kind="stable")
        pair_j, pair_f = pair_j[order], pair_f[order]
        for flat in sorted(cells | rounded):
            kind = "hidden" if flat in cells else "rounded"
            lo_i, hi_i = np.searchsorted(pair_f, flat), np.searchsorted(pair_f, flat, "right")
            targets.append(
                _Target(t, int(flat), kind, -1, int(counts[flat]), kind == "hidden", m, columns=pair_j[lo_i:hi_i])
            )
    return targets


def _difference_targets(release: Release, tables: list[int], matrix: np.ndarray, weight: np.ndarray,
                        exact: bool) -> list[_Target]:
    """For tables a and b whose populations overlap, the persons of each inner cell of a that b
    does not count (when some are and not all; with ``exact=False`` only those in the
    sensitive range, the only ones a reader could narrow into it). The sensitive range is
    that of the stricter table: the persons a leaves out of b are protected by both rules."""
    rule_low = 0 if release.zeros_disclosive else 1
    targets: list[_Target] = []
    counted = matrix[:, tables] >= 0
    # profiles in both tables and in a alone, for every pair at once: a pair is looked at
    # only when the two overlap and a counts someone b does not
    as_int = counted.astype(np.int32)
    both = as_int.T @ as_int
    alone = np.diag(both)[:, None] - both
    own_min = np.array([release.min_cell_of(release.tables[t]) for t in tables], dtype=np.int64)
    for ia, a in enumerate(tables):
        partners = np.flatnonzero((both[ia] > 0) & (alone[ia] > 0))
        if not len(partners):
            continue
        # for every partner b at once: the persons of each cell of a that b does not count
        rows = np.flatnonzero(counted[:, ia])
        cells = matrix[rows, a]
        size = math.prod(release.tables[a].shape)
        outside = ~counted[np.ix_(rows, partners)]
        by_cell = sparse.csr_matrix((weight[rows], (cells, np.arange(len(rows)))), shape=(size, len(rows)))
        part = np.asarray(by_cell @ outside.astype(float))  # cells x partners
        whole = np.bincount(cells, weights=weight[rows], minlength=size)
        m = np.maximum(own_min[ia], own_min[partners])  # the stricter table's rule
        chosen = (part > 0) & (part < whole[:, None])
        if not exact:
            # only a difference in the sensitive range can be narrowed into it
            chosen &= (part >= rule_low) & (part <= m[None, :] - 1)
        for j, flat in zip(*np.nonzero(chosen.T)):  # partner by partner, cells in order
            columns = rows[(cells == flat) & outside[:, j]]
            targets.append(_Target(a, int(flat), "difference", tables[partners[j]], int(part[flat, j]), False, int(m[j]),
                                   columns=columns))
    return targets


# --------------------------------------------------------------------------------------
# the attack


def _unsafe(lower, upper, point, rule_low: int, min_cell) -> np.ndarray:
    """Which intervals (already whole numbers) disclose: inside the sensitive range (up to
    ``min_cell - 1``, one per interval or one for all), or a single value where exact
    recovery matters."""
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    inside = (lower >= rule_low) & (upper <= np.asarray(min_cell) - 1)
    return inside | (np.asarray(point) & (upper <= lower))


def _inward(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.ceil(np.asarray(lo) - _TOL) + 0.0, np.floor(np.asarray(hi) + _TOL) + 0.0


def _support(dual: np.ndarray, component: _Component) -> list[tuple[tuple[int, int], ...]]:
    """The published cells a bound's proof uses: one group per row (a row that several
    tables publish alike only goes when every one of them hides it)."""
    rows = np.flatnonzero(np.abs(dual) > 1e-9)
    return [tuple(component.row_cells[r]) for r in rows]


@dataclass
class _Bounds:
    """What the reader has shown so far about each target of a component: the range its
    feasible solutions reach (``lo``..``hi``) and which ends are proved optimal."""

    forms: sparse.csr_matrix   # targets x profiles: which profiles each target sums
    point: np.ndarray          # exact recovery is unsafe
    rule_low: int
    min_cell: np.ndarray       # each target's minimum cell
    lo: np.ndarray
    hi: np.ndarray
    exact_lo: np.ndarray
    exact_hi: np.ndarray

    def copy(self) -> "_Bounds":
        return replace(self, lo=self.lo.copy(), hi=self.hi.copy(), exact_lo=self.exact_lo.copy(),
                       exact_hi=self.exact_hi.copy())

    def witness(self, x: np.ndarray) -> None:
        """Widen every range to take in a feasible solution."""
        values = self.forms @ x
        np.minimum(self.lo, values, out=self.lo)
        np.maximum(self.hi, values, out=self.hi)

    def unsafe(self, k=slice(None)) -> np.ndarray:
        lo, hi = _inward(self.lo[k], self.hi[k])
        return _unsafe(lo, hi, self.point[k], self.rule_low, self.min_cell[k])

    def unsafe_one(self, k: int) -> bool:
        return bool(self.unsafe(slice(k, k + 1))[0])


#: Targets bounded one after another from the same starting basis. A block is the unit of
#: work of a thread; blocks do not see each other's solutions, so the result is the same
#: whatever the number of threads and the order they finish in.
_BLOCK = 32
#: Threads solving blocks at once (HiGHS releases the GIL while it solves); each has a model.
_THREADS = min(4, usable_cores())


def _attack_component(release: Release, component: _Component, targets: list[_Target], weight: np.ndarray, exact: bool,
                      pins: bool = False) -> None:
    """Bound the component's targets in place (lower, upper, safe, support, exact); with
    ``pins`` a target is unsafe only when recovered exactly, empty cells too (the search for
    hidden cells the release pins).

    First a few programmes push many targets at once (their solutions widen every range
    they touch, which proves most targets safe); then each target still open gets its own
    two programmes, in blocks solved by parallel threads."""
    rule_low = 0 if release.zeros_disclosive else 1
    n = len(component.profiles)
    if not targets:
        return
    m = np.array([t.min_cell for t in targets], dtype=float)
    lengths = [len(t.columns) for t in targets]
    forms = sparse.csr_matrix(
        (np.ones(sum(lengths)), np.concatenate([t.columns for t in targets]), np.concatenate([[0], np.cumsum(lengths)])),
        shape=(len(targets), n),
    )
    truth = np.array([t.truth for t in targets], dtype=float)
    point = np.array([pins or t.point and t.truth > 0 or (t.point and release.zeros_disclosive) for t in targets])
    if pins:
        rule_low, m = 1, np.ones(len(targets))  # no range is sensitive: only a single value counts
    empty = np.array(lengths) == 0
    bounds = _Bounds(forms, point, rule_low, m, truth.copy(), truth.copy(), empty.copy(), empty.copy())
    programme = _Programme(component.rows, component.row_lo, component.row_hi, float(weight.sum()))

    open_ = ~empty if exact else (bounds.unsafe() & ~empty)
    if open_.any():
        result = programme.solve(np.asarray(forms[open_].sum(axis=0)).ravel(), maximise=False, cold=True)
        bounds.witness(result[0])
    bounds.exact_lo |= bounds.lo <= _TOL  # nothing is below 0
    for _ in range(_WITNESS_ROUNDS):
        pending = (~bounds.exact_hi) if exact else (bounds.unsafe() & ~empty)
        if not pending.any():
            break
        before = bounds.unsafe().sum(), bounds.hi[pending].sum()
        result = programme.solve(np.asarray(forms[pending].sum(axis=0)).ravel(), maximise=True, capped=True)
        bounds.witness(result[0])
        if exact:
            if bounds.hi[pending].sum() <= before[1] + _TOL:
                break
        elif bounds.unsafe().sum() == before[0]:
            break
    todo = list(range(len(targets))) if exact else [int(k) for k in np.flatnonzero(bounds.unsafe())]
    blocks = [todo[i:i + _BLOCK] for i in range(0, len(todo), _BLOCK)]
    supports: list[list] = [[] for _ in targets]
    if blocks:
        start = programme.basis()
        done = _run_blocks(blocks, lambda block, p: _bound_block(block, p, start, bounds.copy(), exact, component),
                           programme)
        for block, (mine, found) in zip(blocks, done):
            np.minimum(bounds.lo, mine.lo, out=bounds.lo)
            np.maximum(bounds.hi, mine.hi, out=bounds.hi)
            bounds.exact_lo |= mine.exact_lo
            bounds.exact_hi |= mine.exact_hi
            for k in block:
                supports[k] = found.get(k, [])
    lower, upper = _inward(bounds.lo, bounds.hi)
    unsafe = bounds.unsafe()
    pinned = bounds.exact_lo & bounds.exact_hi & (bounds.hi - bounds.lo <= _TOL * np.maximum(1.0, np.abs(truth)))
    for k, target in enumerate(targets):
        target.lower, target.upper, target.safe = float(lower[k]), float(upper[k]), bool(not unsafe[k])
        target.exact = bool(pinned[k])
        target.support = list(dict.fromkeys(supports[k])) if unsafe[k] else []


def _run_blocks(blocks: list[list[int]], work, programme: "_Programme") -> list:
    """``work(block, programme)`` for every block, on up to ``_THREADS`` threads with a
    model each (the first one is ``programme``); results in the order of ``blocks``."""
    threads = min(_THREADS, len(blocks))
    if threads == 1:
        return [work(block, programme) for block in blocks]
    free = queue.SimpleQueue()
    free.put(programme)
    for _ in range(threads - 1):
        free.put(programme.twin())

    def run(block):
        mine = free.get()
        try:
            return work(block, mine)
        finally:
            free.put(mine)

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="release-attack") as pool:
        return list(pool.map(run, blocks))


def _bound_block(block: list[int], programme: "_Programme", start, bounds: _Bounds, exact: bool,
                 component: _Component) -> tuple[_Bounds, dict[int, list]]:
    """Exact bounds for the block's targets that are still unsafe (every one with ``exact``),
    from the basis ``start``: (the block's bounds, each target's support)."""
    programme.restart(start)
    supports: dict[int, list] = {}
    forms = bounds.forms
    for k in block:
        if not exact and not bounds.unsafe_one(k):
            continue
        objective = np.asarray(forms[k].todense()).ravel()
        found = supports.setdefault(k, [])
        # the upper bound first: its duals often prove the target pinned, and then the
        # lower bound is the same and needs no programme of its own
        if not bounds.exact_hi[k]:
            result = programme.solve(objective, maximise=True)
            if result is None:
                bounds.hi[k] = np.inf
            else:
                x, row_dual, col_dual = result
                bounds.witness(x)
                bounds.hi[k] = objective @ x
                found.extend(_support(row_dual, component))
                if not bounds.exact_lo[k] and programme.constant(row_dual, col_dual):
                    bounds.lo[k] = bounds.hi[k]
                    bounds.exact_lo[k] = True
            bounds.exact_hi[k] = True
        if not exact and not bounds.unsafe_one(k):
            continue
        if not bounds.exact_lo[k]:
            x, row_dual, _ = programme.solve(objective, maximise=False)
            bounds.witness(x)
            bounds.lo[k] = objective @ x
            bounds.exact_lo[k] = True
            found.extend(_support(row_dual, component))
    return bounds, supports


def _components(release: Release, matrix: np.ndarray) -> list[list[int]]:
    """Tables that share persons (through any chain of tables), in release order."""
    n_prof, n_tab = matrix.shape
    js, ts = np.nonzero(matrix >= 0)
    graph = sparse.coo_matrix((np.ones(len(js)), (js, ts + n_prof)), shape=(n_prof + n_tab,) * 2)
    _, label = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for t in range(n_tab):
        groups.setdefault(int(label[n_prof + t]), []).append(t)
    return list(groups.values())


def _attack(release: Release, exact: bool, which: str = "all", extra: frozenset = frozenset(),
            settled: frozenset = frozenset()) -> list[_Target]:
    """Every target ``which`` names, bounded; those whose key is in ``settled`` (proved safe
    on a release that hid no more cells) are left out."""
    matrix, weight = _profiles(release)
    if release.zeros_disclosive:
        matrix, weight = _phantoms(release, matrix, weight)
    targets: list[_Target] = []
    for number, tables in enumerate(_components(release, matrix)):
        mine = np.flatnonzero((matrix[:, tables] >= 0).any(axis=1))
        local_matrix, local_weight = matrix[mine], weight[mine]
        rows, lo, hi, cells = _rows(release, tables, local_matrix, local_weight)
        component = _Component(tables, mine, rows, lo, hi, cells)
        found = [t for t in _targets(release, tables, local_matrix, local_weight, exact, which, extra)
                 if _key(t) not in settled]
        for target in found:
            target.component = number
        _attack_component(release, component, found, local_weight, exact, pins=which == "large")
        targets.extend(found)
    # hidden cells of tables that count nobody
    for t, table in enumerate(release.tables):
        if (table.cell >= 0).any():
            continue
        for flat in np.flatnonzero(table.hidden.ravel()):
            nobody = np.zeros(0, dtype=np.int64)
            if which == "large":  # known empty: shown when zeros are not disclosive
                if not release.zeros_disclosive and table.id not in release.frozen:
                    targets.append(_Target(t, int(flat), "hidden", -1, 0, True, release.min_cell_of(table),
                                           columns=nobody, safe=False, exact=True))
            elif which == "all" or release.zeros_disclosive:
                unsafe = release.zeros_disclosive
                targets.append(_Target(t, int(flat), "hidden", -1, 0, True, release.min_cell_of(table),
                                       columns=nobody, safe=not unsafe))
    order = {"hidden": 0, "rounded": 0, "difference": 1}
    targets.sort(key=lambda x: (order[x.kind], x.table, x.other, x.flat))
    return targets


def _frame(release: Release, targets: list[_Target]) -> pd.DataFrame:
    rows = []
    for target in targets:
        table = release.tables[target.table]
        if target.kind == "difference":
            coords = np.unravel_index(target.flat, table.shape)
            cell = table.cell_label(int(np.ravel_multi_index(coords, table.full_shape)))
        else:
            cell = table.cell_label(target.flat)
        rows.append(
            (table.id, cell, target.kind, release.tables[target.other].id if target.other >= 0 else "",
             target.truth, target.lower, target.upper, target.safe, target.min_cell)
        )
    frame = pd.DataFrame(rows, columns=["table", "cell", "kind", "other", "count", "lower", "upper", "safe", "min_cell"])
    return frame.astype({"count": np.int64, "lower": float, "upper": float, "safe": bool, "min_cell": np.int64})


def attack_release(release: Release, exact: bool = False) -> pd.DataFrame:
    """The reader's bounds for every target of a release, holding all its tables.

    One row per target: ``table``, ``cell`` (its labels, 'Total' for margins; its position
    on every axis when the table has no labels), ``kind`` (``"hidden"``, ``"rounded"`` for
    a small cell of a rounded table, ``"difference"``), ``other`` (the table a difference
    is taken against, else ''), ``count`` (true), ``lower``, ``upper`` (whole numbers, inf
    when unbounded), ``safe`` and ``min_cell`` (the minimum cell it was judged by: its
    table's, for a difference the stricter of its two tables'). With ``exact=False`` a
    target stops being refined once it is proved safe (its bounds are then only as wide as
    the evidence found), and a difference outside the sensitive range is not bounded at all
    (its bounds are its count); an unsafe target always gets exact bounds. The true counts are in the result: it is for
    the data owner, never for a report.

    Example::

        verdict = attack_release(release)
        bool(verdict['safe'].all())
    """
    return _frame(release, _attack(release, exact))


# --------------------------------------------------------------------------------------
# the planner


@dataclass
class ReleasePlan:
    """The masks that make a release safe, found by :func:`protect_release`: cells hidden
    (``added``) and hidden cells shown because the release pins them (``shown``)."""

    hidden: dict[str, np.ndarray]
    added: dict[str, list[tuple]]
    refused: list[str]
    rounds: int
    shown: dict[str, list[tuple]] = field(default_factory=dict)
    frozen: frozenset[str] = frozenset()

    def apply(self, release: Release) -> Release:
        """The release with the plan's masks (and its frozen tables marked frozen)."""
        tables = tuple(
            replace(table, hidden=self.hidden[table.id].copy()) if table.id in self.hidden else table
            for table in release.tables
        )
        return replace(release, tables=tables, frozen=release.frozen | self.frozen)


#: Passes of "protect the small cells, then show what the release pins" before what is
#: still pinned is refused (a second pass is needed only where the reader pins a cell by
#: rounding fractional bounds inward, which is rare).
MAX_PASSES = 3


def protect_release(release: Release, frozen: Mapping[str, np.ndarray] | None = None) -> ReleasePlan:
    """Masks across the release such that :func:`attack_release` finds no unsafe target.

    ``frozen``: tables already published (earlier releases), by id, with their published
    masks; they take part in the attack but are never changed. The search has two steps:

    1. Protect persons. Where the reader recovers a small hidden cell, narrows a rounded
       small cell or a difference into the sensitive range, the plan hides one published
       cell per such target and round, among the cells the proof of its bounds uses (else
       any cell holding its persons): the smallest first, then in the table that shows
       fewest cells, Totals last; a table changed gets its own secondary suppression again
       (it stays safe alone). A target that only frozen tables expose is refused, naming
       the tables and cell.
    2. Show what hiding does not protect. A hidden cell that is not small and that the
       release pins to one value (the reader's programme has a single solution for it) is
       shown: hiding it protects nobody, it would read as a small count, and showing it
       changes nothing the reader can work out (the programme's solutions stay the same),
       so step 1 stays done. A cell the reader pins only by rounding fractional bounds
       inward is instead protected as in step 1, and the two steps run again.

    Example::

        plan = protect_release(release)
        plan.hidden, plan.refused, plan.shown
    """
    frozen = dict(frozen or {})
    ids = [table.id for table in release.tables]
    unknown = sorted(set(frozen) - set(ids))
    if unknown:
        raise ReleaseError(f"frozen names table(s) {unknown} that the release does not hold")
    masks = {}
    for table in release.tables:
        mask = np.asarray(frozen[table.id], dtype=bool) if table.id in frozen else table.hidden.copy()
        if mask.shape != table.full_shape:
            raise ReleaseError(f"frozen mask of table {table.where()} has shape {mask.shape}, not {table.full_shape}")
        masks[table.id] = mask.copy()
    release = replace(release, frozen=release.frozen | set(frozen))
    is_frozen = [table.id in release.frozen for table in release.tables]
    pinned = _pinned(release, is_frozen, masks)
    for t, table in enumerate(release.tables):
        if not is_frozen[t] and pinned[t].any() and (masks[table.id] & pinned[t]).any():
            # a cell another published table gives away exactly hides nothing: choose other secondaries
            mask = masks[table.id]
            mask &= ~(pinned[t] & ~_primary(table, release.min_cell_of(table), release.zeros_disclosive))
            _secondary(table, mask, release.min_cell_of(table), release.zeros_disclosive, pinned[t])
    refused: dict[tuple, str] = {}
    extra: set[tuple] = set()
    rounds = 0
    for _ in range(MAX_PASSES):
        rounds = _protect_persons(release, masks, is_frozen, pinned, refused, frozenset(extra), rounds)
        current = _with_masks(release, masks)
        found = [t for t in _attack(current, exact=False, which="large") if not t.safe and _key(t) not in refused]
        for target in found:
            if target.exact:
                masks[release.tables[target.table].id].flat[target.flat] = False
        inward = {_key(t) for t in found if not t.exact}
        if not inward:
            break
        extra |= inward
    else:
        current = _with_masks(release, masks)
        for target in _attack(current, exact=False, which="small", extra=frozenset(extra)):
            if not target.safe and _key(target) not in refused:
                refused[_key(target)] = _refusal(current, target, f"still exposed after {MAX_PASSES} passes")
    hidden, added, given = {}, {}, {}
    for t, table in enumerate(release.tables):
        mask = masks[table.id]
        if not np.array_equal(mask, table.hidden):
            hidden[table.id] = mask
            added[table.id] = [table.cell_label(int(f)) for f in np.flatnonzero((mask & ~table.hidden).ravel())]
            given[table.id] = [table.cell_label(int(f)) for f in np.flatnonzero((~mask & table.hidden).ravel())]
    return ReleasePlan(hidden, added, list(refused.values()), rounds, given, frozenset(frozen))


def _protect_persons(release: Release, masks: dict[str, np.ndarray], is_frozen: list[bool], pinned: list[np.ndarray],
                     refused: dict[tuple, str], extra: frozenset, rounds: int) -> int:
    """Step 1 of :func:`protect_release` (masks and refusals changed in place): hide cells until
    no small hidden cell, rounded small cell, difference or ``extra`` cell is exposed. Returns
    the rounds counted so far."""
    current = _with_masks(release, masks)
    # masks only grow here, so the reader's programme only loses rows: a target proved safe
    # stays safe and is not bounded again
    settled: set[tuple] = set()
    while True:
        rounds += 1
        found = _attack(current, exact=False, which="small", extra=extra, settled=frozenset(settled))
        settled |= {_key(t) for t in found if t.safe}
        targets = [t for t in found if not t.safe and _key(t) not in refused]
        if not targets:
            return rounds
        if rounds > MAX_ROUNDS:
            for target in targets:
                refused[_key(target)] = _refusal(current, target, f"still exposed after {MAX_ROUNDS} rounds")
            return rounds
        chosen: dict[int, set[int]] = {}
        for target in targets:
            group = _choose(current, target, is_frozen, chosen, pinned)
            if group is None:
                refused[_key(target)] = _refusal(current, target, "only tables already published can change")
                continue
            for t, f in group:
                chosen.setdefault(t, set()).add(f)
        if not chosen:
            return rounds
        for t in sorted(chosen):
            table = current.tables[t]
            mask = masks[table.id]
            mask.ravel()[sorted(chosen[t])] = True
            _secondary(table, mask, current.min_cell_of(table), current.zeros_disclosive, pinned[t])
        current = _with_masks(release, masks)


def _with_masks(release: Release, masks: Mapping[str, np.ndarray]) -> Release:
    return replace(release, tables=tuple(replace(t, hidden=masks[t.id].copy()) for t in release.tables))


def _key(target: _Target) -> tuple:
    return (target.table, target.flat, target.kind, target.other)


def _secondary(table: CountedTable, mask: np.ndarray, min_cell: int, zeros_disclosive: bool,
               pinned: np.ndarray | None = None) -> None:
    """Keep a changed table safe on its own: its secondary suppression again, never giving
    back a cell that is already hidden (in place); ``pinned`` cells (given away by tables
    already published) are used only where nothing else protects."""
    if table.spread is not None or not table.margins:
        return
    settings = DisclosureSettings(min_cell, None, True, zeros_disclosive)
    extra = None if pinned is None else np.where(pinned, _PINNED_COST, 0.0)
    _suppress_secondary(table.counts(), mask, settings, forced=mask.copy(), extra_cost=extra)


#: The cost of hiding a cell that a published table already gives away (as good as no protection).
_PINNED_COST = 1000.0


def _primary(table: CountedTable, min_cell: int, zeros_disclosive: bool) -> np.ndarray:
    counts = table.counts()
    low = 0 if zeros_disclosive else 1
    return (counts >= low) & (counts <= min_cell - 1)


def _pinned(release: Release, is_frozen: list[bool], masks: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Per table, the cells whose persons are exactly those of a published cell of a frozen
    table: hiding them hides nothing. Found by a random 64-bit weight per person summed over
    each cell (equal sums: equal sets, but for a collision of chance 2^-64)."""
    rng = np.random.default_rng(20261201)
    weight = rng.integers(1, 2**63 - 1, size=max(release.persons, 1), dtype=np.uint64)
    sums = [_cell_sums(table, weight) for table in release.tables]
    published = set()
    for t, table in enumerate(release.tables):
        if is_frozen[t]:
            shown = ~np.asarray(masks[table.id], dtype=bool)
            published.update(int(x) for x in sums[t][shown & (table.counts() > 0)].ravel())
    return [np.zeros(table.full_shape, dtype=bool) if is_frozen[t] else
            np.isin(sums[t], np.fromiter(published, dtype=np.uint64, count=len(published))) & (table.counts() > 0)
            for t, table in enumerate(release.tables)]


def _cell_sums(table: CountedTable, weight: np.ndarray) -> np.ndarray:
    """The sum (mod 2^64) of the persons' weights in every cell of a table, Totals included."""
    counted = table.cell >= 0
    inner = np.zeros(math.prod(table.shape), dtype=np.uint64)
    np.add.at(inner, table.cell[counted], weight[counted])
    values = inner.reshape(table.shape)
    if table.margins:
        for axis in range(values.ndim):
            values = np.concatenate([values, values.sum(axis=axis, keepdims=True, dtype=np.uint64)], axis=axis)
    return values


def _choose(release: Release, target: _Target, is_frozen: list[bool], chosen: dict[int, set[int]], pinned=None):
    """The published cell to hide for an unsafe target, or None when none may change."""
    def usable(group) -> bool:
        open_ = [(t, f) for t, f in group if not release.tables[t].hidden.flat[f] and f not in chosen.get(t, ())]
        if pinned is not None and any(pinned[t].flat[f] for t, f in open_):
            return False  # hiding it hides nothing: a published table gives it away
        return bool(open_) and not any(is_frozen[t] for t, _ in open_)

    if any(all(f in chosen.get(t, ()) for t, f in group) for group in target.support):
        return ()  # a cell its proof uses goes this round already
    candidates = [group for group in target.support if usable(group)]
    if not candidates:
        candidates = [(cell,) for cell in _holding(release, target) if usable((cell,))]
    if not candidates:
        return None
    tables = {t for group in candidates for t, _ in group}
    shown = {t: int((~release.tables[t].hidden).sum()) for t in tables}
    counts = {t: release.tables[t].counts().ravel() for t in tables}

    def rank(group):
        t, f = group[0]
        table = release.tables[t]
        coords = np.unravel_index(f, table.full_shape)
        totals = sum(int(table.margins and i == n) for i, n in zip(coords, table.shape))
        return (int(counts[t][f]), totals, len(group), min(shown[u] for u, _ in group), group)

    return min(candidates, key=rank)


def _holding(release: Release, target: _Target) -> list[tuple[int, int]]:
    """Published cells (of any table) that hold persons of the target (for a difference:
    persons of its cell of the first table)."""
    table = release.tables[target.table]
    if target.kind == "difference":
        persons = table.cell == target.flat
    else:
        coords = np.unravel_index(target.flat, table.full_shape)
        persons = table.cell >= 0
        inner = np.unravel_index(np.maximum(table.cell, 0), table.shape)
        for axis, i in enumerate(coords):
            if not (table.margins and i == table.shape[axis]):
                persons &= inner[axis] == i
    out = []
    for t, other in enumerate(release.tables):
        cells = np.unique(other.cell[persons & (other.cell >= 0)])
        if len(cells) == 0:
            continue
        for f in np.unique(_covering(other, cells).ravel()):
            out.append((t, int(f)))
    return out


def _refusal(release: Release, target: _Target, why: str) -> str:
    table = release.tables[target.table]
    tables = dict.fromkeys(
        [target.table] + ([target.other] if target.other >= 0 else []) + [t for group in target.support for t, _ in group]
    )
    names = ", ".join(release.tables[t].where() for t in tables)
    if target.kind == "difference":
        coords = np.unravel_index(target.flat, table.shape)
        cell = table.cell_label(int(np.ravel_multi_index(coords, table.full_shape)))
        what = f"the persons of cell {cell!r} of table {table.where()} that table {release.tables[target.other].where()} does not count"
    else:
        what = f"{'hidden' if target.kind == 'hidden' else 'rounded'} cell {table.cell_label(target.flat)!r} of table {table.where()}"
    bounds = (
        f"recovered exactly" if target.lower == target.upper
        else f"narrowed to {target.lower:g}..{target.upper:g}, under its minimum cell of {target.min_cell}"
    )
    return f"{what} is {bounds} by combining tables {names}; {why}"
