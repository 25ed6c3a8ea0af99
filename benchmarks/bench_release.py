"""Benchmark of the release attacker and planner (studylib.privacy.release).

Two releases of 30 overlapping tables (1-D to 4-D, with filters: one period, a region left
out, one sector, decided cases only), each table protected alone by protect_table first:

1. national scale stretched: 1,000,000 persons (targets: attack_release and protect_release
   at most 60 s each, peak memory at most 4 GiB);
2. demo-sized: about 5,000 persons, 6 reports of 5 tables (target: at most 5 s);
3. with ``--ledgers STATE``: the real release a runner published (every lineage's published
   ledgers under STATE, the folder `studylib run --state` names), attacked and planned as
   one batch (target: the attack at most 5 s). Its floor is the bare read of the ledgers.

Baseline, measured in the same run: the per-table attacker (privacy.disclosure.attack) over
the same 30 tables, the floor of checking each table alone; the ratio is printed.
Peak memory is the process's resource.getrusage(RUSAGE_SELF).ru_maxrss.

Run: .venv/bin/python benchmarks/bench_release.py [--only demo|big] [--ledgers STATE]
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from studylib.privacy.disclosure import attack, protect_table
from studylib.privacy.release import CountedTable, Release, attack_release, protect_release
from studylib.runner.release import PUBLISHED, Stored, build_release, entries_of

#: name -> number of categories (the vocabularies of DESIGN section 3, roughly)
ATTRIBUTES = {"sector": 13, "region": 7, "sex": 4, "age": 8, "year": 10, "decision": 3, "minor": 2, "consent": 3}
GIB = 1024**3


def persons(n: int, seed: int) -> pd.DataFrame:
    """Persons with skewed attributes (a few big sectors, small regions, rare sexes)."""
    rng = np.random.default_rng(seed)
    columns = {}
    for name, k in ATTRIBUTES.items():
        weights = rng.dirichlet(np.full(k, 0.7))
        columns[name] = rng.choice(k, n, p=weights).astype(np.int8)
    return pd.DataFrame(columns)


def table_specs(rng: np.random.Generator, count: int) -> list[tuple[list[str], str]]:
    """``count`` tables: dimensions (1 to 4) and a filter."""
    filters = ["all", "all", "upto_last_year", "without_region", "one_sector", "decided"]
    specs = []
    for number in range(count):
        k = 1 + number % 4
        while True:  # 3-D tables of at most 200 inner cells, 4-D of at most 150
            dims = [str(d) for d in rng.choice(list(ATTRIBUTES), size=k, replace=False)]
            if k < 3 or math.prod(ATTRIBUTES[d] for d in dims) <= (200 if k == 3 else 150):
                break
        specs.append((dims, filters[number % len(filters)]))
    return specs


def counted(frame: pd.DataFrame, dims: list[str], filter: str, id: str, report: str, min_cell: int):
    """One table counted from persons, protected alone: (CountedTable, ProtectedTable)."""
    keep = {
        "all": np.ones(len(frame), dtype=bool),
        "upto_last_year": frame["year"].to_numpy() < ATTRIBUTES["year"] - 1,
        "without_region": frame["region"].to_numpy() != 0,
        "one_sector": frame["sector"].to_numpy() == 3,
        "decided": frame["decision"].to_numpy() != 2,
    }[filter]
    shape = tuple(ATTRIBUTES[d] for d in dims)
    cell = np.ravel_multi_index([frame[d].to_numpy().astype(np.int64) for d in dims], shape)
    cell = np.where(keep, cell, -1)
    inner = np.bincount(cell[cell >= 0], minlength=math.prod(shape)).reshape(shape)
    labels = tuple(tuple(f"{d}_{i}" for i in range(ATTRIBUTES[d])) for d in dims)
    if len(dims) == 1:
        series = pd.Series(inner, index=pd.Index(labels[0], name=dims[0]))
    else:
        series = pd.Series(inner.ravel(), index=pd.MultiIndex.from_product(labels, names=dims))
    protected = protect_table(series, min_cell=min_cell)
    hidden = protected._hidden.reshape(tuple(n + 1 for n in shape))
    return CountedTable(id, shape, True, cell, hidden, labels=labels, report=report), protected


def build(n_persons: int, n_tables: int, seed: int, min_cell: int = 5):
    frame = persons(n_persons, seed)
    rng = np.random.default_rng(seed + 1)
    tables, protected = [], []
    for number, (dims, filter) in enumerate(table_specs(rng, n_tables)):
        report = f"report{number // 5}"
        table, alone = counted(frame, dims, filter, f"{report}#{number % 5 + 1}", report, min_cell)
        tables.append(table)
        protected.append(alone)
    return Release(n_persons, tuple(tables), min_cell=min_cell), protected


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def bench(name: str, n_persons: int, seed: int, target: float) -> None:
    (release, alone), t_build = timed(build, n_persons, 30, seed)
    hidden = sum(int(t.hidden.sum()) for t in release.tables)
    shapes = " ".join("x".join(map(str, t.shape)) for t in release.tables)
    print(f"{name}: {n_persons:,} persons, {len(release.tables)} tables ({shapes}), {hidden} hidden cells alone; "
          f"counted and protected table by table in {t_build:.1f} s")
    _, t_floor = timed(lambda: [attack(p, exact=False) for p in alone])
    result, t_attack = timed(attack_release, release)
    memory_attack = peak_gib()
    unsafe = result[~result["safe"]]
    kinds = unsafe["kind"].value_counts().to_dict()
    print(f"  attack_release   {t_attack:6.2f} s  ({t_attack / target:.2f} of the {target:g} s target)  "
          f"{len(result)} targets, {len(unsafe)} unsafe {kinds}; peak memory {memory_attack:.2f} GiB")
    print(f"  baseline: disclosure.attack table by table {t_floor:6.2f} s; ratio release/tables "
          f"{t_attack / max(t_floor, 1e-9):.1f}")
    plan, t_plan = timed(protect_release, release)
    memory_plan = peak_gib()
    added = sum(len(cells) for cells in plan.added.values())
    after, t_check = timed(attack_release, plan.apply(release))
    print(f"  protect_release  {t_plan:6.2f} s  ({t_plan / target:.2f} of the {target:g} s target)  "
          f"{plan.rounds} rounds, {added} cells added in {len(plan.added)} tables, {len(plan.refused)} refused; "
          f"peak memory {memory_plan:.2f} GiB ({memory_plan / 4:.2f} of 4 GiB)")
    print(f"  after the plan: {int((~after['safe']).sum())} unsafe of {len(after)} targets "
          f"(attacked again in {t_check:.2f} s)")


def bench_ledgers(state: Path, target: float = 5.0) -> None:
    """The release a runner published, from its private state: one line per lineage."""
    lineages = sorted(p for p in state.iterdir() if (p / PUBLISHED).is_dir())
    if not lineages:
        raise SystemExit(f"{state}: no lineage folder here (pass the folder `studylib run --state` used)")
    for folder in lineages:
        stored = Stored(folder)
        published = sorted(p for p in (stored.root / PUBLISHED).glob("*") if p.is_dir() and not p.name.startswith("."))
        entries, t_read = timed(entries_of, published)
        release = build_release(entries, [], min_cell=max(e.min_cell for e in entries),
                                zeros_disclosive=any(e.zeros_disclosive for e in entries))
        reports = sorted({t.report for t in release.tables})
        hidden = sum(int(t.hidden.sum()) for t in release.tables)
        print(f"lineage {folder.name}: {len(reports)} reports, {len(release.tables)} tables, {release.persons:,} persons, "
              f"{hidden} hidden cells; ledgers read in {t_read:.2f} s (the floor)")
        result, t_attack = timed(attack_release, release)
        unsafe = int((~result["safe"]).sum())
        print(f"  attack_release   {t_attack:6.2f} s  ({t_attack / target:.2f} of the {target:g} s target)  "
              f"{len(result)} targets, {unsafe} unsafe; ratio to the read {t_attack / max(t_read, 1e-9):.1f}")
        plan, t_plan = timed(protect_release, release)
        added = sum(len(c) for c in plan.added.values())
        shown = sum(len(c) for c in plan.shown.values())
        print(f"  protect_release  {t_plan:6.2f} s  {plan.rounds} rounds, {added} cells added, {shown} shown, "
              f"{len(plan.refused)} refused; peak memory {peak_gib():.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["demo", "big"], help="run one of the two releases")
    parser.add_argument("--ledgers", type=Path, metavar="STATE",
                        help="attack the release published under a runner's state folder instead")
    options = parser.parse_args()
    if options.ledgers is not None:
        bench_ledgers(options.ledgers)
        return
    if options.only in (None, "demo"):
        bench("demo-sized release", 5_000, 11, target=5.0)
    if options.only in (None, "big"):
        bench("1,000,000 persons", 1_000_000, 12, target=60.0)


if __name__ == "__main__":
    main()
