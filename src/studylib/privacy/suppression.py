"""Primary and secondary cell suppression on a table held as an array with Totals.

The rule: a hidden cell is safe when the attacker's interval for it (see
:mod:`studylib.privacy.intruder`) is not a single value and does not lie inside the
sensitive range ``1..min_cell-1`` (``0..min_cell-1`` when zeros are disclosive).

Secondary suppression uses hypercubes (the method of tau-Argus): for a hidden cell ``p``
pick one other index on every axis; the 2^k cells spanned can all shift by ``+-d`` without
breaking any relation, so hiding them all widens ``p``'s interval by the capacity of that
shift. For each hidden cell we hide the cheapest hypercube (fewest new cells, inner cells
before Totals, non-zero small cells first) whose capacity makes the cell safe.

One- and two-dimensional tables: one pass of rectangles protects every cell by
construction. Tables with more dimensions are protected as linked 2-D tables (every 2-D
slice, Totals included, shares one suppression pattern) until nothing changes; then the
attacker's linear programme runs on the whole linked system, and any cell it can still
narrow gets a full k-dimensional hypercube, until the attack finds nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import reduce
from itertools import combinations

import numpy as np


#: Cost of hiding one more cell, of hiding a zero (weak protection, and often known to be
#: zero) and of hiding a Total (per Total coordinate): cells first, then Totals.
_CELL_COST, _ZERO_COST, _TOTAL_COST = 1.0, 0.5, 2.0


@dataclass(frozen=True)
class Rule:
    """What makes an interval unsafe: the minimum cell and whether zeros are disclosive."""

    min_cell: int
    zeros_disclosive: bool = False

    @property
    def sensitive_low(self) -> int:
        return 0 if self.zeros_disclosive else 1

    def is_sensitive(self, values: np.ndarray) -> np.ndarray:
        """Primary cells: counts in the sensitive range."""
        return (values >= self.sensitive_low) & (values <= self.min_cell - 1)

    def is_safe(self, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """An attacker's interval is safe when it is wider than a point and leaves the sensitive range."""
        lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
        inside = (lower >= self.sensitive_low) & (upper <= self.min_cell - 1)
        return (upper > lower) & ~inside


def cell_costs(values: np.ndarray, margins: bool) -> np.ndarray:
    """The cost of hiding each cell (see module docstring)."""
    values = np.asarray(values, dtype=float)
    cost = _CELL_COST + values / (1.0 + values.max(initial=0.0)) + _ZERO_COST * (values == 0)
    if margins:
        for axis, n in enumerate(values.shape):
            index = [slice(None)] * values.ndim
            index[axis] = n - 1
            cost[tuple(index)] += _TOTAL_COST
    return cost


def cheapest_hypercube(
    values: np.ndarray, hidden: np.ndarray, cost: np.ndarray, cell: tuple[int, ...], rule: Rule
) -> list[tuple[int, ...]] | None:
    """The cells of the cheapest hypercube through ``cell`` that makes it safe, or None.

    ``values`` is a table (or a slice of one) with the Total last on every axis.
    """
    k = values.ndim
    v = float(values[cell])
    choices, signs, shapes = [], [], []
    for axis, n in enumerate(values.shape):
        total = n - 1
        q = np.delete(np.arange(n), cell[axis])
        shape = [1] * k
        shape[axis] = len(q)
        choices.append(q.reshape(shape))
        # +1 where exactly one of the pair is the Total, -1 where both are inner cells
        signs.append(np.where((q == total) ^ (cell[axis] == total), 1.0, -1.0).reshape(shape))
        shapes.append(len(q))
    if min(shapes) == 0:
        return None
    up = np.full(shapes, np.inf)
    down = np.full(shapes, v)
    extra = np.zeros(shapes)
    for mask in range(1, 2**k):
        index = tuple(choices[a] if mask >> a & 1 else cell[a] for a in range(k))
        sign = reduce(np.multiply, [signs[a] for a in range(k) if mask >> a & 1])
        value = values[index]
        up = np.minimum(up, np.where(sign < 0, value, np.inf))
        down = np.minimum(down, np.where(sign > 0, value, np.inf))
        extra = extra + np.where(hidden[index], 0.0, cost[index])
    ok = rule.is_safe(v - down, v + up)
    if not ok.any():
        return None
    best = np.unravel_index(np.argmin(np.where(ok, extra, np.inf)), shapes)
    vertex_q = [int(choices[a].ravel()[best[a]]) for a in range(k)]
    return [
        tuple(vertex_q[a] if mask >> a & 1 else cell[a] for a in range(k)) for mask in range(1, 2**k)
    ]


def add_hypercubes(
    values: np.ndarray, hidden: np.ndarray, cost: np.ndarray, rule: Rule, cells: list[tuple[int, ...]]
) -> list[tuple[int, ...]]:
    """Hide a full k-dimensional hypercube for each cell the attack could narrow (in place);
    returns the newly hidden cells. With Totals one always exists (all other corners Totals)."""
    added = []
    for cell in cells:
        cube = cheapest_hypercube(values, hidden, cost, cell, rule)
        if cube is None:
            raise AssertionError(f"no hypercube protects cell {cell}")
        for vertex in cube:
            if not hidden[vertex]:
                hidden[vertex] = True
                added.append(vertex)
    return added


def protect_linked(
    values: np.ndarray, hidden: np.ndarray, cost: np.ndarray, rule: Rule, start: list
) -> None:
    """Give every hidden cell a protecting hypercube in each of its 2-D slices (in place).

    For tables of one or two dimensions the slice is the table itself. A cell stays
    protected in a slice once it is (suppressions only widen intervals), so each
    (cell, slice) pair is settled once; new suppressions join the work list.
    """
    k = values.ndim
    pairs = [tuple(range(k))] if k <= 2 else list(combinations(range(k), 2))
    settled = np.zeros((len(pairs),) + values.shape, dtype=bool)
    sensitive = rule.is_sensitive(values)
    order = sorted({tuple(int(i) for i in c) for c in start}, key=lambda c: (not sensitive[c], values[c]))
    work = deque((c, s) for c in order for s in range(len(pairs)))
    while work:
        cell, s = work.popleft()
        if settled[(s,) + cell]:
            continue
        axes = pairs[s]
        index = tuple(slice(None) if a in axes else cell[a] for a in range(k))
        local = tuple(cell[a] for a in axes)
        cube = cheapest_hypercube(values[index], hidden[index], cost[index], local, rule)
        if cube is None:
            raise AssertionError(f"no hypercube protects cell {cell}")
        settled[(s,) + cell] = True
        for vertex in cube:
            full = list(cell)
            for a, i in zip(axes, vertex):
                full[a] = i
            full = tuple(full)
            if not sensitive[full]:
                settled[(s,) + full] = True  # shifts with the same hypercube: never exact
            if not hidden[full]:
                hidden[full] = True
                work.extend((full, t) for t in range(len(pairs)) if t != s or sensitive[full])
