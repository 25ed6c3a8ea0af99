"""The output audit: a report is published only if nothing in it can identify a person.

:func:`audit_path` checks executed notebooks (``.ipynb``), HTML and PDF reports, a file or
every such file under a folder, and returns an :class:`AuditResult` with one
:class:`Finding` per problem (file, where, rule, a masked excerpt). Rules:

- structure (notebooks and HTML): every ``<table>`` and every figure (``<img>``, ``<svg>``,
  ``<canvas>``, ``<object>``, ``<embed>``, ``<video>``, ``<picture>``, ``<iframe>``, and
  notebook image outputs) carries the safe marker (:mod:`studylib.privacy.marker`) on
  itself or an element around it (``unmarked-table``, ``unmarked-figure``); a table
  printed as text (a pandas frame or Series in a stream, ``<pre>`` or ``text/plain``
  output, a Markdown pipe table) is ``unmarked-text-table``; a marker that cannot be read
  is ``bad-marker``, one with a lower minimum cell than the study's ``weak-marker``;
- small counts: a ``<td>`` of a marked table holding a whole number from 1 to
  ``min_cell - 1`` (in a rounded table: one that is not a multiple of the base; in a
  perturbed one, cell key method: a count 1..no_small, which perturbation never publishes);
- text anywhere (cell sources, outputs, tracebacks, captions, alt and title texts,
  notebook and cell metadata, PDF text and document info): personal data, the key,
  person tokens and deny-listed names (:mod:`studylib.privacy.personal_data`).

- strict content (study runs, ``strict=True``): a published report holds only the
  template's markdown and marked outputs. Any other output of a code cell (``print``, a
  plain display, Markdown, HTML or an image shown by hand, an error), whatever the numbers
  look like, is ``unmarked-output``, naming the cell and the output's first line. Catalogue
  text (rule ``catalogue``: a brief's checklist and referral steps) holding a number is
  ``unmarked-output`` too, in any run.

PDF text has no markup, so only the text rules apply to PDF; the HTML it was printed from
carries the structure and is audited too. Cells are counted from 1.

A report's downloads (:mod:`studylib.runner.downloads`: CSV and XLSX tables, PNG and SVG
figures) are audited against the ``datapackage.json`` beside them, which gives each file's
safe marker: a data file it does not describe is ``unmarked-table`` or ``unmarked-figure``;
every value cell of a table is checked as a ``<td>`` is (``small-count``), and every text
(labels, titles, notes, SVG text, the package itself) by the text rules.
"""

from __future__ import annotations

import json
import os
import re
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
import html
from pathlib import Path
from typing import Any

from studylib.errors import StudylibError
from studylib.privacy.denylist import DenyList
from studylib.privacy.marker import (MARKER_ATTRIBUTE, MARKER_METADATA_KEY, STANDALONE_NUMBER, MarkerError, min_cell_problem,
                                    parse_marker)
from studylib.privacy.personal_data import RULES as TEXT_RULES
from studylib.privacy.personal_data import TextScanner, strip_data_uris

#: A report's downloads, audited against its data package (PACKAGE_FILE).
DATA_SUFFIXES = (".csv", ".xlsx", ".svg", ".png")
SUFFIXES = (".ipynb", ".html", ".htm", ".pdf", *DATA_SUFFIXES)
PACKAGE_FILE = "datapackage.json"

RULES = {
    "unmarked-table": "table without the safe marker",
    "unmarked-figure": "figure without the safe marker",
    "unmarked-text-table": "table printed as text (show it with safe_table)",
    "small-count": "count below the minimum cell in a marked table",
    "bad-marker": "safe marker that cannot be read",
    "weak-marker": "safe marker with a lower minimum cell than the study's",
    "unmarked-output": "output that did not come from a safe table, figure, statistics table or sentence",
    **TEXT_RULES,
}

_IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml", "image/webp", "image/bmp", "application/pdf")
_FIGURE_TAGS = {"img", "svg", "canvas", "object", "embed", "video", "picture", "iframe"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_INTEGER = re.compile(r"\d{1,3}(?:[,\u00a0\u202f ]\d{3})+|\d+")
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?%?(?![\w])")
_PIPE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$")
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_INVALID = {"invalid": True}
_TAG = re.compile(r"""<!--(.*?)-->|<![^>]*>|<\?[^>]*>|<(/?)([A-Za-z][^\s/>]*)((?:[^>"']|"[^"]*"|'[^']*')*)>""", re.S)
_ATTR = re.compile(r"""([^\s/>"'=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?""")
_RAW_TEXT = {tag: re.compile(rf"</{tag}\s*>", re.I) for tag in ("script", "style", "title", "textarea")}
#: Attributes that name things for the page itself (random cell ids, CSS), not text for readers.
_MACHINE_ATTRIBUTES = {"id", "class", "style", "for", "headers", "aria-labelledby", "aria-describedby", "data-studylib-number"}


class AuditError(StudylibError):
    """The audit could not run: a path is missing, or a file cannot be read."""


@dataclass(frozen=True)
class Finding:
    """One problem: the file, where in it, the rule broken, and a masked excerpt."""

    file: str
    where: str
    rule: str
    detail: str = ""

    def __str__(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.file}: {self.where}: {RULES.get(self.rule, self.rule)}{detail}"

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "where": self.where, "rule": self.rule, "detail": self.detail}


