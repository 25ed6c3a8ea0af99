"""Extent when persons differ in catchability (issue 17): Rcapture's models, tight fits, BCa ties."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import optimize, stats
from scipy.special import gammaln

from studylib.analysis import estimate_population, read_overlap_table
from studylib.analysis.extent import bca_limits, capture_data
from studylib.analysis.heterogeneity import MODELS, closed_population_models, fit_heterogeneity, profile_interval
from studylib.analysis.loglinear import EstimationError

MSE = Path(__file__).resolve().parent / "reference" / "mse"
DATASETS = sorted(p.stem for p in MSE.glob("*.csv"))


def data_of(name: str):
    return capture_data(read_overlap_table(MSE / f"{name}.csv"))


def histories_of(table):
    """All 2**t - 1 histories and their counts, built here from the CSV (not by the library)."""
    lists = [c for c in table.columns if c != "count"]
    t = len(lists)
    rows = [tuple((code >> (t - 1 - i)) & 1 for i in range(t)) for code in range(1, 2**t)]
    counts = dict.fromkeys(rows, 0.0)
    for r in table.itertuples(index=False):
        counts[tuple(int(v) for v in r[:-1])] += float(r[-1])
    return np.array(rows, dtype=float), np.array([counts[r] for r in rows])


def columns_by_definition(h: np.ndarray, model: str) -> np.ndarray:
    """closedp.t's design written out from its documentation, intercept first."""
    t = h.shape[1]
    k = h.sum(axis=1)
    base, _, form = model.partition(" ")
    cols = [np.ones(len(k))]
    cols += [k] if base in ("M0", "Mh") else list(h.T)
    if form == "Chao":
        cols += [np.clip(k - j + 1, 0, None) for j in range(3, t + 1)]
    elif form == "Poisson2":
        cols.append(2.0**k - 1)
    elif form == "Darroch":
        cols.append(k**2 / 2)
    elif form == "Gamma3.5":
        cols.append(np.log(3.5) - np.log(3.5 + k))
    return np.column_stack(cols)


def statsmodels_fit(x, y):
    return sm.GLM(y, x, family=sm.families.Poisson()).fit(tol=1e-14, maxiter=1000, method="newton")


def chao_by_hand(x, y, n_fixed):
    """Chao.neg: drop the first negative heterogeneity coefficient, refit, until none is negative."""
    keep = list(range(x.shape[1]))
    while True:
        res = statsmodels_fit(x[:, keep], y)
        negative = [i for i, c in enumerate(keep) if c >= n_fixed and res.params[i] < 0]
        if not negative:
            return res
        keep.pop(negative[0])


# ---------------------------------------------------------------- published-definition figures


def test_uk_2013_five_lists_figures_from_the_closedp_definitions():
    table = closed_population_models(data_of("uk_2013_5lists"), interval="none").set_index("model")
    for model, figure in {"M0": 14832.2, "Mh Chao": 14962.8, "Mh Darroch": 14299.9, "Mth Chao": 13570.0}.items():
        assert abs(table.loc[model, "total"] - figure) <= 0.5, model
    # Mt is the independent-lists model of the log-linear frame: the main-effects estimate
    assert table.loc["Mt", "total"] == pytest.approx(estimate_population(data_of("uk_2013_5lists"), "main").total, rel=1e-10)
    assert table.loc["Mh Chao", "removed"] != ""  # negative etas were set to zero
    assert list(table.index) == list(MODELS)


