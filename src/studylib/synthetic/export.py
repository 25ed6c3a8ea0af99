"""Writing raw form exports: one CSV or XLSX file per form, byte for byte reproducible.

Values arrive typed (see :mod:`studylib.synthetic.events`) and are spelled here as the form
catalogue's export rules and the file's dialect say: dates in the dialect's date format,
booleans in its spelling, decimals with its decimal mark, several codes joined by the
catalogue's separator. XLSX files hold typed cells (dates as date cells, numbers as numbers,
everything else as text; text that starts with ``=`` stays text, never a formula) and are
rewritten with fixed timestamps so the same data gives the same bytes.
"""

from __future__ import annotations

import codecs
import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from studylib.synthetic.messy import strip_accents
from studylib.synthetic.population import EPOCH

#: Timestamp written into XLSX files (document properties and zip entries).
FIXED_TIME = dt.datetime(2000, 1, 1, 0, 0, 0)
_FMT_TOKEN = re.compile(r"%[Ymd]|[^%]+")


L = pa.large_string()


def _scalar(text: str) -> pa.Scalar:
    return pa.scalar(text, L)


def values_and_mask(col) -> tuple[np.ndarray, np.ndarray]:
    """A typed column (numpy object array or pandas nullable array) as values and missing mask."""
    if isinstance(col, pa.Array):
        return col, np.asarray(col.is_null())
    if isinstance(col, pd.Series):
        col = col.array
    if isinstance(col, np.ndarray) and col.dtype != object:
        return col, np.zeros(col.shape[0], bool)
    if isinstance(col, np.ndarray):
        return col, np.equal(col, None)
    mask = np.asarray(col.isna())
    return col, mask


def _from_table(indices: np.ndarray, mask: np.ndarray, table) -> pa.Array:
    """Text by looking up ``indices`` in a small table of spellings (C++ dictionary decode)."""
    idx = pa.array(indices.astype(np.int32), mask=mask)
    return pa.DictionaryArray.from_arrays(idx, pa.array(table, type=L)).dictionary_decode()


def date_table(lo: int, hi: int, fmt: str) -> np.ndarray:
    """Text of every day from ``lo`` to ``hi`` (days since 1970) in ``fmt`` (``%Y %m %d``)."""
    iso = np.datetime_as_string(np.arange(lo, hi + 1) + EPOCH)
    parts = {"%Y": np.strings.slice(iso, 0, 4), "%m": np.strings.slice(iso, 5, 7), "%d": np.strings.slice(iso, 8, 10)}
    table = np.full(iso.shape, "", dtype="<U10")
    for token in _FMT_TOKEN.findall(fmt):
        table = np.strings.add(table, parts.get(token, token))
    return table


