"""Scheduling a batch's reports: on threads of this process, or on a Dask cluster.

:func:`run_on_threads` runs one thread per report, ``--workers`` kernels at once
(:class:`KernelSlots`, the longest reports first: :func:`longest_first`), the kernels forked
from the batch's fork server and the PDFs and audits made in the finisher
(:class:`LocalHelpers`); :func:`run_on_cluster` submits each report whole to a Dask worker
(workers share the file system) behind the batch's release gate. :func:`signals_cancel` turns
SIGTERM and SIGINT into a clean cancel.
"""

from __future__ import annotations

import signal
import threading
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from studylib.runner import kernel_fork, publish
from studylib.runner.finishing import Finisher
from studylib.runner.outcomes import BatchResult, BatchSettings, Outcome, Progress
from studylib.runner.release import ReleaseGate, default_state
from studylib.runner.report_run import run_report
from studylib.runner.study import Report


@contextmanager
def signals_cancel(cancel: threading.Event, result: BatchResult) -> Iterator[None]:
    """In the main thread, SIGTERM and SIGINT cancel the batch instead of killing it mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        result.signal = signum
        cancel.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def longest_first(reports: list[Report], folder: Path) -> list[Report]:
    """Start the reports expected to take longest first, so that no long one runs alone at the end.

    Expected time: the last run's total from the manifest; without one, the template's size
    (a longer template usually does more).
    """
    def expected(report: Report) -> float:
        manifest = publish.read_json(folder / report.key / publish.MANIFEST) or {}
        seconds = manifest.get("timings", {}).get("total")
        return float(seconds) if seconds else report.study.template.stat().st_size / 2000

    return sorted(reports, key=expected, reverse=True)


def _warm_up() -> None:
    """Build the HTML exporter while the first kernels start (not before them)."""
    from studylib.runner.export import warm_up_html

    warm_up_html()


class KernelSlots:
    """``--workers`` kernels at once, handed out in the order the reports were queued."""

    def __init__(self, slots: int, turns: int) -> None:
        self.free = max(1, slots)
        self.turns: list[int] = list(range(turns))  # every report queues up front, in order
        self.condition = threading.Condition()

    def withdraw(self, turn: int) -> None:
        """A report that ends without running a kernel (skipped, failed early) leaves the queue."""
        with self.condition:
            if turn in self.turns:
                self.turns.remove(turn)
                self.condition.notify_all()

    @contextmanager
    def slot(self, turn: int, cancel: threading.Event | None) -> Iterator[None]:
        """Wait for a free slot and this report's turn; a cancelled batch stops waiting."""
        acquired = self._acquire(turn, cancel)
        try:
            yield  # not acquired (cancelled): execute_report sees the cancel and stops at once
        finally:
            if acquired:
                with self.condition:
                    self.free += 1
                    self.condition.notify_all()

    def _acquire(self, turn: int, cancel: threading.Event | None) -> bool:
        with self.condition:
            if turn not in self.turns:
                self.turns.append(turn)
                self.turns.sort()
            while not (self.free and self.turns[0] == turn):
                if cancel is not None and cancel.is_set():
                    self.turns.remove(turn)
                    self.condition.notify_all()
                    return False
                self.condition.wait(0.2)
            self.turns.pop(0)
            self.free -= 1
            self.condition.notify_all()
            return True


class LocalHelpers:
    """The helper processes of a batch on this machine, started once some report is to be made.

    The kernel fork server (:mod:`studylib.runner.kernel_fork`) and the finishers
    (:mod:`studylib.runner.finishing`, one per kernel slot) load their libraries while the batch still checks
    parameters and starts up; both stop when the batch ends.
    """

    def __init__(self, enabled: bool = True, finishers: int = 1):
        self.enabled = enabled
        self.finishers = finishers
        self.finisher = Finisher(helper=False)
        self._stack = ExitStack()

    def start(self) -> None:
        if not self.enabled:
            return
        self.enabled = False  # once
        from studylib.runner.kernel import kernel_environment

        self._stack.enter_context(kernel_fork.batch_forks(kernel_environment({})))
        self.finisher = self._stack.enter_context(Finisher(helpers=self.finishers))

    def __enter__(self) -> "LocalHelpers":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()


