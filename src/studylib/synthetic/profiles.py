"""Sector profiles and the scenario of the generator: the YAML files, their models and loading.

A profile folder (``synthetic_data/profiles/`` by default) holds one ``<sector>.yaml`` per
sector (who the persons are and who sees them) and one scenario, ``demo.yaml`` (years,
registered persons, sector mix, capture and pathway through the forms, the messy model).
What users write is declared here as pydantic models; every problem of every file is
collected and reported together in one :class:`~studylib.errors.ConfigError` that names the
file and the key.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError as PydanticValidationError, ValidationInfo, field_validator, model_validator

from studylib.config import read_yaml
from studylib.data import vocabularies
from studylib.errors import ConfigError
from studylib.data.form_catalogue import form_catalogue

SCENARIO_FILE = "demo.yaml"
SHARE_TOLERANCE = 1e-3
YEAR_MIN, YEAR_MAX = 1990, 2100

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
DayRange = tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]


def _known(codes, allowed: tuple[str, ...], what: str, kind: str = "code") -> None:
    """Every one of ``codes`` is among ``allowed``; else a message naming the unknown ones and the known
    (``what`` prefixes it where the key alone does not say which part is meant)."""
    unknown = [c for c in codes if str(c) not in allowed]
    if unknown:
        prefix = f"{what}: " if what else ""
        raise ValueError(f"{prefix}unknown {kind}(s) {unknown}; allowed: {', '.join(allowed)}")


def _submitters(orgs, form: str, what: str) -> None:
    """Every one of ``orgs`` submits ``form`` (form catalogue)."""
    allowed = form_catalogue().form(form).submitted_by
    bad = [o for o in orgs if o not in allowed]
    if bad:
        raise ValueError(f"{what}: {bad} do not submit {form} (form catalogue: {', '.join(allowed)})")


#: Pathway share tables given per group: field -> (the groups, the vocabulary of each group's shares).
_GROUPED_SHARES = {
    "decision": (("victim", "non_victim"), vocabularies.DECISION),
    "outcome": (("identified", "not_identified"), vocabularies.OUTCOME),
}


def _shares(value: dict, allowed: tuple[str, ...], what: str) -> dict[str, float]:
    """Check a share table: known codes, non-negative, summing to 1; return it normalised."""
    if not value:
        raise ValueError(f"{what}: needs at least one entry")
    _known(value, allowed, what)
    bad = [k for k, v in value.items() if not isinstance(v, (int, float)) or v < 0 or math.isnan(v)]
    if bad:
        raise ValueError(f"{what}: shares must be numbers >= 0 (see {bad})")
    total = float(sum(value.values()))
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise ValueError(f"{what}: shares sum to {total:.4f}, not 1")
    return {str(k): float(v) / total for k, v in value.items()}


def _probabilities(value: dict, allowed: tuple[str, ...], what: str) -> dict[str, float]:
    _known(value, allowed, what)
    bad = [k for k, v in value.items() if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"{what}: probabilities must be between 0 and 1 (see {bad})")
    return {str(k): float(v) for k, v in value.items()}


def _day_range(value: tuple[int, int], what: str) -> tuple[int, int]:
    if value[0] > value[1]:
        raise ValueError(f"{what}: first day {value[0]} is after last day {value[1]}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sector profile ---------------------------------------------------------------------------


class Residence(_Strict):
    cpr: dict[str, Probability]
    passport: Probability

    @field_validator("cpr")
    @classmethod
    def _groups(cls, v: dict) -> dict:
        missing = {"DK", "eu", "non_eu"} - set(v)
        extra = set(v) - {"DK", "eu", "non_eu"}
        if missing or extra:
            raise ValueError(f"needs exactly the groups DK, eu, non_eu (missing {sorted(missing)}, unknown {sorted(extra)})")
        return v


class IndicatorProbabilities(_Strict):
    """Per dimension: the probability that each indicator of that dimension is ticked."""

    victim: dict[str, Probability]
    non_victim: dict[str, Probability]

    @model_validator(mode="after")
    def _known_dimensions(self) -> "IndicatorProbabilities":
        for part in ("victim", "non_victim"):
            _known(getattr(self, part), indicator_dimensions(), part, "dimension")
        return self


#: The vocabulary whose codes each share field of a sector profile is over.
SHARE_VOCABULARIES: dict[str, tuple[str, ...]] = {
    "sex": vocabularies.SEX,
    "age_bands": vocabularies.AGE_BAND[:-1],
    "nationality": vocabularies.NATIONALITY,
    "recruitment_channel": vocabularies.RECRUITMENT_CHANNEL,
    "exploitation": vocabularies.EXPLOITATION,
    "region": vocabularies.REGION,
}


class SectorProfile(_Strict):
    """Who the persons of one sector are, and how visible they are to each organisation."""

    sector: str
    title: str
    calibrated_on: str = Field(min_length=10)
    victim_share: Probability
    sex: dict[str, float]
    age_bands: dict[str, float]
    nationality: dict[str, float]
    recruitment_channel: dict[str, float]
    exploitation: dict[str, float]
    residence: Residence
    region: dict[str, float] | None = None
    indicators: IndicatorProbabilities
    visibility: dict[str, Probability]

    @field_validator("sector")
    @classmethod
    def _sector(cls, v: str) -> str:
        _known([v], vocabularies.SECTOR, "", "sector")
        return v

    @field_validator("sex", "age_bands", "nationality", "recruitment_channel", "exploitation", "region")
    @classmethod
    def _shares_of_codes(cls, v, info: ValidationInfo):
        """Shares over codes of the field's vocabulary (SHARE_VOCABULARIES), summing to 1."""
        return None if v is None else _shares(v, SHARE_VOCABULARIES[info.field_name], info.field_name)

    @field_validator("visibility")
    @classmethod
    def _vis(cls, v):
        v = _probabilities(v, vocabularies.ORGANISATION, "visibility")
        if not any(p > 0 for p in v.values()):
            raise ValueError("visibility: no organisation can register anyone (all chances are 0)")
        return v


