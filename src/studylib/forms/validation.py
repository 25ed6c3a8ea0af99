"""Validation of raw form exports against the form catalogue (and ``validation_rules.yaml``).

What a form holds is declared in ``studylib/data/form_catalogue.yaml``; the rules across fields and files in
``validation_rules.yaml``. This module checks a :class:`~studylib.forms.reading.RawTable`
column by column (each check runs once per distinct value, vectorised), collects every
problem (file, row, column, value, rule) instead of stopping at the first, and splits the
rows into accepted rows with typed values and rejected rows for the quarantine.

The value of a personal field (and the database's record id) is never put into a problem:
problems end up in reports and on screens; the quarantine file in the raw area is where the
rows themselves can be looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from studylib.errors import Problem
from studylib.data.form_catalogue import FormCatalogue, FormField, form_catalogue
from studylib.forms.reading import (
    NOT_TEXT,
    ExportError,
    RawTable,
    ingest_rules,
    on_distinct,
    parse_boolean,
    parse_dates,
    parse_decimal,
    parse_integer,
)

#: Columns of a problems table.
PROBLEM_COLUMNS = ("file", "row", "column", "rule", "value")
#: Extra column of the typed values: the birth date that a valid CPR number tells.
CPR_BIRTH_DATE = "cpr_birth_date"
#: How a personal value shows in a problem.
_NOT_SHOWN = None


@dataclass
class ValidatedExport:
    """One export after validation."""

    form: str
    file: str
    values: pd.DataFrame  # accepted rows, typed catalogue columns (+ cpr_birth_date)
    rows: np.ndarray  # file row number of each accepted row
    rejected: pd.DataFrame  # rejected rows as read (text): _row, _problems, file columns, _text
    problems: pd.DataFrame  # PROBLEM_COLUMNS
    warnings: list[Problem] = field(default_factory=list)
    n_read: int = 0


def empty_problems() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype="object") for c in PROBLEM_COLUMNS})


def problems_frame(file: str, rows, column: str | None, rule: str, values=None) -> pd.DataFrame:
    """A problems table for several rows failing one rule (``values`` None when not shown)."""
    rows = np.asarray(rows)
    shown = [None] * len(rows) if values is None else [None if pd.isna(v) else str(v)[:100] for v in values]
    return pd.DataFrame({"file": file, "row": rows.astype(object), "column": column, "rule": rule, "value": shown},
                        columns=list(PROBLEM_COLUMNS))


def as_problems(frame: pd.DataFrame, limit: int | None = None) -> list[Problem]:
    """Problems of a problems table, for messages (first ``limit``)."""
    frame = frame if limit is None else frame.head(limit)
    return [
        Problem(where=r.file, rule=r.rule, row=None if pd.isna(r.row) else int(r.row),
                column=None if pd.isna(r.column) else r.column, value=r.value)
        for r in frame.itertuples(index=False)
    ]


# -- the columns of a file --------------------------------------------------------------------------


def check_columns(raw: RawTable, form: str, catalogue: FormCatalogue) -> list[Problem]:
    """Raise ExportError when required columns are missing (naming the form whose columns these are);
    return warnings for unexpected columns (ignored) and missing optional ones (read as empty)."""
    where = str(raw.path)
    header = list(raw.frame.columns)
    fields = catalogue.fields_of(form)
    names = {f.name for f in fields}
    missing_required = [f.name for f in fields if f.required and f.name not in header]
    if missing_required:
        other = _form_of_columns(header, catalogue, exclude=form)
        if other is not None:
            raise ExportError(Problem(
                where=where, row=1,
                rule=f"the columns are those of form {other} ({catalogue.form(other).title}), not of {form}: "
                     f"is the file misnamed? ({catalogue.file_name(other)} expected for them)",
            ))
        raise ExportError(Problem(
            where=where, row=1, column=missing_required[0],
            rule=f"required column(s) missing for form {form}: {', '.join(missing_required)}",
        ))
    warnings = []
    for name in header:
        if name not in names:
            warnings.append(Problem(where=where, row=1, column=name, rule=f"column is not a field of form {form}: ignored (not read)"))
    for f in fields:
        if f.name not in header:
            warnings.append(Problem(where=where, row=1, column=f.name, rule="optional column missing: read as empty"))
    return warnings


def _form_of_columns(header: list[str], catalogue: FormCatalogue, exclude: str) -> str | None:
    """Another form whose required own fields are all in the header (the best such), if any."""
    best, best_score = None, 0
    for f in catalogue.forms:
        if f.code == exclude:
            continue
        own = {x.name for x in f.fields}
        required = {x.name for x in f.fields if x.required}
        if required <= set(header):
            score = len(own & set(header))
            if score > best_score:
                best, best_score = f.code, score
    return best


# -- values ----------------------------------------------------------------------------------------------


def _text(values: pd.Series, missing: tuple[str, ...]) -> pd.Series:
    """Stripped text with the catalogue's spellings of 'missing' turned into NA."""
    s = values.astype("str").str.strip()
    lowered = {m.lower() for m in missing}
    return s.mask(s.str.lower().isin(lowered) | s.isna())


