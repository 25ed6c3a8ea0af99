"""A release's published tables for ministries: CSV and XLSX, read from the release ledger only.

Every table a published report holds is in its ledger (:mod:`studylib.privacy.ledger`,
stored by the runner under ``<state>/<lineage>/published/<report>/``): its layout, which
cells are hidden, and the values published (rounded ones as rounded; otherwise the counts of
the persons the ledger holds, which are what the report shows). Nothing is counted again from
the data. Hidden cells show the study's symbol (from the report's manifest), with a note.

:func:`release_tables` finds the tables (one study's reports, or every published report);
:func:`table_grid` lays one out (rows by columns for one or two dimensions, one row per cell
for more); :func:`write_aggregates` writes ``OUT/`` atomically: ``aggregates.xlsx`` (a sheet
``About`` with the disclosure metadata, then one sheet a table with its caption and notes),
``csv/<n>.csv`` (one a table) and ``aggregates.json`` (the metadata of every table: report,
study, caption, method, settings, symbol, notes, file and sheet).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from studylib.data.vocabularies import label
from studylib.errors import StudylibError

TOTAL = "Total"
META_FILE = "aggregates.json"
XLSX_FILE = "aggregates.xlsx"


class AggregatesError(StudylibError):
    """Nothing to export, or a published report whose ledger is missing."""


@dataclass(frozen=True)
class PublishedTable:
    """One published table with the report's disclosure settings."""

    number: int
    entry: object  # studylib.privacy.ledger.LedgerEntry
    study: str
    title: str
    disclosure: dict

    @property
    def symbol(self) -> str:
        return str(self.disclosure.get("symbol") or "[c]")

    def method(self) -> str:
        if self.entry.deviation:
            return f"cell key method, every count perturbed by at most {self.entry.deviation}, Totals on their own"
        if self.entry.rounding:
            return f"controlled rounding to base {self.entry.rounding}, cells hidden where needed"
        return f"cell suppression (primary: counts 1 to {self.entry.min_cell - 1}"\
               + (" and zeros" if self.entry.zeros_disclosive else "") + "; secondary where needed)"

    def notes(self) -> list[str]:
        notes = [f"{self.symbol}: hidden to protect the persons counted (one symbol whatever the reason).",
                 f"Disclosure control: {self.method()}; minimum cell {self.entry.min_cell}; "
                 "protected together with every table of the release."]
        if self.entry.rounding:
            notes.append(f"Counts are rounded to base {self.entry.rounding} as published.")
        if self.entry.deviation:
            notes.append("Counts are perturbed as published: the same persons get the same number in every table, "
                         "and rows and columns need not add up.")
        return notes

    def metadata(self) -> dict:
        e = self.entry
        return {"table": self.number, "report": e.report, "study": self.study, "title": self.title, "caption": e.caption,
                "kind": e.kind, "dimensions": list(e.dims), "margins": e.margins, "method": self.method(),
                "settings": {"min_cell": e.min_cell, "rounding": e.rounding, "zeros_disclosive": e.zeros_disclosive,
                             **({"max_deviation": e.deviation, "cell_key": self.disclosure.get("cell_key")} if e.deviation else {}),
                             **{k: self.disclosure[k] for k in ("margins", "merge") if k in self.disclosure}},
                "symbol": self.symbol, "notes": self.notes(), "csv": f"csv/{self.number}.csv", "sheet": sheet_name(self.number)}


def sheet_name(number: int) -> str:
    return f"Table {number}"


def published_values(entry) -> np.ndarray:
    """The values the report shows, over the full layout (Totals last): None where hidden."""
    values = entry.counts() if entry.published is None else np.asarray(entry.published, dtype=np.int64).reshape(entry.full_shape)
    out = values.astype(object)
    out[entry.hidden_array()] = None
    return out


def _levels(entry) -> list[list[str]]:
    return [[str(label(x)) for x in level] + ([TOTAL] if entry.margins else []) for level in entry.labels]