@dataclass
class AuditResult:
    """The verdict on a report: the files audited, the findings, and what was checked."""

    files: list[str]
    findings: list[Finding] = field(default_factory=list)
    min_cell: int = 5
    key_checked: bool = False
    deny_list_checked: bool = False

    @property
    def passed(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        """For a manifest: masked findings only, never the text that was found."""
        return {
            "status": "passed" if self.passed else "failed",
            "files": list(self.files),
            "min_cell": self.min_cell,
            "key_checked": self.key_checked,
            "deny_list_checked": self.deny_list_checked,
            "counts": dict(Counter(f.rule for f in self.findings)),
            "findings": [f.as_dict() for f in self.findings],
        }


class Auditor:
    """The rules of one audit: the study's minimum cell, and optionally the key and deny list."""

    def __init__(self, min_cell: int = 5, key: bytes | None = None, deny_list: DenyList | None = None,
                 strict: bool = False) -> None:
        if problem := min_cell_problem(min_cell, "the minimum cell"):
            raise AuditError(problem)
        if deny_list is not None and key is None:
            raise AuditError("the deny list holds keyed hashes: give the key file too (--key-file)")
        self.min_cell = min_cell
        self.strict = strict
        self.scanner = TextScanner(key, deny_list)

    # ---------------------------------------------------------------- files

    def path(self, path: str | os.PathLike) -> AuditResult:
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _auditable(p))
            if not files:
                raise AuditError(f"{path}: no .ipynb, .html or .pdf file to audit")
        elif path.is_file():
            if not _auditable(path):
                raise AuditError(f"{path}: cannot audit a {path.suffix or 'suffix-less'} file (only {', '.join(SUFFIXES)})")
            files = [path]
        else:
            raise AuditError(f"{path}: no such file or folder")
        findings = []
        for file in files:
            findings += self.file(file, str(file))
        return AuditResult(
            [str(f) for f in files], findings, self.min_cell,
            bool(self.scanner.key), self.scanner.deny_list is not None,
        )

    def file(self, path: Path, name: str) -> list[Finding]:
        suffix = path.suffix.lower()
        if suffix == ".pdf":
            return self.pdf(path, name)
        if suffix in DATA_SUFFIXES:
            return self.download(path, name)
        if path.name == PACKAGE_FILE:
            return self._text(name, "data package", _read_text(path))
        text = _read_text(path)
        if suffix == ".ipynb":
            try:
                notebook = json.loads(text)
            except json.JSONDecodeError as err:
                raise AuditError(f"{path}: not a notebook (JSON error at line {err.lineno}: {err.msg})") from None
            return self.notebook(notebook, name)
        return self.html(text, name)

    # ---------------------------------------------------------------- notebooks

    def notebook(self, notebook: dict, name: str = "notebook.ipynb") -> list[Finding]:
        """Every cell's source, outputs (tracebacks included) and metadata, and the notebook's metadata."""
        if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
            raise AuditError(f"{name}: not a notebook (no list of cells)")
        out = self._text(name, "notebook metadata", _json_text(notebook.get("metadata", {})))
        number = 0
        for cell in notebook["cells"]:
            kind = cell.get("cell_type", "cell")
            injected = "injected-parameters" in (cell.get("metadata") or {}).get("tags", [])
            number += 0 if injected else 1  # cells are numbered as in the template papermill ran
            where = f"cell {number} ({kind})" if not injected else "the injected parameters cell"
            source = _joined(cell.get("source", ""))
            out += self._text(name, f"{where} source", source)
            if kind == "markdown":
                out += self._markdown(name, where, source)
            if kind in ("markdown", "raw") and "<" in source:
                out += self._html_structure(name, f"{where} source", source)
            for attachment in (cell.get("attachments") or {}):
                out.append(Finding(name, f"{where} attachment {attachment!r}", "unmarked-figure"))
            if cell.get("metadata"):
                out += self._text(name, f"{where} metadata", _json_text(cell["metadata"]))
            for index, output in enumerate(cell.get("outputs") or [], 1):
                out += self._output(name, f"{where} output {index}", output)
        return out

    def _output(self, name: str, where: str, output: dict) -> list[Finding]:
        kind = output.get("output_type")
        metadata = dict(output.get("metadata") or {})
        raw_marker = metadata.pop(MARKER_METADATA_KEY, None)
        out = self._text(name, f"{where} metadata", _json_text(metadata)) if metadata else []
        marker = None
        if raw_marker is not None:
            marker, problems = self._read_marker(raw_marker)
            out += [Finding(name, f"{where} metadata", rule, detail) for rule, detail in problems]
        if self.strict and (marker is None or marker is _INVALID or kind not in ("display_data", "execute_result")):
            out.append(Finding(name, where, "unmarked-output", _first_line(output)))
        elif detail := _catalogue_number(marker, _joined((output.get("data") or {}).get("text/plain", ""))):
            out.append(Finding(name, where, "unmarked-output", detail))
        if kind == "stream":
            text = _joined(output.get("text", ""))
            out += self._text(name, f"{where} ({output.get('name', 'stream')})", text)
            out += self._text_tables(name, f"{where} ({output.get('name', 'stream')})", text)
        elif kind == "error":
            text = "\n".join([str(output.get("ename", "")), str(output.get("evalue", ""))]
                             + [_ANSI.sub("", str(t)) for t in output.get("traceback") or []])
            out += self._text(name, f"{where} (error traceback)", text)
        elif kind in ("display_data", "execute_result"):
            data = output.get("data") or {}
            for mime, value in data.items():
                text = _joined(value) if isinstance(value, (str, list)) else _json_text(value)
                label = f"{where} ({mime})"
                if mime in _IMAGE_MIMES:
                    if marker is None and "text/html" not in data:
                        out.append(Finding(name, label, "unmarked-figure"))
                    if mime == "image/svg+xml":
                        out += self._text(name, label, text)
                    continue
                out += self._text(name, label, text)
                if mime == "text/html":
                    out += self._html_structure(name, label, text)
                elif mime == "text/plain" and marker is None and "text/html" not in data:
                    out += self._text_tables(name, label, text)
                elif mime == "text/markdown":
                    out += self._markdown(name, label, text)
        return out

    def _markdown(self, name: str, where: str, text: str) -> list[Finding]:
        out = []
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if _PIPE_RULE.match(line) and number > 1 and "|" in lines[number - 2]:
                out.append(Finding(name, f"{where} line {number - 1}", "unmarked-table", "Markdown table"))
            if _MD_IMAGE.search(line):
                out.append(Finding(name, f"{where} line {number}", "unmarked-figure", "Markdown image"))
        return out

    # ---------------------------------------------------------------- HTML

    def html(self, text: str, name: str = "report.html") -> list[Finding]:
        """Structure (markers, small counts) and text of an HTML page or fragment."""
        page = _Page(self, text)
        out = [Finding(name, f"line {line}{element}", rule, detail) for line, element, rule, detail in page.findings]
        out += self._chunks(name, page)
        return out

    def _html_structure(self, name: str, where: str, text: str) -> list[Finding]:
        """Structure findings of an HTML fragment inside a notebook (its text is scanned as text)."""
        page = _Page(self, text)
        return [Finding(name, f"{where} line {line}{element}", rule, detail) for line, element, rule, detail in page.findings]

    # ---------------------------------------------------------------- PDF

    def pdf(self, path: Path, name: str) -> list[Finding]:
        """The text rules on every page's text and on the document info."""
        try:
            from pypdf import PdfReader
            from pypdf.errors import PdfReadError
        except ImportError:  # pragma: no cover - pypdf is a dependency of the audit
            raise AuditError(f"{path}: auditing a PDF needs the pypdf package") from None
        try:
            reader = PdfReader(str(path))
            out = []
            info = reader.metadata or {}
            out += self._text(name, "document info", "\n".join(f"{k}: {v}" for k, v in info.items()))
            for number, page in enumerate(reader.pages, 1):
                out += self._text(name, f"page {number}", page.extract_text() or "")
        except (OSError, PdfReadError, ValueError) as err:
            raise AuditError(f"{path}: cannot read the PDF ({err})") from None
        return out

    # ---------------------------------------------------------------- downloads

    def download(self, path: Path, name: str) -> list[Finding]:
        """A CSV or XLSX table or a PNG or SVG figure of a report, with the marker its data package gives."""
        suffix = path.suffix.lower()
        package = _package_of(path)
        if suffix == ".xlsx":
            return self.workbook(path, name, package)
        resource = package.get(path.resolve())
        kind = "table" if suffix == ".csv" else "figure"
        out: list[Finding] = []
        marker = None
        if resource is not None:
            marker, problems = self._read_marker(resource.get("marker"))
            out += [Finding(name, "data package", rule, detail) for rule, detail in problems]
        if resource is None or resource.get("kind") != kind or marker is _INVALID:
            out.append(Finding(name, "file", f"unmarked-{kind}", f"no {kind} of the report's {PACKAGE_FILE} describes this file"))
        if suffix == ".png":
            return out
        text = _read_text(path)
        out += self._text(name, "text", text)
        if suffix == ".csv" and marker not in (None, _INVALID):
            import csv

            labels = int(resource.get("labels") or 0)
            for number, row in enumerate(csv.reader(text.splitlines()), 1):
                if number == 1:
                    continue  # the header
                for column, value in enumerate(row[labels:], labels + 1):
                    if detail := self._small_count(value, marker):
                        out.append(Finding(name, f"row {number} column {column}", "small-count", detail))
        return out

    def workbook(self, path: Path, name: str, package: dict) -> list[Finding]:
        """Every sheet's text, and the value cells of each table sheet against its marker."""
        try:
            from openpyxl import load_workbook

            book = load_workbook(path, read_only=True, data_only=True)
        except Exception as err:  # noqa: BLE001 - a file openpyxl cannot read cannot be audited
            raise AuditError(f"{path}: cannot read the workbook ({type(err).__name__}: {err})") from None
        resource = package.get(path.resolve()) or {}
        sheets = {s.get("sheet"): s for s in resource.get("sheets") or [] if isinstance(s, dict)}
        out: list[Finding] = []
        try:
            for sheet in book.worksheets:
                rows = [[_shown(cell) for cell in row] for row in sheet.iter_rows()]
                where = f"sheet {sheet.title!r}"
                out += self._text(name, where, "\n".join("\t".join(row) for row in rows))
                spec = sheets.get(sheet.title)
                if spec is None:
                    if sheet.title != "Contents" or not resource:
                        out.append(Finding(name, where, "unmarked-table", f"no sheet of the report's {PACKAGE_FILE} describes it"))
                    continue
                marker, problems = self._read_marker(spec.get("marker"))
                out += [Finding(name, f"{where} (data package)", rule, detail) for rule, detail in problems]
                if marker is _INVALID:
                    out.append(Finding(name, where, "unmarked-table", "its marker cannot be read"))
                    continue
                header, labels = spec.get("header_row"), int(spec.get("labels") or 0)
                for number, row in enumerate(rows, 1):
                    if header is None or number <= int(header):
                        continue
                    for column, value in enumerate(row[labels:], labels + 1):
                        if detail := self._small_count(value, marker):
                            out.append(Finding(name, f"{where} row {number} column {column}", "small-count", detail))
        finally:
            book.close()
        return out

    def _small_count(self, text: str, marker: dict) -> str | None:
        """Why a shown value is a small count under ``marker`` (None if it is not)."""
        text = text.strip()  # a whole number held as a float (1.0) is a statistic, as on the page
        if not _INTEGER.fullmatch(text):
            return None
        value = int(text) if text.isdigit() else int(re.sub(r"\D", "", text))
        if marker.get("rule") in ("cell_key", "statistics") and isinstance(marker.get("cell_key"), dict):
            # perturbed counts: small ones are noise, but 1..no_small never appear
            small = int(marker.get("cell_key", {}).get("no_small", 0))
            return f"{value} (a perturbed count is never 1 to {small})" if 1 <= value <= small else None
        minimum = max(self.min_cell, marker.get("min_cell", 0))
        if not 1 <= value <= minimum - 1:
            return None
        base = marker.get("rounding") if marker.get("rule") in ("rounding", "statistics") else None
        if base and value % base == 0:
            return None
        return f"{value} (minimum cell {minimum})"

    # ---------------------------------------------------------------- shared

    def _text(self, name: str, where: str, text: str) -> list[Finding]:
        if not text:
            return []
        text = strip_data_uris(text)
        matches = self.scanner.scan(text)
        if not matches:
            return []
        starts = [0] + [m.end() for m in re.finditer("\n", text)]
        return [Finding(name, f"{where} line {bisect_right(starts, m.start)}", m.rule, m.shown) for m in matches]

    def _chunks(self, name: str, page: "_Page") -> list[Finding]:
        """The text pieces of a page (text, comments, attribute values) scanned as one text."""
        texts = [strip_data_uris(t) for _, t in page.chunks]
        joined = "\n".join(texts)
        matches = self.scanner.scan(joined)
        if not matches:
            return []
        offsets, position = [], 0
        for t in texts:
            offsets.append(position)
            position += len(t) + 1
        out = []
        for m in matches:
            i = bisect_right(offsets, m.start) - 1
            line = page.line(page.chunks[i][0]) + texts[i].count("\n", 0, m.start - offsets[i])
            out.append(Finding(name, f"line {line}", m.rule, m.shown))
        return out

    def _text_tables(self, name: str, where: str, text: str) -> list[Finding]:
        return [Finding(name, f"{where} line {line}", "unmarked-text-table", detail) for line, detail in _text_tables(text)]

    def _read_marker(self, raw) -> tuple[dict, list[tuple[str, str]]]:
        try:
            marker = parse_marker(raw)
        except MarkerError as err:
            return _INVALID, [("bad-marker", str(err))]
        if marker["min_cell"] < self.min_cell:
            return marker, [("weak-marker", f"minimum cell {marker['min_cell']}, the study's is {self.min_cell}")]
        return marker, []


