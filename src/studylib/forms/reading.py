"""Reading raw form exports: finding the files, their dialect, and values as text.

Owns everything about how a centre's database export is spelled: which files in a raw folder
are form exports (``F01_outreach.csv``; other kinds of file are ignored, a spreadsheet under
a name that is not a form's is an error), the encoding (UTF-8 with or without BOM, cp1252),
the delimiter, XLSX workbooks, and the spelling of dates (ISO and Danish), numbers (decimal
comma) and booleans. Every cell is read as text first; a cell that starts like a spreadsheet
formula (``=``, ``+``, ``-``, ``@``) is text too, never evaluated, and :func:`escape_formulas`
defuses it before anything is written back out.

Row numbers count the header as row 1, as a spreadsheet shows them (blank lines are not
counted; a quoted value that spans lines is one row).

A CSV file must end with a line break: a file that does not, or that ends inside a quoted
value, was cut off, and its last row is rejected (its last value may be cut short: a date
``2022-02-17`` cut to ``2022-02-1`` would otherwise be read as another date). The encoding
is decided per file: UTF-8 when the file holds UTF-8 text (with or without BOM), else cp1252.
Bytes that are not text in the file's encoding (a cp1252 row pasted into a UTF-8 file) are
not guessed at: those values are marked (:data:`NOT_TEXT`) and validation rejects exactly
those rows, naming the column.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from studylib.config import read_yaml
from studylib.errors import Problem, StudylibError
from studylib.data.form_catalogue import FormCatalogue

RULES_PATH = files("studylib.forms") / "validation_rules.yaml"

#: Delimiters tried on the header line, in order of preference on a tie.
DELIMITERS = (",", ";", "\t", "|")
#: A cell that a spreadsheet program would run as a formula starts with one of these.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: What a byte sequence that is not text in the file's encoding is read as.
NOT_TEXT = "\ufffd"


class ExportError(StudylibError):
    """A whole export file cannot be used (unreadable, wrong name, wrong columns, ...)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


@dataclass(frozen=True)
class ExportFile:
    """One form export found in a raw folder."""

    path: Path
    form: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Discovery:
    """What a raw folder holds: form exports, files ignored, and file-level problems."""

    exports: list[ExportFile] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class RawTable:
    """A form export read as text: one column per header name, every value a string."""

    path: Path
    frame: pd.DataFrame  # columns as in the file (names stripped, lower-cased), str dtype
    rows: np.ndarray  # the file row number of each frame row
    bad_rows: pd.DataFrame  # rows that could not be split into the header's columns: row, fields, text, truncated, reason
    encoding: str = "utf-8"
    delimiter: str | None = None
    warnings: list[Problem] = field(default_factory=list)
    not_text: bool = False  # some bytes were not text in the file's encoding (values hold NOT_TEXT)


@lru_cache(maxsize=1)
def ingest_rules() -> dict:
    """The ingest rules data file (which files to read or ignore, cross-field checks)."""
    return read_yaml(RULES_PATH, "ingest rules")


# -- finding the exports ----------------------------------------------------------------------


def discover_exports(raw_dir: str | Path, catalogue: FormCatalogue) -> Discovery:
    """The form exports at the top of ``raw_dir`` (subfolders such as ``truth/`` are not read)."""
    raw_dir = Path(raw_dir)
    rules = ingest_rules()["files"]
    found = Discovery()
    if not raw_dir.is_dir():
        found.problems.append(Problem(where=str(raw_dir), rule="raw folder not found"))
        return found
    pattern = re.compile(catalogue.export.file_pattern)
    by_form: dict[str, list[Path]] = {}
    for path in sorted(raw_dir.iterdir()):
        if path.is_dir() or path.name.startswith(tuple(rules["ignore_prefixes"])):
            continue
        suffix = path.suffix.lower()
        if suffix not in rules["export_suffixes"]:
            found.ignored.append(path)
            continue
        if suffix in rules["unsupported_suffixes"]:
            found.problems.append(Problem(where=str(path), rule=f"{suffix} workbooks are not read; save the sheet as .xlsx or .csv"))
            continue
        match = pattern.match(path.name)
        if not match:
            found.problems.append(Problem(
                where=str(path),
                rule="a spreadsheet here must be a form export named like F01_outreach.csv "
                     "(code and slug of the form catalogue); rename it or move it out of the raw folder",
            ))
            continue
        code, slug = match.group("code"), match.group("slug")
        expected = catalogue.form(code).slug
        if slug != expected:
            found.problems.append(Problem(where=str(path), rule=f"form {code} is called {code}_{expected}, not {code}_{slug}"))
            continue
        by_form.setdefault(code, []).append(path)
    for code, paths in sorted(by_form.items()):
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            found.problems.append(Problem(where=str(raw_dir), rule=f"two files for form {code} ({names}); keep one"))
            continue
        found.exports.append(ExportFile(path=paths[0], form=code))
    return found