def _normalise_text(name: str, s: pd.Series) -> pd.Series:
    steps = ingest_rules().get("text_normalisation", {}).get(name, [])
    for step in steps:
        if step == "upper":
            s = s.str.upper()
        elif step == "no_spaces":  # spelled out: with \s pandas falls back to Python per value
            s = s.str.replace("[ \t\r\n\u00a0]+", "", regex=True)
        elif step == "no_hyphens":
            s = s.str.replace("-", "", regex=False)
        elif step == "digits_only":
            s = s.str.replace(r"\D+", "", regex=True)
        else:
            raise ValueError(f"validation_rules.yaml: text_normalisation of {name}: unknown step {step!r}")
    return s


def _spread(values: pd.Series, codes: np.ndarray) -> pd.Series:
    """Per-row values from per-distinct-value ``values`` (code -1: missing)."""
    return pd.Series(values.array.take(codes, allow_fill=True))


def cpr_birth_dates(cpr_digits: pd.Series) -> pd.Series:
    """The birth date each 10-digit CPR number tells (century from the serial, CPR office rules); NaT if impossible."""
    return on_distinct(cpr_digits, _birth_dates).rename(None)


def _century_table(table: dict) -> np.ndarray:
    """Century by (first serial digit, two-digit year) from the ``cpr_century`` rules; -1 where none."""
    century = np.full((10, 100), -1, dtype=np.int64)
    for digit, spans in table.items():
        for lo, hi, cent in spans:
            century[int(digit), int(lo):int(hi) + 1] = cent
    return century


def _birth_dates(s: pd.Series) -> pd.Series:
    """Birth dates of distinct CPR digit strings: day, month and year from the digits (numpy), the
    century from the serial's first digit; NaT unless ten digits make a real date."""
    ten = s.str.fullmatch(r"[0-9]{10}", na=False).to_numpy(dtype=bool)
    out = np.full(len(s), np.datetime64("NaT"), dtype="datetime64[ns]")
    if ten.any():
        digits = np.frombuffer("".join(s[ten].tolist()).encode("ascii"), dtype=np.uint8).reshape(-1, 10).astype(np.int64) - 48
        day, month, yy, first = digits[:, 0] * 10 + digits[:, 1], digits[:, 2] * 10 + digits[:, 3], digits[:, 4] * 10 + digits[:, 5], digits[:, 6]
        century = _century_table(ingest_rules()["cpr_century"])[first, yy]
        known = century >= 0
        parts = pd.DataFrame({"year": np.where(known, century + yy, 2000), "month": month, "day": day})
        dates = pd.to_datetime(parts, errors="coerce").to_numpy(dtype="datetime64[ns]")
        out[ten] = np.where(known, dates, np.datetime64("NaT"))
    return pd.Series(out, index=s.index)


