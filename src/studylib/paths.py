"""Where things live: the project root and the demo locations (DESIGN section 2).

A template running in JupyterLab (working directory ``templates/``), a Papermill run and
the command line all find the same demo data through these functions. ``STUDYLIB_HOME``
overrides the project root (for an installed, non-editable studylib).
"""

from __future__ import annotations

import os
from pathlib import Path

_MARKERS = ("pyproject.toml", "synthetic_data")


def _is_root(path: Path) -> bool:
    return all((path / m).exists() for m in _MARKERS)


def project_root() -> Path:
    """The studylib checkout: $STUDYLIB_HOME, else the first parent of the cwd or of this file that looks like one."""
    env = os.environ.get("STUDYLIB_HOME")
    if env:
        return Path(env).resolve()
    for start in (Path.cwd().resolve(), Path(__file__).resolve()):
        for candidate in (start, *start.parents):
            if _is_root(candidate):
                return candidate
    raise FileNotFoundError(
        "cannot find the studylib project folder (one with pyproject.toml and synthetic_data/); "
        "run from inside the checkout or set STUDYLIB_HOME"
    )


def profiles_dir() -> Path:
    return project_root() / "synthetic_data" / "profiles"


def generated_dir() -> Path:
    return project_root() / "synthetic_data" / "generated"


def demo_dir() -> Path:
    return generated_dir() / "demo"


def demo_raw_dir() -> Path:
    """Raw form exports of the demo (and their ``truth/`` folder)."""
    return demo_dir() / "raw"


def demo_dataset_dir() -> Path:
    """The pseudonymised demo dataset that every template's defaults point at."""
    return demo_dir() / "dataset"


def demo_key_file() -> Path:
    """The key for synthetic data only; named so nobody mistakes it for a real key."""
    return generated_dir() / "DEMO-KEY-synthetic-data-only.key"


def reports_dir() -> Path:
    return project_root() / "reports"
