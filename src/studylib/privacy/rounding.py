"""Controlled rounding: every cell and Total to a multiple of the base, margins still additive.

The alternative to suppression a study may choose (``rounding: 3`` or ``5``). Each count
moves to one of the two multiples of the base around it; multiples stay as they are
(zero-restricted), so a true zero is published as zero. The choice of up or down is a
small integer programme (scipy ``milp``, HiGHS) that keeps every line of the table adding
up to its rounded Total and moves the counts as little as possible in total. For one- and
two-dimensional tables such a rounding always exists; for more dimensions it may not, and
that is reported as an error naming the base.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import LinearConstraint, milp

from studylib.errors import StudylibError
from studylib.privacy.intruder import relation_matrix

BASES = (3, 5)


class RoundingError(StudylibError):
    """No controlled rounding of the table exists (or the base is not allowed)."""


def controlled_rounding(values: np.ndarray, base: int, margins: bool = True) -> np.ndarray:
    """The table rounded to multiples of ``base``; with ``margins`` the Totals (last index on
    every axis) stay the sums of the rounded cells."""
    if base not in BASES:
        raise RoundingError(f"rounding base must be one of {BASES}, not {base!r}")
    values = np.asarray(values, dtype=np.int64)
    floor = (values // base) * base
    rest = values - floor
    if not margins:
        return np.where(2 * rest >= base, floor + base, floor)
    free = np.flatnonzero(rest.ravel() > 0)
    if free.size == 0:
        return values.copy()
    relations = relation_matrix(values.shape).tocsc()
    # relations @ (floor + base * up) == 0, with up in {0, 1} on the free cells only
    need = -(relations @ floor.ravel()) / base
    a = relations[:, free]
    # moving a cell up by (base - rest) costs that much, down by rest costs rest
    objective = (base - 2.0 * rest.ravel()[free])
    result = milp(
        objective,
        constraints=LinearConstraint(a, need, need),
        integrality=np.ones(free.size),
        bounds=(0, 1),
    )
    if result.status != 0 or result.x is None:
        raise RoundingError(
            f"no controlled rounding to base {base} keeps this table's margins additive "
            f"({result.message}); protect it by suppression instead"
        )
    rounded = floor.ravel().copy()
    rounded[free] += base * np.round(result.x).astype(np.int64)
    rounded = rounded.reshape(values.shape)
    if np.any(relation_matrix(values.shape) @ rounded.ravel()):
        raise RoundingError(f"controlled rounding to base {base} did not keep the margins additive")
    return rounded
