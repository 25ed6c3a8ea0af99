"""Training cases and their vignettes: synthetic persons told as short narratives, with a key.

A training :class:`Case` is drawn from one seed with the generator's sector profiles
(``synthetic_data/profiles/``: the sector mix of the scenario, then the sector's sex, age,
nationality, exploitation and victim share) and its indicators with the profile's chances
per dimension on the person's catalogue list (the child lists for a person under 18), as
``studylib synth`` ticks the F04 checklist. A vignette tells at most ``max_indicators`` of
them, chosen so that they classify as the whole checklist does (see :func:`_told`), in
120-250 words.

:func:`vignette` tells a case in English or Danish from the phrasings in ``vignettes.yaml``
(several per indicator, chosen by the case's seed; none names an indicator). The first
paragraph is the person's life and recruitment (the recruitment dimensions), the second the
work and life in Denmark (the destination dimensions), then one line on who met them.

:func:`answer_keys` gives the key of each case: the indicators the narrative was built from,
their dimensions and grades on the person's list, and the ILO classification
(:func:`studylib.indicators.classify`, adult or child rule). The same seed gives the same
case, the same text and the same key.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate
from pathlib import Path

import numpy as np
import pandas as pd

from studylib.config import read_yaml
from studylib.data import vocabularies as V
from studylib.errors import ConfigError

PHRASINGS_PATH = Path(__file__).with_name("vignettes.yaml")
LANGUAGES = ("en", "da")
#: Fewest and most words of a vignette.
MIN_WORDS, MAX_WORDS = 120, 250
#: Most indicators one vignette tells.
MAX_INDICATORS = 9
#: Ages of a child case drawn on request (the scenario's youngest age is 12).
CHILD_AGES = (12, 17)
#: Dimensions told in the first paragraph (recruitment); the rest go in the second.
RECRUITMENT_KIND = "recruitment"

_WORD = re.compile(r"\w+(?:[-'’]\w+)*")


class VignetteError(ConfigError):
    """The phrasings file (or a request for a vignette) is unusable; the message says where."""


@dataclass(frozen=True)
class Case:
    """One synthetic person to learn on; everything follows from ``seed``."""

    seed: int
    sector: str
    exploitation: str
    sex: str
    age: int
    nationality: str
    name: str
    pronouns: str  # female or male: the pronoun set the narrative uses
    organisation: str
    victim: bool  # the generator's truth (which indicator chances were used)
    list_name: str  # the catalogue list of the person (adult/child, labour/sexual)
    drawn: tuple[str, ...] = field(repr=False)  # the whole checklist drawn
    indicators: tuple[str, ...] = ()  # what the vignette tells (catalogue order)

    @property
    def child(self) -> bool:
        return self.list_name.startswith("child")


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


# --- the data files ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _catalogue():
    from studylib.indicators import catalogue

    return catalogue()


@lru_cache(maxsize=1)
def _catalogue_lookup() -> dict:
    table = _catalogue()
    spec = table.attrs["spec"]
    dims = {d["code"]: d for d in spec["dimensions"]}
    codes = list(pd.unique(table["code"]))
    order = {c: i for i, c in enumerate(codes)}
    dimension = dict(zip(table["code"], table["dimension"]))
    text = dict(zip(table["code"], table["text"]))
    on_list = {name: tuple(table.loc[(table["list"] == name) & table["grade"].notna(), "code"]) for name in spec["lists"]}
    grade = {(r.code, r.list): r.grade for r in table.itertuples() if r.grade is not None}
    return {"spec": spec, "dims": dims, "codes": codes, "order": order, "dimension": dimension,
            "text": text, "on_list": on_list, "grade": grade, "version": table.attrs["version"]}


def _need(mapping, key: str, where: str):
    if not isinstance(mapping, dict) or key not in mapping:
        raise VignetteError(f"{PHRASINGS_PATH}: key {where}{key}: missing")
    return mapping[key]


def _phrase_list(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and s.strip() for s in value):
        raise VignetteError(f"{PHRASINGS_PATH}: key {where}: must be a non-empty list of sentences")
    return tuple(value)


@lru_cache(maxsize=1)
def phrasings() -> dict:
    """The checked content of ``vignettes.yaml`` (a VignetteError names the key at fault)."""
    raw = read_yaml(PHRASINGS_PATH, "vignette phrasings")
    if not isinstance(raw, dict):
        raise VignetteError(f"{PHRASINGS_PATH}: must be a mapping")
    look = _catalogue_lookup()
    out: dict = {"version": str(_need(raw, "version", "")), "indicators": {}, "cues": {}}
    for part in ("intro", "work_line", "closing"):
        section = _need(raw, part, "")
        out[part] = {lang: _phrase_list(_need(section, lang, f"{part}."), f"{part}.{lang}") for lang in LANGUAGES}
    filler = _need(raw, "filler", "")
    out["filler"] = {stage: {lang: _phrase_list(_need(_need(filler, stage, "filler."), lang, f"filler.{stage}."), f"filler.{stage}.{lang}")
                             for lang in LANGUAGES} for stage in ("recruitment", "destination")}
    out["pronouns"] = {lang: _need(_need(raw, "pronouns", ""), lang, "pronouns.") for lang in LANGUAGES}
    out["countries"] = {lang: _need(_need(raw, "countries", ""), lang, "countries.") for lang in LANGUAGES}
    for lang in LANGUAGES:
        missing = sorted(set(V.NATIONALITY) - set(out["countries"][lang]))
        if missing:
            raise VignetteError(f"{PHRASINGS_PATH}: key countries.{lang}: no entry for {', '.join(missing)}")
    out["sectors"] = _need(raw, "sectors", "")
    out["organisations"] = _need(raw, "organisations", "")
    missing_orgs = sorted(set(V.ORGANISATION) - set(out["organisations"]))
    if missing_orgs:
        raise VignetteError(f"{PHRASINGS_PATH}: key organisations: no entry for {', '.join(missing_orgs)}")
    items = _need(raw, "indicators", "")
    unknown = sorted(set(items) - set(look["codes"]))
    missing = [c for c in look["codes"] if c not in items]
    if unknown or missing:
        raise VignetteError(f"{PHRASINGS_PATH}: key indicators: "
                            + "; ".join(x for x in (f"not in catalogue {look['version']}: {', '.join(unknown)}" if unknown else "",
                                                     f"no phrasings for {', '.join(missing)}" if missing else "") if x))
    for code in look["codes"]:
        entry = items[code]
        out["indicators"][code] = {lang: _phrase_list(_need(entry, lang, f"indicators.{code}."), f"indicators.{code}.{lang}") for lang in LANGUAGES}
        cues = _need(entry, "cues", f"indicators.{code}.")
        compiled = {}
        for lang in LANGUAGES:
            patterns = _phrase_list(_need(cues, lang, f"indicators.{code}.cues."), f"indicators.{code}.cues.{lang}")
            try:
                compiled[lang] = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
            except re.error as exc:
                raise VignetteError(f"{PHRASINGS_PATH}: key indicators.{code}.cues.{lang}: not a regular expression: {exc}") from None
        out["cues"][code] = compiled
    return out


@lru_cache(maxsize=1)
def _profiles():
    from studylib import paths
    from studylib.synthetic import load_profiles

    return load_profiles(paths.profiles_dir())


# --- drawing a case -----------------------------------------------------------------------------


def _pick(rng: np.random.Generator, shares: dict[str, float]) -> str:
    keys = list(shares)
    cumulative = list(accumulate(shares[k] for k in keys))
    return keys[min(bisect_right(cumulative, rng.random() * cumulative[-1]), len(keys) - 1)]


#: Given names per nationality and sex a vignette draws from.
NAMES_PER_POOL = 40


@lru_cache(maxsize=None)
def given_names(nationality: str, sex: str) -> tuple[str, ...]:
    """Fake given names of one nationality and sex, from the generator's Faker locales.

    Read from the locales' name lists (Faker's person providers) rather than drawn through a
    Faker instance, which takes a tenth of a second to build per locale, and a smaller pool
    than the generator's (:func:`studylib.synthetic.pii.name_pool`): a vignette needs one name.
    """
    import importlib

    from studylib.synthetic.nationalities import nationalities
    from studylib.synthetic.pii import latin_name

    info = nationalities()[nationality]
    names: list[str] = []
    for locale in info.given_name_locales:
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ModuleNotFoundError:
            continue
        pool = list(getattr(provider, f"first_names_{sex}", None) or getattr(provider, "first_names", ()) or ())
        if pool:
            digest = hashlib.sha256(f"training\x1f{locale}\x1f{sex}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
            pick = rng.choice(len(pool), size=min(NAMES_PER_POOL, len(pool)), replace=False)
            names += [latin_name(pool[i], info.join_syllables) for i in sorted(pick)]
    names = list(dict.fromkeys(n for n in names if n))
    if not names:
        raise VignetteError(f"no {sex} given names for nationality {nationality} in Faker locales {info.given_name_locales}")
    return tuple(names)


def _age(rng: np.random.Generator, bands: dict[str, float], limits: dict) -> int:
    band = _pick(rng, bands)
    i = V.AGE_BAND.index(band)
    edges = [*V.AGE_BAND_EDGES, limits["max"] + 1]
    lo = max(edges[i], limits["min"])
    hi = max(lo, min(edges[i + 1] - 1, limits["max"]))
    return int(rng.integers(lo, hi + 1))


def _minimal_core(codes: list[str], list_name: str, rng: np.random.Generator) -> list[str] | None:
    """A smallest random subset of one dimension's indicators that makes it present, or None."""
    look = _catalogue_lookup()
    by_grade: dict[str, list[str]] = {}
    for code in codes:
        by_grade.setdefault(look["grade"][(code, list_name)], []).append(code)
    for combo in sorted(look["spec"]["presence"], key=len):
        need = {g: combo.count(g) for g in set(combo)}
        if all(len(by_grade.get(g, ())) >= n for g, n in need.items()):
            return [c for g, n in sorted(need.items()) for c in rng.choice(np.array(by_grade[g], dtype=object), size=n, replace=False)]
    return None