def whole_years(start: pd.Series, end: pd.Series) -> pd.Series:
    """Completed years from ``start`` to ``end`` (ages); NA where either is missing."""
    years = end.dt.year - start.dt.year
    before_birthday = (end.dt.month < start.dt.month) | ((end.dt.month == start.dt.month) & (end.dt.day < start.dt.day))
    return (years - before_birthday.astype("Int64")).astype("Int64")


class _Checker:
    """Collects the problems of one export while its columns are checked."""

    def __init__(self, raw: RawTable, form: str, catalogue: FormCatalogue):
        self.raw, self.form, self.catalogue = raw, form, catalogue
        self.file = str(raw.path)
        self.n = len(raw.frame)
        self.found: list[pd.DataFrame] = []
        self.bad = np.zeros(self.n, dtype=bool)

    def fail(self, mask, column: str, rule: str, text: pd.Series | None, show: bool) -> None:
        """Rows where ``mask`` holds fail ``rule`` (``text``: the values to show, when ``show``)."""
        mask = np.asarray(pd.Series(mask).fillna(False), dtype=bool)
        if not mask.any():
            return
        self.bad |= mask
        values = text[mask].tolist() if (show and text is not None) else None
        self.found.append(problems_frame(self.file, self.raw.rows[mask], column, rule, values))


class _Distinct:
    """The checks of one column, run on its distinct values; failures are spread to the rows."""

    def __init__(self, check: _Checker, f: FormField, codes: np.ndarray, text: pd.Series):
        self.check, self.f, self.codes, self.text = check, f, codes, text
        self.show = not f.personal and f.name != "record_id"

    def fail(self, mask: pd.Series, rule: str, column: str | None = None) -> None:
        mask = np.asarray(pd.Series(mask).fillna(False), dtype=bool)
        if not mask.any():
            return
        rows = np.append(mask, False)[self.codes]  # code -1 (no value at all) never fails
        shown = _spread(self.text, self.codes) if self.show else None
        self.check.fail(rows, column or self.f.name, rule, shown, self.show)


def _check_field(f: FormField, text: pd.Series, on: _Distinct, dialect, rules, latest: pd.Timestamp | None = None) -> pd.Series:
    """Typed values of the distinct ``text`` values of one field; failures recorded through ``on``."""
    present = text.notna()
    if f.type == "string":
        s = _normalise_text(f.name, text)
        if f.max_length is not None:
            on.fail(s.str.len() > f.max_length, f"longer than {f.max_length} characters")
        if f.format is not None:
            on.fail(present & ~s.str.fullmatch(f.format, na=False), f"does not have the form {f.format}")
        return s
    if f.type == "code":
        allowed = _allowed_codes(f)
        out = text.str.lower()
        if allowed is not None:
            out = out.map({c.lower(): c for c in allowed})
            on.fail(present & out.isna(), f"unknown code (codes of {_codes_name(f)})")
        return out.astype("str")
    if f.type == "codes":
        allowed = _allowed_codes(f)
        lookup = {c.lower(): c for c in allowed} if allowed is not None else None
        sep = dialect.multi_separator
        joined, unknown = [], []
        for value in text:
            if value is None or value != value:
                joined.append(None)
                unknown.append(False)
                continue
            parts = [p.strip().lower() for p in str(value).split(sep) if p.strip()]
            mapped = [lookup.get(p) for p in parts] if lookup is not None else parts
            unknown.append(any(m is None for m in mapped))
            joined.append(sep.join(dict.fromkeys(m for m in mapped if m is not None)) or None)
        on.fail(pd.Series(unknown, index=text.index), f"unknown code (codes of {_codes_name(f)})")
        return pd.Series(joined, index=text.index, dtype="str")
    if f.type == "date":
        d = parse_dates(text, dialect.date_formats)
        on.fail(present & d.isna(), "not a date (or an impossible one); dates are yyyy-mm-dd or dd-mm-yyyy")
        span = rules["birth_date_range" if f.name == "birth_date" else "date_range"]
        lo, hi = pd.Timestamp(span["min"]), pd.Timestamp(span["max"])
        on.fail(d.notna() & ((d < lo) | (d > hi)), f"date outside {span['min']}..{span['max']}")
        if latest is not None and f.name not in rules.get("future_dates_allowed", []):
            on.fail(d.notna() & (d <= hi) & (d > latest), f"date after the export date {latest:%Y-%m-%d} (a typing error?)")
        return d
    if f.type in ("integer", "decimal"):
        num = parse_integer(text) if f.type == "integer" else parse_decimal(text)
        on.fail(present & num.isna(), "not a whole number" if f.type == "integer" else "not a number")
        if f.min is not None:
            on.fail(num.notna() & (num < f.min), f"less than {f.min:g}")
        if f.max is not None:
            on.fail(num.notna() & (num > f.max), f"more than {f.max:g}")
        return num
    if f.type == "boolean":
        b = parse_boolean(text, dialect.booleans)
        on.fail(present & b.isna(), "not yes or no")
        return b
    raise AssertionError(f.type)  # the catalogue schema allows no other types


