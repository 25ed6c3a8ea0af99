"""Poisson log-linear models of list overlaps, the engine of multiple systems estimation.

This module owns the models themselves: the capture histories of a set of lists, the design
of a model with main effects and chosen two-list interactions, the check that a model's
maximum likelihood estimate exists and is identifiable (Fienberg and Rinaldo's linear
programme and the rank of the design), the Poisson GLM fit (Newton to a tight tolerance), and the rules that
choose a model (``main``, ``stepwise`` as in the R package SparseMSE, ``bic``, ``fixed``).

It works on plain arrays (:class:`CaptureData`); reading and checking user tables, intervals,
strata and the public result live in :mod:`studylib.analysis.extent`.

Conventions follow SparseMSE (Chan, Silverman and Vincent 2019):

- every observable capture history (all ``2**m - 1`` of them) is a cell of the GLM, zero
  cells included; the unseen cell (on no list) is what the intercept estimates;
- a two-list interaction whose two lists never overlap cannot be estimated; when such a pair
  is in a model, its term is dropped together with every cell that contains both lists, and
  the pair is reported as *dropped* (it still counts as a parameter in AIC and BIC).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.optimize import linprog
from scipy.special import gammaln

from studylib.errors import StudylibError

Pair = tuple[int, int]

#: An LP optimum at or below this counts as zero: the MLE does not exist.
LP_TOLERANCE = 1e-7

#: Most lists for which ``bic`` searches every model (2**10 models for 5 lists).
BIC_MAX_LISTS = 5

METHODS = ("main", "stepwise", "bic", "fixed")


class EstimationError(StudylibError):
    """No estimate: the model's MLE does not exist, is not identifiable, or no model qualifies.

    ``terms`` names the model's two-list interactions and ``reason`` is one of
    ``"no_mle"``, ``"not_identifiable"``, ``"no_mle_not_identifiable"``, ``"not_converged"``,
    ``"too_many_lists"``.
    """

    def __init__(self, message: str, terms: tuple[str, ...] = (), reason: str = "") -> None:
        super().__init__(message)
        self.terms = terms
        self.reason = reason


@dataclass(frozen=True)
class CaptureData:
    """Counts of persons for every observable capture history of ``lists``.

    ``histories`` is a ``(2**m - 1, m)`` 0/1 array (the all-zero history excluded), ordered by
    the number of lists and then lexicographically; ``counts`` holds the persons in each.
    """

    lists: tuple[str, ...]
    histories: np.ndarray
    counts: np.ndarray

    @property
    def observed(self) -> int:
        return int(round(float(self.counts.sum())))

    @property
    def pairs(self) -> tuple[Pair, ...]:
        return tuple(itertools.combinations(range(len(self.lists)), 2))

    def overlap(self, pair: Pair) -> float:
        """Persons on both lists of ``pair``, whatever other lists they are on."""
        i, j = pair
        return float(self.counts @ (self.histories[:, i] * self.histories[:, j]))

    def with_counts(self, counts: np.ndarray) -> CaptureData:
        return CaptureData(self.lists, self.histories, np.asarray(counts, dtype=float))

    def term(self, pair: Pair) -> str:
        return f"{self.lists[pair[0]]}:{self.lists[pair[1]]}"

    def terms(self, pairs) -> tuple[str, ...]:
        return tuple(self.term(p) for p in pairs)

    def pair_of(self, term: str) -> Pair:
        """The pair of list positions that a term such as ``"A:B"`` names (either order)."""
        names = term.split(":")
        if len(names) != 2 or any(n not in self.lists for n in names) or names[0] == names[1]:
            raise EstimationError(
                f"unknown two-list interaction {term!r}: write it as 'X:Y' with two different "
                f"lists among {', '.join(self.lists)}",
                reason="bad_term",
            )
        i, j = sorted(self.lists.index(n) for n in names)
        return (i, j)


def all_histories(m: int) -> np.ndarray:
    """All ``2**m - 1`` non-empty capture histories of ``m`` lists, fewest lists first."""
    grid = np.array(list(itertools.product((0, 1), repeat=m)), dtype=np.int8)[1:]
    order = sorted(range(len(grid)), key=lambda r: (int(grid[r].sum()), tuple(-grid[r])))
    return grid[order]


@dataclass(frozen=True)
class Design:
    """The GLM design of one model: kept cells, columns, and the pairs it had to drop."""

    pairs: tuple[Pair, ...]  # interactions estimated (their lists overlap)
    dropped: tuple[Pair, ...]  # interactions in the model whose lists never overlap
    keep: np.ndarray  # boolean mask over the cells of CaptureData
    matrix: np.ndarray  # kept cells x (1 + m + len(pairs))


def design(data: CaptureData, pairs) -> Design:
    """The design of the model with main effects plus the two-list interactions ``pairs``."""
    pairs = tuple(sorted(set(pairs)))
    h = data.histories
    kept = tuple(p for p in pairs if data.overlap(p) > 0)
    dropped = tuple(p for p in pairs if p not in kept)
    keep = np.ones(len(h), dtype=bool)
    for i, j in dropped:
        keep &= ~((h[:, i] == 1) & (h[:, j] == 1))
    hk = h[keep].astype(float)
    columns = [np.ones(len(hk)), *hk.T, *(hk[:, i] * hk[:, j] for i, j in kept)]
    return Design(kept, dropped, keep, np.column_stack(columns))


@dataclass(frozen=True)
class ModelCheck:
    """Whether a model's maximum likelihood estimate exists and is identifiable."""

    exists: bool
    identifiable: bool
    lp_optimum: float
    rank: int
    n_params: int
    n_cells: int

    @property
    def ok(self) -> bool:
        return self.exists and self.identifiable

    @property
    def reason(self) -> str:
        """``""`` when the model is fine, else the machine-readable reason."""
        if self.ok:
            return ""
        if not self.exists and not self.identifiable:
            return "no_mle_not_identifiable"
        return "no_mle" if not self.exists else "not_identifiable"

    def explain(self) -> str:
        """Why the model has no estimate, in words (empty when it has one)."""
        why = []
        if not self.exists:
            why.append(
                "the maximum likelihood estimate does not exist (Fienberg-Rinaldo linear "
                "programme: the observed margins lie on the boundary of what the model can "
                "fit, so some fitted count, possibly the unseen one, runs off to zero or "
                "infinity)"
            )
        if not self.identifiable:
            why.append(
                f"the model is not identifiable (its design has {self.n_params} parameters "
                f"but rank {self.rank} over {self.n_cells} cells, so the data cannot "
                "separate them)"
            )
        return "; ".join(why)