def _told(drawn: tuple[str, ...], list_name: str, most: int, rng: np.random.Generator) -> tuple[str, ...]:
    """What a vignette tells of a drawn checklist: at most ``most`` indicators, same classification.

    A random sample of 9 of a victim's 20 indicators would rarely leave a dimension present.
    So for every dimension kind the person's rule needs, one present dimension (chosen at
    random) keeps a smallest set of indicators that makes it present; the rest of the room is
    filled with other drawn indicators in random order. A dimension that was not present
    cannot become present in a subset, so the told indicators classify as the whole checklist
    does (whenever the cores fit in ``most``).
    """
    if len(drawn) <= most:
        return drawn
    look = _catalogue_lookup()
    spec = look["spec"]
    by_dim: dict[str, list[str]] = {}
    for code in drawn:
        by_dim.setdefault(look["dimension"][code], []).append(code)
    rule = spec["lists"][list_name]["rule"]
    kept: list[str] = []
    for kind in spec["rules"][rule]:
        cores = [core for d in sorted(by_dim) if look["dims"][d]["kind"] == kind
                 for core in [_minimal_core(by_dim[d], list_name, rng)] if core]
        if cores:
            core = cores[int(rng.integers(0, len(cores)))]
            if len(kept) + len(core) <= most:
                kept += core
    rest = [c for c in drawn if c not in kept]
    kept += [rest[i] for i in rng.permutation(len(rest))[: most - len(kept)]]
    return tuple(sorted(kept, key=look["order"].__getitem__))


