"""Import a CTDC-style public file (or a studylib HTCDS export) into a studylib dataset.

One row of the file is one person. Two column sets are read (``htcds.yaml``):

- ``ctdc``: the Counter Trafficking Data Collaborative's public file (yearOfRegistration,
  gender, ageBroad, citizenship, majorityStatus, typeOfLabour* and is*Exploit flags,
  CountryOfExploitation);
- ``htcds``: our own case-level export (:mod:`studylib.exchange.htcds_export`), recognised by
  its ``cas_CaseID`` column; generalised or suppressed values come back as ``unknown``.

Every missing column and unknown code is collected first (file, row as in the file with the
header as row 1, column, value) and reported together in one :class:`ValidationError`; only a
file without problems is written, through :func:`studylib.data.write_dataset` (validated, then
renamed into place: nothing half-written). Each row gets a keyed person token (HMAC under the
centre's key of the file's hash and the row), so the audit runs at full strength on reports
made from the import; one contact event (``F03``, organisation ``ngo``: who registered is not in
the file) per person; the cases table is built from the row's values, the rest unknown.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from studylib.data import vocabularies as v
from studylib.data.schemas import CASE_COLUMNS
from studylib.errors import Problem, StudylibError, ValidationError
from studylib.exchange.codes import exchange_formats, export_code_map, group_labels

#: problems shown per column and rule before the rest are summed up in one line
SHOWN_PER_RULE = 100
_ISO2 = re.compile(r"^[A-Z]{2}$")
_MINOR_BANDS = {"0-14": True, "15-17": True, "0-17": True, "18-24": False, "25-34": False, "35-44": False,
                "45-54": False, "55+": False, "35-54": False, "18+": False}


class CtdcImportError(StudylibError):
    """The file cannot be read, or the output folder is not one to replace."""


@dataclass(frozen=True)
class ImportResult:
    """Where the dataset went and what the import made of the file (shares, no counts)."""

    dataset_dir: Path
    dialect: str
    outside_vocabulary: float  # share of rows whose citizenship is outside studylib's list (imported as XX)


class _Checks:
    """The problems of one file, collected column by column."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def missing(self, columns) -> None:
        self.problems += [Problem(where=self.file, rule="required column is missing", row=1, column=c) for c in columns]

    def bad(self, column: str, mask: np.ndarray, values: np.ndarray, rule: str) -> None:
        rows = np.flatnonzero(mask)
        for r in rows[:SHOWN_PER_RULE]:
            self.problems.append(Problem(where=self.file, rule=rule, row=int(r) + 2, column=column, value=values[r]))
        if len(rows) > SHOWN_PER_RULE:
            self.problems.append(Problem(where=self.file, rule=f"{rule}: {len(rows) - SHOWN_PER_RULE} more rows", column=column))