def check_design(data: CaptureData, d: Design) -> ModelCheck:
    """Fienberg-Rinaldo LP and rank check of a design (see :func:`check_model`)."""
    a = d.matrix.T  # parameters x cells
    y = data.counts[d.keep]
    t = a @ y
    n_par, n_cells = a.shape
    # variables: x (cells) and s; maximise s subject to A x = t, x_i >= s, x >= 0
    cost = np.zeros(n_cells + 1)
    cost[-1] = -1.0
    a_eq = np.hstack([a, np.zeros((n_par, 1))])
    a_ub = np.hstack([-np.eye(n_cells), np.ones((n_cells, 1))])
    res = linprog(
        cost, A_ub=a_ub, b_ub=np.zeros(n_cells), A_eq=a_eq, b_eq=t, bounds=(0, None), method="highs"
    )
    optimum = -float(res.fun) if res.status == 0 else 0.0
    rank = int(np.linalg.matrix_rank(d.matrix))
    return ModelCheck(
        exists=optimum > LP_TOLERANCE,
        identifiable=rank == n_par,
        lp_optimum=optimum,
        rank=rank,
        n_params=n_par,
        n_cells=n_cells,
    )


def check_model(data: CaptureData, pairs=()) -> ModelCheck:
    """Check that the model with interactions ``pairs`` has an identifiable, finite MLE.

    Existence: the linear programme of Fienberg and Rinaldo (2012) as used by SparseMSE's
    ``checkident``: maximise ``s`` over cell values ``x >= s`` with the model's sufficient
    statistics ``A x = A y``; the MLE exists exactly when the optimum is positive (solved
    with scipy's HiGHS). Identifiability: the design has full column rank.
    """
    return check_design(data, design(data, pairs))


