"""Finishing a report off the batch's interpreter: the PDF and the disclosure audit.

A batch runs its reports on threads of one process, which also drives the kernels
(papermill, nbclient) and renders the HTML. WeasyPrint's layout and pypdf's text
extraction (the audit reads the PDF back) are pure Python and would hold that process's
interpreter lock while the other reports wait for their kernels' messages. A
:class:`Finisher` runs both in a helper process (``python -m studylib.runner.finishing``,
see :mod:`studylib.runner.worker`) that loads WeasyPrint's fonts and the audit once, while
the first kernels start. The helper writes the PDF into the staging folder and returns the
audit's verdict. A batch with several kernels at once has as many helpers, each step going
to one that is free, so that PDFs and audits use the cores the kernels leave idle. Should the helper be gone, the step runs in this process instead, so a
broken helper never fails a report; an error of the step itself (a full disk, say) is
raised here as it would have been in this process.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import traceback
from pathlib import Path
from typing import Any, Callable

from studylib.errors import StudylibError
from studylib.runner import gate, sandbox
from studylib.runner.worker import LineWorker, WorkerGone, send, take_stdio

MODULE = "studylib.runner.finishing"

#: The finisher yields the processor to the report kernels: what they finish is what it works on.
NICENESS = 5


class FinishingError(StudylibError):
    """The PDF or the audit failed in the finisher (the message says how)."""


def write_pdf(html_file: str, pdf_file: str) -> None:
    """Render ``html_file`` (a report page) to ``pdf_file``."""
    from studylib.runner.export import to_pdf

    Path(pdf_file).write_bytes(to_pdf(Path(html_file).read_text()))


def audit(stage: str, min_cell: int, data: str) -> dict:
    """The disclosure audit of a staging folder (:func:`studylib.runner.gate.audit_report`), as plain data."""
    verdict = gate.audit_report(Path(stage), int(min_cell), Path(data))
    return {"passed": verdict.passed, "findings": verdict.findings, "record": verdict.record}


#: What the finisher does, by name; the same function runs in the helper or, without one, here.
STEPS: dict[str, Callable[..., Any]] = {"pdf": write_pdf, "audit": audit}


def _warm_up() -> None:
    from studylib.runner.export import warm_up_pdf

    warm_up_pdf()
    import pypdf  # noqa: F401
    import studylib.privacy.audit  # noqa: F401


class Finisher:
    """Renders PDFs and audits reports in ``helpers`` helper processes (``helper=False``: in this process)."""

    def __init__(self, helper: bool = True, env: dict[str, str] | None = None, helpers: int = 1):
        self._workers: list[LineWorker] = []
        self._free: queue.Queue[LineWorker] = queue.Queue()
        for _ in range(max(1, int(helpers)) if helper else 0):
            try:
                worker = LineWorker(MODULE, env, new_session=True)
            except OSError:
                break
            self._workers.append(worker)
            self._free.put(worker)

    def __enter__(self) -> "Finisher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def pdf(self, html_file: Path, pdf_file: Path) -> None:
        """Write the PDF of a report page."""
        self._step("pdf", str(html_file), str(pdf_file))

    def audit(self, stage: Path, min_cell: int, data: Path) -> gate.Verdict:
        """The disclosure audit of everything in a staging folder."""
        return gate.Verdict(**self._step("audit", str(stage), min_cell, str(data)))

    def close(self) -> None:
        for worker in self._workers:
            worker.close(grace=10)

    def _step(self, name: str, *args: Any) -> Any:
        if self._workers:
            worker = self._free.get()  # the next helper that is free
            try:
                if worker.alive:
                    reply = worker.request({"step": name, "args": list(args)}, timeout=600)
                    if "error" in reply:
                        raise _error(reply["error"])
                    return reply["result"]
            except WorkerGone:
                pass  # done here instead
            finally:
                self._free.put(worker)
        return STEPS[name](*args)


def _error(error: dict) -> Exception:
    if error.get("errno") is not None:
        return OSError(error["errno"], error.get("strerror") or os.strerror(error["errno"]), error.get("filename"))
    return FinishingError(f"{error['type']}: {error['message']}")


def serve() -> None:
    """The helper's loop: answer requests until stdin closes."""
    requests, replies = take_stdio()
    sandbox.conceal()  # it holds the key while it audits: no other process of this user reads its memory or environment
    os.nice(NICENESS)
    send(replies, {"ready": os.getpid()})
    _warm_up()
    with os.fdopen(requests, "rb") as lines:
        for line in lines:
            request = json.loads(line)
            try:
                answer = {"result": STEPS[request["step"]](*request["args"])}
            except OSError as err:
                answer = {"error": {"type": type(err).__name__, "message": str(err), "errno": err.errno or errno.EIO,
                                    "strerror": err.strerror, "filename": err.filename}}
            except Exception as err:  # noqa: BLE001 - reported to the batch, which fails that report
                answer = {"error": {"type": type(err).__name__, "message": str(err) or traceback.format_exc(limit=1)}}
            send(replies, {**answer, "id": request["id"]})
    os._exit(0)  # every answer is sent; skip tearing down WeasyPrint and the rest


if __name__ == "__main__":
    serve()