def read_table(path: Path) -> pd.DataFrame:
    """The file's cells as text (blank for empty), CSV or XLSX."""
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            frame = pd.read_excel(path, dtype=str).fillna("")
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise CtdcImportError(f"{path}: cannot be read as a CTDC file ({err})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.apply(lambda column: column.str.strip())


def dialect_of(frame: pd.DataFrame) -> str:
    return "htcds" if exchange_formats()["export"]["case_id"] in frame.columns else "ctdc"


def _mapped(checks: _Checks, frame: pd.DataFrame, column: str, codes: dict, rule: str) -> np.ndarray:
    values = frame[column].to_numpy(dtype=object)
    inverse, uniques = pd.factorize(values, use_na_sentinel=False)
    known = np.array([u in codes for u in uniques], dtype=bool)[inverse]
    checks.bad(column, ~known, values, rule)
    return np.array([codes.get(u) for u in uniques], dtype=object)[inverse]


def _years(checks: _Checks, frame: pd.DataFrame, column: str) -> np.ndarray:
    values = frame[column].to_numpy(dtype=object)
    years = pd.to_numeric(pd.Series(values), errors="coerce")
    good = years.notna() & (years == years.round()) & years.between(1990, 2100)
    checks.bad(column, ~good.to_numpy(), values, "not a year from 1990 to 2100 (a period or a blank cannot be imported)")
    return years.where(good).astype("Int64").to_numpy()


def _nationality(checks: _Checks, frame: pd.DataFrame, column: str, groups: set[str]) -> tuple[np.ndarray, float]:
    values = frame[column].to_numpy(dtype=object)
    series = pd.Series(values)
    known = series.isin(v.NATIONALITY)
    outside = series.str.fullmatch(_ISO2.pattern) & ~known
    blank = series.isin(["", *groups])
    checks.bad(column, ~(known | outside | blank).to_numpy(), values, "not an ISO 3166-1 alpha-2 code")
    unknown = exchange_formats()["ctdc"]["unknown_nationality"]
    return np.where(known, values, unknown).astype(object), float(outside.mean()) if len(series) else 0.0


def _flags(checks: _Checks, frame: pd.DataFrame, names: dict) -> dict[str, np.ndarray]:
    values = exchange_formats()["ctdc"]["flag_values"]
    return {name: _mapped(checks, frame, name, values, "not a 0/1 flag") == True  # noqa: E712 (object array)
            for name in names if name in frame.columns}


def _ctdc_values(checks: _Checks, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    spec = exchange_formats()["ctdc"]
    n = len(frame)
    checks.missing([c for c in spec["required"] if c not in frame.columns])
    out: dict[str, np.ndarray] = {}
    if "gender" in frame:
        out["sex"] = _mapped(checks, frame, "gender", spec["codes"]["gender"], "unknown gender code")
    if "ageBroad" in frame:
        out["age_band"] = _mapped(checks, frame, "ageBroad", spec["codes"]["ageBroad"], "unknown ageBroad code")
    if "majorityStatus" in frame:
        out["minor"] = _mapped(checks, frame, "majorityStatus", spec["codes"]["majorityStatus"], "unknown majorityStatus code")
    if "citizenship" in frame:
        out["nationality"], out["_outside"] = _nationality(checks, frame, "citizenship", set())
    if "yearOfRegistration" in frame:
        out["first_contact_year"] = _years(checks, frame, "yearOfRegistration")
    if "CountryOfExploitation" in frame:
        country = frame["CountryOfExploitation"].to_numpy(dtype=object)
        iso = pd.Series(country).str.fullmatch(_ISO2.pattern) | (pd.Series(country) == "")
        checks.bad("CountryOfExploitation", ~iso.to_numpy(), country, "not an ISO 3166-1 alpha-2 code")
        out["region"] = np.where((country == spec["home_country"]) | (country == ""), "unknown", "abroad").astype(object)
    labour = _flags(checks, frame, spec["labour_flags"])
    kinds = _flags(checks, frame, spec["exploitation_flags"])
    sector = np.full(n, "unknown", dtype=object)
    if labour:
        names = list(labour)
        stack = np.column_stack([labour[c] for c in names])
        several = stack.sum(axis=1)
        one = np.array([spec["labour_flags"][c] for c in names], dtype=object)[stack.argmax(axis=1)]
        sector = np.where(several == 1, one, np.where(several > 1, "other", sector))
    exploitation = np.full(n, "unknown", dtype=object)
    if kinds:
        forced, sexual, other = (kinds.get(c, np.zeros(n, dtype=bool)) for c in spec["exploitation_flags"])
        exploitation = np.select([forced & sexual, forced, sexual, other], ["mixed", "labour", "sexual", "other"], "unknown")
        sector = np.where((sector == "unknown") & sexual & ~forced, "prostitution", sector)
    out["sector"], out["exploitation"] = sector.astype(object), exploitation.astype(object)
    out["decision"] = np.full(n, spec["decision"], dtype=object)
    return out


def _htcds_values(checks: _Checks, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    fields = exchange_formats()["export"]["fields"]
    checks.missing([f for f in fields if f not in frame.columns])
    by_column = {column: field for field, column in fields.items() if field.startswith("sl_") or field.startswith("prs_")}
    by_column["decision"] = "vic_TraffickingStatus"
    out: dict[str, np.ndarray] = {}
    for column, field in by_column.items():
        if field not in frame.columns:
            continue
        groups = group_labels(field) if field in exchange_formats()["anonymity"]["quasi_identifiers"] else set()
        if column == "first_contact_year":
            out[column] = _years(checks, frame, field)
        elif column == "nationality":
            out[column], out["_outside"] = _nationality(checks, frame, field, groups)
        else:
            codes = export_code_map(column, field) or {c: c for c in v.vocabulary(column)}
            reverse = {htcds: ours for ours, htcds in codes.items()} | {g: "unknown" for g in groups} | \
                      ({"": "unknown"} if groups else {})
            out[column] = _mapped(checks, frame, field, reverse, f"unknown {field} code")
    if "age_band" in out and "sl_AgeBand" in frame:
        out["minor"] = frame["sl_AgeBand"].map(_MINOR_BANDS).to_numpy(dtype=object)
    return out


def import_tables(frame: pd.DataFrame, file: str, key, source: str) -> tuple[dict[str, pd.DataFrame], str, float]:
    """The dataset's four tables from the file's rows (``source``: the file's hash, for the person
    tokens); ValidationError with every problem found."""
    checks = _Checks(file)
    dialect = dialect_of(frame)
    values = (_htcds_values if dialect == "htcds" else _ctdc_values)(checks, frame)
    if checks.problems:
        raise ValidationError(checks.problems, summary=f"{file}: cannot import the {dialect} file")
    if not len(frame):
        raise ValidationError([Problem(where=file, rule="the file has no rows")], summary=f"{file}: cannot import")
    return cases_tables(values, len(frame), source, key), dialect, float(values.get("_outside", 0.0))


def cases_tables(values: dict[str, np.ndarray], n: int, source: str, key) -> dict[str, pd.DataFrame]:
    """persons, events (one contact each), indicators (none) and cases from per-row values."""
    spec = exchange_formats()["ctdc"]
    rows = pd.Series(np.arange(n)).astype(str)
    person = key.person_tokens("import:" + source + ":" + rows).to_numpy(dtype=object)
    year = pd.array(values["first_contact_year"], dtype="Int64")
    date = pd.to_datetime(pd.Series(year).astype(str) + "-01-01")
    age_band = values.get("age_band", np.full(n, "unknown", dtype=object))
    minor = values.get("minor")
    if minor is None:
        minor = pd.Series(age_band).map(_MINOR_BANDS).to_numpy(dtype=object)
    unknown = np.full(n, "unknown", dtype=object)
    persons = pd.DataFrame({"person_id": person, "sex": values.get("sex", unknown),
                            "birth_year": _no_numbers(n),
                            "nationality": values.get("nationality", np.full(n, "XX", dtype=object)),
                            "record_key": key.record_keys(person)})
    region = values.get("region", unknown)
    form = pd.Series([spec["form"]] * n)
    events = pd.DataFrame({"event_id": key.event_tokens(form, "import:" + source + ":" + rows).to_numpy(dtype=object),
                           "person_id": person, "form": spec["form"], "date": date.to_numpy(),
                           "organisation": spec["organisation"], "region": region})
    indicators = pd.DataFrame({"person_id": pd.Series([], dtype=str), "indicator": pd.Series([], dtype=str),
                               "event_id": pd.Series([], dtype=str)})
    cases = pd.DataFrame({
        "person_id": person, "sex": persons["sex"], "birth_year": persons["birth_year"], "nationality": persons["nationality"],
        "record_key": persons["record_key"],
        "region": region, "first_contact_date": date.to_numpy(), "first_contact_year": year,
        "age_at_first_contact": _no_numbers(n), "age_band": age_band,
        "minor": pd.array(minor, dtype="boolean"), "sector": values.get("sector", unknown),
        "exploitation": values.get("exploitation", unknown), "recruitment_channel": unknown,
        "referral_source": spec["organisation"],
        **{f"list_{o}": np.full(n, o == spec["organisation"]) for o in v.ORGANISATION},
        "n_lists": pd.array(np.ones(n, dtype=np.int64), dtype="Int64"),
        "decision": values.get("decision", np.full(n, "pending", dtype=object)),
        "decision_date": pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]"),
        "reflection_days": _no_numbers(n), "safe_house_days": _no_numbers(n),
        **{f"service_{s}": np.zeros(n, dtype=bool) for s in v.SERVICE},
        "outcome": pd.Series(np.full(n, None, dtype=object)), "research_consent": unknown,
    })
    return {"persons": persons, "events": events, "indicators": indicators, "cases": cases[list(CASE_COLUMNS)]}


def _no_numbers(n: int) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool))


def import_ctdc(file: str | os.PathLike, out: str | os.PathLike, key) -> ImportResult:
    """Read ``file``, check it whole, and write the dataset to ``out`` (a new folder or an older dataset)."""
    from studylib.data.dataset import write_dataset
    from studylib.data.meta import is_dataset

    file, out = Path(file), Path(out)
    if not file.is_file():
        raise CtdcImportError(f"{file}: no such file")
    if out.exists() and not is_dataset(out):
        raise CtdcImportError(f"{out}: the folder exists and is not a dataset; the import replaces a dataset as a whole, "
                           "so give a new folder or an older dataset")
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    tables, dialect, outside = import_tables(read_table(file), str(file), key, digest)
    made_by = {"tool": f"studylib import ctdc ({dialect} columns)", "source_sha256": digest, "key_fingerprint": key.fingerprint,
               "demo_key": bool(key.demo), "synthetic": False}
    write_dataset(tables, out, made_by=made_by)
    return ImportResult(out, dialect, outside)
