"""Benchmark of the study runner: all default studies from scratch, against the naive way.

Ours: ``studylib run --all --workers 2`` into an empty reports folder (execute, HTML, PDF,
audit, publish). Naive: for each study, the ``papermill`` command, then ``jupyter nbconvert
--to html --no-input``, one study after another (HTML only, no audit). Prints both times,
the ratio (target <= 0.30) and the time of a re-run with nothing changed (target <= 2 s).

From an empty state every report whose tables the release plan changes is executed twice
(the plan needs every report's ledger); with the state of an earlier run the plan applies on
the first execution. So a third time is printed: ``--force`` with the first run's state, the
scheduled regeneration, with its ratio too.

Run: ``.venv/bin/python benchmarks/bench_runner.py`` (makes the demo dataset if needed).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


CPU = {"seconds": 0.0}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], env: dict | None = None, check: bool = True) -> float:
    cpu = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{done.stdout[-2000:]}")
    CPU["seconds"] = _children_cpu() - cpu  # the command, its kernels and other children
    CPU["output"] = done.stdout
    return time.perf_counter() - start


def naive(studies: list[Path], data: Path, out: Path) -> float:
    total = 0.0
    for file in studies:
        study = yaml.safe_load(file.read_text())
        template = (file.parent / study["template"]).resolve()
        notebook = out / f"{study['id']}.ipynb"
        parameters = {**study.get("parameters", {}), "data_dir": str(data)}
        env = {"STUDYLIB_DISCLOSURE": json.dumps({k: v for k, v in study["disclosure"].items()})}
        total += _timed([str(BIN / "papermill"), str(template), str(notebook), "-y", yaml.safe_dump(parameters),
                         "--cwd", str(template.parent)], env)
        total += _timed([str(BIN / "jupyter"), "nbconvert", "--to", "html", "--no-input", str(notebook)])
    return total


def main() -> None:
    from studylib.demo import ensure_demo_dataset

    data = ensure_demo_dataset()
    studies = sorted((ROOT / "studies").glob("*.yaml"))
    work = Path(tempfile.mkdtemp(prefix="bench-runner-"))
    try:
        reports = work / "reports"
        ours_cmd = [str(BIN / "studylib"), "run", "--all", "--workers", "2", "--reports", str(reports)]
        _timed([str(BIN / "python"), "-c", "import papermill, nbconvert, weasyprint, pandas, matplotlib"])  # warm the disk cache
        ours = _timed(ours_cmd, check=False)  # a study that fails (e.g. its audit) still counts: it ran
        ours_cpu = CPU["seconds"]
        manifests = [json.loads(m.read_text()) for m in reports.glob("*/manifest.json")]
        twice = sum(m.get("release", {}).get("rounds", 1) > 1 for m in manifests)
        executing = sum(m.get("timings", {}).get("execute", 0.0) for m in manifests)  # one execution each
        published = len(list(reports.glob("*/manifest.json")))
        rerun = _timed(ours_cmd, check=False)
        again = [line.split()[1] for line in CPU["output"].splitlines() if line.split()[:1] in (["published"], ["failed"])]
        forced = _timed(ours_cmd + ["--force"], check=False)
        forced_cpu = CPU["seconds"]
        naive_out = work / "naive"
        naive_out.mkdir()
        cpu = _children_cpu()
        slow = naive(studies, data, naive_out)
        slow_cpu = _children_cpu() - cpu
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = ours / slow
    print(f"default studies: {len(studies)} ({', '.join(f.stem for f in studies)}) on {os.cpu_count()} cores; {published} published")
    print(f"naive (papermill CLI + nbconvert --no-input, one after another, HTML only): {slow:6.1f} s (CPU {slow_cpu:5.1f} s)")
    print(f"studylib run --all --workers 2 (HTML + PDF + audit + publish):            {ours:6.1f} s (CPU {ours_cpu:5.1f} s)")
    print(f"  of which executed twice to protect the release (empty state): {twice} of {published}")
    print(f"  the kernels' execution alone, once each (manifests): {executing:.1f} s, over 2 kernels at once at least "
          f"{executing / 2:.1f} s: the floor of any ratio is {executing / 2 / slow:.2f}")
    print(f"ratio: {ratio:.2f} (target <= 0.30) {'OK' if ratio <= 0.30 else 'MISSED'}")
    print(f"studylib run --all --force with the first run's state (one execution each):  {forced:6.1f} s "
          f"(CPU {forced_cpu:5.1f} s); ratio {forced / slow:.2f}")
    note = f"; ran again because their last run failed: {', '.join(again)}" if again else ""
    print(f"re-run with nothing changed: {rerun:.2f} s (target <= 2 s) {'OK' if rerun <= 2 else 'MISSED'}{note}")


if __name__ == "__main__":
    main()
