"""What a batch is asked and what it answers: its settings, one report's outcome, the batch's result.

:class:`BatchSettings` (where it publishes, how many kernels, a cluster, ``-p`` overrides),
:class:`Outcome` (what happened to one report: published, skipped, failed, invalid, cancelled)
and :class:`BatchResult` are shared by planning, one report's run, scheduling and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class BatchSettings:
    """How a batch runs and where it publishes."""

    reports: Path
    force: bool = False
    workers: int = 1
    cluster: str | None = None
    lock_wait: float = 3 * 3600.0
    studies_dir: Path | None = None  # for the index: studies that never ran are listed too
    state: Path | None = None  # the runner's private state (release ledgers); default: beside reports/
    overrides: dict = field(default_factory=dict)  # -p KEY=VALUE: parameters set for every study of this run


@dataclass
class Outcome:
    """What happened to one report (or to a study file that could not be read)."""

    key: str
    study: str
    title: str
    status: str  # published | skipped | failed | invalid | cancelled
    message: str = ""
    seconds: float = 0.0
    folder: str | None = None
    kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("published", "skipped")


@dataclass
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)
    signal: int | None = None
    index: Path | None = None

    @property
    def ok(self) -> bool:
        return self.signal is None and all(o.ok for o in self.outcomes)


Progress = Callable[[str, Outcome | None], None]  # (report key, None when it starts / its outcome)
