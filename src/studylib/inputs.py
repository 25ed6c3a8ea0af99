"""The input files a report reads, noted as it reads them, so that a change to one makes it due.

Every configuration file the library reads (catalogues, local catalogues, rules, profiles:
:func:`studylib.config.read_yaml`) is noted here. In a study run the runner names a private
file in ``STUDYLIB_INPUTS``; each noted path is appended to it (one per line). The runner then
records the hash of every input in the report's manifest, and a report whose inputs changed is
not current any more (:func:`studylib.runner.planning.is_current`). Outside a study run nothing is
written. This module loads nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

INPUTS_VARIABLE = "STUDYLIB_INPUTS"


def note_input(path) -> None:
    """Note that the running report read ``path`` (a no-op outside a study run)."""
    target = os.environ.get(INPUTS_VARIABLE)
    if not target:
        return
    try:
        resolved = str(Path(os.fspath(path)).resolve())
    except TypeError:  # a resource inside the installed package: covered by the library's version
        return
    try:
        with open(target, "a", encoding="utf-8") as out:
            out.write(resolved + "\n")
    except OSError:
        pass  # the runner then finds fewer inputs and re-runs more often, never less


def read_inputs(path: str | os.PathLike) -> list[str]:
    """The distinct paths noted in an inputs file, in the order first read."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return list(dict.fromkeys(line for line in lines if line))