class _Page:
    """One pass over an HTML page or fragment: markers on tables and figures, counts in
    marked tables, text tables in ``<pre>``, and every piece of text with its offset.

    A small lexer (one regular expression for tags and comments; raw text of ``script``,
    ``style``, ``title`` and ``textarea`` taken whole) rather than ``html.parser``: it is
    several times faster on pages with tens of thousands of table cells.
    """

    def __init__(self, auditor: Auditor, text: str) -> None:
        self.auditor = auditor
        self.stack: list[tuple[str, dict | None]] = []
        self.tables: list[dict | None] = []
        self.cell: list[str] | None = None
        self.cell_at = 0
        self.pre: list[str] | None = None
        self.pre_at = 0
        self.figure_depth = 0
        self.findings: list[tuple[int, str, str, str]] = []
        self.chunks: list[tuple[int, str]] = []
        self._newlines = [0] + [m.end() for m in re.finditer("\n", text)]
        self._walk(text)

    def line(self, offset: int) -> int:
        return bisect_right(self._newlines, offset)

    def _walk(self, text: str) -> None:
        position, size = 0, len(text)
        while position < size:
            m = _TAG.search(text, position)
            if m is None:
                self._data(text[position:], position)
                return
            if m.start() > position:
                self._data(text[position:m.start()], position)
            comment, closing, name, attrs = m.groups()
            position = m.end()
            if comment is not None:
                self.chunks.append((m.start(1), comment))
            elif name is not None:
                tag = name.lower()
                if closing:
                    self._end(tag, m.start())
                    continue
                self._start(tag, attrs, m.start())
                if attrs.rstrip().endswith("/") and tag not in _VOID:
                    self._end(tag, m.start())
                elif tag in _RAW_TEXT:
                    close = _RAW_TEXT[tag].search(text, position)
                    stop = close.start() if close else size
                    self._data(text[position:stop], position)
                    if close is None:
                        return
                    self._end(tag, close.start())
                    position = close.end()

    def _context(self) -> dict | None:
        for _, marker in reversed(self.stack):
            if marker is not None:
                return marker
        return None

    def _start(self, tag: str, attrs: str, offset: int) -> None:
        marker = None
        if attrs.strip():
            for attr, double, single, bare in _ATTR.findall(attrs):
                value = double or single or bare
                if "&" in value:
                    value = html.unescape(value)
                attr = attr.lower()
                if attr == MARKER_ATTRIBUTE:
                    marker, problems = self.auditor._read_marker(value)
                    self.findings += [(self.line(offset), f" <{tag}>", rule, detail) for rule, detail in problems]
                elif value and attr not in _MACHINE_ATTRIBUTES:
                    self.chunks.append((offset, value))
        context = marker or self._context()
        if tag == "table":
            if context is None:
                self.findings.append((self.line(offset), " <table>", "unmarked-table", ""))
            self.tables.append(context)
        elif tag in _FIGURE_TAGS and self.figure_depth == 0 and context is None:
            self.findings.append((self.line(offset), f" <{tag}>", "unmarked-figure", ""))
        elif tag == "td" and self.tables and self.tables[-1] not in (None, _INVALID):
            self.cell, self.cell_at = [], offset
        elif tag == "pre" and context is None:
            self.pre, self.pre_at = [], offset
        if tag in _FIGURE_TAGS and tag not in _VOID:
            self.figure_depth += 1
        if tag not in _VOID:
            self.stack.append((tag, marker))

    def _end(self, tag: str, offset: int) -> None:
        if tag == "td" and self.cell is not None:
            self._check_count("".join(self.cell).strip())
            self.cell = None
        elif tag == "table" and self.tables:
            self.tables.pop()
        elif tag == "pre" and self.pre is not None:
            first = self.line(self.pre_at)
            for number, detail in _text_tables("".join(self.pre)):
                self.findings.append((first + number - 1, " <pre>", "unmarked-text-table", detail))
            self.pre = None
        if tag in _FIGURE_TAGS and tag not in _VOID and self.figure_depth:
            self.figure_depth -= 1
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def _data(self, raw: str, offset: int) -> None:
        text = html.unescape(raw) if "&" in raw else raw
        if not text.isspace():
            self.chunks.append((offset, text))
            if detail := _catalogue_number(self._context(), text):
                self.findings.append((self.line(offset), "", "unmarked-output", detail))
        if self.cell is not None:
            self.cell.append(text)
        if self.pre is not None:
            self.pre.append(text)

    def _check_count(self, text: str) -> None:
        if not _INTEGER.fullmatch(text):
            return
        if detail := self.auditor._small_count(text, self.tables[-1]):
            self.findings.append((self.line(self.cell_at), " <td>", "small-count", detail))


