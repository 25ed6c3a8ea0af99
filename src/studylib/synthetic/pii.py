"""Fake personal data, fast: names, CPR and passport numbers, phones, e-mails, addresses, notes.

Faker is called only to fill small pools, once per locale (names in the locale that matches
the nationality, transliterated to Latin letters the way a Danish database stores them;
Danish addresses); persons then draw from the pools with vectorised numpy sampling. CPR
numbers are built from the birth date and sex (unique per person), passport numbers from
unique random integers in the shape of the nationality's passports. Pools are made with
fixed Faker seeds (so they are cached per process); which person gets what depends on the
run's seed. Everything is invented.
"""

from __future__ import annotations

import unicodedata
import zlib
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

import numpy as np
import pandas as pd
from faker import Faker
from faker.decode import unidecode

from studylib.config import read_yaml
from studylib.data import vocabularies as V
from studylib.synthetic.nationalities import nationalities
from studylib.synthetic.population import EPOCH

PII_PATH = files("studylib.synthetic") / "pii.yaml"
DANISH_LETTERS = frozenset("æøåÆØÅ")
FEMALE, MALE = 0, 1


@lru_cache(maxsize=1)
def pii_config() -> dict:
    return read_yaml(PII_PATH, "fake personal data table")


def _stable_seed(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode("utf-8"))


def _latin_char(ch: str) -> str:
    """A letter a Danish register can hold: ASCII, æøå, or a letter with accents that NFKD
    decomposes (so a linker that strips accents gets the same base); anything else
    (Ł, ß, ı, ...) is transliterated."""
    if ch.isascii() or ch in DANISH_LETTERS:
        return ch
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if base and base.isascii():
        return ch
    return unidecode(ch)


def latin_name(name: str, join_syllables: bool = False) -> str:
    """A name from any Faker locale as stored in the register: Latin letters, single spaces."""
    if any(ch.isalpha() and "LATIN" not in unicodedata.name(ch, "") for ch in name):
        tokens = [unidecode(t).strip() for t in name.split()]
        if join_syllables:
            tokens = ["".join(t.split()).capitalize() for t in tokens]
        name = " ".join(t for t in tokens if t)
    name = "".join(_latin_char(ch) for ch in name)
    name = " ".join(name.split())
    return name[:1].upper() + name[1:]


def _faker(locale: str, purpose: str) -> Faker:
    fake = Faker(locale)
    fake.seed_instance(_stable_seed(locale, purpose))
    return fake


def _draw_unique(make, n: int) -> list[str]:
    seen = dict.fromkeys(make() for _ in range(n))
    return [s for s in seen if s]


