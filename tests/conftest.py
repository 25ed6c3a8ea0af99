"""Shared pytest set-up: the hypothesis profiles.

``ci`` (chosen when the CI environment variable is set, as CI runs do) is derandomised: every
run draws the same examples, so a red build is reproducible and a green one is not luck, and
it keeps no example database. ``dev`` (the default elsewhere) draws new examples each run and
remembers failing ones in ``.hypothesis/``. Choose one by hand with
``HYPOTHESIS_PROFILE=ci pytest ...``. Per-test ``@settings`` (example counts) still apply.
"""

from __future__ import annotations

import os

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
