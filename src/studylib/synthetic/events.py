"""The forms that follow a registration, in a plausible order with plausible dates.

Contacts (F01 outreach, F02 hotline, F03 referral) come from :mod:`capture`. Then, per
registered person: an identification interview (F04) after the first contact, a decision
(F05) after the interview, for identified persons a reflection period (F06, foreigners
without lawful residence) and a safe-house stay (F07) after the decision, services (F08 to
F12), a child protection notification (F13) for every minor, and the closure with its
outcome (F14) after everything else. Events after the export date are not in the export.

Each form comes out as a dict of columns with ``person`` (row of the registered persons),
``date`` (days since 1970), ``organisation``, ``region`` and the form's own fields, typed:
codes and text as strings (None when empty), booleans as ``boolean``, integers and dates
(days) as ``Int64``, decimals as ``Float64``. Personal data is added later (:mod:`pii`).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import numpy as np
import pandas as pd

from studylib.config import read_yaml
from studylib.data import vocabularies as V
from studylib.errors import ConfigError
from studylib.data.form_catalogue import form_catalogue
from studylib.synthetic.nationalities import eu_mask
from studylib.synthetic.population import DK, EPOCH, draw
from studylib.synthetic.profiles import ProfileSet

FORM_VALUES_PATH = files("studylib.synthetic") / "form_values.yaml"


@lru_cache(maxsize=1)
def form_values() -> dict:
    """The field-filling table, checked against the form catalogue."""
    raw = read_yaml(FORM_VALUES_PATH, "form values table")
    cat = form_catalogue()
    problems = []
    for code, fields in raw.items():
        try:
            form = cat.form(code)
        except KeyError as exc:
            problems.append(f"{FORM_VALUES_PATH}: key {code}: {exc}")
            continue
        org = fields.get("organisation")
        if org is not None:
            bad = sorted(set(org) - set(form.submitted_by))
            if bad:
                problems.append(f"{FORM_VALUES_PATH}: key {code}.organisation: {bad} do not submit {code}")
        by_name = {f.name: f for f in cat.fields_of(code)}
        for name, value in fields.items():
            field = by_name.get(name)
            if field is None or field.type != "code" or not isinstance(value, dict):
                continue
            allowed = set(field.allowed_codes() or ())
            tables = value.values() if all(isinstance(v, dict) for v in value.values()) else [value]
            for table in tables:
                bad = sorted(set(table) - allowed)
                if bad:
                    problems.append(f"{FORM_VALUES_PATH}: key {code}.{name}: unknown codes {bad}")
    if problems:
        raise ConfigError("\n".join(problems))
    return raw


# --- small vectorised draws -------------------------------------------------------------------


def pick(rng: np.random.Generator, shares: dict, n: int) -> np.ndarray:
    """``n`` codes (object array) drawn with the given shares."""
    return np.array(list(shares), dtype=object)[draw(rng, list(shares.values()), n)]


def chance(rng: np.random.Generator, p, n: int) -> np.ndarray:
    return rng.random(n) < p


def lag(rng: np.random.Generator, days, n: int) -> np.ndarray:
    return rng.integers(days[0], days[1] + 1, size=n)


def _bool(values: np.ndarray) -> pd.arrays.BooleanArray:
    return pd.array(values, dtype="boolean")


def _int(values, mask=None) -> pd.arrays.IntegerArray:
    arr = pd.array(np.asarray(values, dtype=np.int64), dtype="Int64")
    if mask is not None:
        arr[np.asarray(mask)] = pd.NA
    return arr


def _code(values, mask=None) -> np.ndarray:
    out = np.asarray(values, dtype=object).copy()
    if mask is not None:
        out[np.asarray(mask)] = None
    return out


def year_of(days: np.ndarray) -> np.ndarray:
    return (np.asarray(days, dtype=np.int64) + EPOCH).astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


# --- the forms --------------------------------------------------------------------------------


def _sector_seen(rng, sector: np.ndarray, p_unknown: float) -> np.ndarray:
    out = np.asarray(sector, dtype=object).copy()
    out[chance(rng, p_unknown, len(out))] = "unknown"
    return out


def contact_forms(reg: pd.DataFrame, contacts: pd.DataFrame, rng: np.random.Generator) -> dict[str, dict]:
    """F01, F02 and F03 from the contacts."""
    fv = form_values()
    out = {}
    for code in ("F01", "F02", "F03"):
        c = contacts[contacts["form"] == code]
        person = c["person"].to_numpy()
        n = len(c)
        org = np.array(V.ORGANISATION, dtype=object)[c["organisation"].to_numpy()]
        base = {
            "person": person,
            "date": c["date"].to_numpy(np.int64),
            "organisation": org,
        }
        sector = reg["sector"].to_numpy(object)[person]
        cfg = fv[code]
        if code == "F01":
            sexual = reg["exploitation"].to_numpy()[person] == V.EXPLOITATION.index("sexual")
            loc = np.where(sexual, pick(rng, cfg["location_type"]["sexual"], n), pick(rng, cfg["location_type"]["labour"], n))
            loc = np.where(org == "health_clinic", pick(rng, cfg["location_type"]["clinic"], n), loc)
            foreign = reg["nationality"].to_numpy()[person] != DK
            fields = {
                "sector": _sector_seen(rng, sector, cfg["sector_unknown"]),
                "location_type": _code(loc),
                "interpreter_used": _bool(foreign & chance(rng, cfg["interpreter_used"], n)),
                "follow_up_agreed": _bool(chance(rng, cfg["follow_up_agreed"], n)),
            }
        elif code == "F02":
            fields = {
                "caller_type": _code(pick(rng, cfg["caller_type"], n)),
                "sector": _sector_seen(rng, sector, cfg["sector_unknown"]),
                "call_minutes": _int(np.clip(1 + rng.poisson(cfg["call_minutes_mean"], n), 1, 600)),
                # the hotline asked outreach to follow up: always when outreach did (capture dependence)
                "outreach_requested": _bool(chance(rng, cfg["outreach_requested"], n) | reg["hotline_to_outreach"].to_numpy()[person]),
            }
        else:
            exp = np.array(V.EXPLOITATION, dtype=object)[reg["exploitation"].to_numpy()[person]]
            exp = np.where(chance(rng, cfg["exploitation_unknown"], n), "unknown", exp)
            fields = {
                "sector": _sector_seen(rng, sector, cfg["sector_unknown"]),
                "exploitation_suspected": _code(exp),
                "urgent": _bool(chance(rng, cfg["urgent"], n)),
            }
        out[code] = {**base, **fields}
    return out


def _indicator_lists(reg: pd.DataFrame, who: np.ndarray, profiles: ProfileSet, rng: np.random.Generator) -> np.ndarray:
    """The F04 checklist of each interviewed person: indicator codes joined by the separator."""
    from studylib.indicators import catalogue

    table = catalogue()
    spec = table.attrs["spec"]
    sep = form_catalogue().export.multi_separator
    dims = [d["code"] for d in spec["dimensions"]]
    n = len(who)
    out = np.full(n, None, dtype=object)
    if n == 0:
        return out
    age = reg["age"].to_numpy()[who]
    family = np.array([spec["exploitation"].get(e, "labour") for e in V.EXPLOITATION], dtype=object)[reg["exploitation"].to_numpy()[who]]
    rule = np.where(age < spec["child_under"], "child", "adult")
    victim = reg["victim"].to_numpy()[who]
    sectors = reg["sector"].to_numpy(object)[who]
    sector_codes = sorted(set(sectors))
    for list_name, info in spec["lists"].items():
        rows = np.flatnonzero((rule == info["rule"]) & (family == info["exploitation"]))
        if rows.size == 0:
            continue
        items = table[table["list"] == list_name]
        codes = items["code"].to_numpy(object)
        dim_idx = np.array([dims.index(d) for d in items["dimension"]])
        # probability table: (sector, victim) x indicator
        probs = np.zeros((len(sector_codes), 2, len(codes)), dtype=np.float32)
        for si, s in enumerate(sector_codes):
            ind = profiles.sectors[s].indicators
            for vi, part in enumerate((ind.non_victim, ind.victim)):
                per_dim = np.array([part.get(d, 0.0) for d in dims], dtype=np.float32)
                probs[si, vi] = per_dim[dim_idx]
        s_idx = np.searchsorted(np.array(sector_codes, dtype=object), sectors[rows])
        v_idx = victim[rows].astype(np.int64)
        for start in range(0, rows.size, 100_000):
            part = slice(start, start + 100_000)
            p = probs[s_idx[part], v_idx[part]]
            ticked = rng.random(p.shape, dtype=np.float32) < p
            r, c = np.nonzero(ticked)  # row-major: each row's codes are contiguous
            if r.size == 0:
                continue
            cut = np.flatnonzero(np.diff(r)) + 1
            starts, ends = np.r_[0, cut], np.r_[cut, r.size]
            chosen = codes[c].tolist()
            joined = [sep.join(chosen[a:b]) for a, b in zip(starts.tolist(), ends.tolist())]
            out[rows[part][r[starts]]] = np.array(joined, dtype=object)
    return out


def _recruitment(channel: np.ndarray, cfg: dict, rng: np.random.Generator) -> tuple[pd.arrays.FloatingArray, np.ndarray]:
    """The recruitment fee (DKK, 0 when none was paid) and who the recruiter was, per interviewed
    person, by recruitment channel (codes of :data:`~studylib.data.vocabularies.RECRUITMENT_CHANNEL`).

    ``rng`` is a stream of its own (the caller jumps the events stream), so the values drawn
    before these fields existed stay as they were."""
    codes = np.array(V.RECRUITMENT_CHANNEL, dtype=object)[channel]
    m = len(codes)
    share = np.array([cfg["recruitment_fee_share"].get(c, 0.0) for c in codes], dtype=float)
    amount = np.round(cfg["recruitment_fee_median_dkk"] * np.exp(cfg["claimed_debt_sigma"] * rng.standard_normal(m)), -2)
    fee = pd.array(np.where(rng.random(m) < share, amount, 0.0), dtype="Float64")
    relation = np.full(m, "unknown", dtype=object)
    for code, shares in cfg["recruiter_relation"].items():
        rows = np.flatnonzero(codes == code)
        relation[rows] = pick(rng, shares, rows.size)
    return fee, relation


def pathway_forms(reg: pd.DataFrame, contacts: pd.DataFrame, profiles: ProfileSet, rng: np.random.Generator, export_day: int) -> dict[str, dict]:
    """F04 to F14 for the registered persons."""
    pw = profiles.scenario.pathway
    fv = form_values()
    n = len(reg)
    persons = np.arange(n)
    first = reg["first_contact"].to_numpy(np.int64)
    victim = reg["victim"].to_numpy()
    nationality = reg["nationality"].to_numpy()
    has_cpr = reg["has_cpr"].to_numpy()
    eu = eu_mask()[nationality]
    undocumented = ~has_cpr & ~eu
    foreign = nationality != DK
    sector = reg["sector"].to_numpy(object)
    exploitation = np.array(V.EXPLOITATION, dtype=object)[reg["exploitation"].to_numpy()]
    out: dict[str, dict] = {}

    # F04 identification interview
    interviewed = rng.random(n) < np.where(victim, pw.interview["victim"], pw.interview["non_victim"])
    iv = persons[interviewed]
    iv_date = first[iv] + lag(rng, pw.interview_lag_days, iv.size)
    m = iv.size
    cfg = fv["F04"]
    arrival = year_of(first[iv]) - lag(rng, cfg["arrival_years_before"], m)
    debt_median = np.where(exploitation[iv] == "sexual", cfg["claimed_debt_median_dkk"]["sexual"], cfg["claimed_debt_median_dkk"]["other"])
    debt = np.round(debt_median * np.exp(cfg["claimed_debt_sigma"] * rng.standard_normal(m)), 2)
    informed = chance(rng, pw.research_informed, m)
    agree = chance(rng, pw.research_agree, m)
    fee, relation = _recruitment(reg["recruitment_channel"].to_numpy()[iv], cfg, np.random.Generator(rng.bit_generator.jumped()))
    out["F04"] = {
        "person": iv,
        "date": iv_date,
        "organisation": pick(rng, pw.interview_by, m),
        "sector": _code(sector[iv]),
        "exploitation": _code(exploitation[iv]),
        "recruitment_channel": _code(np.array(V.RECRUITMENT_CHANNEL, dtype=object)[reg["recruitment_channel"].to_numpy()[iv]]),
        "arrival_year": _int(arrival, mask=~foreign[iv]),
        "claimed_debt_dkk": pd.array(np.where(chance(rng, cfg["claimed_debt_share"], m), debt, np.nan), dtype="Float64"),
        "recruitment_fee_dkk": fee,
        "recruiter_relation": _code(relation),
        "interpreter_used": _bool(foreign[iv] & chance(rng, pw.interpreter, m)),
        "indicators": _indicator_lists(reg, iv, profiles, rng),
        "research_informed": _bool(informed),
        "research_consent": _code(np.where(informed, np.where(agree, "yes", "no"), "unknown")),
    }

    # F05 identification decision
    decision = np.where(victim[iv], pick(rng, pw.decision["victim"], m), pick(rng, pw.decision["non_victim"], m))
    dec_date = iv_date + lag(rng, pw.decision_lag_days, m)
    by_immigration = undocumented[iv] & (year_of(dec_date) >= pw.immigration_decides_since)
    out["F05"] = {
        "person": iv,
        "date": dec_date,
        "organisation": _code(np.where(by_immigration, "immigration_service", "centre_outreach")),
        "decision": _code(decision),
        "exploitation": _code(exploitation[iv]),
        "sector": _code(sector[iv]),
    }
    identified = decision == "identified"
    idp = iv[identified]
    id_date = dec_date[identified]
    k = idp.size
    last_date = np.where(decision != "pending", dec_date, np.iinfo(np.int64).min)  # for closure

    # F06 reflection period: identified persons without lawful residence
    cfg = fv["F06"]
    sel = ~has_cpr[idp] & foreign[idp]
    rp, r_date = idp[sel], id_date[sel]
    j = rp.size
    accepted = chance(rng, pw.reflection_accept, j)
    start = r_date + lag(rng, cfg["start_lag_days"], j)
    before = year_of(start) < pw.reflection_rule_change
    ext_b = pick(rng, {int(a): b for a, b in cfg["extensions_before"].items()}, j).astype(np.int64)
    ext_s = pick(rng, {int(a): b for a, b in cfg["extensions_since"].items()}, j).astype(np.int64)
    ext = np.where(before, ext_b, ext_s)
    days = np.where(before, np.array(cfg["days_before"])[np.minimum(ext_b, len(cfg["days_before"]) - 1)],
                    np.array(cfg["days_since"])[np.minimum(ext_s, len(cfg["days_since"]) - 1)])
    out["F06"] = {
        "person": rp,
        "date": r_date,
        "organisation": pick(rng, cfg["organisation"], j),
        "offered": _bool(np.ones(j, bool)),
        "accepted": _bool(accepted),
        "start_date": _int(start, mask=~accepted),
        "days_granted": _int(days, mask=~accepted),
        "extensions": _int(ext, mask=~accepted),
    }
    reflection_end = np.full(n, np.iinfo(np.int64).min)
    reflection_end[rp[accepted]] = (start + days)[accepted]

    # F07 safe house
    cfg = fv["F07"]
    sel = chance(rng, pw.safe_house, k)
    sp, s_date = idp[sel], id_date[sel]
    j = sp.size
    s_start = s_date + lag(rng, cfg["start_lag_days"], j)
    s_end = s_start + 7 + np.floor(rng.exponential(pw.safe_house_stay_days, j)).astype(np.int64)
    sex = np.array(V.SEX, dtype=object)[reg["sex"].to_numpy()[sp]]
    minor = reg["age"].to_numpy()[sp] < 18
    house = np.where(sex == "male", "men", np.where(sex == "female", "women", np.where(chance(rng, 0.5, j), "women", "men")))
    house = np.where((house == "women") & chance(rng, cfg["families"], j), "families", house)
    house = np.where(minor, "minors", house)
    out["F07"] = {
        "person": sp,
        "date": s_start,
        "organisation": pick(rng, cfg["organisation"], j),
        "house_type": _code(house),
        "start_date": _int(s_start),
        "end_date": _int(s_end, mask=s_end > export_day),
    }
    safe_end = np.full(n, np.iinfo(np.int64).min)
    safe_end[sp] = s_end

    # F08-F12 services after the decision
    decided = iv[decision != "pending"]
    d_date = dec_date[decision != "pending"]
    d_ident = decision[decision != "pending"] == "identified"
    service_last = np.full(n, np.iinfo(np.int64).min)
    returned = np.zeros(n, bool)
    for code in ("F08", "F09", "F10", "F11", "F12"):
        share = pw.services[code]
        cfg = fv[code]
        p = np.where(d_ident, share.identified, share.other)
        if code == "F12":
            p = np.where(undocumented[decided] & (nationality[decided] != V.NATIONALITY.index("XX")), p, 0.0)
        sel = chance(rng, p, decided.size) if decided.size else np.zeros(0, bool)
        sp, s_date = decided[sel], d_date[sel] + lag(rng, pw.service_lag_days, int(sel.sum()))
        j = sp.size
        base = {"person": sp, "date": s_date, "organisation": pick(rng, cfg["organisation"], j)}
        if code == "F08":
            fields = {"setting": _code(pick(rng, cfg["setting"], j)), "referral_onward": _bool(chance(rng, cfg["referral_onward"], j))}
        elif code == "F09":
            fields = {"topic": _code(pick(rng, cfg["topic"], j)), "lawyer_assigned": _bool(chance(rng, cfg["lawyer_assigned"], j))}
        elif code == "F10":
            fields = {"sessions": _int(np.clip(1 + rng.poisson(cfg["sessions_mean"] - 1, j), 1, 100))}
        elif code == "F11":
            fields = {"sessions": _int(np.clip(1 + rng.poisson(cfg["sessions_mean"] - 1, j), 1, 100)),
                      "topic": _code(pick(rng, cfg["topic"], j))}
        else:
            ret = s_date + lag(rng, cfg["return_lag_days"], j)
            lo, hi = cfg["support_dkk"]
            fields = {"return_country": _code(np.array(V.NATIONALITY, dtype=object)[nationality[sp]]),
                      "return_date": _int(ret),
                      "reintegration_partner": _bool(chance(rng, cfg["reintegration_partner"], j)),
                      "support_dkk": pd.array(np.round(rng.uniform(lo, hi, j), 2), dtype="Float64")}
            returned[sp] = True
            np.maximum.at(service_last, sp, ret)
        np.maximum.at(service_last, sp, s_date)
        out[code] = {**base, **fields}

    # F13 child protection notification: every registered minor
    cfg = fv["F13"]
    minors = persons[reg["age"].to_numpy() < 18]
    j = minors.size
    # the notification comes while the person is still a minor: at the latest the day before 18
    adult_day = _eighteenth_birthday(reg["birth_day"].to_numpy(np.int64)[minors]) - 1
    out["F13"] = {
        "person": minors,
        "date": np.minimum(np.minimum(first[minors] + lag(rng, pw.child_notice_lag_days, j), adult_day), export_day),
        "organisation": pick(rng, cfg["organisation"], j),
        "unaccompanied": _bool(chance(rng, pw.unaccompanied, j)),
        "guardian_appointed": _bool(chance(rng, fv["F13"]["guardian_appointed"], j)),
    }

    # F14 closure after everything else, for decided cases
    end = np.full(n, np.iinfo(np.int64).min)
    end[iv] = last_date
    end = np.maximum.reduce([end, reflection_end, safe_end, service_last])
    cp = decided
    j = cp.size
    c_date = end[cp] + lag(rng, pw.closure_lag_days, j)
    outcome = np.where(d_ident, pick(rng, pw.outcome["identified"], j), pick(rng, pw.outcome["not_identified"], j))
    outcome = np.where(returned[cp], "prepared_return", outcome)
    out["F14"] = {
        "person": cp,
        "date": c_date,
        "organisation": pick(rng, fv["F14"]["organisation"], j),
        "outcome": _code(outcome),
        "closure_reason": np.full(j, None, dtype=object),
    }
    return out


def take(columns: dict, rows: np.ndarray) -> dict:
    """The given rows of a form's columns (numpy or pandas nullable arrays)."""
    return {k: v[rows] for k, v in columns.items()}


def all_forms(reg: pd.DataFrame, contacts: pd.DataFrame, profiles: ProfileSet, rng: np.random.Generator, export_day: int) -> dict[str, dict]:
    """Every form's columns (before personal data), only events up to the export day, with region."""
    forms = {**contact_forms(reg, contacts, rng), **pathway_forms(reg, contacts, profiles, rng, export_day)}
    region = np.array(V.REGION, dtype=object)[reg["region"].to_numpy()]
    out = {}
    for code in V.FORM_CODES:
        cols = take(forms[code], np.flatnonzero(np.asarray(forms[code]["date"]) <= export_day))
        ordered = {k: cols[k] for k in ("person", "date", "organisation")}
        ordered["region"] = region[cols["person"]]
        ordered.update({k: v for k, v in cols.items() if k not in ordered})
        out[code] = ordered
    return out


def _eighteenth_birthday(birth_days: np.ndarray) -> np.ndarray:
    """Day numbers (days since 1970-01-01) of the 18th birthdays (from 29 February: 28 February)."""
    born = pd.DatetimeIndex((birth_days + EPOCH).astype("datetime64[D]"))
    return ((born + pd.DateOffset(years=18)).to_numpy().astype("datetime64[D]") - EPOCH).astype(np.int64)
