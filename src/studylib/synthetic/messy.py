"""Messy exports (``--messy``): the mess a correct linker can undo, and nothing worse.

The messy model (rates in the scenario's ``messy:`` section):

* **Name spellings.** A share of records spell the given or family name differently:
  upper or lower case, accents dropped (é to e, but never the Danish letters), Danish
  letters written out (æ to ae, ø to oe, å to aa), extra spaces, hyphen and space swapped
  in compound names. A linker undoes every one of them by casefolding, writing Danish
  letters out *first* (å to aa, not to a), then dropping accents, then removing spaces,
  hyphens and apostrophes (the tests' reference linker does exactly that).
* **CPR numbers** are written with or without the hyphen (DDMMYY-SSSS or DDMMYYSSSS).
* **Missing linkage fields.** Each person has a main key: the CPR number if they have one,
  else passport number and nationality, else name and birth date. Secondary keys are
  missing on a share of records; the main key is on every record, except for a small share
  of persons (``broken_person_rate``) with one record that lacks it. Connected components
  over the three keys therefore rejoin at least ``1 - broken_person_rate`` of the persons.
* **Missing values** in optional fields that are not personal data, spelled as the
  catalogue's missing spellings (empty, ``NA``, ``-``, ``ukendt``).
* **Duplicate submissions**: a share of records submitted twice (new record id, same content).
* **Dialects**: each CSV file gets one of the scenario's dialects (Danish Excel: semicolon,
  decimal comma, dd-mm-yyyy, cp1252 or UTF-8 with BOM, CRLF; or ISO UTF-8). In cp1252 files
  letters cp1252 lacks lose their accents (:func:`strip_accents`).
"""

from __future__ import annotations

import unicodedata

import numpy as np

from studylib.synthetic.events import pick
from studylib.synthetic.population import draw

_DANISH = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "Æ": "Ae", "Ø": "Oe", "Å": "Aa"})
_KEEP = frozenset("æøåÆØÅ")

#: The spelling variants, in column order of :func:`name_variants`.
VARIANTS = ("as_registered", "upper", "lower", "no_accents", "danish_letters_written_out", "extra_spaces", "hyphen_space_swapped")


def strip_accents(text: str) -> str:
    """Drop combining accents (NFKD), keeping æ, ø and å (they are letters, not accents)."""
    out = []
    for ch in text:
        if ch.isascii() or ch in _KEEP:
            out.append(ch)
        else:
            out.append("".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)))
    return "".join(out)


def _spaced(name: str) -> str:
    return "  ".join(name.split(" ")) if " " in name else f" {name} "


def _swapped(name: str) -> str:
    if "-" in name:
        return name.replace("-", " ")
    if " " in name:
        return name.replace(" ", "-")
    return name


def name_variants(names: np.ndarray) -> np.ndarray:
    """A table (names x variants) of each pool name's spellings; column 0 is the name itself."""
    rows = [
        (s, s.upper(), s.lower(), strip_accents(s), s.translate(_DANISH), _spaced(s), _swapped(s))
        for s in map(str, names)
    ]
    return np.array(rows, dtype=object).reshape(len(names), len(VARIANTS))


def variant_kinds(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """Which spelling each of ``n`` records uses (0: as registered)."""
    kind = rng.integers(1, len(VARIANTS), n)
    return np.where(rng.random(n) < rate, kind, 0)


def keys_on_records(person: np.ndarray, has_cpr: np.ndarray, has_passport: np.ndarray, rate: float,
                    broken_rate: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Which linkage fields each record keeps (see the module docstring).

    Returns boolean arrays over records: ``cpr``, ``passport``, ``birth_date``, ``names``.
    """
    n = person.shape[0]
    cpr_p, pass_p = has_cpr[person], has_passport[person]
    main = np.where(cpr_p, 0, np.where(pass_p, 1, 2))  # 0 cpr, 1 passport, 2 name + birth date
    drop = rng.random((n, 3)) < rate
    drop[np.arange(n), main] = False
    # broken persons: one of their records loses the main key
    n_persons = has_cpr.shape[0]
    broken = rng.random(n_persons) < broken_rate
    counts = np.bincount(person, minlength=n_persons)
    broken &= counts >= 2
    if broken.any():
        rows = np.flatnonzero(broken[person])
        order = np.lexsort((rng.random(rows.size), person[rows]))
        rows = rows[order]
        firsts = rows[np.r_[True, person[rows][1:] != person[rows][:-1]]]
        drop[firsts, main[firsts]] = True
    namebd = drop[:, 2]
    which = rng.random(n) < 0.5  # a missing name+birth-date key: birth date or names missing
    return {
        "cpr": cpr_p & ~drop[:, 0],
        "passport": pass_p & ~drop[:, 1],
        "birth_date": ~(namebd & which),
        "names": ~(namebd & ~which),
    }


def duplicate_rows(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Row positions to emit, with the duplicated ones repeated (sorted)."""
    times = 1 + (rng.random(n) < rate).astype(np.int64)
    return np.repeat(np.arange(n), times)


def spell_missing(text: dict, shares: dict[str, float], rng: np.random.Generator) -> dict:
    """Empty cells spelled as the catalogue's missing spellings (empty, NA, -, ukendt)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = {}
    for name, arr in text.items():
        n = len(arr)
        fill = pa.array(pick(rng, shares, n), type=arr.type) if n else arr
        out[name] = pc.coalesce(arr, fill) if n else arr
    return out


def choose_dialects(rng: np.random.Generator, dialects, forms: tuple[str, ...]) -> dict:
    pick = draw(rng, [d.weight for d in dialects], len(forms))
    return {f: dialects[i] for f, i in zip(forms, pick)}