def table_grid(entry, symbol: str) -> pd.DataFrame:
    """The table as readers get it: hidden cells as ``symbol``, codes as labels."""
    values = np.where(pd.isna(published_values(entry)), symbol, published_values(entry)).astype(object)
    levels = _levels(entry)
    if len(levels) == 1:
        return pd.DataFrame({entry.dims[0]: levels[0], "persons": values})
    if len(levels) == 2:
        grid = pd.DataFrame(values, columns=levels[1])
        grid.insert(0, f"{entry.dims[0]} / {entry.dims[1]}", levels[0])
        return grid
    index = pd.MultiIndex.from_product(levels, names=list(entry.dims)).to_frame(index=False)
    index["persons"] = values.ravel()
    return index


def release_tables(reports: Path, state: Path, study: str | None = None) -> list[PublishedTable]:
    """The tables of the published reports (of ``study``, or all), in report and table order."""
    from studylib.privacy.ledger import read_ledger
    from studylib.runner.release import Stored

    manifests = []
    for path in sorted(Path(reports).rglob("manifest.json")):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise AggregatesError(f"{path}: cannot read the report's manifest ({err})") from None
        if isinstance(manifest, dict) and "report" in manifest and (study is None or manifest.get("study") == study):
            manifests.append((path, manifest))
    if not manifests:
        what = f"study {study!r}" if study else "any study"
        raise AggregatesError(f"{reports}: no published report of {what}; run it first (`studylib run`)")
    tables = []
    for path, manifest in manifests:
        lineage = (manifest.get("release") or {}).get("lineage")
        ledger = Stored(Path(state) / str(lineage)).published(manifest["report"]) if lineage else None
        if ledger is None or not ledger.is_dir():
            raise AggregatesError(f"{path.parent}: the report's release ledger is not in {state}; run the study again "
                                  "(`studylib run --force`) so that its tables can be exported from the ledger")
        for entry in sorted(read_ledger(ledger), key=lambda e: _number(e.id)):
            tables.append(PublishedTable(len(tables) + 1, entry, manifest.get("study", ""), manifest.get("title", ""),
                                         dict(manifest.get("disclosure") or {})))
    return tables


def _number(table_id: str) -> int:
    tail = table_id.rsplit("#", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _write_xlsx(tables: list[PublishedTable], path: Path, about: dict) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = "About"
    sheet.append(["Published tables of a release, with their disclosure control"])
    sheet["A1"].font = Font(bold=True)
    for key in ("created", "selection"):
        sheet.append([key, about[key]])
    sheet.append([])
    sheet.append(["sheet", "report", "study", "caption", "method", "min cell", "rounding", "symbol"])
    for t in tables:
        m = t.metadata()
        sheet.append([m["sheet"], m["report"], m["study"], m["caption"], m["method"], m["settings"]["min_cell"],
                      m["settings"]["rounding"] or "", m["symbol"]])
    for t in tables:
        ws = book.create_sheet(sheet_name(t.number))
        ws.append([t.entry.caption or f"Table {t.number}"])
        ws["A1"].font = Font(bold=True)
        ws.append([f"Report: {t.title} ({t.entry.report})"])
        for note in t.notes():
            ws.append([note])
        ws.append([])
        grid = table_grid(t.entry, t.symbol)
        ws.append(list(grid.columns))
        for row in grid.itertuples(index=False):
            ws.append([x.item() if isinstance(x, np.generic) else x for x in row])
    book.save(path)


def write_aggregates(tables: list[PublishedTable], out: str | os.PathLike, selection: str) -> Path:
    """Write the tables to the folder ``out`` (replaced as a whole, never half-written)."""
    from studylib.data.atomic import replace_folder

    out = Path(out)
    if out.exists() and not (out / META_FILE).is_file():
        raise AggregatesError(f"{out}: the folder exists and is not an aggregates export; give a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    about = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "selection": selection}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "csv").mkdir()
        for t in tables:
            table_grid(t.entry, t.symbol).to_csv(tmp / "csv" / f"{t.number}.csv", index=False)
        _write_xlsx(tables, tmp / XLSX_FILE, about)
        meta = about | {"tables": [t.metadata() for t in tables]}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o755)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
