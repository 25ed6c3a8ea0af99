"""The release attacker and planner (studylib.privacy.release) against a reader written here.

The oracle below is written from the definitions alone (issue 11): it builds its own person
profiles from the ledger (each table's cell per person), writes one constraint per published
cell (Totals included, over every profile the cell counts; a rounded cell within base - 1 of
its published value), and bounds every target with its own pair of scipy linprog
programmes. It imports nothing of studylib.privacy.release but the two dataclasses that
carry the ledger.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from studylib.privacy.disclosure import DisclosureError, apply_suppression, attack, protect_table
from studylib.privacy.rounding import RoundingError
from studylib.privacy.release import (
    CountedTable,
    Release,
    ReleaseError,
    attack_release,
    protect_release,
)

# --------------------------------------------------------------------------------------
# the oracle: a reader holding every table of the release


def _full_shape(table):
    return tuple(n + 1 for n in table.shape) if table.margins else tuple(table.shape)


def _oracle_counts(table, persons):
    counts = np.zeros(_full_shape(table), dtype=np.int64)
    for i in range(persons):
        c = int(table.cell[i])
        if c < 0:
            continue
        coords = np.unravel_index(c, table.shape)
        k = len(coords)
        for mask in range(2**k if table.margins else 1):
            counts[tuple(table.shape[a] if mask >> a & 1 else coords[a] for a in range(k))] += 1
    return counts


def _in_cell(table, inner: int, full: int) -> bool:
    """Does a person in inner cell ``inner`` count in published cell ``full``?"""
    if inner < 0:
        return False
    ci = np.unravel_index(inner, table.shape)
    cf = np.unravel_index(full, _full_shape(table))
    return all(f == i or (table.margins and f == table.shape[a]) for a, (i, f) in enumerate(zip(ci, cf)))


def _label(table, full: int) -> tuple:
    coords = np.unravel_index(full, _full_shape(table))
    out = []
    for a, i in enumerate(coords):
        if table.margins and i == table.shape[a]:
            out.append("Total")
        else:
            out.append(table.labels[a][i] if table.labels is not None else int(i))
    return tuple(out)


def _own_min_cell(release: Release, table) -> int:
    """The minimum cell a table is judged by: its own, else the release's."""
    return release.min_cell if table.min_cell is None else table.min_cell


def oracle(release: Release, only: tuple | None = None) -> dict:
    """(table, cell, kind, other) -> (count, lower, upper, safe), from the ledger alone. Each
    table's cells are judged by its own minimum cell, a difference by the stricter table's.
    ``only``: the one target of that key (its linear programmes alone are solved)."""
    tables, persons = release.tables, release.persons
    low = 0 if release.zeros_disclosive else 1
    profiles: dict[tuple, int] = {}
    for i in range(persons):
        key = tuple(int(t.cell[i]) for t in tables)
        if any(c >= 0 for c in key):
            profiles[key] = profiles.get(key, 0) + 1
    keys = sorted(profiles)
    weight = np.array([profiles[k] for k in keys], dtype=float)
    n = len(keys)

    def members(t, full):
        return np.array([_in_cell(tables[t], k[t], full) for k in keys], dtype=float)

    a_eq, b_eq, a_ub, b_ub = [], [], [], []
    for t, table in enumerate(tables):
        for full in range(math.prod(_full_shape(table))):
            if table.hidden.flat[full]:
                continue
            row = members(t, full)
            if table.rounding is None:
                a_eq.append(row)
                b_eq.append(row @ weight)
            else:
                shown = float(table.published.flat[full])
                a_ub.extend([row, -row])
                b_ub.extend([shown + table.rounding - 1, -max(shown - (table.rounding - 1), 0.0)])

    def bounds(form):
        if not form.any():
            return 0.0, 0.0
        kwargs = dict(
            A_eq=np.array(a_eq) if a_eq else None, b_eq=np.array(b_eq) if b_eq else None,
            A_ub=np.array(a_ub) if a_ub else None, b_ub=np.array(b_ub) if b_ub else None,
            bounds=[(0, None)] * n, method="highs",
        )
        lo = linprog(form, **kwargs)
        hi = linprog(-form, **kwargs)
        assert lo.status == 0 and hi.status in (0, 3)
        upper = np.inf if hi.status == 3 else math.floor(-hi.fun + 1e-6)
        return float(math.ceil(lo.fun - 1e-6)), float(upper)

    out = {}
    for t, table in enumerate(tables):
        m = _own_min_cell(release, table)
        counts = _oracle_counts(table, persons)
        for full in range(math.prod(_full_shape(table))):
            hidden = bool(table.hidden.flat[full])
            truth = int(counts.flat[full])
            if hidden and table.id in release.frozen and not low <= truth <= m - 1:
                continue  # published earlier and not small: knowing it tells nothing about anyone
            if hidden:
                kind = "hidden"
            elif table.rounding is not None and table.published.flat[full] - (table.rounding - 1) <= m - 1:
                kind = "rounded"
            else:
                continue
            key = (table.id, _label(table, full), kind, "")
            if only is not None and key != only:
                continue
            lo, hi = bounds(members(t, full))
            inside = lo >= low and hi <= m - 1
            point = kind == "hidden" and lo == hi and (truth > 0 or release.zeros_disclosive)
            out[key] = (truth, lo, hi, not (inside or point))
    if only is not None and only[2] != "difference":
        return out
    for a, ta in enumerate(tables):
        for b, tb in enumerate(tables):
            if a == b:
                continue
            in_a = np.array([k[a] >= 0 for k in keys])
            in_b = np.array([k[b] >= 0 for k in keys])
            if not (in_a & in_b).any() or not (in_a ^ in_b).any():
                continue
            m = max(_own_min_cell(release, ta), _own_min_cell(release, tb))
            for inner in range(math.prod(ta.shape)):
                cell = np.array([k[a] == inner for k in keys])
                form = (cell & ~in_b).astype(float)
                part, whole = form @ weight, cell @ weight
                if not 0 < part < whole:
                    continue
                full = int(np.ravel_multi_index(np.unravel_index(inner, ta.shape), _full_shape(ta)))
                key = (ta.id, _label(ta, full), "difference", tb.id)
                if only is not None and key != only:
                    continue
                lo, hi = bounds(form)
                inside = lo >= low and hi <= m - 1
                out[key] = (int(part), lo, hi, not inside)
    return out