# -- reading one export -------------------------------------------------------------------------


def read_export(path: str | Path) -> RawTable:
    """Read a CSV or XLSX export into text columns; raise ExportError if the file is unusable."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ExportError(Problem(where=str(path), rule=f"cannot read the file ({exc.strerror})")) from None
    if head.startswith(b"PK\x03\x04"):
        return _read_xlsx(path)
    return _read_csv(path)


def _read_csv(path: Path) -> RawTable:
    data = path.read_bytes()
    where = str(path)
    if not data.strip():
        raise ExportError(Problem(where=where, rule="the file is empty (not even a header line)"))
    text, encoding, not_text = _decode(data, where)
    header_line = text.split("\n", 1)[0].rstrip("\r")
    delimiter = _detect_delimiter(header_line)
    if delimiter is None:
        raise ExportError(Problem(where=where, row=1, rule="the first line is not a header of a form export "
                                  "(no column names separated by , ; tab or |)"))
    header = [_column_name(c) for c in _split_header(header_line, delimiter)]
    _check_header(header, where)
    body = data if encoding.startswith("utf-8") and not not_text else text.encode("utf-8")
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    bad: list[tuple] = []

    def on_invalid(row) -> str:
        bad.append((row.number, row.actual_columns, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(
                use_threads=False,  # row numbers of bad rows are only known single-threaded
                block_size=min(max(len(body) + 1, 1 << 20), (1 << 31) - 1),
                column_names=[f"c{i}" for i in range(len(header))],
                skip_rows=1,
            ),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={f"c{i}": pa.string() for i in range(len(header))},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise ExportError(Problem(where=where, rule=f"not readable as CSV ({str(exc).splitlines()[0]})")) from None
    frame = table.to_pandas()
    frame.columns = header
    bad_rows = _bad_rows(bad)
    rows = _row_numbers(len(frame), bad_rows["row"].dropna().to_numpy(dtype=np.int64))
    warnings = []
    if body.count(b'"') % 2 == 1:
        # the file ends inside a quoted value: its last row was cut off
        last_bad = int(bad_rows["row"].max()) if bad_rows["row"].notna().any() else 0
        last = None
        if last_bad and (not len(rows) or last_bad > rows[-1]):
            bad_rows.loc[bad_rows["row"] == last_bad, "truncated"] = True
            last = last_bad
        elif len(rows):
            last = int(rows[-1])
            text = delimiter.join(frame.iloc[-1].astype("str"))
            bad_rows = pd.concat([bad_rows, _bad_rows([(last, len(header), text)], truncated=True)], ignore_index=True)
            frame, rows = frame.iloc[:-1], rows[:-1]
        if last is not None:
            warnings.append(Problem(where=where, row=last, rule="the file ends inside a quoted value: the last row is truncated"))
    elif not body.endswith((b"\n", b"\r")):
        frame, rows, bad_rows = _cut_last_row(frame, rows, bad_rows, delimiter, len(header))
        if len(bad_rows) and bad_rows["reason"].notna().any():
            last = int(bad_rows.loc[bad_rows["reason"].notna(), "row"].max())
            warnings.append(Problem(where=where, row=last, rule=CUT_OFF))
    return RawTable(path=path, frame=frame.reset_index(drop=True), rows=rows, bad_rows=bad_rows,
                    encoding=encoding, delimiter=delimiter, warnings=warnings, not_text=not_text)


CUT_OFF = ("the file does not end with a line break: it was cut off, and its last row may be cut short "
           "(rejected; export the file again)")


def _cut_last_row(frame: pd.DataFrame, rows: np.ndarray, bad_rows: pd.DataFrame, delimiter: str, width: int):
    """The last row of a file without a final line break, moved to the bad rows (or marked there)."""
    last_bad = int(bad_rows["row"].max()) if bad_rows["row"].notna().any() else 0
    if last_bad and (not len(rows) or last_bad > rows[-1]):
        bad_rows.loc[bad_rows["row"] == last_bad, "reason"] = CUT_OFF
    elif len(rows):
        text = delimiter.join(frame.iloc[-1].astype("str"))
        cut = _bad_rows([(int(rows[-1]), width, text)])
        cut["reason"] = CUT_OFF
        bad_rows = pd.concat([bad_rows, cut], ignore_index=True)
        frame, rows = frame.iloc[:-1], rows[:-1]
    return frame, rows, bad_rows


def _bad_rows(rows: list[tuple], truncated: bool = False) -> pd.DataFrame:
    """Rows that could not be split into the header's columns: row number, fields found, text,
    whether the file ends inside the row's quoted value, and a reason (None: the field count)."""
    out = pd.DataFrame(rows, columns=["row", "fields", "text"]).astype({"row": "Int64", "fields": "Int64", "text": "str"})
    out["truncated"] = truncated
    out["reason"] = pd.Series([None] * len(out), dtype=object)
    return out


