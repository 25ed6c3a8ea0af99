"""Shared pytest set-up: the hypothesis profiles, and the key the runner's audit uses in every test.

Hypothesis: ``ci`` (chosen when the CI environment variable is set, as CI runs do) is
derandomised: every run draws the same examples, so a red build is reproducible and a green one
is not luck, and it keeps no example database. ``dev`` (the default elsewhere) draws new
examples each run and remembers failing ones in ``.hypothesis/``. Choose one by hand with
``HYPOTHESIS_PROFILE=ci pytest ...``. Per-test ``@settings`` (example counts) still apply.

The audit key: a real key file (mode 600) in ``STUDYLIB_KEY_FILE`` for the session. Test
datasets record its fingerprint (``runner_fixtures.made_by``) as ingest would, so the runner's
audit runs at full strength on them; no kernel ever sees it.
"""

from __future__ import annotations

import os

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
