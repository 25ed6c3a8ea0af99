"""Extent: how many persons no organisation saw, by multiple systems estimation (MSE).

This module owns the public side of extent estimation: overlap tables (reading, checking,
building them from a cases table), :func:`estimate_population` with its result
:class:`PopulationEstimate`, intervals (normal on the log scale, and a BCa bootstrap that
repeats the model selection), estimates by stratum (:func:`estimate_by`) and the sensitivity
table across methods (:func:`sensitivity`). The models themselves (design, existence check,
GLM fit, selection rules) live in :mod:`studylib.analysis.loglinear`.

An *overlap table* has one 0/1 column per list (an organisation that registers persons) and
a ``count`` column: the persons seen on exactly that combination of lists. Combinations
that are absent count 0. A person on no list cannot be in it: that number is the estimate.

Typical use::

    from studylib.analysis import estimate_population, overlap_table, sensitivity

    table = overlap_table(cases)                        # from the list_* columns
    est = estimate_population(table)                    # stepwise, normal interval
    est.total, est.lower, est.upper, est.terms          # 11313.0, 9884.4, 13027.4, ('LA:NG', ...)
    print(est.summary())                                # a range in words, never one number
    est.models                                          # the candidate models compared
    estimate_population(table, interval="bca", n_boot=1000, seed=1)
    sensitivity(table)                                  # how the estimate moves with the model
    estimate_by(cases, by="sector")                     # per stratum, with sparsity notes

Every estimate assumes a closed population over the period, that lists record persons
accurately (no duplicates, no false matches), and that two-list interactions are enough to
describe how lists depend on each other and on persons' catchability; what lists cannot see
at all, no model recovers. Models of persons who differ in catchability are in
:mod:`studylib.analysis.heterogeneity` (Rcapture's Mh and Mth) and
:mod:`studylib.analysis.latent_class` (LCMCR); :func:`studylib.analysis.compare_families`
puts them beside the stepwise model, and :mod:`studylib.analysis.extent_strata` estimates by
year, window of years and stratum.
"""

from __future__ import annotations

import math
import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from studylib.analysis.loglinear import (
    BIC_MAX_LISTS,
    METHODS,
    CaptureData,
    EstimationError,
    ModelCheck,
    all_histories,
    check_model,
    select,
)
from studylib.errors import Problem, StudylibError, ValidationError
from studylib.machine import usable_cores

COUNT = "count"
LIST_PREFIX = "list_"
INTERVALS = ("normal", "bca", "none")

#: ``estimate_by`` notes a stratum whose persons on two or more lists are fewer than this.
MIN_OVERLAP = 10

#: Most lists in one table (the model has ``2**m - 1`` cells).
MAX_LISTS = 12

#: BCa: a bootstrap replicate this close to the estimate (relative) is a tie, counted half below.
TIE_TOLERANCE = 1e-9

#: Bad cells reported one by one per column; the rest are counted.
SHOWN_PER_COLUMN = 20

__all__ = [
    "BootstrapSummary",
    "EstimationError",
    "ExtentWarning",
    "OverlapTableError",
    "PopulationEstimate",
    "capture_data",
    "check_terms",
    "estimate_by",
    "estimate_population",
    "overlap_table",
    "read_overlap_table",
    "sensitivity",
]


class OverlapTableError(ValidationError):
    """An overlap table (or a cases table's ``list_*`` columns) cannot be used; lists every problem."""


class ExtentWarning(UserWarning):
    """A caveat about an estimate: sparse overlaps, failed resamples, persons on none of the lists."""


# ---------------------------------------------------------------- overlap tables