# --- scenario ---------------------------------------------------------------------------------


class Dependence(_Strict):
    from_: str = Field(alias="from")
    to: str
    probability: Probability
    lag_days: DayRange

    @model_validator(mode="after")
    def _orgs(self) -> "Dependence":
        _known((self.from_, self.to), vocabularies.ORGANISATION, "from/to", "organisation")
        if self.from_ == self.to:
            raise ValueError("`from` and `to` must differ")
        _day_range(self.lag_days, "lag_days")
        return self


class Capture(_Strict):
    """How organisations register persons: person-level heterogeneity and list dependence.

    ``logit p[person, org] = logit(visibility[org]) + heterogeneity_sd * (sqrt(s) z + sqrt(1 - s) e[org])``
    with ``s = heterogeneity_shared``, ``z`` one latent visibility per person shared by every
    organisation and ``e`` one per person and organisation (both standard normal). ``s = 1``
    makes the same persons visible to all (strong hidden dependence between every pair of
    lists); ``s = 0`` gives each organisation its own view of who is easy to see (the lists
    stay independent). ``dependence`` adds referrals between named organisations.
    """

    heterogeneity_sd: float = Field(ge=0, le=5)
    heterogeneity_shared: float = Field(default=1.0, ge=0, le=1)
    spread_days: float = Field(gt=0, le=365)
    repeat_contacts: dict[str, Annotated[float, Field(ge=0, le=5)]]
    dependence: tuple[Dependence, ...] = ()
    contact_form: dict[str, dict[str, float]]

    @field_validator("repeat_contacts")
    @classmethod
    def _repeat(cls, v):
        _known(v, vocabularies.ORGANISATION, "", "organisation")
        return v

    @field_validator("contact_form")
    @classmethod
    def _forms(cls, v):
        missing = sorted(set(vocabularies.ORGANISATION) - set(v))
        if missing:
            raise ValueError(f"needs an entry for every organisation; missing {missing}")
        _known(v, vocabularies.ORGANISATION, "", "organisation")
        out = {}
        for org, shares in v.items():
            out[org] = _shares(shares, form_catalogue().contact_forms, org)
            for code in out[org]:
                _submitters([org], code, org)
        return out


class ServiceShare(_Strict):
    identified: Probability
    other: Probability


