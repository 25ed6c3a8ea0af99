"""Disclosure control: suppression that an attacker's linear programme cannot undo, and rounding.

The attacker used to check protect_table here is written independently of the library:
its unknowns are the inner cells only, every published cell or Total is one equation,
and the bounds of a hidden Total are bounds of a sum. It agrees with studylib's own
attack (which treats Totals as cells of a linked system) and finds every protected table
safe.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from studylib.errors import ValidationError
from studylib.privacy import (
    DisclosureError,
    apply_suppression,
    attack,
    protect_table,
    published_rates,
    published_shares,
)
from studylib.privacy.intruder import intruder_bounds, relation_matrix
from studylib.privacy.rounding import controlled_rounding
from studylib.privacy.suppression import Rule

# ---------------------------------------------------------------- an independent attacker


def _augmented_rows(inner_shape):
    """For every cell of the table with Totals, its 0/1 weights over the inner cells."""
    inner = np.arange(math.prod(inner_shape)).reshape(inner_shape)
    rows = {}
    for cell in itertools.product(*[range(n + 1) for n in inner_shape]):
        index = tuple(slice(None) if i == n else i for i, n in zip(cell, inner_shape))
        weights = np.zeros(inner.size)
        weights[np.atleast_1d(inner[index]).ravel()] = 1.0
        rows[cell] = weights
    return rows


def independent_bounds(inner: np.ndarray, hidden: dict) -> dict:
    """Integer LP bounds of each hidden cell (cell tuple -> (lo, hi)); inner cells as unknowns."""
    rows = _augmented_rows(inner.shape)
    truth = inner.ravel().astype(float)
    published = [cell for cell in rows if not hidden.get(cell, False)]
    a_eq = np.array([rows[c] for c in published]) if published else None
    b_eq = np.array([rows[c] @ truth for c in published]) if published else None
    out = {}
    for cell, is_hidden in hidden.items():
        if not is_hidden:
            continue
        bounds = []
        for sign in (1.0, -1.0):
            res = linprog(sign * rows[cell], A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
            if res.status == 3:
                bounds.append(math.inf)
            else:
                assert res.status == 0, res.message
                bounds.append(sign * res.fun)
        out[cell] = (math.ceil(bounds[0] - 1e-6), math.floor(bounds[1] + 1e-6) if bounds[1] != math.inf else math.inf)
    return out


def _hidden_cells(protected, inner_shape) -> dict:
    mask = protected.suppressed.to_numpy().reshape([n + 1 for n in inner_shape])
    return {cell: bool(mask[cell]) for cell in itertools.product(*[range(n + 1) for n in inner_shape])}


def _unsafe(lo, hi, min_cell, zeros_disclosive) -> bool:
    low = 0 if zeros_disclosive else 1
    return hi <= lo or (lo >= low and hi <= min_cell - 1)


# ---------------------------------------------------------------- strategies

counts = st.one_of(st.integers(0, 6), st.integers(0, 60))


@st.composite
def tables(draw, max_dims: int = 2):
    dims = draw(st.integers(1, max_dims))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(dims))
    values = np.array(draw(st.lists(counts, min_size=math.prod(shape), max_size=math.prod(shape)))).reshape(shape)
    if dims == 1:
        return pd.Series(values, index=pd.Index([f"r{i}" for i in range(shape[0])], name="row"))
    return pd.DataFrame(
        values,
        index=pd.Index([f"r{i}" for i in range(shape[0])], name="row"),
        columns=pd.Index([f"c{j}" for j in range(shape[1])], name="col"),
    )


# ---------------------------------------------------------------- properties


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), min_cell=st.integers(2, 10), zeros=st.booleans())
def test_attacker_never_pins_or_narrows_a_hidden_cell(table, min_cell, zeros):
    protected = protect_table(table, min_cell=min_cell, zeros_disclosive=zeros)
    inner = table.to_numpy().reshape(table.shape)
    hidden = _hidden_cells(protected, inner.shape)
    theirs = independent_bounds(inner, hidden)
    ours = attack(protected)
    assert len(ours) == len(theirs)
    for cell, (lo, hi) in theirs.items():
        assert not _unsafe(lo, hi, min_cell, zeros), f"cell {cell} narrowed to [{lo}, {hi}]"
    # studylib's own attack gives exactly the independent attacker's bounds
    flat = [theirs[c] for c in sorted(theirs)]
    assert [(r.lower, r.upper) for r in ours.itertuples()] == [(float(lo), float(hi)) for lo, hi in flat]
    assert ours["safe"].all()


@settings(max_examples=80, deadline=None)
@given(table=tables(), min_cell=st.integers(2, 10), zeros=st.booleans())
def test_primary_cells_are_the_small_counts_and_published_cells_add_up(table, min_cell, zeros):
    protected = protect_table(table, min_cell=min_cell, zeros_disclosive=zeros)
    counts = protected.counts.to_numpy()
    low = 0 if zeros else 1
    assert (protected.primary.to_numpy() == ((counts >= low) & (counts < min_cell))).all()
    assert not (protected.primary.to_numpy() & ~protected.suppressed.to_numpy()).any()
    published = protected.published
    assert published.isna().to_numpy().tolist() == protected.suppressed.to_numpy().tolist()
    shown = published.to_numpy(dtype="float64", na_value=np.nan)
    assert np.array_equal(np.where(np.isnan(shown), counts, shown), counts)
    # every fully published line adds up to its published Total
    grid = shown if shown.ndim > 1 else shown[None, :]
    for line in list(grid) + (list(grid.T) if shown.ndim > 1 else []):
        if not np.isnan(line).any():
            assert line[:-1].sum() == line[-1]


def test_a_small_count_next_to_a_total_is_not_left_alone():
    table = pd.Series([3, 40, 57], index=pd.Index(["hovedstaden", "sjaelland", "syddanmark"], name="region"))
    protected = protect_table(table)
    assert protected.suppressed.sum() >= 2
    assert protected.published["Total"] == 100
    assert attack(protected)["safe"].all()


def _bridge_pattern():
    cells = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (2, 3), (3, 2), (3, 3), (1, 2)]
    return cells, (1, 2)


def test_attack_recovers_the_joining_cell_of_the_bridge_pattern():
    """Two hidden 2x2 rectangles joined by one hidden cell: every affected row and column
    holds at least two suppressions, yet the joining cell is exactly recoverable."""
    rng = np.random.default_rng(5)
    table = pd.DataFrame(rng.integers(10, 30, size=(5, 5)))
    cells, joint = _bridge_pattern()
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    for r, c in cells:
        mask.iloc[r, c] = True
    assert (mask.sum(axis=0)[mask.any(axis=0)] >= 2).all() and (mask.sum(axis=1)[mask.any(axis=1)] >= 2).all()
    bounds = attack(apply_suppression(table, mask))
    row = bounds.loc[joint]
    assert row["lower"] == row["upper"] == table.iloc[joint]
    assert not row["safe"]
    others = bounds.drop(index=[joint])
    assert (others["upper"] > others["lower"]).all()


def test_protect_table_never_returns_the_bridge_pattern():
    # the small counts sit exactly on the bridge pattern
    table = pd.DataFrame(np.full((5, 5), 40))
    cells, joint = _bridge_pattern()
    for k, (r, c) in enumerate(cells):
        table.iloc[r, c] = 1 + k % 4
    protected = protect_table(table)
    hidden = _hidden_cells(protected, (5, 5))
    for cell, (lo, hi) in independent_bounds(table.to_numpy(), hidden).items():
        assert not _unsafe(lo, hi, 5, False), f"cell {cell} narrowed to [{lo}, {hi}]"
    assert protected.suppressed.iloc[joint]


@pytest.mark.parametrize("seed", range(6))
def test_three_dimensional_tables_are_protected_as_linked_tables(seed):
    rng = np.random.default_rng(seed)
    shape = (3, 2, 3)
    values = rng.choice([0, 1, 2, 3, 7, 12, 20], size=shape)
    index = pd.MultiIndex.from_product([["a", "b", "c"], ["female", "male"], [2021, 2022, 2023]], names=["sector", "sex", "year"])
    table = pd.Series(values.ravel(), index=index)
    protected = protect_table(table, min_cell=5)
    assert protected.counts.shape == (4 * 3, 4)  # rows: sector x sex with Totals; columns: years + Total
    hidden = _hidden_cells(protected, shape)
    theirs = independent_bounds(values, hidden)
    for cell, (lo, hi) in theirs.items():
        assert not _unsafe(lo, hi, 5, False), f"cell {cell} narrowed to [{lo}, {hi}]"
    assert attack(protected)["safe"].all()
    # the same table given as a DataFrame with MultiIndex rows is the same table
    again = protect_table(table.unstack("year"), min_cell=5)
    assert again.suppressed.to_numpy().tolist() == protected.suppressed.to_numpy().tolist()


def test_without_margins_only_primary_cells_are_hidden():
    table = pd.DataFrame([[1, 9], [8, 30]])
    protected = protect_table(table, margins=False)
    assert protected.suppressed.to_numpy().tolist() == [[True, False], [False, False]]
    bounds = attack(protected)
    assert bounds["upper"].iloc[0] == math.inf and bounds["lower"].iloc[0] == 0


# ---------------------------------------------------------------- rounding


@settings(max_examples=80, deadline=None)
@given(table=tables(), base=st.sampled_from([3, 5]), data=st.data())
def test_controlled_rounding_keeps_margins_additive_in_multiples_of_the_base(table, base, data):
    min_cell = data.draw(st.integers(2, 2 * base - 1))
    protected = protect_table(table, rounding=base, min_cell=min_cell)
    shown = protected.published.to_numpy(dtype="int64")
    counts = protected.counts.to_numpy()
    assert (shown % base == 0).all()
    assert (np.abs(shown - counts) < base).all()
    assert (shown[counts % base == 0] == counts[counts % base == 0]).all()  # zero-restricted
    grid = shown if shown.ndim > 1 else shown[None, :]
    assert (grid[..., :-1].sum(axis=-1) == grid[..., -1]).all()
    if shown.ndim > 1:
        assert (grid[:-1].sum(axis=0) == grid[-1]).all()
    assert not protected.suppressed.to_numpy().any()
    bounds = attack(protected)
    assert bounds["safe"].all()
    assert bounds.equals(attack(protected, networks=False))  # flows and programmes agree


def test_rounding_refuses_what_it_cannot_protect():
    with pytest.raises(DisclosureError, match="zeros"):
        protect_table(pd.Series([1, 2, 3]), rounding=5, zeros_disclosive=True)
    # a published 3 means 1 to 5: base 3 cannot protect a minimum cell of 6
    with pytest.raises(DisclosureError, match="base 3 cannot protect a minimum cell of 6"):
        protect_table(pd.Series([1, 2, 3]), rounding=3, min_cell=6)


# ---------------------------------------------------------------- the attacker's flow networks


@st.composite
def attacker_views(draw):
    """A table with Totals (one to three dimensions, so linked tables too) and what an
    attacker knows of it: a random suppression pattern (Totals included, so some bounds are
    unbounded and some cells exact), or every cell within the interval of its rounding."""
    dims = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 4 if dims < 3 else 2)) for _ in range(dims))
    values = np.array(draw(st.lists(counts, min_size=math.prod(shape), max_size=math.prod(shape)))).reshape(shape)
    for axis in range(dims):
        values = np.concatenate([values, values.sum(axis=axis, keepdims=True)], axis=axis)
    size = values.size
    if draw(st.booleans()):
        hidden = np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size)))
        return values, ~hidden, np.zeros(size), np.full(size, np.inf), np.flatnonzero(hidden)
    base = draw(st.sampled_from([3, 5]))
    # controlled rounding for one and two dimensions; each cell on its own for three
    shown = controlled_rounding(values, base) if dims <= 2 else base * np.round(values / base)
    lower = np.maximum(shown.ravel() - (base - 1), 0.0)
    return values, np.zeros(size, dtype=bool), lower, shown.ravel() + (base - 1.0), np.arange(size)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(view=attacker_views(), min_cell=st.integers(2, 10))
def test_the_flow_networks_give_the_bounds_of_the_linear_programmes(view, min_cell):
    values, known, lower, upper, targets = view
    flat = values.ravel().astype(float)
    relations = relation_matrix(values.shape)
    fast = intruder_bounds(flat, known, lower, upper, targets, relations)
    plain = intruder_bounds(flat, known, lower, upper, targets, relations, networks=False)
    assert fast[0].tolist() == plain[0].tolist() and fast[1].tolist() == plain[1].tolist()
    assert np.all(fast[0] <= flat[targets]) and np.all(flat[targets] <= fast[1])
    if np.isinf(upper).all():  # suppression: the independent attacker agrees too
        inner = values[tuple(slice(0, n - 1) for n in values.shape)]
        hidden = {cell: not known[np.ravel_multi_index(cell, values.shape)] for cell in np.ndindex(values.shape)}
        theirs = independent_bounds(inner, hidden)
        assert [theirs[c] for c in sorted(theirs)] == list(zip(fast[0].tolist(), fast[1].tolist()))
    # what protect_table asks (stop once safe) gets the same verdict either way
    rule = Rule(min_cell)
    quick = intruder_bounds(flat, known, lower, upper, targets, relations, rule.is_safe)
    assert rule.is_safe(*quick).tolist() == rule.is_safe(*plain).tolist()


# ---------------------------------------------------------------- shares, rates, input


def test_shares_come_only_from_published_cells():
    table = pd.DataFrame([[2, 20, 30], [25, 30, 45]], index=["a", "b"], columns=["x", "y", "z"])
    protected = protect_table(table)
    shares = published_shares(protected, of="rows")
    hidden = protected.suppressed.to_numpy()
    assert shares.isna().to_numpy()[hidden].all()
    shown = protected.published.astype("float64")
    expected = 100 * shown.div(shown["Total"], axis=0)
    assert np.allclose(shares.to_numpy(dtype="float64", na_value=np.nan), expected.to_numpy(), equal_nan=True)
    assert shares.loc["b", "Total"] == pytest.approx(100)
    assert shares.notna().to_numpy().sum() >= 6
    rates = published_rates(protected, 1000, per=100)
    assert rates.isna().to_numpy()[hidden].all()
    assert rates.loc["Total", "Total"] == pytest.approx(152 / 1000 * 100)


def test_bad_tables_are_refused_with_every_problem_named():
    table = pd.DataFrame({"x": [1.5, -2, None], "y": [3, 4, 5]}, index=["a", "b", "c"])
    with pytest.raises(ValidationError) as err:
        protect_table(table)
    text = str(err.value)
    assert "row 'a', column 'x'" in text and "whole number" in text
    assert "row 'b', column 'x'" in text and "negative" in text
    assert "row 'c', column 'x'" in text and "missing" in text
    with pytest.raises(DisclosureError, match="Total"):
        protect_table(pd.Series([5, 6], index=["a", "Total"]))
    with pytest.raises(DisclosureError, match="min_cell"):
        protect_table(pd.Series([5, 6]), min_cell=1)


def test_a_protected_table_never_shows_its_true_counts():
    protected = protect_table(pd.Series([1, 2, 50, 60], index=list("abcd")))
    text = repr(protected)
    assert "suppression" in text and "min cell 5" in text
    assert "50" not in text and "60" not in text


# ---------------------------------------------------------------- what notebooks show


@pytest.fixture
def fresh_settings(monkeypatch):
    from studylib.report import settings

    for name in ("STUDYLIB_DISCLOSURE", "STUDYLIB_REPORT", "STUDYLIB_LEDGER", "STUDYLIB_RELEASE_PLAN"):
        monkeypatch.delenv(name, raising=False)
    settings.reset()
    yield settings
    settings.reset()


@pytest.mark.parametrize("min_cell, rounding, symbol", [(10, None, "[c]"), (5, 3, "[c]"), (7, 5, "x")])
def test_what_the_runner_hands_a_kernel_reads_back_as_the_study_settings(fresh_settings, min_cell, rounding, symbol):
    from studylib.privacy import DisclosureSettings
    from studylib.report.variables import kernel_variables

    wanted = DisclosureSettings(min_cell=min_cell, rounding=rounding, symbol=symbol, merge={"sex": "other_or_unknown"})
    env = kernel_variables(wanted.to_json(), "cleaning", "cleaning-hovedstaden")
    read = fresh_settings.settings_from_environment(env)
    assert read == wanted
    assert (env["STUDYLIB_STUDY_ID"], env["STUDYLIB_REPORT"]) == ("cleaning", "cleaning-hovedstaden")
    assert fresh_settings.in_study_run(env) and not fresh_settings.in_study_run({})


def test_the_study_settings_reach_every_table_from_the_environment(fresh_settings, monkeypatch):
    from studylib.privacy import DisclosureSettings
    from studylib.report import safe_table

    monkeypatch.setenv("STUDYLIB_DISCLOSURE", DisclosureSettings(min_cell=10).to_json())
    persons = pd.DataFrame({"person_id": [f"p{i}" for i in range(82)],
                            "region": ["a"] * 7 + ["b"] * 30 + ["c"] * 45})
    shown = safe_table(persons, rows="region", caption="Persons by region")
    assert shown.protected.min_cell == 10
    html = shown.to_html()
    assert '"min_cell": 10' in html.replace("&quot;", '"')
    assert ">7<" not in html and ">[c]<" in html  # 7 is below the minimum cell of 10
    assert "&lt;" not in html and "fewer than" not in html  # one neutral symbol, whatever the reason


def test_configure_overrides_the_environment_and_rounding_shows_multiples(fresh_settings, monkeypatch):
    from studylib.report import configure, safe_table

    monkeypatch.setenv("STUDYLIB_DISCLOSURE", '{"min_cell": 10}')
    configure(min_cell=5, rounding=5)
    shown = safe_table(pd.DataFrame([[3, 12], [26, 41]], index=["a", "b"], columns=["x", "y"]))
    cells = shown.cells().to_numpy().ravel().tolist()
    assert all(int(c) % 5 == 0 for c in cells)
    assert '"rule": "rounding"' in shown.to_html().replace("&quot;", '"')
    with pytest.raises(Exception, match="rounding"):
        configure(rounding=4)


def test_bad_settings_in_the_environment_name_the_variable(fresh_settings, monkeypatch):
    from studylib.errors import ConfigError

    monkeypatch.setenv("STUDYLIB_DISCLOSURE", '{"min_cell": "five"}')
    with pytest.raises(ConfigError, match="STUDYLIB_DISCLOSURE"):
        fresh_settings.current_settings()
    fresh_settings.reset()
    monkeypatch.setenv("STUDYLIB_DISCLOSURE", '{"min_cell": 5, "colour": "red"}')
    with pytest.raises(ConfigError, match="colour"):
        fresh_settings.current_settings()


def test_a_table_protected_below_the_study_minimum_is_refused(fresh_settings):
    from studylib.report import configure, safe_figure, safe_table

    configure(min_cell=5)
    weak = protect_table(pd.Series([3, 40, 50]), min_cell=3)
    with pytest.raises(DisclosureError, match="minimum cell 3"):
        safe_table(weak)
    with pytest.raises(DisclosureError, match="sources"):
        from matplotlib.figure import Figure

        safe_figure(Figure())


def test_a_chart_never_draws_a_hidden_value_and_says_so(fresh_settings):
    from studylib.report import safe_figure

    ages = pd.Series([2, 10, 30, 0, 7], index=pd.Index(["0-14", "15-17", "18-24", "25-34", "35-44"], name="age band"))
    figure = safe_figure(ages, kind="bar", caption="Persons by age", ylabel="persons")
    hidden = [label for label, h in figure_hidden(ages).items() if h]
    assert hidden and figure.note.startswith("Not drawn: " + ", ".join(hidden))
    assert figure.png.startswith(b"\x89PNG")
    drawn = sorted(bar.get_height() for bar in figure.figure.axes[0].patches)
    published = protect_table(ages).published.drop("Total")
    assert drawn == sorted(float(v) for v in published.dropna())
    assert 2.0 not in drawn and 7.0 not in drawn
    html = figure.to_html()
    assert html.startswith('<figure class="studylib-figure" data-studylib-safe=')
    assert "Persons by age" in html and "0-14" in figure.alt


def figure_hidden(table):
    return protect_table(table).suppressed.drop("Total")


def test_margins_already_in_a_table_are_refused():
    crosstab = pd.crosstab(pd.Series(["a", "b", "a"], name="x"), pd.Series(["u", "v", "v"], name="y"), margins=True)
    with pytest.raises(DisclosureError, match="All"):
        protect_table(crosstab)