def _catalogue_number(marker, text: str) -> str | None:
    """Why a text under a ``catalogue`` marker may not be published (it holds a number), or None."""
    if isinstance(marker, dict) and marker.get("rule") == "catalogue" and (found := STANDALONE_NUMBER.search(text)):
        return f"catalogue text holding a number ({found.group()})"
    return None


def _shown(cell) -> str:
    """A workbook cell as a reader sees it: a number with the decimals its format shows (``1.00``, ``3``)."""
    value = getattr(cell, "value", None)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    fmt = str(getattr(cell, "number_format", "") or "")
    decimals = len(fmt.split(".", 1)[1].rstrip("%")) if "." in fmt else 0
    if decimals:
        return f"{value:.{decimals}f}"
    return str(int(value)) if float(value).is_integer() else str(value)


def _auditable(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES or path.name == PACKAGE_FILE


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise AuditError(f"{path}: cannot read ({err})") from None


def _package_of(path: Path) -> dict[Path, dict]:
    """The resources of the data package of a download (beside it or one folder up): file -> its entry.

    A table's or figure's entry is its ``studylib`` part (kind, marker, labels); the workbook's
    holds its ``sheets``. No package, or one that cannot be read: no entry (every file is unmarked).
    """
    for folder in (path.parent, path.parent.parent):
        package = folder / PACKAGE_FILE
        if not package.is_file():
            continue
        try:
            resources = json.loads(package.read_text(encoding="utf-8")).get("resources") or []
        except (OSError, ValueError, AttributeError):
            return {}
        out = {}
        for resource in resources:
            if isinstance(resource, dict) and isinstance(resource.get("path"), str) and isinstance(resource.get("studylib"), dict):
                out[(folder / resource["path"]).resolve()] = resource["studylib"]
        return out
    return {}


def _text_tables(text: str) -> list[tuple[int, str]]:
    """Where a text holds a table of numbers: 2+ neighbouring lines ending in the same number
    (2+) of numeric fields (a printed DataFrame), or 2+ 'label number' lines closed by a
    pandas ``dtype:`` line (a printed Series)."""
    found = []
    run_start, run_width, run_length = 0, 0, 0
    pairs_start, pairs = 0, 0
    for number, line in enumerate(text.split("\n"), 1):
        fields = line.split()
        width = 0
        while width < len(fields) and _NUMBER.fullmatch(fields[-1 - width]):
            width += 1
        if width >= 2 and width == run_width:
            run_length += 1
        else:
            run_start, run_width, run_length = number, width, 1
        if run_length == 2:
            found.append((run_start, "rows of numbers"))
        if "dtype:" in line and line.lstrip().startswith(("dtype:", "Name:")):
            if pairs >= 2:
                found.append((pairs_start, "a printed pandas Series"))
            pairs = 0
        elif width >= 1 and len(fields) > width:
            pairs_start = number if pairs == 0 else pairs_start
            pairs += 1
        else:
            pairs = 0
    return found


def _first_line(output: dict) -> str:
    """The first line of an output, as the finding names it (the text rules mask what they find)."""
    kind = output.get("output_type")
    if kind == "stream":
        text = _joined(output.get("text", ""))
    elif kind == "error":
        text = f"{output.get('ename', 'error')}: {output.get('evalue', '')}"
    else:
        data = output.get("data") or {}
        text = next((_joined(data[m]) for m in ("text/plain", "text/markdown", "text/html") if m in data),
                    ", ".join(sorted(data)) or kind or "output")
    line = next((x.strip() for x in str(text).splitlines() if x.strip()), "")
    return f"{kind}: {line[:80]}"


def _joined(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _json_text(value) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1, default=str)


def audit_path(
    path: str | os.PathLike,
    min_cell: int = 5,
    deny_list: DenyList | str | os.PathLike | None = None,
    key: bytes | str | os.PathLike | None = None,
    strict: bool = False,
) -> AuditResult:
    """Audit a report file or every ``.ipynb``, ``.html`` and ``.pdf`` under a folder.

    ``key`` is the key's bytes or its file; ``deny_list`` a :class:`DenyList` or its file
    (it needs the key); ``strict``: refuse every output that is not marked (study runs).

    ``path``: a file or a folder; ``min_cell``: counts from 1 to ``min_cell - 1`` are findings.

    Example::

        audit_path("reports/au_pair", min_cell=5, key="secret.key").passed
    """
    return _auditor(min_cell, deny_list, key, strict).path(path)


def audit_html(text: str, min_cell: int = 5, deny_list=None, key=None, name: str = "report.html") -> list[Finding]:
    """Findings in an HTML page held in memory.

    ``text``: the page; ``min_cell``: counts from 1 to ``min_cell - 1`` are findings;
    ``deny_list``, ``key``: as for :func:`audit_path`; ``name``: how findings name the page.

    Example::

        audit_html(Path("reports/au_pair/report.html").read_text(), min_cell=5)
    """
    return _auditor(min_cell, deny_list, key).html(text, name)


def audit_notebook(notebook, min_cell: int = 5, deny_list=None, key=None, name: str = "notebook.ipynb",
                   strict: bool = False) -> list[Finding]:
    """Findings in an executed notebook held in memory (a dict or ``nbformat.NotebookNode``).

    ``notebook``: the notebook; ``min_cell``, ``deny_list``, ``key`` and ``strict``: as for
    :func:`audit_path`; ``name``: how findings name the notebook.

    Example::

        audit_notebook(nbformat.read("run.ipynb", as_version=4), min_cell=5, strict=True)
    """
    return _auditor(min_cell, deny_list, key, strict).notebook(notebook, name)


def _auditor(min_cell, deny_list, key, strict: bool = False) -> Auditor:
    if key is not None and not isinstance(key, (bytes, bytearray)):
        from studylib.privacy.tokens import read_key

        key = read_key(key)
    if deny_list is not None and not isinstance(deny_list, DenyList):
        deny_list = DenyList.read(deny_list)
    return Auditor(min_cell, bytes(key) if key is not None else None, deny_list, strict)
