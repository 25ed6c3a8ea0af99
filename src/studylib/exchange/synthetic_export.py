"""Synthetic microdata under differential privacy, in the HTCDS export's field names.

CTDC publishes synthetic data beside its aggregates; this is ours. The marginals of a chain of
columns (``htcds.yaml`` ``synthetic.chain``: the first column alone, then each column with its
parent) are counted from the cases, each person once in each table, so adding or removing one
person changes each table by 1 in one cell (L1 sensitivity 1). The budget epsilon is split
evenly over the tables (sequential composition) and every cell gets two-sided geometric noise
with ``alpha = exp(-epsilon_table)`` (the discrete Laplace mechanism: integer noise, mean 0,
variance ``2 alpha / (1 - alpha)^2``). Everything after the noise is post-processing: negative
counts set to 0, the records of the noisy first table, and for each value of a parent its
records split over the column in proportion to the noisy (parent, column) table (largest
remainders), in random order. Domains are the vocabularies and the years asked for,
never the values found in the data (a category present only in the data would leak).

:func:`utility` compares the synthetic two-way tables with the true ones (largest absolute
error); it reads the true data, so it is for the staff who make the file, never in the file.
The noise comes from numpy's PCG64 seeded from the system's random source (not a
cryptographically secure generator; the reference implementations, e.g. OpenDP, are).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from studylib.data import vocabularies as v
from studylib.exchange.codes import exchange_formats
from studylib.exchange.htcds_export import ExportError, htcds_frame, random_tokens, write_csv


@dataclass(frozen=True)
class SyntheticExport:
    frame: pd.DataFrame  # the synthetic records in the export's field names
    cases: pd.DataFrame  # the same records in our codes (for the utility)
    epsilon: float
    tables: int

    @property
    def epsilon_per_table(self) -> float:
        return self.epsilon / self.tables

    def metadata(self, chain: list[dict]) -> dict:
        alpha = float(np.exp(-self.epsilon_per_table))
        return {
            "format": "synthetic microdata, HTCDS v2.0 field names (studylib extensions prefixed sl_); no record is a real person",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "epsilon": self.epsilon,
            "mechanism": "two-sided geometric (discrete Laplace) noise on every cell of each marginal, L1 sensitivity 1",
            "marginals": [[c["parent"], c["column"]] if c.get("parent") else [c["column"]] for c in chain],
            "epsilon_per_marginal": self.epsilon_per_table,
            "noise_variance_per_cell": 2 * alpha / (1 - alpha) ** 2,
            "fields": list(self.frame.columns),
        }


def chain() -> list[dict]:
    return list(exchange_formats()["synthetic"]["chain"])


def domain(column: str, years: tuple[int, int]) -> list:
    """The categories a column may take, fixed before the data are looked at."""
    if column == "first_contact_year":
        return list(range(years[0], years[1] + 1))
    return list(v.vocabulary(column))


def discrete_laplace(shape, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Two-sided geometric noise, ``P(k) ~ exp(-epsilon |k|)``: the difference of two geometric draws."""
    p = 1.0 - np.exp(-epsilon)
    return rng.geometric(p, size=shape) - rng.geometric(p, size=shape)


def count(cases: pd.DataFrame, columns: list[str], domains: dict[str, list]) -> np.ndarray:
    """The true table of ``columns`` over their domains (persons outside a domain are not counted)."""
    codes = [pd.Categorical(cases[c], categories=domains[c]).codes for c in columns]
    inside = np.all([c >= 0 for c in codes], axis=0)
    shape = tuple(len(domains[c]) for c in columns)
    flat = np.ravel_multi_index([c[inside] for c in codes], shape) if len(columns) > 1 else codes[0][inside]
    return np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape)


def allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to ``weights`` by largest remainders (equal shares when all are 0)."""
    weights = np.asarray(weights, dtype=float)
    if weights.sum() <= 0:
        weights = np.ones(len(weights))
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]] += 1
    return counts


def synthesise(cases: pd.DataFrame, epsilon: float, years: tuple[int, int], rng: np.random.Generator | None = None) -> SyntheticExport:
    """Synthetic records from noisy marginals of ``cases`` (see the module docstring)."""
    if not epsilon > 0:
        raise ExportError(f"epsilon must be more than 0, not {epsilon}")
    if years[0] > years[1]:
        raise ExportError(f"years {years[0]}-{years[1]}: the first year is after the last")
    rng = rng or np.random.default_rng(secrets.randbits(128))
    links = chain()
    each = epsilon / len(links)
    domains = {c["column"]: domain(c["column"], years) for c in links}
    first = links[0]["column"]
    noisy_first = np.clip(count(cases, [first], domains) + discrete_laplace(len(domains[first]), each, rng), 0, None)
    n = int(noisy_first.sum())
    if n == 0:
        raise ExportError("the noisy counts hold no one: there are too few cases for this epsilon")
    drawn = {first: rng.permutation(np.repeat(np.arange(len(domains[first])), noisy_first))}
    for link in links[1:]:
        column, parent = link["column"], link["parent"]
        table = count(cases, [parent, column], domains)
        noisy = np.clip(table + discrete_laplace(table.shape, each, rng), 0, None).astype(float)
        child = np.empty(n, dtype=np.int64)
        for value in range(noisy.shape[0]):
            rows = np.flatnonzero(drawn[parent] == value)
            if not len(rows):
                continue
            child[rows] = rng.permutation(np.repeat(np.arange(noisy.shape[1]), allocate(len(rows), noisy[value])))
        drawn[column] = child
    synthetic = pd.DataFrame({c: np.asarray(domains[c], dtype=object)[drawn[c]] for c in drawn})
    synthetic["first_contact_year"] = synthetic["first_contact_year"].astype("Int64")
    frame = htcds_frame(synthetic)
    frame.insert(0, exchange_formats()["export"]["case_id"], random_tokens(len(frame)))
    return SyntheticExport(frame, synthetic, float(epsilon), len(links))


def utility(cases: pd.DataFrame, export: SyntheticExport, years: tuple[int, int]) -> dict[str, int]:
    """Largest absolute error of the synthetic counts on each two-way table of the chain (for the staff only)."""
    out = {}
    for link in chain()[1:]:
        columns = [link["parent"], link["column"]]
        domains = {c: domain(c, years) for c in columns}
        out[" x ".join(columns)] = int(np.abs(count(export.cases, columns, domains) - count(cases, columns, domains)).max())
    return out


def write_synthetic_export(data: str | os.PathLike, out: str | os.PathLike, epsilon: float | None,
                           years: tuple[int, int]) -> tuple[Path, dict, dict]:
    """Write ``out`` (CSV) and its metadata (``.json``); return them and the utility (to print, not to share)."""
    from studylib.data.atomic import write_file
    from studylib.exchange.htcds_export import read_cases

    out = Path(out)
    if out.suffix.lower() != ".csv" or not out.parent.is_dir():
        raise ExportError(f"{out}: give a .csv file in an existing folder (its metadata goes beside it as .json)")
    if Path(data).resolve() in out.resolve().parents:
        raise ExportError(f"{out}: an export is for others; it is never written inside the dataset folder {data}")
    cases = read_cases(Path(data))
    export = synthesise(cases, float(exchange_formats()["synthetic"]["epsilon"] if epsilon is None else epsilon), years)
    meta = export.metadata(chain()) | {"years": list(years)}
    write_file(out.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    write_csv(export.frame, out)
    return out, meta, utility(cases, export, years)
