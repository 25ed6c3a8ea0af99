"""Orphaned reports: published reports and staff records whose study or matrix combination is gone.

A report is an orphan when no study file makes its key any more: neither a study file in the
studies folder nor the study file its manifest (or failure record) names. That happens when a
study file is deleted or renamed, or its matrix loses a value. A study file that cannot be read
makes the reports of its study *unknown*, never orphans: nothing is removed on a guess.

:func:`find_orphans` lists them (the index marks them); :func:`prune` removes them: the report
folder, its executed notebook and log in the staff area, its failure record. Its release ledger
is not deleted: it moves to the lineage's history, because the report was out there and later
releases must still be protected against it (:mod:`studylib.runner.release`). A ledger that is
no longer the one the pruned manifest recorded (another reports folder sharing the state published
the key since) stays where it is.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from studylib.runner import publish
from studylib.runner.lock import report_lock
from studylib.runner.provenance import ledger_digest
from studylib.runner.release import HISTORY, Stored, default_state


@dataclass(frozen=True)
class Orphan:
    """One report key that no study file makes any more, and what of it is on disk."""

    key: str
    study: str
    title: str
    why: str
    report: Path | None = None  # the published report folder
    staff: tuple[Path, ...] = ()  # its failure record and the kept notebook and log of its published run
    ledger: Path | None = None  # its published release ledger, which moves to the history

    def removes(self) -> list[str]:
        """What pruning it does, in words (for the dry run and the summary)."""
        out = []
        if self.report is not None:
            out.append(f"report folder {self.report}")
        out += [f"staff record {p}" for p in self.staff]
        if self.ledger is not None:
            out.append(f"release ledger {self.ledger} moves to the history")
        return out


@dataclass
class Producers:
    """What study files say: the report keys they make, and the study ids they leave unknown."""

    keys: set[str] = field(default_factory=set)
    studies: set[str] = field(default_factory=set)  # study ids some readable study file declares
    unknown: set[str] = field(default_factory=set)  # study ids of study files that cannot be read

    @classmethod
    def of(cls, files) -> "Producers":
        out = cls()
        for file in files:
            out.add(Path(file))
        return out

    def add(self, file: Path) -> None:
        """Read one study file leniently (its keys follow from ``id`` and ``matrix`` alone)."""
        keys = study_file_keys(file)
        if keys is None:
            self.unknown.add(file.stem)
            try:
                raw = yaml.safe_load(file.read_text())
                if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                    self.unknown.add(raw["id"])
            except (OSError, yaml.YAMLError):
                pass
            return
        study_id, made = keys
        self.studies.add(study_id)
        self.keys |= set(made)

    def union(self, other: "Producers") -> "Producers":
        return Producers(self.keys | other.keys, self.studies | other.studies, self.unknown | other.unknown)


def study_file_keys(file: Path) -> tuple[str, list[str]] | None:
    """``(study id, report keys)`` of a study file, or None when it cannot be read as one.

    Only ``id`` and ``matrix`` decide the keys, so the template and the dataset are not opened
    (nor the demo dataset made).
    """
    from pydantic import ValidationError as PydanticError

    from studylib.runner.study import StudyFile, combination_name

    try:
        spec = StudyFile.model_validate(yaml.safe_load(Path(file).read_text()))
    except (OSError, yaml.YAMLError, PydanticError, TypeError, ValueError):
        return None
    if spec.id != Path(file).stem:
        return None  # read_study refuses it: the file is invalid, its reports unknown
    matrix = spec.matrix or {}
    if not matrix:
        return spec.id, [spec.id]
    names = list(matrix)
    return spec.id, [f"{spec.id}/{combination_name(dict(zip(names, values)))}" for values in itertools.product(*matrix.values())]


@dataclass(frozen=True)
class _Record:
    """One thing on disk for a report key: its published folder, a failure record or a kept run."""

    kind: str  # report | staff
    key: str
    study: str
    title: str
    folder: Path
    study_file: str | None = None
    lineage: str | None = None
    ledger_sha256: str | None = None


def _records(reports: Path, state: Path) -> list[_Record]:
    """Every published manifest, failure record and kept run, each in its own key's folder."""
    found: list[_Record] = []

    def note(root: Path, path: Path, kind: str) -> None:
        record = publish.read_json(path) or {}
        key, study = record.get("report"), record.get("study")
        if not isinstance(key, str) or not isinstance(study, str) or key.startswith(".") or ".." in key.split("/"):
            return
        if path.parent.relative_to(root).as_posix() != key:
            return  # a record that is not in its own key's folder is not ours to judge
        release = record.get("release") or {}
        found.append(_Record(kind, key, study, str(record.get("title") or study), path.parent, record.get("study_file"),
                             release.get("lineage"), release.get("ledger_sha256")))

    for manifest in [*reports.glob(f"*/{publish.MANIFEST}"), *reports.glob(f"*/*/{publish.MANIFEST}")]:
        note(reports, manifest, "report")
    for root, name in ((state / publish.FAILED, publish.FAILURE), (state / publish.RUNS, publish.RUN_RECORD)):
        for path in [*root.glob(f"*/{name}"), *root.glob(f"*/*/{name}")]:
            note(root, path, "staff")
    return found


