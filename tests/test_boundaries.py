"""Both sides of every threshold: the audit's minimum cell, rounded tables, weak markers, rounding.

Each case is built by hand at the threshold and one step either side, so a changed comparison
(``<`` for ``<=``, a dropped rule, a constant moved by one) makes a case fail. The oracles are
written here: the nearest multiple of the base by integer arithmetic, the least total
movement by trying every up/down choice of a small table.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from studylib.privacy.audit import audit_html
from studylib.privacy.marker import RULES, MarkerError, marker_attribute, marker_for, min_cell_problem, parse_marker
from studylib.privacy.rounding import RoundingError, controlled_rounding


def _table(count: int | str, rule: str = "suppression", min_cell: int = 5, rounding: int | None = None) -> str:
    marker = marker_attribute(marker_for(rule, min_cell, rounding, True, False))
    return f"<table{marker}><tr><th>region</th><td>{count}</td></tr></table>"


def _rules(html: str, min_cell: int = 5) -> set[str]:
    return {f.rule for f in audit_html(html, min_cell=min_cell)}


# ---------------------------------------------------------------- the audit's minimum cell


@pytest.mark.parametrize("count, flagged", [(0, False), (1, True), (4, True), (5, False), (6, False), ("1,234", False)])
def test_a_suppression_table_at_minimum_cell_5(count, flagged):
    assert (_rules(_table(count)) == {"small-count"}) is flagged
    assert _rules(_table(count)) <= {"small-count"}


@pytest.mark.parametrize("count, flagged", [(8, True), (9, True), (10, False)])
def test_a_marker_stricter_than_the_study_is_held_to_its_own_minimum(count, flagged):
    assert (_rules(_table(count, min_cell=10), min_cell=5) == {"small-count"}) is flagged


@pytest.mark.parametrize("study, count, flagged", [(3, 2, True), (3, 3, False), (7, 6, True), (7, 7, False)])
def test_the_study_minimum_cell_moves_the_threshold(study, count, flagged):
    assert (_rules(_table(count, min_cell=study), min_cell=study) == {"small-count"}) is flagged


@pytest.mark.parametrize(
    "base, count, flagged",
    [(3, 1, True), (3, 2, True), (3, 3, False), (3, 4, True), (3, 6, False),
     (5, 4, True), (5, 5, False), (5, 10, False), (5, 0, False)],
)
def test_a_rounded_table_may_show_multiples_of_its_base_only(base, count, flagged):
    html = _table(count, rule="rounding", min_cell=5, rounding=base)
    assert (_rules(html) == {"small-count"}) is flagged


def test_a_rounded_count_at_or_above_the_minimum_cell_passes_whatever_its_base():
    assert _rules(_table(7, rule="rounding", min_cell=5, rounding=3)) == set()


@pytest.mark.parametrize("marker_min, study, weak", [(4, 5, True), (5, 5, False), (6, 5, False), (2, 3, True), (3, 3, False)])
def test_a_marker_weaker_than_the_study_is_flagged(marker_min, study, weak):
    rules = _rules(_table(50, min_cell=marker_min), min_cell=study)
    assert ("weak-marker" in rules) is weak
    assert rules <= {"weak-marker"}


def test_the_small_count_finding_names_the_count_and_the_minimum():
    [finding] = audit_html(_table(4), min_cell=5)
    assert finding.rule == "small-count" and finding.detail == "4 (minimum cell 5)" and "<td>" in finding.where


# ---------------------------------------------------------------- the marker


@pytest.mark.parametrize("value, ok", [(2, True), (5, True), (1, False), (0, False), (-3, False), (2.0, False), (True, False), ("5", False)])
def test_a_minimum_cell_is_a_whole_number_of_at_least_2(value, ok):
    problem = min_cell_problem(value, "min_cell")
    assert (problem is None) is ok
    if not ok:
        assert problem == f"min_cell must be a whole number of at least 2, not {value!r}"


def test_a_marker_reads_back_as_written():
    marker = marker_for("rounding", 5, 3, False, True)
    assert marker == {"version": 1, "rule": "rounding", "min_cell": 5, "rounding": 3, "margins": False, "zeros_disclosive": True}
    attribute = marker_attribute(marker)
    assert attribute.startswith(' data-studylib-safe="') and attribute.endswith('"') and "&quot;" in attribute
    import html
    import json

    raw = attribute.split("=", 1)[1][1:-1]
    assert parse_marker(html.unescape(raw)) == marker
    assert json.loads(html.unescape(raw)) == marker
    assert marker_for("suppression", 5, None, True, False)["rounding"] is None


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{not json", "marker is not JSON"),
        ("[1, 2]", "marker is not a JSON object"),
        ('{"rule": "guess", "min_cell": 5}', f"marker rule must be one of {RULES}, not 'guess'"),
        ('{"min_cell": 5}', f"marker rule must be one of {RULES}, not None"),
        ('{"rule": "suppression", "min_cell": 1}', "marker min_cell must be a whole number of at least 2, not 1"),
        ('{"rule": "suppression"}', "marker min_cell must be a whole number of at least 2, not None"),
        ('{"rule": "rounding", "min_cell": 5, "rounding": 4}', "marker of rule 'rounding' needs base 3 or 5, not 4"),
        ('{"rule": "rounding", "min_cell": 5}', "marker of rule 'rounding' needs base 3 or 5, not None"),
    ],
)
def test_an_unreadable_marker_says_what_is_wrong(raw, message):
    with pytest.raises(MarkerError) as caught:
        parse_marker(raw)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("rule, rounding", [("suppression", None), ("statistics", None), ("rounding", 3), ("rounding", 5)])
def test_every_rule_reads(rule, rounding):
    assert parse_marker({"rule": rule, "min_cell": 5, "rounding": rounding})["rule"] == rule


# ---------------------------------------------------------------- controlled rounding


def _nearest(value: int, base: int) -> int:
    """The nearest multiple of ``base`` (halves up), by integer arithmetic."""
    low = value - value % base
    return low + base if 2 * (value - low) >= base else low


@pytest.mark.parametrize("base", [3, 5])
def test_rounding_without_margins_goes_to_the_nearest_multiple(base):
    values = np.arange(0, 23)
    got = controlled_rounding(values, base, margins=False)
    assert got.tolist() == [_nearest(int(v), base) for v in values]
    assert got.dtype.kind == "i"


def test_rounding_gives_whole_numbers_for_float_counts():
    got = controlled_rounding(np.array([[7.0, 4.0], [2.0, 11.0]]), 3, margins=False)
    assert got.dtype.kind == "i" and got.tolist() == [[6, 3], [3, 12]]


@pytest.mark.parametrize("base", [0, 1, 2, 4, 10, None])
def test_only_bases_3_and_5(base):
    with pytest.raises(RoundingError, match=rf"rounding base must be one of \(3, 5\), not {base!r}"):
        controlled_rounding(np.array([1, 2]), base)


def _with_totals(inner: np.ndarray) -> np.ndarray:
    full = inner
    for axis in range(inner.ndim):
        full = np.concatenate([full, full.sum(axis=axis, keepdims=True)], axis=axis)
    return full


def _additive(table: np.ndarray) -> bool:
    return all(
        np.array_equal(np.take(table, range(table.shape[a] - 1), axis=a).sum(axis=a), np.take(table, -1, axis=a))
        for a in range(table.ndim)
    )


def _least_movement(table: np.ndarray, base: int) -> int:
    """The least total movement of any zero-restricted additive rounding, by trying every choice."""
    low = table - table % base
    free = np.flatnonzero(table.ravel() % base)
    best = None
    for ups in itertools.product((0, 1), repeat=len(free)):
        candidate = low.ravel().copy()
        candidate[free] += base * np.array(ups, dtype=np.int64)
        candidate = candidate.reshape(table.shape)
        if _additive(candidate):
            moved = int(np.abs(candidate - table).sum())
            best = moved if best is None else min(best, moved)
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("base", [3, 5])
def test_controlled_rounding_moves_counts_least_and_keeps_margins(seed, base):
    rng = np.random.default_rng(seed)
    table = _with_totals(rng.integers(0, 9, size=(2, 3)))
    got = controlled_rounding(table, base)
    assert (got % base == 0).all() and _additive(got)
    assert (np.abs(got - table) < base).all()
    assert ((table % base != 0) | (got == table)).all(), "multiples stay"
    assert int(np.abs(got - table).sum()) == _least_movement(table, base)


def test_a_table_of_multiples_is_returned_as_it_is():
    table = _with_totals(np.array([[3, 6], [0, 9]]))
    got = controlled_rounding(table, 3)
    assert np.array_equal(got, table) and got is not table


# a 3x3x3 table whose rounding problem, relaxed to fractions, has a fractional optimum: only an
# integer programme gives an additive rounding (found by search; base 3)
_FRACTIONAL_TABLE = np.array(
    [[[4, 3, 1], [7, 8, 7], [4, 8, 9]], [[4, 1, 2], [6, 9, 4], [8, 1, 1]], [[4, 2, 3], [6, 9, 8], [2, 9, 0]]]
)


def test_a_3d_table_whose_relaxed_rounding_is_fractional_is_still_rounded_additively():
    table = _with_totals(_FRACTIONAL_TABLE)
    got = controlled_rounding(table, 3)
    assert (got % 3 == 0).all() and _additive(got) and (np.abs(got - table) < 3).all()
    assert ((table % 3 != 0) | (got == table)).all()


def test_the_minimum_cell_check_names_min_cell_by_default():
    assert min_cell_problem(1) == "min_cell must be a whole number of at least 2, not 1"


def test_a_marker_keeps_its_margins_and_is_written_with_sorted_keys():
    assert marker_for("suppression", 5, None, True, False)["margins"] is True
    assert marker_for("suppression", 5, None, False, False)["margins"] is False
    # sorted keys: the same marker always gives the same bytes (reports are byte-reproducible)
    assert marker_attribute({"rule": "suppression", "min_cell": 5}) == \
        ' data-studylib-safe="{&quot;min_cell&quot;: 5, &quot;rule&quot;: &quot;suppression&quot;}"'