@dataclass(frozen=True)
class ModelFit:
    """A fitted model: its terms, fit statistics and the estimate it implies."""

    pairs: tuple[Pair, ...]  # all interactions in the model, dropped ones included
    dropped: tuple[Pair, ...]
    intercept: float
    intercept_se: float
    fitted: np.ndarray  # fitted mean of every cell of CaptureData (0 for dropped cells)
    deviance: float
    df_resid: int
    llf: float
    n_params: int  # estimated parameters plus one per dropped pair
    observed: int

    @property
    def unseen(self) -> float:
        return math.exp(self.intercept)

    @property
    def total(self) -> float:
        return self.observed + self.unseen

    @property
    def aic(self) -> float:
        return -2.0 * self.llf + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return -2.0 * self.llf + math.log(self.observed) * self.n_params


#: Newton iterations stop when no coefficient moves by more than this (relative to its size);
#: tight enough that Wald intervals agree with R's glm to 1e-7 (statsmodels' default stops on
#: a deviance change of 1e-8, which leaves coefficients about 1e-5 off).
NEWTON_TOLERANCE = 1e-11

#: At most this many Newton steps (each a weighted least-squares solve).
NEWTON_MAX_STEPS = 200


@dataclass(frozen=True)
class PoissonFit:
    """A Poisson log-linear GLM fitted by Newton's method: what every model here needs."""

    params: np.ndarray
    cov: np.ndarray  # inverse Fisher information
    fitted: np.ndarray
    deviance: float
    llf: float  # full Poisson log-likelihood, as R's logLik and statsmodels' llf
    converged: bool
    steps: int


