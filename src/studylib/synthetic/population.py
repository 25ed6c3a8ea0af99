"""The true population: persons in exploitation per year and sector, most never registered.

For every (year, sector) cell the scenario asks for a number of *registered* persons. Persons
are drawn from the sector profile (sex, age, nationality, victim status, latent visibility,
...) and offered to the organisations (:mod:`studylib.synthetic.capture`) until that many
have been registered; everyone drawn up to then is the cell's true population. So the
registered count is exact and the true population size is what capture makes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from studylib.data import vocabularies as V
from studylib.errors import ConfigError
from studylib.synthetic import capture as cap
from studylib.synthetic.nationalities import eu_mask
from studylib.synthetic.profiles import ProfileSet, SectorProfile

EPOCH = np.datetime64("1970-01-01", "D")
MAX_TRUE_PER_REGISTERED = 1000  # a guard against profiles nobody can see
DK = V.NATIONALITY.index("DK")


def day(year: int, month: int = 1, dom: int = 1) -> int:
    """Days since 1970-01-01 of a calendar date."""
    return int((np.datetime64(f"{year:04d}-{month:02d}-{dom:02d}", "D") - EPOCH).astype(np.int64))


def allocate(total: int, weights: dict) -> dict:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder, stable)."""
    keys = list(weights)
    w = np.array([max(float(weights[k]), 0.0) for k in keys])
    if total <= 0 or w.sum() <= 0:
        return {k: 0 for k in keys}
    exact = total * w / w.sum()
    base = np.floor(exact).astype(int)
    rest = total - int(base.sum())
    order = np.argsort(-(exact - base), kind="stable")
    base[order[:rest]] += 1
    return dict(zip(keys, base.tolist()))


def registered_targets(profiles: ProfileSet, years: tuple[int, ...], sector_mix: dict[str, float], persons: int | None) -> dict[tuple[int, str], int]:
    """Registered persons wanted per (year, sector)."""
    scenario = profiles.scenario
    per_year = {y: scenario.registered_per_year.get(y, scenario.other_years) for y in years}
    totals = per_year if persons is None else allocate(persons, per_year)
    out = {}
    for y in years:
        for s, n in allocate(totals[y], sector_mix).items():
            out[(y, s)] = n
    return out


def draw(rng: np.random.Generator, weights, n: int) -> np.ndarray:
    """``n`` positions into ``weights`` drawn in proportion to them (one uniform number each)."""
    cum = np.cumsum(np.asarray(weights, dtype=float))
    return np.minimum(np.searchsorted(cum / cum[-1], rng.random(n), side="right"), len(cum) - 1)


def _draw(rng: np.random.Generator, shares: dict[str, float], vocab: tuple[str, ...], n: int) -> np.ndarray:
    """Indices into ``vocab`` drawn with the given shares."""
    codes = np.array([vocab.index(k) for k in shares], dtype=np.int16)
    return codes[draw(rng, list(shares.values()), n)]


def _calendar_age(birth: np.ndarray, at: np.ndarray) -> np.ndarray:
    b = (birth + EPOCH).astype("datetime64[D]")
    a = (at + EPOCH).astype("datetime64[D]")
    by, ay = b.astype("datetime64[Y]"), a.astype("datetime64[Y]")
    # compare month-day via (month, day) rather than day-of-year (leap years)
    bm = (b.astype("datetime64[M]") - by.astype("datetime64[M]")).astype(np.int64)
    am = (a.astype("datetime64[M]") - ay.astype("datetime64[M]")).astype(np.int64)
    bd = (b - b.astype("datetime64[M]")).astype(np.int64)
    ad = (a - a.astype("datetime64[M]")).astype(np.int64)
    before = (am < bm) | ((am == bm) & (ad < bd))
    return (ay.astype(np.int64) - by.astype(np.int64) - before).astype(np.int16)


@dataclass
class Draw:
    """Persons drawn for one cell, with their registration."""

    frame: pd.DataFrame
    captured: np.ndarray
    induced_by: np.ndarray


def draw_persons(profile: SectorProfile, profiles: ProfileSet, year: int, n: int, rng: np.random.Generator) -> Draw:
    """``n`` persons of one sector and year, offered to the organisations."""
    scenario = profiles.scenario
    lo_lim, hi_lim = scenario.age_limits["min"], scenario.age_limits["max"]
    band = _draw(rng, profile.age_bands, V.AGE_BAND, n)
    edges = np.array([*V.AGE_BAND_EDGES, hi_lim + 1])
    lo = np.clip(edges[band], lo_lim, hi_lim)
    hi = np.clip(edges[band + 1] - 1, lo, hi_lim)
    age = lo + np.floor(rng.random(n) * (hi - lo + 1)).astype(np.int64)
    start, end = day(year), day(year, 12, 31)
    first = rng.integers(start, end + 1, size=n)
    birth = first - np.floor((age + rng.random(n)) * 365.25).astype(np.int64)
    nationality = _draw(rng, profile.nationality, V.NATIONALITY, n)
    eu = eu_mask()[nationality]
    res = profile.residence
    p_cpr = np.where(nationality == DK, res.cpr["DK"], np.where(eu, res.cpr["eu"], res.cpr["non_eu"]))
    has_cpr = rng.random(n) < p_cpr
    has_passport = (nationality != DK) & (rng.random(n) < res.passport)
    region_mix = profile.region or {"hovedstaden": 1.0}
    latent = rng.standard_normal(n)
    frame = pd.DataFrame(
        {
            "year": np.full(n, year, dtype=np.int16),
            "sector": pd.Categorical.from_codes(np.full(n, V.SECTOR.index(profile.sector), dtype=np.int8), categories=V.SECTOR),
            "sex": _draw(rng, profile.sex, V.SEX, n),
            "birth_day": birth,
            "first_contact": first,
            "year_end": np.full(n, end, dtype=np.int64),
            "nationality": nationality,
            "region": _draw(rng, region_mix, V.REGION, n),
            "exploitation": _draw(rng, profile.exploitation, V.EXPLOITATION, n),
            "recruitment_channel": _draw(rng, profile.recruitment_channel, V.RECRUITMENT_CHANNEL, n),
            "victim": rng.random(n) < profile.victim_share,
            "latent_visibility": latent.astype(np.float32),
            "has_cpr": has_cpr,
            "has_passport": has_passport,
        }
    )
    captured, induced = cap.register(cap.visibility_vector(profile.visibility), latent, scenario.capture.heterogeneity_sd,
                                     scenario.capture.dependence, rng, shared=scenario.capture.heterogeneity_shared)
    return Draw(frame, captured, induced)


