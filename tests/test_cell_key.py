"""The cell key method (studylib.privacy.cell_key), checked against oracles written here.

The perturbation rows are checked value by value on their own definition: the allowed values
(an independent list comprehension), the moments, the attainable range of the variance (a
linear programme written here), the maximum-entropy solution (SLSQP on the negative entropy
here, where the module solves the moment equations of the exponential family; two-point
vertices by hand at the ends of the range), and the shift from ``top`` on. Publishing is
checked by the frequencies over a fine grid of cell keys and by keys either side of a
cumulative boundary; cell keys against sums in Python integers; record keys against
``int.from_bytes`` of an HMAC from the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random

import numpy as np
import pytest
from scipy.optimize import linprog, minimize

from studylib.privacy.cell_key import (
    PerturbationTable,
    cell_keys,
    perturbation_table,
    record_key_of,
)

#: (max_deviation, no_small, variance)
PARAMETERS = [(2, 1, 1.0), (3, 2, 2.0), (4, 2, 3.0), (5, 4, 4.0)]
IDS = [f"D{d}-js{js}-V{v:g}" for d, js, v in PARAMETERS]


def table_of(parameters) -> PerturbationTable:
    d, js, v = parameters
    return perturbation_table(max_deviation=d, variance=v, no_small=js)


def allowed_values(i: int, d: int, js: int) -> list[int]:
    """The published values row ``i >= 1`` may use, straight from the definition."""
    return [j for j in range(0, i + d + 1) if abs(j - i) <= d and not 1 <= j <= js]


def row_of(table: PerturbationTable, i: int) -> dict[int, float]:
    """Row ``i`` (any ``i``: from ``top`` on, the top row shifted) as {published value: probability > 0}."""
    d = table.max_deviation
    base = min(i, table.top)
    return {i + k - d: float(p) for k, p in enumerate(table.probabilities[base]) if p > 0}


def variance_range(i: int, d: int, js: int) -> tuple[float, float]:
    """The smallest and largest variance of a distribution with mean ``i`` on the allowed values."""
    values = np.array(allowed_values(i, d, js), dtype=float)
    ends = []
    for sign in (1.0, -1.0):
        result = linprog(
            sign * (values - i) ** 2,
            A_eq=[np.ones_like(values), values],
            b_eq=[1.0, float(i)],
            bounds=[(0.0, 1.0)] * len(values),
            method="highs",
        )
        assert result.status == 0
        ends.append(sign * result.fun)
    return ends[0], ends[1]


def max_entropy_by_slsqp(i: int, d: int, js: int, variance: float) -> dict[int, float]:
    """The maximum-entropy distribution with mean ``i`` and this variance, by SLSQP on the negative entropy."""
    values = np.array(allowed_values(i, d, js), dtype=float)
    dev = values - i
    constraints = [
        {"type": "eq", "fun": lambda p: p.sum() - 1.0, "jac": lambda p: np.ones_like(p)},
        {"type": "eq", "fun": lambda p: p @ dev, "jac": lambda p: dev},
        {"type": "eq", "fun": lambda p: p @ dev**2 - variance, "jac": lambda p: dev**2},
    ]
    result = minimize(
        lambda p: float(np.sum(p * np.log(p))),
        np.full(len(values), 1.0 / len(values)),
        jac=lambda p: np.log(p) + 1.0,
        bounds=[(1e-15, 1.0)] * len(values),
        constraints=constraints,
        method="SLSQP",
        options={"ftol": 1e-16, "maxiter": 2000},
    )
    assert result.success, result.message
    return dict(zip(values.astype(int).tolist(), result.x.tolist()))


def moments(row: dict[int, float], i: int) -> tuple[float, float, float]:
    """Total, mean of j - i and variance of j - i, in Python floats."""
    total = math.fsum(row.values())
    mean = math.fsum(p * (j - i) for j, p in row.items())
    square = math.fsum(p * (j - i) ** 2 for j, p in row.items())
    return total, mean, square - mean**2


# --- the perturbation table ---------------------------------------------------------------


@pytest.mark.parametrize("parameters", PARAMETERS, ids=IDS)
def test_rows_publish_only_allowed_values(parameters):
    d, js, _ = parameters
    table = table_of(parameters)
    assert table.top == js + d + 1
    assert table.probabilities.shape == (js + d + 2, 2 * d + 1)
    assert table.variances.shape == (js + d + 2,)
    assert np.all(table.probabilities >= 0)
    assert row_of(table, 0) == {0: 1.0}, "zero is published as zero"
    assert table.variances[0] == 0.0
    for i in range(1, table.top + 1):
        row = row_of(table, i)
        positive = {j for j, p in row.items() if p > 0}
        assert positive <= set(allowed_values(i, d, js)), (i, sorted(positive))
        assert all(j >= 0 and abs(j - i) <= d and not 1 <= j <= js for j in positive)
        assert abs(math.fsum(row.values()) - 1.0) <= 1e-12


@pytest.mark.parametrize("parameters", PARAMETERS, ids=IDS)
def test_rows_are_unbiased_with_the_variance_asked_or_the_nearest_attainable(parameters):
    d, js, v = parameters
    table = table_of(parameters)
    attainable_rows = 0
    for i in range(1, table.top + 1):
        total, mean, variance = moments(row_of(table, i), i)
        low, high = variance_range(i, d, js)
        nearest = min(max(v, low), high)
        attainable_rows += low - 1e-12 <= v <= high + 1e-12
        assert abs(total - 1.0) <= 1e-9
        assert abs(mean) <= 1e-9, (i, mean)
        assert abs(variance - nearest) <= 1e-9, (i, variance, nearest)
        assert abs(table.variances[i] - variance) <= 1e-12, "the recorded variance is the row's own"
    assert attainable_rows >= 3


def test_the_variance_is_the_nearest_attainable_where_the_support_cannot_reach_it():
    # D=5, js=4: true 2 can go to 0 or 5..7 (deviations -2, 3, 4, 5): the smallest variance with
    # mean 0 mixes -2 and 3 (3/5 and 2/5): 6 > 4; likewise true 3 (-3 and 2: 6)
    table = perturbation_table(max_deviation=5, variance=4.0, no_small=4)
    assert table.variances.tolist()[:5] == pytest.approx([0.0, 4.0, 6.0, 6.0, 4.0], abs=1e-12)
    assert row_of(table, 2) == pytest.approx({0: 0.6, 5: 0.4}, abs=1e-12)
    assert row_of(table, 3) == pytest.approx({0: 0.4, 5: 0.6}, abs=1e-12)
    # a variance beyond the largest attainable (D**2 on the full support): the two farthest values
    wide = perturbation_table(max_deviation=2, variance=50.0, no_small=1)
    assert row_of(wide, wide.top) == pytest.approx({wide.top - 2: 0.5, wide.top + 2: 0.5}, abs=1e-12)
    assert wide.variances[wide.top] == pytest.approx(4.0, abs=1e-12)


@pytest.mark.parametrize("parameters", PARAMETERS, ids=IDS)
def test_rows_are_the_maximum_entropy_distribution(parameters):
    d, js, v = parameters
    table = table_of(parameters)
    for i in range(1, table.top + 1):
        low, high = variance_range(i, d, js)
        row = row_of(table, i)
        if low + 1e-9 < v < high - 1e-9:
            expected = max_entropy_by_slsqp(i, d, js, v)
        else:
            # an end of the range is a single vertex: the nearest values either side of i for the
            # smallest variance, the farthest for the largest (mean i fixes their weights)
            below = [j for j in allowed_values(i, d, js) if j < i]
            above = [j for j in allowed_values(i, d, js) if j > i]
            a, b = (max(below), min(above)) if v <= low + 1e-9 else (min(below), max(above))
            expected = {a: (b - i) / (b - a), b: (i - a) / (b - a)}
        for j in set(row) | set(expected):
            assert row.get(j, 0.0) == pytest.approx(expected.get(j, 0.0), abs=1e-6), (i, j)


@pytest.mark.parametrize("parameters", PARAMETERS, ids=IDS)
def test_rows_from_top_on_are_the_top_row_shifted(parameters):
    d, js, v = parameters
    table = table_of(parameters)
    top_row = row_of(table, table.top)
    for i in (table.top + 1, table.top + 4, table.top + 25):
        expected = max_entropy_by_slsqp(i, d, js, v)
        shifted = {j + i - table.top: p for j, p in top_row.items()}
        assert set(expected) == set(shifted)
        for j in expected:
            assert shifted[j] == pytest.approx(expected[j], abs=1e-6), (i, j)
    # the row before top still loses a value (no_small itself): top is the first full row
    assert len(allowed_values(table.top - 1, d, js)) < 2 * d + 1 == len(allowed_values(table.top, d, js))


def test_the_default_table_by_hand():
    table = perturbation_table()
    assert (table.max_deviation, table.variance, table.no_small, table.top) == (3, 2.0, 2, 6)
    # true 1 may go to 0 or 3 only (deviations -1, 2, 3); mean 1 with variance 2, the smallest
    # attainable, is the mix of 0 and 3 alone; true 2 (deviations -2, 1, 2, 3) likewise
    assert row_of(table, 1) == pytest.approx({0: 2 / 3, 3: 1 / 3}, abs=1e-12)
    assert row_of(table, 2) == pytest.approx({0: 1 / 3, 3: 2 / 3}, abs=1e-12)
    assert table.variances.tolist() == pytest.approx([0.0] + [2.0] * 6, abs=1e-9)
    # the full top row is symmetric around 6
    top = table.probabilities[6]
    assert top == pytest.approx(top[::-1], abs=1e-9)


def test_negligible_probabilities_are_dropped_while_the_row_still_holds():
    # D=5 with a small variance: the maximum-entropy weight of +-5 is about 4e-18
    table = perturbation_table(max_deviation=5, variance=0.3, no_small=0)
    top = row_of(table, table.top)
    assert set(top) == set(range(table.top - 4, table.top + 5)), "+-5 dropped, +-4 (about 7e-12) kept"
    assert min(top.values()) == pytest.approx(6.857e-12, rel=1e-3)
    for i in range(1, table.top + 1):
        total, mean, variance = moments(row_of(table, i), i)
        assert abs(total - 1.0) <= 1e-9 and abs(mean) <= 1e-9 and abs(variance - 0.3) <= 1e-9


def test_a_row_that_misses_its_constraints_is_refused(monkeypatch):
    import studylib.privacy.cell_key as module

    class Stopped:
        def __init__(self, x):
            self.x = np.asarray(x, dtype=float)

    # a solver that stops at its start (the Gaussian guess, not the solution)
    monkeypatch.setattr(module, "minimize", lambda fun, x0, **options: Stopped(x0))
    monkeypatch.setattr(module, "root", lambda fun, x0, **options: Stopped(x0))
    with pytest.raises(ValueError, match=r"misses its constraints \(sum 1, mean 0, variance 1.75\)"):
        perturbation_table(max_deviation=3, variance=1.75, no_small=1)


@pytest.mark.parametrize(
    "shift, holds",
    [((0.0, 0.0, 0.0), True), ((2e-9, 0.0, 0.0), False), ((0.0, 2e-9, 0.0), False), ((0.0, 0.0, 2e-9), False),
     ((5e-10, 5e-10, 5e-10), True)],
)
def test_the_row_check_holds_sum_mean_and_variance_to_1e_9(shift, holds):
    from studylib.privacy.cell_key import _holds

    # deviations -1, 0, 1 with weights 1/4, 1/2, 1/4: sum 1, mean 0, variance 1/2; shift each moment alone
    deviations = np.array([-1, 0, 1])
    total, mean, variance = shift
    row = np.array([0.25 - mean / 2 + variance / 2, 0.5 + total - variance, 0.25 + mean / 2 + variance / 2])
    assert _holds(deviations, row, 0.5) is holds
    assert _holds(deviations, np.array([-1e-3, 1.002, -1e-3]), -2e-3) is False, "no negative weights"


def test_the_table_is_built_once_and_cannot_be_changed():
    assert perturbation_table() is perturbation_table(3, 2, 2)
    table = perturbation_table()
    with pytest.raises(ValueError):
        table.probabilities[1, 1] = 0.5
    with pytest.raises(ValueError):
        table.variances[1] = 0.0


def test_frame_lists_the_values_of_positive_probability():
    table = perturbation_table()
    frame = table.frame()
    assert list(frame.columns) == ["i", "j", "p", "cumulative"]
    assert (frame["p"] > 0).all()
    expected = sorted((i, j, p) for i in range(table.top + 1) for j, p in row_of(table, i).items() if p > 0)
    assert sorted(zip(frame["i"], frame["j"], frame["p"])) == expected
    for i, rows in frame.groupby("i"):
        assert rows["j"].is_monotonic_increasing
        assert rows["cumulative"].to_numpy() == pytest.approx(np.cumsum(rows["p"].to_numpy()), abs=1e-12)
        assert rows["cumulative"].iloc[-1] == 1.0
    assert frame[frame["i"] == 1][["j", "cumulative"]].to_numpy() == pytest.approx(np.array([[0, 2 / 3], [3, 1.0]]))


# --- publishing ----------------------------------------------------------------------------


@pytest.mark.parametrize("parameters", PARAMETERS, ids=IDS)
def test_published_values_follow_the_row_over_a_fine_grid_of_cell_keys(parameters):
    n = 200_000
    keys = (np.arange(n) + 0.5) / n
    table = table_of(parameters)
    for i in [*range(table.top + 1), table.top + 1, table.top + 7]:
        published = table.perturb(np.full(n, i), keys)
        assert published.dtype == np.int64
        values, counts = np.unique(published, return_counts=True)
        frequencies = dict(zip(values.tolist(), (counts / n).tolist()))
        row = {j: p for j, p in row_of(table, i).items() if p > 0}
        assert set(frequencies) == set(row), i
        for j, p in row.items():
            assert abs(frequencies[j] - p) <= 1e-4, (i, j, frequencies[j], p)
        # the keys are in increasing order, so are the published values
        assert np.all(np.diff(published) >= 0)


def test_a_key_either_side_of_a_cumulative_boundary_gives_the_neighbouring_values():
    table = perturbation_table()
    # true 1: published 0 while the key is below 2/3, 3 from 2/3 on
    keys = [0.0, 2 / 3 - 1e-9, 2 / 3 + 1e-9, 1 - 2**-52]
    assert table.perturb([1, 1, 1, 1], keys).tolist() == [0, 0, 3, 3]
    # the first cumulative value itself does not exceed itself: the next value
    first = float(table.probabilities[6, 0])
    counts = [6, 6, 6 + 10, 6 + 10]
    keys = [np.nextafter(first, 0.0), first, np.nextafter(first, 0.0), first]
    assert table.perturb(counts, keys).tolist() == [3, 4, 13, 14]
    # zero stays zero whatever the key; arrays of any shape
    assert table.perturb(np.zeros((2, 3), dtype=int), np.full((2, 3), 0.999)).tolist() == [[0, 0, 0], [0, 0, 0]]


def test_a_key_above_the_rounded_sum_of_a_row_publishes_its_last_value():
    # 0.7 + 0.2 + 0.1 is 0.9999999999999999 in floats: the largest key below 1 must still publish i + 1
    probabilities = np.array([[0.0, 1.0, 0.0], [0.7, 0.2, 0.1], [0.7, 0.2, 0.1]])
    assert np.cumsum(probabilities[1])[-1] < 1.0
    table = PerturbationTable(1, 0.3, 0, probabilities, np.zeros(3))
    largest = np.nextafter(1.0, 0.0)
    assert table.perturb([1, 2, 5], [largest, largest, 0.0]).tolist() == [2, 3, 4]


# --- cell keys and record keys -------------------------------------------------------------


def test_cell_keys_by_hand():
    keys = np.array([0.25, 0.5, 0.75, 0.25, 0.75, 0.125, 0.5])
    cells = np.array([0, 0, 0, 1, 1, -1, 3])
    result = cell_keys(keys, cells, n_cells=5)
    assert result.tolist() == [0.5, 0.0, 0.0, 0.5, 0.0]
    assert result.dtype == np.float64
    # the person in no cell counts nowhere; an empty cell is 0.0
    assert cell_keys(keys[5:6], cells[5:6], n_cells=2).tolist() == [0.0, 0.0]
    assert cell_keys([], np.array([], dtype=int), n_cells=3).tolist() == [0.0, 0.0, 0.0]
    assert cell_keys([0.375], [0], n_cells=1).tolist() == [0.375]


def hmac_keys(n: int, secret: bytes = b"centre secret") -> list[bytes]:
    return [hmac.new(secret, f"person-{k}".encode(), hashlib.sha256).digest() for k in range(n)]


def test_cell_keys_are_the_fractional_sum_in_whole_units_whatever_the_order():
    digests = hmac_keys(5000)
    units = [int.from_bytes(d[:8], "big") >> 12 for d in digests]
    keys = np.array([u / 2**52 for u in units])
    rng = random.Random(7)
    cells = np.array([rng.randrange(-1, 7) for _ in digests])
    expected = [sum(u for u, c in zip(units, cells) if c == cell) % 2**52 / 2**52 for cell in range(8)]
    result = cell_keys(keys, cells, n_cells=8)
    assert result.tolist() == expected
    assert result[7] == 0.0
    for _ in range(5):
        order = np.array(rng.sample(range(len(keys)), len(keys)))
        assert cell_keys(keys[order], cells[order], n_cells=8).tobytes() == result.tobytes()


def test_cell_keys_do_not_overflow_in_a_large_cell():
    # 5000 keys just below 1: their sum in units is beyond 2**64
    largest = (2**52 - 1) / 2**52
    assert cell_keys(np.full(5000, largest), np.zeros(5000, dtype=int), n_cells=1).tolist() == [
        (5000 * (2**52 - 1)) % 2**52 / 2**52
    ]


def test_record_key_is_the_top_52_bits_of_the_digest():
    for digest in hmac_keys(200):
        key = record_key_of(digest)
        assert key == (int.from_bytes(digest[:8], "big") >> 12) / 2**52
        assert 0.0 <= key < 1.0
        assert (key * 2**52).is_integer()
    assert record_key_of(b"\xff" * 8) == (2**52 - 1) / 2**52
    assert record_key_of(b"\x00" * 8 + b"\xff" * 24) == 0.0
    assert record_key_of(bytes([0x80] + [0] * 7)) == 0.5
    assert record_key_of(bytes([0, 0, 0, 0, 0, 0, 0x10, 0])) == 2**-52


def test_the_same_persons_get_the_same_published_count_in_every_table():
    digests = hmac_keys(40, secret=b"another secret")
    keys = np.array([record_key_of(d) for d in digests])
    women = set(range(0, 40, 3))
    # table A: women / men; table B: 4 cells, cell 2 holds exactly the women; persons in any order
    cells_a = np.array([0 if k in women else 1 for k in range(40)])
    cells_b = np.array([2 if k in women else (0 if k % 2 else 3) for k in range(40)])
    order = np.array(random.Random(3).sample(range(40), 40))
    key_a = cell_keys(keys, cells_a, n_cells=2)[0]
    key_b = cell_keys(keys[order], cells_b[order], n_cells=4)[2]
    assert key_a == key_b
    table = perturbation_table()
    count = len(women)
    assert table.perturb([count], [key_a]).tolist() == table.perturb([count], [key_b]).tolist()
    # and another set of persons of the same size does (in general) get another key
    assert cell_keys(keys, cells_a, n_cells=2)[0] != cell_keys(keys, np.roll(cells_a, 1), n_cells=2)[0]


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments, words",
    [
        ({"max_deviation": 0}, ["max_deviation", ">= 1"]),
        ({"max_deviation": 2.5}, ["max_deviation"]),
        ({"max_deviation": True}, ["max_deviation"]),
        ({"no_small": -1}, ["no_small", ">= 0"]),
        ({"no_small": 1.0}, ["no_small"]),
        ({"variance": 0.0}, ["variance", "> 0"]),
        ({"variance": -1.0}, ["variance"]),
        ({"variance": float("nan")}, ["variance"]),
        ({"variance": float("inf")}, ["variance"]),
        ({"variance": "2"}, ["variance"]),
        ({"max_deviation": 2, "no_small": 3}, ["max_deviation=2", "no_small=3", "at least 3"]),
    ],
)
def test_bad_parameters_say_what_to_change(arguments, words):
    with pytest.raises(ValueError) as error:
        perturbation_table(**arguments)
    for word in words:
        assert word in str(error.value)


def test_max_deviation_equal_to_no_small_is_allowed():
    # true js + 1 can then only be published as itself or more: it is published as itself
    table = perturbation_table(max_deviation=2, variance=1.0, no_small=2)
    assert row_of(table, 3) == {3: 1.0}
    assert table.variances[3] == 0.0


@pytest.mark.parametrize(
    "counts, keys, words",
    [
        ([1, -2, -3], [0.1, 0.2, 0.3], ["counts[1]", "-2"]),
        ([[1, 2], [3, 4]], [[0.1, 0.2], [1.5, 1.0]], ["cell_keys[1, 0]", "1.5", "[0, 1)"]),
        ([1.0, 2.5], [0.1, 0.2], ["counts[1]", "2.5"]),
        ([1, 2], [0.1, -0.1], ["cell_keys[1]"]),
        ([1, 2], [float("nan"), 0.5], ["cell_keys[0]"]),
        ([np.nan, 1.0], [0.1, 0.2], ["counts[0]"]),
        (["a", "b"], [0.1, 0.2], ["counts"]),
        ([1, 2, 3], [0.1, 0.2], ["shape"]),
    ],
)
def test_bad_cells_name_the_first_bad_position(counts, keys, words):
    with pytest.raises(ValueError) as error:
        perturbation_table().perturb(counts, keys)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize(
    "record_keys, cells, n_cells, words",
    [
        ([0.1, 0.2, 1.0], [0, 0, 0], 1, ["record_keys[2]"]),
        ([0.1, -0.5], [0, 0], 1, ["record_keys[1]"]),
        ([0.1, 0.2, 0.3], [0, 3, 4], 3, ["cells[1]", "= 3", "-1..2"]),
        ([0.1, 0.2], [-2, 0], 3, ["cells[0]"]),
        ([0.1, 0.2], [0.0, 1.0], 3, ["cells", "whole numbers"]),
        ([0.1, 0.2], [0], 3, ["shape"]),
        ([0.1], [0], -1, ["n_cells"]),
        ([0.1], [0], 2.0, ["n_cells"]),
    ],
)
def test_bad_persons_name_the_first_bad_position(record_keys, cells, n_cells, words):
    with pytest.raises(ValueError) as error:
        cell_keys(record_keys, cells, n_cells)
    for word in words:
        assert word in str(error.value)


def test_a_short_digest_is_refused():
    with pytest.raises(ValueError, match="at least 8 bytes"):
        record_key_of(b"\x01" * 7)
