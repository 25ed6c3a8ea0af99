"""Ingest: raw form exports -> validated, linked, pseudonymised dataset (DESIGN sections 1, 3, 4).

The flow is read -> validate -> link -> pseudonymise -> derive cases -> write, with I/O at
the two ends. What comes out:

``DATASET_DIR/``
    the dataset (``persons``, ``events``, ``indicators``, ``cases`` and ``dataset.json``,
    written atomically by :func:`studylib.data.write_dataset`) plus ``ingest_report.json``
    and ``ingest_report.md``: counts, rejected rows (file, row, column, rule; never a value),
    linkage figures and conflicts, uniqueness on quasi-identifiers. No personal data.
``DATASET_DIR.linkage/``
    keyed tokens of each event's linkage keys (no identifier in clear), so that the exports of
    a later period can be appended (``--append``) and link to this period's persons. It stays
    with the data controller and is never shared with the dataset.
``DATASET_DIR.denylist``
    keyed hashes of the raw names, CPR and passport numbers, phones and e-mails
    (:func:`studylib.privacy.denylist.make_deny_list`) for the output audit, also kept apart
    from the dataset; made while the exports are read (:mod:`studylib.forms.deny_list_job`).
``RAW_DIR/quarantine/<form>.rejected.csv``
    rejected rows with their problems. They hold personal data and stay in the raw area.

The key is held by a :class:`~studylib.privacy.pseudonymiser.Pseudonymiser` (made once from
the key file); this module never holds the key's bytes. The linkage state is sealed with an
HMAC under the key (:meth:`~studylib.privacy.pseudonymiser.Pseudonymiser.seal`), so an edited
state file is refused on ``--append``; ``dataset.json`` records the key's fingerprint and
whether the data are demo data, for the audit (:func:`studylib.privacy.pseudonymiser.audit_key_check`).

Nothing is ever half-written: every output is staged under a temporary name beside it and
renamed into place; the temporaries are removed on every way out, and the next run removes
those a killed run left (while it holds the output's lock, so a running ingest into the same
folder is never disturbed: a second one is refused). Outputs and the quarantine refuse
symbolic links; a full disk or a file-size limit ends in one line that names what could not
be written.

Pseudonymisation: ``person_id`` is the HMAC-SHA256 token of the person's strongest linkage key
(:mod:`studylib.forms.linkage`); ``event_id`` is ``<form>-`` plus 20 hex digits (80 bits) of an
HMAC of form and record id, so the database's record ids do not leak and the same record gets
the same id in every run; birth dates become birth years (exact ages are computed first);
every personal field of the catalogue is dropped.

Ingesting two periods one after the other (``append=True``) gives the same tables, byte for
byte in content hash, as ingesting both together: tables are sorted by their ids, the person
id does not depend on the order in which records arrive, and a record id seen before keeps
its first version either way.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from studylib import __version__
from studylib.data.cases import derive_cases, sort_positions
from studylib.data.atomic import recover, replace_folder, write_file
from studylib.data.dataset import META_FILE, read_dataset, read_meta, write_dataset
from studylib.errors import Problem, StudylibError, ValidationError
from studylib.data.form_catalogue import FormCatalogue, form_catalogue
from studylib.forms.deny_list_job import DenyListJob
from studylib.forms.linkage import link, linkage_rules, person_attributes, record_keys
from studylib.forms.reading import ExportError, discover_exports, escape_formula_text, escape_formulas, ingest_rules, read_export
from studylib.forms.validation import (
    CPR_BIRTH_DATE,
    ValidatedExport,
    as_problems,
    concat_problems,
    problems_frame,
    validate_export,
    whole_years,
)
from studylib.privacy.denylist import deny_list_path
from studylib.privacy.pseudonymiser import (
    EVENT_TOKEN_HEX,
    SYNTHETIC_MARKER,
    Pseudonymiser,
    as_pseudonymiser,
    canonical_json,
    is_synthetic_source,
)

REPORT_JSON = "ingest_report.json"
REPORT_MD = "ingest_report.md"
QUARANTINE_DIR = "quarantine"
LINKS_FILE = "links.parquet"
STATE_FILE = "state.json"
LOCK_SUFFIX = ".lock"
#: Quasi-identifiers whose combination the report checks for unique persons.
QUASI_IDENTIFIERS = ("sex", "birth_year", "nationality", "region")

Progress = Callable[[str, int, int], None]


class IngestError(StudylibError):
    """Ingest cannot start or finish (no exports, wrong output folder, append mismatch, ...)."""


def linkage_dir(dataset_dir: str | os.PathLike) -> Path:
    """The sibling folder with the keyed linkage tokens of a dataset."""
    dataset_dir = Path(dataset_dir)
    return dataset_dir.with_name(dataset_dir.name + ".linkage")


def outputs_of(dataset_dir: str | os.PathLike) -> list[Path]:
    """What an ingest into ``dataset_dir`` writes: the dataset, its linkage state and its deny list."""
    return [Path(dataset_dir), linkage_dir(dataset_dir), deny_list_path(dataset_dir)]


def check_key_location(key_file: str | os.PathLike, dataset_dir: str | os.PathLike) -> None:
    """A key never lies with the data: refuse a key file inside the output folder or its siblings."""
    key_path = Path(key_file).resolve()
    for folder in outputs_of(dataset_dir):
        folder = folder.resolve()
        if key_path == folder or key_path.is_relative_to(folder):
            raise IngestError(
                f"{key_file}: the key file is inside the output folder {folder}; a key is never stored "
                "with the data (and the folder is replaced on ingest). Move the key elsewhere."
            )


def event_ids(forms: pd.Series, record_ids: pd.Series, key: "Pseudonymiser | bytes") -> pd.Series:
    """The event id of each (form, record id): the form code, ``-`` and 20 hex digits of a keyed token.

    The database's record ids do not leak (unlike a plain hash they cannot be guessed
    without the key), and the same record gets the same id in every run with the same key."""
    return as_pseudonymiser(key).event_tokens(forms, record_ids)


# -- the events table's columns --------------------------------------------------------------------

_DTYPES = {"code": "str", "string": "str", "boolean": "boolean", "integer": "Int64", "decimal": "Float64", "date": "datetime64[ns]"}
EVENT_BASE = {"event_id": "str", "person_id": "str", "form": "str", "date": "datetime64[ns]", "organisation": "str", "region": "str"}


def event_columns(catalogue: FormCatalogue) -> dict[str, str]:
    """Columns of the events table and their dtypes: the base columns, then every non-personal
    field of the forms (catalogue order; indicator codes go to the indicators table)."""
    columns = dict(EVENT_BASE)
    person_fields = {f.name for f in catalogue.person_fields}
    for form in catalogue.forms:
        for f in form.fields:
            if f.personal or f.name in person_fields or f.type == "codes":
                continue
            dtype = _DTYPES[f.type]
            if columns.setdefault(f.name, dtype) != dtype:
                raise IngestError(f"form catalogue: field {f.name!r} has different types on different forms")
    return columns


def _missing_column(dtype: str, n: int):
    """An all-missing column of ``dtype`` (built directly: casting NA objects is slow)."""
    if dtype == "str":
        return pd.array(pa.nulls(n, pa.large_string()), dtype="str")
    if dtype == "datetime64[ns]":
        return np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    if dtype == "Int64":
        return pd.arrays.IntegerArray(np.zeros(n, dtype="int64"), np.ones(n, dtype=bool))
    if dtype == "Float64":
        return pd.arrays.FloatingArray(np.zeros(n, dtype="float64"), np.ones(n, dtype=bool))
    if dtype == "boolean":
        return pd.arrays.BooleanArray(np.zeros(n, dtype=bool), np.ones(n, dtype=bool))
    raise AssertionError(dtype)


def _conform(events: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """The columns of the events table, in order and with their dtypes (missing ones all-missing)."""
    n = len(events)
    out = {}
    for name, dtype in columns.items():
        if name not in events.columns:
            out[name] = _missing_column(dtype, n)
        elif dtype == "datetime64[ns]":
            out[name] = pd.to_datetime(events[name]).astype(dtype).to_numpy()
        else:
            out[name] = events[name].astype(dtype).array
    return pd.DataFrame(out, index=events.index)


# -- results ---------------------------------------------------------------------------------------------


@dataclass
class IngestResult:
    """What one ingest did: where the outputs are and the report."""

    dataset_dir: Path
    report: dict
    quarantine_files: list[Path] = field(default_factory=list)
    deny_list: Path | None = None


@dataclass
class _Run:
    """What one run has read: validated exports and the problems found so far."""

    exports: list[tuple[Path, ValidatedExport]] = field(default_factory=list)
    file_problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    duplicates: pd.DataFrame | None = None  # exact duplicate records dropped (problems)


@dataclass
class _Records:
    """The accepted records of a run, one per (form, record id), as three aligned pieces."""

    person: pd.DataFrame  # form, record_id, person fields, date, age (for linkage; dropped after)
    events: pd.DataFrame  # conformed to the events table (person_id still empty)
    indicators: pd.DataFrame  # position (row of person/events), indicator
    duplicates: pd.DataFrame  # problems: duplicates dropped and record ids used twice


PERSON_COLUMNS = ("record_id", "date", "first_name", "last_name", "birth_date", "cpr", "passport_no", "sex", "nationality", CPR_BIRTH_DATE)


# -- the flow ---------------------------------------------------------------------------------------------


def ingest(
    raw_dirs: str | os.PathLike | Iterable[str | os.PathLike],
    dataset_dir: str | os.PathLike,
    key: "Pseudonymiser | bytes",
    *,
    strict: bool = False,
    append: bool = False,
    export_date: date | None = None,
    catalogue: FormCatalogue | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Ingest the form exports of ``raw_dirs`` (in order) into ``dataset_dir``; see the module docstring.

    ``key`` is a :class:`~studylib.privacy.pseudonymiser.Pseudonymiser` (raw key bytes are
    wrapped in one at once); ``export_date`` is the day the exports were made (default: the
    ``export_date`` the generator recorded for synthetic exports, else today): a date after
    it is rejected."""
    catalogue = catalogue or form_catalogue()
    raw_dirs = [Path(raw_dirs)] if isinstance(raw_dirs, (str, os.PathLike)) else [Path(d) for d in raw_dirs]
    dataset_dir = Path(dataset_dir)
    tokens = as_pseudonymiser(key)
    del key
    step = progress or (lambda stage, done, total: None)
    if not raw_dirs:
        raise IngestError("no raw folder given")
    latest = pd.Timestamp(export_date or recorded_export_date(raw_dirs) or datetime.now(timezone.utc).date())
    _check_output_folder(dataset_dir, raw_dirs)
    try:
        with output_lock(dataset_dir):
            remove_stale_temporaries(dataset_dir, raw_dirs)
            return _ingest(raw_dirs, dataset_dir, tokens, strict, append, latest, catalogue, step)
    except OSError as err:
        raise IngestError(_write_failure(err, dataset_dir)) from None