def draw_case(seed: int, *, child: bool | None = None, sector: str | None = None, max_indicators: int = MAX_INDICATORS) -> Case:
    """The training case of ``seed``: a person drawn from the sector profiles, and what a vignette tells.

    ``child``: True for a person of 12 to 17, False for an adult (18 or over), None for the
    age the profile draws. ``sector``: one with a profile, or None for the scenario's mix.
    """
    profiles = _profiles()
    if sector is not None and sector not in profiles.sectors:
        raise VignetteError(f"sector {sector!r} has no profile in {profiles.folder}; sectors: {', '.join(sorted(profiles.sectors))}")
    if not 0 <= max_indicators:
        raise VignetteError(f"max_indicators must be 0 or more, not {max_indicators}")
    look = _catalogue_lookup()
    spec = look["spec"]
    rng = np.random.default_rng([int(seed), 14])
    sector = sector or _pick(rng, profiles.scenario.sector_mix)
    profile = profiles.sectors[sector]
    limits = profiles.scenario.age_limits
    if child is True:
        age = int(rng.integers(max(CHILD_AGES[0], limits["min"]), CHILD_AGES[1] + 1))
    else:
        bands = profile.age_bands
        if child is False:
            bands = {b: s for b, s in bands.items() if V.AGE_BAND_EDGES[V.AGE_BAND.index(b)] >= spec["child_under"]}
        age = _age(rng, bands, limits)
    sex = _pick(rng, profile.sex)
    nationality = _pick(rng, profile.nationality)
    exploitation = _pick(rng, profile.exploitation)
    victim = bool(rng.random() < profile.victim_share)
    organisation = _pick(rng, {o: p for o, p in profile.visibility.items() if p > 0})
    rule = "child" if age < spec["child_under"] else "adult"
    family = spec["exploitation"].get(exploitation, "labour")
    list_name = next(n for n, info in spec["lists"].items() if info["rule"] == rule and info["exploitation"] == family)
    chances = (profile.indicators.victim if victim else profile.indicators.non_victim)
    codes = look["on_list"][list_name]
    p = np.array([chances.get(look["dimension"][c], 0.0) for c in codes])
    drawn = tuple(c for c, hit in zip(codes, rng.random(len(codes)) < p) if hit)
    told = _told(drawn, list_name, max_indicators, rng)
    pronouns = sex if sex in ("female", "male") else ("female", "male")[int(rng.integers(0, 2))]
    names = given_names(nationality, pronouns)
    name = names[int(rng.integers(0, len(names)))]
    return Case(seed=int(seed), sector=sector, exploitation=exploitation, sex=sex, age=age, nationality=nationality,
                name=name, pronouns=pronouns, organisation=organisation, victim=victim, list_name=list_name,
                drawn=drawn, indicators=told)


