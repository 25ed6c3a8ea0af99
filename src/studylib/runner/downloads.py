"""A report's downloads: its tables as data (one XLSX workbook, one CSV a table), its figures as PNG and SVG.

What a reader downloads is what the page shows: every numbered exhibit of the executed
notebook (a safe table, a statistics table, a figure) is read back from its marked HTML
output, the same fragment the report page prints, so a hidden cell is the same symbol
(``[c]``) and every figure the same drawing. :func:`exhibits_of` reads them;
:func:`write_downloads` writes, into the report's staging folder,

- ``tables.xlsx``: a contents sheet (title, publisher, symbols, the list of tables) and one
  sheet a table (its title, its notes, then the table: row labels, then values, numbers as
  numbers);
- ``data/table-NN.csv``: each table on its own (one header row, then the rows);
- ``figures/figure-NN.png`` and ``.svg``: each drawn figure;
- ``datapackage.json``: a Frictionless data package describing every file, with each
  exhibit's safe marker, which the disclosure audit reads to check the files
  (:mod:`studylib.privacy.audit`): a data file the package does not describe is refused.

Which of these a study publishes is in its ``formats`` (``xlsx``, ``csv``, ``png``, ``svg``).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from studylib.privacy.marker import MARKER_ATTRIBUTE, MARKER_METADATA_KEY, parse_marker

#: The data package's file, beside the report.
PACKAGE = "datapackage.json"
WORKBOOK = "tables.xlsx"
DATA_FOLDER = "data"
FIGURE_FOLDER = "figures"
#: The formats a study may list for its downloads.
DOWNLOAD_FORMATS = ("xlsx", "csv", "png", "svg")
XLSX_MEDIATYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_NUMBER_TEXT = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")


@dataclass
class TableData:
    """One published table as the page shows it: strings, hidden cells as the symbol."""

    number: int
    caption: str
    marker: dict
    header: list[str]  # one name a column: row-label names, then value columns
    labels: int  # how many leading columns are row labels
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"Table {self.number}. {self.caption}" if self.caption else f"Table {self.number}."


@dataclass
class FigureData:
    """One published figure: the PNG the page shows and its SVG."""

    number: int
    caption: str
    marker: dict
    png: bytes | None
    svg: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"Figure {self.number}. {self.caption}" if self.caption else f"Figure {self.number}."


def cell_value(text: str) -> int | float | str:
    """A shown cell as data: ``1,234`` is 1234, ``0.25`` is 0.25; anything else (``[c]``, ``12.5 %``, words) stays text."""
    stripped = text.strip()
    if _NUMBER_TEXT.fullmatch(stripped):
        plain = stripped.replace(",", "")
        return float(plain) if "." in plain else int(plain)
    return text


# ---------------------------------------------------------------- reading the notebook


def exhibits_of(nb) -> list[TableData | FigureData]:
    """Every numbered exhibit a notebook's outputs show, in order (a re-shown exhibit once)."""
    found: dict[tuple[str, int], TableData | FigureData] = {}
    for cell in nb["cells"]:
        for output in cell.get("outputs") or []:
            data = output.get("data") or {}
            raw = (output.get("metadata") or {}).get(MARKER_METADATA_KEY)
            fragment = data.get("text/html")
            if raw is None or not fragment:
                continue
            fragment = "".join(fragment) if isinstance(fragment, list) else str(fragment)
            svg = data.get("image/svg+xml")
            svg = "".join(svg) if isinstance(svg, list) else svg
            for exhibit in _parse(fragment, svg):
                found.setdefault((type(exhibit).__name__, exhibit.number), exhibit)
    return sorted(found.values(), key=lambda e: (isinstance(e, FigureData), e.number))