def _write_failure(err: OSError, dataset_dir: Path) -> str:
    """One line for an error of the file system (disk full, file-size limit, ...)."""
    what = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "a file would exceed the file-size limit",
            errno.EDQUOT: "the disk quota is used up", errno.EROFS: "the file system is read-only",
            errno.EACCES: "permission denied", errno.EPERM: "not permitted"}.get(err.errno)
    reason = what or (err.strerror or str(err).splitlines()[0] if str(err) else type(err).__name__)
    if what is None and ("No space" in str(err) or "File too large" in str(err)):
        reason = "no space left on the device" if "No space" in str(err) else "a file would exceed the file-size limit"
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    return (f"{dataset_dir}: cannot write the ingest's output{where}: {reason}; nothing was written "
            "(the earlier dataset, if any, is unchanged)")


def _ingest(raw_dirs: list[Path], dataset_dir: Path, tokens: Pseudonymiser, strict: bool, append: bool, latest: pd.Timestamp,
            catalogue: FormCatalogue, step: Progress) -> IngestResult:
    previous = _previous_state(dataset_dir, tokens) if append else None

    deny = DenyListJob(tokens, dataset_dir, append=previous is not None)  # hashes the names while the exports are read
    try:
        run = _read_all(raw_dirs, catalogue, strict, step, latest, deny)
        if run.file_problems:
            _write_quarantine(run)
            raise ValidationError(run.file_problems, summary="ingest stopped, nothing was written: export file(s) cannot be used")
        if not run.exports:
            raise IngestError(f"no form exports (files named like F01_outreach.csv) in {', '.join(map(str, raw_dirs))}")

        step("linking", 0, 1)
        new = _records(run, catalogue, tokens)
        quarantined = _write_quarantine(run)
        return _finish(run, new, previous, deny, quarantined, dataset_dir, raw_dirs, tokens, catalogue, strict, step)
    finally:
        deny.cancel()


