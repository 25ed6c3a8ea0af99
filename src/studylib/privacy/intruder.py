"""The intruder: what an attacker can work out about the hidden cells of a published table.

A table with margins is held as an N-dimensional array whose last index on every axis is
the ``Total``. Its additivity relations (every line of cells along an axis sums to the
line's Total) are :func:`relation_matrix`. An attacker knows the published cells exactly,
knows a hidden cell only within prior bounds (``0..inf`` for a suppressed cell, the rounding
interval for a rounded one), and solves linear programmes (scipy HiGHS) for the smallest
and largest value each hidden cell can take: :func:`intruder_bounds`.

The system is split into independent components (hidden cells linked through shared
relations), and a solution found for one cell serves as a witness for the others: a bound
already reached by a feasible table needs no programme of its own (:class:`_Component`).
A bound that still needs proof is a linear programme, except in a component that is a
flow network, as every component of a one- or two-dimensional table is (turn some of its
relations round and every hidden cell enters one relation and leaves another, or touches
one only): there it is a maximum flow (scipy.sparse.csgraph, :class:`_Network`), many
times faster and, by total unimodularity, the same whole number.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import sparse
from scipy.optimize import linprog
from scipy.sparse.csgraph import connected_components, maximum_flow

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
    networks: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The attacker's integer bounds for the ``targets`` (flat cell indices).

    ``values`` are the true counts (flat); ``known`` marks the cells published exactly;
    ``lower``/``upper`` are the prior bounds of the other cells (``np.inf`` for none).
    The true table is feasible, so every interval returned contains the true count.

    With ``enough`` (a test on intervals that stays true when an interval widens, such as
    "safe"), a target stops being refined as soon as whole values it can take make the
    test true; its interval is then only as wide as that evidence (the exact bounds are at
    least as wide, so they pass the test too). The test is applied to the interval as it is
    returned (whole numbers, rounded inward), never to fractional witnesses of a linear
    programme, so a target whose returned interval fails the test has its exact bounds.

    ``networks=False`` proves every bound by a linear programme (the reference path that
    tests and the benchmark compare the flow networks with).
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
        a, b = a_hidden[rels][:, variables], rhs[rels]
        lo, hi, truth = prior_lo[variables], prior_hi[variables], values[hidden[variables]]
        problem = _Component(a, b, lo, hi, truth, networks)
        lo_out[wanted], hi_out[wanted] = problem.bounds(local, enough)
    return np.ceil(lo_out - _TOL) + 0.0, np.floor(hi_out + _TOL) + 0.0


class _Network:
    """The hidden cells of one component as the arcs of a flow network.

    Arc ``e`` carries the cell's value from ``tails[e]`` to ``heads[e]`` (relations, or the
    ground node past the last relation). The tables the attacker cannot tell apart are the
    true table plus a circulation within the residual capacities (up to the prior upper
    bound forwards, down to the prior lower bound backwards). Raising cell ``t`` by ``d``
    sends ``d`` back from its head to its tail along the other arcs, lowering it sends ``d``
    from its tail to its head: each bound is one maximum flow on the one residual graph, less
    the capacity of ``t``'s own residual arc from source to sink (its other arc runs from sink
    to source and carries nothing). Capacities must be whole numbers: every unbounded one
    becomes ``infinite``, more than all finite capacities together, so a flow reaches
    ``infinite`` only where the bound is unbounded.
    """

    def __init__(self, tails, heads, prior_lo, prior_hi, truth) -> None:
        self.tails, self.heads = tails, heads
        self.truth = truth.astype(np.int64)
        bounded = np.isfinite(prior_hi)
        self.down = (truth - prior_lo).astype(np.int64)
        self.infinite = int(self.down.sum() + (prior_hi - truth)[bounded].sum()) + 1
        self.up = np.where(bounded, prior_hi - truth, self.infinite).astype(np.int64)
        nodes = int(max(tails.max(), heads.max())) + 1
        graph = sparse.csr_array(
            (np.concatenate([self.up, self.down]), (np.concatenate([tails, heads]), np.concatenate([heads, tails]))),
            shape=(nodes, nodes),
        )
        graph.sum_duplicates()  # parallel arcs (one-dimensional tables) add up
        graph.eliminate_zeros()
        self.graph = graph.astype(np.int32)

    @classmethod
    def of(cls, a: sparse.csr_matrix, prior_lo, prior_hi, truth) -> "_Network | None":
        """The component as a flow network, or None when its relations are no network or
        its capacities are not whole numbers that fit the 32 bits of maximum_flow."""
        whole = np.concatenate([truth, prior_lo, prior_hi[np.isfinite(prior_hi)]])
        if not (np.all(np.isfinite(prior_lo)) and np.all(whole == np.round(whole))):
            return None
        arcs = _arcs(a)
        if arcs is None:
            return None
        network = cls(*arcs, prior_lo, prior_hi, truth)
        if network.infinite * (len(truth) + 1) >= 2**31:
            return None
        return network

    def lower(self, t: int) -> float:
        down = self._flow(self.tails[t], self.heads[t]) - int(self.up[t])
        return float(self.truth[t] - min(int(self.down[t]), down))

    def upper(self, t: int) -> float:
        up = self._flow(self.heads[t], self.tails[t]) - int(self.down[t])
        return np.inf if up >= self.infinite else float(self.truth[t] + min(int(self.up[t]), up))

    def _flow(self, source: int, sink: int) -> int:
        return int(maximum_flow(self.graph, int(source), int(sink)).flow_value)


def _arcs(a: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray] | None:
    """Each hidden cell as an arc (tail, head) between relations, when the relations form a
    network: every coefficient is +-1, every cell is in at most two relations, and turning
    some relations round (a sign for each) makes every cell in two of them enter one and
    leave the other. A cell in one relation only runs to or from the ground node. None else.

    The signs come from the components of a graph on the relations taken both ways round
    (node ``r`` and node ``r + n``): a cell in relations ``r`` and ``q`` joins ``r`` to ``q``
    when its coefficients differ in sign (keep both ways alike), else ``r`` to ``q + n``.
    They exist when no relation shares a component with itself turned round.
    """
    n_rel, n_var = a.shape
    csc = sparse.csc_matrix(a)
    csc.sort_indices()
    count = np.diff(csc.indptr)
    if np.any(count > 2) or np.any(np.abs(csc.data) != 1):
        return None
    pair = csc.indptr[:-1][count == 2]
    r, q = csc.indices[pair], csc.indices[pair + 1]
    alike = csc.data[pair] != csc.data[pair + 1]
    ends = np.concatenate([np.where(alike, q, q + n_rel), np.where(alike, q + n_rel, q)])
    graph = sparse.coo_matrix(
        (np.ones(2 * len(r)), (np.concatenate([r, r + n_rel]), ends)), shape=(2 * n_rel, 2 * n_rel)
    )
    _, label = connected_components(graph, directed=False)
    if np.any(label[:n_rel] == label[n_rel:]):
        return None
    sign = np.where(label[:n_rel] < label[n_rel:], 1.0, -1.0)
    enters = sign[csc.indices] * csc.data > 0
    cell = np.repeat(np.arange(n_var), count)
    tails = np.full(n_var, n_rel, dtype=np.int64)
    heads = np.full(n_var, n_rel, dtype=np.int64)
    heads[cell[enters]] = csc.indices[enters]
    tails[cell[~enters]] = csc.indices[~enters]
    return tails, heads


class _Component:
    """The hidden cells of one linked component and the programmes over them.

    Every solution found is kept as a witness (a value each cell can take), and every
    dual solution of a maximisation as a certificate (an upper bound for each cell whose
    coefficient in it is positive). A bound that a witness reaches and a certificate
    proves needs no programme of its own. The others are maximum flows when the component
    is a flow network (and ``networks``), else programmes of their own.
    """

    def __init__(self, a: sparse.csr_matrix, b: np.ndarray, prior_lo, prior_hi, truth, networks=True) -> None:
        self.a, self.b = a, b
        self.prior_lo, self.prior_hi = prior_lo, prior_hi
        self.seen_lo, self.seen_hi = truth.copy(), truth.copy()
        self.proven_hi = np.minimum(prior_hi, _line_upper_bounds(a, b, prior_lo))
        self.box = np.column_stack([prior_lo, prior_hi])
        self.network = _Network.of(a, prior_lo, prior_hi, truth) if networks and a.shape[0] else None

    def bounds(self, targets: np.ndarray, enough=None) -> tuple[np.ndarray, np.ndarray]:
        lo = np.empty(len(targets))
        hi = np.empty(len(targets))
        if self.a.shape[0] == 0:
            return self.prior_lo[targets].copy(), self.prior_hi[targets].copy()
        if len(targets) > 1:  # one programme that pushes every target down gives many zero witnesses
            self._solve(_objective(self.a.shape[1], targets, 1.0))
        for k, t in enumerate(targets.tolist()):
            # the evidence is judged as it will be returned: whole numbers, rounded inward (a
            # fractional witness such as 4.5 is no proof that 5 can be reached)
            seen_lo, seen_hi = _inward_lower(self.seen_lo[t]), _inward_upper(self.seen_hi[t])
            if enough is not None and enough(seen_lo, seen_hi):
                lo[k], hi[k] = seen_lo, seen_hi
                continue
            lo[k] = self._lower(t)
            if enough is not None and enough(_inward_lower(lo[k]), seen_hi):
                hi[k] = seen_hi
                continue
            hi[k] = self._upper(t)
        return lo, hi

    def _lower(self, t: int) -> float:
        if self.seen_lo[t] <= self.prior_lo[t] + _TOL:
            return float(self.prior_lo[t])
        if self.network is not None:
            return self.network.lower(t)
        return self._solve(_objective(self.a.shape[1], [t], 1.0)).fun

    def _upper(self, t: int) -> float:
        if self.seen_hi[t] >= self.proven_hi[t] - _TOL:
            return float(self.proven_hi[t])
        if self.network is not None:
            return self.network.upper(t)
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


def _inward_lower(value: float) -> float:
    """The smallest whole number a cell can take at or above ``value`` (with the solver's tolerance)."""
    return math.ceil(value - _TOL) + 0.0


def _inward_upper(value: float) -> float:
    """The largest whole number a cell can take at or below ``value`` (infinity stays infinite)."""
    return value if math.isinf(value) else math.floor(value + _TOL) + 0.0


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
