"""A batch of studies: check them all, skip what is current, run the rest in parallel, publish.

:func:`plan_batch` reads every study file and decides, before any kernel starts, which
reports are current (fingerprint unchanged since the last good report: skipped without even
loading papermill), which are invalid (schema, files, parameters against the template:
reported with file, line and key) and which must run. :func:`run_report` makes one report
under its lock: execute, export HTML and PDF, audit, publish, or record the failure; it never
raises, so one report cannot stop the others. :func:`run_batch` runs the reports on a thread
pool (one kernel per report, forked from the batch's fork server; PDFs and audits in the
finisher process: :class:`LocalHelpers`) or on a Dask cluster (workers share the file
system), reports progress, handles SIGTERM/SIGINT (kernels stopped, nothing half-published)
and rewrites ``reports/index.html``.
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import yaml

from studylib.data.atomic import recover, write_file
from studylib.errors import Problem, StudylibError, ValidationError
from studylib.report import variables
from studylib.runner import kernel_fork, publish, sandbox
from studylib.runner.finishing import Finisher
from studylib.runner.lock import LockBusy, report_lock
from studylib.runner.orphans import find_orphans
from studylib.runner.provenance import (data_identity, fingerprint, inputs_identity, ledger_digest, library_versions, look_hash,
                                        sha256_file, template_hash)
from studylib.runner.release import Gate, ReleaseGate, default_state, lineage, loss_of
from studylib.runner.study import DATA_PARAMETER, DEMO_DATA, Report, Study, find_studies, parameter_problems, read_study, reports_of


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


# --- planning ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    run: list[Report]
    done: list[Outcome]  # skipped and invalid ones
    reasons: dict = field(default_factory=dict)  # report key -> why it must be made


def current_fingerprint(report: Report) -> str:
    return fingerprint(report, template_hash(report.study.template), data_identity(report.study.data)["content_hash"])


def is_current(report: Report, reports: Path) -> bool:
    """True when the last good report has this fingerprint and no later attempt failed."""
    return why_due(report, reports) is None


def why_due(report: Report, reports: Path) -> str | None:
    """Why this report must be made (None when its last good report is current)."""
    state = publish.report_state(reports, report.key, report.title)
    if not state.manifest:
        return "never published"
    if state.status != "ok":
        return "the last run failed"
    manifest = state.manifest
    files = manifest.get("files", {})
    if not all((reports / report.key / name).is_file() for name in files):
        return "a published file is missing"
    if manifest.get("fingerprint") != current_fingerprint(report):
        return _what_changed(report, manifest)
    inputs = manifest.get("inputs", {})
    changed = [path for path, digest in inputs_identity(inputs).items() if digest != inputs.get(path)]
    if changed:
        return f"an input it reads changed: {changed[0]}" + (f" and {len(changed) - 1} more" if len(changed) > 1 else "")
    if not published_intact(reports / report.key, files):
        return "a published file was changed after publishing (its hash is not the manifest's)"
    return None


def _what_changed(report: Report, manifest: dict) -> str:
    if manifest.get("template", {}).get("content_sha256") != template_hash(report.study.template):
        return "the template changed"
    if manifest.get("data", {}).get("content_hash") != data_identity(report.study.data)["content_hash"]:
        return "the data changed"
    if {k: v for k, v in manifest.get("parameters", {}).items() if k != "data_dir"} != \
            {k: v for k, v in report.parameters.items() if k != "data_dir"}:
        return "the parameters changed"
    if manifest.get("library", {}).get("studylib") != library_versions().get("studylib") or manifest.get("look_sha256") != look_hash():
        return "the library or the report's look changed"
    return "the study's settings changed (title, disclosure or formats)"


def published_intact(folder: Path, files: dict) -> bool:
    """True when every published file still has the hash its manifest recorded (nobody edited it)."""
    for name, record in files.items():
        if sha256_file(folder / name) != record.get("sha256"):
            return False
    return True


def _check_datasets(reports: list[Report]) -> dict[str, str]:
    """Study id -> message, for studies whose dataset no longer matches its recorded content hash
    (checked once per dataset per batch, before any kernel reads it)."""
    from studylib.data import read_dataset
    from studylib.data.meta import DatasetError

    verdict: dict[Path, str | None] = {}
    bad = {}
    for report in reports:
        folder = report.study.data
        if folder not in verdict:
            try:
                read_dataset(folder, validate=True)
                verdict[folder] = None
            except (DatasetError, StudylibError, OSError, ValueError) as err:
                verdict[folder] = (f"{report.study.file}, key 'data': the dataset {folder} does not match what ingest "
                                   f"recorded ({err}); re-run `studylib ingest` or restore the dataset")
        if verdict[folder]:
            bad[report.study.id] = verdict[folder]
    return bad


def _invalid(file: Path, err: StudylibError) -> Outcome:
    kind = "invalid" if file.is_file() else "missing"
    return Outcome(key=file.stem, study=file.stem, title=file.stem, status="invalid", message=str(err), kind=kind)


def plan_batch(files: list[Path], settings: BatchSettings, on_work: Callable[[], None] = lambda: None) -> Plan:
    """Read and check every study; skip current reports; check parameters of the rest.

    ``on_work`` is called once some report is to be made, before its parameters are checked.
    """
    done: list[Outcome] = []
    studies: list[Study] = []
    if any(_wants_demo(Path(f)) for f in files):
        _ensure_demo()
    for file in files:
        try:
            study = read_study(file)
        except StudylibError as err:
            done.append(_invalid(Path(file), err))
            continue
        if settings.overrides:
            from dataclasses import replace

            study = replace(study, spec=study.spec.model_copy(update={"parameters": {**study.spec.parameters, **settings.overrides}}))
        studies.append(study)
    seen: dict[str, Path] = {}
    to_run: list[Report] = []
    reasons: dict[str, str] = {}
    for study in studies:
        if study.id in seen:
            done.append(_invalid(study.file, ValidationError([Problem(where=f"{study.file}, key 'id'", rule=f"study id {study.id!r} is also used by {seen[study.id]}")], summary="duplicate study")))
            continue
        seen[study.id] = study.file
        for report in reports_of(study):
            reason = "--force" if settings.force else why_due(report, settings.reports)
            if reason is None:
                done.append(Outcome(report.key, study.id, report.title, "skipped", "unchanged since the last good report", folder=str(settings.reports / report.key)))
            else:
                reasons[report.key] = reason
                to_run.append(report)
    if to_run:
        on_work()
    bad = {**_check_datasets(to_run), **_check_parameters(to_run)}
    run = [r for r in to_run if r.study.id not in bad]
    for study_id, message in bad.items():
        report = next(r for r in to_run if r.study.id == study_id)
        done.append(Outcome(study_id, study_id, report.study.title, "invalid", message))
    return Plan(run=run, done=done, reasons=reasons)


def _wants_demo(file: Path) -> bool:
    try:
        raw = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and raw.get("data") == DEMO_DATA


def _ensure_demo() -> None:
    """(Re)create the demo dataset once, before the studies that use it are read (a no-op when current)."""
    from studylib.demo import ensure_demo_dataset

    try:
        ensure_demo_dataset()
    except StudylibError:
        pass  # the studies that need it report the missing dataset, naming file and key


def _check_parameters(reports: list[Report]) -> dict[str, str]:
    """Study id -> error message, for studies whose parameters do not fit their template."""
    from studylib.runner.template import TemplateError, template_parameters

    declared: dict[Path, dict | TemplateError] = {}
    bad: dict[str, str] = {}
    for study in {r.study.id: r.study for r in reports}.values():
        if study.template not in declared:
            try:
                declared[study.template] = template_parameters(study.template)
            except TemplateError as err:
                declared[study.template] = err
        found = declared[study.template]
        if isinstance(found, TemplateError):
            bad[study.id] = f"{study.file}, key 'template': {found}"
            continue
        problems = parameter_problems(study, found)
        if problems:
            bad[study.id] = str(ValidationError(problems, summary=f"{study.file}: parameters do not fit the template"))
    return bad


# --- one report --------------------------------------------------------------------------------------


def disclosure_settings(report: Report):
    """The study's disclosure settings as the one value a kernel gets (:class:`DisclosureSettings`)."""
    from studylib.privacy.disclosure import DisclosureSettings

    d = report.study.spec.disclosure
    return DisclosureSettings(min_cell=d.min_cell, rounding=d.rounding, zeros_disclosive=d.zeros_disclosive,
                              symbol=d.symbol, merge={k: (r.model_dump() if hasattr(r, 'model_dump') else r) for k, r in d.merge.items()})


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
        # not held for it at the release gate (two batches at once would otherwise wait on each other)
        with report_lock(settings.reports, report.key, settings.lock_wait, cancel,
                         on_wait=lambda: gate.leave(report.key)) as waited:
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
                    stage_name = "export"
                    files = _export(report, nb, stage, data, template_sha, started_at, timings, finisher)
                    stage_name = "audit"
                    t = time.monotonic()
                    verdict = _audit(report, stage, finisher)
                    timings["audit"] = timings.get("audit", 0.0) + time.monotonic() - t
                    log.write(f"audit {verdict.status}: {verdict.findings}\n")
                    if not verdict.passed:
                        raise ReportRejected("the disclosure audit failed: " + "; ".join(verdict.findings[:5]))
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
    return files


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