def found(frame: pd.DataFrame) -> dict:
    return {
        (r.table, tuple(r.cell), r.kind, r.other): (int(r.count), float(r.lower), float(r.upper), bool(r.safe))
        for r in frame.itertuples()
    }


def unsafe(bounds: dict) -> set:
    return {key for key, value in bounds.items() if not value[3]}


# --------------------------------------------------------------------------------------
# building releases from persons


def table_from(id, dims, persons_frame, sizes, *, keep=None, margins=True, hidden=None, rounding=None,
               published=None, report="", min_cell=None):
    """A CountedTable of the persons in ``keep`` by the columns ``dims`` (``min_cell``: its own)."""
    shape = tuple(sizes[d] for d in dims)
    cell = np.ravel_multi_index([persons_frame[d].to_numpy() for d in dims], shape).astype(np.int64)
    if keep is not None:
        cell = np.where(keep, cell, -1)
    full = tuple(n + 1 for n in shape) if margins else shape
    if hidden is None:
        hidden = np.zeros(full, dtype=bool)
    labels = tuple(tuple(f"{d}{i}" for i in range(sizes[d])) for d in dims)
    return CountedTable(id, shape, margins, cell, np.asarray(hidden, dtype=bool), rounding, published, labels, report,
                        min_cell=min_cell)


def protected(table: CountedTable, min_cell: int, rounding: int | None = None) -> CountedTable:
    """The table as protect_table protects it alone."""
    inner = np.bincount(table.cell[table.cell >= 0], minlength=math.prod(table.shape)).reshape(table.shape)
    if len(table.shape) == 1:
        frame = pd.Series(inner, index=pd.Index(table.labels[0], name="d0"))
    else:
        index = pd.MultiIndex.from_product(table.labels, names=[f"d{i}" for i in range(len(table.shape))])
        frame = pd.Series(inner.ravel(), index=index)
    result = protect_table(frame, min_cell=min_cell, margins=table.margins, rounding=rounding)
    hidden = result._hidden.reshape(table.full_shape)
    published = result._published.reshape(table.full_shape) if rounding else None
    return CountedTable(table.id, table.shape, table.margins, table.cell, hidden, rounding, published,
                        table.labels, table.report, min_cell=table.min_cell)


def persons_of(rows: list[tuple]) -> pd.DataFrame:
    """Persons from (count, attribute values...) rows."""
    records = [values for count, *values in rows for _ in range(count)]
    return pd.DataFrame(records)


# --------------------------------------------------------------------------------------
# the interface


def test_counts_and_labels():
    frame = pd.DataFrame({"s": [0, 0, 1, 2, 2, 2], "r": [0, 1, 1, 0, 0, 1]})
    table = table_from("t", ["s", "r"], frame, {"s": 3, "r": 2}, keep=np.array([1, 1, 1, 1, 1, 0], bool))
    counts = table.counts()
    assert counts.shape == (4, 3)
    assert counts.tolist() == [[1, 1, 2], [0, 1, 1], [2, 0, 2], [3, 2, 5]]
    assert np.array_equal(counts, _oracle_counts(table, 6))
    assert table.cell_label(table.cell_flat(("s2", "Total"))) == ("s2", "Total")


def test_bad_ledgers_are_refused_with_the_table_named():
    cell = np.array([0, 1, 5])
    with pytest.raises(ReleaseError, match=r"table 'a#1' of report 'a'.*person 2 has cell 5"):
        CountedTable("a#1", (2, 2), True, cell, np.zeros((3, 3), bool), report="a")
    with pytest.raises(ReleaseError, match="hidden must be a boolean array of shape"):
        CountedTable("a#1", (2,), True, np.array([0, 1]), np.zeros(2, bool))
    with pytest.raises(ReleaseError, match="needs its published"):
        CountedTable("a#1", (2,), True, np.array([0, 1]), np.zeros(3, bool), rounding=3)
    with pytest.raises(ReleaseError, match=r"published cell \(1,\) is 7.*not a rounding to base 3"):
        CountedTable("a#1", (2,), True, np.array([0, 1]), np.zeros(3, bool), rounding=3, published=np.array([0, 7, 3]))
    t = CountedTable("x", (2,), True, np.array([0, 1]), np.zeros(3, bool))
    with pytest.raises(ReleaseError, match="has a cell for 2 persons, the release has 3"):
        Release(3, (t,))
    with pytest.raises(ReleaseError, match="used more than once"):
        Release(2, (t, t))
    with pytest.raises(ReleaseError, match="does not hold"):
        protect_release(Release(2, (t,)), frozen={"y": np.zeros(3, bool)})


# --------------------------------------------------------------------------------------
# one table alone: the same bounds as studylib.privacy.disclosure.attack


def members(table, flat) -> frozenset:
    """The persons in one cell (Totals included) of a table, from its cell array alone."""
    coords = np.unravel_index(int(flat), table.full_shape)
    inner = np.unravel_index(np.maximum(table.cell, 0), table.shape)
    inside = table.cell >= 0
    for axis, i in enumerate(coords):
        if not (table.margins and i == table.shape[axis]):
            inside &= inner[axis] == i
    return frozenset(np.flatnonzero(inside).tolist())


