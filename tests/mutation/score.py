"""Mutation score per module: runs mutmut on one module at a time against its own test files.

The modules and their test files are ``tests/mutation/modules.toml``. For each module a
work folder ``build/mutation/<module>/`` gets the project's pyproject.toml with a
``[tool.mutmut]`` table for that module only, and links to ``src/`` and ``tests/``; mutmut
runs there (under ``nice``), and its results are read back from ``mutants/**.meta``.

The score is killed / (mutants - equivalent): timeouts count as killed (the mutant made a
test hang), "no tests" and survivors do not. Mutants listed in
``tests/mutation-equivalent.md`` (one line each: ``- `mutant name`: why``) are the
equivalent ones. Prints one line per module and every survivor not listed as equivalent.

    python tests/mutation/score.py                      # every module
    python tests/mutation/score.py privacy/rounding.py  # some
    python tests/mutation/score.py --report-only        # read the last results, run nothing
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = Path(__file__).with_name("modules.toml")
EQUIVALENT = ROOT / "tests" / "mutation-equivalent.md"
WORK = ROOT / "build" / "mutation"
KILLED = {1, 3, 36, -24, 24, 152, 255, 37}  # killed, pytest internal error, timeouts, type check


def modules() -> dict[str, list[str]]:
    return {name: spec["tests"] for name, spec in tomllib.loads(MODULES.read_text())["modules"].items()}


def equivalent() -> set[str]:
    if not EQUIVALENT.is_file():
        return set()
    return set(re.findall(r"^\s*[-*]\s*`([^`]+)`", EQUIVALENT.read_text(), re.M))


def workdir(module: str) -> Path:
    return WORK / module.replace("/", "__").removesuffix(".py")


def prepare(module: str, tests: list[str], resume: bool = False) -> Path:
    """A folder where mutmut sees only this module and these tests (results of an earlier run
    are dropped unless ``resume``: mutmut would otherwise keep verdicts reached with older tests)."""
    folder = workdir(module)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("src", "tests"):
        link = folder / name
        if not link.exists():
            link.symlink_to(ROOT / name)
    pyproject = (ROOT / "pyproject.toml").read_text()
    table = {
        "source_paths": ["src"],
        "only_mutate": [f"src/studylib/{module}"],
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q", "-m", "not browser"],
        "also_copy": ["tests/"],
        "timeout_multiplier": 5.0,
        "timeout_constant": 10.0,
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    text = pyproject + "\n".join(lines) + "\n"
    target = folder / "pyproject.toml"
    if not resume or not target.is_file() or target.read_text() != text:
        target.write_text(text)
        shutil.rmtree(folder / "mutants", ignore_errors=True)
    return folder


def run(module: str, tests: list[str], children: int, resume: bool = False) -> int:
    folder = prepare(module, tests, resume)
    mutmut = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "CI": "true", "STUDYLIB_MUTATION": "1"}
    command = ["nice", "-n", "15", str(mutmut), "run", "--max-children", str(children)]
    with open(folder / "mutmut.log", "w") as log:
        return subprocess.run(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT).returncode


def results(module: str) -> dict[str, int | None] | None:
    meta = workdir(module) / "mutants" / "src" / "studylib" / (module + ".meta")
    if not meta.is_file():
        return None
    return json.loads(meta.read_text())["exit_code_by_key"]


def score_line(module: str, codes: dict[str, int | None], same: set[str]) -> tuple[str, list[str]]:
    total = len(codes)
    killed = sum(1 for c in codes.values() if c in KILLED)
    unchecked = sum(1 for c in codes.values() if c is None)
    survivors = sorted(k for k, c in codes.items() if c not in KILLED and c is not None)
    listed = [k for k in survivors if k in same]
    open_ = [k for k in survivors if k not in same]
    counted = total - len(listed) - unchecked
    score = 100.0 * killed / counted if counted else float("nan")
    line = (f"{module:38s} {score:6.1f}%  killed {killed:4d} of {counted:4d}"
            f"  (mutants {total}, equivalent {len(listed)}, survived {len(open_)}, not checked {unchecked})")
    return line, open_


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules under src/studylib/ (default: all in modules.toml)")
    parser.add_argument("--report-only", action="store_true", help="print the last results without running mutmut")
    parser.add_argument("--children", type=int, default=2, help="parallel mutant runs (default 2)")
    parser.add_argument("--resume", action="store_true", help="keep mutmut's earlier verdicts (same tests and settings only)")
    args = parser.parse_args(argv)
    table = modules()
    chosen = args.modules or list(table)
    unknown = [m for m in chosen if m not in table]
    if unknown:
        parser.error(f"not in {MODULES.relative_to(ROOT)}: {', '.join(unknown)}")
    same = equivalent()
    lines, open_all = [], []
    for module in chosen:
        if not args.report_only:
            print(f"mutating {module} against {' '.join(table[module])} ...", flush=True)
            run(module, table[module], args.children, args.resume)
        codes = results(module)
        if codes is None:
            lines.append(f"{module:38s}   not run (see {workdir(module).relative_to(ROOT)}/mutmut.log)")
            continue
        line, open_ = score_line(module, codes, same)
        print(line, flush=True)
        lines.append(line)
        open_all += open_
    print("\nmutation score per module (killed / non-equivalent mutants):")
    print("\n".join(lines))
    if open_all:
        print(f"\n{len(open_all)} surviving mutant(s) neither killed nor listed in tests/mutation-equivalent.md:")
        print("\n".join(f"  {name}" for name in open_all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
