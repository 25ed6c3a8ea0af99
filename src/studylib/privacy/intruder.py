"""The intruder: what an attacker can work out about the hidden cells of a published table.

A table with margins is held as an N-dimensional array whose last index on every axis is
the ``Total``. Its additivity relations (every line of cells along an axis sums to the
line's Total) are :func:`relation_matrix`. An attacker knows the published cells exactly,
knows a hidden cell only within prior bounds (``0..inf`` for a suppressed cell, the rounding
interval for a rounded one), and solves linear programmes (scipy HiGHS) for the smallest
and largest value each hidden cell can take: :func:`intruder_bounds`.

The linear programmes are split into independent components (hidden cells linked through
shared relations), and a solution found for one cell serves as a witness for the others:
a bound already reached by a feasible table needs no programme of its own.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import sparse
from scipy.optimize import linprog
from scipy.sparse.csgraph import connected_components

from studylib.errors import StudylibError

_TOL = 1e-6


class IntruderError(StudylibError):
    """The attacker's linear programme could not be solved (the published table is inconsistent)."""


def relation_matrix(shape: tuple[int, ...]) -> sparse.csr_matrix:
    """Additivity relations of a table whose last index on every axis is the Total.

    One row per line of cells along an axis (Totals of the other axes included): +1 for
    each inner cell of the line, -1 for the line's Total. Columns are cells in C order.
    """
    size = math.prod(shape)
    flat = np.arange(size).reshape(shape)
    rows, cols, data = [], [], []
    start = 0
    for axis, n in enumerate(shape):
        if n < 2:
            continue
        lines = np.moveaxis(flat, axis, -1).reshape(-1, n)
        count = lines.shape[0]
        rows.append(np.repeat(np.arange(start, start + count), n))
        cols.append(lines.ravel())
        coef = np.ones((count, n))
        coef[:, -1] = -1.0
        data.append(coef.ravel())
        start += count
    if not rows:
        return sparse.csr_matrix((0, size))
    return sparse.csr_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(start, size)
    )