class Pathway(_Strict):
    interview: dict[Literal["victim", "non_victim"], Probability]
    interview_lag_days: DayRange
    interview_by: dict[str, float]
    interpreter: Probability
    decision: dict[Literal["victim", "non_victim"], dict[str, float]]
    decision_lag_days: DayRange
    immigration_decides_since: int
    research_informed: Probability
    research_agree: Probability
    reflection_accept: Probability
    reflection_rule_change: int
    safe_house: Probability
    safe_house_stay_days: float = Field(gt=0)
    services: dict[Literal["F08", "F09", "F10", "F11", "F12"], ServiceShare]
    service_lag_days: DayRange
    child_notice_lag_days: DayRange
    unaccompanied: Probability
    closure_lag_days: DayRange
    outcome: dict[Literal["identified", "not_identified"], dict[str, float]]
    export_lag_days: int = Field(ge=0, le=3650)

    @field_validator("interview_by")
    @classmethod
    def _by(cls, v):
        v = _shares(v, vocabularies.ORGANISATION, "interview_by")
        _submitters(sorted(v), "F04", "interview_by")
        return v

    @field_validator("decision", "outcome")
    @classmethod
    def _shares_by_group(cls, v, info: ValidationInfo):
        """decision: shares per true status (victim, non_victim); outcome: per decision group."""
        groups, codes = _GROUPED_SHARES[info.field_name]
        if set(v) != set(groups):
            raise ValueError(f"needs `{groups[0]}` and `{groups[1]}`")
        return {k: _shares(s, codes, f"{info.field_name}.{k}") for k, s in v.items()}

    @model_validator(mode="after")
    def _ranges(self) -> "Pathway":
        for name in ("interview_lag_days", "decision_lag_days", "service_lag_days", "child_notice_lag_days", "closure_lag_days"):
            _day_range(getattr(self, name), name)
        missing = {"F08", "F09", "F10", "F11", "F12"} - set(self.services)
        if missing:
            raise ValueError(f"services: missing {sorted(missing)}")
        return self


class Dialect(_Strict):
    """How one raw CSV file is spelled (values checked against the form catalogue's export rules)."""

    name: str
    weight: float = Field(gt=0)
    separator: Literal[",", ";", "\t"]
    encoding: Literal["utf-8", "utf-8-sig", "cp1252"]
    date_format: str
    decimal: Literal[".", ","]
    true: str
    false: str
    line_end: Literal["\n", "\r\n"]

    @model_validator(mode="after")
    def _catalogue_spellings(self) -> "Dialect":
        export = form_catalogue().export
        if self.date_format not in export.date_formats:
            raise ValueError(f"date_format {self.date_format!r} is not one of the catalogue's {list(export.date_formats)}")
        if self.true not in export.booleans[True] or self.false not in export.booleans[False]:
            raise ValueError(f"true/false spellings must be among the catalogue's booleans {dict(export.booleans)}")
        if self.separator == self.decimal:
            raise ValueError("separator and decimal mark must differ")
        return self


class Messy(_Strict):
    name_variant_rate: Probability
    missing_field_rate: Probability
    missing_key_rate: Probability
    broken_person_rate: Annotated[float, Field(ge=0, le=0.05)]
    cpr_without_hyphen_rate: Probability
    duplicate_rate: Annotated[float, Field(ge=0, le=0.5)]
    missing_spellings: dict[str, float]
    dialects: tuple[Dialect, ...] = Field(min_length=1)

    @field_validator("missing_spellings")
    @classmethod
    def _missing(cls, v):
        return _shares(v, form_catalogue().export.missing, "missing_spellings")


class Scenario(_Strict):
    """Years, registered persons, sector mix, capture, pathway through the forms, messiness."""

    name: str
    description: str = ""
    years: str
    registered_per_year: dict[int, Annotated[int, Field(ge=0)]]
    other_years: int = Field(ge=0)
    sector_mix: dict[str, float]
    age_limits: dict[Literal["min", "max"], Annotated[int, Field(ge=0, le=110)]]
    capture: Capture
    pathway: Pathway
    messy: Messy
    clean_dialect: Dialect

    @field_validator("years")
    @classmethod
    def _years(cls, v):
        parse_years(v, "years")
        return v

    @field_validator("sector_mix")
    @classmethod
    def _mix(cls, v):
        return _shares(v, vocabularies.SECTOR, "sector_mix")

    @model_validator(mode="after")
    def _limits(self) -> "Scenario":
        if set(self.age_limits) != {"min", "max"} or self.age_limits["min"] >= self.age_limits["max"]:
            raise ValueError("age_limits: needs min < max")
        return self


# --- loading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileSet:
    """A loaded profile folder: the scenario and the sector profiles it may use."""

    folder: Path
    scenario: Scenario
    sectors: dict[str, SectorProfile]


@lru_cache(maxsize=1)
def indicator_dimensions() -> tuple[str, ...]:
    """Dimension codes of the indicator catalogue (studylib.indicators)."""
    from studylib.indicators import dimensions

    return tuple(dimensions()["dimension"])