@settings(max_examples=15, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    persons=st.integers(1, 60),
    seed=st.integers(0, 2**32 - 1),
    min_cell=st.sampled_from([3, 5]),
    rounding=st.sampled_from([None, None, 3]),
)
def test_one_table_alone_matches_the_table_attacker(shape, persons, seed, min_cell, rounding):
    rng = np.random.default_rng(seed)
    size = math.prod(shape)
    cell = rng.choice(size, persons, p=rng.dirichlet(np.ones(size)))
    sizes = {f"d{i}": n for i, n in enumerate(shape)}
    frame = pd.DataFrame(np.array(np.unravel_index(cell, shape)).T, columns=list(sizes))
    table = table_from("t", list(sizes), frame, sizes)
    try:
        table = protected(table, min_cell, rounding)
    except (DisclosureError, RoundingError):
        return  # rounding could not protect this table; protect_table refuses it
    inner = np.bincount(cell, minlength=size).reshape(shape)
    series = pd.Series(inner.ravel(), index=pd.MultiIndex.from_product(table.labels)) if len(shape) > 1 else \
        pd.Series(inner, index=pd.Index(table.labels[0]))
    if rounding is None:
        reference = attack(apply_suppression(series, _suppressed_frame(series, table), min_cell=min_cell), exact=True)
    else:
        reference = attack(protect_table(series, min_cell=min_cell, rounding=rounding), exact=True)
    ours = attack_release(Release(persons, (table,), min_cell=min_cell), exact=True)
    ours = ours.set_index("cell")
    # an empty cell that is not published exactly is known empty here (no profile holds it)
    unknown = table.hidden[tuple(slice(0, n) for n in shape)] | (rounding is not None)
    hidden_zero = (unknown & (inner == 0)).any()
    assert len(ours) == len(reference)
    for label, row in reference.iterrows():
        label = label if isinstance(label, tuple) else (label,)
        mine = ours.loc[[label]].iloc[0]
        assert mine["count"] == row["count"]
        if hidden_zero:  # an empty hidden cell is known empty here: bounds can only be narrower
            assert row["lower"] <= mine["lower"] and mine["upper"] <= row["upper"]
        else:
            assert (mine["lower"], mine["upper"]) == (row["lower"], row["upper"])
            assert mine["safe"] == row["safe"]


def _suppressed_frame(series: pd.Series, table: CountedTable):
    labels = tuple(level + ("Total",) for level in table.labels)
    if len(labels) == 1:
        return pd.Series(table.hidden, index=pd.Index(labels[0]))
    if len(labels) == 2:
        return pd.DataFrame(table.hidden, index=pd.Index(labels[0]), columns=pd.Index(labels[1]))
    index = pd.MultiIndex.from_product(labels[:-1])
    return pd.DataFrame(table.hidden.reshape(-1, table.hidden.shape[-1]), index=index, columns=pd.Index(labels[-1]))


# --------------------------------------------------------------------------------------
# hand-built cases, each on both sides of the threshold


def _nation_release(in_region_of_sector1: int):
    # sector 0..2, region 0..1; region 1 is left out of the second table
    frame = persons_of([(40, 0, 0), (9, 0, 1), (30, 1, 0), (in_region_of_sector1, 1, 1), (25, 2, 0), (6, 2, 1)])
    frame.columns = ["sector", "region"]
    sizes = {"sector": 3, "region": 2}
    nation = table_from("nation#1", ["sector"], frame, sizes, report="nation")
    without = table_from("rest#1", ["sector"], frame, sizes, keep=(frame.region != 1).to_numpy(), report="rest")
    return Release(len(frame), (nation, without))


def test_nation_against_nation_without_a_region_difference_3_is_protected():
    release = _nation_release(3)
    bounds = found(attack_release(release))
    key = ("nation#1", ("sector1",), "difference", "rest#1")
    assert bounds[key][:3] == (3, 3.0, 3.0) and not bounds[key][3]
    assert unsafe(bounds) == unsafe(oracle(release)) == {key}
    plan = protect_release(release)
    assert plan.refused == [] and plan.added
    after = plan.apply(release)
    assert not unsafe(oracle(after))
    assert not unsafe(found(attack_release(after)))
    # the plan replays through protect_table(hide=) with the same masks
    for table in after.tables:
        inner = table.counts()[:-1]
        series = pd.Series(inner, index=pd.Index(table.labels[0]))
        hide = pd.Series(table.hidden, index=pd.Index(table.labels[0] + ("Total",)))
        assert np.array_equal(protect_table(series, hide=hide)._hidden, table.hidden)


def test_nation_against_nation_without_a_region_difference_5_changes_nothing():
    release = _nation_release(5)
    bounds = found(attack_release(release, exact=True))
    assert bounds == oracle(release)
    assert not unsafe(bounds)
    plan = protect_release(release)
    assert (plan.hidden, plan.added, plan.refused, plan.rounds) == ({}, {}, [], 1)


def _period_release(new_in_sector0: int):
    # year 0 = 2015-2023, year 1 = 2024
    frame = persons_of([(20, 0, 0), (new_in_sector0, 0, 1), (14, 1, 0), (6, 1, 1), (11, 2, 0), (7, 2, 1)])
    frame.columns = ["sector", "year"]
    sizes = {"sector": 3, "year": 2}
    old = table_from("old#1", ["sector"], frame, sizes, keep=(frame.year == 0).to_numpy(), report="2015-2023")
    new = table_from("new#1", ["sector"], frame, sizes, report="2015-2024")
    return Release(len(frame), (old, new))