# --- telling it -----------------------------------------------------------------------------------


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise VignetteError(f"language {language!r} is not offered; choose one of {', '.join(LANGUAGES)}")


def _stage(code: str) -> str:
    look = _catalogue_lookup()
    return "recruitment" if look["dims"][look["dimension"][code]]["kind"] == RECRUITMENT_KIND else "destination"


def _fill(template: str, values: dict, where: str) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise VignetteError(f"{PHRASINGS_PATH}: {where}: bad placeholder in {template!r} ({exc})") from None


def vignette(case: Case, language: str = "en") -> str:
    """The narrative of ``case``: two paragraphs and a closing line, 120 to 250 words."""
    _check_language(language)
    ph = phrasings()
    rng = np.random.default_rng([case.seed, 15, LANGUAGES.index(language)])
    if case.sector not in ph["sectors"]:
        raise VignetteError(f"{PHRASINGS_PATH}: key sectors: no entry for sector {case.sector!r} (its work and place)")
    work, place = ph["sectors"][case.sector][language]
    values = {**ph["pronouns"][language][case.pronouns], "name": case.name, "age": case.age,
              "origin": None, "work": work, "place": place, "org": ph["organisations"][case.organisation][language]}
    values["origin"] = _fill(ph["countries"][language][case.nationality], values, f"countries.{language}.{case.nationality}")

    def one(options: tuple[str, ...], where: str) -> str:
        return _fill(options[int(rng.integers(0, len(options)))], values, where)

    told = {"recruitment": [], "destination": []}
    for code in case.indicators:
        told[_stage(code)].append(one(ph["indicators"][code][language], f"indicators.{code}.{language}"))
    for stage in told:
        rng.shuffle(told[stage])
    intro = one(ph["intro"][language], f"intro.{language}")
    work_line = one(ph["work_line"][language], f"work_line.{language}")
    closing = one(ph["closing"][language], f"closing.{language}")
    fillers = {stage: [_fill(s, values, f"filler.{stage}.{language}") for s in rng.permutation(np.array(ph["filler"][stage][language], dtype=object))]
               for stage in told}
    used = {"recruitment": [], "destination": []}

    def text() -> str:
        first = " ".join([intro, *told["recruitment"], *used["recruitment"]])
        second = " ".join([work_line, *told["destination"], *used["destination"]])
        return f"{first}\n\n{second}\n\n{closing}"

    # fill a short story to MIN_WORDS with neutral sentences, alternating the paragraphs
    order = [s for pair in zip(fillers["recruitment"], fillers["destination"]) for s in pair]
    stage_of = {s: st for st in fillers for s in fillers[st]}
    n = count_words(text())
    for sentence in order:
        if n >= MIN_WORDS:
            break
        used[stage_of[sentence]].append(sentence)
        n += count_words(sentence)
    out = text()
    n = count_words(out)
    if not MIN_WORDS <= n <= MAX_WORDS:
        raise VignetteError(f"case {case.seed}: the vignette has {n} words, outside {MIN_WORDS}-{MAX_WORDS} "
                            f"({len(case.indicators)} indicators; lower max_indicators or shorten the phrasings in {PHRASINGS_PATH})")
    return out