_YEARS = re.compile(r"^\s*(\d{4})\s*(?:-\s*(\d{4})\s*)?$")


def parse_years(text: str | int, where: str = "--years") -> tuple[int, ...]:
    """``"2015-2024"`` or ``"2020"`` to a tuple of years; a clear error otherwise."""
    m = _YEARS.match(str(text))
    if not m:
        raise ConfigError(f"{where}: {text!r} is not a year range like 2015-2024")
    first = int(m.group(1))
    last = int(m.group(2) or first)
    if last < first:
        raise ConfigError(f"{where}: {text!r} ends before it starts")
    if first < YEAR_MIN or last > YEAR_MAX:
        raise ConfigError(f"{where}: {text!r} is outside {YEAR_MIN}-{YEAR_MAX}")
    return tuple(range(first, last + 1))


def _pydantic_problems(path: Path, err: PydanticValidationError) -> list[str]:
    out = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top)"
        msg = e["msg"].removeprefix("Value error, ")
        out.append(f"{path}: key {key}: {msg}")
    return out


def _read(path: Path, problems: list[str]) -> dict | None:
    try:
        raw = read_yaml(path, "profile")
    except ConfigError as err:
        problems.append(str(err))
        return None
    if not isinstance(raw, dict):
        problems.append(f"{path}: key (top): must be a mapping of keys to values")
        return None
    return raw


def load_profiles(folder: str | Path) -> ProfileSet:
    """Load and check a profile folder; every problem of every file is reported together."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: profile folder not found")
    problems: list[str] = []
    scenario = None
    scenario_path = folder / SCENARIO_FILE
    if not scenario_path.is_file():
        problems.append(f"{scenario_path}: scenario file not found (every profile folder needs {SCENARIO_FILE})")
    else:
        raw = _read(scenario_path, problems)
        if raw is not None:
            try:
                scenario = Scenario.model_validate(raw)
            except PydanticValidationError as err:
                problems += _pydantic_problems(scenario_path, err)
    sectors: dict[str, SectorProfile] = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name == SCENARIO_FILE:
            continue
        if path.stem not in vocabularies.SECTOR:
            problems.append(f"{path}: unknown profile {path.stem!r}: a sector profile is named after its sector "
                            f"({', '.join(vocabularies.SECTOR)}); the scenario is {SCENARIO_FILE}")
            continue
        raw = _read(path, problems)
        if raw is None:
            continue
        try:
            profile = SectorProfile.model_validate(raw)
        except PydanticValidationError as err:
            problems += _pydantic_problems(path, err)
            continue
        if profile.sector != path.stem:
            problems.append(f"{path}: key sector: {profile.sector!r} differs from the file name {path.stem!r}")
            continue
        sectors[profile.sector] = profile
    if scenario is not None:
        for sector in scenario.sector_mix:
            if sector not in sectors and not any(p.startswith(f"{folder / sector}.yaml") for p in problems):
                problems.append(f"{scenario_path}: key sector_mix.{sector}: no profile file {folder / (sector + '.yaml')}")
    if problems:
        raise ConfigError(f"{folder}: {len(problems)} problem(s) in the profiles:\n" + "\n".join(f"  - {p}" for p in problems))
    return ProfileSet(folder=folder, scenario=scenario, sectors=sectors)


def select_sectors(profiles: ProfileSet, sectors: list[str] | None) -> dict[str, float]:
    """The sector mix to simulate: the scenario's, or the named sectors (renormalised)."""
    mix = profiles.scenario.sector_mix
    if not sectors:
        return dict(mix)
    problems = []
    for s in sectors:
        if s not in vocabularies.SECTOR:
            problems.append(f"--sectors: unknown sector {s!r}; sectors are {', '.join(vocabularies.SECTOR)}")
        elif s not in profiles.sectors:
            problems.append(f"--sectors: no profile for sector {s!r} in {profiles.folder} (expected {profiles.folder / (s + '.yaml')})")
    if problems:
        raise ConfigError("\n".join(problems))
    weights = {s: mix.get(s, 0.0) for s in dict.fromkeys(sectors)}
    if sum(weights.values()) <= 0:
        weights = {s: 1.0 for s in weights}
    else:  # a sector outside the scenario mix gets the smallest share present
        floor = min(v for v in weights.values() if v > 0)
        weights = {s: (v if v > 0 else floor) for s, v in weights.items()}
    total = sum(weights.values())
    return {s: v / total for s, v in weights.items()}