def _poisson_deviance(y: np.ndarray, mu: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return float(2.0 * np.sum(term - (y - mu)))


def poisson_glm(x: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None) -> PoissonFit:
    """Maximum likelihood of ``log E[y] = offset + x b`` (Poisson, log link) by Newton's method.

    Starts as R's glm does (``mu = y + 0.1``, one weighted least-squares step), then takes
    Newton steps (halved while the deviance would grow) until no coefficient moves by more
    than :data:`NEWTON_TOLERANCE` relative to its size. ``converged`` is False when that
    takes more than :data:`NEWTON_MAX_STEPS` steps, a fitted mean leaves the floats, or the
    information of a design of full rank becomes singular (fitted means run to 0: no MLE).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    off = np.zeros(len(y)) if offset is None else np.asarray(offset, dtype=float)
    mu = y + 0.1
    eta = np.log(mu)
    z = eta - off + (y - mu) / mu
    sw = np.sqrt(mu)
    beta = np.linalg.lstsq(x * sw[:, None], z * sw, rcond=None)[0]
    dev = _poisson_deviance(y, np.exp(off + x @ beta))
    converged, steps = False, 0
    full_rank = None  # of the design: looked at only when the information turns singular
    with np.errstate(over="ignore", invalid="ignore"):
        for steps in range(1, NEWTON_MAX_STEPS + 1):
            mu = np.exp(off + x @ beta)
            if not np.all(np.isfinite(mu)):
                break
            info = x.T @ (x * mu[:, None])
            try:
                step = np.linalg.solve(info, x.T @ (y - mu))
            except np.linalg.LinAlgError:
                if full_rank is None:
                    full_rank = np.linalg.matrix_rank(x) == x.shape[1]
                if full_rank:
                    # the design is not singular, the information is: fitted means have run to 0
                    # on the boundary (no MLE); a least-squares step of ~0 there is no convergence
                    break
                step = np.linalg.lstsq(info, x.T @ (y - mu), rcond=None)[0]
            new_dev = _poisson_deviance(y, np.exp(off + x @ (beta + step)))
            shrink = 0
            while not (new_dev <= dev * (1 + 1e-12) + 1e-12) and shrink < 30:
                step = step / 2
                new_dev = _poisson_deviance(y, np.exp(off + x @ (beta + step)))
                shrink += 1
            beta = beta + step
            dev = new_dev
            if np.all(np.abs(step) <= NEWTON_TOLERANCE * np.maximum(1.0, np.abs(beta))):
                converged = True
                break
    mu = np.exp(off + x @ beta)
    finite = bool(np.all(np.isfinite(mu)) and np.all(np.isfinite(beta)))
    info = x.T @ (x * mu[:, None]) if finite else np.full((x.shape[1], x.shape[1]), np.nan)
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        cov = np.full_like(info, np.nan)
    llf = float(np.sum(np.where(y > 0, y * np.log(np.where(mu > 0, mu, 1.0)), 0.0) - mu - gammaln(y + 1))) if finite else float("nan")
    return PoissonFit(beta, cov, mu, _poisson_deviance(y, mu) if finite else float("nan"), llf, converged and finite, steps)


def _glm(d: Design, y: np.ndarray) -> PoissonFit:
    return poisson_glm(d.matrix, y)


def fit_model(data: CaptureData, pairs=(), check: bool = True) -> ModelFit:
    """Fit main effects plus ``pairs`` by Poisson GLM; raise :class:`EstimationError` if no estimate.

    With ``check`` (the default) the model is first put through :func:`check_model`, and a
    model that fails is never fitted.
    """
    d = design(data, pairs)
    all_pairs = tuple(sorted(set(d.pairs) | set(d.dropped)))
    terms = data.terms(all_pairs)
    if check:
        verdict = check_design(data, d)
        if not verdict.ok:
            raise EstimationError(
                f"no estimate for the model {describe(terms)}: {verdict.explain()}",
                terms=terms,
                reason=verdict.reason,
            )
    y = data.counts[d.keep]
    res = _glm(d, y)
    if not res.converged or not np.all(np.isfinite(res.params)):
        raise EstimationError(
            f"no estimate for the model {describe(terms)}: the Poisson GLM did not converge",
            terms=terms,
            reason="not_converged",
        )
    fitted = np.zeros(len(data.counts))
    fitted[d.keep] = res.fitted
    n_params = d.matrix.shape[1] + len(d.dropped)
    return ModelFit(
        pairs=all_pairs,
        dropped=d.dropped,
        intercept=float(res.params[0]),
        intercept_se=float(math.sqrt(res.cov[0, 0])),
        fitted=fitted,
        deviance=float(res.deviance),
        df_resid=int(d.matrix.shape[0] - d.matrix.shape[1]),
        llf=float(res.llf),
        n_params=n_params,
        observed=data.observed,
    )


def describe(terms) -> str:
    """``'with A:B + B:C'`` or ``'with main effects only'``."""
    return "with " + (" + ".join(terms) if terms else "main effects only")


# ---------------------------------------------------------------- choosing a model


@dataclass
class Selection:
    """The chosen fit and the comparison rows of the candidate models that were looked at."""

    fit: ModelFit
    rows: list[dict] = field(default_factory=list)


def _row(data: CaptureData, pairs, fit: ModelFit | None, status: str, **extra) -> dict:
    pairs = tuple(sorted(pairs))
    row = {
        "terms": " + ".join(data.terms(pairs)),
        "n_terms": len(pairs),
        "dropped": " + ".join(data.terms(fit.dropped)) if fit else "",
        "deviance": fit.deviance if fit else np.nan,
        "df": fit.df_resid if fit else np.nan,
        "aic": fit.aic if fit else np.nan,
        "bic": fit.bic if fit else np.nan,
        "estimate": fit.total if fit else np.nan,
        "status": status,
        "selected": False,
    }
    row.update(extra)
    return row


def _fit_or_reason(data: CaptureData, pairs) -> tuple[ModelFit | None, str]:
    try:
        return fit_model(data, pairs), "ok"
    except EstimationError as err:
        return None, err.reason


def select_main(data: CaptureData) -> Selection:
    """Main effects only (independent lists, homogeneous capture)."""
    fit = fit_model(data, ())
    return Selection(fit, [_row(data, (), fit, "ok", selected=True)])


def select_fixed(data: CaptureData, pairs) -> Selection:
    """Exactly the given interactions; raises :class:`EstimationError` if that model has no estimate."""
    fit = fit_model(data, pairs)
    return Selection(fit, [_row(data, pairs, fit, "ok", selected=True)])


def pair_pvalue(observed_overlap: float, fitted_overlap: float) -> float:
    """One-sided Poisson p-value ``min(P(X <= n), P(X >= n))`` for ``X ~ Poisson(fitted)``."""
    n = observed_overlap
    return float(min(stats.poisson.cdf(n, fitted_overlap), stats.poisson.sf(n - 1, fitted_overlap)))


def select_stepwise(data: CaptureData, pthresh: float = 0.02) -> Selection:
    """SparseMSE's stepwise rule (``stepwisefit``).

    Start from main effects. At each step, for every pair not yet in the model, compare the
    persons observed on both lists with the Poisson mean the current fit gives them, and take
    the one-sided p-value ``min(P(X <= n), P(X >= n))``; a pair whose model would fail
    :func:`check_model` gets p = 1. Add the pair with the smallest p-value (the first listed
    on ties) while it is below ``pthresh``.
    """
    fit = fit_model(data, ())
    rows = [_row(data, (), fit, "ok", step=0, added="", p_value=np.nan)]
    pairs_in: list[Pair] = []
    candidates = list(data.pairs)
    overlaps = {p: data.overlap(p) for p in candidates}
    h = data.histories
    step = 0
    while candidates:
        pvals = [
            pair_pvalue(overlaps[p], float(fit.fitted @ (h[:, p[0]] * h[:, p[1]])))
            for p in candidates
        ]
        order = sorted(range(len(candidates)), key=lambda k: (pvals[k], k))
        chosen = None
        for k in order:
            if pvals[k] >= pthresh:
                break
            trial = check_model(data, [*pairs_in, candidates[k]])
            if trial.ok:
                chosen = k
                break
        if chosen is None:
            break
        pair = candidates.pop(chosen)
        pairs_in.append(pair)
        fit = fit_model(data, pairs_in, check=False)
        step += 1
        rows.append(
            _row(data, pairs_in, fit, "ok", step=step, added=data.term(pair), p_value=pvals[chosen])
        )
    rows[-1]["selected"] = True
    return Selection(fit, rows)


def select_bic(data: CaptureData) -> Selection:
    """The model with the lowest BIC among every set of two-list interactions that has an estimate.

    Only for up to :data:`BIC_MAX_LISTS` lists (``2**(m(m-1)/2)`` models). BIC is
    ``-2 log L + k log(n)`` with ``n`` the persons observed and ``k`` the parameters
    (one per dropped pair included, as SparseMSE does for AIC).
    """
    m = len(data.lists)
    if m > BIC_MAX_LISTS:
        raise EstimationError(
            f"method 'bic' searches every model and is limited to {BIC_MAX_LISTS} lists "
            f"(this table has {m}); use method='stepwise'",
            reason="too_many_lists",
        )
    pairs = data.pairs
    rows, fits = [], []
    # With the cells fixed (same non-overlapping pairs), removing overlapping pairs keeps an
    # MLE that exists and a design of full rank (Chan, Silverman and Vincent 2019). So one
    # check of the largest model per set of non-overlapping pairs clears all its submodels,
    # and a model that fails condemns every model that only adds overlapping pairs to it.
    overlapping = frozenset(p for p in pairs if data.overlap(p) > 0)
    top_ok: dict[frozenset, bool] = {}
    failed: dict[frozenset, str] = {}  # models with no estimate: pair set -> reason
    for size in range(len(pairs) + 1):
        for subset in itertools.combinations(pairs, size):
            s = frozenset(subset)
            empty_part = s - overlapping
            if empty_part not in top_ok:
                top_ok[empty_part] = check_model(data, empty_part | overlapping).ok
            inherited = None
            if not top_ok[empty_part]:
                inherited = next((f for f in failed if f <= s and (s - f) <= overlapping), None)
            if top_ok[empty_part]:
                fit, status = fit_model(data, subset, check=False), "ok"
            elif inherited is not None:
                fit, status = None, failed[inherited]
            else:
                fit, status = _fit_or_reason(data, subset)
                if fit is None:
                    failed[s] = status
            rows.append(_row(data, subset, fit, status))
            fits.append(fit)
    ok = [k for k, f in enumerate(fits) if f is not None]
    if not ok:
        raise EstimationError("no model with two-list interactions has an estimate", reason="no_mle")
    best = min(ok, key=lambda k: (fits[k].bic, k))
    rows[best]["selected"] = True
    return Selection(fits[best], rows)


def select(data: CaptureData, method: str, pthresh: float = 0.02, pairs=None) -> Selection:
    """Choose and fit a model by ``method`` (see :data:`METHODS`)."""
    if method == "main":
        return select_main(data)
    if method == "stepwise":
        return select_stepwise(data, pthresh)
    if method == "bic":
        return select_bic(data)
    if method == "fixed":
        return select_fixed(data, pairs or ())
    raise EstimationError(
        f"unknown method {method!r}: choose one of {', '.join(METHODS)}", reason="bad_method"
    )
