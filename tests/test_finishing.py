"""The finisher: PDFs and audits made in a helper process are those made in this one.

A real helper process renders a report page (the same PDF bytes as in this process) and
audits a staging folder (the same verdict, passed or failed); an error in the helper comes
back as the error it was (an OSError keeps its errno and file); when the helper is gone the
step is done here. The helper protocol fails clearly when the helper stops.
"""

from __future__ import annotations

import errno
import shutil

import pytest

from runner_fixtures import make_dataset

from studylib.report import look
from studylib.runner.export import to_pdf
from studylib.runner.finishing import Finisher
from studylib.runner.gate import audit_report
from studylib.runner.worker import LineWorker, WorkerGone

pytestmark = pytest.mark.slow

PAGE = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Finisher</title><style>" + look.stylesheet()
        + "</style></head><body><h1>Finisher</h1><p>Persons identified per year: see the tables.</p></body></html>")
LEAK = PAGE.replace("see the tables", "CPR 010190-1234 of the person")


@pytest.fixture(scope="module")
def finisher():
    with Finisher() as f:
        yield f


def _stage(folder, page: str):
    folder.mkdir(parents=True)
    (folder / "report.html").write_text(page)
    return folder


def test_the_helper_renders_the_same_pdf_bytes(finisher, tmp_path):
    stage = _stage(tmp_path / "stage", PAGE)
    finisher.pdf(stage / "report.html", stage / "report.pdf")
    assert (stage / "report.pdf").read_bytes() == to_pdf(PAGE)
    assert finisher._workers[0].alive  # it was the helper that made it


def test_the_helper_gives_the_same_audit_verdict(finisher, tmp_path):
    data = make_dataset(tmp_path / "dataset", n=30)  # records the session's audit key, as ingest would
    for name, page, passed in (("clean", PAGE, True), ("leak", LEAK, False)):
        stage = _stage(tmp_path / name, page)
        here = audit_report(stage, 5, data)
        there = finisher.audit(stage, 5, data)
        assert there == here
        assert there.passed is passed, there.findings


def test_an_os_error_in_the_helper_is_raised_here_with_its_errno(finisher, tmp_path):
    stage = _stage(tmp_path / "stage", PAGE)
    with pytest.raises(OSError) as raised:
        finisher.pdf(stage / "report.html", tmp_path / "no such folder" / "report.pdf")
    assert raised.value.errno == errno.ENOENT
    assert "no such folder" in str(raised.value)
    assert finisher._workers[0].alive


def test_without_its_helper_the_finisher_works_in_this_process(tmp_path):
    stage = _stage(tmp_path / "stage", PAGE)
    with Finisher() as finisher:
        finisher._workers[0].process.kill()
        finisher._workers[0].process.wait()
        finisher.pdf(stage / "report.html", stage / "report.pdf")
        assert finisher.audit(stage, 5, make_dataset(tmp_path / "dataset", n=30)).passed
    assert (stage / "report.pdf").read_bytes() == to_pdf(PAGE)
    shutil.rmtree(stage)


def test_each_step_goes_to_a_helper_that_is_free(tmp_path):
    """With two helpers (two kernels at once), a step goes to the one not busy with another report."""
    stage = _stage(tmp_path / "stage", PAGE)
    with Finisher(helpers=2) as finisher:
        assert len(finisher._workers) == 2 and all(w.alive for w in finisher._workers)
        busy = finisher._free.get()  # as while it renders another report's PDF
        finisher.pdf(stage / "report.html", stage / "report.pdf")
        other = next(w for w in finisher._workers if w is not busy)
        assert (other._next, busy._next) == (1, 0)
        finisher._free.put(busy)
        assert finisher._free.qsize() == 2  # the helper that served is free again
    assert (stage / "report.pdf").read_bytes() == to_pdf(PAGE)


def test_a_helper_that_stops_fails_requests_clearly():
    worker = LineWorker("this")  # prints the Zen of Python and exits: never ready
    with pytest.raises(WorkerGone, match="this helper stopped"):
        worker.request({"step": "pdf"}, timeout=30)
    worker.close()