def _binary_problems(frame: pd.DataFrame, columns, where: str, rule: str) -> list[Problem]:
    """One problem per cell of ``columns`` that is not 0/1 (or False/True)."""
    problems = []
    for col in columns:
        values = frame[col]
        if pd.api.types.is_bool_dtype(values.dtype):
            bad = values.isna()
        else:
            numeric = pd.to_numeric(values, errors="coerce")
            bad = numeric.isna() | ~numeric.isin([0, 1])
        wrong = values[bad.to_numpy()]
        for label, value in wrong.iloc[:SHOWN_PER_COLUMN].items():
            problems.append(Problem(where, rule, row=label, column=str(col), value=value))
        if len(wrong) > SHOWN_PER_COLUMN:
            more = len(wrong) - SHOWN_PER_COLUMN
            problems.append(Problem(where, f"{rule}: {more} more rows like the above", column=str(col)))
    return problems


def _row_problems(table: pd.DataFrame, lists: list, where: str) -> list[Problem]:
    problems = _binary_problems(table, lists, where, "a list column holds only 0 or 1")
    counts = pd.to_numeric(table[COUNT], errors="coerce")
    raw = table[COUNT]
    for label in table.index[counts.isna().to_numpy()]:
        problems.append(Problem(where, "count must be a whole number of persons", row=label, column=COUNT, value=raw[label]))
    finite = counts.notna()
    for label in table.index[(finite & (counts < 0)).to_numpy()]:
        problems.append(Problem(where, "count must not be negative", row=label, column=COUNT, value=raw[label]))
    fractional = finite & (counts >= 0) & (counts.where(finite, 0) % 1 != 0)
    for label in table.index[fractional.to_numpy()]:
        problems.append(Problem(where, "count must be a whole number of persons", row=label, column=COUNT, value=raw[label]))
    values = np.column_stack([pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float) for c in lists])
    on_none = (values == 0).all(axis=1)
    for label in table.index[on_none]:
        problems.append(
            Problem(
                where,
                "row is on no list: persons seen by no list cannot be counted (they are what is "
                "estimated); remove the row",
                row=label,
            )
        )
    return problems


