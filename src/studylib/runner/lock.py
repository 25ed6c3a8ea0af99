"""Report locks: one writer per report folder, across threads, processes and scheduled runs.

A lock is an ``flock`` on ``<reports>/.locks/<report>.lock``. The kernel drops it when the
holder exits, however it exits (crash, SIGKILL), so a stale lock never blocks a later run.
A second run that wants the same report waits for it (the first run's result is then
usually current, and the second one skips it) up to a limit, and gives up when its batch
is cancelled.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from studylib.errors import StudylibError


class LockBusy(StudylibError):
    """Another run holds the report's lock for longer than we may wait."""


def lock_path(reports: Path, key: str) -> Path:
    return reports / ".locks" / (key.replace("/", "__") + ".lock")


@contextmanager
def report_lock(reports: Path, key: str, wait: float, cancel: threading.Event | None = None,
                on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold the lock of report ``key``; yields True if we had to wait for another run.

    ``on_wait`` is called once, when the lock is found taken (before waiting for it)."""
    path = lock_path(reports, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    waited = False
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                if time.monotonic() >= deadline:
                    raise LockBusy(f"report {key}: another run has been writing it for more than {wait:g} s (lock {path})") from None
                if cancel is not None and cancel.wait(0.2):
                    raise LockBusy(f"report {key}: cancelled while waiting for another run to finish it") from None
                if cancel is None:
                    time.sleep(0.2)
        yield waited
    finally:
        os.close(fd)  # releases the lock