def test_a_frozen_earlier_table_never_changes_the_new_one_is_protected():
    release = _period_release(2)
    key = ("new#1", ("sector0",), "difference", "old#1")
    assert unsafe(oracle(release)) == {key}
    old_mask = release.table("old#1").hidden.copy()
    plan = protect_release(release, frozen={"old#1": old_mask})
    assert "old#1" not in plan.hidden and set(plan.added) == {"new#1"}
    assert plan.refused == []
    after = plan.apply(release)
    assert np.array_equal(after.table("old#1").hidden, old_mask)
    assert not unsafe(oracle(after))
    # unfrozen, the planner hides the smallest cell the proof uses: in the old table
    free = protect_release(release)
    assert "old#1" in free.hidden
    assert not unsafe(oracle(free.apply(release)))


def test_a_frozen_pair_that_exposes_a_cell_is_refused_naming_both_tables():
    release = _period_release(2)
    plan = protect_release(release, frozen={t.id: t.hidden for t in release.tables})
    assert plan.hidden == {} and len(plan.refused) == 1
    message = plan.refused[0]
    assert "'new#1' (2015-2024)" in message and "'old#1' (2015-2023)" in message and "sector0" in message


def test_a_frozen_table_beside_a_new_one_of_5_changes_nothing():
    release = _period_release(5)
    assert not unsafe(oracle(release))
    plan = protect_release(release, frozen={"old#1": release.table("old#1").hidden})
    assert (plan.hidden, plan.refused) == ({}, [])


def _statistics_release(column_counts_pending: bool):
    # sector x decision (identified, not identified, pending); pending is small
    frame = persons_of([
        (12, 0, 0), (9, 0, 1), (4, 0, 2),
        (15, 1, 0), (11, 1, 1), (2, 1, 2),
        (8, 2, 0), (13, 2, 1), (3, 2, 2),
        (10, 3, 0), (7, 3, 1), (4, 3, 2),
    ])
    frame.columns = ["sector", "decision"]
    sizes = {"sector": 4, "decision": 3}
    table = protected(table_from("review#1", ["sector", "decision"], frame, sizes, report="review"), 5)
    keep = None if column_counts_pending else (frame.decision != 2).to_numpy()
    column = table_from("review#2", ["sector"], frame, sizes, keep=keep, margins=False, report="review")
    return Release(len(frame), (table, column))


def test_a_statistics_count_column_that_recovers_hidden_pending_is_protected():
    release = _statistics_release(column_counts_pending=False)
    bounds = found(attack_release(release))
    exposed = unsafe(bounds)
    assert exposed == unsafe(oracle(release))
    pending = {("review#1", (f"sector{s}", "decision2"), "hidden", "") for s in range(4)}
    assert pending <= exposed
    assert all(bounds[k][1] == bounds[k][2] == bounds[k][0] for k in pending)  # 4, 2, 3, 4 exactly
    plan = protect_release(release)
    assert plan.refused == []
    after = plan.apply(release)
    assert not unsafe(oracle(after))
    # every table stays safe alone
    table = after.table("review#1")
    alone = found(attack_release(Release(release.persons, (table,))))
    assert not unsafe(alone)


def test_a_count_column_that_repeats_the_row_totals_changes_nothing():
    release = _statistics_release(column_counts_pending=True)
    assert not unsafe(oracle(release))
    plan = protect_release(release)
    assert plan.hidden == {} and plan.rounds == 1


def _given_away_release(hide_count: bool):
    # one sector by sex (a Total of 30), and a count of the same persons; the count is hidden
    # as a report's own protection or a plan would hide it, or shown
    frame = persons_of([(12, 0, 0), (18, 0, 1)])
    frame.columns = ["sector", "sex"]
    sizes = {"sector": 1, "sex": 2}
    by_sex = table_from("study#1", ["sex"], frame, sizes, report="study")
    count = table_from("study#2", ["sector"], frame, sizes, margins=False, hidden=np.array([hide_count]),
                       report="study")
    return Release(len(frame), (by_sex, count))


def test_a_large_hidden_cell_the_other_tables_give_away_is_shown_not_protected_with_more_cells():
    release = _given_away_release(hide_count=True)
    key = ("study#2", ("sector0",), "hidden", "")
    exposed = oracle(release)
    assert exposed[key] == (30, 30.0, 30.0, False)  # the Total of study#1 pins it: hiding it protects nothing
    plan = protect_release(release)
    assert plan.refused == []
    # showing it tells the reader nothing new; hiding more (the Total, then the sexes) would
    # have lost the whole table for a count every reader already has
    assert set(plan.hidden) == {"study#2"} and not plan.hidden["study#2"].any()
    assert plan.shown == {"study#2": [("sector0",)]} and plan.added == {"study#2": []}
    after = plan.apply(release)
    assert not after.table("study#1").hidden.any()
    assert not unsafe(oracle(after))
    # the other side: nothing hidden, nothing to change
    assert protect_release(_given_away_release(hide_count=False)).hidden == {}


def test_a_small_hidden_cell_the_other_tables_give_away_is_never_shown():
    # the same shape with 3 persons in the count: exposed, and a primary cell; the plan must hide
    frame = persons_of([(3, 0, 0), (18, 0, 1)])
    frame.columns = ["sector", "sex"]
    sizes = {"sector": 1, "sex": 2}
    by_sex = protected(table_from("study#1", ["sex"], frame, sizes, report="study"), 5)
    count = table_from("study#2", ["sex"], frame, sizes, margins=False, keep=(frame.sex == 0).to_numpy(),
                       hidden=np.array([True, False]), report="study")
    release = Release(len(frame), (by_sex, count))
    plan = protect_release(release)
    after = plan.apply(release)
    assert after.table("study#2").hidden[0] and after.table("study#1").hidden[0]
    assert plan.shown == {} or all(not cells for cells in plan.shown.values())
    assert not unsafe(oracle(after))


