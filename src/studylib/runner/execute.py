"""Executing one report's notebook with papermill's Python API, in a kernel of its own.

:func:`execute_report` parameterises the template and runs it in a :class:`StudyKernel`
(private IPC sockets, per-kernel environment), with a timeout per cell (nbclient) and one
for the whole report counted from the moment its kernel is ready (a watchdog thread that
kills the kernel), and it stops at once when the batch is cancelled. Whatever goes wrong becomes an :class:`ExecutionFailure` that names
the cell (its number in the template, its first line, its section) and why; the executed
notebook is always left at ``output`` with an error banner, for the staff area (``<state>/failed/``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from traitlets.config import Config

from studylib.errors import StudylibError
from studylib.runner.kernel import StudyKernel, kernel_folder, kill_kernel
from studylib.runner.template import papermill_module, studylib_imports

BANNER_TAG = "studylib-error"

_local = threading.local()


class _ThreadLog(logging.Handler):
    """Sends papermill's log records to the log file of the report this thread runs."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = getattr(_local, "log", None)
        if stream is not None:
            try:
                stream.write(f"[{record.levelname.lower()}] {record.getMessage()}\n")
                stream.flush()
            except (OSError, ValueError):
                pass


def _route_papermill_log() -> None:
    logger = logging.getLogger("papermill")
    if not any(isinstance(h, _ThreadLog) for h in logger.handlers):
        logger.addHandler(_ThreadLog())
        logger.setLevel(logging.INFO)
        logger.propagate = False  # into the report's log, not onto the console of a batch


@dataclass(frozen=True)
class CellInfo:
    """Where in the template something happened."""

    number: int  # 1-based position in the template (the injected-parameters cell not counted)
    first_line: str
    section: str | None

    def __str__(self) -> str:
        where = f"cell {self.number} ({self.first_line!r}"
        return where + (f", section {self.section!r})" if self.section else ")")


class ExecutionFailure(StudylibError):
    """A report's notebook did not run through; says which cell and why."""

    def __init__(self, reason: str, cell: CellInfo | None = None, kind: str = "error"):
        self.reason = reason
        self.cell = cell
        self.kind = kind  # error | cell_timeout | report_timeout | kernel_died | cancelled | kernel_start
        super().__init__(f"{cell}: {reason}" if cell else reason)


@dataclass(frozen=True)
class Limits:
    """Time limits of one report, in seconds."""

    cell: float
    report: float
    startup: float = 60.0


class _Tracker:
    """Which cell runs now (nbclient hook), so a dead kernel or a timeout can be placed."""

    def __init__(self) -> None:
        self.index: int | None = None

    def on_cell_start(self, cell, cell_index, **_):
        self.index = cell_index


class _Watchdog(threading.Thread):
    """Kills the kernel when the report runs too long or the batch is cancelled.

    The report's time counts from the moment its kernel is ready (:meth:`kernel_ready`,
    nbclient's ``on_notebook_start``), so a slow kernel start on a busy machine does not eat
    into it; the start itself has its own limit (``Limits.startup``)."""

    def __init__(self, token: str, seconds: float, cancel: threading.Event | None):
        super().__init__(name=f"watchdog-{token[:8]}", daemon=True)
        self.token, self.seconds, self.cancel = token, seconds, cancel
        self.done = threading.Event()
        self.fired: str | None = None
        self.deadline: float | None = None

    def kernel_ready(self, **_) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.seconds

    def run(self) -> None:
        while not self.done.is_set():
            deadline = self.deadline
            if self.cancel is not None and self.cancel.is_set():
                self.fired = "cancelled"
            elif deadline is not None and time.monotonic() >= deadline:
                self.fired = "report_timeout"
            if self.fired:
                kill_kernel(self.token)
                self.done.wait(0.5)  # keep killing until execution has stopped (kernel may still be starting)
            elif deadline is None:
                self.done.wait(0.25)
            else:
                self.done.wait(min(0.25, max(deadline - time.monotonic(), 0.01)))


def template_cell(nb, index: int | None) -> CellInfo | None:
    """Describe cell ``index`` of a parameterised notebook by its place in the template."""
    if index is None or not (0 <= index < len(nb.cells)):
        return None
    skip = ("injected-parameters", BANNER_TAG, "papermill-error-cell-tag")
    number, section = 0, None
    for i, cell in enumerate(nb.cells[: index + 1]):
        tags = cell.get("metadata", {}).get("tags", [])
        if any(t in tags for t in skip):
            continue
        number += 1
        if cell.cell_type == "markdown" and i < index:
            heads = [ln.lstrip("#").strip() for ln in cell.source.splitlines() if ln.startswith("#")]
            section = heads[-1] if heads else section
    source = nb.cells[index].source.strip().splitlines()
    first = source[0][:80] if source else ""
    return CellInfo(number=number, first_line=first, section=section)