def simulate_cell(profile: SectorProfile, profiles: ProfileSet, year: int, target: int, rng: np.random.Generator) -> Draw:
    """Draw persons until ``target`` of them are registered; all drawn so far are the cell."""
    if target <= 0:
        return draw_persons(profile, profiles, year, 0, rng)
    vis = cap.visibility_vector(profile.visibility)
    p_guess = max(1.0 - float(np.prod(1.0 - vis)), 1e-4)
    parts: list[Draw] = []
    got, drawn = 0, 0
    while got < target:
        if drawn > MAX_TRUE_PER_REGISTERED * target + 100_000:
            raise ConfigError(f"{profile.sector}.yaml: key visibility: so low that {drawn:,} persons were drawn "
                              f"for {got} of {target} registrations in {year}; raise the chances")
        rate = (got / drawn) if got else p_guess * 0.8
        m = int(math.ceil((target - got) / max(rate, 1e-4) * 1.1)) + 16
        d = draw_persons(profile, profiles, year, m, rng)
        parts.append(d)
        got += int(d.captured.any(axis=1).sum())
        drawn += m
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    captured = np.concatenate([p.captured for p in parts])
    induced = np.concatenate([p.induced_by for p in parts])
    registered = captured.any(axis=1)
    stop = int(np.flatnonzero(registered)[target - 1]) + 1
    return Draw(frame.iloc[:stop].reset_index(drop=True), captured[:stop], induced[:stop])


def simulate(profiles: ProfileSet, targets: dict[tuple[int, str], int], rng: np.random.Generator, progress=None) -> Draw:
    """The whole true population, cell by cell in (year, sector) order, with ``true_id``."""
    parts = []
    for i, ((year, sector), target) in enumerate(sorted(targets.items())):
        parts.append(simulate_cell(profiles.sectors[sector], profiles, year, target, rng))
        if progress:
            progress(i + 1, len(targets))
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    captured = np.concatenate([p.captured for p in parts]) if parts else np.zeros((0, cap.N_ORG), bool)
    induced = np.concatenate([p.induced_by for p in parts]) if parts else np.zeros((0, cap.N_ORG), np.int8)
    frame["age"] = _calendar_age(frame["birth_day"].to_numpy(np.int64), frame["first_contact"].to_numpy(np.int64))
    frame["registered"] = captured.any(axis=1)
    frame.insert(0, "true_id", np.arange(1, len(frame) + 1, dtype=np.int64))
    return Draw(frame, captured, induced)


def truth_table(pop: Draw) -> pd.DataFrame:
    """The population as written to ``truth/population.parquet`` (codes as categories)."""
    f = pop.frame
    out = pd.DataFrame(
        {
            "true_id": f["true_id"].to_numpy(),
            "year": f["year"].to_numpy(),
            "sector": pd.Categorical(f["sector"].to_numpy(), categories=V.SECTOR),
            "sex": pd.Categorical.from_codes(f["sex"].to_numpy(), categories=V.SEX),
            "birth_date": (f["birth_day"].to_numpy(np.int64) + EPOCH).astype("datetime64[s]"),
            "age": f["age"].to_numpy(),
            "minor": f["age"].to_numpy() < 18,
            "nationality": pd.Categorical.from_codes(f["nationality"].to_numpy(), categories=V.NATIONALITY),
            "region": pd.Categorical.from_codes(f["region"].to_numpy(), categories=V.REGION),
            "exploitation": pd.Categorical.from_codes(f["exploitation"].to_numpy(), categories=V.EXPLOITATION),
            "recruitment_channel": pd.Categorical.from_codes(f["recruitment_channel"].to_numpy(), categories=V.RECRUITMENT_CHANNEL),
            "victim": f["victim"].to_numpy(),
            "latent_visibility": f["latent_visibility"].to_numpy(),
            "has_cpr": f["has_cpr"].to_numpy(),
            "has_passport": f["has_passport"].to_numpy(),
            "registered": f["registered"].to_numpy(),
        }
    )
    for i, org in enumerate(V.ORGANISATION):
        out[f"list_{org}"] = pop.captured[:, i]
    return out