def test_a_large_hidden_cell_of_a_frozen_table_that_the_release_pins_is_left_as_published():
    # last year's count hid its 30 (as a secondary); this year's table by sex has the Total 30.
    # The old table cannot change and knowing 30 harms nobody: nothing is hidden for it.
    release = _given_away_release(hide_count=True)
    plan = protect_release(release, frozen={"study#2": np.array([True])})
    assert plan.hidden == {} and plan.refused == []
    after = plan.apply(release)
    assert after.frozen == {"study#2"}
    assert found(attack_release(after)) == oracle(after) and not unsafe(oracle(after))
    # a small frozen cell that the new table pins is still protected (the new table changes)
    frame = persons_of([(3, 0, 0), (18, 0, 1)])
    frame.columns = ["sector", "sex"]
    sizes = {"sector": 1, "sex": 2}
    by_sex = table_from("study#1", ["sex"], frame, sizes, report="study")
    old = table_from("old#1", ["sex"], frame, sizes, margins=False, keep=(frame.sex == 0).to_numpy(),
                     hidden=np.array([True, False]), report="old")
    release = Release(len(frame), (by_sex, old))
    plan = protect_release(release, frozen={"old#1": old.hidden})
    assert "study#1" in plan.hidden and plan.hidden["study#1"][0]
    assert not unsafe(oracle(plan.apply(release)))


def _rounded_release(published_small: int):
    # sector 0..3; an exact table hides the two small sectors, a rounded one publishes them rounded to 3
    frame = persons_of([(2, 0), (3, 1), (50, 2), (60, 3)])
    frame.columns = ["sector"]
    sizes = {"sector": 4}
    exact = table_from("exact#1", ["sector"], frame, sizes, hidden=np.array([1, 1, 0, 0, 0], bool))
    shown = np.array([published_small, 3, 51, 60, published_small + 114])
    rounded = table_from("rounded#1", ["sector"], frame, sizes, rounding=3, published=shown)
    return Release(len(frame), (exact, rounded))


def test_rounded_and_exact_tables_of_the_same_persons_narrow_a_cell_and_are_protected():
    release = _rounded_release(3)  # 2 published as 3: 1..5, with 2 + 3 = 5 from the exact table: 1..4
    bounds = found(attack_release(release, exact=True))
    assert bounds == oracle(release)
    key = ("exact#1", ("sector0",), "hidden", "")
    assert bounds[key] == (2, 1.0, 4.0, False)
    plan = protect_release(release)
    assert plan.refused == []
    assert not unsafe(oracle(plan.apply(release)))


def test_rounded_to_zero_beside_the_exact_table_is_safe():
    release = _rounded_release(0)  # 2 published as 0: 0..2, so the other one is 3..5
    bounds = found(attack_release(release, exact=True))
    assert bounds == oracle(release)
    assert bounds[("exact#1", ("sector0",), "hidden", "")][1:] == (0.0, 2.0, True)
    assert bounds[("exact#1", ("sector1",), "hidden", "")][1:] == (3.0, 5.0, True)
    assert protect_release(release).hidden == {}


def test_tables_that_share_no_person_are_attacked_apart_and_a_table_of_nobody_is_safe():
    frame = persons_of([(3, 0, 0), (9, 1, 0), (7, 0, 1), (8, 1, 1)])
    frame.columns = ["sector", "region"]
    sizes = {"sector": 2, "region": 2}
    a = table_from("a", ["sector"], frame, sizes, keep=(frame.region == 0).to_numpy(), hidden=np.array([1, 1, 0], bool))
    b = table_from("b", ["sector"], frame, sizes, keep=(frame.region == 1).to_numpy())
    nobody = table_from("c", ["sector"], frame, sizes, keep=np.zeros(len(frame), bool), hidden=np.array([1, 1, 1], bool))
    release = Release(len(frame), (a, b, nobody))
    assert found(attack_release(release, exact=True)) == oracle(release)


# --------------------------------------------------------------------------------------
# every table judged by its own minimum cell: regional briefs at 10 beside national reports at 5


def _brief_beside_nation(brief: int | None, nation: int | None, rounded: int | None = 5, default: int = 5) -> Release:
    """7 and 20 persons in two sectors. A brief and a national table both hide the two sectors
    (the Total 27 shown); a national table rounded to 3 shows 8 and 21: the reader gets 6..8 for
    sector 0 and 19..21 for sector 1 in both. The arguments are the tables' own minimum cells."""
    frame = persons_of([(3, 0, 0), (4, 0, 1), (9, 1, 0), (11, 1, 1)])
    frame.columns = ["sector", "sex"]
    sizes = {"sector": 2, "sex": 2}
    both = np.array([1, 1, 0], bool)
    tables = (
        table_from("brief#1", ["sector"], frame, sizes, hidden=both, report="brief", min_cell=brief),
        table_from("nation#1", ["sector"], frame, sizes, hidden=both, report="nation", min_cell=nation),
        table_from("nation#2", ["sector"], frame, sizes, rounding=3, published=np.array([8, 21, 27]), report="nation",
                   min_cell=rounded),
    )
    return Release(len(frame), tables, min_cell=default)


