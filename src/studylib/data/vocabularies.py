"""Controlled vocabularies: the one place where every code list of the data contract lives.

Every other module imports its codes from here (DESIGN section 3). Codes are lower-case
ASCII snake_case. Extend a list where a study needs it; never fork it.
"""

from __future__ import annotations

SEX: tuple[str, ...] = ("female", "male", "transgender", "unknown")

#: HTCDS v2 ``prs_Gender`` value for each of our sex codes.
SEX_HTCDS: dict[str, str] = {
    "female": "Feminine",
    "male": "Masculine",
    "transgender": "NonConforming",
    "unknown": "NonSpecifiedUnknown",
}

REGION: tuple[str, ...] = (
    "hovedstaden",
    "sjaelland",
    "syddanmark",
    "midtjylland",
    "nordjylland",
    "abroad",
    "unknown",
)

#: The five Danish regions, each with a referral group, and their English names.
REGION_NAMES: dict[str, str] = {
    "hovedstaden": "Capital Region of Denmark",
    "sjaelland": "Region Zealand",
    "syddanmark": "Region of Southern Denmark",
    "midtjylland": "Central Denmark Region",
    "nordjylland": "North Denmark Region",
}

#: Names readers know a code by, per vocabulary (where a code alone would not do, as in a title).
VALUE_NAMES: dict[str, dict[str, str]] = {"region": REGION_NAMES}

SECTOR: tuple[str, ...] = (
    "au_pair",
    "agriculture",
    "cleaning",
    "construction",
    "hospitality",
    "domestic_work",
    "manufacturing",
    "transport",
    "fishing",
    "prostitution",
    "forced_crime",
    "begging",
    "other",
    "unknown",
)

#: ISIC v4 section of each sector, for export (HTCDS vic_ForcedLabourIndustry).
#: Sectors outside the labour market (prostitution, forced crime, begging) have none.
SECTOR_ISIC: dict[str, str | None] = {
    "au_pair": "T",
    "agriculture": "A",
    "cleaning": "N",
    "construction": "F",
    "hospitality": "I",
    "domestic_work": "T",
    "manufacturing": "C",
    "transport": "H",
    "fishing": "A",
    "prostitution": None,
    "forced_crime": None,
    "begging": None,
    "other": None,
    "unknown": None,
}

EXPLOITATION: tuple[str, ...] = ("labour", "sexual", "criminal", "mixed", "other", "unknown")

#: Organisations that register contacts; each is one list for extent estimation.
ORGANISATION: tuple[str, ...] = (
    "centre_outreach",
    "hotline",
    "police",
    "ngo",
    "municipality",
    "immigration_service",
    "health_clinic",
    "trade_union",
)

DECISION: tuple[str, ...] = ("identified", "not_identified", "pending")

OUTCOME: tuple[str, ...] = (
    "prepared_return",
    "residence_permit",
    "asylum",
    "remained_unknown",
    "disappeared",
    "other",
)

RESEARCH_CONSENT: tuple[str, ...] = ("yes", "no", "unknown")

RECRUITMENT_CHANNEL: tuple[str, ...] = (
    "family_or_friends",
    "online_advert",
    "social_network",
    "agency",
    "employer_direct",
    "partner",
    "other",
    "unknown",
)

#: Who the recruiter was to the person (F04; CTDC's recruiterRelation, made finer): the person
#: who offered the job or the journey, as the person tells it in the identification interview.
RECRUITER_RELATION: tuple[str, ...] = (
    "intimate_partner",
    "family",
    "friend_or_acquaintance",
    "employer",
    "recruitment_agent",
    "stranger",
    "other",
    "unknown",
)

SERVICE: tuple[str, ...] = ("safe_house", "health", "legal", "psychological", "counselling", "prepared_return")

AGE_BAND: tuple[str, ...] = ("0-14", "15-17", "18-24", "25-34", "35-44", "45-54", "55+", "unknown")

#: Lower bounds of the age bands above (the last real band is open-ended).
AGE_BAND_EDGES: tuple[int, ...] = (0, 15, 18, 25, 35, 45, 55)

#: Nationalities used by the generator and accepted by ingest: ISO 3166-1 alpha-2.
#: Not exhaustive of the world, but every code any profile may draw; ``XX`` is unknown.
NATIONALITY: tuple[str, ...] = (
    "AL", "BG", "BR", "CN", "CZ", "DE", "DK", "EE", "ER", "ES", "GB", "GH", "HU", "IN",
    "IQ", "IR", "IT", "KE", "LK", "LT", "LV", "MA", "MN", "NG", "NP", "PH", "PK", "PL",
    "RO", "RU", "SE", "SK", "SO", "SY", "TH", "TR", "UA", "UG", "US", "VN", "XX",
)

FORM_CODES: tuple[str, ...] = tuple(f"F{i:02d}" for i in range(1, 15))

VOCABULARIES: dict[str, tuple[str, ...]] = {
    "sex": SEX,
    "region": REGION,
    "sector": SECTOR,
    "exploitation": EXPLOITATION,
    "organisation": ORGANISATION,
    "decision": DECISION,
    "outcome": OUTCOME,
    "research_consent": RESEARCH_CONSENT,
    "recruitment_channel": RECRUITMENT_CHANNEL,
    "recruiter_relation": RECRUITER_RELATION,
    "service": SERVICE,
    "age_band": AGE_BAND,
    "nationality": NATIONALITY,
    "form": FORM_CODES,
}


def vocabulary(name: str) -> tuple[str, ...]:
    """Return the code list called ``name``; a clear KeyError names the known lists."""
    try:
        return VOCABULARIES[name]
    except KeyError:
        known = ", ".join(sorted(VOCABULARIES))
        raise KeyError(f"unknown vocabulary {name!r}; known vocabularies: {known}") from None


def label(codes):
    """Codes as a reader sees them (``au_pair`` -> ``au pair``): a code, or an Index or Series of them.

    Whatever is not a string (a year, a missing value) is left as it is.
    """
    if isinstance(codes, str):
        return codes.replace("_", " ")
    return codes.map(lambda code: code.replace("_", " ") if isinstance(code, str) else code)


def age_band(age):
    """Map ages (scalar or array-like, NaN for unknown) to the reporting age bands."""
    import numpy as np
    import pandas as pd

    values = pd.to_numeric(pd.Series(age), errors="coerce")
    labels = list(AGE_BAND[:-1])
    bands = pd.cut(values, bins=[*AGE_BAND_EDGES, np.inf], right=False, labels=labels)
    out = bands.astype(object).where(bands.notna(), "unknown")
    if np.isscalar(age) or age is None:
        return out.iloc[0]
    index = age.index if isinstance(age, pd.Series) else None
    return pd.Series(out.to_numpy(), index=index, name="age_band")
