"""Table schemas of the pseudonymised dataset (DESIGN section 3), declared as pandera data.

What a table must hold is declared here; :mod:`studylib.data.dataset` checks it and collects
every failure (table, column, row, value, rule) into one report.
"""

from __future__ import annotations

import pandera.pandas as pa

from studylib.data import vocabularies as v

SCHEMA_VERSION = "1.0"

#: A person token: 64 lower-case hex digits (HMAC-SHA256).
TOKEN_PATTERN = r"^[0-9a-f]{64}$"


def _codes(values, nullable: bool = False) -> pa.Column:
    return pa.Column(str, pa.Check.isin(list(values)), nullable=nullable)


def _token(unique: bool = False) -> pa.Column:
    return pa.Column(str, pa.Check.str_matches(TOKEN_PATTERN), unique=unique)


def _record_key() -> pa.Column:
    """Each person's record key for the cell key method, uniform in [0, 1), made at ingest
    from the key (:meth:`studylib.privacy.pseudonymiser.Pseudonymiser.record_keys`); a
    dataset ingested before it existed has none."""
    return pa.Column(float, pa.Check.in_range(0, 1, include_max=False), required=False)


PERSONS = pa.DataFrameSchema(
    {
        "person_id": _token(unique=True),
        "sex": _codes(v.SEX),
        "birth_year": pa.Column("Int64", pa.Check.in_range(1900, 2100), nullable=True),
        "nationality": _codes(v.NATIONALITY),
        "record_key": _record_key(),
    },
    name="persons",
    strict=True,
    coerce=True,
)

EVENTS = pa.DataFrameSchema(
    {
        "event_id": pa.Column(str, unique=True),
        "person_id": _token(),
        "form": _codes(v.FORM_CODES),
        "date": pa.Column("datetime64[ns]"),
        "organisation": _codes(v.ORGANISATION),
        "region": _codes(v.REGION),
    },
    name="events",
    strict=False,  # each form adds its own non-identifying fields
    coerce=True,
)

INDICATORS = pa.DataFrameSchema(
    {
        "person_id": _token(),
        "indicator": pa.Column(str, pa.Check.str_matches(r"^[a-z][a-z0-9_]*$")),
        "event_id": pa.Column(str),
    },
    name="indicators",
    strict=True,
    coerce=True,
    unique=["person_id", "indicator", "event_id"],
)

_CASE_COLUMNS: dict[str, pa.Column] = {
    "person_id": _token(unique=True),
    "sex": _codes(v.SEX),
    "birth_year": pa.Column("Int64", nullable=True),
    "nationality": _codes(v.NATIONALITY),
    "record_key": _record_key(),
    "region": _codes(v.REGION),
    "first_contact_date": pa.Column("datetime64[ns]"),
    "first_contact_year": pa.Column("Int64", pa.Check.in_range(1990, 2100)),
    "age_at_first_contact": pa.Column("Int64", pa.Check.in_range(0, 120), nullable=True),
    "age_band": _codes(v.AGE_BAND),
    "minor": pa.Column("boolean", nullable=True),
    "sector": _codes(v.SECTOR),
    "exploitation": _codes(v.EXPLOITATION),
    "recruitment_channel": _codes(v.RECRUITMENT_CHANNEL),
    "referral_source": _codes(v.ORGANISATION + ("unknown",)),
    **{f"list_{org}": pa.Column(bool) for org in v.ORGANISATION},
    "n_lists": pa.Column("Int64", pa.Check.in_range(1, len(v.ORGANISATION))),
    "decision": _codes(v.DECISION),
    "decision_date": pa.Column("datetime64[ns]", nullable=True),
    "reflection_days": pa.Column("Int64", pa.Check.ge(0), nullable=True),
    "safe_house_days": pa.Column("Int64", pa.Check.ge(0), nullable=True),
    **{f"service_{s}": pa.Column(bool) for s in v.SERVICE},
    "outcome": _codes(v.OUTCOME, nullable=True),
    "research_consent": _codes(v.RESEARCH_CONSENT),
}

CASES = pa.DataFrameSchema(_CASE_COLUMNS, name="cases", strict=True, coerce=True)

TABLES: dict[str, pa.DataFrameSchema] = {
    "persons": PERSONS,
    "events": EVENTS,
    "indicators": INDICATORS,
    "cases": CASES,
}

#: Column order of the cases table (the analysis view).
CASE_COLUMNS: tuple[str, ...] = tuple(_CASE_COLUMNS)