def test_a_hidden_cell_narrowed_to_6_8_is_unsafe_in_a_table_of_10_and_safe_in_one_of_5():
    release = _brief_beside_nation(brief=10, nation=5)
    verdict = attack_release(release, exact=True)
    bounds = found(verdict)
    assert bounds == oracle(release)
    brief, nation = ("brief#1", ("sector0",), "hidden", ""), ("nation#1", ("sector0",), "hidden", "")
    assert bounds[brief] == (7, 6.0, 8.0, False)  # 6..8 is inside 1..9
    assert bounds[nation] == (7, 6.0, 8.0, True)  # and not inside 1..4
    assert unsafe(bounds) == {brief}
    rule = {(r.table, tuple(r.cell)): r.min_cell for r in verdict.itertuples()}
    assert rule[("brief#1", ("sector0",))] == 10 and rule[("nation#1", ("sector0",))] == 5
    # the rounded table at 5 has no small cell (8 - 2 > 4); at 10 its 8 is one (6..8), and exposed
    assert not any(kind == "rounded" for _, _, kind, _ in bounds)
    strict = _brief_beside_nation(brief=10, nation=5, rounded=10)
    assert unsafe(found(attack_release(strict))) == unsafe(oracle(strict)) == {brief, ("nation#2", ("sector0",), "rounded", "")}


def test_a_national_table_of_5_beside_a_brief_of_10_is_judged_at_5_not_the_release_s_10():
    # the runner builds the release with the batch's strictest minimum cell as the default
    release = _brief_beside_nation(brief=None, nation=5, rounded=5, default=10)
    verdict = attack_release(release)
    judged = {(r.table, tuple(r.cell)): (r.min_cell, r.safe) for r in verdict.itertuples()}
    assert judged[("nation#1", ("sector0",))] == (5, True)
    assert judged[("brief#1", ("sector0",))] == (10, False)  # the brief takes the release's
    assert unsafe(found(verdict)) == unsafe(oracle(release))
    # a table that gives no minimum cell of its own is judged by the release's
    by_default = attack_release(_brief_beside_nation(brief=None, nation=None, rounded=5, default=10))
    assert not by_default[by_default["table"] == "nation#1"]["safe"].all()


def test_a_table_s_own_minimum_cell_is_checked_naming_the_table():
    with pytest.raises(ReleaseError, match=r"table 'brief#1' \(brief\): min_cell must be a whole number of at least 2"):
        CountedTable("brief#1", (2,), True, np.array([0, 1]), np.zeros(3, bool), report="brief", min_cell=1)
    table = CountedTable("t", (2,), True, np.array([0, 1]), np.zeros(3, bool))
    release = Release(2, (table, replace(table, id="u", min_cell=10)), min_cell=5)
    assert [release.min_cell_of(t) for t in release.tables] == [5, 10]


def test_a_difference_of_a_table_of_5_and_one_of_10_is_judged_at_10():
    # region 1 holds 9, 7 and 6 of the three sectors: the nation less the rest gives them exactly
    key = ("nation#1", ("sector1",), "difference", "rest#1")
    national = _nation_release(7)
    assert not unsafe(oracle(national)) and not unsafe(found(attack_release(national)))  # 7 is not under 5
    for nation, rest in ((5, 10), (10, 5)):  # whichever of the two is the stricter
        nation_table, rest_table = national.tables
        release = replace(national, tables=(replace(nation_table, min_cell=nation), replace(rest_table, min_cell=rest)))
        verdict = attack_release(release)
        bounds = found(verdict)
        assert bounds[key] == (7, 7.0, 7.0, False), (nation, rest)
        assert unsafe(bounds) == unsafe(oracle(release))
        assert set(verdict[verdict["kind"] == "difference"]["min_cell"]) == {10}


def _regions_release(nation: int | None, rest: int | None, brief: int | None, default: int = 5) -> Release:
    """The nation and the nation without region 1 by sector (their difference: region 1's 9, 3
    and 6), and a brief of region 1 by sex (7 and 11) protected alone at 10."""
    frame = persons_of([(40, 0, 0, 0), (4, 0, 1, 0), (5, 0, 1, 1), (30, 1, 0, 1), (1, 1, 1, 0), (2, 1, 1, 1),
                        (25, 2, 0, 0), (2, 2, 1, 0), (4, 2, 1, 1)])
    frame.columns = ["sector", "region", "sex"]
    sizes = {"sector": 3, "region": 2, "sex": 2}
    in_region = (frame.region == 1).to_numpy()
    tables = (
        table_from("nation#1", ["sector"], frame, sizes, report="nation", min_cell=nation),
        table_from("rest#1", ["sector"], frame, sizes, keep=~in_region, report="rest", min_cell=rest),
        protected(table_from("brief#1", ["sex"], frame, sizes, keep=in_region, report="brief", min_cell=brief), 10),
    )
    return Release(len(frame), tables, min_cell=default)


def test_protecting_a_mixed_release_hides_in_the_tables_of_5_only_what_a_release_of_5_would():
    mixed = _regions_release(nation=5, rest=5, brief=10)
    assert mixed.table("brief#1").hidden[:2].all()  # 7 and 11 hidden by its own rule
    plan = protect_release(mixed)
    assert plan.refused == []
    after = plan.apply(mixed)
    assert bool(attack_release(after, exact=True)["safe"].all()) and not unsafe(oracle(after))
    national = ("nation#1", "rest#1")
    at_5 = protect_release(_regions_release(nation=5, rest=5, brief=5))
    for table_id in national:
        assert np.array_equal(after.table(table_id).hidden, at_5.apply(mixed).table(table_id).hidden), table_id
    assert plan.added == at_5.added == {"rest#1": [("sector1",), ("sector2",)]}
    # judged at the release's 10, as when one minimum cell held for every table, the national
    # tables would hide region 1's 9 too
    at_10 = protect_release(_regions_release(nation=None, rest=None, brief=None, default=10))
    assert at_10.added == {"rest#1": [("sector0",), ("sector1",), ("sector2",)]}