def _finish(run: _Run, new: _Records, previous: dict | None, deny: DenyListJob, quarantined: list[Path], dataset_dir: Path,
            raw_dirs: list[Path], key: Pseudonymiser, catalogue: FormCatalogue, strict: bool, step: Progress) -> IngestResult:
    """Link, pseudonymise, derive the cases and write: the part after the exports are read."""
    if strict and len(new.duplicates):
        raise ValidationError(as_problems(new.duplicates, 50), summary="--strict: stopped at duplicate records")
    already = 0
    if previous is not None:  # a record ingested before keeps its first version
        seen = new.events["event_id"].isin(previous["events"]["event_id"]).to_numpy()
        already = int(seen.sum())
        new = _keep(new, ~seen)
    if previous is None and new.events.empty:
        raise IngestError("no valid records to ingest: every row was rejected (see the quarantine files)")
    added = len(new.events)
    combined = _combine(previous, new, key)
    del new
    linkage = link(combined.links)
    step("linking", 1, 1)

    step("pseudonymising", 0, 1)
    tables, links = _pseudonymised_tables(combined, linkage, catalogue)
    tables["persons"]["record_key"] = key.record_keys(tables["persons"]["person_id"])
    deny.add_tokens(tables["persons"]["person_id"], tables["events"]["event_id"])  # hashed while the cases are derived
    step("pseudonymising", 1, 1)
    step("deriving cases", 0, 1)
    tables["cases"] = derive_cases(tables["persons"], tables["events"], tables["indicators"], event_ages=links["age"])
    step("deriving cases", 1, 1)

    report = _report(run, added, already, linkage, tables, catalogue, quarantined, raw_dirs, previous is not None)
    step("writing", 0, 1)
    made = {"key_fingerprint": key.fingerprint, "demo_key": key.demo, "synthetic": is_synthetic_source(raw_dirs)}
    result = _write_outputs(dataset_dir, tables, links, report, key, catalogue, deny, made)
    result.quarantine_files = quarantined
    step("writing", 1, 1)
    return result


@dataclass
class _Combined:
    """Earlier and new records together, aligned by position: linkage tokens and events, and the
    indicator codes with the position of their event."""

    links: pd.DataFrame
    events: pd.DataFrame
    indicator_positions: np.ndarray
    indicator_codes: pd.Series


def _combine(previous: dict | None, new: _Records, key: Pseudonymiser) -> _Combined:
    links = pd.concat([new.events[["event_id", "form"]],
                       record_keys(new.person, new.person["form"] + ":" + new.person["record_id"], key),
                       new.person[["age"]]], axis=1)
    if previous is None:
        return _Combined(links.reset_index(drop=True), new.events.reset_index(drop=True),
                         new.indicators["position"].to_numpy(), new.indicators["indicator"])
    offset = len(previous["events"])
    return _Combined(
        links=pd.concat([previous["links"], links], ignore_index=True),
        events=pd.concat([previous["events"], new.events], ignore_index=True),
        indicator_positions=np.concatenate([previous["indicator_positions"], new.indicators["position"].to_numpy() + offset]),
        indicator_codes=pd.concat([previous["indicators"]["indicator"], new.indicators["indicator"]], ignore_index=True),
    )