def _mark_failure(output: Path, failure: ExecutionFailure, index: int | None) -> None:
    """Put a banner on the saved notebook (papermill does so only for cell errors)."""
    if not output.is_file():
        return
    import nbformat

    nb = nbformat.read(output, as_version=4)
    if any(BANNER_TAG in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        return
    if index is not None and index < len(nb.cells):
        nb.cells[index].metadata.setdefault("papermill", {}).update(status="failed", exception=True)
    banner = nbformat.v4.new_markdown_cell(
        f'<span style="color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;">'
        f"studylib: this report failed: {failure}</span>"
    )
    banner.metadata["tags"] = [BANNER_TAG]
    nb.cells.insert(0, banner)
    nbformat.write(nb, output)


def execute_report(
    template: Path,
    output: Path,
    parameters: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    cwd: Path,
    limits: Limits,
    log: Any = None,
    cancel: threading.Event | None = None,
) -> Any:
    """Run ``template`` with ``parameters`` into ``output``; raise ExecutionFailure on any failure."""
    pm = papermill_module()
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from studylib.runner.engine import register
    from papermill.exceptions import PapermillExecutionError

    if cancel is not None and cancel.is_set():
        raise ExecutionFailure("the batch was cancelled before this report started", kind="cancelled")
    _route_papermill_log()
    _local.log = log
    token = uuid.uuid4().hex
    tracker = _Tracker()
    watchdog = _Watchdog(token, limits.report, cancel)
    with kernel_folder() as folder:
        config = Config()
        config.StudyKernel.kernel_folder = str(folder)
        config.StudyKernel.kernel_env = dict(env)
        config.StudyKernel.kernel_cwd = str(cwd)
        config.StudyKernel.report_token = token
        config.StudyKernel.preload = studylib_imports(template)
        config.StudyKernel.readable = _dataset_folders(parameters)
        watchdog.start()
        failure: ExecutionFailure | None = None
        try:
            return pm.execute_notebook(
                str(template),
                str(output),
                parameters=dict(parameters),
                engine_name=register(),
                kernel_name=_kernel_name(template),
                progress_bar=False,
                stdout_file=log,
                stderr_file=log,
                start_timeout=limits.startup,
                execution_timeout=limits.cell,
                kernel_manager_class=StudyKernel,
                config=config,
                on_notebook_start=watchdog.kernel_ready,
                on_cell_start=tracker.on_cell_start,
                shutdown_kernel="immediate",
            )
        except PapermillExecutionError as err:
            nb = nbformat.read(output, as_version=4) if output.is_file() else None
            cell = _cell_by_source(nb, err.source) if nb else None
            failure = ExecutionFailure(f"raised {err.ename}: {err.evalue}".rstrip(": "), cell, kind="error")
            raise failure from None
        except CellTimeoutError:
            failure = ExecutionFailure(f"ran longer than the cell timeout of {limits.cell:g} s", kind="cell_timeout")
        except DeadKernelError as err:
            if watchdog.fired == "report_timeout":
                failure = ExecutionFailure(f"the report ran longer than its timeout of {limits.report:g} s; the kernel was stopped", kind="report_timeout")
            elif watchdog.fired == "cancelled":
                failure = ExecutionFailure("the batch was cancelled; the kernel was stopped", kind="cancelled")
            else:
                failure = ExecutionFailure(f"the kernel died ({err})", kind="kernel_died")
        except (RuntimeError, TimeoutError) as err:
            if watchdog.fired:
                kind = watchdog.fired
                reason = "the batch was cancelled" if kind == "cancelled" else f"the report ran longer than its timeout of {limits.report:g} s"
                failure = ExecutionFailure(reason, kind=kind)
            else:
                failure = ExecutionFailure(f"the kernel did not start or stopped answering: {type(err).__name__}: {err}", kind="kernel_start")
        finally:
            watchdog.done.set()
            watchdog.join(timeout=5)
            _local.log = None
        index = tracker.index
        nb = nbformat.read(output, as_version=4) if output.is_file() else None
        failure = ExecutionFailure(failure.reason, template_cell(nb, index) if nb is not None else None, failure.kind)
        _mark_failure(output, failure, index)
        raise failure


def _dataset_folders(parameters: Mapping[str, Any]) -> list[str]:
    """What the kernel's sandbox lets it read besides the system and its template's folder: the
    dataset (``data_dir``) and the project's studies/ (local catalogues) and synthetic_data/
    (profiles, the demo data and its truth). A path a parameter names is not opened up: a template
    told where the key lies must still not read it. Never the runner's private state."""
    from studylib import paths

    out = []
    value = parameters.get("data_dir")
    if isinstance(value, (str, Path)) and str(value) and Path(value).is_dir():
        out.append(str(Path(value).resolve()))
    try:
        root = paths.project_root()
        out += [str(root / name) for name in ("studies", "synthetic_data") if (root / name).is_dir()]
    except FileNotFoundError:
        pass
    return list(dict.fromkeys(out))


def _cell_by_source(nb, source: str) -> CellInfo | None:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.source == source and "papermill-error-cell-tag" not in cell.metadata.get("tags", []):
            return template_cell(nb, i)
    return None


def _kernel_name(template: Path) -> str:
    import nbformat

    nb = nbformat.read(template, as_version=4)
    return nb.metadata.get("kernelspec", {}).get("name", "python3")