def _decode(data: bytes, where: str) -> tuple[str, str, bool]:
    """Text of a CSV file, its encoding (UTF-8 with or without BOM, or cp1252) and whether some
    bytes were not text in it (read as :data:`NOT_TEXT`); binary content is refused.

    A file that is not valid UTF-8 is still UTF-8 when it holds UTF-8 sequences of non-ASCII
    letters (``ø`` as two bytes): then the few rows that are not (pasted in cp1252) are the
    damaged ones, not the whole file."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ExportError(Problem(where=where, rule="the file is UTF-16; export it as UTF-8 or cp1252"))
    sample = data[:65536]
    controls = sum(sample.count(bytes([b])) for b in range(32) if b not in (9, 10, 13))
    if b"\x00" in sample or controls > max(8, len(sample) // 200):
        raise ExportError(Problem(where=where, rule="binary content: not a CSV text file (is it damaged, or another kind of file?)"))
    if data.startswith(b"\xef\xbb\xbf"):
        encoding = "utf-8-sig"
    else:
        encoding = "utf-8"
    try:
        return data.decode(encoding), encoding, False
    except UnicodeDecodeError:
        pass
    if holds_utf8_sequences(data):
        return data.decode(encoding, errors="replace"), encoding, True
    try:
        return data.decode("cp1252"), "cp1252", False
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), "cp1252", True


def holds_utf8_sequences(data: bytes) -> bool:
    """Whether ``data`` holds a UTF-8 sequence of a non-ASCII character (a lead byte C2..F4 followed
    by its continuation bytes 80..BF: ``ø`` as C3 B8), found with numpy over the bytes at once."""
    b = np.frombuffer(data, dtype=np.uint8)
    at = np.flatnonzero(b >= 0xC2)
    if not len(at):
        return False
    padded = np.concatenate([b, np.zeros(3, dtype=np.uint8)])

    def continues(k: int) -> np.ndarray:
        follower = padded[at + k]
        return (follower >= 0x80) & (follower <= 0xBF)

    lead = b[at]
    first = continues(1)
    two = (lead <= 0xDF) & first
    three = (lead >= 0xE0) & (lead <= 0xEF) & first & continues(2)
    four = (lead >= 0xF0) & (lead <= 0xF4) & first & continues(2) & continues(3)
    return bool((two | three | four).any())


def _column_name(raw: str) -> str:
    return raw.strip().strip('"').strip().lower()


def _split_header(line: str, delimiter: str) -> list[str]:
    import csv

    return next(csv.reader([line], delimiter=delimiter))


def _detect_delimiter(header_line: str) -> str | None:
    """The delimiter that splits the header into the most plausible column names."""
    name = re.compile(r"^[a-z][a-z0-9_]*$")
    best, best_score = None, 1
    for delimiter in DELIMITERS:
        parts = [_column_name(p) for p in _split_header(header_line, delimiter)] if header_line else []
        score = sum(bool(name.match(p)) for p in parts)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _check_header(header: list[str], where: str) -> None:
    empty = [i + 1 for i, c in enumerate(header) if not c]
    if empty:
        raise ExportError(Problem(where=where, row=1, rule=f"header has empty column name(s) at position(s) {empty}"))
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise ExportError(Problem(where=where, row=1, column=dup[0], rule=f"column(s) named twice in the header: {', '.join(dup)}"))


def _row_numbers(n: int, bad: np.ndarray) -> np.ndarray:
    """File row numbers of the ``n`` good rows, given the row numbers of the skipped bad rows."""
    total = n + len(bad)
    numbers = np.arange(2, total + 2, dtype=np.int64)
    if len(bad):
        numbers = numbers[~np.isin(numbers, bad)]
    return numbers[:n]


def _read_xlsx(path: Path) -> RawTable:
    import zipfile

    from openpyxl import load_workbook

    where = str(path)
    try:
        book = load_workbook(path, read_only=True, data_only=False)  # formulas stay text, never evaluated
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ExportError(Problem(where=where, rule=f"not a readable XLSX workbook ({exc})")) from None
    try:
        sheet = book.worksheets[0]
        rows_iter = sheet.iter_rows(values_only=True)
        header_cells = next(rows_iter, None)
        if header_cells is None or all(c is None for c in header_cells):
            raise ExportError(Problem(where=where, rule="the first sheet is empty (not even a header row)"))
        width = max(i + 1 for i, c in enumerate(header_cells) if c is not None)
        header = [_column_name(_cell_text(c)) for c in header_cells[:width]]
        _check_header(header, where)
        records, numbers, bad = [], [], []
        for number, cells in enumerate(rows_iter, start=2):
            texts = [_cell_text(c) for c in cells]
            if not any(texts):
                continue
            extra = [t for t in texts[width:] if t]
            if extra:
                bad.append((number, width + len(extra), "\t".join(texts)))
                continue
            texts = (texts + [""] * width)[:width]
            records.append(texts)
            numbers.append(number)
        warnings = []
        if len(book.worksheets) > 1:
            warnings.append(Problem(where=where, rule=f"only the first sheet ({sheet.title!r}) is read; the workbook has {len(book.worksheets)}"))
    finally:
        book.close()
    frame = pd.DataFrame(records, columns=header, dtype="str") if records else pd.DataFrame({c: pd.Series([], dtype="str") for c in header})
    return RawTable(path=path, frame=frame, rows=np.asarray(numbers, dtype=np.int64), bad_rows=_bad_rows(bad),
                    encoding="xlsx", delimiter=None, warnings=warnings)


def _cell_text(value) -> str:
    """A workbook cell as the text an export would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