def _pseudonymised_tables(combined: _Combined, linkage, catalogue: FormCatalogue) -> tuple[dict, pd.DataFrame]:
    """persons, events and indicators with person ids, sorted by their ids (and the links in event order)."""
    persons = person_attributes(combined.links, linkage)[["person_id", "sex", "birth_year", "nationality"]]
    events = combined.events
    events["person_id"] = linkage.person_id.array  # Arrow text, positional (no Python strings)
    events = events[list(event_columns(catalogue))]
    order = sort_positions(events, ["date", "event_id"])
    events = events.iloc[order].reset_index(drop=True)
    links = combined.links.iloc[order].reset_index(drop=True)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    positions = combined.indicator_positions
    indicators = pd.DataFrame({
        "person_id": linkage.person_ids.array.take(linkage.person_code[positions]),
        "indicator": combined.indicator_codes.array,
        "event_id": events["event_id"].array.take(rank[positions]),
    }).astype("str").drop_duplicates()
    indicators = indicators.iloc[sort_positions(indicators, ["person_id", "event_id", "indicator"])].reset_index(drop=True)
    return {"persons": persons, "events": events, "indicators": indicators}, links


def _check_output_folder(dataset_dir: Path, raw_dirs: list[Path]) -> None:
    refuse_symlinks(outputs_of(dataset_dir), "output")
    for raw in raw_dirs:
        refuse_symlinks([raw / QUARANTINE_DIR], "quarantine folder")
    if dataset_dir.exists():
        if not dataset_dir.is_dir():
            raise IngestError(f"{dataset_dir}: exists and is not a folder")
        if any(dataset_dir.iterdir()) and not (dataset_dir / META_FILE).is_file():
            raise IngestError(f"{dataset_dir}: exists and is not a dataset folder (no {META_FILE}); "
                              "ingest replaces its output folder, so give a new or empty folder")
    for raw in raw_dirs:
        if raw.resolve() == dataset_dir.resolve():
            raise IngestError(f"{dataset_dir}: the output folder is a raw folder")


def recorded_export_date(raw_dirs: Iterable[Path]) -> date | None:
    """The latest export date that the generator recorded in the raw folders' ``synth.json`` (None if none did)."""
    found = []
    for raw in raw_dirs:
        try:
            found.append(date.fromisoformat(str(json.loads((raw / SYNTHETIC_MARKER).read_text())["export_date"])[:10]))
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
            continue
    return max(found) if found else None


def refuse_symlinks(paths: Iterable[Path], what: str) -> None:
    """Outputs and the quarantine are never written through a symbolic link (it could send
    personal data, or the dataset, anywhere)."""
    for path in paths:
        if path.is_symlink():
            raise IngestError(f"{path}: the {what} is a symbolic link; ingest never writes through one "
                              "(remove the link, or give the real folder)")


@contextmanager
def output_lock(dataset_dir: Path):
    """Hold the lock of an output folder while ingesting into it; a second ingest is refused.

    The lock file (``.<name>.lock`` beside the folder) is removed when the ingest ends."""
    dataset_dir.parent.mkdir(parents=True, exist_ok=True)
    path = dataset_dir.with_name(f".{dataset_dir.name}{LOCK_SUFFIX}")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IngestError(f"{dataset_dir}: another ingest is writing this dataset now; wait for it to end") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino  # not a lock file removed meanwhile
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(path)
        finally:
            os.close(fd)


def stale_temporaries(dataset_dir: Path, raw_dirs: Iterable[Path]) -> list[Path]:
    """Temporary files and folders an interrupted ingest into ``dataset_dir`` left behind."""
    parent, deny = dataset_dir.parent, deny_list_path(dataset_dir).name
    patterns = [f".{dataset_dir.name}.ingest-*", f".{deny}-*", f".{deny}.*.tmp"]
    found = [p for pattern in patterns for p in parent.glob(pattern)]
    for target in (dataset_dir, linkage_dir(dataset_dir)):
        if target.exists():  # a crash between the two renames of replace_folder left the old one
            found += list(parent.glob(f".{target.name}.old-*"))
    for raw in raw_dirs:
        quarantine = raw / QUARANTINE_DIR
        if quarantine.is_dir() and not quarantine.is_symlink():
            found += list(quarantine.glob(".*.rejected.csv.*.tmp"))
    return sorted(found)


def remove_stale_temporaries(dataset_dir: Path, raw_dirs: Iterable[Path]) -> list[Path]:
    """Remove what :func:`stale_temporaries` finds (call it holding :func:`output_lock`)."""
    for target in (dataset_dir, linkage_dir(dataset_dir)):
        recover(target)
    found = stale_temporaries(dataset_dir, raw_dirs)
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


