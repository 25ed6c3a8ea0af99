"""The cell key method: the perturbation table, cell keys from record keys, and the published count.

This module owns the disclosure control of the ABS TableBuilder and the ONS 2021 census
(the method of R's ``cellKey`` and ``ptable`` packages) as pure functions:

- a person's record key (:func:`record_key_of`) is a number in [0, 1) in exact units of
  2**-52, taken from a keyed digest;
- a cell's key (:func:`cell_keys`) is the fractional part of the sum of the record keys of
  the persons counted in it, summed in integers, so the same persons give the same key in
  every table, report and re-run, whatever their order;
- the perturbation table (:func:`perturbation_table`) gives, for each true count ``i``, the
  distribution of the published value ``j``: zero stays zero, ``j`` is never negative, never
  one of ``1..no_small`` and at most ``max_deviation`` from ``i``; for ``i >= 1`` the row is
  the maximum-entropy distribution with mean ``i`` (unbiased) and the variance ``variance``,
  or the attainable variance nearest to it where the support cannot reach it;
- :meth:`PerturbationTable.perturb` publishes a cell: the first ``j`` whose cumulative
  probability in row ``i`` exceeds the cell key (rows from ``top`` on are row ``top`` shifted).

A row whose variance is the end of its attainable range is a single vertex of the feasible
set: all on ``j = i``, or two values (the nearest either side of ``i`` for the smallest
variance, the farthest for the largest), taken from the linear programme that found the end.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linprog, minimize, root

if TYPE_CHECKING:
    import pandas

#: Record and cell keys are whole numbers of these units (exact in a double).
UNITS = 2**52

#: How closely every row must hold its constraints (sum, mean, variance).
TOLERANCE = 1e-9

#: Probabilities below this may be dropped (if the row still holds its constraints).
NEGLIGIBLE = 1e-12


@dataclass(frozen=True, eq=False)
class PerturbationTable:
    """Rows ``0..top`` of a perturbation table; ``probabilities[i, d]`` is the probability that
    true count ``i`` is published as ``i + d - max_deviation``; ``variances[i]`` is the variance
    row ``i`` actually has."""

    max_deviation: int
    variance: float
    no_small: int
    probabilities: np.ndarray
    variances: np.ndarray

    @property
    def top(self) -> int:
        """The first row from which nothing is clipped or excluded: every later row is this one shifted."""
        return self.no_small + self.max_deviation + 1

    def perturb(self, counts, cell_keys) -> np.ndarray:
        """The published values of cells with true ``counts`` and ``cell_keys`` (arrays of one shape)."""
        counts = _whole_counts(counts)
        keys = _unit_interval(cell_keys, "cell_keys")
        if counts.shape != keys.shape:
            raise ValueError(f"counts (shape {counts.shape}) and cell_keys (shape {keys.shape}) must have one shape")
        rows = np.minimum(counts, self.top)
        cumulative = _cumulative(self.probabilities)
        # the first column whose cumulative probability exceeds the key: cumulative[row, d] > key
        column = np.sum(cumulative[rows] <= keys[..., None], axis=-1)
        return np.asarray(counts + column.astype(np.int64) - self.max_deviation)

    def frame(self) -> pandas.DataFrame:
        """The table in long form (``i``, ``j``, ``p``, ``cumulative``), values of positive probability only."""
        import pandas as pd

        i, d = np.nonzero(self.probabilities > 0)
        return pd.DataFrame(
            {
                "i": i.astype(np.int64),
                "j": (i + d - self.max_deviation).astype(np.int64),
                "p": self.probabilities[i, d],
                "cumulative": _cumulative(self.probabilities)[i, d],
            }
        )


def perturbation_table(max_deviation: int = 3, variance: float = 2.0, no_small: int = 2) -> PerturbationTable:
    """The perturbation table for these parameters (built once, then cached)."""
    _check_parameters(max_deviation, variance, no_small)
    return _table(int(max_deviation), float(variance), int(no_small))


def cell_keys(record_keys, cells, n_cells: int) -> np.ndarray:
    """The cell key of each of ``n_cells`` cells: the fractional part of the sum of the record keys of
    its persons (``cells[k]`` is person ``k``'s cell, ``-1`` for none); ``0.0`` for an empty cell.

    Keys are summed as whole numbers of 2**-52 (a key is taken down to a whole number of units,
    which changes nothing for keys from :func:`record_key_of`) in unsigned 64-bit integers, whose
    wrapping keeps the sum modulo 2**52 exact: the result never depends on the order of persons.
    """
    if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or n_cells < 0:
        raise ValueError(f"n_cells must be a whole number >= 0, not {n_cells!r}")
    keys = _unit_interval(record_keys, "record_keys")
    cells = np.asarray(cells)
    if keys.ndim != 1 or cells.shape != keys.shape:
        raise ValueError(
            f"record_keys (shape {keys.shape}) and cells (shape {cells.shape}) must be one-dimensional, one per person"
        )
    if cells.size and cells.dtype.kind not in "iu":
        raise ValueError(f"cells must be whole numbers (cell indices, -1 for none), not {cells.dtype}")
    bad = (cells < -1) | (cells >= n_cells)
    if np.any(bad):
        raise ValueError(f"{_position('cells', bad)} = {cells[bad][0].item()} is not a cell index in -1..{n_cells - 1}")
    units = np.floor(keys * UNITS).astype(np.uint64)
    counted = cells >= 0
    sums = np.zeros(int(n_cells), dtype=np.uint64)
    np.add.at(sums, cells[counted].astype(np.intp), units[counted])
    return (sums % np.uint64(UNITS)).astype(np.float64) / UNITS


def record_key_of(digest: bytes) -> float:
    """A record key from the first 8 bytes of a keyed digest: their top 52 bits over 2**52, in [0, 1)."""
    digest = bytes(digest)
    if len(digest) < 8:
        raise ValueError(f"digest must have at least 8 bytes, not {len(digest)}")
    return (int.from_bytes(digest[:8], "big") >> 12) / UNITS


@functools.lru_cache(maxsize=32)
def _table(max_deviation: int, variance: float, no_small: int) -> PerturbationTable:
    top = no_small + max_deviation + 1
    probabilities = np.zeros((top + 1, 2 * max_deviation + 1))
    variances = np.zeros(top + 1)
    probabilities[0, max_deviation] = 1.0
    for i in range(1, top + 1):
        deviations = _support(i, max_deviation, no_small)
        row, variances[i] = _row(deviations, variance)
        probabilities[i, deviations + max_deviation] = row
    probabilities.setflags(write=False)
    variances.setflags(write=False)
    return PerturbationTable(max_deviation, variance, no_small, probabilities, variances)


def _check_parameters(max_deviation, variance, no_small) -> None:
    def whole(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not whole(max_deviation) or max_deviation < 1:
        raise ValueError(f"max_deviation must be a whole number >= 1, not {max_deviation!r}")
    if not whole(no_small) or no_small < 0:
        raise ValueError(f"no_small must be a whole number >= 0, not {no_small!r}")
    number = isinstance(variance, (int, float, np.integer, np.floating)) and not isinstance(variance, bool)
    if not number or not math.isfinite(variance) or variance <= 0:
        raise ValueError(f"variance must be a finite number > 0, not {variance!r}")
    if max_deviation < no_small:
        raise ValueError(
            f"max_deviation={max_deviation} is smaller than no_small={no_small}: a count of 1 cannot be published "
            f"unbiased; raise max_deviation to at least {no_small} or lower no_small"
        )


def _support(i: int, max_deviation: int, no_small: int) -> np.ndarray:
    """The deviations ``j - i`` row ``i`` may publish: ``j`` in ``max(0, i - D)..i + D``, not in ``1..no_small``."""
    j = np.arange(max(0, i - max_deviation), i + max_deviation + 1)
    j = j[(j == 0) | (j > no_small)]
    return j - i


def _row(deviations: np.ndarray, variance: float) -> tuple[np.ndarray, float]:
    """The maximum-entropy row on these deviations with mean 0 and the attainable variance nearest
    to ``variance``; and that variance."""
    low, at_low = _variance_end(deviations, +1)
    high, at_high = _variance_end(deviations, -1)
    if variance <= low + TOLERANCE:
        row, target = at_low, low
    elif variance >= high - TOLERANCE:
        row, target = at_high, high
    else:
        row, target = _max_entropy(deviations, variance), variance
    row = _tidy(deviations, row, target)
    return row, float(row @ deviations**2 - (row @ deviations) ** 2)


def _variance_end(deviations: np.ndarray, sense: int) -> tuple[float, np.ndarray]:
    """The smallest (``sense=+1``) or largest (``-1``) variance of a mean-0 row on these deviations, and the row."""
    d = deviations.astype(float)
    result = linprog(
        sense * d**2,
        A_eq=np.vstack([np.ones_like(d), d]),
        b_eq=[1.0, 0.0],
        bounds=(0, None),
        method="highs",
    )
    if result.status != 0:
        raise RuntimeError(f"no row with mean 0 on deviations {deviations.tolist()}: {result.message}")
    row = np.clip(result.x, 0.0, None)
    row /= row.sum()
    return float(row @ d**2), row


def _max_entropy(deviations: np.ndarray, target: float) -> np.ndarray:
    """The row ``p ~ exp(a*d + b*d**2)`` with mean 0 and variance ``target`` (strictly inside the
    attainable range): ``(a, b)`` solve the two moment equations, the gradient of the convex dual
    ``log Z(a, b) - b * target``."""
    scale = float(np.abs(deviations).max())
    features = np.stack([deviations / scale, (deviations / scale) ** 2], axis=1)
    goal = np.array([0.0, target / scale**2])

    def weights(theta):
        z = features @ theta
        w = np.exp(z - z.max())
        return w / w.sum(), z.max() + math.log(w.sum())

    def dual(theta):
        return weights(theta)[1] - theta @ goal

    def gradient(theta):
        return weights(theta)[0] @ features - goal

    def hessian(theta):
        p = weights(theta)[0]
        centred = features - p @ features
        return (centred * p[:, None]).T @ centred

    # the dual's minimum (robust from any start) is a good start for the exact root of the equations
    start = np.array([0.0, -(scale**2) / (2.0 * target)])
    near = minimize(dual, start, jac=gradient, hess=hessian, method="trust-exact", options={"gtol": 1e-10}).x
    return weights(root(gradient, near, jac=hessian, method="hybr", options={"xtol": 1e-14}).x)[0]


def _tidy(deviations: np.ndarray, row: np.ndarray, target: float) -> np.ndarray:
    """The row with negligible probabilities dropped if it still holds; raises if the row does not hold."""
    if not _holds(deviations, row, target):
        raise ValueError(
            f"the perturbation row on deviations {deviations.tolist()} misses its constraints "
            f"(sum 1, mean 0, variance {target}) by more than {TOLERANCE}"
        )
    tidied = np.where(row < NEGLIGIBLE, 0.0, row)
    tidied /= tidied.sum()
    return tidied if _holds(deviations, tidied, target) else row


def _holds(deviations: np.ndarray, row: np.ndarray, target: float) -> bool:
    mean = row @ deviations
    return bool(
        abs(row.sum() - 1.0) <= TOLERANCE
        and abs(mean) <= TOLERANCE
        and abs(row @ deviations**2 - mean**2 - target) <= TOLERANCE
        and row.min() >= 0.0
    )


def _cumulative(probabilities: np.ndarray) -> np.ndarray:
    """Each row's cumulative probabilities, exactly 1 from its last value of positive probability on."""
    cumulative = np.cumsum(probabilities, axis=1)
    last = probabilities.shape[1] - 1 - np.argmax(probabilities[:, ::-1] > 0, axis=1)
    cumulative[np.arange(probabilities.shape[1]) >= last[:, None]] = 1.0
    return cumulative


def _whole_counts(counts) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.dtype.kind in "iu":
        bad = counts < 0
    elif counts.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(counts) | (counts < 0) | (counts != np.floor(counts))
    else:
        raise ValueError(f"counts must be whole numbers >= 0, not {counts.dtype}")
    if np.any(bad):
        raise ValueError(f"{_position('counts', bad)} = {counts[bad][0].item()!r} is not a whole number >= 0")
    return counts.astype(np.int64)


def _unit_interval(values, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.size and values.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numbers in [0, 1), not {values.dtype}")
    values = values.astype(np.float64)
    bad = ~((values >= 0.0) & (values < 1.0))
    if np.any(bad):
        raise ValueError(f"{_position(name, bad)} = {values[bad][0].item()!r} is not in [0, 1)")
    return values


def _position(name: str, bad: np.ndarray) -> str:
    """``name[first bad index]`` (just ``name`` for a single value)."""
    if bad.ndim == 0:
        return name
    index = np.argwhere(bad)[0]
    return f"{name}[{', '.join(str(int(k)) for k in index)}]"
