"""The log-linear engine of multiple systems estimation against independent oracles.

Designs are built here from the capture histories (main effects, products of two lists, the
cells of never-overlapping pairs removed); fits are statsmodels GLM Poisson fitted here on
those designs; Poisson p-values are sums of the probability mass function; the existence
check is tested on saturated designs, where ``A x = A y`` forces ``x = y`` and the linear
programme's optimum is therefore the smallest count. Cases sit on both sides of each
threshold (an overlap of 0 and 0.5, an LP optimum below and above its tolerance, a p-value
at the threshold, 5 and 6 lists for ``bic``).
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from studylib.analysis import loglinear as ll
from studylib.analysis.loglinear import CaptureData, EstimationError, ModelCheck

H3 = np.array([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)], dtype=np.int8)
#: SparseMSE's Korean example (lists b, c, d) and its artificial example (A, B, C), cells in H3 order
KOREA = CaptureData(("b", "c", "d"), H3, np.array([5, 5, 41, 54, 6, 0, 12], dtype=float))
ARTIFICIAL = CaptureData(("A", "B", "C"), H3, np.array([40, 30, 20, 6, 0, 0, 0], dtype=float))


def _histories(m: int) -> np.ndarray:
    """Every non-empty history: fewest lists first, then those on earlier lists first."""
    rows = [h for h in itertools.product((0, 1), repeat=m) if any(h)]
    return np.array(sorted(rows, key=lambda h: (sum(h), tuple(1 - v for v in h))), dtype=np.int8)


def _data(m: int, seed: int, mean: float = 8.0) -> CaptureData:
    rng = np.random.default_rng(seed)
    h = _histories(m)
    return CaptureData(tuple("ABCDEF"[:m]), h, rng.poisson(mean, len(h)).astype(float) + 1)


def _oracle_design(data: CaptureData, pairs):
    h = data.histories.astype(float)
    pairs = sorted(set(pairs))
    both = {p: (h[:, p[0]] == 1) & (h[:, p[1]] == 1) for p in pairs}
    kept = [p for p in pairs if data.counts[both[p]].sum() > 0]
    dropped = [p for p in pairs if p not in kept]
    keep = np.ones(len(h), dtype=bool)
    for p in dropped:
        keep &= ~both[p]
    x = np.column_stack([np.ones(keep.sum()), h[keep]] + [h[keep, i] * h[keep, j] for i, j in kept])
    return kept, dropped, keep, x


def _oracle_fit(data: CaptureData, pairs):
    kept, dropped, keep, x = _oracle_design(data, pairs)
    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        warnings.simplefilter("ignore")  # saturated models (no residual df) and fitted zeros of the Korean c:d cell
        fit = sm.GLM(data.counts[keep], x, family=sm.families.Poisson()).fit(tol=1e-14, maxiter=500)
    k = x.shape[1] + len(dropped)
    observed = data.counts.sum()
    fitted = np.zeros(len(data.counts))
    fitted[keep] = fit.fittedvalues
    return {"fit": fit, "fitted": fitted, "k": k, "df": x.shape[0] - x.shape[1], "dropped": dropped,
            "aic": -2 * fit.llf + 2 * k, "bic": -2 * fit.llf + math.log(observed) * k,
            "total": observed + math.exp(fit.params[0])}


# -- capture data, histories, designs -----------------------------------------------------------

def test_capture_data_overlaps_terms_and_pairs():
    assert KOREA.observed == 123 and isinstance(KOREA.observed, int)
    assert KOREA.with_counts([0.4] * 7).observed == 3  # 2.8 persons round to 3
    assert KOREA.pairs == ((0, 1), (0, 2), (1, 2))
    assert [KOREA.overlap(p) for p in KOREA.pairs] == [54 + 12, 6 + 12, 0 + 12]
    other = KOREA.with_counts([1, 2, 3, 4, 5, 6, 7])
    assert other.counts.dtype == np.float64 and other.counts.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert other.lists == KOREA.lists and other.histories is KOREA.histories
    assert KOREA.term((0, 2)) == "b:d" and KOREA.terms([(0, 1), (1, 2)]) == ("b:c", "c:d") and KOREA.terms([]) == ()
    assert KOREA.pair_of("d:b") == (0, 2) and KOREA.pair_of("b:c") == (0, 1) and KOREA.pair_of("d:c") == (1, 2)
    for bad in ("b", "b:c:d", "b:z", "z:b", "b:b", ""):
        with pytest.raises(EstimationError) as err:
            KOREA.pair_of(bad)
        assert str(err.value) == (f"unknown two-list interaction {bad!r}: write it as 'X:Y' with two different "
                                  "lists among b, c, d")
        assert err.value.reason == "bad_term" and err.value.terms == ()
    assert EstimationError("no").reason == "" and EstimationError("no").terms == ()


def test_all_histories_fewest_lists_first():
    assert ll.all_histories(1).tolist() == [[1]]
    assert ll.all_histories(2).tolist() == [[1, 0], [0, 1], [1, 1]]
    assert ll.all_histories(3).tolist() == H3.tolist()
    for m in (4, 5):
        got = ll.all_histories(m)
        assert got.dtype == np.int8 and got.shape == (2**m - 1, m)
        assert got.tolist() == _histories(m).tolist()


def test_design_keeps_overlapping_pairs_and_drops_the_cells_of_the_others():
    d = ll.design(KOREA, [(1, 2), (0, 1), (1, 2)])
    kept, dropped, keep, x = _oracle_design(KOREA, [(0, 1), (1, 2)])
    assert d.pairs == ((0, 1), (1, 2)) and d.dropped == () and d.keep.tolist() == [True] * 7
    np.testing.assert_array_equal(d.matrix, x)
    d = ll.design(ARTIFICIAL, [(1, 2), (0, 2), (0, 1)])
    kept, dropped, keep, x = _oracle_design(ARTIFICIAL, [(0, 1), (0, 2), (1, 2)])
    assert d.pairs == ((0, 1),) and d.dropped == ((0, 2), (1, 2)) and kept == [(0, 1)]
    assert d.keep.tolist() == [True, True, True, True, False, False, False] == keep.tolist()
    np.testing.assert_array_equal(d.matrix, x)
    assert d.matrix.shape == (4, 5)
    # an overlap of half a person is an overlap
    half = ARTIFICIAL.with_counts([40, 30, 20, 6, 0.5, 0, 0])
    d = ll.design(half, [(0, 2), (1, 2)])
    assert d.pairs == ((0, 2),) and d.dropped == ((1, 2),) and d.keep.tolist() == [True] * 5 + [False, False]
    np.testing.assert_array_equal(d.matrix, _oracle_design(half, [(0, 2), (1, 2)])[3])
    main = ll.design(KOREA, ())
    np.testing.assert_array_equal(main.matrix, np.column_stack([np.ones(7), H3]))


# -- the existence and rank check -----------------------------------------------------------------

def _two_lists(c: float) -> CaptureData:
    return CaptureData(("A", "B"), _histories(2), np.array([5.0, 3.0, c]))


def test_check_of_a_saturated_design_has_the_smallest_count_as_optimum():
    for c, exists in [(2.0, True), (0.0, False), (1e-8, False), (1e-6, True)]:  # tolerance 1e-7
        got = ll.check_model(_two_lists(c))
        assert got.lp_optimum == pytest.approx(c, abs=1e-10), c
        assert (got.exists, got.identifiable, got.rank, got.n_params, got.n_cells) == (exists, True, 3, 3, 3), c
        assert got.ok == exists and got.reason == ("" if exists else "no_mle")
    # three lists, every pair: 7 parameters on 7 cells
    full = ll.check_model(KOREA.with_counts([5, 5, 41, 54, 6, 2, 12]), KOREA.pairs)
    assert full.ok and full.lp_optimum == pytest.approx(2.0) and (full.rank, full.n_params, full.n_cells) == (7, 7, 7)
    # the Korean example with b:c and b:d: its margins leave the c:d cell no room
    korea = ll.check_model(KOREA, [(0, 1), (0, 2)])
    assert not korea.exists and korea.identifiable and korea.reason == "no_mle"
    assert ll.check_model(KOREA, [(0, 1)]).ok
    # every pair of the artificial example: two dropped, 5 parameters on the 4 cells left
    over = ll.check_model(ARTIFICIAL, ARTIFICIAL.pairs)
    assert (over.exists, over.identifiable, over.rank, over.n_params, over.n_cells) == (True, False, 4, 5, 4)
    assert over.lp_optimum == pytest.approx(6.0)  # the kept cells are determined: x = y
    assert over.reason == "not_identifiable"
    assert over.explain() == ("the model is not identifiable (its design has 5 parameters but rank 4 over 4 cells, "
                              "so the data cannot separate them)")
    assert ll.check_design(ARTIFICIAL, ll.design(ARTIFICIAL, ARTIFICIAL.pairs)) == over


def test_model_check_reasons_and_explanations():
    no_mle = ("the maximum likelihood estimate does not exist (Fienberg-Rinaldo linear programme: the observed "
              "margins lie on the boundary of what the model can fit, so some fitted count, possibly the unseen "
              "one, runs off to zero or infinity)")
    rank = "the model is not identifiable (its design has 6 parameters but rank 5 over 7 cells, so the data cannot separate them)"
    cases = {(True, True): ("", ""), (False, True): ("no_mle", no_mle), (True, False): ("not_identifiable", rank),
             (False, False): ("no_mle_not_identifiable", no_mle + "; " + rank)}
    for (exists, identifiable), (reason, text) in cases.items():
        check = ModelCheck(exists=exists, identifiable=identifiable, lp_optimum=0.0, rank=5, n_params=6, n_cells=7)
        assert check.ok == (exists and identifiable)
        assert check.reason == reason and check.explain() == text


# -- the Poisson GLM ------------------------------------------------------------------------------

def test_poisson_glm_against_statsmodels():
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(40), rng.normal(size=40), rng.integers(0, 2, 40)])
    off = 0.3 * rng.normal(size=40)
    y = rng.poisson(np.exp(0.5 + 0.6 * x[:, 1] + off))
    assert (y == 0).any()
    for offset in (off, None):
        got = ll.poisson_glm(x, y, offset)
        want = sm.GLM(y, x, family=sm.families.Poisson(), offset=offset).fit(tol=1e-14, maxiter=500)
        np.testing.assert_allclose(got.params, want.params, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.cov, want.cov_params(), rtol=1e-8, atol=1e-14)
        np.testing.assert_allclose(got.fitted, want.fittedvalues, rtol=1e-10)
        assert got.deviance == pytest.approx(want.deviance, rel=1e-10)
        assert got.llf == pytest.approx(want.llf, rel=1e-12)
        assert got.converged and 1 <= got.steps < ll.NEWTON_MAX_STEPS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero counts add 2 mu, with no floating-point warning
        assert ll._poisson_deviance(y.astype(float), want.fittedvalues) == pytest.approx(
            sm.families.Poisson().deviance(y, want.fittedvalues), rel=1e-12)
        assert ll._poisson_deviance(np.array([0.0, 0.0]), np.array([1.5, 0.0])) == 3.0
    # a repeated column: the same fitted means, no covariance
    twice = ll.poisson_glm(np.column_stack([x, x[:, 2]]), y)
    assert twice.converged and np.isnan(twice.cov).all()
    np.testing.assert_allclose(twice.fitted, want.fittedvalues, rtol=1e-9)
    assert twice.deviance == pytest.approx(want.deviance, rel=1e-9)
    # a saturated model with a zero cell: the coefficient runs off, never converges
    off_edge = ll.poisson_glm(np.eye(3), np.array([3.0, 0.0, 2.0]))
    assert not off_edge.converged and off_edge.steps == ll.NEWTON_MAX_STEPS
    assert off_edge.params[[0, 2]] == pytest.approx(np.log([3.0, 2.0]))
    assert off_edge.llf == pytest.approx(sum(stats.poisson.logpmf(k, k) for k in (3, 2)), rel=1e-9)


# -- fitting a model -------------------------------------------------------------------------------

@pytest.mark.parametrize("data, pairs", [(KOREA, ()), (KOREA, [(0, 1)]), (KOREA, [(1, 2), (0, 1)]),
                                         (ARTIFICIAL, [(1, 2), (0, 2)]), (_data(4, 2), [(0, 3), (1, 2)])])
def test_fit_model_against_statsmodels(data, pairs):
    got = ll.fit_model(data, pairs)
    want = _oracle_fit(data, pairs)
    assert got.pairs == tuple(sorted(set(pairs))) and got.dropped == tuple(want["dropped"])
    assert got.intercept == pytest.approx(want["fit"].params[0], rel=1e-9)
    assert got.intercept_se == pytest.approx(want["fit"].bse[0], rel=1e-8)
    np.testing.assert_allclose(got.fitted, want["fitted"], rtol=1e-9, atol=1e-12)
    assert got.deviance == pytest.approx(want["fit"].deviance, rel=1e-8, abs=1e-10)
    assert got.llf == pytest.approx(want["fit"].llf, rel=1e-10)
    assert (got.df_resid, got.n_params, got.observed) == (want["df"], want["k"], int(data.counts.sum()))
    assert got.unseen == pytest.approx(math.exp(want["fit"].params[0]), rel=1e-9)
    assert got.total == pytest.approx(want["total"], rel=1e-9)
    assert got.aic == pytest.approx(want["aic"], rel=1e-10) and got.bic == pytest.approx(want["bic"], rel=1e-10)


def test_fit_model_refuses_a_model_without_an_estimate():
    with pytest.raises(EstimationError) as err:
        ll.fit_model(ARTIFICIAL, [(0, 1)])
    assert err.value.reason == "no_mle" and err.value.terms == ("A:B",)
    assert str(err.value) == "no estimate for the model with A:B: " + ll.check_model(ARTIFICIAL, [(0, 1)]).explain()
    assert "does not exist" in str(err.value)
    with pytest.raises(EstimationError) as err:
        ll.fit_model(ARTIFICIAL, ARTIFICIAL.pairs)
    assert err.value.reason == "not_identifiable" and err.value.terms == ("A:B", "A:C", "B:C")
    assert str(err.value).startswith("no estimate for the model with A:B + A:C + B:C: the model is not identifiable")
    with pytest.raises(EstimationError) as err:  # unchecked, the fit runs off
        ll.fit_model(ARTIFICIAL, [(0, 1)], check=False)
    assert err.value.reason == "not_converged" and err.value.terms == ("A:B",)
    assert str(err.value) == "no estimate for the model with A:B: the Poisson GLM did not converge"
    assert ll.describe(()) == "with main effects only" and ll.describe(("A:B", "B:C")) == "with A:B + B:C"


# -- choosing a model ------------------------------------------------------------------------------

def _expected_row(data, pairs, status="ok", selected=False, **extra):
    want = _oracle_fit(data, pairs)
    row = {"terms": " + ".join(data.terms(sorted(pairs))), "n_terms": len(pairs), "dropped": " + ".join(data.terms(want["dropped"])),
           "deviance": want["fit"].deviance, "df": want["df"], "aic": want["aic"], "bic": want["bic"], "estimate": want["total"],
           "status": status, "selected": selected}
    row.update(extra)
    return row


def _assert_rows(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert list(g) == list(w)
        for key, value in w.items():
            if isinstance(value, float) and not isinstance(g[key], str):
                assert g[key] == pytest.approx(value, rel=1e-7, abs=1e-9, nan_ok=True), key
            else:
                assert g[key] == value, key


def test_main_fixed_and_the_method_dispatch():
    main = ll.select(KOREA, "main")
    _assert_rows(main.rows, [_expected_row(KOREA, (), selected=True)])
    assert main.fit.pairs == () and main.fit.total == pytest.approx(_oracle_fit(KOREA, ())["total"])
    fixed = ll.select(ARTIFICIAL, "fixed", pairs=[(1, 2), (0, 2)])
    _assert_rows(fixed.rows, [_expected_row(ARTIFICIAL, [(0, 2), (1, 2)], selected=True)])
    assert fixed.rows[0]["terms"] == "A:C + B:C" and fixed.rows[0]["dropped"] == "A:C + B:C"
    assert ll.select(KOREA, "fixed").fit.pairs == ()
    assert ll.select_fixed(KOREA, [(0, 1)]).fit.total == pytest.approx(268.78, abs=0.005)  # SparseMSE's figure
    assert ll.select(KOREA, "stepwise").rows == ll.select_stepwise(KOREA).rows
    assert ll.select(KOREA, "stepwise", pthresh=1e-6).fit.pairs == ()
    assert [r["terms"] for r in ll.select(KOREA, "bic").rows] == [r["terms"] for r in ll.select_bic(KOREA).rows]
    with pytest.raises(EstimationError) as err:
        ll.select(KOREA, "aic")
    assert str(err.value) == "unknown method 'aic': choose one of main, stepwise, bic, fixed" and err.value.reason == "bad_method"


def test_pair_pvalue_is_the_smaller_poisson_tail():
    def pmf(k, mu):
        return math.exp(-mu) * mu**k / math.factorial(k)

    mu = 2.5
    assert ll.pair_pvalue(0, mu) == pytest.approx(math.exp(-mu), rel=1e-12)  # P(X >= 0) = 1 is the larger
    assert ll.pair_pvalue(1, mu) == pytest.approx(pmf(0, mu) + pmf(1, mu), rel=1e-12)
    assert ll.pair_pvalue(7, mu) == pytest.approx(1 - sum(pmf(k, mu) for k in range(7)), rel=1e-10)
    assert ll.pair_pvalue(3, mu) == pytest.approx(min(sum(pmf(k, mu) for k in range(4)), 1 - sum(pmf(k, mu) for k in range(3))))


def _oracle_stepwise(data, pthresh, fails=()):
    """SparseMSE's rule with statsmodels fits; ``fails``: the pair sets known to have no estimate."""
    h = data.histories
    pairs_in, candidates = [], list(data.pairs)
    rows = [_expected_row(data, (), step=0, added="", p_value=np.nan)]
    while candidates:
        fitted = _oracle_fit(data, pairs_in)["fitted"]
        pvals = []
        for p in candidates:
            n, mu = data.overlap(p), float(fitted @ (h[:, p[0]] * h[:, p[1]]))
            pvals.append(min(stats.poisson.cdf(n, mu), 1 - stats.poisson.cdf(n - 1, mu)))
        chosen = next((k for k in np.argsort(pvals, kind="stable") if pvals[k] < pthresh
                       and frozenset([*pairs_in, candidates[k]]) not in fails), None)
        if chosen is None:
            break
        pair = candidates.pop(chosen)
        pairs_in.append(pair)
        rows.append(_expected_row(data, pairs_in, step=len(pairs_in), added=data.term(pair), p_value=pvals[chosen]))
    rows[-1]["selected"] = True
    return rows