def _read_all(raw_dirs: list[Path], catalogue: FormCatalogue, strict: bool, step: Progress, latest: pd.Timestamp,
              deny: DenyListJob) -> _Run:
    run = _Run()
    found = [discover_exports(d, catalogue) for d in raw_dirs]
    for d in found:
        run.file_problems += d.problems
        run.ignored += d.ignored
    if strict and run.file_problems:
        raise ValidationError(run.file_problems[:1], summary="--strict: stopped at the first problem")
    todo = [(raw_dir, e) for raw_dir, d in zip(raw_dirs, found) for e in d.exports]
    for i, (raw_dir, export) in enumerate(todo):
        step(f"reading {export.name}", i, len(todo))
        try:
            raw = read_export(export.path)
            validated = validate_export(raw, export.form, catalogue, latest=latest)
        except ExportError as err:
            run.file_problems.append(err.problem)
            if strict:
                raise ValidationError([err.problem], summary="--strict: stopped at the first problem") from None
            continue
        del raw
        _hand_over_identifiers(deny, validated.values, catalogue, export.form)
        run.exports.append((raw_dir, validated))
        run.warnings += validated.warnings
        run.files.append({"folder": raw_dir.name, "file": export.name, "form": export.form,
                          "rows_read": validated.n_read, "accepted": len(validated.values),
                          "rejected": int(validated.rejected["_row"].nunique()) if len(validated.rejected) else 0,
                          "duplicates_dropped": 0})
        if strict and len(validated.problems):
            _write_quarantine(run)
            raise ValidationError(as_problems(validated.problems, 50), summary=f"--strict: stopped at the problems of {export.path}")
    step("reading", len(todo), len(todo))
    return run


def _records(run: _Run, catalogue: FormCatalogue, key: Pseudonymiser) -> _Records:
    """All accepted records of the run, in reading order, one per (form, record id); duplicates reported."""
    columns = event_columns(catalogue)
    ids = pd.concat([pd.DataFrame({"form": v.form, "record_id": v.values["record_id"]}) for _, v in run.exports], ignore_index=True)
    shared = ids.duplicated(keep=False).to_numpy()  # record ids that occur more than once
    persons, events, indicators = [], [], []
    start = 0
    for order, (_, v) in enumerate(run.exports):
        values = v.values
        n = len(values)
        person = values[list(PERSON_COLUMNS)].copy()
        person.insert(0, "form", v.form)
        person["_file"], person["_row"], person["_order"] = v.file, v.rows, order
        digest = np.zeros(n, dtype=np.uint64)
        mine = shared[start:start + n]
        if mine.any():  # the content of a repeated record, to tell duplicates from conflicts
            digest[mine] = pd.util.hash_pandas_object(values.loc[mine, catalogue.columns_of(v.form)], index=False).to_numpy()
        person["_digest"] = digest
        persons.append(person)
        events.append(_conform(values.assign(form=v.form), columns))
        indicators.append(_indicators(values, catalogue, start))
        start += n
        v.values = values.iloc[0:0]  # the typed values are not needed again
    person = pd.concat(persons, ignore_index=True)
    event = pd.concat(events, ignore_index=True)
    indicator = pd.concat(indicators, ignore_index=True)
    del persons, events, indicators

    # a record id seen before: the same content is a duplicate (dropped), other content is rejected
    repeated = ids.duplicated(keep="first").to_numpy()
    first = person[shared].groupby(["form", "record_id"], sort=False)[["_file", "_row", "_digest"]].transform("first").reindex(person.index)
    same = repeated & (person["_digest"] == first["_digest"]).to_numpy()
    differs = repeated & ~same

    def problems(mask: np.ndarray, text: str) -> pd.DataFrame:
        out = problems_frame("", person.loc[mask, "_row"], "record_id", "")
        out["file"] = person.loc[mask, "_file"].to_numpy()
        out["rule"] = [text.format(where=f"{Path(f).name} row {r}") for f, r in zip(first.loc[mask, "_file"], first.loc[mask, "_row"])]
        return out

    dropped = problems(same, "duplicate: the same record as {where} (dropped)")
    rejected = problems(differs, "record id already used by {where} with other content (rejected; the first is kept)")
    _quarantine_rows(run, person[differs], rejected)
    for f in run.files:
        f["duplicates_dropped"] = int((dropped["file"].map(lambda p: Path(p).name) == f["file"]).sum()) if len(dropped) else 0
        moved = int((rejected["file"].map(lambda p: Path(p).name) == f["file"]).sum()) if len(rejected) else 0
        f["accepted"] -= f["duplicates_dropped"] + moved
        f["rejected"] += moved
    run.duplicates = dropped
    records = _Records(person=person, events=event, indicators=indicator, duplicates=concat_problems([dropped, rejected]))
    records = _keep(records, ~repeated)
    person = records.person
    event_id = event_ids(person["form"], person["record_id"], key)
    if event_id.duplicated().any():  # 80-bit tokens: astronomically unlikely, but never silent
        raise IngestError("two records got the same event id; report this (it means a token collision)")
    records.events["event_id"] = event_id.array
    born = person["birth_date"].fillna(person[CPR_BIRTH_DATE])
    person["age"] = whole_years(born, person["date"]).to_numpy()
    return records


def _keep(records: _Records, keep: np.ndarray) -> _Records:
    """The records where ``keep`` holds (indicator positions renumbered)."""
    if keep.all():
        return records
    new_position = np.cumsum(keep) - 1
    ind = records.indicators[keep[records.indicators["position"].to_numpy()]]
    ind = ind.assign(position=new_position[ind["position"].to_numpy()])
    return _Records(person=records.person[keep].reset_index(drop=True), events=records.events[keep].reset_index(drop=True),
                    indicators=ind.reset_index(drop=True), duplicates=records.duplicates)


