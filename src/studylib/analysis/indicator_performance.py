"""Indicator performance: how the indicators and the ILO classification behave on the data.

Counts are kept apart from what is derived from them, so that disclosure control acts on the
counts and the rates are then computed from the controlled counts:

- :func:`indicator_prevalence_counts`, :func:`dimension_prevalence_counts` (persons and persons
  with each indicator / dimension, by sector) and :func:`wilson_rates` (proportion and Wilson
  interval of any count over its total);
- :func:`agreement_counts` (the confusion table of the ILO classification against the
  official identification decision) and :func:`agreement_statistics` (sensitivity,
  specificity, predictive values, observed agreement, Cohen's kappa);
- :func:`indicator_accuracy_counts` and :func:`indicator_accuracy` (per indicator:
  sensitivity, specificity and likelihood ratios against the official decision);
- :func:`identification_model` (logistic regression of identification on the dimensions,
  sex, age band and sector: odds ratios with intervals, statsmodels GLM Binomial) and
  :func:`model_counts` (the persons and identified persons behind each level of the model).

The rate functions accept counts after disclosure control: a suppressed (missing) count
makes what needs it NaN. The confusion table goes to ``privacy.protect_table`` as it is;
the prevalence and accuracy counts are multi-response (a person has several indicators), so
protect them per indicator (with / without by group), not with summed margins.

The official decision is the reference: ``identified`` is positive, ``not_identified``
negative; persons with a ``pending`` decision are left out of agreement, accuracy and the
model (their number is in ``.attrs["excluded_pending"]``). ``cases`` is the cases table of a
dataset (one row per person: ``person_id``, ``sector``, ``sex``, ``age_band``,
``age_at_first_contact``, ``exploitation``, ``decision``); pass only the persons who should
count (for example those interviewed).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import proportion_confint

from studylib.data import vocabularies
from studylib.errors import Problem, ValidationError
from studylib.indicators import classify, dimensions
from studylib.indicators.catalogue import as_catalogue

#: Label of the row that pools all groups in prevalence tables.
ALL = "all"
POSITIVE, NEGATIVE = "identified", "not_identified"


class PerformanceError(ValidationError):
    """The tables given to an indicator-performance helper do not fit together."""


def _require(table: pd.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise PerformanceError([Problem(where=name, column=c, rule="missing column") for c in missing],
                               summary=f"{name} lacks columns")


def classify_cases(indicators: pd.DataFrame, cases: pd.DataFrame, catalogue=None) -> pd.DataFrame:
    """:func:`~studylib.indicators.classify` the persons of a cases table (age at first contact)."""
    _require(cases, "cases", ("person_id", "age_at_first_contact", "exploitation"))
    persons = cases[["person_id", "exploitation"]].assign(age=cases["age_at_first_contact"])
    return classify(indicators, persons, catalogue)


def _group_order(values: pd.Series, by: str) -> list:
    """Groups in vocabulary order where ``by`` is a vocabulary, else sorted; only those present."""
    present = set(values.dropna().unique())
    vocab = vocabularies.VOCABULARIES.get(by)
    if vocab is not None:
        return [v for v in vocab if v in present] + sorted(present - set(vocab), key=str)
    return sorted(present, key=str)


# -- prevalence -------------------------------------------------------------------------------

def indicator_prevalence_counts(
    indicators: pd.DataFrame, cases: pd.DataFrame, by: str = "sector", catalogue=None, overall: bool = True
) -> pd.DataFrame:
    """Persons, and persons with each catalogue indicator, per group of ``by`` (counts only).

    Columns: ``<by>, dimension, indicator, persons, with_indicator``; every indicator of the
    catalogue appears in every group (zeros included); with ``overall`` a group ``all`` pools
    the groups. Indicator rows of persons not in ``cases`` are left out.
    """
    _require(indicators, "indicators", ("person_id", "indicator"))
    _require(cases, "cases", ("person_id", by))
    table = as_catalogue(catalogue)
    codes = table.drop_duplicates("code")[["dimension", "code"]].rename(columns={"code": "indicator"})
    group_of = cases.set_index("person_id")[by]
    found = indicators[["person_id", "indicator"]].drop_duplicates()
    found = found[found["person_id"].isin(group_of.index)]
    unknown = sorted(set(found["indicator"]) - set(codes["indicator"]))
    if unknown:
        raise PerformanceError([Problem(where="indicators", column="indicator", value=u,
                                        rule=f"unknown indicator code (not in catalogue {table.attrs['version']})") for u in unknown],
                               summary="unknown indicators")
    found = found.assign(**{by: found["person_id"].map(group_of).to_numpy()})
    groups = _group_order(cases[by], by)
    persons = cases.groupby(by, sort=False).size()
    if overall:
        groups = [*groups, ALL]
        persons[ALL] = len(cases)
        found = pd.concat([found, found.assign(**{by: ALL})], ignore_index=True)
    hits = found.groupby([by, "indicator"], sort=False).size()
    grid = pd.MultiIndex.from_product([groups, codes["indicator"]], names=[by, "indicator"])
    out = grid.to_frame(index=False)
    out.insert(1, "dimension", out["indicator"].map(codes.set_index("indicator")["dimension"]))
    out["persons"] = out[by].map(persons).astype("int64")
    out["with_indicator"] = hits.reindex(grid, fill_value=0).to_numpy().astype("int64")
    out.attrs = {"catalogue_version": table.attrs["version"], "counts": ["persons", "with_indicator"]}
    return out


def dimension_prevalence_counts(
    classification: pd.DataFrame, cases: pd.DataFrame, by: str = "sector", overall: bool = True
) -> pd.DataFrame:
    """Persons, and persons with each dimension present (and presumed victims), per group.

    ``classification`` is the result of :func:`~studylib.indicators.classify`. Columns:
    ``<by>, dimension, persons, present`` (``dimension`` includes ``presumed_victim``).
    """
    dims = _dimension_columns(classification)
    _require(cases, "cases", ("person_id", by))
    merged = cases[["person_id", by]].merge(classification[["person_id", *dims, "presumed_victim"]],
                                            on="person_id", how="inner", validate="one_to_one")
    items = [*dims, "presumed_victim"]
    sums = merged.groupby(by, sort=False)[items].sum()
    persons = merged.groupby(by, sort=False).size()
    groups = _group_order(merged[by], by)
    if overall:
        sums.loc[ALL] = merged[items].sum()
        persons[ALL] = len(merged)
        groups = [*groups, ALL]
    sums = sums.reindex(groups)
    out = sums.rename_axis(columns="dimension").stack().rename("present").reset_index()
    out.insert(2, "persons", out[by].map(persons).astype("int64"))
    out["present"] = out["present"].astype("int64")
    out.attrs = {"catalogue_version": classification.attrs.get("catalogue_version"), "counts": ["persons", "present"]}
    return out


def wilson_rates(counts: pd.DataFrame, count: str, total: str = "persons", alpha: float = 0.05) -> pd.DataFrame:
    """Add ``proportion, ci_low, ci_high`` (Wilson score interval) of ``count`` over ``total``.

    Works on any counts table, typically after disclosure control; a total of 0 (or a missing,
    suppressed count) gives NaN.
    """
    _require(counts, "counts", (count, total))
    k = pd.to_numeric(counts[count], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    n = pd.to_numeric(counts[total], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    ok = (n > 0) & ~np.isnan(k)
    low = np.full(len(k), np.nan)
    high = np.full(len(k), np.nan)
    if ok.any():
        low[ok], high[ok] = proportion_confint(k[ok], n[ok], alpha=alpha, method="wilson")
    out = counts.copy()
    out["proportion"] = np.divide(k, n, out=np.full(len(k), np.nan), where=ok)
    out["ci_low"], out["ci_high"] = low, high
    out.attrs = {**counts.attrs, "interval": f"Wilson {1 - alpha:.0%}"}
    return out


# -- agreement with the official decision -----------------------------------------------------

def _dimension_columns(classification: pd.DataFrame) -> list[str]:
    """The dimension columns of a :func:`classify` result (recorded in its ``.attrs``)."""
    _require(classification, "classification", ("person_id", "presumed_victim"))
    dims = classification.attrs.get("dimensions")
    if dims is None:  # attrs lost (e.g. after a merge): the shipped catalogue's dimensions
        dims = dimensions()["dimension"].tolist()
    _require(classification, "classification", tuple(dims))
    return list(dims)


def _decided(classification: pd.DataFrame, cases: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, int]:
    """Classification joined to the decided cases; the number of pending cases left out."""
    _require(cases, "cases", ("person_id", "decision"))
    bad = sorted(set(cases["decision"].dropna()) - set(vocabularies.DECISION))
    if bad:
        raise PerformanceError([Problem(where="cases", column="decision", value=b,
                                        rule=f"unknown decision; codes are {', '.join(vocabularies.DECISION)}") for b in bad],
                               summary="unknown decisions")
    merged = cases[["person_id", "decision", *[c for c in columns if c in cases.columns]]].merge(
        classification, on="person_id", how="inner", validate="one_to_one")
    decided = merged["decision"].isin([POSITIVE, NEGATIVE])
    return merged[decided].assign(identified=(merged.loc[decided, "decision"] == POSITIVE).to_numpy()), int((~decided).sum())


def agreement_counts(classification: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """The confusion table: ILO classification (rows) against the official decision (columns).

    Rows ``presumed_victim``, ``not_presumed``; columns ``identified``, ``not_identified``;
    cells are persons (zeros included). Pending decisions are left out.
    """
    merged, pending = _decided(classification, cases, [])
    ilo = np.where(merged["presumed_victim"].to_numpy(), "presumed_victim", "not_presumed")
    table = pd.crosstab(pd.Series(ilo, name="ilo_classification"), pd.Series(merged["decision"].to_numpy(), name="decision"))
    table = table.reindex(index=["presumed_victim", "not_presumed"], columns=[POSITIVE, NEGATIVE], fill_value=0).astype("int64")
    table.attrs = {"catalogue_version": classification.attrs.get("catalogue_version"), "excluded_pending": pending}
    return table


def _proportion_row(measure: str, k: float, n: float, alpha: float) -> dict:
    if n > 0:
        low, high = proportion_confint(k, n, alpha=alpha, method="wilson")
        return {"measure": measure, "estimate": k / n, "ci_low": low, "ci_high": high, "numerator": k, "denominator": n}
    return {"measure": measure, "estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "numerator": k, "denominator": n}


def agreement_statistics(confusion: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Sensitivity, specificity, predictive values, agreement and Cohen's kappa of a confusion table.

    The official decision is the reference. Proportions have Wilson intervals; kappa has the
    asymptotic interval from its standard error (statsmodels ``cohens_kappa``).
    """
    rows_needed, cols_needed = ["presumed_victim", "not_presumed"], [POSITIVE, NEGATIVE]
    if not (set(rows_needed) <= set(confusion.index) and set(cols_needed) <= set(confusion.columns)):
        raise PerformanceError([Problem(where="confusion table", rule="needs rows presumed_victim, not_presumed and columns identified, not_identified (as agreement_counts returns)")],
                               summary="not a confusion table")
    t = confusion.loc[rows_needed, cols_needed].apply(pd.to_numeric, errors="coerce").astype("float64")  # suppressed cells: NaN
    tp, fp = t.loc["presumed_victim", POSITIVE], t.loc["presumed_victim", NEGATIVE]
    fn, tn = t.loc["not_presumed", POSITIVE], t.loc["not_presumed", NEGATIVE]
    n = tp + fp + fn + tn
    rows = [
        _proportion_row("sensitivity", tp, tp + fn, alpha),
        _proportion_row("specificity", tn, tn + fp, alpha),
        _proportion_row("positive_predictive_value", tp, tp + fp, alpha),
        _proportion_row("negative_predictive_value", tn, tn + fn, alpha),
        _proportion_row("observed_agreement", tp + tn, n, alpha),
    ]
    kappa = {"measure": "cohens_kappa", "estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "numerator": np.nan, "denominator": n}
    if n > 0:  # False when a cell is suppressed (NaN)
        with np.errstate(invalid="ignore", divide="ignore"):
            res = cohens_kappa(t.to_numpy())
        z = stats.norm.ppf(1 - alpha / 2)
        se = float(np.sqrt(res.var_kappa)) if res.var_kappa >= 0 else np.nan
        kappa.update(estimate=float(res.kappa), ci_low=float(res.kappa) - z * se, ci_high=float(res.kappa) + z * se)
    out = pd.DataFrame([*rows, kappa])
    out.attrs = {**confusion.attrs, "interval": f"{1 - alpha:.0%}", "reference": "official identification decision"}
    return out


# -- per-indicator accuracy -------------------------------------------------------------------

def indicator_accuracy_counts(indicators: pd.DataFrame, cases: pd.DataFrame, catalogue=None) -> pd.DataFrame:
    """Per catalogue indicator, persons by decision and whether the indicator was found (counts).

    Columns: ``dimension, indicator, identified_with, identified_without, not_identified_with,
    not_identified_without``. Pending decisions are left out.
    """
    _require(cases, "cases", ("person_id", "decision"))
    decided = cases[cases["decision"].isin([POSITIVE, NEGATIVE])]
    counts = indicator_prevalence_counts(indicators, decided, by="decision", catalogue=catalogue, overall=False)
    wide = counts.pivot(index=["dimension", "indicator"], columns="decision", values="with_indicator")
    persons = decided["decision"].value_counts()
    n_pos, n_neg = int(persons.get(POSITIVE, 0)), int(persons.get(NEGATIVE, 0))
    order = counts.drop_duplicates("indicator")[["dimension", "indicator"]]
    wide = wide.reindex(pd.MultiIndex.from_frame(order)).reindex(columns=[POSITIVE, NEGATIVE], fill_value=0).fillna(0).astype("int64")
    out = order.reset_index(drop=True)
    out["identified_with"] = wide[POSITIVE].to_numpy()
    out["identified_without"] = n_pos - out["identified_with"]
    out["not_identified_with"] = wide[NEGATIVE].to_numpy()
    out["not_identified_without"] = n_neg - out["not_identified_with"]
    out.attrs = {"catalogue_version": counts.attrs["catalogue_version"], "excluded_pending": int(len(cases) - len(decided)),
                 "counts": ["identified_with", "identified_without", "not_identified_with", "not_identified_without"]}
    return out


def indicator_accuracy(counts: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Sensitivity and specificity (Wilson intervals) and likelihood ratios (log-method intervals).

    ``counts`` is :func:`indicator_accuracy_counts` (possibly after disclosure control).
    ``lr_positive = sensitivity / (1 - specificity)``, ``lr_negative = (1 - sensitivity) /
    specificity``; the interval of a ratio is NaN when a cell it needs is 0.
    """
    cols = ("identified_with", "identified_without", "not_identified_with", "not_identified_without")
    _require(counts, "counts", cols)
    a, b, c, d = (pd.to_numeric(counts[k], errors="coerce").to_numpy(dtype="float64", na_value=np.nan) for k in cols)
    out = counts.copy()
    sens = wilson_rates(pd.DataFrame({"k": a, "n": a + b}), "k", "n", alpha)
    spec = wilson_rates(pd.DataFrame({"k": d, "n": c + d}), "k", "n", alpha)
    out["sensitivity"], out["sensitivity_low"], out["sensitivity_high"] = sens["proportion"].to_numpy(), sens["ci_low"].to_numpy(), sens["ci_high"].to_numpy()
    out["specificity"], out["specificity_low"], out["specificity_high"] = spec["proportion"].to_numpy(), spec["ci_low"].to_numpy(), spec["ci_high"].to_numpy()
    z = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        se_sens, sp = out["sensitivity"].to_numpy(), out["specificity"].to_numpy()
        lr_pos = se_sens / (1 - sp)
        lr_neg = (1 - se_sens) / sp
        se_pos = np.sqrt(1 / a - 1 / (a + b) + 1 / c - 1 / (c + d))
        se_neg = np.sqrt(1 / b - 1 / (a + b) + 1 / d - 1 / (c + d))
        # both branches of np.where are computed: the logs of 0 or inf ratios stay quiet here
        log_pos, log_neg = np.log(lr_pos), np.log(lr_neg)
        finite_pos = (a > 0) & (c > 0)
        finite_neg = (b > 0) & (d > 0)
        out["lr_positive"] = np.where(np.isfinite(lr_pos), lr_pos, np.nan)
        out["lr_positive_low"] = np.where(finite_pos, np.exp(log_pos - z * se_pos), np.nan)
        out["lr_positive_high"] = np.where(finite_pos, np.exp(log_pos + z * se_pos), np.nan)
        out["lr_negative"] = np.where(np.isfinite(lr_neg), lr_neg, np.nan)
        out["lr_negative_low"] = np.where(finite_neg, np.exp(log_neg - z * se_neg), np.nan)
        out["lr_negative_high"] = np.where(finite_neg, np.exp(log_neg + z * se_neg), np.nan)
    out.attrs = {**counts.attrs, "interval": f"{1 - alpha:.0%}", "reference": "official identification decision"}
    return out


# -- logistic regression of identification ------------------------------------------------------

def _model_data(classification: pd.DataFrame, cases: pd.DataFrame, covariates: tuple[str, ...]) -> tuple[pd.DataFrame, list[str], int]:
    dims = _dimension_columns(classification)
    _require(cases, "cases", ("person_id", "decision", *covariates))
    merged, pending = _decided(classification[["person_id", *dims]], cases, list(covariates))
    return merged, dims, pending


def _reference(values: pd.Series, name: str) -> str:
    """The reference level of a factor: the most frequent, ties broken by vocabulary order."""
    counts = values.value_counts()
    order = _group_order(values, name)
    return max(order, key=lambda level: (counts[level], -order.index(level)))


def model_counts(classification: pd.DataFrame, cases: pd.DataFrame, covariates: tuple[str, ...] = ("sex", "age_band", "sector")) -> pd.DataFrame:
    """Persons and identified persons behind each term level of :func:`identification_model` (counts).

    Columns ``variable, level, persons, identified``; for a dimension, level ``present``.
    """
    data, dims, pending = _model_data(classification, cases, covariates)
    parts = []
    for dim in dims:
        sel = data[dim].astype(bool)
        parts.append({"variable": dim, "level": "present", "persons": int(sel.sum()), "identified": int(data.loc[sel, "identified"].sum())})
    for var in covariates:
        g = data.groupby(var, sort=False)["identified"].agg(["size", "sum"])
        for level in _group_order(data[var], var):
            parts.append({"variable": var, "level": level, "persons": int(g.loc[level, "size"]), "identified": int(g.loc[level, "sum"])})
    out = pd.DataFrame(parts, columns=["variable", "level", "persons", "identified"])
    out.attrs = {"excluded_pending": pending, "counts": ["persons", "identified"]}
    return out


def identification_model(
    classification: pd.DataFrame,
    cases: pd.DataFrame,
    covariates: tuple[str, ...] = ("sex", "age_band", "sector"),
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Logistic regression of official identification on the dimensions and covariates.

    Binomial GLM (logit link, statsmodels) of ``identified`` (vs ``not_identified``; pending
    left out) on one 0/1 term per dimension and treatment-coded ``covariates`` (reference:
    the most frequent level). A dimension that is constant, or a covariate with one level, is
    dropped (listed in ``.attrs["dropped"]``). Returns one row per term: ``term, variable,
    level, reference, odds_ratio, ci_low, ci_high, p_value, coef, std_err``; ``.attrs`` has
    ``n``, ``identified``, ``excluded_pending``, ``dropped``, ``warnings`` (e.g. separation)
    and ``catalogue_version``.
    """
    data, dims, pending = _model_data(classification, cases, covariates)
    y = data["identified"].astype("float64").to_numpy()
    columns: dict[str, np.ndarray] = {"const": np.ones(len(data))}
    meta: dict[str, tuple[str, str, str | None]] = {"const": ("intercept", "", None)}
    dropped: list[str] = []
    for dim in dims:
        x = data[dim].astype("float64").to_numpy()
        if len(np.unique(x)) < 2:
            dropped.append(dim)
            continue
        columns[dim] = x
        meta[dim] = (dim, "present", "absent")
    for var in covariates:
        levels = _group_order(data[var], var)
        if len(levels) < 2:
            dropped.append(var)
            continue
        ref = _reference(data[var], var)
        for level in levels:
            if level != ref:
                term = f"{var}[{level}]"
                columns[term] = (data[var] == level).to_numpy(dtype="float64")
                meta[term] = (var, str(level), str(ref))
    if len(data) == 0 or len(np.unique(y)) < 2:
        raise PerformanceError([Problem(where="cases", column="decision",
                                        rule="the model needs both identified and not_identified persons")],
                               summary="cannot fit the identification model")
    X = pd.DataFrame(columns)
    with warnings.catch_warnings(record=True) as caught, np.errstate(over="ignore"):
        warnings.simplefilter("always")
        fit = sm.GLM(y, X, family=sm.families.Binomial()).fit()
        ci = fit.conf_int(alpha=alpha)
        odds, low, high = np.exp(fit.params.to_numpy()), np.exp(ci[0].to_numpy()), np.exp(ci[1].to_numpy())
    out = pd.DataFrame({
        "term": X.columns,
        "variable": [meta[t][0] for t in X.columns],
        "level": [meta[t][1] for t in X.columns],
        "reference": [meta[t][2] for t in X.columns],
        "odds_ratio": odds,
        "ci_low": low,
        "ci_high": high,
        "p_value": fit.pvalues.to_numpy(),
        "coef": fit.params.to_numpy(),
        "std_err": fit.bse.to_numpy(),
    })
    out.attrs = {
        "n": int(len(y)), "identified": int(y.sum()), "excluded_pending": pending, "dropped": dropped,
        "warnings": sorted({str(w.message) for w in caught}), "interval": f"{1 - alpha:.0%}",
        "catalogue_version": classification.attrs.get("catalogue_version"),
    }
    return out
