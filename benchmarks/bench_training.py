"""Benchmark: a training cohort of 200 students x 10 cases (target: at most 10 s).

Prints the wall time of ``studylib training cohort`` as a teacher runs it (a fresh process:
imports, profiles, catalogue and name pools included), the time of make_cohort in a warm
process, and the floor: writing the same files (their bytes already in memory) into a new
folder, with the ratio of each against it.

    .venv/bin/python benchmarks/bench_training.py [--students 200] [--cases 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 10.0


def floor_write(files: dict[str, bytes], out: Path) -> float:
    """Write the cohort's bytes to a new folder: the least any cohort writer must do."""
    t0 = time.perf_counter()
    for rel, data in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2007)
    args = parser.parse_args()
    studylib = Path(sys.executable).with_name("studylib")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cmd = [str(studylib), "training", "cohort", "--students", str(args.students), "--cases", str(args.cases),
               "--seed", str(args.seed), "--out", str(tmp / "cli")]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        cli_s = time.perf_counter() - t0

        from studylib.training.cohort import make_cohort

        make_cohort(tmp / "warmup", students=2, cases=2, seed=args.seed + 1)  # loads profiles, catalogue, name pools
        t0 = time.perf_counter()
        make_cohort(tmp / "warm", students=args.students, cases=args.cases, seed=args.seed)
        warm_s = time.perf_counter() - t0

        files = {str(p.relative_to(tmp / "warm")): p.read_bytes() for p in (tmp / "warm").rglob("*") if p.is_file()}
        same = files == {str(p.relative_to(tmp / "cli")): p.read_bytes() for p in (tmp / "cli").rglob("*") if p.is_file()}
        floor_s = floor_write(files, tmp / "floor")
        size = sum(len(b) for b in files.values())

    n = args.students * args.cases
    print(f"cohort {args.students} students x {args.cases} cases = {n} vignettes, {len(files)} files, {size / 1e6:.1f} MB "
          f"(CLI and library output identical: {same})")
    print(f"studylib training cohort (fresh process): {cli_s:.2f} s   target <= {TARGET_S:.0f} s   "
          f"{'OK' if cli_s <= TARGET_S else 'TOO SLOW'}")
    print(f"make_cohort (warm process):               {warm_s:.2f} s   {warm_s / n * 1e3:.2f} ms per case")
    print(f"floor (write the same bytes):             {floor_s:.3f} s")
    print(f"ratio fresh CLI / floor: {cli_s / floor_s:.0f}x   warm / floor: {warm_s / floor_s:.0f}x   (cpu count {os.cpu_count()})")


if __name__ == "__main__":
    main()