@pytest.mark.parametrize("name", DATASETS)
def test_every_model_matches_a_glm_with_the_same_columns(name):
    table = read_overlap_table(MSE / f"{name}.csv")
    h, y = histories_of(table)
    t = h.shape[1]
    data = capture_data(table)
    n = y.sum()
    refused = []
    for model in MODELS:
        if t < 3 and model.startswith("Mh"):
            continue
        x = columns_by_definition(h, model)
        n_fixed = 2 if model.startswith("Mh ") else 1 + t
        res = chao_by_hand(x, y, n_fixed) if model.endswith("Chao") else statsmodels_fit(x, y)
        if not res.mle_retvals["converged"] or not np.all(np.isfinite(res.params)) or res.params[0] < -30:
            # R's glm would not give a usable estimate either (its coefficients run off to
            # infinity): the library says there is none instead of "no one unseen"
            with pytest.raises(EstimationError, match="does not exist|not identifiable"):
                fit_heterogeneity(data, model)
            refused.append(model)
            continue
        fit = fit_heterogeneity(data, model)
        b0, v0 = res.params[0], res.cov_params()[0, 0]
        assert fit.total == pytest.approx(n + math.exp(b0), rel=1e-7), (name, model)
        assert fit.stderr == pytest.approx(math.sqrt(math.exp(b0) + math.exp(2 * b0) * v0), rel=1e-6), (name, model)
        assert fit.deviance == pytest.approx(res.deviance, rel=1e-7, abs=1e-7), (name, model)
    # the refused models are no estimate in the table of models either, with the reason
    rows = closed_population_models(data, interval="none").set_index("model")
    assert set(rows.index[rows["total"].isna()]) == set(refused), name
    assert rows.loc[refused, "note"].str.contains("does not exist|not identifiable").all()
    assert len(refused) <= 6  # only the degenerate tables (artificial_3lists: no person on two lists but A and B)


def test_wald_intervals_agree_with_a_tightly_converged_glm_to_1e_7():
    for name in DATASETS:
        data = data_of(name)
        est = estimate_population(data, "main")
        x = np.column_stack([np.ones(len(data.counts)), data.histories])
        res = statsmodels_fit(x, data.counts)
        b0, se = res.params[0], math.sqrt(res.cov_params()[0, 0])
        z = stats.norm.ppf(0.975)
        assert est.lower == pytest.approx(data.observed + math.exp(b0 - z * se), rel=1e-7), name
        assert est.upper == pytest.approx(data.observed + math.exp(b0 + z * se), rel=1e-7), name


def test_two_list_interactions_join_the_heterogeneity_models():
    data = data_of("uk_2013_5lists")
    table = read_overlap_table(MSE / "uk_2013_5lists.csv")
    h, y = histories_of(table)
    x = np.column_stack([columns_by_definition(h, "Mth Darroch")[:, : 1 + 5], h[:, 0] * h[:, 1], (h.sum(axis=1) ** 2) / 2])
    res = statsmodels_fit(x, y)
    fit = fit_heterogeneity(data, "Mth Darroch", [data.pair_of("LA:NG")])
    assert fit.total == pytest.approx(y.sum() + math.exp(res.params[0]), rel=1e-7)
    assert fit.terms == ("LA:NG",)
    with pytest.raises(EstimationError, match="need list effects"):
        fit_heterogeneity(data, "Mh Chao", [data.pair_of("LA:NG")])
    with pytest.raises(EstimationError, match="unknown model"):
        fit_heterogeneity(data, "Mh Beta")


def test_profile_interval_is_where_the_multinomial_likelihood_drops_by_half_chi2():
    table = read_overlap_table(MSE / "korea_3lists.csv")
    h, y = histories_of(table)
    n = y.sum()
    x = columns_by_definition(h, "Mt")

    def loglik(n0):  # Rcapture's profileCI, written out with statsmodels
        xa = np.vstack([x, np.r_[1.0, np.zeros(x.shape[1] - 1)]])
        res = statsmodels_fit(xa, np.append(y, n0))
        big = n + n0
        c = (n0 * math.log(n0) if n0 > 0 else 0) + gammaln(big + 1) - big * math.log(big) - gammaln(n0 + 1)
        return -(res.deviance - 2 * c) / 2

    lower, upper, best = profile_interval(data_of("korea_3lists"), "Mt")
    peak = optimize.minimize_scalar(lambda v: -loglik(v), bounds=(0, 200), method="bounded").x
    assert best == pytest.approx(n + peak, abs=0.05)
    cut = loglik(peak) - stats.chi2.ppf(0.95, 1) / 2
    assert loglik(lower - n) == pytest.approx(cut, abs=1e-5)
    assert loglik(upper - n) == pytest.approx(cut, abs=1e-5)
    assert lower < best < upper
    # the point estimate sits at (about) the peak, never outside the interval
    assert lower < fit_heterogeneity(data_of("korea_3lists"), "Mt").total < upper


