"""Extent over time and by stratum: years, windows of years, a closure test, strata summed.

This module owns the estimates that split the persons before estimating:

- :func:`estimate_periods`: one estimate per year and per window of ``window`` consecutive
  years (3 by default), each window with its test of closure (:func:`closure_test`) and the
  sum of its yearly estimates beside it;
- :func:`closure_test`: whether the lists see persons alike in every year of a window, which
  pooling the years into one closed population assumes;
- :func:`estimate_strata`: one estimate per stratum (sector, sex, age band, ...) with the sum
  of the strata beside the pooled estimate.

A multiple systems estimate assumes a closed population: the same persons exposed to every
list over the period. Pooled over ten years, persons who came and went, and lists whose reach
changed, look like persons who differ in catchability, and the estimate is biased. Within a
few years that is less so; the closure test says when even a window is too long.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from studylib.analysis.extent import COUNT, ExtentWarning, OverlapTableError, estimate_by, estimate_population, overlap_table
from studylib.analysis.loglinear import poisson_glm
from studylib.errors import Problem, StudylibError

YEAR = "first_contact_year"


def closure_test(cases: pd.DataFrame, by: str = YEAR, lists=None) -> dict:
    """Likelihood-ratio test that every list sees persons alike in every value of ``by``.

    The persons of each year (``by``) are counted by capture history (all ``2**m - 1``
    histories of the lists used, zero cells included). Two Poisson log-linear models of
    these counts are compared: *closed* (a level per year, list effects common to all years:
    the lists' catchability does not change, as pooling the years assumes) and *open* (list
    effects per year). The deviance difference is referred to chi-squared with
    ``(years - 1) * lists`` degrees of freedom. Returns ``statistic``, ``df``, ``p_value``,
    ``years`` and ``lists``. A small p-value says the years should not be pooled.

    ``cases``: the cases table (one row per person, with its ``list_<organisation>`` columns).

    Example::

        closure_test(read_dataset(data_dir).cases, by="first_contact_year")["p_value"]
    """
    if by not in cases.columns:
        raise OverlapTableError([Problem("cases table", f"has no column {by!r} to test closure over", column=by)], summary="closure_test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtentWarning)
        table = overlap_table(cases, lists)
    names = [c for c in table.columns if c != COUNT]
    m = len(names)
    groups = sorted(cases[by].dropna().unique())
    if len(groups) < 2 or m < 2:
        return {"statistic": np.nan, "df": 0, "p_value": np.nan, "years": len(groups), "lists": m}
    from studylib.analysis.loglinear import all_histories

    h = all_histories(m).astype(float)
    blocks_y, rows_closed, rows_open = [], [], []
    g = len(groups)
    for gi, value in enumerate(groups):
        sub = cases[cases[by] == value]
        flags = sub[[f"list_{n}" for n in names]].astype(float).to_numpy() > 0
        flags = flags[flags.any(axis=1)]
        powers = 1 << np.arange(m)
        codes = flags.astype(np.int64) @ powers
        by_code = np.bincount(codes, minlength=1 << m)
        blocks_y.append(by_code[h.astype(np.int64) @ powers].astype(float))
        level = np.zeros((len(h), g))
        level[:, gi] = 1.0
        rows_closed.append(np.hstack([level, h]))
        own = np.zeros((len(h), g * m))
        own[:, gi * m : (gi + 1) * m] = h
        rows_open.append(np.hstack([level, own]))
    y = np.concatenate(blocks_y)
    closed = poisson_glm(np.vstack(rows_closed), y)
    opened = poisson_glm(np.vstack(rows_open), y)
    statistic = max(0.0, closed.deviance - opened.deviance)
    df = (g - 1) * m
    return {"statistic": float(statistic), "df": int(df), "p_value": float(stats.chi2.sf(statistic, df)), "years": g, "lists": m}


def _windows(years: list[int], window: int) -> list[tuple[int, int]]:
    """Windows of ``window`` years counted back from the last year, oldest first: the last
    window is whole (the one a report's headline covers) and the first may be shorter."""
    first, last = min(years), max(years)
    return [(max(e - window + 1, first), e) for e in range(last, first - 1, -window)][::-1]


def estimate_periods(cases: pd.DataFrame, window: int = 3, by: str = YEAR, lists=None, method: str = "stepwise", *, alpha: float = 0.05, **options) -> pd.DataFrame:
    """Estimates per year and per window of ``window`` years of ``by`` (first contact).

    Rows: every year (``kind`` ``"year"``), then every window (``kind`` ``"window"``, e.g.
    ``2016–2018``, counted back from the last year, so the last window is whole and the
    first may be shorter) with ``sum_of_years`` (the sum of its years'
    central estimates, NaN when one is missing), and the closure test's ``closure_p``
    (:func:`closure_test`); ``closed`` is False when ``closure_p < alpha``. Other columns as
    :func:`~studylib.analysis.extent.estimate_by` (``persons``, ``overlaps``, ``total``,
    ``lower``, ``upper``, ``note``). ``method`` and ``options`` go to
    :func:`~studylib.analysis.extent.estimate_population`.

    ``cases``: the cases table; ``lists``: the organisations used as lists (default: every
    list with persons), as in :func:`~studylib.analysis.extent.overlap_table`.

    Example::

        estimate_periods(read_dataset(data_dir).cases, window=3, method="main")
    """
    if int(window) != window or window < 1:
        raise StudylibError(f"window must be a whole number of years, at least 1; got {window!r}")
    if by not in cases.columns:
        raise OverlapTableError([Problem("cases table", f"has no column {by!r} of years", column=by)], summary="estimate_periods")
    years = sorted(int(y) for y in cases[by].dropna().unique())
    if not years:
        raise OverlapTableError([Problem("cases table", f"column {by!r} has no years", column=by)], summary="estimate_periods")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtentWarning)
        yearly = estimate_by(cases, by=by, lists=lists, method=method, **options)
    yearly = yearly.rename(columns={by: "period"}).assign(kind="year", period=lambda f: f["period"].astype(int).astype(str))
    rows = []
    for start, end in _windows(years, int(window)):
        part = cases[cases[by].between(start, end)]
        label = f"{start}–{end}" if end > start else str(start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExtentWarning)
            table = overlap_table(part, lists)
        names = [c for c in table.columns if c != COUNT]
        row = {"period": label, "kind": "window", "persons": len(part), "lists": len(names),
               "overlaps": int(table.loc[table[names].sum(axis=1) > 1, COUNT].sum()) if names else 0,
               "total": np.nan, "lower": np.nan, "upper": np.nan, "note": ""}
        try:
            est = estimate_population(table, method, **{k: v for k, v in options.items() if k != "min_overlap"})
            row.update(total=est.total, lower=est.lower, upper=est.upper, unseen=est.unseen, terms=", ".join(est.terms))
        except StudylibError as err:
            row["note"] = str(err).replace("\n", " ")
        in_window = yearly[yearly["period"].astype(int).between(start, end)]
        row["sum_of_years"] = float(in_window["total"].sum()) if in_window["total"].notna().all() and len(in_window) else np.nan
        test = closure_test(part, by=by, lists=lists)
        row["closure_p"] = test["p_value"]
        row["closed"] = bool(not (test["p_value"] < alpha)) if np.isfinite(test["p_value"]) else None
        rows.append(row)
    out = pd.concat([yearly, pd.DataFrame(rows)], ignore_index=True)
    columns = ["period", "kind", "persons", "lists", "overlaps", "lower", "total", "upper", "sum_of_years", "closure_p", "closed", "note"]
    return out.reindex(columns=columns)


