"""Shared test set-up: the key the runner's audit uses in every test (a real key file, mode 600).

Test datasets record its fingerprint (``runner_fixtures.made_by``) as ingest would, so the
runner's audit runs at full strength on them; no kernel ever sees it.
"""

from __future__ import annotations

import os

import pytest


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
