"""Benchmark of one sector study on the demo data: ``studylib run studies/<id>.yaml`` from scratch.

Runs the study into an empty reports folder and release state (execute, HTML, PDF, audit,
release gate, publish) and prints the wall time against the target (at most 20 s), the
manifest's timings, how many runs the release gate needed and the information lost to
disclosure control (hidden cells, share of the persons counted in them).

Run: ``.venv/bin/python benchmarks/bench_sector_study.py [au_pair]`` (makes the demo dataset if needed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET_SECONDS = 20.0


def main(study: str = "au_pair") -> None:
    subprocess.run([str(BIN / "studylib"), "demo"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        reports, state = Path(tmp) / "reports", Path(tmp) / "state"
        start = time.perf_counter()
        done = subprocess.run([str(BIN / "studylib"), "run", str(ROOT / "studies" / f"{study}.yaml"), "--reports", str(reports),
                               "--state", str(state)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = time.perf_counter() - start
        if done.returncode:
            sys.exit(done.stdout[-2000:])
        manifest = json.loads((reports / study / "manifest.json").read_text())
    loss = manifest["release"]["information_loss"]
    print(f"{study}: {seconds:.1f} s from the command line (target <= {TARGET_SECONDS:.0f} s: "
          f"{'met' if seconds <= TARGET_SECONDS else 'not met'})")
    print("timings (s): " + ", ".join(f"{k} {v}" for k, v in manifest["timings"].items()))
    print(f"release gate: {manifest['release']['rounds']} run(s); {loss['hidden_cells']} of {loss['cells']} cells hidden, "
          f"{100 * loss['share_of_persons_hidden']:.1f}% of the persons counted")


if __name__ == "__main__":
    main(*sys.argv[1:2])