def intruder_bounds(
    values: np.ndarray,
    known: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    targets: np.ndarray,
    relations: sparse.spmatrix,
    enough: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The attacker's integer bounds for the ``targets`` (flat cell indices).

    ``values`` are the true counts (flat); ``known`` marks the cells published exactly;
    ``lower``/``upper`` are the prior bounds of the other cells (``np.inf`` for none).
    The true table is feasible, so every interval returned contains the true count.

    With ``enough`` (a test on intervals that stays true when an interval widens, such as
    "safe"), a target stops being refined as soon as values it can take make the test
    true; its interval is then only as wide as that evidence (the exact bounds are at
    least as wide). Targets that fail the test always get their exact bounds.
    """
    values = np.asarray(values, dtype=float).ravel()
    known = np.asarray(known, dtype=bool).ravel()
    targets = np.asarray(targets, dtype=np.int64).ravel()
    lo_out = np.empty(len(targets))
    hi_out = np.empty(len(targets))
    if len(targets) == 0:
        return lo_out, hi_out

    hidden = np.flatnonzero(~known)
    position = np.full(values.size, -1, dtype=np.int64)
    position[hidden] = np.arange(len(hidden))
    if np.any(position[targets] < 0):
        raise ValueError("a target cell is published exactly; only hidden cells have bounds")
    prior_lo = np.asarray(lower, dtype=float).ravel()[hidden]
    prior_hi = np.asarray(upper, dtype=float).ravel()[hidden]

    matrix = sparse.csc_matrix(relations)
    a_hidden = matrix[:, hidden].tocsr()
    rhs = -(matrix[:, np.flatnonzero(known)] @ values[known])
    used = np.diff(a_hidden.indptr) > 0
    a_hidden, rhs = a_hidden[used], rhs[used]

    n_var, n_rel = a_hidden.shape[1], a_hidden.shape[0]
    coo = a_hidden.tocoo()
    graph = sparse.coo_matrix(
        (np.ones(coo.nnz), (coo.row + n_var, coo.col)), shape=(n_var + n_rel, n_var + n_rel)
    )
    _, labels = connected_components(graph, directed=False)
    var_label, rel_label = labels[:n_var], labels[n_var:]

    target_var = position[targets]
    var_order = np.argsort(var_label, kind="stable")
    rel_order = np.argsort(rel_label, kind="stable")
    var_sorted, rel_sorted = var_label[var_order], rel_label[rel_order]
    for component in np.unique(var_label[target_var]):
        variables = var_order[np.searchsorted(var_sorted, component):np.searchsorted(var_sorted, component, "right")]
        rels = rel_order[np.searchsorted(rel_sorted, component):np.searchsorted(rel_sorted, component, "right")]
        wanted = np.flatnonzero(var_label[target_var] == component)
        local = np.searchsorted(variables, target_var[wanted])  # variables are in ascending order
        problem = _Component(
            a_hidden[rels][:, variables], rhs[rels], prior_lo[variables], prior_hi[variables], values[hidden[variables]]
        )
        lo_out[wanted], hi_out[wanted] = problem.bounds(local, enough)
    return np.ceil(lo_out - _TOL) + 0.0, np.floor(hi_out + _TOL) + 0.0


class _Component:
    """The hidden cells of one linked component and the programmes over them.

    Every solution found is kept as a witness (a value each cell can take), and every
    dual solution of a maximisation as a certificate (an upper bound for each cell whose
    coefficient in it is positive). A bound that a witness reaches and a certificate
    proves needs no programme of its own.
    """

    def __init__(self, a: sparse.csr_matrix, b: np.ndarray, prior_lo, prior_hi, truth) -> None:
        self.a, self.b = a, b
        self.prior_lo, self.prior_hi = prior_lo, prior_hi
        self.seen_lo, self.seen_hi = truth.copy(), truth.copy()
        self.proven_hi = np.minimum(prior_hi, _line_upper_bounds(a, b, prior_lo))
        self.box = np.column_stack([prior_lo, prior_hi])

    def bounds(self, targets: np.ndarray, enough=None) -> tuple[np.ndarray, np.ndarray]:
        lo = np.empty(len(targets))
        hi = np.empty(len(targets))
        if self.a.shape[0] == 0:
            return self.prior_lo[targets].copy(), self.prior_hi[targets].copy()
        if len(targets) > 1:  # one programme that pushes every target down gives many zero witnesses
            self._solve(_objective(self.a.shape[1], targets, 1.0))
        for k, t in enumerate(targets.tolist()):
            if enough is not None and enough(self.seen_lo[t], self.seen_hi[t]):
                lo[k], hi[k] = self.seen_lo[t], self.seen_hi[t]
                continue
            lo[k] = self._lower(t)
            if enough is not None and enough(lo[k], self.seen_hi[t]):
                hi[k] = self.seen_hi[t]
                continue
            hi[k] = self._upper(t)
        return lo, hi

    def _lower(self, t: int) -> float:
        if self.seen_lo[t] <= self.prior_lo[t] + _TOL:
            return float(self.prior_lo[t])
        return self._solve(_objective(self.a.shape[1], [t], 1.0)).fun

    def _upper(self, t: int) -> float:
        if self.seen_hi[t] >= self.proven_hi[t] - _TOL:
            return float(self.proven_hi[t])
        result = self._solve(_objective(self.a.shape[1], [t], -1.0))
        if result is None:
            return np.inf
        dual = -np.asarray(result.eqlin.marginals)  # a^T dual >= e_t proves x_t <= b . dual
        self._certify(dual)
        return -result.fun

    def _certify(self, dual: np.ndarray) -> None:
        """Upper bounds for every cell from one dual solution (valid where the others' weights are >= 0)."""
        weight = self.a.T @ dual
        if np.any(weight < -1e-9):
            return
        weight = np.maximum(weight, 0.0)
        base = float(self.b @ dual) - float(weight @ self.prior_lo)
        positive = weight > _TOL
        bound = np.full(len(weight), np.inf)
        bound[positive] = (base + weight[positive] * self.prior_lo[positive]) / weight[positive]
        np.minimum(self.proven_hi, bound, out=self.proven_hi)

    def _solve(self, objective: np.ndarray):
        result = linprog(
            objective, A_eq=self.a, b_eq=self.b, bounds=self.box, method="highs", options={"presolve": False}
        )
        if result.status == 3:
            return None
        if result.status != 0:
            raise IntruderError(f"the attacker's linear programme failed: {result.message}")
        np.minimum(self.seen_lo, result.x, out=self.seen_lo)
        np.maximum(self.seen_hi, result.x, out=self.seen_hi)
        return result


def _objective(n: int, cells, sign: float) -> np.ndarray:
    objective = np.zeros(n)
    objective[np.asarray(cells, dtype=np.int64)] = sign
    return objective


def _line_upper_bounds(a: sparse.csr_matrix, b: np.ndarray, prior_lo: np.ndarray) -> np.ndarray:
    """Upper bounds that single relations give: in a line whose hidden terms all share one
    sign, each term is at most the line's constant less the others' lower bounds."""
    coo = a.tocoo()
    n_rel = a.shape[0]
    pos = np.bincount(coo.row, weights=(coo.data > 0), minlength=n_rel)
    neg = np.bincount(coo.row, weights=(coo.data < 0), minlength=n_rel)
    one_sign = (pos == 0) | (neg == 0)
    total_lo = np.bincount(coo.row, weights=coo.data * prior_lo[coo.col], minlength=n_rel)
    keep = one_sign[coo.row]
    row, col, coef = coo.row[keep], coo.col[keep], coo.data[keep]
    bound = (b[row] - (total_lo[row] - coef * prior_lo[col])) / coef
    out = np.full(a.shape[1], np.inf)
    np.minimum.at(out, col, bound)
    return out
