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
    keyed hashes of the raw names and identifiers for the output audit (when
    :func:`studylib.privacy.audit.make_deny_list` exists), also kept apart from the dataset.
``RAW_DIR/quarantine/<form>.rejected.csv``
    rejected rows with their problems. They hold personal data and stay in the raw area.

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

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from studylib import __version__
from studylib.data.cases import derive_cases
from studylib.data.dataset import META_FILE, _replace_dir, read_dataset, read_meta, write_dataset
from studylib.data.schemas import TABLES
from studylib.errors import Problem, StudylibError, ValidationError
from studylib.forms.catalogue import FormCatalogue, form_catalogue
from studylib.forms.linkage import key_column, key_names, link, linkage_rules, person_attributes, record_keys
from studylib.forms.reading import ExportError, RawTable, discover_exports, escape_formulas, ingest_rules, read_export
from studylib.forms.validation import (
    CPR_BIRTH_DATE,
    ValidatedExport,
    as_problems,
    concat_problems,
    file_problems,
    problems_frame,
    validate_export,
    whole_years,
)
from studylib.privacy.tokens import key_fingerprint, keyed_token

REPORT_JSON = "ingest_report.json"
REPORT_MD = "ingest_report.md"
QUARANTINE_DIR = "quarantine"
LINKS_FILE = "links.parquet"
STATE_FILE = "state.json"
EVENT_TOKEN_HEX = 20
#: Quasi-identifiers whose combination the report checks for unique persons.
QUASI_IDENTIFIERS = ("sex", "birth_year", "nationality", "region")

Progress = Callable[[str, int, int], None]


class IngestError(StudylibError):
    """Ingest cannot start or finish (no exports, wrong output folder, append mismatch, ...)."""


def linkage_dir(dataset_dir: str | os.PathLike) -> Path:
    """The sibling folder with the keyed linkage tokens of a dataset."""
    dataset_dir = Path(dataset_dir)
    return dataset_dir.with_name(dataset_dir.name + ".linkage")


def deny_list_path(dataset_dir: str | os.PathLike) -> Path:
    """Where ingest puts the deny list of a dataset (beside it, never inside)."""
    dataset_dir = Path(dataset_dir)
    return dataset_dir.with_name(dataset_dir.name + ".denylist")


def check_key_location(key_file: str | os.PathLike, dataset_dir: str | os.PathLike) -> None:
    """A key never lies with the data: refuse a key file inside the output folder or its siblings."""
    key_path = Path(key_file).resolve()
    for folder in (Path(dataset_dir), linkage_dir(dataset_dir), deny_list_path(dataset_dir)):
        folder = folder.resolve()
        if key_path == folder or key_path.is_relative_to(folder):
            raise IngestError(
                f"{key_file}: the key file is inside the output folder {folder}; a key is never stored "
                "with the data (and the folder is replaced on ingest). Move the key elsewhere."
            )


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


