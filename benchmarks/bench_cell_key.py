"""Benchmark of the cell key method (studylib.privacy.cell_key, studylib.privacy.perturbed).

For 1,000,000 persons (random record keys in 2**-52 units): a 3-D table (sector x region x
sex, with every Total) counted from the persons and perturbed, and the same persons counted
and protected by suppression. The floor, measured in the same run, is the bare count:
np.bincount of the persons' inner cells; the ratios to it, and of the perturbation to the
library's own count, are printed.

Also: how long the perturbation table takes to build (once per process; cached).

Run: .venv/bin/python benchmarks/bench_cell_key.py [--persons N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from studylib.data import vocabularies as v
from studylib.privacy.cell_key import _table, perturbation_table
from studylib.privacy.disclosure import DisclosureSettings
from studylib.privacy.perturbed import perturb_table
from studylib.report.counting import count_persons
from studylib.report.tables import protect_for_report


def persons(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "person_id": np.char.add("p", np.arange(n).astype(str)).astype(object),
        "sector": rng.choice(v.SECTOR, size=n),
        "region": rng.choice(v.REGION[:5], size=n),
        "sex": rng.choice(["female", "male", "transgender", "unknown"], size=n, p=[0.6, 0.36, 0.01, 0.03]),
        "record_key": rng.integers(0, 2**52, size=n) / 2**52,
    })


def best(work, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    n = parser.parse_args().persons
    frame = persons(n)
    by = ["sector", "region", "sex"]
    started = time.perf_counter()
    _table.__wrapped__(3, 2.0, 2)  # uncached: the build itself
    build = time.perf_counter() - started
    perturbation_table()
    count = count_persons(frame, by)
    settings = DisclosureSettings(cell_key={})
    floor = best(lambda: np.bincount(count.cells, minlength=int(np.prod(count.shape))))
    counting = best(lambda: count_persons(frame, by))
    perturbing = best(lambda: perturb_table(count.counts, count.cells, count.record_keys, settings))
    suppressing = best(lambda: protect_for_report(count.counts, DisclosureSettings()), repeat=1)
    cells = int(np.prod([n + 1 for n in count.shape]))
    print(f"persons {n:,}; table {' x '.join(map(str, count.shape))} ({cells} cells with Totals)")
    print(f"perturbation table built in {build * 1000:.1f} ms (once per process)")
    print(f"floor, bare count (np.bincount of the cells): {floor:.4f} s")
    print(f"count_persons (the library's count): {counting:.3f} s ({counting / floor:.0f}x the floor)")
    print(f"perturb_table (cell keys of every cell and Total, lookup): {perturbing:.3f} s ({perturbing / floor:.0f}x the floor, "
          f"{perturbing / counting:.2f}x the count)")
    print(f"suppression of the same counts (protect_table, for comparison): {suppressing:.3f} s")


if __name__ == "__main__":
    main()