def _allowed_codes(f: FormField) -> tuple[str, ...] | None:
    if f.codes == "indicator":
        from studylib.indicators import indicator_codes

        return tuple(indicator_codes())
    return f.allowed_codes()


def _codes_name(f: FormField) -> str:
    return f.codes if isinstance(f.codes, str) else ", ".join(f.codes)


def validate_export(raw: RawTable, form: str, catalogue: FormCatalogue | None = None,
                    latest: pd.Timestamp | None = None) -> ValidatedExport:
    """Check every row of an export; the accepted rows come back typed, the rest as rejected rows.

    ``latest`` is the export date: a date after it is rejected (None: not checked)."""
    catalogue = catalogue or form_catalogue()
    rules = ingest_rules()
    warnings = list(raw.warnings) + check_columns(raw, form, catalogue)
    dialect = catalogue.export
    check = _Checker(raw, form, catalogue)
    typed: dict[str, pd.Series] = {}
    n = len(raw.frame)
    for f in catalogue.fields_of(form):
        if f.name in raw.frame.columns:
            codes, uniques = pd.factorize(raw.frame[f.name], use_na_sentinel=True)
        else:
            codes, uniques = np.full(n, -1, dtype=np.intp), pd.Index([], dtype="str")
        text = _text(pd.Series(uniques, dtype="str"), dialect.missing)
        on = _Distinct(check, f, codes, text)
        if raw.not_text:
            on.fail(text.str.contains(NOT_TEXT, regex=False, na=False),
                    f"not {raw.encoding} text like the rest of the file: bytes of another encoding (a row pasted "
                    "from another program?); fix the row in the source and export again")
        if f.required:
            on.fail(text.isna(), "required value is missing")
            if (codes < 0).any():
                check.fail(codes < 0, f.name, "required value is missing", None, False)
        typed[f.name] = _spread(_check_field(f, text, on, dialect, rules, latest), codes)
    values = pd.DataFrame(typed)
    _check_cpr(values, check, rules)
    _check_ages(values, rules, check)
    _check_rows(values, form, catalogue, rules, check)
    problems = list(check.found)
    # rows that could not be split into the header's columns
    width = len(raw.frame.columns)
    bad_rows = raw.bad_rows
    if len(bad_rows):
        rules_text = [reason if isinstance(reason, str) else "the file ends inside a quoted value: the row is truncated" if cut else
                      f"the row has {n} field(s), the header {width} (truncated row, or a delimiter inside an unquoted value?)"
                      for n, cut, reason in zip(bad_rows["fields"], bad_rows["truncated"], bad_rows["reason"])]
        problems.append(pd.DataFrame({"file": check.file, "row": bad_rows["row"].astype(object), "column": None,
                                      "rule": rules_text, "value": None}, columns=list(PROBLEM_COLUMNS)))
    problems = pd.concat(problems, ignore_index=True) if problems else empty_problems()
    problems = problems.sort_values(["row"], kind="stable", key=lambda r: pd.to_numeric(r, errors="coerce")).reset_index(drop=True)
    ok = ~check.bad
    rejected = _rejected_rows(raw, check.bad, problems)
    return ValidatedExport(
        form=form, file=str(raw.path), values=values[ok].reset_index(drop=True), rows=raw.rows[ok],
        rejected=rejected, problems=problems, warnings=warnings, n_read=len(raw.frame) + len(bad_rows),
    )