def test_stepwise_against_statsmodels_fits():
    got = ll.select_stepwise(KOREA)
    _assert_rows(got.rows, _oracle_stepwise(KOREA, 0.02))
    assert [r["terms"] for r in got.rows] == ["", "b:c"] and got.fit.pairs == ((0, 1),)
    # with a larger threshold c:d (p 0.22) comes next; b:d would have no estimate (before or after it)
    wide = ll.select_stepwise(KOREA, pthresh=0.5)
    _assert_rows(wide.rows, _oracle_stepwise(KOREA, 0.5, fails={frozenset([(0, 1), (0, 2)]), frozenset(KOREA.pairs)}))
    assert [r["terms"] for r in wide.rows] == ["", "b:c", "b:c + c:d"]
    # a p-value equal to the threshold is not below it
    p1 = got.rows[1]["p_value"]
    assert [r["terms"] for r in ll.select_stepwise(KOREA, pthresh=p1).rows] == [""]
    assert [r["terms"] for r in ll.select_stepwise(KOREA, pthresh=np.nextafter(p1, 1)).rows] == ["", "b:c"]
    # the artificial example: A:B has the smallest p-value (0.09) but no estimate
    skip = ll.select_stepwise(ARTIFICIAL, pthresh=0.5)
    _assert_rows(skip.rows, _oracle_stepwise(ARTIFICIAL, 0.5, fails={frozenset([(0, 1)]), frozenset([(0, 1), (0, 2)])}))
    assert [r["terms"] for r in skip.rows] == ["", "A:C", "A:C + B:C"]
    stop = ll.select_stepwise(ARTIFICIAL, pthresh=0.15)  # A:B refused, the next (A:C, 0.18) is above 0.15
    assert [r["terms"] for r in stop.rows] == [""] and stop.rows[0]["selected"]
    four = _data(4, 5)
    four = four.with_counts(four.counts + 25 * (four.histories[:, 0] & four.histories[:, 3]))
    rows = ll.select_stepwise(four, pthresh=0.3).rows
    _assert_rows(rows, _oracle_stepwise(four, 0.3))
    assert rows[1]["added"] == "A:D"


