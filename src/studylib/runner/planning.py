"""Planning a batch: which reports are current, which are invalid, which must run and why.

:func:`plan_batch` reads every study file and decides, before any kernel starts, which
reports are current (fingerprint unchanged since the last good report: skipped without even
loading papermill), which are invalid (schema, files, parameters against the template:
reported with file, line and key) and which must run; :func:`why_due` says why one must.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from studylib.errors import Problem, StudylibError, ValidationError
from studylib.runner import publish
from studylib.runner.outcomes import BatchSettings, Outcome
from studylib.runner.provenance import data_identity, fingerprint, inputs_identity, library_versions, look_hash, sha256_file, template_hash
from studylib.runner.study import DEMO_DATA, Report, Study, parameter_problems, read_study, reports_of


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