def estimate_strata(cases: pd.DataFrame, by: str, lists=None, method: str = "stepwise", **options) -> pd.DataFrame:
    """One estimate per value of ``by`` (sector, sex, age band ...), then their sum and the pooled one.

    As :func:`~studylib.analysis.extent.estimate_by`, plus two last rows: ``sum of strata``
    (the strata's central estimates and interval ends added up; NaN when a stratum has no
    estimate, with the note saying which) and ``pooled`` (one estimate of all persons). When
    strata differ in catchability the pooled estimate is lower than the sum: the difference
    shows what pooling hides. Interval ends are added as a rough guide (they are not an
    interval of the sum).

    ``cases``: the cases table; ``lists``: the organisations used as lists; ``method`` and
    ``options``: as for :func:`~studylib.analysis.extent.estimate_population`.

    Example::

        estimate_strata(read_dataset(data_dir).cases, "sex", method="main")
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtentWarning)
        strata = estimate_by(cases, by=by, lists=lists, method=method, **options)
        pooled = estimate_population(overlap_table(cases, lists), method, **{k: v for k, v in options.items() if k != "min_overlap"})
    missing = strata.loc[strata["total"].isna(), by].astype(str).tolist()
    total = {c: float(strata[c].sum()) if not missing else np.nan for c in ("total", "lower", "upper")}
    summed = {by: "sum of strata", "persons": int(strata["persons"].sum()), "overlaps": int(strata["overlaps"].sum()), **total,
              "note": f"no estimate in {', '.join(missing)}" if missing else "interval ends added up: a rough guide, not an interval"}
    whole = {by: "pooled", "persons": len(cases), "overlaps": np.nan, "total": pooled.total, "lower": pooled.lower, "upper": pooled.upper,
             "terms": ", ".join(pooled.terms), "note": "one estimate of all persons together"}
    return pd.concat([strata, pd.DataFrame([summed, whole])], ignore_index=True)