# -- values ---------------------------------------------------------------------------------------


def on_distinct(values: pd.Series, compute, dtype: str | None = "str") -> pd.Series:
    """``compute`` (vectorised) on the distinct values only, spread back to every row (missing stays missing).

    Raw exports repeat the same dates, codes and names many times; ingest parses, checks and
    normalises each distinct value once. ``compute`` gets the distinct values as a Series
    (of ``dtype``) and returns one result per position.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    done = compute(pd.Series(uniques, dtype=dtype))
    return pd.Series(done.array.take(codes, allow_fill=True), index=values.index, name=values.name)


def parse_dates(values: pd.Series, formats) -> pd.Series:
    """Dates in any of ``formats`` (ISO, Danish dd-mm-yyyy, ...); NaT where none fits or the date is impossible."""

    def parse(u: pd.Series) -> pd.Series:
        out = pd.Series(pd.NaT, index=u.index, dtype="datetime64[ns]")
        for fmt in formats:
            todo = out.isna()
            if not todo.any():
                break
            out[todo] = pd.to_datetime(u[todo], format=fmt, errors="coerce").astype("datetime64[ns]")
        return out

    return on_distinct(values, parse)


def parse_decimal(values: pd.Series) -> pd.Series:
    """Numbers with a decimal point or a Danish decimal comma (``1.234,50``); NA where not a number.

    When both marks occur the last one is the decimal mark; a lone comma is a decimal comma;
    a mark that occurs several times groups thousands."""

    def parse(u: pd.Series) -> pd.Series:
        s = u.str.replace(" ", "", regex=False)
        shaped = s.str.fullmatch(r"[+-]?\d[\d.,]*", na=False) & ~s.str.contains(r"[.,]$", na=False)
        commas, points = s.str.count(","), s.str.count(r"\.")
        last = s.str.extract(r"([.,])\d*$", expand=False)
        decimal_comma = (commas == 1) & ((points == 0) | (last == ","))
        points_group = decimal_comma | (points > 1)
        plain = s.where(~points_group, s.str.replace(".", "", regex=False))
        plain = plain.where(points_group, plain.str.replace(",", "", regex=False))
        plain = plain.str.replace(",", ".", regex=False)
        return pd.to_numeric(plain.where(shaped), errors="coerce").astype("Float64")

    return on_distinct(values, parse)


def parse_integer(values: pd.Series) -> pd.Series:
    """Whole numbers (``12``, ``+3``, ``12.0`` from a workbook); NA where not a whole number."""

    def parse(u: pd.Series) -> pd.Series:
        s = u.str.replace(r"\.0+$", "", regex=True)
        ok = s.str.fullmatch(r"[+-]?\d{1,15}", na=False)
        return pd.to_numeric(s.where(ok), errors="coerce").astype("Int64")

    return on_distinct(values, parse)


def parse_boolean(values: pd.Series, spellings: dict) -> pd.Series:
    """yes/no in the catalogue's spellings (case-insensitive); NA where neither."""
    lookup = {str(s).lower(): bool(flag) for flag, words in spellings.items() for s in words}

    def parse(u: pd.Series) -> pd.Series:
        return u.str.lower().map(lookup).astype("boolean")

    return on_distinct(values, parse)


def escape_formula_text(text: str) -> str:
    """One text (a value or a column name) as :func:`escape_formulas` writes it: ``'`` before a
    formula start; control characters and line breaks of a name shown as ``?``."""
    escaped = "'" + text if text.startswith(FORMULA_STARTS) else text
    return re.sub(r"[\x00-\x1f\x7f]", "?", escaped)


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy in which every text cell that a spreadsheet would run as a formula starts with ``'``."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype) in ("str", "string"):
            s = out[column].astype("str")
            risky = s.str.startswith(FORMULA_STARTS, na=False)
            if risky.any():
                out[column] = s.where(~risky, "'" + s)
    return out
