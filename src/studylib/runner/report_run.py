"""One report's run: execute, export HTML and PDF, audit, pass the release gate, publish.

:func:`run_report` makes one report under its lock, or records the failure in the staff
area (its notebook and log audited); it never raises, so one report cannot stop the others.
A published report's notebook and log stay in the staff area too (``<state>/runs/<key>``).
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, TYPE_CHECKING

from studylib.data.atomic import recover
from studylib.errors import StudylibError
from studylib.report import variables
from studylib.runner import publish
from studylib.runner.finishing import Finisher
from studylib.runner.lock import LockBusy, report_lock
from studylib.runner.outcomes import BatchSettings, Outcome
from studylib.runner.planning import is_current
from studylib.runner.provenance import data_identity, fingerprint, inputs_identity, ledger_digest, library_versions, look_hash, sha256_file, template_hash
from studylib.runner.release import Gate, ReleaseGate, default_state, lineage, loss_of
from studylib.runner.study import DATA_PARAMETER, Report

if TYPE_CHECKING:
    from studylib.runner.scheduling import KernelSlots


def disclosure_settings(report: Report):
    """The study's disclosure settings as the one value a kernel gets (:class:`DisclosureSettings`)."""
    from studylib.privacy.disclosure import DisclosureSettings

    d = report.study.spec.disclosure
    return DisclosureSettings(min_cell=d.min_cell, rounding=d.rounding, zeros_disclosive=d.zeros_disclosive,
                              symbol=d.symbol, merge={k: (r.model_dump() if hasattr(r, 'model_dump') else r) for k, r in d.merge.items()},
                              cell_key=d.cell_key.model_dump() if d.method == "cell_key" else None)


def kernel_variables(report: Report, ledger: Path | None = None, plan: Path | None = None,
                     inputs: Path | None = None) -> dict[str, str]:
    """What the kernel of this report finds in its environment (disclosure settings, study, ledger,
    plan, and where to note the input files it reads)."""
    from studylib.inputs import INPUTS_VARIABLE

    out = variables.kernel_variables(disclosure_settings(report).to_json(), report.study.id, report.key,
                                     str(ledger) if ledger else None, str(plan) if plan else None)
    if inputs:
        out[INPUTS_VARIABLE] = str(inputs)
    return out


def run_report(report: Report, settings: BatchSettings, cancel: threading.Event | None = None,
               kernels: tuple[KernelSlots, int] | None = None, finisher: Finisher | None = None,
               gate: Gate | None = None) -> Outcome:
    """Make one report: execute, export, audit, pass the release gate, publish (or record the
    failure). Never raises.

    ``finisher`` renders the PDF and audits (in a worker process); without one, this process does.
    ``gate`` holds the report until the batch's release is safe; without one, the report is
    checked alone against the ledgers already published from its lineage.
    """
    if gate is None:
        gate = ReleaseGate(settings.state or default_state(settings.reports))
        gate.expect([report.key])
    watch = Stopwatch()
    batch_started = publish.now_iso()

    def outcome(status: str, message: str = "", kind: str | None = None) -> Outcome:
        return Outcome(report.key, report.study.id, report.title, status, message, round(watch.seconds(), 2),
                       str(settings.reports / report.key), kind)

    try:
        # while it waits for another run to finish this report, the batch's other reports are
        # held for it neither at the release gate nor in the kernel queue (two batches at once
        # would otherwise wait on each other)
        with report_lock(settings.reports, report.key, settings.lock_wait, cancel,
                         on_wait=lambda: _step_aside(report.key, gate, kernels)) as waited:
            if waited:
                gate.expect([report.key])
            recover(settings.reports / report.key)
            if (waited or not settings.force) and is_current(report, settings.reports) and (
                not settings.force or _published_since(settings.reports, report.key, batch_started)
            ):
                return outcome("skipped", "unchanged since the last good report" + (" (made by another run meanwhile)" if waited else ""))
            return _make(report, settings, cancel, outcome, kernels, finisher or Finisher(helper=False), watch, gate)
    except LockBusy as err:
        return outcome("cancelled" if cancel is not None and cancel.is_set() else "failed", str(err), "locked")
    except Exception as err:  # noqa: BLE001 - one report never stops the batch
        return outcome("failed", f"{report.key}: {type(err).__name__}: {err}", "internal")
    finally:
        gate.leave(report.key)


