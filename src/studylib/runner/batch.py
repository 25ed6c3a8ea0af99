"""A batch of studies: check them all, skip what is current, run the rest in parallel, publish.

:func:`run_batch` plans (:mod:`~studylib.runner.planning`), runs the reports
(:mod:`~studylib.runner.scheduling`, each one by :func:`~studylib.runner.report_run.run_report`),
and rewrites the index (:mod:`~studylib.runner.index`). It reports progress, handles
SIGTERM/SIGINT (kernels stopped, nothing half-published) and never raises for one report.

The names other code imports from here (the settings and outcomes, :func:`plan_batch`,
:func:`run_report`, :func:`write_index`, ...) are re-exported from the modules that own them.
"""

from __future__ import annotations

import threading
from pathlib import Path

from studylib.runner import publish, sandbox
from studylib.runner.index import write_index
from studylib.runner.outcomes import BatchResult, BatchSettings, Outcome, Progress
from studylib.runner.planning import Plan, current_fingerprint, is_current, plan_batch, published_intact, why_due
from studylib.runner.release import default_state
from studylib.runner.report_run import ReportRejected, Stopwatch, disclosure_settings, kernel_variables, record_invalid, run_report
from studylib.runner.scheduling import KernelSlots, LocalHelpers, longest_first, run_on_cluster, run_on_threads, run_report_in_own_thread, signals_cancel

__all__ = ['BatchResult', 'BatchSettings', 'KernelSlots', 'LocalHelpers', 'Outcome', 'Plan', 'Progress', 'ReportRejected', 'Stopwatch', 'current_fingerprint', 'disclosure_settings', 'is_current', 'kernel_variables', 'longest_first', 'plan_batch', 'published_intact', 'record_invalid', 'run_batch', 'run_on_cluster', 'run_on_threads', 'run_report', 'run_report_in_own_thread', 'signals_cancel', 'why_due', 'write_index']


def run_batch(files: list[Path], settings: BatchSettings, progress: Progress | None = None) -> BatchResult:
    """Plan, run and publish a batch; rewrite the index. Never raises for a single report."""
    progress = progress or (lambda key, outcome: None)
    settings.reports.mkdir(parents=True, exist_ok=True)
    publish.remove_stale_staging(settings.reports)
    publish.remove_stale_kept_runs(settings.state or default_state(settings.reports))
    from studylib.runner.kernel import remove_stale_kernel_folders

    remove_stale_kernel_folders()
    sandbox.conceal()  # this process may hold the key: report kernels cannot read its /proc (see runner.sandbox)
    result = BatchResult()
    cancel = threading.Event()
    with signals_cancel(cancel, result), LocalHelpers(enabled=not settings.cluster, finishers=settings.workers) as helpers:
        plan = plan_batch(files, settings, on_work=helpers.start)
        for o in plan.done:
            if o.status == "invalid":
                record_invalid(o, settings)
            result.outcomes.append(o)
            progress(o.key, o)
        if plan.run and not cancel.is_set():
            ordered = longest_first(plan.run, settings.reports)
            if settings.cluster:
                run_on_cluster(ordered, settings, cancel, progress, result)
            else:
                run_on_threads(ordered, settings, cancel, progress, result, helpers.finisher)
        for report in plan.run:
            if not any(o.key == report.key for o in result.outcomes):
                o = Outcome(report.key, report.study.id, report.title, "cancelled", f"{report.key}: not started; the batch was cancelled", kind="cancelled")
                result.outcomes.append(o)
                progress(o.key, o)
    result.index = write_index(settings.reports, settings.studies_dir, settings.state)
    return result
