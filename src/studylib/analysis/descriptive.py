"""Descriptive helpers the study templates share: what to count persons by, as data.

Counting, ordering by vocabulary and merging small categories is :mod:`studylib.report.counting`'s
job (a template passes ``order=`` and ``merge=`` to ``safe_table``); this module makes the
columns those tables count by, so that a template cell reads like the question it answers:

- :func:`with_country_names`: nationality as country names (``PH`` -> ``Philippines``) from
  ``countries.yaml``, and :func:`size_order` (largest first, ``other`` and ``unknown`` last) to
  hand to ``order=`` beside ``merge={"nationality": {"top": N}}``;
- :func:`reporting_years`: the reporting year and the year before it within a period;
  :func:`period_bands`: years in bands of equal width that end with the last year;
- :func:`sector_groups`: the sector against all other sectors (a column ``group``);
- :func:`case_age_bands`: how long a pending case has waited, in words;
- :func:`day_bands`: days (reflection period, safe house) in bands;
- :func:`reflection_of`: per person, whether a reflection period was offered and accepted (F06);
- :func:`recruitment_of`: per person, fee or debt and who the recruiter was (F04), ``unknown`` where
  no interview recorded them; :func:`recruiter_group`: the recruiter in three groups;
- :func:`child_exploitation`: a minor's form of exploitation in words a children's study uses;
- :func:`outcome_or_open`: the outcome, ``not_closed`` while no closure form says otherwise;
- :func:`missing_flags`: per person and field, whether the value is missing or unknown;
- :func:`data_as_of`: the date the data run to (the latest event).

Everything here is pure pandas over the dataset's tables; nothing is shown or counted for a report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from studylib.config import read_yaml
from studylib.errors import ConfigError

COUNTRIES_PATH = files("studylib.analysis") / "countries.yaml"
OTHER, UNKNOWN = "other", "unknown"
#: the group of persons a sector is set against
ALL_OTHER_SECTORS = "all_other_sectors"
NOT_CLOSED = "not_closed"
#: codes that mean "not known" (``XX``: nationality unknown)
UNKNOWN_VALUES = frozenset({"unknown", "XX"})

#: How long a pending case has waited since first contact: (upper bound in days, label).
CASE_AGE_BANDS: tuple[tuple[int, str], ...] = (
    (91, "under three months"),
    (182, "three to six months"),
    (365, "six months to a year"),
    (730, "one to two years"),
    (10**9, "two years or more"),
)


# --- country names ---------------------------------------------------------------------------


@lru_cache(maxsize=4)
def country_names(path=None) -> dict[str, str]:
    """ISO 3166-1 alpha-2 code -> country name (``XX`` -> ``unknown``), from ``countries.yaml``."""
    source = COUNTRIES_PATH if path is None else path
    data = read_yaml(source, "country names")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: country names must be a mapping of ISO codes to names")
    for code, name in data.items():
        if not isinstance(code, str) or not re.fullmatch(r"[A-Z]{2}", code):
            raise ConfigError(f"{source}: key {code!r} is not a two-letter ISO 3166-1 code (quote it: 'NO')")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{source}: key {code!r} has no country name")
    return dict(data)


def country_name(codes):
    """A code, or a Series of codes, as country names; a code not in the list is an error naming it."""
    names = country_names()
    if isinstance(codes, str):
        return _name_of(codes, names)
    series = pd.Series(codes)
    known = series.isna() | series.isin(list(names)) | series.isin(list(UNKNOWN_VALUES))
    if not known.all():
        stray = sorted(set(series[~known].astype(str)))[:5]
        raise ValueError(f"nationality code(s) {', '.join(stray)} are not in {COUNTRIES_PATH}: add them there")
    return series.map(lambda c: UNKNOWN if pd.isna(c) else _name_of(c, names))


def _name_of(code: str, names: dict[str, str]) -> str:
    if code in UNKNOWN_VALUES:
        return UNKNOWN
    try:
        return names[code]
    except KeyError:
        raise ValueError(f"nationality code {code!r} is not in {COUNTRIES_PATH}: add it there") from None


def with_country_names(persons: pd.DataFrame, column: str = "nationality") -> pd.DataFrame:
    """A copy of ``persons`` whose ``column`` holds country names instead of ISO codes."""
    return persons.assign(**{column: country_name(persons[column]).to_numpy()})


def size_order(values: pd.Series) -> list:
    """The categories of ``values``, largest first (ties by name), ``other`` and ``unknown`` last."""
    sizes = pd.Series(values).astype(object).fillna(UNKNOWN).value_counts()
    ranked = sorted((x for x in sizes.index if x not in (OTHER, UNKNOWN)), key=lambda x: (-int(sizes[x]), str(x)))
    return ranked + [x for x in (OTHER, UNKNOWN) if x in sizes.index]


# --- years -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportingYears:
    """The reporting year of a study and the year before it (None when the period starts there)."""

    year: int
    previous: int | None
    first: int
    last: int


def reporting_years(first: int, last: int, reporting_year: int | None = None) -> ReportingYears:
    """The reporting year (default: the last year of the period) and the previous year, within the period."""
    first, last = int(first), int(last)
    if first > last:
        raise ValueError(f"the period runs from {first} to {last}: its first year is after its last")
    year = last if reporting_year is None else int(reporting_year)
    if not first <= year <= last:
        raise ValueError(f"reporting year {year} is outside the period {first}–{last}")
    return ReportingYears(year, year - 1 if year > first else None, first, last)


def period_bands(years: pd.Series, first: int, last: int, width: int = 5) -> pd.Series:
    """Each year as its band of ``width`` years (``2020–2024``); bands end with ``last``, so the
    first band may be shorter. An ordered categorical, bands in time order; years outside: missing."""
    if width < 1:
        raise ValueError(f"a period band is at least one year wide, not {width}")
    labels, edges = [], []
    end = int(last)
    while end >= first:
        start = max(int(first), end - width + 1)
        labels.insert(0, f"{start}–{end}" if start != end else str(start))
        edges.insert(0, start)
        end = start - 1
    values = pd.to_numeric(pd.Series(years), errors="coerce")
    position = np.searchsorted(np.array(edges), values.to_numpy(dtype=float), side="right") - 1
    inside = values.between(first, last).to_numpy()
    out = pd.Categorical.from_codes(np.where(inside, position, -1), categories=labels, ordered=True)
    return pd.Series(out, index=getattr(years, "index", None), name=getattr(years, "name", None))


# --- groups and bands ------------------------------------------------------------------------


def sector_groups(persons: pd.DataFrame, sector: str) -> pd.Series:
    """``sector`` for the persons of that sector, ``all_other_sectors`` for everyone else."""
    return pd.Series(np.where(persons["sector"].astype(str) == sector, sector, ALL_OTHER_SECTORS),
                     index=persons.index, name="group", dtype=object)


def case_age_bands(first_contact: pd.Series, as_of) -> pd.Series:
    """How long each case has waited from first contact to ``as_of``, in words (:data:`CASE_AGE_BANDS`)."""
    days = (pd.Timestamp(as_of) - pd.to_datetime(first_contact)).dt.days.clip(lower=0)
    labels = [label for _, label in CASE_AGE_BANDS]
    bands = pd.cut(days, bins=[-1, *[upper - 1 for upper, _ in CASE_AGE_BANDS]], labels=labels)
    return pd.Series(pd.Categorical(bands, categories=labels), index=first_contact.index, name="case_age")


def day_bands(days: pd.Series, edges: Sequence[int], unit: str = "days", missing: str = "none") -> pd.Series:
    """Days in bands closed on the right: ``edges=(30, 60, 100, 120)`` gives ``1–30 days``,
    ``31–60 days`` ... and ``more than 120 days``; 0 or missing days: ``missing``."""
    edges = [int(e) for e in edges]
    if not edges or edges != sorted(set(edges)) or edges[0] < 1:
        raise ValueError(f"band edges must rise from 1 or more, not {edges}")
    labels, low = [], 1
    for high in edges:
        labels.append(f"{low}–{high} {unit}" if low != high else f"{high} {unit}")
        low = high + 1
    labels.append(f"more than {edges[-1]} {unit}")
    values = pd.to_numeric(pd.Series(days), errors="coerce")
    bands = pd.cut(values, bins=[0, *edges, np.inf], labels=labels, right=True)
    out = pd.Series(bands.astype(object), index=values.index).where(values > 0, missing)
    return pd.Series(pd.Categorical(out, categories=[missing, *labels]), index=getattr(days, "index", None),
                     name=getattr(days, "name", None))


def reflection_of(events: pd.DataFrame, person_ids: Iterable) -> pd.DataFrame:
    """Per person of ``person_ids``: ``reflection_offered`` and ``reflection_accepted`` (any F06 form says so)."""
    forms = events[events["form"] == "F06"]
    ids = pd.Index(pd.unique(pd.Series(list(person_ids), dtype=object)), name="person_id")
    out = pd.DataFrame(index=ids)
    for field in ("offered", "accepted"):
        said = forms.loc[_yes(forms[field]) if field in forms.columns else np.zeros(len(forms), dtype=bool), "person_id"]
        out[f"reflection_{field}"] = ids.isin(said.unique())
    return out.reset_index()


def _yes(values: pd.Series) -> np.ndarray:
    return values.astype("boolean").fillna(False).to_numpy(dtype=bool)


#: What a person paid or owed to be recruited, as the identification interview (F04) recorded it.
FEE_OR_DEBT: tuple[str, ...] = ("fee_and_debt", "fee_only", "debt_only", "neither_recorded", UNKNOWN)
#: The F04 fields :func:`recruitment_of` reads (catalogue 2026.2 added the last two).
RECRUITMENT_FIELDS = ("claimed_debt_dkk", "recruitment_fee_dkk", "recruiter_relation")


def recruitment_of(events: pd.DataFrame, person_ids: Iterable) -> pd.DataFrame:
    """Per person of ``person_ids``: ``fee_or_debt`` (:data:`FEE_OR_DEBT`) and ``recruiter_relation``.

    A fee was paid (a debt claimed) when any identification interview (F04) of the person records
    an amount above 0. ``neither_recorded``: interviewed, with the fee field filled in, and no fee
    or debt above 0. ``unknown``: no interview, or no interview that asked about the fee (data
    from before catalogue 2026.2, whose F04 had only the debt). The relation is that of the
    person's latest interview that names one; ``unknown`` otherwise. Columns the events lack
    count as never recorded."""
    forms = events[events["form"] == "F04"]
    ids = pd.Index(pd.unique(pd.Series(list(person_ids), dtype=object)), name="person_id")

    def any_above_zero(field: str) -> pd.Index:
        if field not in forms.columns:
            return pd.Index([])
        return pd.Index(forms.loc[pd.to_numeric(forms[field], errors="coerce").fillna(0).to_numpy() > 0, "person_id"].unique())

    fee, debt = ids.isin(any_above_zero("recruitment_fee_dkk")), ids.isin(any_above_zero("claimed_debt_dkk"))
    asked = ids.isin(forms.loc[forms["recruitment_fee_dkk"].notna(), "person_id"].unique()) if "recruitment_fee_dkk" in forms else np.zeros(len(ids), bool)
    fee_or_debt = np.select([fee & debt, fee, debt, asked], list(FEE_OR_DEBT[:4]), UNKNOWN)
    relation = pd.Series(UNKNOWN, index=ids, dtype=object)
    if "recruiter_relation" in forms.columns:
        known = forms[forms["recruiter_relation"].notna() & (forms["recruiter_relation"].astype(str) != UNKNOWN)]
        latest = known.sort_values(["date", "event_id"]).groupby("person_id")["recruiter_relation"].last()
        relation.update(latest[latest.index.isin(ids)].astype(object))
    return pd.DataFrame({"person_id": ids.to_numpy(), "fee_or_debt": fee_or_debt.astype(object),
                         "recruiter_relation": relation.to_numpy(dtype=object)})


#: A minor's form of exploitation: the three a children's study names first, labour exploitation
#: (any labour sector), and the rest.
CHILD_EXPLOITATION: tuple[str, ...] = ("sexual_exploitation", "forced_crime", "begging", "labour_exploitation",
                                       "mixed_or_other", UNKNOWN)


def child_exploitation(persons: pd.DataFrame) -> pd.Series:
    """Each person's form of exploitation (:data:`CHILD_EXPLOITATION`) from ``sector`` and ``exploitation``:
    prostitution or sexual exploitation -> ``sexual_exploitation``; the sector ``forced_crime`` or
    criminal exploitation -> ``forced_crime``; ``begging``; labour exploitation or a labour sector
    (one with an ISIC section) -> ``labour_exploitation``; mixed or other -> ``mixed_or_other``."""
    from studylib.data.vocabularies import SECTOR_ISIC

    sector = persons["sector"].astype(str).to_numpy()
    kind = persons["exploitation"].astype(str).to_numpy()
    labour_sector = np.isin(sector, [s for s, isic in SECTOR_ISIC.items() if isic])
    out = np.select(
        [(sector == "prostitution") | (kind == "sexual"), (sector == "forced_crime") | (kind == "criminal"),
         sector == "begging", (kind == "labour") | labour_sector, np.isin(kind, ["mixed", "other"]) | (sector == "other")],
        list(CHILD_EXPLOITATION[:5]), UNKNOWN)
    return pd.Series(out.astype(object), index=persons.index, name="exploitation")


#: Who the recruiter was, in the three groups a report shows (fewer, larger cells than the
#: vocabulary's seven): someone close (partner, family, friend), someone who offered work, someone else.
RECRUITER_GROUPS: dict[str, tuple[str, ...]] = {
    "someone_close": ("intimate_partner", "family", "friend_or_acquaintance"),
    "employer_or_agent": ("employer", "recruitment_agent"),
    "stranger_or_other": ("stranger", "other"),
}


def recruiter_group(relation: pd.Series) -> pd.Series:
    """Each recruiter relation as its group of :data:`RECRUITER_GROUPS` (``unknown`` stays ``unknown``)."""
    group_of = {code: group for group, codes in RECRUITER_GROUPS.items() for code in codes}
    values = relation.astype(object)
    stray = sorted(set(values.dropna()) - set(group_of) - {UNKNOWN})
    if stray:
        raise ValueError(f"recruiter relation code(s) {stray} are in no group of RECRUITER_GROUPS")
    return values.map(lambda c: group_of.get(c, UNKNOWN)).rename("recruiter")


def outcome_or_open(outcome: pd.Series) -> pd.Series:
    """The outcome of each case, ``not_closed`` where no closure form (F14) gives one."""
    return outcome.astype(object).where(outcome.notna(), NOT_CLOSED).rename("outcome")


def missing_flags(persons: pd.DataFrame, fields: Sequence[str]) -> pd.DataFrame:
    """``person_id`` and one yes/no column ``missing_<field>`` per field: the value is missing or unknown."""
    absent = [f for f in fields if f not in persons.columns]
    if absent:
        raise KeyError(f"field(s) {absent} are not columns of the persons frame")
    out = persons[["person_id"]].copy()
    for field in fields:
        values = persons[field]
        out[f"missing_{field}"] = (values.isna() | values.astype(object).isin(list(UNKNOWN_VALUES))).to_numpy(dtype=bool)
    return out


def data_as_of(events: pd.DataFrame) -> pd.Timestamp:
    """The date the data run to: the latest date of any registered event."""
    dates = pd.to_datetime(events["date"])
    if dates.notna().sum() == 0:
        raise ValueError("the events table has no dates: the data's end date cannot be known")
    return pd.Timestamp(dates.max())