@lru_cache(maxsize=None)
def name_pool(nationality: str) -> dict[tuple[str, int], tuple[str, ...]]:
    """Given and family names of one nationality, by sex: {("first"|"last", FEMALE|MALE): names}."""
    cfg = pii_config()["pool"]
    info = nationalities()[nationality]
    out = {}
    for kind, locales, size in (("first", info.given_name_locales, cfg["first_names"]), ("last", info.family_name_locales, cfg["last_names"])):
        per_locale = max(1, -(-size // len(locales)))
        for sex, suffix in ((FEMALE, "female"), (MALE, "male")):
            names: list[str] = []
            for loc in locales:
                fake = _faker(loc, f"{kind}_{suffix}")
                method = getattr(fake, f"{kind}_name_{suffix}", None) or getattr(fake, f"{kind}_name")
                names += _draw_unique(lambda: latin_name(method(), info.join_syllables), per_locale)
            names = list(dict.fromkeys(names))
            if kind == "first" and not info.join_syllables and len(names) > 1:
                rng = np.random.default_rng(_stable_seed(nationality, kind, suffix))
                k = int(round(cfg["compound_first_rate"] * len(names)))
                a, b = rng.integers(0, len(names), k), rng.integers(0, len(names), k)
                joiner = np.where(rng.random(k) < 0.5, "-", " ")
                names += [f"{names[i]}{j}{names[m]}" for i, m, j in zip(a, b, joiner) if i != m]
                names = list(dict.fromkeys(names))
            out[(kind, sex)] = tuple(names)
    return out


@lru_cache(maxsize=1)
def address_pool() -> tuple[str, ...]:
    fake = _faker("da_DK", "address")
    n = pii_config()["pool"]["addresses"]
    return tuple(_draw_unique(lambda: f"{fake.street_address()}, {fake.postcode()} {fake.city()}", n))


# --- persons ----------------------------------------------------------------------------------


@dataclass
class PersonPII:
    """Personal data of the registered persons (one entry per person), plus the name pool."""

    names: np.ndarray        # the pool of canonical names (object)
    first: np.ndarray        # index into names
    last: np.ndarray         # index into names
    cpr: np.ndarray          # "DDMMYY-SSSS" or None
    passport: np.ndarray     # or None
    phone: np.ndarray        # or None
    email: np.ndarray        # or None
    address: np.ndarray      # or None


def _sample_names(kind: str, nat: np.ndarray, sexkey: np.ndarray, rng, names_index: dict) -> np.ndarray:
    out = np.zeros(nat.shape[0], dtype=np.int64)
    for code in np.unique(nat):
        for sex in (FEMALE, MALE):
            rows = np.flatnonzero((nat == code) & (sexkey == sex))
            if rows.size == 0:
                continue
            idx = names_index[(V.NATIONALITY[code], kind, sex)]
            out[rows] = idx[rng.integers(0, idx.size, rows.size)]
    return out


def cpr_numbers(birth_day: np.ndarray, sex: np.ndarray, has: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unique CPR numbers DDMMYY-SSSS: the 7th digit gives the century (0-3 for 1900-1999,
    4 for 2000-2036), the last digit's parity the sex (even female, odd male)."""
    n = birth_day.shape[0]
    out = np.full(n, None, dtype=object)
    rows = np.flatnonzero(has)
    if rows.size == 0:
        return out
    b = (birth_day[rows] + EPOCH).astype("datetime64[D]")
    year = b.astype("datetime64[Y]").astype(np.int64) + 1970
    female = sex[rows] == V.SEX.index("female")
    male = sex[rows] == V.SEX.index("male")
    parity = np.where(female, 0, np.where(male, 1, rng.integers(0, 2, rows.size)))
    # rank within (birth day, parity) so that serials never repeat
    key = birth_day[rows] * 2 + parity
    order = np.lexsort((rng.random(rows.size), key))
    sorted_key = key[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_key)) + 1]
    rank_sorted = np.arange(rows.size) - np.repeat(starts, np.diff(np.r_[starts, rows.size]))
    rank = np.empty(rows.size, dtype=np.int64)
    rank[order] = rank_sorted
    group_offset = np.empty(rows.size, dtype=np.int64)  # one random start per (day, parity)
    group_offset[order] = np.repeat(rng.integers(0, 2000, starts.size), np.diff(np.r_[starts, rows.size]))
    modern = year >= 2000
    slots = np.where(modern, 500, 2000)  # serials 4000-4999 or 0000-3999, per parity
    offset = group_offset
    j = (offset + rank) % slots
    serial = np.where(modern, 4000, 0) + 2 * j + parity
    s = np.datetime_as_string(b)  # YYYY-MM-DD
    cut = np.strings.slice
    ddmmyy = np.strings.add(np.strings.add(np.strings.add(cut(s, 8, 10), cut(s, 5, 7)), cut(s, 2, 4)), "-")
    out[rows] = np.strings.add(ddmmyy, np.strings.zfill(serial.astype(str), 4)).astype(object)
    return out


def passport_numbers(nat: np.ndarray, has: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unique passport numbers shaped like the nationality's (L letter, D digit)."""
    n = nat.shape[0]
    out = np.full(n, None, dtype=object)
    rows = np.flatnonzero(has)
    if rows.size == 0:
        return out
    values = rng.integers(0, 10**12, rows.size, dtype=np.int64)
    _, first = np.unique(values, return_index=True)
    dup = np.setdiff1d(np.arange(rows.size), first)
    while dup.size:  # redraw the rare repeats
        values[dup] = rng.integers(0, 10**12, dup.size, dtype=np.int64)
        _, first = np.unique(values, return_index=True)
        dup = np.setdiff1d(np.arange(rows.size), first)
    table = nationalities()
    letters = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ"))
    digits = np.array(list("0123456789"))
    for code in np.unique(nat[rows]):
        sel = np.flatnonzero(nat[rows] == code)
        shape = table[V.NATIONALITY[code]].passport
        v = values[sel].copy()
        chars = []
        for c in reversed(shape):
            alphabet = letters if c == "L" else digits
            chars.append(alphabet[v % alphabet.size])
            v //= alphabet.size
        out[rows[sel]] = ["".join(t) for t in zip(*reversed(chars))]
    return out


def _phones(nat: np.ndarray, has: np.ndarray, danish: np.ndarray, rng) -> np.ndarray:
    n = nat.shape[0]
    out = np.full(n, None, dtype=object)
    table = nationalities()
    cc = np.array([table[c].calling_code or "45" for c in V.NATIONALITY], dtype=object)
    code = np.where(danish, "45", cc[nat])
    num = rng.integers(20_000_000, 99_999_999, n).astype(str).astype(object)
    foreign_tail = rng.integers(100, 999, n).astype(str).astype(object)
    local = np.where(code == "45", num, num + foreign_tail)
    out[has] = ("+" + code + " " + local)[has]
    return out


def _ascii_lower(names: np.ndarray) -> np.ndarray:
    return np.array(["".join(ch for ch in unidecode(s).lower() if ch.isalnum()) for s in names], dtype=object)


def person_pii(reg: pd.DataFrame, rng: np.random.Generator) -> PersonPII:
    """Personal data for each registered person (vectorised draws from the pools)."""
    cfg = pii_config()
    n = len(reg)
    nat = reg["nationality"].to_numpy()
    sex = reg["sex"].to_numpy()
    sexkey = np.where(sex == V.SEX.index("female"), FEMALE, np.where(sex == V.SEX.index("male"), MALE, rng.integers(0, 2, n)))
    # one pool array with index ranges per (nationality, kind, sex)
    chunks, names_index, offset = [], {}, 0
    for code in np.unique(nat):
        pool = name_pool(V.NATIONALITY[code])
        for (kind, s), names in pool.items():
            chunks.append(np.array(names, dtype=object))
            names_index[(V.NATIONALITY[code], kind, s)] = np.arange(offset, offset + len(names))
            offset += len(names)
    names = np.concatenate(chunks) if chunks else np.zeros(0, dtype=object)
    first = _sample_names("first", nat, sexkey, rng, names_index)
    last = _sample_names("last", nat, sexkey, rng, names_index)
    has = cfg["has"]
    cpr = cpr_numbers(reg["birth_day"].to_numpy(np.int64), sex, reg["has_cpr"].to_numpy(), rng)
    passport = passport_numbers(nat, reg["has_passport"].to_numpy(), rng)
    phone = _phones(nat, rng.random(n) < has["phone"], (nat == V.NATIONALITY.index("DK")) | (rng.random(n) < has["danish_phone"]), rng)
    ascii_names = _ascii_lower(names) if n else names
    domains = np.array(cfg["email_domains"], dtype=object)
    number = np.where(rng.random(n) < 0.5, rng.integers(1, 99, n).astype(str).astype(object), "")
    first_token = np.array([s.split(" ")[0].split("-")[0] for s in names], dtype=object) if n else names
    first_ascii = _ascii_lower(first_token) if n else names
    email = first_ascii[first] + "." + ascii_names[last] + number + "@" + domains[rng.integers(0, domains.size, n)] if n else np.zeros(0, object)
    email = np.where(rng.random(n) < has["email"], email, None)
    addresses = np.array(address_pool(), dtype=object)
    address = np.where(rng.random(n) < has["address"], addresses[rng.integers(0, addresses.size, n)], None)
    return PersonPII(names=names, first=first, last=last, cpr=cpr, passport=passport, phone=phone, email=email, address=address)


def free_text(templates: list[str], given_names: np.ndarray, present: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Short notes from templates; ``{first}`` becomes the person's given name as registered."""
    n = given_names.shape[0]
    out = np.full(n, None, dtype=object)
    pick = rng.integers(0, len(templates), n)
    for i, template in enumerate(templates):
        rows = np.flatnonzero(present & (pick == i))
        if rows.size == 0:
            continue
        if "{first}" in template:
            head, _, tail = template.partition("{first}")
            given = np.where(pd.isna(given_names[rows]), "personen", given_names[rows])
            out[rows] = head + given.astype(object) + tail
        else:
            out[rows] = template
    return out
