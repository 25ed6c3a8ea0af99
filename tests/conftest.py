"""Shared pytest set-up: the hypothesis profiles, and the key the runner's audit uses in every test.

Hypothesis: ``ci`` (chosen when the CI environment variable is set, as CI runs do) is
derandomised: every run draws the same examples, so a red build is reproducible and a green one
is not luck, and it keeps no example database. ``dev`` (the default elsewhere) draws new
examples each run and remembers failing ones in ``.hypothesis/``. Choose one by hand with
``HYPOTHESIS_PROFILE=ci pytest ...``. Per-test ``@settings`` (example counts) still apply.

The audit key: a real key file (mode 600) in ``STUDYLIB_KEY_FILE`` for the session. Test
datasets record its fingerprint (``runner_fixtures.made_by``) as ingest would, so the runner's
audit runs at full strength on them; no kernel ever sees it.

Order: the modules listed in ``heaviest-first.txt`` run first, heaviest first, so that the two
workers of ``make test`` (pytest-xdist, one module per worker at a time) finish together.

The demo release (``demo_release``): every study of ``studies/`` run on the demo data, built
once per test run and shared by the xdist workers (under a file lock in the run's temporary
folder); the modules that read it only read it.
"""

from __future__ import annotations

import fcntl
import os
import pickle
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


def _module_order() -> tuple[dict[str, int], dict[str, int]]:
    """(first, last): module file name -> rank, from heaviest-first.txt (its lines before and
    after ``[last]``; comments and blank lines skipped)."""
    lines = (Path(__file__).parent / "heaviest-first.txt").read_text(encoding="utf-8").splitlines()
    names = [line.split("#")[0].split() for line in lines]
    names = [words[0] for words in names if words]
    cut = names.index("[last]") if "[last]" in names else len(names)
    return ({n: r for r, n in enumerate(names[:cut])}, {n: r for r, n in enumerate(names[cut + 1:])})


def pytest_collection_modifyitems(config, items):
    """Run the heaviest modules first and the [last] ones last; within a module, and for the
    rest, keep pytest's order."""
    first, last = _module_order()

    def place(item) -> tuple[int, int]:
        name = item.path.name
        return (0, first[name]) if name in first else (2, last[name]) if name in last else (1, 0)

    items.sort(key=place)  # sort is stable


@pytest.fixture(scope="session", autouse=True)
def audit_key(tmp_path_factory):
    from studylib.privacy.tokens import new_key

    previous = os.environ.get("STUDYLIB_KEY_FILE")
    key = new_key(tmp_path_factory.mktemp("audit-key") / "test.key")
    os.environ["STUDYLIB_KEY_FILE"] = str(key)
    yield key
    if previous is None:
        os.environ.pop("STUDYLIB_KEY_FILE", None)
    else:
        os.environ["STUDYLIB_KEY_FILE"] = previous


@pytest.fixture
def fresh_report(monkeypatch):
    """An interactive session with no study run: no disclosure, report, ledger or plan variable, numbering from 1."""
    from studylib.report import settings as report_settings

    for name in ("STUDYLIB_DISCLOSURE", "STUDYLIB_REPORT", "STUDYLIB_LEDGER", "STUDYLIB_RELEASE_PLAN"):
        monkeypatch.delenv(name, raising=False)
    report_settings.reset()
    yield
    report_settings.reset()


@pytest.fixture(scope="session")
def demo_release(request, tmp_path_factory):
    """(reports folder, batch result) of the whole demo release, published once per test run.

    Under xdist the first worker to ask builds it in the run's shared temporary folder while the
    others wait on the lock; then each reads the same folder and the pickled batch result.
    """
    from runner_fixtures import publish_demo_studies
    from studylib.runner.study import find_studies

    studies = Path(__file__).resolve().parents[1] / "studies"
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if hasattr(request.config, "workerinput") else base  # xdist: popen-gwN's parent
    folder, done = shared / "demo-release", shared / "demo-release.pickle"
    with open(shared / "demo-release.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            reports = folder / "reports"
            reports.mkdir(parents=True, exist_ok=True)
            result = publish_demo_studies(reports, find_studies(studies), studies, workers=2)
            partial = done.with_suffix(".partial")
            partial.write_bytes(pickle.dumps((reports, result)))
            partial.rename(done)
        return pickle.loads(done.read_bytes())