def _hand_over_identifiers(deny: DenyListJob, values: pd.DataFrame, catalogue: FormCatalogue, form: str) -> None:
    """Distinct raw names ("first last"), the values of the form's deny-list fields (catalogue: CPR and
    passport numbers, phones, e-mails) and free-text notes of one export's accepted rows, for the deny list."""
    pairs = values[["first_name", "last_name"]].drop_duplicates()
    names = (pairs["first_name"].fillna("") + " " + pairs["last_name"].fillna("")).str.strip()
    found = [names[names != ""]] + [values[f] for f in catalogue.deny_list_fields(form) if f in values.columns]
    notes = [values[name] for name in catalogue.free_text_fields(form) if name in values.columns]
    deny.add([_distinct_text(c) for c in found], [_distinct_text(c) for c in notes])


def _distinct_text(column: pd.Series) -> pa.Array:
    """The distinct present values of a text column, as an Arrow array."""
    return pa.array(column.dropna().unique(), type=pa.large_string())


def _quarantine_rows(run: _Run, rows: pd.DataFrame, problems: pd.DataFrame) -> None:
    """Add rows rejected after validation (record id used twice) to their export's rejected rows."""
    if rows.empty:
        return
    for (_, v) in run.exports:
        mine = rows[rows["_file"] == v.file]
        if mine.empty:
            continue
        raw = read_export(v.file)  # read again: the text as it is in the file goes to the quarantine
        position = pd.Series(np.arange(len(raw.rows)), index=raw.rows)
        extra = raw.frame.iloc[position.loc[mine["_row"].to_numpy()].to_numpy()].copy()
        extra.insert(0, "_row", mine["_row"].to_numpy())
        mine_problems = problems[problems["file"] == v.file]
        extra.insert(1, "_problems", ("record_id: " + mine_problems["rule"]).to_numpy())
        extra["_text"] = ""
        v.rejected = pd.concat([v.rejected, extra], ignore_index=True).sort_values("_row", kind="stable").reset_index(drop=True)
        v.problems = concat_problems([v.problems, mine_problems])


def _indicators(values: pd.DataFrame, catalogue: FormCatalogue, start: int) -> pd.DataFrame:
    """(position, indicator) of every indicator code on these records; positions count from ``start``."""
    sep = catalogue.export.multi_separator
    fields = [f.name for form in catalogue.forms for f in form.fields if f.type == "codes" and f.codes == "indicator"]
    parts = [pd.DataFrame({"position": pd.Series([], dtype="int64"), "indicator": pd.Series([], dtype="str")})]
    for name in dict.fromkeys(fields):
        if name not in values.columns:
            continue
        has = values[name].notna().to_numpy()
        lists = values.loc[has, name].str.split(sep, regex=False)
        exploded = pd.DataFrame({"position": np.flatnonzero(has) + start, "indicator": lists.to_numpy()}).explode("indicator")
        parts.append(exploded.dropna().astype({"position": "int64", "indicator": "str"}))
    return pd.concat(parts, ignore_index=True)


# -- append: what an earlier ingest left -------------------------------------------------------------------


def read_state(state_dir: Path, key: Pseudonymiser) -> dict:
    """The linkage state of ``state_dir``, its seal checked under ``key``; IngestError if it was
    made with another key, edited, or its links file is not the one it was sealed with."""
    path = state_dir / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IngestError(f"{path}: the linkage state cannot be read ({err}); ingest all raw exports together instead") from None
    if not isinstance(state, dict):
        raise IngestError(f"{path}: the linkage state is not a JSON object; ingest all raw exports together instead")
    seal = state.pop("seal", None)
    if seal is None:
        raise IngestError(f"{path}: the linkage state has no seal (made by an older studylib); ingest all raw exports together instead")
    if not key.verify(canonical_json(state), seal):
        if state.get("key_fingerprint") != key.fingerprint:
            raise IngestError(f"{path}: was made with another key (or edited): its seal does not match under this key; refused "
                              "(appending with another key would make unlinkable tokens)")
        raise IngestError(f"{path}: the linkage state was edited or damaged (its seal under this key does not match): "
                          "refused; ingest all raw exports together instead")
    if state.get("key_fingerprint") != key.fingerprint:  # sealed by this key but naming another: never made by ingest
        raise IngestError(f"{path}: was made with another key; appending with this key would make unlinkable tokens")
    links = state_dir / LINKS_FILE
    if _file_sha256(links) != state.get("links_sha256"):
        raise IngestError(f"{links}: is not the file the linkage state was sealed with (edited or replaced): "
                          "refused; ingest all raw exports together instead")
    return state