def _conform(events: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    out = pd.DataFrame(index=events.index)
    for name, dtype in columns.items():
        column = events[name] if name in events.columns else pd.Series(pd.NA, index=events.index)
        if dtype == "datetime64[ns]":
            out[name] = pd.to_datetime(column).astype(dtype)
        elif dtype == "str":
            out[name] = column.astype("str")
        else:
            out[name] = column.astype(dtype)
    return out


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
    raw: dict = field(default_factory=dict)  # file -> RawTable (for the quarantine)
    files: list[dict] = field(default_factory=list)


# -- the flow ---------------------------------------------------------------------------------------------


def ingest(
    raw_dirs: str | os.PathLike | Iterable[str | os.PathLike],
    dataset_dir: str | os.PathLike,
    key: bytes,
    *,
    strict: bool = False,
    append: bool = False,
    catalogue: FormCatalogue | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Ingest the form exports of ``raw_dirs`` (in order) into ``dataset_dir``; see the module docstring."""
    catalogue = catalogue or form_catalogue()
    raw_dirs = [Path(raw_dirs)] if isinstance(raw_dirs, (str, os.PathLike)) else [Path(d) for d in raw_dirs]
    dataset_dir = Path(dataset_dir)
    step = progress or (lambda stage, done, total: None)
    if not raw_dirs:
        raise IngestError("no raw folder given")
    _check_output_folder(dataset_dir, raw_dirs)
    previous = _previous_state(dataset_dir, key) if append else None

    run = _read_all(raw_dirs, catalogue, strict, step)
    quarantined = _write_quarantine(run, raw_dirs, catalogue)
    if run.file_problems:
        raise ValidationError(run.file_problems, summary="ingest stopped, nothing was written: export file(s) cannot be used")
    if not run.exports:
        raise IngestError(f"no form exports (files named like F01_outreach.csv) in {', '.join(map(str, raw_dirs))}")

    step("linking", 0, 1)
    records, duplicates = _records(run, catalogue, key)
    if strict and len(duplicates):
        raise ValidationError(as_problems(duplicates, 50), summary="--strict: stopped at duplicate records")
    already = pd.Series(False, index=records.index)
    if previous is not None:
        already = records["event_id"].isin(previous["links"]["event_id"])
        records = records[~already].reset_index(drop=True)
    if previous is None and records.empty:
        raise IngestError("no valid records to ingest: every row was rejected (see the quarantine files)")
    links_new = pd.concat([records[["event_id", "form"]], record_keys(records, records["form"] + ":" + records["record_id"], key), records[["age"]]], axis=1)
    links = links_new if previous is None else pd.concat([previous["links"], links_new], ignore_index=True)
    links = links.sort_values("event_id", kind="stable").reset_index(drop=True)
    linkage = link(links)
    links["person_id"] = linkage.person_id
    step("linking", 1, 1)

    step("pseudonymising", 0, 1)
    columns = event_columns(catalogue)
    events_new = _conform(records, columns)
    indicators_new = _indicators(records, catalogue)
    if previous is not None:
        events_all = pd.concat([previous["events"].drop(columns="person_id"), events_new.drop(columns="person_id")], ignore_index=True)
        indicators_all = pd.concat([previous["indicators"][["event_id", "indicator"]], indicators_new], ignore_index=True)
    else:
        events_all, indicators_all = events_new.drop(columns="person_id"), indicators_new
    person_of = links.set_index("event_id")["person_id"]
    events_all["person_id"] = events_all["event_id"].map(person_of)
    events = _conform(events_all, columns).sort_values(["date", "event_id"], kind="stable").reset_index(drop=True)
    indicators_all["person_id"] = indicators_all["event_id"].map(person_of)
    indicators = (indicators_all[["person_id", "indicator", "event_id"]].astype("str").drop_duplicates()
                  .sort_values(["person_id", "event_id", "indicator"], kind="stable").reset_index(drop=True))
    persons = person_attributes(links, links["person_id"])
    persons = persons[["person_id", "sex", "birth_year", "nationality"]]
    step("pseudonymising", 1, 1)

    step("deriving cases", 0, 1)
    ages = links.set_index("event_id")["age"]
    cases = derive_cases(persons, events, indicators, event_ages=ages)
    step("deriving cases", 1, 1)

    tables = {"persons": persons, "events": events, "indicators": indicators, "cases": cases}
    report = _report(run, records, duplicates, int(already.sum()), linkage, tables, catalogue, quarantined, raw_dirs, append and previous is not None)
    step("writing", 0, 1)
    result = _write_outputs(dataset_dir, tables, links, report, key, catalogue, run)
    result.quarantine_files = quarantined
    step("writing", 1, 1)
    return result


def _check_output_folder(dataset_dir: Path, raw_dirs: list[Path]) -> None:
    if dataset_dir.exists():
        if not dataset_dir.is_dir():
            raise IngestError(f"{dataset_dir}: exists and is not a folder")
        if any(dataset_dir.iterdir()) and not (dataset_dir / META_FILE).is_file():
            raise IngestError(f"{dataset_dir}: exists and is not a dataset folder (no {META_FILE}); "
                              "ingest replaces its output folder, so give a new or empty folder")
    for raw in raw_dirs:
        if raw.resolve() == dataset_dir.resolve():
            raise IngestError(f"{dataset_dir}: the output folder is a raw folder")


def _read_all(raw_dirs: list[Path], catalogue: FormCatalogue, strict: bool, step: Progress) -> _Run:
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
            validated = validate_export(raw, export.form, catalogue)
        except ExportError as err:
            run.file_problems.append(err.problem)
            if strict:
                raise ValidationError([err.problem], summary="--strict: stopped at the first problem") from None
            continue
        run.raw[str(export.path)] = raw
        run.exports.append((raw_dir, validated))
        run.warnings += validated.warnings
        run.files.append({"folder": raw_dir.name, "file": export.name, "form": export.form, "format": raw.encoding,
                          "delimiter": raw.delimiter, "rows_read": validated.n_read, "accepted": len(validated.values),
                          "rejected": int(validated.rejected["_row"].nunique()) if len(validated.rejected) else 0})
        if strict and len(validated.problems):
            if len(validated.rejected):
                _write_quarantine(run, raw_dirs, catalogue)
            raise ValidationError(as_problems(validated.problems, 50), summary=f"--strict: stopped at the problems of {export.path}")
    step("reading", len(todo), len(todo))
    return run


def _records(run: _Run, catalogue: FormCatalogue, key: bytes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All accepted records of the run, in reading order, one per (form, record id); and the duplicates dropped."""
    frames = []
    for order, (_, v) in enumerate(run.exports):
        frame = v.values.copy()
        frame.insert(0, "form", v.form)
        frame["_file"] = v.file
        frame["_row"] = v.rows
        frame["_order"] = order
        frame["_digest"] = pd.util.hash_pandas_object(v.values[catalogue.columns_of(v.form)], index=False).to_numpy()
        frames.append(frame)
    records = pd.concat(frames, ignore_index=True)
    records = records.sort_values(["_order", "_row"], kind="stable").reset_index(drop=True)
    first = records.groupby(["form", "record_id"], sort=False)[["_file", "_row", "_digest"]].transform("first")
    repeated = records.duplicated(["form", "record_id"], keep="first")
    same = repeated & (records["_digest"] == first["_digest"])
    differs = repeated & ~same
    def where(mask):
        return [f"{Path(f).name} row {r}" for f, r in zip(first.loc[mask, "_file"], first.loc[mask, "_row"])]
    same_problems = problems_frame("", records.loc[same, "_row"], "record_id", "")
    same_problems["file"] = records.loc[same, "_file"].to_numpy()
    same_problems["rule"] = [f"duplicate: the same record as {w} (dropped)" for w in where(same)]
    differ_problems = problems_frame("", records.loc[differs, "_row"], "record_id", "")
    differ_problems["file"] = records.loc[differs, "_file"].to_numpy()
    differ_problems["rule"] = [f"record id already used by {w} with other content (rejected; the first is kept)" for w in where(differs)]
    _quarantine_rows(run, records[differs], differ_problems)
    dup = concat_problems([same_problems, differ_problems])
    records = records[~repeated].reset_index(drop=True)
    records["event_id"] = records["form"] + "-" + keyed_token(records["form"] + "\x1f" + records["record_id"], key, "event", EVENT_TOKEN_HEX)
    if records["event_id"].duplicated().any():  # 80-bit tokens: astronomically unlikely, but never silent
        raise IngestError("two records got the same event id; report this (it means a token collision)")
    born = records["birth_date"].fillna(records[CPR_BIRTH_DATE])
    records["age"] = whole_years(born, records["date"])
    return records, dup


def _quarantine_rows(run: _Run, rows: pd.DataFrame, problems: pd.DataFrame) -> None:
    """Add rows rejected after validation (record id conflicts) to their export's rejected rows."""
    if rows.empty:
        return
    for (_, v) in run.exports:
        mine = rows[rows["_file"] == v.file]
        if mine.empty:
            continue
        raw = run.raw[v.file]
        position = pd.Series(np.arange(len(raw.rows)), index=raw.rows)
        extra = raw.frame.iloc[position.loc[mine["_row"].to_numpy()].to_numpy()].copy()
        extra.insert(0, "_row", mine["_row"].to_numpy())
        mine_problems = problems[problems["file"] == v.file]
        extra.insert(1, "_problems", ("record_id: " + mine_problems["rule"]).to_numpy())
        extra["_text"] = ""
        v.rejected = pd.concat([v.rejected, extra], ignore_index=True).sort_values("_row", kind="stable").reset_index(drop=True)
        v.problems = concat_problems([v.problems, mine_problems])


def _indicators(records: pd.DataFrame, catalogue: FormCatalogue) -> pd.DataFrame:
    sep = catalogue.export.multi_separator
    fields = [f.name for form in catalogue.forms for f in form.fields if f.type == "codes" and f.codes == "indicator"]
    parts = []
    for name in dict.fromkeys(fields):
        if name not in records.columns:
            continue
        has = records[records[name].notna()]
        exploded = has[["event_id", name]].assign(indicator=has[name].str.split(sep, regex=False)).explode("indicator")
        parts.append(exploded[["event_id", "indicator"]])
    if not parts:
        return pd.DataFrame({"event_id": pd.Series([], dtype="str"), "indicator": pd.Series([], dtype="str")})
    return pd.concat(parts, ignore_index=True).dropna().astype("str")


# -- append: what an earlier ingest left -------------------------------------------------------------------


def _previous_state(dataset_dir: Path, key: bytes) -> dict | None:
    if not (dataset_dir / META_FILE).is_file():
        return None  # nothing to append to: a first ingest
    state_dir = linkage_dir(dataset_dir)
    if not (state_dir / STATE_FILE).is_file() or not (state_dir / LINKS_FILE).is_file():
        raise IngestError(f"{dataset_dir}: cannot append, the linkage tokens ({state_dir}) are missing; "
                          "ingest all raw exports together instead")
    state = json.loads((state_dir / STATE_FILE).read_text())
    meta = read_meta(dataset_dir)
    if state.get("key_fingerprint") != key_fingerprint(key):
        raise IngestError(f"{dataset_dir}: was made with another key; appending with this key would make unlinkable tokens")
    if state.get("dataset_content_hash") != meta.get("content_hash"):
        raise IngestError(f"{state_dir} does not belong to the dataset in {dataset_dir} (content hashes differ); "
                          "ingest all raw exports together instead")
    if state.get("linkage_rules_version") != linkage_rules()["version"]:
        raise IngestError(f"{dataset_dir}: made with linkage rules {state.get('linkage_rules_version')}, "
                          f"these are {linkage_rules()['version']}; ingest all raw exports together instead")
    data = read_dataset(dataset_dir)
    links = pd.read_parquet(state_dir / LINKS_FILE)
    return {"links": links, "events": data.events, "indicators": data.indicators, "meta": meta}


# -- writing ------------------------------------------------------------------------------------------------


def _write_private(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Write a file readable by its owner only, atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_quarantine(run: _Run, raw_dirs: list[Path], catalogue: FormCatalogue) -> list[Path]:
    """Rejected rows beside the raw data (personal data stays in the raw area), formulas defused."""
    written = []
    for raw_dir, v in run.exports:
        target = raw_dir / QUARANTINE_DIR / f"{Path(v.file).stem}.rejected.csv"
        if v.rejected.empty:
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(mode=0o700, exist_ok=True)
        frame = escape_formulas(v.rejected.astype("str").fillna(""))
        _write_private(target, frame.to_csv(index=False), encoding="utf-8-sig")
        written.append(target)
    return written


def _write_outputs(dataset_dir: Path, tables: dict, links: pd.DataFrame, report: dict, key: bytes, catalogue: FormCatalogue, run: _Run) -> IngestResult:
    made_by = {"tool": "studylib ingest", "studylib_version": __version__, "catalogue_version": catalogue.version,
               "linkage_rules_version": linkage_rules()["version"], "validation_rules_version": ingest_rules()["version"]}
    dataset_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dataset_dir.name}.ingest-", dir=dataset_dir.parent))
    try:
        staged = write_dataset(tables, staging / dataset_dir.name, made_by=made_by)
        meta = read_meta(staged)
        report["dataset"]["content_hash"] = meta["content_hash"]
        (staged / REPORT_JSON).write_text(json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
        (staged / REPORT_MD).write_text(report_markdown(report))
        state_staged = staging / linkage_dir(dataset_dir).name
        state_staged.mkdir(mode=0o700)
        links_out = links.drop(columns=["person_id"]).sort_values("event_id").reset_index(drop=True)
        links_out.to_parquet(state_staged / LINKS_FILE, index=False)
        (state_staged / STATE_FILE).write_text(json.dumps({
            "key_fingerprint": key_fingerprint(key), "dataset_content_hash": meta["content_hash"],
            "linkage_rules_version": linkage_rules()["version"], "catalogue_version": catalogue.version,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }, indent=2) + "\n")
        (state_staged / "README.txt").write_text(
            "Keyed tokens of the linkage keys of every event of the dataset beside this folder, so that\n"
            "later exports can be appended (studylib ingest --append). Pseudonymised, but it links more\n"
            "than the dataset does: keep it with the data controller; never share it with the dataset.\n")
        _replace_dir(staged, dataset_dir)
        _replace_dir(state_staged, linkage_dir(dataset_dir))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    deny = _write_deny_list(dataset_dir, run, key)
    return IngestResult(dataset_dir=dataset_dir, report=report, deny_list=deny)


def _write_deny_list(dataset_dir: Path, run: _Run, key: bytes) -> Path | None:
    """Keyed hashes of the raw names and identifiers, beside the dataset, for the output audit."""
    try:
        from studylib.privacy.audit import make_deny_list  # owned by the disclosure audit
    except ImportError:
        return None
    return None


# -- the report ---------------------------------------------------------------------------------------------


def _report(run: _Run, records: pd.DataFrame, duplicates: pd.DataFrame, already: int, linkage, tables: dict,
            catalogue: FormCatalogue, quarantined: list[Path], raw_dirs: list[Path], appended: bool) -> dict:
    rules = ingest_rules()
    rejected = concat_problems([v.problems for _, v in run.exports])
    rejected = rejected[~rejected["rule"].str.startswith("record id already", na=False)] if len(rejected) else rejected
    all_rejected = concat_problems([rejected, duplicates])
    listed = all_rejected.head(rules["report"]["max_rejected_rows_listed"])
    by_rule = (all_rejected.assign(file=all_rejected["file"].map(lambda f: Path(f).name)).groupby(["file", "column", "rule"], dropna=False).size()
               .rename("rows").reset_index().sort_values(["file", "column", "rule"]).to_dict("records")) if len(all_rejected) else []
    cases = tables["cases"]
    quasi = cases[list(QUASI_IDENTIFIERS)].astype("str").fillna("unknown")
    sizes = quasi.groupby(list(QUASI_IDENTIFIERS), dropna=False).size()
    unique = int((sizes == 1).sum())
    conflicts = {}
    for spec in linkage_rules().get("conflicts", []):
        hit = linkage.conflicts[linkage.conflicts["conflict"] == spec["name"]]["person_id"]
        conflicts[spec["name"]] = {"what": spec["what"], "persons": int(len(hit)), "person_ids": hit.head(20).tolist()}
    for f in run.files:
        name_rows = duplicates[duplicates["file"].map(lambda p: Path(p).name) == f["file"]] if len(duplicates) else duplicates
        f["duplicates_dropped"] = int(name_rows["rule"].str.startswith("duplicate").sum()) if len(name_rows) else 0
        f["rejected"] += int((~name_rows["rule"].str.startswith("duplicate")).sum()) if len(name_rows) else 0
        f["accepted"] -= f["duplicates_dropped"] + (int((~name_rows["rule"].str.startswith("duplicate")).sum()) if len(name_rows) else 0)
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
        "records_added": int(len(records)),
        "warnings": [{"file": Path(p.where).name, "row": p.row, "column": p.column, "rule": p.rule} for p in run.warnings],
        "rejected": {
            "rows": int(all_rejected.drop_duplicates(["file", "row"]).shape[0]) if len(all_rejected) else 0,
            "problems": int(len(all_rejected)),
            "by_rule": by_rule,
            "listed": [{"file": Path(r.file).name, "row": None if pd.isna(r.row) else int(r.row), "column": None if pd.isna(r.column) else r.column,
                        "rule": r.rule} for r in listed.itertuples(index=False)],
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


def report_markdown(report: dict) -> str:
    """The ingest report as a short readable text."""
    lines = ["# Ingest report", "", f"Made {report['created']} by studylib {report['studylib_version']} "
             f"(form catalogue {report['catalogue_version']}), mode: {report['mode']}.", ""]
    d = report["dataset"]
    lines += [f"Dataset: {d['persons']} persons, {d['events']} events, {d['indicators']} indicator rows, {d['cases']} cases "
              f"({d['persons_without_contact_form']} persons have no contact form and are not cases).", ""]
    lines += ["## Files", "", "| folder | file | form | format | rows read | accepted | rejected | duplicates |", "|---|---|---|---|---|---|---|---|"]
    for f in report["files"]:
        lines.append(f"| {f['folder']} | {f['file']} | {f['form']} | {f['format']} | {f['rows_read']} | {f['accepted']} | {f['rejected']} | {f['duplicates_dropped']} |")
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
        lines += [f"| {x['file']} | {x['column'] if x['column'] is not None and x['column'] == x['column'] else '(row)'} | {x['rule']} | {x['rows']} |" for x in r["by_rule"]]
        lines += ["", "The rows themselves (with personal data) are in the quarantine files of the raw folders: "
                  + ", ".join(r["quarantine_files"]) + "."]
    if report["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w['file']}" + (f" column {w['column']!r}" if w["column"] else "") + f": {w['rule']}" for w in report["warnings"][:50]]
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