class _Fragment(HTMLParser):
    """The exhibits of one marked HTML fragment (our own markup: exhibit.table_html, SafeFigure.to_html)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.exhibits: list[dict] = []
        self.current: dict | None = None
        self.row: list[tuple[str, str, int]] | None = None  # (tag, text, colspan)
        self.text: list[str] | None = None
        self.section = ""
        self.capture = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("table", "figure") and "data-studylib-number" in a:
            self.current = {"kind": tag, "number": int(a["data-studylib-number"]), "marker": a.get(MARKER_ATTRIBUTE),
                            "caption": "", "head": [], "body": [], "notes": [], "png": None}
            self.exhibits.append(self.current)
        elif self.current is None:
            return
        elif tag in ("thead", "tbody"):
            self.section = tag
        elif tag == "tr":
            self.row = []
        elif tag in ("th", "td") and self.row is not None:
            self.text, self.capture = [], tag
            self._colspan = int(a.get("colspan") or 1)
        elif tag in ("caption", "figcaption"):
            self.text, self.capture = [], "caption"
        elif tag == "p" and "note" in (a.get("class") or ""):
            self.text, self.capture = [], "note"
        elif tag == "img" and (a.get("src") or "").startswith("data:image/png;base64,"):
            self.current["png"] = base64.b64decode(a["src"].split(",", 1)[1])

    def handle_endtag(self, tag):
        if self.current is None:
            return
        if tag in ("th", "td") and self.capture == tag and self.row is not None:
            self.row.append((tag, "".join(self.text or []).strip(), self._colspan))
            self.text, self.capture = None, ""
        elif tag == "tr" and self.row is not None:
            self.current["head" if self.section == "thead" else "body"].append(self.row)
            self.row = None
        elif tag in ("caption", "figcaption") and self.capture == "caption":
            self.current["caption"] = "".join(self.text or []).strip()
            self.text, self.capture = None, ""
        elif tag == "p" and self.capture == "note":
            note = "".join(self.text or []).strip()
            if note:
                self.current["notes"].append(note)
            self.text, self.capture = None, ""
        elif tag in ("thead", "tbody"):
            self.section = ""

    def handle_data(self, data):
        if self.text is not None:
            self.text.append(data)


def _parse(fragment: str, svg: str | None) -> list[TableData | FigureData]:
    parser = _Fragment()
    parser.feed(fragment)
    parser.close()
    out: list[TableData | FigureData] = []
    for e in parser.exhibits:
        marker = parse_marker(e["marker"]) if e["marker"] else {}
        if e["kind"] == "figure":
            out.append(FigureData(e["number"], e["caption"], marker, e["png"], svg if e["png"] else None, e["notes"]))
            continue
        header, labels = _header(e["head"], e["body"])
        rows = [[text for _, text, _ in row] for row in e["body"]]
        out.append(TableData(e["number"], e["caption"], marker, header, labels, rows, e["notes"]))
    return out


def _header(head: list[list[tuple[str, str, int]]], body: list[list[tuple[str, str, int]]]) -> tuple[list[str], int]:
    """One name a column: the header rows' texts above it joined by `` / `` (a spanning group name first)."""
    labels = sum(1 for tag, _, _ in body[0] if tag == "th") if body else 0
    width = max([sum(span for _, _, span in row) for row in head + body] or [0])
    columns: list[list[str]] = [[] for _ in range(width)]
    for row in head:
        position = 0
        for _, text, span in row:
            for i in range(position, min(position + span, width)):
                if text and text not in columns[i]:
                    columns[i].append(text)
            position += span
    return [" / ".join(parts) for parts in columns], labels


# ---------------------------------------------------------------- writing the files