def _file_sha256(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _previous_state(dataset_dir: Path, key: Pseudonymiser) -> dict | None:
    if not (dataset_dir / META_FILE).is_file():
        return None  # nothing to append to: a first ingest
    state_dir = linkage_dir(dataset_dir)
    if not (state_dir / STATE_FILE).is_file() or not (state_dir / LINKS_FILE).is_file():
        raise IngestError(f"{dataset_dir}: cannot append, the linkage tokens ({state_dir}) are missing; "
                          "ingest all raw exports together instead")
    state = read_state(state_dir, key)
    meta = read_meta(dataset_dir)
    if state.get("dataset_content_hash") != meta.get("content_hash"):
        raise IngestError(f"{state_dir} does not belong to the dataset in {dataset_dir} (content hashes differ); "
                          "ingest all raw exports together instead")
    if state.get("linkage_rules_version") != linkage_rules()["version"]:
        raise IngestError(f"{dataset_dir}: made with linkage rules {state.get('linkage_rules_version')}, "
                          f"these are {linkage_rules()['version']}; ingest all raw exports together instead")
    data = read_dataset(dataset_dir)
    links = pd.read_parquet(state_dir / LINKS_FILE)
    columns = event_columns(form_catalogue())
    events = _conform(data.events, columns).drop(columns="person_id")
    if len(links) != len(events) or not links["event_id"].equals(events["event_id"]):
        where = pd.Index(links["event_id"]).get_indexer(events["event_id"])
        if len(links) != len(events) or (where < 0).any():
            raise IngestError(f"{state_dir} does not list the events of {dataset_dir}; ingest all raw exports together instead")
        links = links.iloc[where].reset_index(drop=True)
    positions = pd.Index(events["event_id"]).get_indexer(data.indicators["event_id"])
    return {"links": links, "events": events, "indicators": data.indicators, "indicator_positions": positions, "meta": meta}


# -- writing ------------------------------------------------------------------------------------------------


def _write_quarantine(run: _Run) -> list[Path]:
    """Rejected rows beside the raw data (personal data stays in the raw area), formulas defused."""
    written = []
    for raw_dir, v in run.exports:
        target = raw_dir / QUARANTINE_DIR / f"{Path(v.file).stem}.rejected.csv"
        refuse_symlinks([target.parent, target], "quarantine")
        if v.rejected.empty:
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(mode=0o700, exist_ok=True)
        frame = escape_formulas(v.rejected.astype("str").fillna(""))
        frame.columns = [escape_formula_text(str(c)) for c in frame.columns]
        write_file(target, frame.to_csv(index=False), mode=0o600, encoding="utf-8-sig", newline="")
        written.append(target)
    return written


def _write_outputs(dataset_dir: Path, tables: dict, links: pd.DataFrame, report: dict, key: Pseudonymiser, catalogue: FormCatalogue,
                   deny: DenyListJob, made: dict) -> IngestResult:
    made_by = {"tool": "studylib ingest", "studylib_version": __version__, "catalogue_version": catalogue.version,
               "linkage_rules_version": linkage_rules()["version"], "validation_rules_version": ingest_rules()["version"], **made}
    dataset_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{dataset_dir.name}.ingest-", dir=dataset_dir.parent))
        staged = write_dataset(tables, staging / dataset_dir.name, made_by=made_by)
        meta = read_meta(staged)
        report["dataset"]["content_hash"] = meta["content_hash"]
        (staged / REPORT_JSON).write_text(json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
        (staged / REPORT_MD).write_text(report_markdown(report))
        state_staged = staging / linkage_dir(dataset_dir).name
        state_staged.mkdir(mode=0o700)
        links.to_parquet(state_staged / LINKS_FILE, index=False)  # in the order of the events table
        state = {
            "key_fingerprint": key.fingerprint, "dataset_content_hash": meta["content_hash"],
            "linkage_rules_version": linkage_rules()["version"], "catalogue_version": catalogue.version,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "links_sha256": _file_sha256(state_staged / LINKS_FILE),
        }
        state["seal"] = key.seal(canonical_json(state))  # an edited state is refused on --append
        (state_staged / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        (state_staged / "README.txt").write_text(
            "Keyed tokens of the linkage keys of every event of the dataset beside this folder, so that\n"
            "later exports can be appended (studylib ingest --append). Pseudonymised, but it links more\n"
            "than the dataset does: keep it with the data controller; never share it with the dataset.\n")
        deny.wait()  # everything complete before anything is put in place
        refuse_symlinks(outputs_of(dataset_dir), "output")
        replace_folder(staged, dataset_dir)
        replace_folder(state_staged, linkage_dir(dataset_dir))
        deny_list = deny.finish()
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return IngestResult(dataset_dir=dataset_dir, report=report, deny_list=deny_list)


# -- the report ---------------------------------------------------------------------------------------------


def _report(run: _Run, added: int, already: int, linkage, tables: dict, catalogue: FormCatalogue,
            quarantined: list[Path], raw_dirs: list[Path], appended: bool) -> dict:
    rules = ingest_rules()
    all_rejected = concat_problems([v.problems for _, v in run.exports] + [run.duplicates if run.duplicates is not None else concat_problems([])])
    listed = all_rejected.head(rules["report"]["max_rejected_rows_listed"])
    by_rule = []
    if len(all_rejected):
        named = all_rejected.assign(file=all_rejected["file"].map(lambda f: Path(f).name), column=all_rejected["column"].fillna("(row)"))
        by_rule = (named.groupby(["file", "column", "rule"]).size().rename("rows").reset_index()
                   .sort_values(["file", "column", "rule"]).to_dict("records"))
    cases = tables["cases"]
    quasi = cases[list(QUASI_IDENTIFIERS)].astype("str").fillna("unknown")
    sizes = quasi.groupby(list(QUASI_IDENTIFIERS), dropna=False).size()
    unique = int((sizes == 1).sum())
    conflicts = {}
    for spec in linkage_rules().get("conflicts", []):
        hit = linkage.conflicts[linkage.conflicts["conflict"] == spec["name"]]["person_id"]
        conflicts[spec["name"]] = {"what": spec["what"], "persons": int(len(hit)), "person_ids": hit.head(20).tolist()}
    present = {f["form"] for f in run.files}
    return {
        "about": "Ingest report: counts, rejected rows (file, row, column, rule), linkage and uniqueness. "
                 "It holds no personal data and no values; the rejected rows are in the quarantine files of the raw folders.",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "studylib_version": __version__,
        "catalogue_version": catalogue.version,
        "mode": "append" if appended else "fresh",
        "raw_folders": [d.name for d in raw_dirs],
        "files": run.files,
        "forms_without_export": [c for c in (f.code for f in catalogue.forms) if c not in present],
        "ignored_files": [p.name for p in run.ignored],
        "records_already_in_dataset": already,
        "records_added": added,
        "warnings": [{"file": Path(p.where).name, "row": p.row, "column": None if p.column is None else _shown_name(p.column),
                      "rule": p.rule} for p in run.warnings],
        "rejected": {
            "rows": int(all_rejected.drop_duplicates(["file", "row"]).shape[0]) if len(all_rejected) else 0,
            "problems": int(len(all_rejected)),
            "by_rule": by_rule,
            "listed": [{"file": Path(r.file).name, "row": None if pd.isna(r.row) else int(r.row),
                        "column": None if pd.isna(r.column) else r.column, "rule": r.rule} for r in listed.itertuples(index=False)],
            "quarantine_files": [f"{p.parent.parent.name}/{p.parent.name}/{p.name}" for p in quarantined],
        },
        "linkage": linkage.figures,
        "conflicts": conflicts,
        "dataset": {
            "persons": int(len(tables["persons"])),
            "events": int(len(tables["events"])),
            "indicators": int(len(tables["indicators"])),
            "cases": int(len(cases)),
            "persons_without_contact_form": int(len(tables["persons"]) - len(cases)),
        },
        "uniqueness": {
            "quasi_identifiers": list(QUASI_IDENTIFIERS),
            "cases_unique": unique,
            "cases": int(len(cases)),
            "share_unique": round(unique / len(cases), 4) if len(cases) else 0.0,
        },
    }


def _shown_name(name: str) -> str:
    """A column name from a raw header as the report shows it: escaped like a quarantined value
    (a formula start defused, control characters as ``?``), at most 100 characters."""
    return escape_formula_text(str(name))[:100]


def _md(text) -> str:
    """Text for a cell or line of the Markdown report: ``|``, backticks and angle brackets escaped."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`").replace("<", "&lt;").replace(">", "&gt;")


def report_markdown(report: dict) -> str:
    """The ingest report as a short readable text."""
    lines = ["# Ingest report", "", f"Made {report['created']} by studylib {report['studylib_version']} "
             f"(form catalogue {report['catalogue_version']}), mode: {report['mode']}.", ""]
    d = report["dataset"]
    lines += [f"Dataset: {d['persons']} persons, {d['events']} events, {d['indicators']} indicator rows, {d['cases']} cases "
              f"({d['persons_without_contact_form']} persons have no contact form and are not cases).", ""]
    lines += ["## Files", "", "| folder | file | form | rows read | accepted | rejected | duplicates |", "|---|---|---|---|---|---|---|"]
    for f in report["files"]:
        lines.append(f"| {f['folder']} | {f['file']} | {f['form']} | {f['rows_read']} | {f['accepted']} | {f['rejected']} | {f['duplicates_dropped']} |")
    if report["forms_without_export"]:
        lines += ["", f"Forms without an export: {', '.join(report['forms_without_export'])}."]
    if report["ignored_files"]:
        lines += ["", f"Ignored (not form exports): {', '.join(report['ignored_files'])}."]
    if report["records_already_in_dataset"]:
        lines += ["", f"{report['records_already_in_dataset']} records were already in the dataset (same form and record id) and were skipped."]
    r = report["rejected"]
    lines += ["", "## Rejected rows", "", f"{r['rows']} rows with {r['problems']} problems."]
    if r["by_rule"]:
        lines += ["", "| file | column | rule | rows |", "|---|---|---|---|"]
        lines += [f"| {x['file']} | {x['column']} | {x['rule']} | {x['rows']} |" for x in r["by_rule"]]
        lines += ["", "The rows themselves (with personal data) are in the quarantine files of the raw folders: "
                  + ", ".join(r["quarantine_files"]) + "."]
    if report["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {_md(w['file'])}" + (f" column {_md(repr(w['column']))}" if w["column"] else "") + f": {_md(w['rule'])}"
                                            for w in report["warnings"][:50]]
    k = report["linkage"]
    lines += ["", "## Linkage", "", f"{k['records']} records -> {k['persons']} persons; {k['persons_with_several_records']} persons have "
              f"several records (at most {k['most_records_of_one_person']})."]
    lines += ["Records with each key: " + ", ".join(f"{n} {c}" for n, c in k["records_with_key"].items())
              + f"; without any key: {k['records_without_any_key']}."]
    if "persons_by_id_key" in k:
        lines += ["Person ids from: " + ", ".join(f"{n} {c}" for n, c in k["persons_by_id_key"].items()) + "."]
    lines += ["", "Conflicts (reported, not resolved):", ""]
    lines += [f"- {name}: {c['persons']} persons ({c['what']})" for name, c in report["conflicts"].items()]
    u = report["uniqueness"]
    lines += ["", "## Uniqueness", "", f"{u['cases_unique']} of {u['cases']} cases ({u['share_unique']:.1%}) are unique on "
              f"({', '.join(u['quasi_identifiers'])}): tables must go through disclosure control."]
    return "\n".join(lines) + "\n"