# --- the key ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerKey:
    """What a vignette carries: its indicators with dimension and grade, and the classification."""

    seed: int
    rule: str
    list_name: str
    indicators: tuple[dict, ...]  # per indicator: code, dimension, dimension_title, grade, text
    dimensions_present: tuple[str, ...]
    presumed_victim: bool
    explanation: str
    catalogue_version: str

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(row["code"] for row in self.indicators)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.indicators), columns=list(INDICATOR_COLUMNS))

    def as_dict(self) -> dict:
        return {
            "seed": self.seed, "rule": self.rule, "list": self.list_name,
            "indicators": [dict(row) for row in self.indicators],
            "dimensions_present": list(self.dimensions_present), "presumed_victim": self.presumed_victim,
            "explanation": self.explanation, "catalogue_version": self.catalogue_version,
        }


INDICATOR_COLUMNS = ("code", "dimension", "dimension_title", "grade", "text")


def indicator_rows(codes, list_name: str) -> tuple[dict, ...]:
    """``code, dimension, dimension_title, grade, text`` of indicator codes on one list (catalogue order)."""
    look = _catalogue_lookup()
    rows = []
    for c in sorted(set(codes), key=look["order"].__getitem__):
        dim = look["dimension"][c]
        rows.append({"code": c, "dimension": dim, "dimension_title": look["dims"][dim]["title"],
                     "grade": look["grade"].get((c, list_name)), "text": look["text"][c]})
    return tuple(rows)


def classify_sets(sets: list[tuple[str, ...]], ages: list[int], exploitations: list[str]) -> pd.DataFrame:
    """The catalogue's classification of several indicator sets at once (one row per set)."""
    from studylib.indicators import classify

    ids = np.arange(len(sets))
    indicators = pd.DataFrame({"person_id": np.repeat(ids, [len(s) for s in sets]),
                               "indicator": [c for s in sets for c in s]}, columns=["person_id", "indicator"])
    persons = pd.DataFrame({"person_id": ids, "age": ages, "exploitation": exploitations})
    return classify(indicators, persons, _catalogue())


def answer_keys(cases: list[Case]) -> list[AnswerKey]:
    """The key of every case (one classification run for all of them)."""
    look = _catalogue_lookup()
    dims = [d["code"] for d in look["spec"]["dimensions"]]
    result = classify_sets([c.indicators for c in cases], [c.age for c in cases], [c.exploitation for c in cases])
    keys = []
    for case, row in zip(cases, result.itertuples(index=False)):
        keys.append(AnswerKey(
            seed=case.seed, rule=str(row.rule), list_name=str(row.list),
            indicators=indicator_rows(case.indicators, case.list_name),
            dimensions_present=tuple(d for d in dims if getattr(row, d)),
            presumed_victim=bool(row.presumed_victim), explanation=str(row.explanation),
            catalogue_version=look["version"],
        ))
    return keys


def answer_key(case: Case) -> AnswerKey:
    return answer_keys([case])[0]


def versions() -> dict[str, str]:
    """The versions that decide a case's text and key (recorded in every exercise set)."""
    return {"vignettes": phrasings()["version"], "catalogue": _catalogue_lookup()["version"]}