def write_downloads(stage: Path, exhibits: list[TableData | FigureData], formats, title: str, report: str,
                    release: dict[str, str] | None = None, symbol_note: str | None = None) -> list[str]:
    """Write the downloads the formats ask for into ``stage``; the files written (paths relative to it)."""
    wanted = [f for f in DOWNLOAD_FORMATS if f in formats]
    if not wanted:
        return []
    tables = [e for e in exhibits if isinstance(e, TableData)]
    figures = [e for e in exhibits if isinstance(e, FigureData) and e.png is not None]
    resources: list[dict[str, Any]] = []
    if "csv" in wanted:
        (stage / DATA_FOLDER).mkdir(exist_ok=True)
        for table in tables:
            if not table.rows:
                continue  # a withheld table: its note says why, in the workbook and on the page
            path = f"{DATA_FOLDER}/table-{table.number:02d}.csv"
            (stage / path).write_text(_csv_text(table), encoding="utf-8", newline="")
            resources.append(_table_resource(table, path, "csv", "text/csv"))
    if "xlsx" in wanted:
        sheets = _write_workbook(stage / WORKBOOK, tables, title, release or {}, symbol_note)
        resources.append({"name": "tables", "path": WORKBOOK, "format": "xlsx", "mediatype": XLSX_MEDIATYPE,
                          "title": f"{title}: every table", "studylib": {"sheets": sheets}})
    for figure in figures:
        for fmt, mediatype, content in (("png", "image/png", figure.png), ("svg", "image/svg+xml", figure.svg)):
            if fmt not in wanted or content is None:
                continue
            (stage / FIGURE_FOLDER).mkdir(exist_ok=True)
            path = f"{FIGURE_FOLDER}/figure-{figure.number:02d}.{fmt}"
            target = stage / path
            target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content, encoding="utf-8")
            resources.append({"name": f"figure-{figure.number:02d}-{fmt}", "path": path, "format": fmt, "mediatype": mediatype,
                              "title": figure.title, "description": " ".join(figure.notes),
                              "studylib": {"kind": "figure", "number": figure.number, "marker": figure.marker}})
    package = {"profile": "data-package", "name": re.sub(r"[^a-z0-9._-]+", "-", report.lower()), "title": title,
               **({"studylib": {"release": release}} if release else {}), "resources": resources}
    (stage / PACKAGE).write_text(json.dumps(package, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return [r["path"] for r in resources] + [PACKAGE]


def _table_resource(table: TableData, path: str, fmt: str, mediatype: str) -> dict:
    kinds = [_field_type([row[i] for row in table.rows if i < len(row)]) for i in range(len(table.header))]
    return {"name": f"table-{table.number:02d}", "path": path, "format": fmt, "mediatype": mediatype, "encoding": "utf-8",
            "title": table.title, "description": " ".join(table.notes),
            "schema": {"fields": [{"name": name, "type": kind} for name, kind in zip(table.header, kinds)]},
            "studylib": {"kind": "table", "number": table.number, "marker": table.marker, "labels": table.labels}}


def _field_type(texts: list[str]) -> str:
    values = [cell_value(t) for t in texts if t.strip()]
    if values and all(isinstance(v, int) for v in values):
        return "integer"
    if values and all(isinstance(v, (int, float)) for v in values):
        return "number"
    return "string"


def _csv_text(table: TableData) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([_cell_text(x) for x in table.header])
    for row in table.rows:
        writer.writerow([_cell_text(x) if i < table.labels else _csv_value(x) for i, x in enumerate(row)])
    return buffer.getvalue()


def _csv_value(text: str) -> str:
    """A number as shown, without thousands separators (``1,234.50`` is ``1234.50``); text as it is."""
    value = cell_value(text)
    return text.strip().replace(",", "") if isinstance(value, (int, float)) else _cell_text(text)


def _cell_text(text: str) -> str:
    """Text as a spreadsheet reads it safely: a leading ``= + - @`` cannot start a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _NUMBER_TEXT.fullmatch(text) else text


def _write_workbook(path: Path, tables: list[TableData], title: str, release: dict[str, str], symbol_note: str | None) -> list[dict]:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    book = Workbook()
    contents = book.active
    contents.title = "Contents"
    bold = Font(bold=True)
    lines: list[tuple[str, str]] = [(title, "")]
    lines += [(key, value) for key, value in release.items()]
    if symbol_note:
        lines.append(("Symbols", symbol_note))
    lines.append(("Tables", f"{len(tables)}, one a sheet; each sheet gives the table's title and notes above the table"))
    for key, value in lines:
        contents.append([_cell_text(key), _cell_text(value)])
    contents["A1"].font = Font(bold=True, size=14)
    contents.append([])
    contents.append(["Sheet", "Table"])
    contents.cell(contents.max_row, 1).font = bold
    contents.cell(contents.max_row, 2).font = bold
    sheets = []
    for table in tables:
        name = f"Table {table.number}"
        contents.append([name, _cell_text(table.title)])
        sheet = book.create_sheet(name)
        sheet.append([_cell_text(table.title)])
        sheet["A1"].font = Font(bold=True, size=12)
        for note in table.notes:
            sheet.append([_cell_text(note)])
        header_row = None
        if table.rows:
            sheet.append([_cell_text(x) for x in table.header])
            header_row = sheet.max_row
            for cell in sheet[header_row]:
                cell.font = bold
                cell.alignment = Alignment(wrap_text=True, vertical="top")
            for row in table.rows:
                sheet.append([_cell_text(x) if i < table.labels else _sheet_value(x) for i, x in enumerate(row)])
                for i, text in enumerate(row[table.labels:], table.labels + 1):
                    if fmt := number_format(text):
                        sheet.cell(sheet.max_row, i).number_format = fmt
            for number, cell in enumerate(sheet[header_row], 1):
                sheet.column_dimensions[cell.column_letter].width = 28 if number <= table.labels else 14
            sheet.freeze_panes = sheet.cell(header_row + 1, table.labels + 1)
        sheets.append({"sheet": name, "number": table.number, "marker": table.marker, "labels": table.labels,
                       "header_row": header_row})
    contents.column_dimensions["A"].width = 24
    contents.column_dimensions["B"].width = 100
    book.properties.creator = "studylib"
    book.properties.title = title
    book.save(path)
    return sheets


def number_format(text: str) -> str | None:
    """The spreadsheet format that shows a number as the page does (``1,234`` ``#,##0``; ``0.950`` ``0.000``)."""
    stripped = text.strip()
    if not _NUMBER_TEXT.fullmatch(stripped):
        return None
    decimals = len(stripped.split(".", 1)[1]) if "." in stripped else 0
    return ("#,##0" if "," in stripped else "0") + ("." + "0" * decimals if decimals else "")


def _sheet_value(text: str):
    value = cell_value(text)
    return value if isinstance(value, (int, float)) else _cell_text(text)