def _step_aside(key: str, gate: Gate, kernels: tuple[KernelSlots, int] | None) -> None:
    """A report that waits for another run's lock leaves the release gate and gives up its kernel
    turn; it joins both again once it holds the lock (:meth:`KernelSlots.slot` queues it in its turn)."""
    gate.leave(key)
    if kernels is not None:
        slots, turn = kernels
        slots.withdraw(turn)


@dataclass
class Stopwatch:
    """A report's own time: from its start, less the time it queued for a kernel slot.

    The summary shows it, and the manifest's ``total`` (which orders the next batch,
    :func:`longest_first`) is it; ``queued`` is recorded beside it.
    """

    started: float = field(default_factory=time.monotonic)
    queued: float = 0.0

    def seconds(self) -> float:
        return time.monotonic() - self.started - self.queued


def _published_since(reports: Path, key: str, since: str) -> bool:
    manifest = publish.read_json(reports / key / publish.MANIFEST) or {}
    return manifest.get("run", {}).get("finished", "") >= since


@contextmanager
def _kernel_slot(kernels: tuple[KernelSlots, int] | None, cancel: threading.Event | None) -> Iterator[None]:
    """Hold one of the batch's kernel slots (``--workers``) while a notebook executes."""
    if kernels is None:
        yield
        return
    slots, turn = kernels
    with slots.slot(turn, cancel):
        yield


def _make(report: Report, settings: BatchSettings, cancel: threading.Event | None, outcome,
          kernels: tuple[KernelSlots, int] | None, finisher: Finisher, watch: "Stopwatch", gate: Gate) -> Outcome:
    from studylib.privacy.ledger import write_plan
    from studylib.runner.execute import ExecutionFailure, Limits, execute_report

    study, spec = report.study, report.study.spec
    run_id = uuid.uuid4().hex
    started_at = datetime.now(timezone.utc)
    timings: dict[str, float] = {}
    template_sha = sha256_file(study.template)  # the file, as a reader can check it
    template_content = template_hash(study.template)  # its cells: what decides a re-run
    data = data_identity(study.data)
    print_ = fingerprint(report, template_content, data["content_hash"])
    lineage_id = lineage(study.data)
    private = gate.state / lineage_id / ".runs" / f"{run_id}"
    stage_name = "prepare"
    with publish.staging(settings.reports, report.key) as stage, _removed(private):
        notebook = stage / "notebook.ipynb"
        log_path = stage / "run.log"
        nb = None
        try:
            with open(log_path, "w", buffering=1) as log:
                plan = gate.initial_plan(report.key, lineage_id)
                log.write(f"studylib run {run_id} of report {report.key} at {started_at.isoformat(timespec='seconds')}\n")
                log.write(f"template {study.template} (sha256 {template_sha})\ndata {study.data} (content hash {data['content_hash']})\n")
                log.write(f"parameters {report.parameters}\ndisclosure {disclosure_settings(report).to_json()}\n")
                rounds = 0
                while True:
                    rounds += 1
                    ledger = private / f"ledger-{rounds}"
                    inputs_file = private / f"inputs-{rounds}.txt"
                    private.mkdir(parents=True, exist_ok=True)
                    plan_file = private / f"plan-{rounds}.json" if plan else None
                    if plan_file:
                        write_plan(plan_file, plan)
                    stage_name = "execute"
                    asked = time.monotonic()
                    with _kernel_slot(kernels, cancel):
                        t = time.monotonic()
                        watch.queued = timings["queued"] = timings.get("queued", 0.0) + t - asked
                        nb = execute_report(
                            study.template, notebook, report.parameters,
                            env=kernel_variables(report, ledger, plan_file, inputs_file), cwd=study.template.parent,
                            limits=Limits(cell=spec.timeout.cell, report=spec.timeout.report),
                            log=log, cancel=cancel,
                        )
                        timings["execute"] = timings.get("execute", 0.0) + time.monotonic() - t
                    _stderr_to_log(nb, notebook, log)
                    ledger.mkdir(parents=True, exist_ok=True)  # a report without tables has an empty ledger
                    # the release is decided on the ledger alone, before the report is exported:
                    # a report run again with a plan is rendered and audited once, in its last round
                    stage_name = "release"
                    t = time.monotonic()
                    decision = gate.decide(report.key, lineage_id, ledger, spec.disclosure.min_cell,
                                           spec.disclosure.zeros_disclosive, cancel)
                    timings["release"] = timings.get("release", 0.0) + time.monotonic() - t
                    log.write(f"release round {rounds}: {decision.action} {decision.message}\n")
                    if decision.action == "publish":
                        break
                    if decision.action == "refuse":
                        raise ReportRejected(decision.message)
                    plan = {**plan, **decision.plan}
                stage_name = "export"
                files = _export(report, nb, stage, data, template_sha, started_at, timings, finisher)
                stage_name = "audit"
                t = time.monotonic()
                verdict = _audit(report, stage, finisher)
                timings["audit"] = time.monotonic() - t
                log.write(f"audit {verdict.status}: {verdict.findings}\n")
                if not verdict.passed:
                    raise ReportRejected("the disclosure audit failed: " + "; ".join(verdict.findings[:5]))
                loss = loss_of(_ledger_entries(ledger))
                from studylib.inputs import read_inputs

                inputs = inputs_identity(read_inputs(inputs_file))
            if cancel is not None and cancel.is_set():
                return outcome("cancelled", f"{report.key}: the batch was cancelled before publishing", "cancelled")
            stage_name = "publish"
            state = settings.state or default_state(settings.reports)
            with publish.kept_run(stage, state, report.key) as kept:  # the notebook and log stay, for staff only
                timings["total"] = watch.seconds()
                manifest = _manifest(report, run_id, started_at, print_, template_sha, data, timings, verdict, files, stage)
                manifest["inputs"] = inputs
                manifest["run"]["executor"] = f"dask {settings.cluster}" if settings.cluster else "this machine"
                manifest["release"] = {"lineage": lineage_id, "rounds": rounds, "information_loss": loss.as_dict(),
                                       "ledger_sha256": ledger_digest(ledger)}
                publish.write_json(stage / publish.MANIFEST, manifest)
                publish.write_json(kept / publish.RUN_RECORD, {
                    "time": publish.now_iso(), "study": report.study.id, "report": report.key, "run": run_id,
                    "study_file": manifest["study_file"], "fingerprint": print_,
                    "audit": _audit_kept(kept, verdict, spec.disclosure.min_cell, study.data, (run_id, data["content_hash"])),
                })
                publish.publish_report(stage, settings.reports, report.key, state)
            gate.published(report.key, lineage_id, ledger)
            return outcome("published", f"{report.key}: published ({loss}" + (f"; {rounds} runs to protect the release" if rounds > 1 else "") + ")")
        except ExecutionFailure as err:
            kind, message = err.kind, f"{report.key}: {err}"
        except ReportRejected as err:
            kind, message = "audit", f"{report.key}: {err}"
        except OSError as err:
            kind, message = "io", f"{report.key}: could not write the report while {_doing(stage_name)}: {err}"
        except Exception as err:  # noqa: BLE001
            kind, message = stage_name, f"{report.key}: failed while {_doing(stage_name)}: {type(err).__name__}: {err}"
        if kind == "cancelled":
            return outcome("cancelled", message, kind)
        recorded = _record_failure(report, settings, stage, run_id, kind, message, print_)
        return outcome("failed", message + ("" if recorded else " (the failure record could not be written either)"), kind)