def spell_column(col, field, dialect) -> pa.Array:
    """One typed column as text in the dialect (nulls where missing)."""
    if isinstance(col, pa.Array):
        return col.cast(L)
    if isinstance(col, np.ndarray) and col.dtype == object and field.type not in ("date", "boolean", "integer", "decimal"):
        return pa.array(col, type=L, from_pandas=True)  # None is missing
    values, mask = values_and_mask(col)
    n = len(mask)
    if field.type == "date":
        days = np.asarray(values.to_numpy(dtype=np.int64, na_value=0) if not isinstance(values, np.ndarray) else values, dtype=np.int64)
        if n == 0 or mask.all():
            return pa.nulls(n, L)
        lo, hi = int(days[~mask].min()), int(days[~mask].max())
        return _from_table(np.where(mask, 0, days - lo), mask, date_table(lo, hi, dialect.date_format))
    if field.type == "boolean":
        flags = np.asarray(values.to_numpy(dtype=bool, na_value=False) if not isinstance(values, np.ndarray) else values, dtype=bool)
        return _from_table(flags.astype(np.int32), mask, [dialect.false, dialect.true])
    if field.type == "integer":
        ints = np.asarray(values.to_numpy(dtype=np.int64, na_value=0) if not isinstance(values, np.ndarray) else values, dtype=np.int64)
        return pc.cast(pa.array(ints, mask=mask), L)
    if field.type == "decimal":
        x = np.asarray(values.to_numpy(dtype=float, na_value=0.0) if not isinstance(values, np.ndarray) else values, dtype=float)
        cents = np.round(np.abs(x) * 100).astype(np.int64)
        whole = pc.cast(pa.array(cents // 100), L)
        frac = pc.utf8_lpad(pc.cast(pa.array(cents % 100), L), 2, "0")
        sign = pa.array(np.where(x < 0, "-", ""), type=L)
        text = pc.binary_join_element_wise(sign, whole, _scalar(dialect.decimal), frac, _scalar(""))
        return pc.if_else(pa.array(mask), pa.nulls(n, L), text)
    obj = np.asarray(values, dtype=object)
    return pa.array(obj, type=L, mask=mask, from_pandas=True)


def spell(columns: dict, fields, dialect) -> dict[str, pa.Array]:
    """Every field of a form as text in the dialect (codes are already joined by the separator)."""
    return {f.name: spell_column(columns[f.name], f, dialect) for f in fields}


def _quoted(arr: pa.Array, separator: str) -> pa.Array:
    needs = pc.fill_null(pc.match_substring_regex(arr, f"[{re.escape(separator)}\"\r\n]"), False)
    if not pc.any(needs).as_py():
        return arr
    quoted = pc.binary_join_element_wise(_scalar('"'), pc.replace_substring(arr, '"', '""'), _scalar('"'), _scalar(""))
    return pc.if_else(needs, quoted, arr)


def _header(names, separator: str) -> str:
    def q(name: str) -> str:
        return f'"{name}"' if any(ch in name for ch in (separator, '"', "\n", "\r")) else name
    return separator.join(q(n) for n in names)


def csv_parts(text: dict[str, pa.Array], dialect, free_text: set[str]) -> list:
    """The CSV file as UTF-8 buffers (header, body): one line per row, missing values empty,
    values of the ``free_text`` columns quoted when they hold the separator, a quote or a line
    break (codes, dates and numbers never do)."""
    names = list(text)
    parts: list = [(_header(names, dialect.separator) + dialect.line_end).encode("utf-8")]
    n = len(text[names[0]]) if names else 0
    if n:
        cols = []
        for c in names:
            arr = text[c]
            if c in free_text and arr.null_count < len(arr):
                arr = _quoted(arr, dialect.separator)
            cols.append(pc.fill_null(arr, _scalar("")) if arr.null_count else arr)
        rows = pc.binary_join_element_wise(*cols, _scalar(dialect.separator))
        rows = pc.binary_join_element_wise(rows, _scalar(dialect.line_end), _scalar(""))
        offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)[rows.offset: rows.offset + len(rows) + 1]
        parts.append(memoryview(rows.buffers()[2])[offsets[0]: offsets[-1]])
    return parts


def _fold(error: UnicodeEncodeError):
    """Encoding error handler: letters the target encoding lacks lose their accents."""
    from faker.decode import unidecode

    bad = error.object[error.start: error.end]
    fixed = []
    for ch in bad:
        alt = strip_accents(ch)
        try:
            alt.encode(error.encoding)
        except UnicodeEncodeError:
            alt = unidecode(ch)
        fixed.append(alt)
    return "".join(fixed), error.end


codecs.register_error("studylib_fold", _fold)


def write_csv(text: dict[str, pa.Array], path: Path, dialect, free_text: set[str]) -> None:
    """Write spelled values as CSV in the dialect (separator, encoding, line ends)."""
    parts = csv_parts(text, dialect, free_text)
    if dialect.encoding not in ("utf-8", "utf-8-sig"):
        parts = [b"".join(parts).decode("utf-8").encode(dialect.encoding, errors="studylib_fold")]
    elif dialect.encoding == "utf-8-sig":
        parts.insert(0, codecs.BOM_UTF8)
    with open(path, "wb") as f:
        for part in parts:
            f.write(part)


def _cells(columns: dict, fields, dialect) -> list[list]:
    """Column-wise Python values for XLSX cells (None where missing)."""
    cols = []
    for field in fields:
        column = columns[field.name]
        if isinstance(column, pa.Array):
            column = np.asarray(column.to_pylist(), dtype=object)
        values, mask = values_and_mask(column)
        plain = values if isinstance(values, np.ndarray) else None
        if field.type == "date":
            days = plain if plain is not None else values.to_numpy(dtype=np.int64, na_value=0)
            out = (np.asarray(days, dtype=np.int64) + EPOCH).astype("datetime64[D]").astype(object)
        elif field.type == "boolean":
            flags = plain if plain is not None else values.to_numpy(dtype=bool, na_value=False)
            out = np.where(np.asarray(flags, dtype=bool), dialect.true, dialect.false).astype(object)
        elif field.type == "integer":
            out = np.asarray(plain if plain is not None else values.to_numpy(dtype=np.int64, na_value=0), dtype=np.int64).astype(object)
        elif field.type == "decimal":
            out = np.asarray(plain if plain is not None else values.to_numpy(dtype=float, na_value=0.0), dtype=float).astype(object)
        else:
            out = np.asarray(values, dtype=object).copy()
        out[mask] = None
        cols.append(out.tolist())
    return cols


def write_xlsx(columns: dict, fields, path: Path, dialect, sheet: str) -> None:
    """Write typed values as an XLSX workbook with one sheet; reproducible bytes."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.writer.excel import ExcelWriter

    wb = Workbook(write_only=True)
    wb.properties.created = FIXED_TIME
    wb.properties.modified = FIXED_TIME
    wb.properties.creator = "studylib synth"
    ws = wb.create_sheet(sheet)
    ws.append([f.name for f in fields])
    cols = _cells(columns, fields, dialect)
    for row in zip(*cols) if cols else ():
        cells = []
        for v in row:
            if isinstance(v, str) and v.startswith("="):
                c = WriteOnlyCell(ws, value=v)
                c.data_type = "s"
                cells.append(c)
            else:
                cells.append(v)
        ws.append(cells)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(wb, archive).save()  # Workbook.save would stamp the current time
    path.write_bytes(_fixed_zip(buffer.getvalue()))


def _fixed_zip(data: bytes) -> bytes:
    """The same zip with fixed entry timestamps and permissions."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o600 << 16
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()
