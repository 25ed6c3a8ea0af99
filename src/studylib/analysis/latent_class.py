"""Extent by a Bayesian latent-class model: LCMCR (Manrique-Vallier 2016), as HRDAG uses it.

This module owns the non-parametric latent-class capture-recapture model and its Gibbs
sampler, written in numpy. Persons fall into latent classes; within a class the lists are
independent, each list ``j`` seeing a person of class ``k`` with chance ``lambda[j, k]``.
The classes' shares follow a Dirichlet process (stick breaking, truncated at ``classes``
classes) with concentration ``alpha ~ Gamma(0.25, 0.25)``; ``lambda ~ Beta(1, 1)``; the
population ``N`` has the prior ``p(N) ~ 1/N``. Differences in catchability between persons
and dependence between lists that comes from them are what the classes absorb.

One Gibbs sweep (all chains at once, on the counts of each capture history, never per
person):

1. the class counts of the persons of each observed history: multinomial with chances
   ``pi[k] prod_j lambda[j, k]^x_j (1 - lambda[j, k])^(1 - x_j)``;
2. the unseen persons ``n0 ~ NegBin(n, 1 - p0)``, ``p0 = sum_k pi[k] prod_j (1 - lambda[j, k])``,
   and their classes, multinomial with chances ``pi[k] prod_j (1 - lambda[j, k]) / p0``;
3. ``lambda[j, k] ~ Beta(1 + seen, 1 + not seen)`` over the persons of class ``k``;
4. the stick-breaking fractions ``V[k] ~ Beta(1 + n_k, alpha + n_(>k))`` and ``pi``;
5. ``alpha ~ Gamma(0.25 + K - 1, 0.25 - sum log(1 - V[k]))``.

The estimate is the posterior median of ``N`` with an equal-tailed credible interval; the
diagnostics are the split R-hat over chains and the effective sample size (Gelman et al.,
Bayesian Data Analysis, 3rd ed., section 11.4-11.5). A ``seed`` makes every run repeatable.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from studylib.analysis.loglinear import CaptureData, EstimationError

#: Convergence is doubtful when the split R-hat exceeds this or the effective sample size
#: of N falls below MIN_ESS (Vehtari et al. 2021 recommend 1.01 and 400; 1.05 is the older rule).
MAX_RHAT = 1.05
MIN_ESS = 400


@dataclass(frozen=True, eq=False)
class LatentClassEstimate:
    """The posterior of the population under LCMCR, with its interval and diagnostics."""

    total: float  # posterior median of N
    mean: float
    lower: float
    upper: float
    level: float
    observed: int
    lists: tuple[str, ...]
    draws: np.ndarray  # chains x kept draws of N
    rhat: float
    ess: float
    classes: int
    classes_used: float  # posterior mean of the classes holding at least one person
    seed: int | None
    burn_in: int
    thin: int

    @property
    def unseen(self) -> float:
        return self.total - self.observed

    @property
    def converged(self) -> bool:
        """R-hat at most :data:`MAX_RHAT` and at least :data:`MIN_ESS` effective draws."""
        return bool(self.rhat <= MAX_RHAT and self.ess >= MIN_ESS)

    def diagnostics(self) -> dict:
        chains, kept = self.draws.shape
        return {
            "chains": chains,
            "draws_per_chain": kept,
            "burn_in": self.burn_in,
            "thin": self.thin,
            "rhat": self.rhat,
            "ess": self.ess,
            "classes_used": self.classes_used,
            "converged": self.converged,
        }

    def summary(self) -> str:
        return (
            f"Estimated between {self.lower:,.0f} and {self.upper:,.0f} persons in all "
            f"({self.level:.0%} posterior interval of a latent-class model, LCMCR; posterior median "
            f"{self.total:,.0f}). {self.observed:,} were seen by at least one of {len(self.lists)} lists. "
            f"Convergence: R-hat {self.rhat:.3f}, effective sample size {self.ess:,.0f}"
            + ("." if self.converged else " (doubtful: run longer).")
        )


# ---------------------------------------------------------------- diagnostics


def split_rhat(draws: np.ndarray) -> float:
    """Split R-hat (BDA3 eq. 11.4): each chain halved, between- and within-chain variance."""
    draws = np.asarray(draws, dtype=float)
    half = draws.shape[1] // 2
    if half < 2:
        return float("nan")
    parts = np.vstack([draws[:, :half], draws[:, half : 2 * half]])
    n = parts.shape[1]
    within = parts.var(axis=1, ddof=1).mean()
    between = n * parts.mean(axis=1).var(ddof=1)
    if within == 0:
        return 1.0 if between == 0 else float("inf")
    var_plus = (n - 1) / n * within + between / n
    return float(math.sqrt(var_plus / within))


def effective_sample_size(draws: np.ndarray) -> float:
    """Effective sample size over chains (BDA3 eq. 11.7-11.8, Geyer's initial positive sequence)."""
    draws = np.asarray(draws, dtype=float)
    m, n = draws.shape
    if n < 4:
        return float("nan")
    within = draws.var(axis=1, ddof=1).mean()
    var_plus = (n - 1) / n * within + draws.mean(axis=1).var(ddof=1) if m > 1 else within
    if var_plus == 0:
        return float(m * n)
    centred = draws - draws.mean(axis=1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :n] / n
    rho = 1.0 - (within - acov.mean(axis=0) * n / (n - 1)) / var_plus  # autocorrelation by lag
    rho[0] = 1.0
    total = 0.0
    for t in range(0, n - 1, 2):  # pairs of lags while their sum stays positive
        pair = rho[t] + rho[t + 1]
        if pair <= 0:
            break
        total += pair
    tau = -1.0 + 2.0 * total
    return float(m * n / max(tau, 1e-12))


# ---------------------------------------------------------------- the sampler


def _stick(v: np.ndarray) -> np.ndarray:
    """Class shares from stick-breaking fractions (last fraction 1)."""
    rest = np.cumprod(np.concatenate([np.ones(v.shape[:-1] + (1,)), 1.0 - v[..., :-1]], axis=-1), axis=-1)
    return v * rest


def _argument_problems(classes, chains, burn_in, samples, thin, level) -> list[str]:
    wrong = []
    for name, value, least in (("classes", classes, 1), ("chains", chains, 1), ("burn_in", burn_in, 0), ("samples", samples, 10), ("thin", thin, 1)):
        if int(value) != value or value < least:
            wrong.append(f"{name} must be a whole number of at least {least}, got {value!r}")
    if not 0 < level < 1:
        wrong.append(f"level must lie strictly between 0 and 1, got {level!r}")
    return wrong


def _collapsed_unseen_move(rng, m0, obs_k, on, pi, n, width):
    """One random-walk Metropolis move per class on the unseen persons of that class, with the
    chances lambda integrated out (Beta(1, 1) priors) and the prior ``1/N``.

    The target is ``log (N-1)! - sum_k log m0_k! + sum_k m0_k log pi_k
    + sum_jk [log Gamma(1 + n_k - on_jk) - log Gamma(2 + n_k)]`` (``n_k`` the persons of class
    ``k``, seen and unseen; ``on_jk`` those of them on list ``j``). It moves the unseen count
    and the chances of the hardest-to-see class together, which the Gibbs sweep alone does
    only in small steps (about twice the effective sample size per sweep in our trials).
    """
    m0 = m0.astype(float).copy()
    accepted = np.zeros(m0.shape, dtype=bool)
    total = n + m0.sum(axis=1)
    logpi = np.log(np.clip(pi, 1e-300, None))
    lists = on.shape[1]
    for kk in range(m0.shape[1]):
        w = np.maximum(1, np.rint(width[:, kk])).astype(np.int64)
        delta = rng.integers(-w, w + 1).astype(float)
        old = m0[:, kk]
        new = old + delta
        ok = (new >= 0) & (delta != 0)
        new = np.where(ok, new, old)
        n_old, n_new = obs_k[:, kk] + old, obs_k[:, kk] + new
        t_new = total + (new - old)
        off = on[:, :, kk]
        change = (
            gammaln(t_new) - gammaln(total)
            - gammaln(new + 1.0) + gammaln(old + 1.0)
            + (new - old) * logpi[:, kk]
            + (gammaln(1.0 + n_new[:, None] - off) - gammaln(1.0 + n_old[:, None] - off)).sum(axis=1)
            - lists * (gammaln(2.0 + n_new) - gammaln(2.0 + n_old))
        )
        take = ok & (np.log(rng.random(len(m0))) < change)
        m0[:, kk] = np.where(take, new, old)
        total = np.where(take, t_new, total)
        accepted[:, kk] = take
    return m0.astype(np.int64), accepted


def sample_population(data: CaptureData, classes: int = 10, chains: int = 4, burn_in: int = 5000, samples: int = 2000, thin: int = 10, seed: int | None = None, prior_alpha: tuple[float, float] = (0.25, 0.25)) -> tuple[np.ndarray, np.ndarray]:
    """Gibbs draws of ``N`` (chains x samples) and of the classes in use, for ``data``."""
    rng = np.random.default_rng(seed)
    x = data.histories.astype(float)  # cells x lists
    counts = np.rint(data.counts).astype(np.int64)
    n = int(counts.sum())
    c, k, j = chains, classes, x.shape[1]
    a_alpha, b_alpha = prior_alpha
    # start near what the lists saw, so that chains do not spend the burn-in climbing from
    # a population barely larger than the persons observed
    share = (counts @ x) / max(n, 1)
    lam = np.clip(share[None, :, None] * rng.uniform(0.2, 1.0, size=(c, j, k)), 1e-3, 0.999)
    width = np.full((c, k), max(2.0, math.sqrt(n)))
    alpha = np.ones(c)
    v = rng.beta(1.0, alpha[:, None], size=(c, k))
    v[:, -1] = 1.0
    pi = _stick(v)
    total_steps = burn_in + samples * thin
    out_n = np.empty((c, samples))
    out_used = np.empty((c, samples))
    seen = x.T[None, :, :, None]  # 1 x lists x cells x 1
    kept = 0
    for step in range(total_steps):
        loglam = np.log(np.clip(lam, 1e-300, None))  # c x j x k
        log1m = np.log(np.clip(1.0 - lam, 1e-300, None))
        # chance of each history in each class: c x cells x k
        logp = np.einsum("hj,cjk->chk", x, loglam) + np.einsum("hj,cjk->chk", 1.0 - x, log1m) + np.log(np.clip(pi, 1e-300, None))[:, None, :]
        logp -= logp.max(axis=2, keepdims=True)
        q = np.exp(logp)
        q /= q.sum(axis=2, keepdims=True)
        m_obs = rng.multinomial(np.broadcast_to(counts, (c, len(counts))), q)  # c x cells x k
        unseen_k = pi * np.exp(log1m.sum(axis=1))  # c x k
        p0 = np.clip(unseen_k.sum(axis=1), 0.0, 1.0 - 1e-12)
        n0 = rng.negative_binomial(n, 1.0 - p0)
        m0 = rng.multinomial(n0, unseen_k / unseen_k.sum(axis=1, keepdims=True))  # c x k
        on = np.einsum("chk,hj->cjk", m_obs, x)
        obs_k = m_obs.sum(axis=1)
        m0, accepted = _collapsed_unseen_move(rng, m0, obs_k, on, pi, n, width)
        if step < burn_in:  # adapt the proposal widths during burn-in only
            width = np.where(accepted, width * 1.1, np.maximum(width / 1.1, 1.0))
        class_n = obs_k + m0  # c x k
        lam = rng.beta(1.0 + on, 1.0 + class_n[:, None, :] - on)
        after = np.cumsum(class_n[:, ::-1], axis=1)[:, ::-1] - class_n  # persons in later classes
        v = rng.beta(1.0 + class_n, alpha[:, None] + after)
        v[:, -1] = 1.0
        v = np.clip(v, 1e-12, 1.0)
        pi = _stick(v)
        rate = b_alpha - np.log1p(-np.clip(v[:, :-1], 0.0, 1.0 - 1e-12)).sum(axis=1)
        alpha = rng.gamma(a_alpha + k - 1, 1.0 / rate)
        if step >= burn_in and (step - burn_in) % thin == thin - 1:
            out_n[:, kept] = n + m0.sum(axis=1)
            out_used[:, kept] = (class_n > 0).sum(axis=1)
            kept += 1
    return out_n, out_used


def estimate_latent_class(table, classes: int = 10, chains: int = 4, burn_in: int = 5000, samples: int = 2000, thin: int = 10, level: float = 0.95, seed: int | None = None) -> LatentClassEstimate:
    """Estimate the whole population (seen and unseen) by LCMCR, with a posterior interval.

    ``table``: an overlap table (see :func:`studylib.analysis.extent.overlap_table`), a CSV
    path or :class:`CaptureData`. ``classes``: the truncation of the Dirichlet process (10,
    as LCMCR's default ``K``); ``chains`` independent chains of ``burn_in`` sweeps then
    ``samples`` kept draws every ``thin`` sweeps; ``level`` the coverage of the
    equal-tailed interval; ``seed`` makes the run repeatable. A run whose R-hat exceeds
    :data:`MAX_RHAT` or whose effective sample size is below :data:`MIN_ESS` gives an
    :class:`~studylib.analysis.extent.ExtentWarning` (``.converged`` is False).

    Example::

        result = estimate_latent_class(overlap_table(cases), chains=2, samples=500, seed=7)
        result.lower, result.total, result.upper
    """
    from studylib.analysis.extent import ExtentWarning, _as_data  # table checks live there

    wrong = _argument_problems(classes, chains, burn_in, samples, thin, level)
    if wrong:
        raise EstimationError("estimate_latent_class: " + "; ".join(wrong), reason="bad_argument")
    data = _as_data(table)
    draws, used = sample_population(data, int(classes), int(chains), int(burn_in), int(samples), int(thin), seed)
    flat = draws.ravel()
    lower, median, upper = np.quantile(flat, [0.5 - level / 2, 0.5, 0.5 + level / 2])
    est = LatentClassEstimate(
        total=float(median),
        mean=float(flat.mean()),
        lower=float(lower),
        upper=float(upper),
        level=level,
        observed=data.observed,
        lists=data.lists,
        draws=draws,
        rhat=split_rhat(draws) if chains > 1 or samples >= 4 else float("nan"),
        ess=effective_sample_size(draws),
        classes=int(classes),
        classes_used=float(used.mean()),
        seed=seed,
        burn_in=int(burn_in),
        thin=int(thin),
    )
    if not est.converged:
        warnings.warn(
            ExtentWarning(
                f"the latent-class sampler may not have converged (R-hat {est.rhat:.3f}, effective sample "
                f"size {est.ess:,.0f}; want at most {MAX_RHAT} and at least {MIN_ESS}): raise burn_in and samples"
            ),
            stacklevel=2,
        )
    return est