def _ledger_entries(folder: Path):
    from studylib.privacy.ledger import read_ledger

    return read_ledger(folder)


def _stderr_to_log(nb, notebook: Path, log) -> None:
    """Warnings and other stderr go to the staff log, never into the report."""
    import nbformat

    moved = False
    for number, cell in enumerate(nb.cells, 1):
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                log.write(f"[stderr of cell {number}] {output.get('text', '')}")
                moved = True
            else:
                kept.append(output)
        if moved and cell.cell_type == "code":
            cell.outputs = kept
    if moved:
        nbformat.write(nb, str(notebook))


@contextmanager
def _removed(folder: Path) -> Iterator[Path]:
    """A private folder of one run, removed on every way out (its ledger is copied when published)."""
    import shutil

    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class ReportRejected(StudylibError):
    """The report was made but must not be published (the audit failed)."""


def _doing(stage: str) -> str:
    return {
        "prepare": "preparing the run", "execute": "executing the notebook", "export": "exporting HTML and PDF",
        "audit": "auditing the report", "publish": "publishing", "release": "protecting the release",
    }.get(stage, stage)


def _export(report: Report, nb, stage: Path, data: dict, template_sha: str, started_at: datetime, timings: dict,
            finisher: Finisher) -> dict:
    from studylib.runner.export import ReportPage, to_html

    spec = report.study.spec
    versions = library_versions()
    provenance = [
        ("Study", report.study.id),
        *([("Report", report.key)] if report.combination else []),
        ("Data hash", f"sha256:{data['content_hash']}" if data["content_hash"] else "unknown"),
        ("Template", f"{report.study.template.name} sha256 {template_sha}"),
        ("Library", f"studylib {versions['studylib']} · papermill {versions['papermill']} · nbconvert {versions['nbconvert']} · WeasyPrint {versions['weasyprint']}"),
        ("Run", f"{started_at.isoformat(timespec='seconds')} · executed in {timings['execute']:.1f} s"),
        ("Parameters", ", ".join(f"{k}={v!r}" for k, v in report.parameters.items() if k != DATA_PARAMETER) or "defaults"),
    ]
    from studylib.runner.publisher import read_release_info

    info = read_release_info(report.study.file)
    release = info.shown(data.get("as_at")) if info is not None else {}
    provenance[1:1] = list(release.items())
    downloads = _downloads(report, nb, stage, release, timings)
    if downloads:
        provenance.append(("Downloads", _downloads_line(downloads)))
    page = ReportPage(
        study_id=report.study.id, title=report.title, subtitle=spec.subtitle,
        date=started_at.date().isoformat(), created=started_at.isoformat(timespec="seconds"),
        min_cell=spec.disclosure.min_cell, rounding=spec.disclosure.rounding or 0,
        kind="Study report", synthetic=data["synthetic"],
        data_note=("Synthetic data: every person in this report is invented; the data were generated by studylib "
                   "to look like the centre's registrations." if data["synthetic"] else
                   "The centre's pseudonymised registration data."),
        provenance=provenance, generator=f"studylib {versions['studylib']}",
    )
    t = time.monotonic()
    page_html = to_html(nb, page)
    (stage / "report.html").write_text(page_html)
    timings["html"] = time.monotonic() - t
    files = {}
    if "pdf" in spec.formats:
        t = time.monotonic()
        finisher.pdf(stage / "report.html", stage / "report.pdf")
        timings["pdf"] = time.monotonic() - t
    for fmt, name in publish.REPORT_FILES.items():
        path = stage / name
        if fmt in spec.formats:
            files[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    for name in downloads:
        path = stage / name
        files[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return files


def _downloads(report: Report, nb, stage: Path, release: dict[str, str], timings: dict) -> list[str]:
    """The report's tables and figures as files beside it (:mod:`studylib.runner.downloads`), if its formats ask."""
    from studylib.runner.downloads import DOWNLOAD_FORMATS, exhibits_of, write_downloads

    spec = report.study.spec
    if not any(f in spec.formats for f in DOWNLOAD_FORMATS):
        return []
    t = time.monotonic()
    symbols = (f"{spec.disclosure.symbol}: confidential (too few persons to show, or hidden so that another cell "
               "cannot be worked out); –: no value")
    written = write_downloads(stage, exhibits_of(nb), spec.formats, report.title, report.key, release, symbols)
    timings["downloads"] = time.monotonic() - t
    return written


def _downloads_line(downloads: list[str]) -> str:
    """The provenance line: the files beside the report, and how many in its folders."""
    inside = sum("/" in d for d in downloads)
    return ", ".join(d for d in downloads if "/" not in d) + (f" and {inside} files in data/ and figures/" if inside else "")


def _audit(report: Report, stage: Path, finisher: Finisher):
    verdict = finisher.audit(stage, report.study.spec.disclosure.min_cell, report.study.data)
    if "html" not in report.study.spec.formats:
        (stage / "report.html").unlink(missing_ok=True)
    return verdict


def _manifest(report, run_id, started_at, print_, template_sha, data, timings, verdict, files, stage) -> dict:
    spec = report.study.spec
    return {
        "manifest_version": 1,
        "study": report.study.id,
        "report": report.key,
        "title": report.title,
        "subtitle": spec.subtitle,
        "study_file": str(report.study.file.resolve()),
        "combination": report.combination,
        "parameters": dict(report.parameters),
        "disclosure": spec.disclosure.model_dump(),
        "formats": list(spec.formats),
        "template": {"path": str(report.study.template), "sha256": template_sha,
                     "content_sha256": template_hash(report.study.template)},
        "data": data,
        "library": library_versions(),
        "look_sha256": look_hash(),
        "fingerprint": print_,
        "run": {
            "id": run_id,
            "started": started_at.isoformat(timespec="seconds"),
            "finished": publish.now_iso(),
            "host": socket.gethostname(),
        },
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "audit": verdict.as_dict(),
        "files": files,
    }


def _is_json(path: Path) -> bool:
    import json

    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


def _record_failure(report: Report, settings: BatchSettings, stage: Path, run_id: str, kind: str, message: str, print_: str) -> bool:
    """Move the executed notebook and log of a failed run into the staff area, ``<state>/failed/<key>/``.

    Both are audited first and the verdict is kept in ``failure.json``: staff see what they hold
    (raw small tables, tokens) before they open them. Nothing of a failed run enters ``reports/``.
    """
    try:
        for name in ("report.html", "report.pdf"):
            (stage / name).unlink(missing_ok=True)
        notebook = stage / "notebook.ipynb"
        if notebook.exists() and not _is_json(notebook):
            notebook.unlink()  # cut short (disk full): a partial file is never kept
            message += " (the executed notebook could not be saved)"
        publish.write_json(stage / publish.FAILURE, {
            "time": publish.now_iso(), "study": report.study.id, "report": report.key, "run": run_id,
            "study_file": str(report.study.file.resolve()), "kind": kind, "message": message, "fingerprint": print_,
            "audit": _audit_failed(stage, report.study.spec.disclosure.min_cell, report.study.data, (run_id, _content_hash(report))),
        })
        publish.record_failure(stage, settings.state or default_state(settings.reports), report.key)
        return True
    except OSError:
        return False


def _content_hash(report: Report) -> str | None:
    try:
        return data_identity(report.study.data)["content_hash"]
    except Exception:  # noqa: BLE001 - a dataset that cannot be read has no hash to mask
        return None


def _audit_failed(stage: Path, min_cell: int, data: Path, known: tuple[str | None, ...] = ()) -> dict:
    """The audit of a failed run's notebook and log (the log audited as text), as failure.json records it."""
    from studylib.runner import gate

    try:
        findings: list[str] = []
        if any(stage.glob("*.ipynb")):
            findings += gate.audit_report(stage, min_cell, data).findings
        findings += _log_findings(stage / "run.log", min_cell, data, known)
        return {"passed": not findings, "findings": [str(f)[:300] for f in findings[:50]], "time": publish.now_iso()}
    except Exception as err:  # noqa: BLE001 - an audit that could not run says so; staff are warned
        return {"passed": False, "findings": [f"the audit could not run: {type(err).__name__}: {err}"], "time": publish.now_iso()}


def _log_findings(log: Path, min_cell: int, data: Path, known: tuple[str | None, ...] = ()) -> list[str]:
    """The audit of a run's log, read as text (what a staff member who opens it sees).

    ``known``: hex strings the runner itself wrote into the log's header (the run id, the data's
    content hash), which are not person tokens; they are masked before the audit."""
    import html as markup

    from studylib.privacy.audit import audit_html
    from studylib.runner import gate

    if not log.is_file():
        return []
    key, deny_list = gate.audit_key(data)
    text = log.read_text(errors="replace")
    for value in known:
        if value:
            text = text.replace(value, "[runner id]")
    text = "<pre>" + markup.escape(text) + "</pre>"
    return [str(f) for f in audit_html(text, min_cell, deny_list=deny_list, key=key, name="run.log")]


def _audit_kept(kept: Path, verdict, min_cell: int, data: Path, known: tuple[str, ...] = ()) -> dict:
    """The audit of a published run's notebook and log, as ``run.json`` records it: the notebook was
    audited (strictly) with the report it was published with; the log is audited here."""
    try:
        findings = _log_findings(kept / "run.log", min_cell, data, known)
        if (kept / "notebook.ipynb").is_file() and not verdict.passed:
            findings.insert(0, "notebook.ipynb: the report's audit did not pass")
        return {"passed": not findings, "findings": [str(f)[:300] for f in findings[:50]], "time": publish.now_iso(),
                "notebook": "audited with the report: " + verdict.status}
    except Exception as err:  # noqa: BLE001 - an audit that could not run says so; staff are warned
        return {"passed": False, "findings": [f"the audit could not run: {type(err).__name__}: {err}"], "time": publish.now_iso()}


def record_invalid(outcome: Outcome, settings: BatchSettings) -> None:
    """An invalid study file shows as failed in the index, with its problems (its last good report stays)."""
    if outcome.kind == "missing" or not re.fullmatch(r"[A-Za-z0-9_.-]+", outcome.key) or outcome.key.startswith("."):
        return
    try:
        with report_lock(settings.reports, outcome.key, wait=5.0):
            with publish.staging(settings.reports, outcome.key) as stage:
                publish.write_json(stage / publish.FAILURE, {
                    "time": publish.now_iso(), "study": outcome.study, "report": outcome.key,
                    "kind": "invalid", "message": outcome.message,
                })
                publish.record_failure(stage, settings.state or default_state(settings.reports), outcome.key)
    except (LockBusy, OSError):
        pass