def run_on_threads(reports: list[Report], settings: BatchSettings, cancel: threading.Event, progress: Progress,
                    result: BatchResult, finisher: Finisher) -> None:
    """Reports on threads of this process. ``workers`` kernels run at once; a report whose kernel
    is done exports (HTML, PDF), audits and publishes while the next report's kernel runs."""
    slots = KernelSlots(settings.workers, len(reports))
    gate = ReleaseGate(settings.state or default_state(settings.reports))
    gate.expect(r.key for r in reports)

    def one(turn: int, report: Report) -> Outcome:
        try:
            if cancel.is_set():
                gate.leave(report.key)
                return Outcome(report.key, report.study.id, report.title, "cancelled", f"{report.key}: not started; the batch was cancelled", kind="cancelled")
            progress(report.key, None)
            return run_report(report, settings, cancel, (slots, turn), finisher, gate)
        finally:
            slots.withdraw(turn)

    threading.Thread(target=_warm_up, name="studylib-warm-up", daemon=True).start()
    # one thread per report: a report waits at the release gate until every other report is made
    pool = ThreadPoolExecutor(max_workers=len(reports), thread_name_prefix="studylib-report")
    try:
        pending: set[Future] = {pool.submit(one, turn, r) for turn, r in enumerate(reports)}
        while pending:
            finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            for future in finished:
                if future.cancelled():
                    continue  # never started; reported as cancelled by run_batch
                outcome = future.result()
                result.outcomes.append(outcome)
                progress(outcome.key, outcome)
            if cancel.is_set():
                for future in pending:
                    future.cancel()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_report_in_own_thread(report: Report, settings: BatchSettings, gate_name: str | None = None) -> Outcome:
    """:func:`run_report` in a fresh thread: a Dask worker thread may carry an event loop of its own,
    and the kernel client needs one that is not running. ``gate_name``: the batch's release gate
    (:class:`~studylib.runner.release.GateServer`) this report waits at."""
    gate = None
    if gate_name:
        from distributed import get_client

        from studylib.runner.release import RemoteGate

        gate = RemoteGate(settings.state or default_state(settings.reports), get_client(), gate_name)
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(run_report(report, settings, gate=gate)), name=f"studylib-report-{uuid.uuid4().hex[:8]}")
    thread.start()
    thread.join()
    return box[0]


def run_on_cluster(reports: list[Report], settings: BatchSettings, cancel: threading.Event, progress: Progress, result: BatchResult) -> None:
    from distributed import Client

    from studylib.runner.release import GateServer

    gate = ReleaseGate(settings.state or default_state(settings.reports))
    gate.expect(r.key for r in reports)
    name = f"studylib-gate-{uuid.uuid4().hex[:12]}"
    with Client(settings.cluster, set_as_default=False) as client:
        server = GateServer(gate, client, name)
        try:
            futures = {}
            for report in reports:
                futures[client.submit(run_report_in_own_thread, report, settings, name,
                                      key=f"studylib-{report.key}-{uuid.uuid4().hex[:8]}", pure=False)] = report
                progress(report.key, None)
            pending = dict(futures)
            while pending and not cancel.is_set():
                for future in [f for f in pending if f.done()]:
                    report = pending.pop(future)
                    try:
                        outcome = future.result()
                    except Exception as err:  # noqa: BLE001 - a worker that died is a failure of its report only
                        gate.leave(report.key)
                        outcome = Outcome(report.key, report.study.id, report.title, "failed",
                                          f"{report.key}: the Dask worker failed: {type(err).__name__}: {err}", kind="worker")
                    result.outcomes.append(outcome)
                    progress(outcome.key, outcome)
                cancel.wait(0.25)
            if pending:
                client.cancel(list(pending))  # a report already running on a worker finishes or fails whole
        finally:
            server.close()
