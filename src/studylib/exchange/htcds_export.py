"""Case-level export for research partners: the cases in HTCDS v2 field names, k-anonymous.

:func:`htcds_frame` turns the cases table into the export's columns (codes mapped as
``htcds.yaml`` says; persons who refused research use left out), :func:`export_cases` makes it
k-anonymous on the quasi-identifiers (:mod:`studylib.exchange.anonymity`), shuffles the rows
and gives every row a fresh random token (``cas_CaseID``, 128 bits from the system's random
source, never derived from the person token or the key), so that two exports cannot be joined
to each other or to the dataset. :func:`write_htcds_export` is the I/O edge: it reads a
dataset and writes ``FILE.csv`` and its metadata ``FILE.json`` (fields, k asked and achieved,
information lost) atomically.
"""

from __future__ import annotations

import binascii
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from studylib.errors import StudylibError
from studylib.exchange.anonymity import AnonymityResult, anonymise
from studylib.exchange.codes import exchange_formats, export_code_map, hierarchy

TOKEN_BYTES = 16


class ExportError(StudylibError):
    """An export cannot be made as asked (no persons left, a wrong output path, ...)."""


@dataclass(frozen=True)
class HtcdsExport:
    """The export's rows and what making them k-anonymous did."""

    frame: pd.DataFrame
    anonymity: AnonymityResult
    left_out_consent: float  # share of the cases left out because they refused research use

    def metadata(self) -> dict:
        formats = exchange_formats()
        return {
            "format": "HTCDS v2.0 field names (studylib extensions prefixed sl_)",
            "formats_version": formats["version"],
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "case_id": f"{formats['export']['case_id']}: a fresh random token per export and row; "
                       "it cannot be joined to another export or to the centre's data",
            "fields": list(self.frame.columns),
            "extensions": list(formats["export"]["extensions"]),
            "quasi_identifiers": list(self.anonymity.levels),
            "k": self.anonymity.k,
            "k_achieved": self.anonymity.k_achieved,
            "suppressed_value": "blank: the value was suppressed to reach k (a quasi-identifier only)",
            "information_loss": self.anonymity.information_loss()
            | {"left_out_refused_research_use_share": round(self.left_out_consent, 4)},
        }


def htcds_frame(cases: pd.DataFrame) -> pd.DataFrame:
    """The export's columns (without the case token) for every case, codes mapped to HTCDS.

    Every column is categorical (integer codes and their labels), so that recoding, shuffling
    and writing a million rows touch integers, not strings."""
    out = {}
    for field, column in exchange_formats()["export"]["fields"].items():
        codes, uniques = pd.factorize(cases[column], use_na_sentinel=False)
        shown = [str(u) for u in uniques] if column == "first_contact_year" else [u for u in uniques]
        mapping = export_code_map(column, field)
        if mapping is not None:
            shown = [mapping.get(u, u) for u in shown]
        merged, labels = pd.factorize(np.asarray(shown, dtype=object), use_na_sentinel=False)
        out[field] = pd.Categorical.from_codes(merged[codes] if len(codes) else codes, categories=pd.Index(labels, dtype=object))
    return pd.DataFrame(out, index=cases.index)


def random_tokens(n: int) -> pd.arrays.ArrowStringArray:
    """``n`` fresh random hex tokens (128 bits each) from the system's random source."""
    import pyarrow as pa

    width = 2 * TOKEN_BYTES
    raw = binascii.hexlify(os.urandom(TOKEN_BYTES * n))
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    tokens = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw)])
    return pd.arrays.ArrowStringArray(pa.chunked_array([tokens]))


def export_cases(cases: pd.DataFrame, k: int | None = None) -> HtcdsExport:
    """The k-anonymous export of ``cases`` (k default: ``htcds.yaml``'s), rows shuffled, fresh tokens."""
    formats = exchange_formats()
    settings = formats["anonymity"]
    k = int(settings["k"] if k is None else k)
    if k < 1:
        raise ExportError(f"k must be at least 1, not {k}")
    refused = cases["research_consent"].isin(formats["export"]["leave_out_consent"]).to_numpy()
    frame = htcds_frame(cases[~refused]).reset_index(drop=True)
    qis = {q: hierarchy(q) for q in settings["quasi_identifiers"]}
    result = anonymise(frame, qis, k, float(settings["max_suppressed"]), list(settings["suppress_order"]),
                       tuple(settings.get("recode_last", ())))
    kept = frame[result.keep].reset_index(drop=True)
    for q, values in result.columns.items():
        kept[q] = values
    if not len(kept):
        raise ExportError(f"no case can be exported with k = {k}: there are too few to make classes of {k}")
    order = np.random.default_rng(secrets.randbits(128)).permutation(len(kept))
    kept = kept.iloc[order].reset_index(drop=True)
    kept.insert(0, formats["export"]["case_id"], random_tokens(len(kept)))
    return HtcdsExport(kept, result, float(refused.mean()) if len(refused) else 0.0)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write text columns as CSV (blank for a suppressed value) under a temporary name, then rename.

    The file keeps the temporary's mode 600, as its metadata: case-level data go to a named partner."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pa.table({c: _text(frame[c]) for c in frame.columns})
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        pacsv.write_csv(table, temporary, pacsv.WriteOptions(quoting_style="needed"))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _text(column: pd.Series):
    import pyarrow as pa

    if isinstance(column.dtype, pd.CategoricalDtype):
        labels = pa.array([str(x) for x in column.cat.categories], pa.string())
        return pa.DictionaryArray.from_arrays(pa.array(column.cat.codes.to_numpy()), labels).cast(pa.string())
    return pa.array(column.astype(object).to_numpy() if column.dtype == object else column.array, pa.string())


def metadata_path(path: Path) -> Path:
    return path.with_suffix(".json")


def read_cases(data: Path) -> pd.DataFrame:
    """The columns of the dataset's cases table the export needs (the other tables are not read)."""
    from studylib.data.dataset import read_dataset
    from studylib.data.meta import DatasetError, read_meta
    from studylib.data.schemas import SCHEMA_VERSION

    meta = read_meta(data)
    if meta.get("schema_version") != SCHEMA_VERSION:
        read_dataset(data)  # says what is wrong with the dataset
    path = data / "cases.parquet"
    if not path.is_file():
        raise DatasetError(f"{data}: table cases.parquet is missing")
    needed = sorted({*exchange_formats()["export"]["fields"].values(), "research_consent"})
    return pd.read_parquet(path, columns=needed)


def write_htcds_export(data: str | os.PathLike, out: str | os.PathLike, k: int | None = None) -> tuple[Path, dict]:
    """Export the dataset at ``data`` to ``out`` (CSV) and ``out`` with ``.json`` (metadata)."""
    from studylib.data.atomic import write_file

    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise ExportError(f"{out}: the HTCDS export is a .csv file (its metadata goes beside it as .json)")
    if not out.parent.is_dir():
        raise ExportError(f"{out}: folder {out.parent} does not exist")
    if Path(data).resolve() in out.resolve().parents:
        raise ExportError(f"{out}: an export is for others; it is never written inside the dataset folder {data}")
    export = export_cases(read_cases(Path(data)), k)
    meta = export.metadata()
    write_file(metadata_path(out), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    write_csv(export.frame, out)
    return out, meta
