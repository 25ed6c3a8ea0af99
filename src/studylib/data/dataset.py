"""Reading and writing a dataset folder: Parquet tables plus ``dataset.json``.

``dataset.json`` records the schema version, creation time, row counts, a content hash
(independent of Parquet encoding) and how the dataset was made. Writing validates every
table first, collecting all failures, then writes into a temporary folder beside the target
and renames it into place, so a reader never sees half a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import pandas as pd
from pandera.errors import SchemaErrors

from studylib.data.atomic import replace_folder
from studylib.data.meta import META_FILE, DatasetError, read_meta
from studylib.data.schemas import SCHEMA_VERSION, TABLES
from studylib.errors import Problem, ValidationError

__all__ = ["META_FILE", "Dataset", "DatasetError", "content_hash", "read_dataset", "read_meta", "validate_tables", "write_dataset"]


@dataclass
class Dataset:
    """The four tables of a pseudonymised dataset and its metadata."""

    persons: pd.DataFrame
    events: pd.DataFrame
    indicators: pd.DataFrame
    cases: pd.DataFrame
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in TABLES}

    @property
    def content_hash(self) -> str:
        return self.meta.get("content_hash") or content_hash(self.tables())


def table_hash(table: pd.DataFrame) -> str:
    """A hash of a table's content: column names, dtypes and values, row order included."""
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in table.dtypes.items()]).encode())
    if len(table):
        h.update(pd.util.hash_pandas_object(table, index=False).values.tobytes())
    return h.hexdigest()


def content_hash(tables: Mapping[str, pd.DataFrame]) -> str:
    """One hash over all tables, in name order.

    ``tables``: table name -> DataFrame (persons, events, indicators, cases).

    Example::

        content_hash(read_dataset(data_dir).tables)
    """
    h = hashlib.sha256()
    for name in sorted(tables):
        h.update(name.encode())
        h.update(table_hash(tables[name]).encode())
    return h.hexdigest()


def _problems_from(name: str, err: SchemaErrors) -> list[Problem]:
    problems = []
    cases = err.failure_cases
    for rec in cases.itertuples(index=False):
        row = None if pd.isna(rec.index) else int(rec.index)
        column = None if pd.isna(rec.column) else str(rec.column)
        value = None if rec.failure_case is None or (isinstance(rec.failure_case, float) and pd.isna(rec.failure_case)) else rec.failure_case
        problems.append(Problem(where=f"table {name}", rule=str(rec.check), row=row, column=column, value=value))
    return problems


def validate_tables(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Validate (and coerce) every table against its schema; raise one ValidationError with all problems.

    ``tables``: table name -> DataFrame; every table of :data:`TABLES` must be there.

    Example::

        tables = validate_tables(read_dataset(data_dir).tables)
    """
    problems: list[Problem] = []
    out: dict[str, pd.DataFrame] = {}
    missing = [name for name in TABLES if name not in tables]
    problems += [Problem(where=f"table {name}", rule="table is missing") for name in missing]
    for name, schema in TABLES.items():
        if name not in tables:
            continue
        try:
            out[name] = schema.validate(tables[name], lazy=True)
        except SchemaErrors as err:
            problems += _problems_from(name, err)
    if problems:
        raise ValidationError(problems, summary="dataset does not match the data contract")
    return out


def write_dataset(tables: Mapping[str, pd.DataFrame], folder: str | os.PathLike, made_by: Mapping | None = None) -> Path:
    """Validate and write the dataset atomically to ``folder`` (replacing an older one).

    ``tables``: table name -> DataFrame (validated first); ``made_by``: how the data were made
    (tool, options), recorded in ``dataset.json``.

    Example::

        write_dataset(tables, "out/dataset", made_by={"tool": "my_import"})
    """
    folder = Path(folder)
    valid = validate_tables(tables)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        for name, table in valid.items():
            table.reset_index(drop=True).to_parquet(tmp / f"{name}.parquet", index=False)
        meta = {
            "schema_version": SCHEMA_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "row_counts": {name: int(len(t)) for name, t in valid.items()},
            "content_hash": content_hash({n: t.reset_index(drop=True) for n, t in valid.items()}),
            "made_by": dict(made_by or {}),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_dataset(folder: str | os.PathLike, validate: bool = False) -> Dataset:
    """Read a dataset folder. ``validate=True`` re-checks the schemas and the content hash.

    ``folder``: the dataset folder (its Parquet tables and ``dataset.json``).

    Example::

        cases = read_dataset(data_dir, validate=True).cases
    """
    folder = Path(folder)
    meta = read_meta(folder)
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(
            f"{folder / META_FILE}: schema_version {meta.get('schema_version')!r}, "
            f"this studylib reads {SCHEMA_VERSION!r}; re-run `studylib ingest`"
        )
    tables = {}
    for name in TABLES:
        path = folder / f"{name}.parquet"
        if not path.is_file():
            raise DatasetError(f"{folder}: table {name}.parquet is missing")
        tables[name] = pd.read_parquet(path)
    if validate:
        tables = validate_tables(tables)
        actual = content_hash(tables)
        if actual != meta.get("content_hash"):
            raise DatasetError(f"{folder}: content hash does not match {META_FILE}; the tables were changed")
    return Dataset(**tables, meta=meta, path=folder)