def find_orphans(reports: Path, studies_dir: Path | None = None, state: Path | None = None) -> list[Orphan]:
    """The reports (published, failed or kept in the staff area) that no study file makes any more.

    Each record is judged against the studies folder and the study file it names itself, so that
    the staff records of another reports folder sharing the state (whose study files are elsewhere)
    are not taken for this folder's orphans.
    """
    from studylib.runner.study import find_studies

    reports = Path(reports)
    state = Path(state or default_state(reports))
    listed = Producers.of(find_studies(studies_dir) if studies_dir and Path(studies_dir).is_dir() else [])
    named: dict[str, Producers] = {}
    by_key: dict[str, list[_Record]] = {}
    for record in _records(reports, state):
        producers = listed
        if record.study_file and Path(record.study_file).is_file():
            if record.study_file not in named:
                named[record.study_file] = Producers.of([Path(record.study_file)])
            producers = listed.union(named[record.study_file])
        if record.key not in producers.keys and record.study not in producers.unknown:
            by_key.setdefault(record.key, []).append(record)
    orphans = []
    for key, records in sorted(by_key.items()):
        report = next((r for r in records if r.kind == "report"), None)
        first = report or records[0]
        why = (f"study {first.study!r} no longer makes this report (its matrix changed)" if first.study in listed.studies
               else f"no study file makes it any more (study {first.study!r} is gone)")
        orphans.append(Orphan(key, first.study, first.title, why, report.folder if report else None,
                              tuple(sorted(r.folder for r in records if r.kind == "staff")),
                              _ledger_to_move(state, report) if report else None))
    return orphans


def _ledger_to_move(state: Path, report: _Record) -> Path | None:
    """The published ledger of this report in its lineage, if it is still the one its manifest recorded."""
    if not report.lineage:
        return None
    ledger = Stored(state / report.lineage).published(report.key)
    if not ledger.is_dir():
        return None
    if report.ledger_sha256 and ledger_digest(ledger) != report.ledger_sha256:
        return None  # published since from elsewhere (another reports folder sharing this state): it stays
    return ledger


def prune(orphans: list[Orphan], reports: Path, state: Path | None = None, lock_wait: float = 60.0) -> list[str]:
    """Remove the orphans (see the module docstring); returns what was done, one line each.

    Each report is removed under its report lock, so a batch writing it at the same time is
    waited for; a report folder that also holds live combinations of a matrix loses only its
    own files.
    """
    reports = Path(reports)
    state = Path(state or default_state(reports))
    done = []
    for orphan in orphans:
        with report_lock(reports, orphan.key, wait=lock_wait):
            if orphan.ledger is not None and orphan.ledger.is_dir():
                _to_history(orphan.ledger)
            if orphan.report is not None and orphan.report.is_dir():
                _remove_report(reports, orphan.report)
            for folder in orphan.staff:
                shutil.rmtree(folder, ignore_errors=True)
                _drop_empty_parent(folder, (state / publish.FAILED, state / publish.RUNS))
        done += [f"{orphan.key}: {what}" for what in orphan.removes()]
    return done


def _to_history(ledger: Path) -> None:
    """Move a published ledger to its lineage's history, under the lineage's ledger lock."""
    import fcntl

    root = ledger.parent.parent
    with open(root / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        history = root / HISTORY
        history.mkdir(parents=True, exist_ok=True)
        ledger.rename(history / f"{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns()}-{ledger.name}-pruned")


def _remove_report(reports: Path, folder: Path) -> None:
    """Remove one report folder: renamed into the staging area first (readers see it whole or not
    at all; a crash leaves it to :func:`~studylib.runner.publish.remove_stale_staging`)."""
    live = [p for p in folder.iterdir() if p.is_dir() and (p / publish.MANIFEST).is_file()]
    if live:  # a whole-study report whose folder also holds the reports of the study's matrix
        for path in folder.iterdir():
            if path.is_file() or path.is_symlink():
                path.unlink()
        return
    trash = reports / publish.STAGING / f"{os.getpid()}-pruned-{uuid.uuid4().hex[:8]}"
    trash.parent.mkdir(parents=True, exist_ok=True)
    folder.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)
    _drop_empty_parent(folder, (reports,))


def _drop_empty_parent(folder: Path, roots: tuple[Path, ...]) -> None:
    """A matrix study's folder goes once its last combination has gone (never one of ``roots``)."""
    parent = folder.parent
    if any(parent.resolve() == Path(root).resolve() for root in roots):
        return
    try:
        if not any(parent.iterdir()):
            parent.rmdir()
    except OSError:
        pass
