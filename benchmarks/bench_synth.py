"""Benchmark of the synthetic data generator (`studylib synth`). Prints figures; not a test.

Targets (issue: foundation, Speed):
  1. 100,000 registered persons with all raw exports and fake personal data in <= 30 s.
     The naive way (one Faker call per field per row, in the locale of the nationality) is
     timed on a sample of rows and extrapolated; the ratio to the vectorised way is printed
     (aim: >= 10x).
  2. 1,000,000 registered persons without personal data in <= 60 s and <= 4 GiB peak memory.

Each run is a separate process (`studylib synth`), timed from outside; peak memory is the
child's maximum resident set size (resource.getrusage(RUSAGE_CHILDREN)).

    .venv/bin/python benchmarks/bench_synth.py [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 1024**3
BIN = Path(sys.executable).with_name("studylib")


def run_synth(out: Path, *args: str) -> tuple[float, int, dict]:
    """Wall time (s), peak RSS (bytes) and synth.json of one `studylib synth` process."""
    cmd = [str(BIN), "synth", "--out", str(out), *args]
    code = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        f"p = subprocess.run({cmd!r})\n"
        "wall = time.perf_counter() - t\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(json.dumps({'rc': p.returncode, 'wall': wall, 'peak': peak}))\n"
    )
    # a fresh parent per run, so RUSAGE_CHILDREN holds this run only
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    figures = json.loads(res.stdout.strip().splitlines()[-1])
    if figures["rc"] != 0:
        raise SystemExit(f"studylib synth failed: {res.stderr}")
    return figures["wall"], figures["peak"], json.loads((out / "synth.json").read_text())


def naive_seconds_per_row(sample: int = 2000, seed: int = 1) -> float:
    """One Faker call per personal field per row, in a locale matching the nationality."""
    import random

    from faker import Faker

    from studylib.synthetic.nationalities import nationalities

    table = nationalities()
    codes = ["NG", "RO", "TH", "PH", "UA", "BG", "PL", "DK", "VN", "CN"]
    fakers = {c: Faker(table[c].given_name_locales[0]) for c in codes}
    danish = Faker("da_DK")
    for f in [*fakers.values(), danish]:
        f.seed_instance(seed)
    rnd = random.Random(seed)
    start = time.perf_counter()
    rows = []
    for _ in range(sample):
        fake = fakers[rnd.choice(codes)]
        rows.append((
            fake.first_name(), fake.last_name(), fake.date_of_birth(minimum_age=15, maximum_age=60),
            danish.ssn(), fake.passport_number(), fake.phone_number(), fake.email(), danish.address(),
            danish.sentence(nb_words=10),
        ))
    return (time.perf_counter() - start) / sample


def main() -> None:
    quick = "--quick" in sys.argv
    big = 200_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        tmp = Path(tmp)
        print("== studylib synth benchmark (2-core machine; each run in its own process)")
        wall_pii, peak_pii, meta = run_synth(tmp / "pii", "--persons", "100000", "--seed", "1")
        rows = sum(meta["counts"]["records"].values())
        print(f"100,000 registered persons, PII, CSV:        {wall_pii:6.1f} s  (target <= 30 s)  "
              f"peak {peak_pii / GIB:4.2f} GiB  {rows:,} raw rows, {meta['counts']['true_persons']:,} true persons")
        wall_messy, peak_messy, _ = run_synth(tmp / "messy", "--persons", "100000", "--seed", "1", "--messy")
        print(f"100,000 registered persons, PII, messy CSV:  {wall_messy:6.1f} s  peak {peak_messy / GIB:4.2f} GiB")
        wall_nopii, _, _ = run_synth(tmp / "nopii", "--persons", "100000", "--seed", "1", "--no-pii")
        print(f"100,000 registered persons, no PII:          {wall_nopii:6.1f} s")

        per_row = naive_seconds_per_row()
        naive_total = per_row * rows
        vectorised = max(wall_pii - wall_nopii, 1e-3)
        print(f"naive Faker (9 calls per row, sample of 2,000): {per_row * 1e6:6.1f} us/row -> {naive_total:6.1f} s for {rows:,} rows")
        print(f"vectorised PII (run with PII minus run without): {vectorised:6.1f} s")
        print(f"speed ratio naive / vectorised: {naive_total / vectorised:5.1f}x  (aim >= 10x)")
        print(f"whole run vs naive PII alone:   {naive_total / wall_pii:5.1f}x")

        wall_big, peak_big, meta_big = run_synth(tmp / "big", "--persons", str(big), "--seed", "1", "--no-pii")
        rows_big = sum(meta_big["counts"]["records"].values())
        print(f"{big:,} registered persons, no PII, CSV:   {wall_big:6.1f} s  (target <= 60 s)  "
              f"peak {peak_big / GIB:4.2f} GiB (target <= 4 GiB)  {rows_big:,} raw rows, "
              f"{meta_big['counts']['true_persons']:,} true persons")
        ok = wall_pii <= 30 and (quick or (wall_big <= 60 and peak_big <= 4 * GIB))
        print("targets met" if ok else "TARGETS MISSED")


if __name__ == "__main__":
    main()