# ---------------------------------------------------------------- BCa ties


def test_bca_counts_replicates_equal_to_the_estimate_as_half_below():
    estimate = 431.7
    noise = estimate * np.array([1e-12, -1e-12, 0.0, 3e-13])
    base = np.concatenate([np.full(40, 400.0), np.full(40, 460.0)])
    jack = np.linspace(420, 440, 10)
    weights = np.ones(10)
    reference = bca_limits(np.concatenate([base, np.full(20, estimate)]), estimate, jack, weights, 0.95)
    assert reference[2] == pytest.approx(0.0, abs=1e-12)  # 40 below, 20 ties as 10 below, 40 above
    for shift in noise:
        moved = bca_limits(np.concatenate([base, np.full(20, estimate + shift)]), estimate, jack, weights, 0.95)
        assert moved == reference
    # a replicate just outside the tolerance is below or above, as before
    outside = bca_limits(np.concatenate([base, np.full(20, estimate * (1 - 1e-8))]), estimate, jack, weights, 0.95)
    assert outside[2] == pytest.approx(stats.norm.ppf(0.6))


# ---------------------------------------------------------------- LCMCR


@pytest.mark.slow
def test_latent_class_model_recovers_the_truth_of_latent_class_data():
    """Data drawn from a two-class model (6 lists): the 95% interval covers N in >= 90% of 40."""
    import pandas as pd

    from studylib.analysis import overlap_table
    from studylib.analysis.latent_class import estimate_latent_class

    rng = np.random.default_rng(17)
    truth = 2000
    high = np.array([0.6, 0.5, 0.55, 0.45, 0.5, 0.55])
    low = np.array([0.3, 0.2, 0.3, 0.2, 0.25, 0.25])
    hits, medians = 0, []
    for r in range(40):
        in_high = rng.random(truth) < 0.4
        flags = rng.random((truth, 6)) < np.where(in_high[:, None], high, low)
        flags = flags[flags.any(axis=1)]
        table = overlap_table(pd.DataFrame(flags, columns=[f"list_{c}" for c in "abcdef"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = estimate_latent_class(table, seed=r, burn_in=600, samples=400, thin=3)
        hits += est.lower <= truth <= est.upper
        medians.append(est.total)
        assert est.lower <= est.total <= est.upper and est.lower >= est.observed
    assert hits >= 36
    # the independent-lists model is biased low on the same kind of data; LCMCR is not
    assert abs(np.mean(medians) - truth) < 0.05 * truth


def test_latent_class_runs_are_repeatable_and_diagnosed():
    from studylib.analysis.latent_class import effective_sample_size, estimate_latent_class, split_rhat

    data = data_of("korea_3lists")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = estimate_latent_class(data, seed=5, burn_in=200, samples=200, thin=2)
        b = estimate_latent_class(data, seed=5, burn_in=200, samples=200, thin=2)
        c = estimate_latent_class(data, seed=6, burn_in=200, samples=200, thin=2)
    np.testing.assert_array_equal(a.draws, b.draws)
    assert not np.array_equal(a.draws, c.draws)
    assert a.draws.shape == (4, 200) and (a.draws >= data.observed).all()
    # R-hat: chains drawn from one distribution ~1; chains with different means clearly above
    rng = np.random.default_rng(0)
    same = rng.standard_normal((4, 1000))
    assert split_rhat(same) == pytest.approx(1.0, abs=0.01)
    assert split_rhat(same + np.arange(4)[:, None]) > 1.5
    # ESS: independent draws ~ their number; an AR(1) chain with phi 0.9 about (1-phi)/(1+phi) of it
    assert effective_sample_size(same) == pytest.approx(4000, rel=0.15)
    ar = np.zeros((4, 4000))
    for t in range(1, 4000):
        ar[:, t] = 0.9 * ar[:, t - 1] + rng.standard_normal(4)
    assert effective_sample_size(ar) == pytest.approx(16000 * 0.1 / 1.9, rel=0.3)
    with pytest.raises(EstimationError, match="samples must be"):
        estimate_latent_class(data, samples=3)