def test_a_table_of_5_the_plan_changes_gets_its_secondary_suppression_at_5_not_the_release_s_10():
    # sector by sex for the nation and for region 0 alone (6 persons, nearly all hidden): the
    # two give the nation's 2 in (sector1, sex2) exactly. The runner's release has the batch's
    # strictest minimum cell, 10, as its default; both tables are judged and protected at 5.
    frame = persons_of([(1, 0, 1, 0), (1, 0, 2, 0), (3, 1, 0, 0), (1, 1, 2, 0),
                        (11, 0, 0, 1), (1, 0, 1, 1), (1, 0, 2, 1), (17, 1, 0, 1), (1, 1, 2, 1)])
    frame.columns = ["sector", "sex", "region"]
    sizes = {"sector": 2, "sex": 3, "region": 2}
    nation = protected(table_from("nation#1", ["sector", "sex"], frame, sizes, report="nation", min_cell=5), 5)
    rest = protected(table_from("rest#1", ["sector", "sex"], frame, sizes, keep=(frame.region == 0).to_numpy(),
                                report="rest", min_cell=5), 5)
    release = Release(len(frame), (nation, rest), min_cell=10)
    assert unsafe(found(attack_release(release))) == {("nation#1", ("sector1", "sex2"), "hidden", "")}
    plan = protect_release(release)
    assert plan.refused == []
    # its row Totals only: its secondary suppression redone at 10 would hide 4 cells
    assert plan.added == {"nation#1": [("sector0", "Total"), ("sector1", "Total")]}
    at_5 = protect_release(replace(release, min_cell=5))
    assert (plan.added, plan.shown) == (at_5.added, at_5.shown)
    after = plan.apply(release)
    assert not unsafe(oracle(after))
    alone = after.table("nation#1")
    assert bool(attack_release(Release(release.persons, (alone,)), exact=True)["safe"].all())


def _entry(id: str, report: str, min_cell: int, **published):
    """A ledger entry by hand: 7 and 20 persons (tokens p0..p26) in two sectors, with a Total."""
    from studylib.privacy.ledger import LedgerEntry

    return LedgerEntry(id=id, report=report, kind="table", caption="Persons by sector", dims=("sector",),
                       labels=(("s0", "s1"),), margins=True, min_cell=min_cell,
                       persons=np.array([f"p{i}" for i in range(27)], dtype=object),
                       cells=np.array([0] * 7 + [1] * 20, dtype=np.int64), **published)


def test_the_runner_s_release_keeps_each_ledger_entry_s_own_minimum_cell():
    from studylib.runner.release import build_release

    both = (True, True, False)
    new = [_entry("brief#1", "brief", 10, hidden=both), _entry("nation#1", "nation", 5, hidden=both),
           _entry("nation#2", "nation", 5, hidden=(False,) * 3, rounding=3, published=(8, 21, 27))]
    earlier = [_entry("nation#1", "nation", 5, hidden=both)]
    release = build_release(new, earlier, 10, False)  # the batch's strictest: the release's default
    assert release.min_cell == 10
    assert {t.id: t.min_cell for t in release.tables} == {"brief#1": 10, "nation#1": 5, "nation#2": 5, "~3~nation#1": 5}
    bounds = found(attack_release(release, exact=True))
    assert bounds == oracle(release)
    assert unsafe(bounds) == {("brief#1", ("s0",), "hidden", "")}  # 6..8: the brief's 10, not the nation's 5


# --------------------------------------------------------------------------------------
# random releases: the planner's result never loses to the oracle


ATTRIBUTES = {"a": 3, "b": 2, "c": 2, "d": 2, "year": 3}


