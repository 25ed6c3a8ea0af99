"""Benchmark of the regional briefs: five briefs beside the national overview, against the overview alone.

Baseline, measured in the same run: ``studylib run overview --workers 2`` into an empty
reports folder and state. Ours: ``studylib run overview regional_brief --workers 2`` (the
overview and the five briefs, protected together) from an empty state too. The target:
ours at most 1.5 times the baseline. Both are then run again with ``--force`` and their
first run's state (the scheduled regeneration: the release plan is known, so each report
executes once), and that ratio is printed too, with the kernels' own execution (the
manifests' timings) as what no scheduling can go under.

Run: ``.venv/bin/python benchmarks/bench_briefs.py`` (makes the demo dataset if needed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET = 1.5


def _run(studies: list[str], work: Path, name: str, force: bool = False) -> tuple[float, Path]:
    reports, state = work / name / "reports", work / name / "state"
    command = [str(BIN / "studylib"), "run", *studies, "--workers", "2", "--reports", str(reports), "--state", str(state)]
    start = time.perf_counter()
    done = subprocess.run(command + (["--force"] if force else []), cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} failed:\n{done.stdout[-3000:]}")
    return seconds, reports


def _manifests(reports: Path) -> list[dict]:
    return [json.loads(m.read_text()) for m in sorted(reports.rglob("manifest.json"))]


def _executing(reports: Path) -> float:
    return sum(m.get("timings", {}).get("execute", 0.0) for m in _manifests(reports))


def _twice(reports: Path) -> int:
    return sum(m.get("release", {}).get("rounds", 1) > 1 for m in _manifests(reports))


def main() -> None:
    from studylib.demo import ensure_demo_dataset

    ensure_demo_dataset()
    work = Path(tempfile.mkdtemp(prefix="bench-briefs-"))
    try:
        subprocess.run([str(BIN / "python"), "-c", "import papermill, nbconvert, weasyprint, pandas, matplotlib"], check=True)
        alone, alone_reports = _run(["overview"], work, "alone")
        both, both_reports = _run(["overview", "regional_brief"], work, "both")
        alone_forced, _ = _run(["overview"], work, "alone", force=True)
        both_forced, _ = _run(["overview", "regional_brief"], work, "both", force=True)
        reports = len(_manifests(both_reports))
        executing_alone, executing_both = _executing(alone_reports), _executing(both_reports)
        twice = _twice(both_reports)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = both / alone
    print(f"{os.cpu_count()} cores; {reports} reports published by the second command")
    print(f"baseline: studylib run overview (empty state):                     {alone:6.1f} s "
          f"(its kernel executes {executing_alone:.1f} s)")
    print(f"ours:     studylib run overview regional_brief (empty state):      {both:6.1f} s "
          f"(kernels execute {executing_both:.1f} s in all; {twice} report(s) executed twice to protect the release)")
    print(f"ratio: {ratio:.2f} (target <= {TARGET}) {'OK' if ratio <= TARGET else 'MISSED'}")
    print(f"scheduled regeneration (--force with the first run's state): overview {alone_forced:.1f} s, "
          f"overview + briefs {both_forced:.1f} s; ratio {both_forced / alone_forced:.2f}")


if __name__ == "__main__":
    main()