def _check_cpr(values: pd.DataFrame, check: _Checker, rules: dict) -> None:
    """CPR numbers without their hyphen, and the birth date each tells; checked once per distinct number."""
    codes, uniques = pd.factorize(values["cpr"], use_na_sentinel=True)
    cpr = pd.Series(uniques, dtype="str").str.replace("-", "", regex=False)
    born = _birth_dates(cpr)
    lo = rules["birth_date_range"]["min"]
    for mask, rule in ((cpr.str.fullmatch(r"\d{10}", na=False) & born.isna(), "the CPR number's first six digits are not a real date"),
                       (born.notna() & (born < pd.Timestamp(lo)), f"the CPR number tells a birth date before {lo}")):
        check.fail(np.append(mask.to_numpy(dtype=bool), False)[codes], "cpr", rule, None, False)
    values["cpr"] = _spread(cpr, codes).array
    values[CPR_BIRTH_DATE] = _spread(born, codes).array


def _check_ages(values: pd.DataFrame, rules: dict, check: _Checker) -> None:
    """The age on the form's date, from the stated birth date and from the CPR number, is at most ``max_age``."""
    oldest = rules["max_age"]
    for column, born in (("birth_date", values["birth_date"]), ("cpr", values[CPR_BIRTH_DATE])):
        age = whole_years(born, values["date"])
        check.fail(age.notna() & (age > oldest), column, f"the person would be older than {oldest} on the date of the form", None, False)


def _check_rows(values: pd.DataFrame, form: str, catalogue: FormCatalogue, rules: dict, check: _Checker) -> None:
    ops = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "==": lambda a, b: a == b}
    for comparison in rules.get("comparisons", []):
        forms = comparison["forms"]
        if forms != "all" and form not in forms:
            continue
        left, right = values[comparison["left"]], values[comparison["right"]]
        wrong = left.notna() & right.notna() & ~ops[comparison["op"]](left, right).fillna(True)
        check.fail(wrong, comparison["report_on"], comparison["rule"], None, False)
    spec = catalogue.form(form)
    if spec.minors_only:
        born = values["birth_date"].fillna(values[CPR_BIRTH_DATE])
        age = whole_years(born, values["date"])
        check.fail(age >= rules["adult_age"], "birth_date", f"form {form} is for minors; the person was {rules['adult_age']} or older on the date", None, False)
    if rules.get("check_submitted_by", False):
        org = values["organisation"]
        check.fail(org.notna() & ~org.isin(spec.submitted_by), "organisation",
                   f"organisation does not submit form {form} (catalogue: {', '.join(spec.submitted_by)})", org, True)


def _rejected_rows(raw: RawTable, bad: np.ndarray, problems: pd.DataFrame) -> pd.DataFrame:
    """Rejected rows as read, with their row numbers and what is wrong (for the quarantine)."""
    if problems.empty:
        return pd.DataFrame(columns=["_row", "_problems", *raw.frame.columns, "_text"])
    described = problems.assign(what=problems["column"].fillna("(row)") + ": " + problems["rule"])
    by_row = described.groupby(described["row"].astype("int64"))["what"].agg("; ".join)
    good_part = raw.frame[bad].copy()
    good_part.insert(0, "_row", raw.rows[bad])
    good_part["_text"] = ""
    bad_part = pd.DataFrame({"_row": raw.bad_rows["row"].astype("int64").to_numpy(), "_text": raw.bad_rows["text"].to_numpy()})
    out = pd.concat([good_part, bad_part], ignore_index=True) if len(bad_part) else good_part
    out.insert(1, "_problems", out["_row"].map(by_row))
    return out.sort_values("_row", kind="stable").reset_index(drop=True)


def concat_problems(frames) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else empty_problems()