@st.composite
def releases(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    persons = draw(st.integers(15, 90))
    frame = pd.DataFrame({
        name: rng.choice(n, persons, p=rng.dirichlet(np.ones(n) * 0.8)) for name, n in ATTRIBUTES.items()
    })
    min_cell = draw(st.sampled_from([3, 5]))
    n_tables = draw(st.integers(2, 8))
    tables = []
    four_d = False
    for number in range(n_tables):
        k = draw(st.integers(1, 3 if four_d else 4))
        four_d |= k == 4
        dims = draw(st.permutations(list(ATTRIBUTES))).__getitem__(slice(0, k))
        dims = [d for d in dims]
        flt = draw(st.sampled_from(["none", "none", "eq", "ne", "upto"]))
        name = draw(st.sampled_from([d for d in ATTRIBUTES if d not in dims] or ["year"]))
        value = draw(st.integers(0, ATTRIBUTES[name] - 1))
        keep = {
            "none": None,
            "eq": (frame[name] == value).to_numpy(),
            "ne": (frame[name] != value).to_numpy(),
            "upto": (frame[name] <= value).to_numpy(),
        }[flt]
        margins = k > 1 or draw(st.booleans())
        rounding = draw(st.sampled_from([None, None, None, 3])) if margins and min_cell <= 5 else None
        table = table_from(f"t{number}", dims, frame, ATTRIBUTES, keep=keep, margins=margins, report=f"r{number % 3}")
        try:
            table = protected(table, min_cell, rounding)
        except (DisclosureError, RoundingError):  # rounding cannot protect this table
            table = protected(table, min_cell, None)
        tables.append(table)
    frozen = draw(st.sets(st.integers(0, n_tables - 1), max_size=2)) if draw(st.integers(0, 2)) == 0 else set()
    return Release(persons, tuple(tables), min_cell=min_cell), {tables[i].id for i in frozen}


@settings(max_examples=15, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(releases())
def test_random_releases_bounds_match_the_oracle_and_the_plan_leaves_nothing_exposed(case):
    release, frozen_ids = case
    reference = oracle(release)
    assert found(attack_release(release, exact=True)) == reference
    quick = found(attack_release(release))
    assert set(quick) <= set(reference)
    # exact=False: the same verdicts, exact bounds for every unsafe target
    assert unsafe(quick) == unsafe(reference)
    for key in unsafe(reference):
        assert quick[key] == reference[key]
    frozen = {t.id: t.hidden for t in release.tables if t.id in frozen_ids}
    plan = protect_release(release, frozen=frozen)
    again = protect_release(release, frozen=frozen)
    assert plan.refused == again.refused and plan.hidden.keys() == again.hidden.keys()
    assert all(np.array_equal(plan.hidden[k], again.hidden[k]) for k in plan.hidden)
    assert not set(plan.hidden) & frozen_ids
    after = plan.apply(release)
    published_frozen = _published_frozen(release, frozen_ids)
    for t, (table, before) in enumerate(zip(after.tables, release.tables)):
        for flat in np.flatnonzero((before.hidden & ~table.hidden).ravel()):
            # a cell is shown only when a frozen table shows exactly its persons, or when it is
            # not small and the rest of the release pins it: hidden again, the oracle recovers it
            persons = members(table, flat)
            if persons and persons in published_frozen:
                continue
            label = table.cell_label(int(flat))
            assert not release.min_cell > len(persons) >= 1, (table.id, label)
            hidden = table.hidden.copy()
            hidden.flat[flat] = True
            tables = list(after.tables)
            tables[t] = replace(table, hidden=hidden)
            target = (table.id, label, "hidden", "")
            count, lo, hi, _ = oracle(replace(after, tables=tuple(tables)), only=target)[target]
            assert lo == hi == count == len(persons), (table.id, label, lo, hi)
    _assert_nothing_left_but_refused(plan, after, frozen_ids)


def _published_frozen(release: Release, frozen_ids: set) -> list:
    """The persons of every cell the frozen tables publish."""
    return [members(t, f) for t in release.tables if t.id in frozen_ids for f in np.flatnonzero(~t.hidden.ravel())]


def _assert_nothing_left_but_refused(plan, after: Release, frozen_ids: set) -> None:
    """After the plan the oracle finds nothing unsafe, or (beside frozen tables) only what the plan refused, by name."""
    left = unsafe(oracle(after))
    if not frozen_ids:
        assert plan.refused == [] and not left
    for table_id, cell, kind, other in left:
        assert any(table_id in message and repr(cell) in message for message in plan.refused), (table_id, cell)


@st.composite
def mixed_releases(draw):
    """Random releases where some tables are briefs: protected alone at 10, and judged at 10."""
    release, frozen_ids = draw(releases())
    tables = tuple(
        replace(protected(table, 10), min_cell=10) if draw(st.booleans()) else table for table in release.tables
    )
    return replace(release, tables=tables), frozen_ids


@settings(max_examples=5, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed_releases())
def test_random_releases_of_mixed_minimum_cells_match_the_oracle_and_the_plan_leaves_nothing_exposed(case):
    release, frozen_ids = case
    reference = oracle(release)
    assert found(attack_release(release, exact=True)) == reference
    assert unsafe(found(attack_release(release))) == unsafe(reference)
    frozen = {t.id: t.hidden for t in release.tables if t.id in frozen_ids}
    plan = protect_release(release, frozen=frozen)
    after = plan.apply(release)
    published_frozen = _published_frozen(release, frozen_ids)
    for table, before in zip(after.tables, release.tables):
        for flat in np.flatnonzero((before.hidden & ~table.hidden).ravel()):
            persons = members(table, flat)  # a cell shown is never small by its own table's rule
            assert persons in published_frozen or not _own_min_cell(release, table) > len(persons) >= 1
    _assert_nothing_left_but_refused(plan, after, frozen_ids)


# --------------------------------------------------------------------------------------
# many targets: bounded in blocks on parallel threads, the result independent of the threads


def _many_targets_release() -> Release:
    """About 200 targets (hidden cells and differences), over several blocks of the attacker."""
    sizes = {"a": 6, "b": 4, "c": 3, "year": 4}
    rng = np.random.default_rng(7)
    n = 260
    frame = pd.DataFrame({name: rng.choice(k, n, p=rng.dirichlet(np.ones(k) * 0.7)) for name, k in sizes.items()})
    specs = [(["a", "b"], None), (["a", "c"], None), (["b", "c", "year"], None), (["a", "year"], frame["year"] < 3),
             (["a", "b"], frame["c"] != 0), (["c", "year"], None)]
    tables = [protected(table_from(f"t{i}", dims, frame, sizes, keep=None if keep is None else keep.to_numpy(),
                                   report=f"r{i % 2}"), 5)
              for i, (dims, keep) in enumerate(specs)]
    return Release(n, tuple(tables), min_cell=5)


def test_many_targets_in_blocks_match_the_oracle_whatever_the_threads(monkeypatch):
    from studylib.privacy import release as module

    release = _many_targets_release()
    reference = oracle(release)
    assert len(reference) > 3 * module._BLOCK  # several blocks, so threads share the work
    results = {}
    for threads in (1, 3):
        monkeypatch.setattr(module, "_THREADS", threads)
        exact = attack_release(release, exact=True)
        quick = attack_release(release)
        plan = protect_release(release)
        results[threads] = (exact, quick, plan)
        assert found(exact) == reference
        assert unsafe(found(quick)) == unsafe(reference)
        assert unsafe(reference)  # the reader wins somewhere: the per-target programmes ran
    (exact1, quick1, plan1), (exact3, quick3, plan3) = results[1], results[3]
    pd.testing.assert_frame_equal(exact1, exact3)
    pd.testing.assert_frame_equal(quick1, quick3)
    assert plan1.added == plan3.added and plan1.shown == plan3.shown and plan1.refused == plan3.refused
    assert not unsafe(oracle(plan1.apply(release)))  # and the plan leaves the oracle nothing