def _record_invalid(outcome: Outcome, settings: BatchSettings) -> None:
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


# --- the batch -----------------------------------------------------------------------------------------


@contextmanager
def _signals_cancel(cancel: threading.Event, result: BatchResult) -> Iterator[None]:
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
    with _signals_cancel(cancel, result), LocalHelpers(enabled=not settings.cluster) as helpers:
        plan = plan_batch(files, settings, on_work=helpers.start)
        for o in plan.done:
            if o.status == "invalid":
                _record_invalid(o, settings)
            result.outcomes.append(o)
            progress(o.key, o)
        if plan.run and not cancel.is_set():
            ordered = longest_first(plan.run, settings.reports)
            if settings.cluster:
                _run_on_cluster(ordered, settings, cancel, progress, result)
            else:
                _run_on_threads(ordered, settings, cancel, progress, result, helpers.finisher)
        for report in plan.run:
            if not any(o.key == report.key for o in result.outcomes):
                o = Outcome(report.key, report.study.id, report.title, "cancelled", f"{report.key}: not started; the batch was cancelled", kind="cancelled")
                result.outcomes.append(o)
                progress(o.key, o)
    result.index = write_index(settings.reports, settings.studies_dir, settings.state)
    return result


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


class LocalHelpers:
    """The helper processes of a batch on this machine, started once some report is to be made.

    The kernel fork server (:mod:`studylib.runner.kernel_fork`) and the finisher
    (:mod:`studylib.runner.finishing`) load their libraries while the batch still checks
    parameters and starts up; both stop when the batch ends.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.finisher = Finisher(helper=False)
        self._stack = ExitStack()

    def start(self) -> None:
        if not self.enabled:
            return
        self.enabled = False  # once
        from studylib.runner.kernel import kernel_environment

        self._stack.enter_context(kernel_fork.batch_forks(kernel_environment({})))
        self.finisher = self._stack.enter_context(Finisher())

    def __enter__(self) -> "LocalHelpers":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()


def _run_on_threads(reports: list[Report], settings: BatchSettings, cancel: threading.Event, progress: Progress,
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


def _run_on_cluster(reports: list[Report], settings: BatchSettings, cancel: threading.Event, progress: Progress, result: BatchResult) -> None:
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


# --- the index ------------------------------------------------------------------------------------------


def _study_listing(studies_dir: Path | None) -> dict[str, tuple[str, list[str]]]:
    """Study id -> (title, report keys) from the study files, read leniently (for the index only)."""
    listing: dict[str, tuple[str, list[str]]] = {}
    for file in find_studies(studies_dir) if studies_dir and studies_dir.is_dir() else []:
        raw = None  # a file that is not even YAML is listed by its name
        try:
            raw = yaml.safe_load(file.read_text()) or {}
            study = read_study(file)
            keys = [r.key for r in reports_of(study)]
            listing[study.id] = (study.title, keys)
        except (StudylibError, yaml.YAMLError, OSError, AttributeError, TypeError):
            title = raw.get("title", file.stem) if isinstance(raw, dict) else file.stem
            listing[file.stem] = (str(title), [file.stem])
    return listing


def write_index(reports: Path, studies_dir: Path | None = None, state: Path | None = None) -> Path:
    """Rewrite ``reports/index.html`` from what is on disk (and the study files, if given), and the staff index.

    ``state``: the runner's private folder (default beside the reports), whose ``failed/``
    holds the failed runs; its ``index.html`` (staff only) links them, the public one never does.
    """
    from studylib.report import look

    state = state or default_state(reports)
    staff = state / publish.FAILED
    listing = _study_listing(studies_dir)
    for manifest_path in sorted([*reports.glob(f"*/{publish.MANIFEST}"), *reports.glob(f"*/*/{publish.MANIFEST}"),
                                 *staff.glob(f"*/{publish.FAILURE}"), *staff.glob(f"*/*/{publish.FAILURE}")]):
        record = publish.read_json(manifest_path) or {}
        study_id, key = record.get("study"), record.get("report")
        if not study_id or not key or key.startswith("."):
            continue
        title, keys = listing.get(study_id, (record.get("title", study_id), []))
        if key not in keys:
            keys = [*keys, key]
        listing[study_id] = (title, keys)
    orphans = {o.key: o.why for o in find_orphans(reports, studies_dir, state)}
    states = [(sid, title, [replace(publish.report_state(reports, k, title, state), orphan=orphans.get(k)) for k in keys])
              for sid, (title, keys) in sorted(listing.items())]
    generated = publish.now_iso()
    page = publish.index_html(states, look.stylesheet(), generated)
    path = reports / publish.INDEX
    with report_lock(reports, ".index", wait=60):
        write_file(path, page)
        if any(s.failure for _, _, group in states for s in group) or staff.is_dir() or (state / publish.RUNS).is_dir():
            write_file(publish.staff_area(state) / publish.INDEX, publish.staff_index_html(states, look.stylesheet(), generated))
    return path