def test_bic_against_every_model_fitted_by_statsmodels():
    for data in (KOREA, ARTIFICIAL, _data(4, 7)):
        got = ll.select_bic(data)
        subsets = [s for size in range(len(data.pairs) + 1) for s in itertools.combinations(data.pairs, size)]
        assert [r["terms"] for r in got.rows] == [" + ".join(data.terms(s)) for s in subsets]
        best, best_bic = None, np.inf
        for k, (row, subset) in enumerate(zip(got.rows, subsets)):
            reason = ll.check_model(data, subset).reason
            if reason:
                assert row["status"] == reason and np.isnan(row["estimate"]) and np.isnan(row["bic"]), row["terms"]
                assert row["dropped"] == "" and np.isnan(row["deviance"]) and np.isnan(row["df"]), row["terms"]
                continue
            _assert_rows([row], [_expected_row(data, subset, selected=row["selected"])])
            if row["bic"] < best_bic:
                best, best_bic = k, row["bic"]
        assert [k for k, r in enumerate(got.rows) if r["selected"]] == [best]
        assert got.fit.pairs == subsets[best]
    statuses = {r["terms"]: r["status"] for r in ll.select_bic(KOREA).rows}
    assert statuses["b:c + b:d"] == statuses["b:c + b:d + c:d"] == "no_mle"
    assert ll.select_bic(KOREA).rows[5]["terms"] == "b:c + c:d" and ll.select_bic(KOREA).rows[5]["selected"]


def test_bic_searches_five_lists_but_not_six():
    five = _data(5, 1)
    got = ll.select_bic(five)
    assert len(got.rows) == 2**10 and sum(r["selected"] for r in got.rows) == 1
    chosen = next(r for r in got.rows if r["selected"])
    pairs = tuple(five.pair_of(t) for t in chosen["terms"].split(" + ")) if chosen["terms"] else ()
    assert chosen["bic"] == pytest.approx(_oracle_fit(five, pairs)["bic"], rel=1e-9)
    assert chosen["bic"] == min(r["bic"] for r in got.rows)
    with pytest.raises(EstimationError) as err:
        ll.select_bic(_data(6, 1))
    assert err.value.reason == "too_many_lists"
    assert str(err.value) == "method 'bic' searches every model and is limited to 5 lists (this table has 6); use method='stepwise'"


def test_bic_with_no_model_that_has_an_estimate():
    # two lists, the overlap cell empty and one list empty: every model fails
    data = CaptureData(("A", "B"), _histories(2), np.array([0.0, 3.0, 0.0]))
    with pytest.raises(EstimationError) as err:
        ll.select_bic(data)
    assert str(err.value) == "no model with two-list interactions has an estimate" and err.value.reason == "no_mle"