def _cell_counts(flags: np.ndarray, weights: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Persons per capture history: (histories in :func:`all_histories` order, counts)."""
    histories = all_histories(m)
    powers = 1 << np.arange(m, dtype=np.int64)
    codes = flags.astype(np.int64) @ powers
    by_code = np.bincount(codes, weights=weights, minlength=1 << m)
    return histories, by_code[histories.astype(np.int64) @ powers]


def _table_problems(data: CaptureData, where: str) -> list[Problem]:
    """Problems of a well-formed table as a whole: nothing to estimate from."""
    total = data.counts.sum()
    if total == 0:
        return [Problem(where, "has no persons (every count is 0 or there are no rows)")]
    problems = []
    per_list = data.counts @ data.histories
    for name, n in zip(data.lists, per_list):
        if n == 0:
            problems.append(Problem(where, "list has no persons; remove its column", column=name))
        elif n == total:
            problems.append(
                Problem(
                    where,
                    "every person is on this list, so the table holds no one it missed and the "
                    "method has nothing to go on",
                    column=name,
                )
            )
    if not problems and not (data.counts[data.histories.sum(axis=1) > 1] > 0).any():
        problems.append(
            Problem(where, "no person is on more than one list: without overlaps there is nothing to estimate from")
        )
    return problems


def capture_data(table: pd.DataFrame, where: str = "overlap table") -> CaptureData:
    """Check an overlap table and return its counts for every capture history.

    Raises :class:`OverlapTableError` listing every problem at once: no ``count`` column,
    fewer than two or more than 12 lists, list names that are empty or contain ``:``, list values other
    than 0/1, counts that are missing, negative or fractional, a row on no list, an empty
    table, a list with no persons, a list with every person, no overlaps at all. Rows are
    named by the table's index labels. Duplicate combinations are added up.
    """
    if not isinstance(table, pd.DataFrame):
        raise OverlapTableError([Problem(where, "is not a table (pandas DataFrame)")], summary=f"{where} cannot be used")
    problems: list[Problem] = []
    if COUNT not in table.columns:
        problems.append(Problem(where, "has no 'count' column (persons seen on exactly that combination of lists)"))
    lists = [c for c in table.columns if c != COUNT]
    if len(lists) < 2:
        problems.append(
            Problem(where, f"needs at least two lists (one 0/1 column each), found {len(lists)}: {', '.join(map(str, lists)) or 'none'}")
        )
    if len(lists) > MAX_LISTS:
        problems.append(Problem(where, f"has {len(lists)} lists; at most {MAX_LISTS} can be modelled (merge small lists)"))
    for c in lists:
        if not isinstance(c, str) or not c.strip() or ":" in c:
            problems.append(Problem(where, "a list name must be non-empty text without ':'", column=str(c)))
    if len(table) == 0:
        problems.append(Problem(where, "is empty: it has no rows"))
    if not problems:
        problems = _row_problems(table, lists, where)
    if problems:
        raise OverlapTableError(problems, summary=f"{where} cannot be used")
    flags = table[lists].astype(float).to_numpy().astype(np.int8)
    weights = pd.to_numeric(table[COUNT]).to_numpy(dtype=float)
    histories, counts = _cell_counts(flags, weights, len(lists))
    data = CaptureData(tuple(lists), histories, counts)
    problems = _table_problems(data, where)
    if problems:
        raise OverlapTableError(problems, summary=f"{where} cannot be used")
    return data


def read_overlap_table(path: str | Path) -> pd.DataFrame:
    """Read and check an overlap table from CSV; errors name the file and its line numbers.

    ``path``: the CSV file (one 0/1 column per list and ``count``).

    Example::

        read_overlap_table("overlap.csv")
    """
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise OverlapTableError([Problem(str(path), f"cannot be read as CSV: {err}")], summary=f"{path} cannot be used") from err
    table.index = pd.RangeIndex(2, len(table) + 2)  # line numbers: the header is line 1
    capture_data(table, where=f"{path} (rows are line numbers)")
    return table.reset_index(drop=True)


def overlap_table(cases: pd.DataFrame, lists=None) -> pd.DataFrame:
    """Build an overlap table from the ``list_<organisation>`` columns of a cases table.

    ``lists`` names the organisations to use (without the ``list_`` prefix); by default every
    ``list_*`` column that has at least one person. The result has one 0/1 column per list
    (named without the prefix) and ``count``, one row per combination seen, fewest lists
    first. Persons on none of the chosen lists are left out with an :class:`ExtentWarning`.
    Raises :class:`OverlapTableError` if a named list has no column or a list column holds
    anything but True/False (or 0/1).

    Example::

        overlap_table(read_dataset(data_dir).cases, lists=["police", "ngo", "hotline"])
    """
    where = "cases table"
    if not isinstance(cases, pd.DataFrame):
        raise OverlapTableError([Problem(where, "is not a table (pandas DataFrame)")], summary=f"{where} cannot be used")
    present = [c for c in cases.columns if isinstance(c, str) and c.startswith(LIST_PREFIX)]
    if lists is None:
        names = [c[len(LIST_PREFIX):] for c in present]
        problems = [] if names else [Problem(where, f"has no {LIST_PREFIX}<organisation> columns")]
    else:
        names = [str(n) for n in lists]
        problems = [
            Problem(where, f"has no column for list {n!r}", column=LIST_PREFIX + n)
            for n in names
            if LIST_PREFIX + n not in cases.columns
        ]
    if not problems:
        columns = [LIST_PREFIX + n for n in names]
        problems = _binary_problems(cases, columns, where, "a list column holds only True/False (or 1/0)")
    if problems:
        raise OverlapTableError(problems, summary=f"{where}: no overlap table")
    flags = cases[columns].astype(float).to_numpy() > 0
    if lists is None:
        used = flags.any(axis=0)
        names = [n for n, u in zip(names, used) if u]
        flags = flags[:, used]
    on_none = ~flags.any(axis=1)
    if on_none.any():
        warnings.warn(
            ExtentWarning(f"{int(on_none.sum())} persons are on none of the lists {', '.join(names)} and are left out"),
            stacklevel=2,
        )
    flags = flags[~on_none]
    if not names:
        return pd.DataFrame({COUNT: pd.Series([], dtype="int64")})
    histories, counts = _cell_counts(flags, np.ones(len(flags)), len(names))
    seen = counts > 0
    table = pd.DataFrame(histories[seen].astype("int64"), columns=names)
    table[COUNT] = counts[seen].astype("int64")
    return table


# ---------------------------------------------------------------- results


def interaction_words(terms) -> str:
    """Two-list interaction terms for readers: ``centre_outreach:hotline`` is ``centre outreach × hotline``."""
    from studylib.data import vocabularies as v

    return ", ".join(" × ".join(v.label(name) for name in str(term).split(":")) for term in terms)


@dataclass(frozen=True, eq=False)
class BootstrapSummary:
    """What the BCa bootstrap did: resamples, failures, bias correction and acceleration."""

    n_boot: int
    n_failed: int  # resamples for which no model had an estimate (left out)
    bias: float  # z0, the bias correction
    acceleration: float  # a, from the jackknife
    seed: int | None
    replicates: np.ndarray  # the estimate of each resample (NaN where it failed)


@dataclass(frozen=True, eq=False)
class PopulationEstimate:
    """An estimate of the whole population, seen and unseen, with its interval.

    ``total`` is the point estimate (observed + unseen), ``lower``/``upper`` the interval
    ends at ``level`` (95% by default), ``observed`` the persons on at least one list,
    ``terms`` the two-list interactions estimated in the chosen model (``"A:B"``),
    ``dropped`` the pairs the model asked for that never overlap (term and every cell with
    both lists left out, as SparseMSE does), ``models`` a table of the
    candidate models looked at (terms, deviance, AIC, BIC, estimate, status, selected).
    """

    total: float
    lower: float
    upper: float
    observed: int
    terms: tuple[str, ...]
    dropped: tuple[str, ...]
    models: pd.DataFrame
    lists: tuple[str, ...]
    method: str
    interval: str
    level: float
    pthresh: float | None
    bootstrap: BootstrapSummary | None = None

    @property
    def unseen(self) -> float:
        """Estimated persons seen by no list (point estimate)."""
        return self.total - self.observed

    @property
    def unseen_lower(self) -> float:
        return self.lower - self.observed

    @property
    def unseen_upper(self) -> float:
        return self.upper - self.observed

    def model_label(self) -> str:
        rule = {
            "main": "main effects only (lists independent)",
            "stepwise": f"stepwise selection (Poisson p-value below {self.pthresh})",
            "bic": "lowest BIC among all models",
            "fixed": "a model fixed in advance",
        }[self.method]
        inter = "two-list interactions " + interaction_words(self.terms) if self.terms else "no two-list interactions"
        drop = f"; never overlapping, left out: {', '.join(self.dropped)}" if self.dropped else ""
        return f"{rule}; {inter}{drop}"

    def summary(self) -> str:
        """The estimate in words, as a range."""
        pct = f"{self.level:.0%}"
        if self.interval == "none":
            span = f"about {self.total:,.0f} persons in all (no interval computed)"
        else:
            span = (
                f"between {self.lower:,.0f} and {self.upper:,.0f} persons in all ({pct} "
                f"{'bootstrap BCa' if self.interval == 'bca' else 'normal'} interval; "
                f"central estimate {self.total:,.0f})"
            )
        unseen = (
            f"between {self.unseen_lower:,.0f} and {self.unseen_upper:,.0f}"
            if self.interval != "none"
            else f"about {self.unseen:,.0f}"
        )
        return (
            f"Estimated {span}. {self.observed:,} were seen by at least one of {len(self.lists)} "
            f"lists; {unseen} by none. Model: {self.model_label()}."
        )

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """Plain values (for JSON, manifests, report tables)."""
        out = {
            "total": self.total,
            "lower": self.lower,
            "upper": self.upper,
            "observed": self.observed,
            "unseen": self.unseen,
            "terms": list(self.terms),
            "dropped": list(self.dropped),
            "lists": list(self.lists),
            "method": self.method,
            "interval": self.interval,
            "level": self.level,
            "pthresh": self.pthresh,
        }
        if self.bootstrap is not None:
            b = self.bootstrap
            out["bootstrap"] = {"n_boot": b.n_boot, "n_failed": b.n_failed, "bias": b.bias, "acceleration": b.acceleration, "seed": b.seed}
        return out


# ---------------------------------------------------------------- intervals


def _normal_interval(fit, level: float) -> tuple[float, float]:
    """Normal on the log scale of the unseen count, from the intercept's standard error."""
    z = stats.norm.ppf(0.5 + level / 2)
    return (
        fit.observed + math.exp(fit.intercept - z * fit.intercept_se),
        fit.observed + math.exp(fit.intercept + z * fit.intercept_se),
    )


def _estimates_for(job: tuple) -> np.ndarray:
    """The selected model's total for each row of counts (NaN where no model has an estimate)."""
    data, count_rows, method, pthresh, pairs = job
    out = np.full(len(count_rows), np.nan)
    for k, counts in enumerate(count_rows):
        try:
            out[k] = select(data.with_counts(counts), method, pthresh, pairs).fit.total
        except EstimationError:
            pass
    return out


def _usable_workers(workers: int | None) -> int:
    if workers is not None:
        return max(1, int(workers))
    return usable_cores()


def _estimates_many(data: CaptureData, count_rows: np.ndarray, method: str, pthresh: float, pairs, workers: int) -> np.ndarray:
    """:func:`_estimates_for` over many rows, split across a process pool when ``workers > 1``."""
    # a daemonic process (e.g. a worker of another pool) may not start children: run here
    if workers <= 1 or len(count_rows) < 4 * workers or multiprocessing.current_process().daemon:
        return _estimates_for((data, count_rows, method, pthresh, pairs))
    chunks = np.array_split(count_rows, 4 * workers)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(_estimates_for, [(data, c, method, pthresh, pairs) for c in chunks])
        return np.concatenate(list(parts))


def bca_limits(replicates: np.ndarray, estimate: float, jackknife: np.ndarray, weights: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """BCa interval ends from bootstrap replicates and a weighted jackknife.

    As SparseMSE's ``bcaconfvalues``: ``z0 = Phi^-1(share of replicates below the
    estimate)``, where a replicate equal to the estimate within :data:`TIE_TOLERANCE`
    (relative) counts as half below, acceleration ``a = sum(w r^3) / (6 (sum(w r^2))^1.5)`` from the jackknife
    residuals ``r`` (each capture history weighted by its count ``w``), ends at the
    ``Phi(z0 + (z0 + z)/(1 - a (z0 + z)))`` quantiles (type 8). Returns (lower, upper, z0, a).
    """
    reps = replicates[np.isfinite(replicates)]
    # a replicate equal to the estimate (within TIE_TOLERANCE, relative) counts as half below,
    # so that floating-point noise in refits of the data's own table does not move the ends
    tie = np.abs(reps - estimate) <= TIE_TOLERANCE * abs(estimate)
    share = float(np.mean((reps < estimate) & ~tie) + 0.5 * np.mean(tie))
    share = min(max(share, 0.5 / len(reps)), 1 - 0.5 / len(reps))
    z0 = float(stats.norm.ppf(share))
    ok = np.isfinite(jackknife) & (weights > 0)
    w, jk = weights[ok], jackknife[ok]
    resid = (w @ jk) / w.sum() - jk if ok.any() else np.zeros(0)
    spread = float(w @ resid**2)
    accel = float(w @ resid**3) / (6 * spread**1.5) if spread > 0 else 0.0
    za = stats.norm.ppf([0.5 - level / 2, 0.5 + level / 2])
    shifted = z0 + za
    probs = stats.norm.cdf(z0 + shifted / (1 - accel * shifted))
    lower, upper = np.quantile(reps, probs, method="median_unbiased")
    return float(lower), float(upper), z0, accel


def _bca_interval(data, estimate, method, pthresh, pairs, level, n_boot, seed, workers) -> tuple[float, float, BootstrapSummary]:
    """Bootstrap that repeats the model selection on multinomial resamples; BCa limits."""
    rng = np.random.default_rng(seed)
    n = data.observed
    boots = rng.multinomial(n, data.counts / data.counts.sum(), size=n_boot).astype(float)
    seen = np.flatnonzero(data.counts > 0)
    jack = np.repeat(data.counts[None, :], len(seen), axis=0)
    jack[np.arange(len(seen)), seen] -= 1
    results = _estimates_many(data, np.vstack([boots, jack]), method, pthresh, pairs, _usable_workers(workers))
    replicates, jack_est = results[:n_boot], results[n_boot:]
    failed = int(np.isnan(replicates).sum())
    if n_boot - failed < 10:
        raise EstimationError(
            f"the bootstrap failed: only {n_boot - failed} of {n_boot} resamples had an estimate",
            reason="bootstrap_failed",
        )
    if failed:
        warnings.warn(
            ExtentWarning(
                f"{failed} of {n_boot} bootstrap resamples had no estimate (a list emptied or no "
                "model existed) and were left out; the interval may be too narrow"
            ),
            stacklevel=3,
        )
    lower, upper, z0, accel = bca_limits(replicates, estimate, jack_est, data.counts[seen], level)
    return lower, upper, BootstrapSummary(n_boot, failed, z0, accel, seed, replicates)


# ---------------------------------------------------------------- the estimate


def _argument_problems(method, interval, pthresh, level, n_boot, terms) -> list[str]:
    wrong = []
    if method not in METHODS:
        wrong.append(f"method {method!r} is not one of {', '.join(METHODS)}")
    if interval not in INTERVALS:
        wrong.append(f"interval {interval!r} is not one of {', '.join(INTERVALS)}")
    if not 0 <= pthresh <= 1:
        wrong.append(f"pthresh must lie between 0 and 1, got {pthresh!r}")
    if not 0 < level < 1:
        wrong.append(f"level must lie strictly between 0 and 1, got {level!r}")
    if interval == "bca" and (int(n_boot) != n_boot or n_boot < 20):
        wrong.append(f"n_boot must be a whole number of at least 20, got {n_boot!r}")
    if terms is not None and method != "fixed":
        wrong.append("terms are only used with method='fixed'")
    if method == "fixed" and terms is None:
        wrong.append("method='fixed' needs terms, e.g. terms=['A:B'] (or [] for main effects)")
    return wrong


def _as_data(table, where: str = "overlap table") -> CaptureData:
    if isinstance(table, CaptureData):
        return table
    if isinstance(table, (str, Path)):
        return capture_data(read_overlap_table(table), where=str(table))
    return capture_data(table, where=where)


def estimate_population(
    table,
    method: str = "stepwise",
    pthresh: float = 0.02,
    interval: str = "normal",
    n_boot: int = 1000,
    seed: int | None = None,
    *,
    terms=None,
    level: float = 0.95,
    workers: int | None = None,
) -> PopulationEstimate:
    """Estimate the whole population (seen and unseen) from an overlap table.

    ``table``: an overlap table (DataFrame with one 0/1 column per list and ``count``, see
    :func:`overlap_table`) or the path of one as CSV. A Poisson log-linear model (GLM on
    every observable combination of lists, zero cells included) is fitted and the unseen
    count is ``exp(intercept)``; ``total = observed + unseen``.

    ``method``:
      - ``"stepwise"`` (default, the rule of SparseMSE): start from main effects, add the
        two-list interaction whose observed overlap is least likely under the current fit
        (one-sided Poisson p-value ``min(P(X<=n), P(X>=n))``) while that p-value is below
        ``pthresh``; interactions whose model has no estimate are never added.
      - ``"main"``: main effects only (lists independent).
      - ``"bic"``: lowest BIC among every set of two-list interactions with an estimate
        (up to 5 lists).
      - ``"fixed"``: exactly the interactions in ``terms`` (e.g. ``["A:B", "B:C"]``).

    A pair of lists that never overlap has its interaction dropped with all cells containing
    both lists (reported in ``.dropped``). Every model is checked before it is trusted
    (:func:`check_terms`); a model whose MLE does not exist or is not identifiable is never
    reported: :class:`EstimationError` says why.

    ``interval``: ``"normal"`` (normal on the log scale of the unseen count, from the
    intercept's standard error; ignores that the model was chosen from the data),
    ``"bca"`` (``n_boot`` multinomial resamples of the table, the whole ``method`` repeated on
    each, bias-corrected and accelerated with a jackknife; reproducible with ``seed`` and
    run in ``workers`` processes, by default one per available core) or ``"none"``.
    ``level``: coverage of the interval (0.95).

    Raises :class:`OverlapTableError` for a table that cannot be used (all problems listed)
    and :class:`EstimationError` when no estimate can be given.

    Example::

        estimate_population(overlap_table(cases), method="stepwise", pthresh=0.02, seed=1).total
    """
    wrong = _argument_problems(method, interval, pthresh, level, n_boot, terms)
    if wrong:
        raise EstimationError("estimate_population: " + "; ".join(wrong), reason="bad_argument")
    data = _as_data(table)
    pairs = None if terms is None else [data.pair_of(t) for t in terms]
    chosen = select(data, method, pthresh, pairs)
    fit = chosen.fit
    models = pd.DataFrame(chosen.rows)
    boot = None
    if interval == "normal":
        lower, upper = _normal_interval(fit, level)
    elif interval == "bca":
        lower, upper, boot = _bca_interval(data, fit.total, method, pthresh, pairs, level, int(n_boot), seed, workers)
    else:
        lower = upper = float("nan")
    return PopulationEstimate(
        total=float(fit.total),
        lower=float(lower),
        upper=float(upper),
        observed=data.observed,
        terms=data.terms(p for p in fit.pairs if p not in fit.dropped),
        dropped=data.terms(fit.dropped),
        models=models,
        lists=data.lists,
        method=method,
        interval=interval,
        level=level,
        pthresh=pthresh if method == "stepwise" else None,
        bootstrap=boot,
    )


def check_terms(table, terms=()) -> ModelCheck:
    """Whether the model with two-list interactions ``terms`` (e.g. ``["A:B"]``) has an estimate.

    Returns a :class:`~studylib.analysis.loglinear.ModelCheck`: ``.exists`` (Fienberg-Rinaldo
    linear programme), ``.identifiable`` (full-rank design), ``.ok``, ``.explain()``.

    ``table``: an overlap table (see :func:`overlap_table`) or the path of one as CSV.

    Example::

        table = overlap_table(read_dataset(data_dir).cases)
        check_terms(table, ["police:ngo"]).ok
    """
    data = _as_data(table)
    return check_model(data, [data.pair_of(t) for t in terms])


# ---------------------------------------------------------------- strata and sensitivity


def estimate_by(cases: pd.DataFrame, by: str, lists=None, method: str = "stepwise", *, min_overlap: int = MIN_OVERLAP, **options) -> pd.DataFrame:
    """Estimates for each value of the cases column ``by`` (e.g. ``"sector"``, ``"first_contact_year"``).

    Each stratum gets its own overlap table (``lists`` as in :func:`overlap_table`; by default
    the lists with persons in that stratum) and :func:`estimate_population` with ``method``
    and ``options`` (``pthresh``, ``interval``, ``n_boot``, ``seed``, ``level``, ...).

    Returns one row per stratum: ``by``, ``persons``, ``lists`` (how many), ``overlaps``
    (persons on two or more lists), ``total``, ``lower``, ``upper``, ``unseen``, ``terms``,
    ``dropped`` and ``note``. A stratum with fewer than ``min_overlap`` persons on two or
    more lists, with never-overlapping pairs, or without an estimate is noted (in words),
    and one :class:`ExtentWarning` lists them all. A stratum that cannot be estimated gets
    NaN and the reason in ``note``; it never stops the others.

    Example::

        estimate_by(read_dataset(data_dir).cases, "sector", method="main", min_overlap=10)
    """
    if not isinstance(cases, pd.DataFrame) or by not in cases.columns:
        raise OverlapTableError([Problem("cases table", f"has no column {by!r} to stratify by", column=by)], summary="estimate_by")
    rows, sparse = [], []
    for value, group in cases.groupby(by, dropna=False, sort=True, observed=True):
        key = value[0] if isinstance(value, tuple) else value
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ExtentWarning)
            table = overlap_table(group, lists)
        list_names = [c for c in table.columns if c != COUNT]
        overlaps = int(table.loc[table[list_names].sum(axis=1) > 1, COUNT].sum()) if list_names else 0
        row = {
            by: key,
            "persons": int(len(group)),
            "lists": len(list_names),
            "overlaps": overlaps,
            "total": np.nan,
            "lower": np.nan,
            "upper": np.nan,
            "unseen": np.nan,
            "terms": "",
            "dropped": "",
        }
        notes = [str(w.message) for w in caught]
        try:
            est = estimate_population(table, method, **options)
        except StudylibError as err:
            notes.append(str(err).replace("\n", " "))
        else:
            row.update(total=est.total, lower=est.lower, upper=est.upper, unseen=est.unseen, terms=", ".join(est.terms), dropped=", ".join(est.dropped))
            if est.dropped:
                notes.append(f"lists that never overlap here (interaction left out): {', '.join(est.dropped)}")
        if overlaps < min_overlap:
            notes.insert(0, f"only {overlaps} persons on two or more lists (fewer than {min_overlap}): too sparse to trust")
        row["note"] = "; ".join(notes)
        if row["note"]:
            sparse.append(f"{key} ({notes[0]})")
        rows.append(row)
    if sparse:
        warnings.warn(
            ExtentWarning(f"estimate_by({by!r}): overlaps too sparse or no estimate in {len(sparse)} strata: " + "; ".join(sparse)),
            stacklevel=2,
        )
    return pd.DataFrame(rows)


def sensitivity(table, pthresholds=(0.001, 0.01, 0.02, 0.05), interval: str = "normal", **options) -> pd.DataFrame:
    """How the estimate moves with the model: one row per method and threshold.

    Rows: main effects; stepwise at each of ``pthresholds``; BIC (up to 5 lists); all
    two-list interactions. Columns: ``model``, ``method``, ``pthresh``, ``terms``,
    ``dropped``, ``total``, ``lower``, ``upper``, ``note``. A model without an estimate gets
    NaN and the reason in ``note``. ``options`` go to :func:`estimate_population`
    (``level``, ``n_boot``, ``seed``, ``workers``).

    ``table``: an overlap table (or its CSV path); ``interval``: how each model's interval is
    made (``"normal"``, ``"profile"`` or ``"bootstrap"``), as for :func:`estimate_population`.

    Example::

        sensitivity(overlap_table(cases), pthresholds=(0.01, 0.05))
    """
    data = _as_data(table)
    runs = [("main effects only", "main", None, None)]
    runs += [(f"stepwise, p < {p:g}", "stepwise", p, None) for p in pthresholds]
    runs.append(("lowest BIC", "bic", None, None))
    runs.append(("all two-list interactions", "fixed", None, list(data.terms(data.pairs))))
    rows = []
    for label, method, p, terms in runs:
        row = {"model": label, "method": method, "pthresh": p, "terms": "", "dropped": "", "total": np.nan, "lower": np.nan, "upper": np.nan, "note": ""}
        if method == "bic" and len(data.lists) > BIC_MAX_LISTS:
            row["note"] = f"not run: BIC searches every model and is limited to {BIC_MAX_LISTS} lists"
            rows.append(row)
            continue
        try:
            est = estimate_population(data, method, pthresh=p if p is not None else 0.02, interval=interval, terms=terms, **options)
        except EstimationError as err:
            row["note"] = str(err)
        else:
            row.update(terms=", ".join(est.terms), dropped=", ".join(est.dropped), total=est.total, lower=est.lower, upper=est.upper)
        rows.append(row)
    return pd.DataFrame(rows)
