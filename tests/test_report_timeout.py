"""The report timeout counts from the moment the kernel is ready, not from the start of the run.

The watchdog of :mod:`studylib.runner.execute` is run on its own (no kernel is registered
under its token, so its kill finds nothing): before the kernel is ready it never fires,
however long the start takes; once ready, it fires after the report's seconds. Waits are on
the watchdog's own state with generous deadlines, never on a fixed sleep.
"""

from __future__ import annotations

import threading
import time

from studylib.runner.execute import _Watchdog


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_the_report_clock_starts_when_the_kernel_is_ready():
    watchdog = _Watchdog("0" * 32, seconds=0.2, cancel=None)
    watchdog.start()
    try:
        # longer than the report's seconds, still starting: the watchdog must not fire
        assert not _wait_for(lambda: watchdog.fired is not None, 1.0)
        before = time.monotonic()
        watchdog.kernel_ready(notebook=None)
        assert _wait_for(lambda: watchdog.fired is not None, 30.0)
        assert watchdog.fired == "report_timeout"
        assert time.monotonic() - before >= 0.2, "not before the report's seconds have passed since ready"
    finally:
        watchdog.done.set()
        watchdog.join(timeout=5)
    assert not watchdog.is_alive()


def test_a_second_ready_does_not_move_the_deadline():
    watchdog = _Watchdog("1" * 32, seconds=5.0, cancel=None)
    watchdog.kernel_ready()
    first = watchdog.deadline
    watchdog.kernel_ready()
    assert watchdog.deadline == first is not None


def test_cancel_stops_a_report_whose_kernel_is_still_starting():
    cancel = threading.Event()
    watchdog = _Watchdog("2" * 32, seconds=3600.0, cancel=cancel)
    watchdog.start()
    try:
        cancel.set()
        assert _wait_for(lambda: watchdog.fired is not None, 30.0)
        assert watchdog.fired == "cancelled"
    finally:
        watchdog.done.set()
        watchdog.join(timeout=5)
