"""Benchmark: classify 1,000,000 persons with 10 indicators each (target: at most 20 s).

Prints the time of studylib.indicators.classify on string columns (as read from Parquet) and on
categorical indicator codes, peak memory, and the speed ratio against a naive per-person
Python loop timed on a sample (whose results must agree with classify).

    .venv/bin/python benchmarks/bench_indicators.py [--persons N] [--per-person K]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from studylib.data import vocabularies
from studylib.indicators import catalogue, classify

TARGET_S = 20.0


def make_inputs(n: int, k: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = pd.Series(rng.integers(0, 256, size=(n, 32), dtype=np.uint8).view(f"S32").ravel()).map(bytes.hex).to_numpy()
    codes = np.asarray(catalogue()["code"].unique())
    age = rng.integers(12, 70, size=n).astype(float)
    age[rng.random(n) < 0.03] = np.nan
    expl = rng.choice(np.asarray(vocabularies.EXPLOITATION), size=n, p=[0.55, 0.3, 0.08, 0.03, 0.02, 0.02])
    persons = pd.DataFrame({"person_id": ids, "age": age, "exploitation": expl})
    indicators = pd.DataFrame({"person_id": np.repeat(ids, k), "indicator": rng.choice(codes, size=n * k)})
    return indicators.astype({"person_id": "str", "indicator": "str"}), persons.astype({"person_id": "str", "exploitation": "str"})


def naive(indicators: pd.DataFrame, persons: pd.DataFrame) -> pd.Series:
    """One person at a time in Python: the way this is not done."""
    cat = catalogue()
    spec = cat.attrs["spec"]
    grade = {(r.list, r.code): r.grade for r in cat.itertuples()}
    dim = dict(zip(cat["code"], cat["dimension"]))
    kind = {d["code"]: d["kind"] for d in spec["dimensions"]}
    by_person = indicators.groupby("person_id")["indicator"].apply(set).to_dict()
    out = {}
    for row in persons.itertuples():
        child = not np.isnan(row.age) and row.age < spec["child_under"]
        rule = "child" if child else "adult"
        family = spec["exploitation"][row.exploitation]
        lst = next(n for n, v in spec["lists"].items() if v["rule"] == rule and v["exploitation"] == family)
        counts = {}
        for code in by_person.get(row.person_id, ()):
            g = grade.get((lst, code))
            if g:
                counts.setdefault(dim[code], []).append(g)
        kinds = set()
        for d, gs in counts.items():
            s, m, w = gs.count("strong"), gs.count("medium"), gs.count("weak")
            if s >= 2 or (s >= 1 and m + w >= 1) or m >= 3 or (m >= 2 and w >= 1):
                kinds.add(kind[d])
        out[row.person_id] = set(spec["rules"][rule]) <= kinds
    return pd.Series(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--per-person", type=int, default=10)
    ap.add_argument("--sample", type=int, default=20_000, help="persons for the naive comparison")
    args = ap.parse_args()

    t = time.perf_counter()
    indicators, persons = make_inputs(args.persons, args.per_person)
    print(f"inputs: {len(persons):,} persons, {len(indicators):,} indicator rows (made in {time.perf_counter() - t:.1f} s)")
    catalogue()  # load (and cache) the catalogue outside the timing
    rss_inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    t = time.perf_counter()
    result = classify(indicators, persons)
    t_str = time.perf_counter() - t
    print(f"classify, string columns:      {t_str:6.2f} s  ({len(persons) / t_str:,.0f} persons/s)  "
          f"target <= {TARGET_S:.0f} s: {'met' if t_str <= TARGET_S else 'MISSED'}")
    print(f"  presumed victims: {result['presumed_victim'].mean():.1%}; child rule: {(result['rule'] == 'child').mean():.1%}")

    cat_ind = indicators.astype({"indicator": "category"})
    t = time.perf_counter()
    classify(cat_ind, persons)
    t_cat = time.perf_counter() - t
    print(f"classify, categorical codes:   {t_cat:6.2f} s")
    print(f"peak memory (max RSS):         {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:6.2f} GiB "
          f"(of which {rss_inputs:.2f} GiB before classifying: making the inputs)")

    n = min(args.sample, args.persons)
    sample_p = persons.iloc[:n]
    sample_i = indicators.iloc[: n * args.per_person]
    t = time.perf_counter()
    slow = naive(sample_i, sample_p)
    t_naive = time.perf_counter() - t
    t = time.perf_counter()
    fast = classify(sample_i, sample_p).set_index("person_id")["presumed_victim"]
    t_fast = time.perf_counter() - t
    agree = bool((slow.reindex(fast.index) == fast).all())
    print(f"naive per-person loop on {n:,}: {t_naive:6.2f} s, classify {t_fast:.2f} s: "
          f"ratio {t_naive / t_fast:,.0f}x; projected naive for {args.persons:,}: {t_naive * args.persons / n:,.0f} s; "
          f"results agree: {agree}")
    if not agree:
        raise SystemExit("classify and the naive loop disagree")


if __name__ == "__main__":
    main()
