"""Writing raw form exports: one CSV or XLSX file per form, byte for byte reproducible.

Values arrive typed (see :mod:`studylib.synthetic.events`) and are spelled here as the form
catalogue's export rules and the file's dialect say: dates in the dialect's date format,
booleans in its spelling, decimals with its decimal mark, several codes joined by the
catalogue's separator. XLSX files hold typed cells (dates as date cells, numbers as numbers,
everything else as text; text that starts with ``=`` stays text, never a formula) and are
rewritten with fixed timestamps so the same data gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from studylib.synthetic.messy import encodable
from studylib.synthetic.population import EPOCH

#: Timestamp written into XLSX files (document properties and zip entries).
FIXED_TIME = dt.datetime(2000, 1, 1, 0, 0, 0)
_FMT_TOKEN = re.compile(r"%[Ymd]|[^%]+")


def _missing(series: pd.Series) -> np.ndarray:
    return series.isna().to_numpy()


def date_strings(days: np.ndarray, fmt: str) -> np.ndarray:
    """Days since 1970 to text in ``fmt`` (``%Y``, ``%m``, ``%d`` and separators), via a table
    of the distinct days (fast for millions of rows)."""
    days = np.asarray(days, dtype=np.int64)
    if days.size == 0:
        return np.zeros(0, dtype=object)
    lo, hi = int(days.min()), int(days.max())
    iso = np.datetime_as_string(np.arange(lo, hi + 1) + EPOCH)
    parts = {"%Y": np.strings.slice(iso, 0, 4), "%m": np.strings.slice(iso, 5, 7), "%d": np.strings.slice(iso, 8, 10)}
    table = np.full(iso.shape, "", dtype="<U10")
    for token in _FMT_TOKEN.findall(fmt):
        table = np.strings.add(table, parts.get(token, token))
    return table.astype(object)[days - lo]


def spell(frame: pd.DataFrame, fields, dialect, separator: str) -> pd.DataFrame:
    """The typed ``frame`` as text, one column per catalogue field (missing cells as None)."""
    out = {}
    for field in fields:
        col = frame[field.name]
        miss = _missing(col)
        if field.type == "date":
            values = np.full(len(col), None, dtype=object)
            if (~miss).any():
                values[~miss] = date_strings(col.to_numpy()[~miss].astype(np.int64), dialect.date_format)
        elif field.type == "boolean":
            values = np.where(col.to_numpy(dtype=bool, na_value=False), dialect.true, dialect.false).astype(object)
        elif field.type == "integer":
            values = col.to_numpy(dtype=np.int64, na_value=0).astype(str).astype(object)
        elif field.type == "decimal":
            values = np.char.mod("%.2f", col.to_numpy(dtype=float, na_value=0.0)).astype(object)
            if dialect.decimal == ",":
                values = np.char.replace(values.astype(str), ".", ",").astype(object)
        elif field.type == "codes":
            values = col.to_numpy(dtype=object)  # already joined by the catalogue's separator
        else:
            values = col.to_numpy(dtype=object)
        values = np.asarray(values, dtype=object).copy()
        values[miss] = None
        out[field.name] = values
    return pd.DataFrame(out)


def write_csv(text: pd.DataFrame, path: Path, dialect) -> None:
    """Write spelled values as CSV in the dialect (separator, encoding, line ends); None is empty."""
    frame = text.fillna("") if len(text) else text
    if dialect.encoding == "cp1252" and len(frame):
        frame = pd.DataFrame({c: encodable(frame[c], "cp1252") for c in frame.columns}, columns=list(frame.columns))
    data = frame.to_csv(index=False, sep=dialect.separator, lineterminator=dialect.line_end)
    path.write_bytes(data.encode(dialect.encoding))


def _cells(frame: pd.DataFrame, fields, dialect) -> list[list]:
    """Column-wise Python values for XLSX cells."""
    cols = []
    for field in fields:
        col = frame[field.name]
        miss = _missing(col)
        if field.type == "date":
            values = (col.to_numpy(dtype=np.int64, na_value=0) + EPOCH).astype("datetime64[D]").astype(object)
        elif field.type == "boolean":
            values = np.where(col.to_numpy(dtype=bool, na_value=False), dialect.true, dialect.false).astype(object)
        elif field.type == "integer":
            values = col.to_numpy(dtype=np.int64, na_value=0).astype(object)
        elif field.type == "decimal":
            values = col.to_numpy(dtype=float, na_value=0.0).astype(object)
        else:
            values = col.to_numpy(dtype=object).copy()
        values = np.asarray(values, dtype=object)
        values[miss] = None
        cols.append(values.tolist())
    return cols


def write_xlsx(frame: pd.DataFrame, fields, path: Path, dialect, sheet: str) -> None:
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
    cols = _cells(frame, fields, dialect)
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
