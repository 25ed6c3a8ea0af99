"""Linkage: which records of the form exports belong to one person (rules in ``linkage_rules.yaml``).

Two steps, so that exports of later periods link to earlier ones without keeping any
identifier: :func:`record_keys` turns each record's identifiers (CPR number, passport and
nationality, normalised name and birth date) into keyed tokens, once, while the raw export
is at hand; :func:`link` then works on tokens only. Records sharing any token are one person
(connected components of the record-key graph, :mod:`scipy.sparse.csgraph`); the person's
id is the token of the strongest key among its records. Disagreements (two birth dates for
one CPR number, sexes that differ, ...) are reported as conflicts, not resolved silently.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from studylib.config import read_yaml
from studylib.forms.reading import on_distinct
from studylib.privacy.pseudonymiser import Pseudonymiser, as_pseudonymiser

RULES_PATH = files("studylib.forms") / "linkage_rules.yaml"
NAME_FIELDS = ("first_name", "last_name")
#: The key every record has: its own record (links nothing; the person id of a record without identifiers).
RECORD_KEY = "record"


@lru_cache(maxsize=1)
def linkage_rules() -> dict:
    """The shipped linkage rules."""
    return read_yaml(RULES_PATH, "linkage rules")


def key_names(rules: dict | None = None) -> list[str]:
    """Names of the linkage keys, strongest first."""
    rules = rules or linkage_rules()
    return [k["name"] for k in rules["keys"]]


def key_column(name: str) -> str:
    return f"key_{name}"


# -- names ----------------------------------------------------------------------------------------------


def normalise_names(first: pd.Series, last: pd.Series, rules: dict | None = None) -> pd.Series:
    """One comparable string per row from given and family name; NA unless both are present."""
    rules = (rules or linkage_rules())["names"]
    both = first.notna() & last.notna() & (first.astype("str").str.strip() != "") & (last.astype("str").str.strip() != "")
    full = (first.astype("str") + " " + last.astype("str")).where(both)
    codes, uniques = pd.factorize(full, use_na_sentinel=True)
    table = str.maketrans({k: v for k, v in rules["transliterate"].items()})
    fold = rules.get("fold") or {}
    fold_re = re.compile("|".join(sorted(map(re.escape, fold), key=len, reverse=True))) if fold else None
    sort_words = rules.get("word_order", "sorted") == "sorted"
    out = []
    for name in uniques:
        s = name.lower().translate(table)
        if rules.get("strip_accents", True):
            s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
        words = [w for w in re.split(r"[\W\d_]+", s) if w]
        if fold_re is not None:
            words = [fold_re.sub(lambda m: fold[m.group(0)], w) for w in words]
        if sort_words:
            words.sort()
        out.append(" ".join(words) or None)
    values = np.array(out + [None], dtype=object)
    return pd.Series(values[codes], index=first.index, dtype="str")


# -- keys of records ----------------------------------------------------------------------------------------


def _date_text(dates: pd.Series, fmt: str) -> pd.Series:
    """Dates as text, formatting each distinct date once."""
    return on_distinct(dates, lambda u: pd.Series(pd.DatetimeIndex(u).strftime(fmt), dtype="str"), dtype=None)


def _key_strings(values: pd.DataFrame, spec: dict, rules: dict) -> pd.Series:
    """``<key name>:<normalised field values>`` per record; NA where a field is missing."""
    parts: list[pd.Series] = []
    done_names = False
    for name in spec["fields"]:
        if name in NAME_FIELDS:
            if not done_names:
                parts.append(normalise_names(values["first_name"], values["last_name"], rules))
                done_names = True
            continue
        column = values[name]
        if name == "birth_date":
            column = column.fillna(values.get("cpr_birth_date", pd.Series(pd.NaT, index=values.index)))
            text = _date_text(column, "%Y-%m-%d")
        else:
            text = column.astype("str")
        not_values = spec.get("not_a_value", {}).get(name, [])
        parts.append(text.mask(text.isin(not_values)))
    # one pass in Arrow: name:part:part..., missing where any part is missing
    arrays = [pa.array(part.astype("str").array, type=pa.large_string(), from_pandas=True) for part in parts]
    literal = pa.scalar(spec["name"], type=pa.large_string())
    joined = pc.binary_join_element_wise(literal, *arrays, pa.scalar(":", type=pa.large_string()), null_handling="emit_null")
    return pd.Series(pd.array(joined, dtype="str"), index=values.index)


def record_keys(values: pd.DataFrame, record_ids: pd.Series, key: "Pseudonymiser | bytes", rules: dict | None = None) -> pd.DataFrame:
    """Keyed tokens of each record's linkage keys and the attributes linkage compares.

    ``values`` holds the validated person fields (cpr, passport_no, nationality, first_name,
    last_name, birth_date, cpr_birth_date, sex); ``record_ids`` a unique id per record (form and
    record id). Nothing in the result is an identifier: tokens, sex, nationality, birth year."""
    rules = rules or linkage_rules()
    tokens = as_pseudonymiser(key)
    out = _distinct_keys(values, tokens, rules)
    # a record without any key is a person of its own: its id is the token of the record
    keyless = out[[key_column(k["name"]) for k in rules["keys"]]].isna().all(axis=1)
    record = tokens.person_tokens((RECORD_KEY + ":" + record_ids.astype("str")).where(keyless))
    out.insert(len(rules["keys"]), key_column(RECORD_KEY), record.array)
    return out


def _distinct_keys(values: pd.DataFrame, tokens: Pseudonymiser, rules: dict) -> pd.DataFrame:
    out = pd.DataFrame(index=values.index)
    for spec in rules["keys"]:
        out[key_column(spec["name"])] = tokens.person_tokens(_key_strings(values, spec, rules))
    born = values["birth_date"].fillna(values["cpr_birth_date"])
    out["birth_date"] = tokens.person_tokens("birth_date:" + _date_text(born, "%Y-%m-%d"))
    stated, from_cpr = values["birth_date"], values["cpr_birth_date"]
    same_day = (stated.dt.day == from_cpr.dt.day) & (stated.dt.month == from_cpr.dt.month) & (stated.dt.year % 100 == from_cpr.dt.year % 100)
    out["cpr_birth_date_differs"] = (stated.notna() & from_cpr.notna() & ~same_day.fillna(True)).astype(bool)
    out["sex"] = values["sex"].astype("str")
    out["nationality"] = values["nationality"].astype("str")
    out["birth_year"] = born.dt.year.astype("Int64")
    return out


# -- linking --------------------------------------------------------------------------------------------------


@dataclass
class Linkage:
    """Who is one person: per record the person's number and id; the persons; figures; conflicts.

    Persons are numbered in the order of their ids (``person_ids`` is sorted), so
    ``person_ids[person_code]`` is each record's person id."""

    person_code: np.ndarray  # per record (position in the records)
    person_ids: pd.Series  # sorted, unique
    figures: dict = field(default_factory=dict)
    conflicts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["person_id", "conflict"]))

    @property
    def person_id(self) -> pd.Series:
        """The person id of each record."""
        return pd.Series(self.person_ids.array.take(self.person_code), dtype="str")


def _codes(values: pd.Series, sort: bool = False) -> tuple[np.ndarray, pd.Index]:
    codes, uniques = pd.factorize(values, use_na_sentinel=True, sort=sort)
    return codes, pd.Index(uniques)


def _group_min(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """The smallest non-negative value per group (-1 where a group has none)."""
    big = np.iinfo(np.int64).max
    out = np.full(n_groups, big, dtype=np.int64)
    has = values >= 0
    np.minimum.at(out, groups[has], values[has].astype(np.int64))
    return np.where(out == big, -1, out)


def link(records: pd.DataFrame, rules: dict | None = None) -> Linkage:
    """Group records into persons by shared key tokens; choose each person's id; find conflicts.

    The result does not depend on the order of the records."""
    rules = rules or linkage_rules()
    names = key_names(rules)
    n = len(records)
    if n == 0:
        empty = Linkage(person_code=np.zeros(0, dtype=np.int64), person_ids=pd.Series([], dtype="str"))
        empty.figures = _figures(records, empty, rules, None)
        return empty
    rows, cols = [], []
    offset = n
    key_codes: dict[str, tuple[np.ndarray, pd.Index]] = {}
    for name in [*names, RECORD_KEY]:
        codes, uniques = _codes(records[key_column(name)], sort=True)  # code order = token order
        key_codes[name] = (codes, uniques)
        if name == RECORD_KEY:
            continue
        has = codes >= 0
        rows.append(np.nonzero(has)[0])
        cols.append(codes[has] + offset)
        offset += len(uniques)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = sparse.coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(offset, offset)).tocsr()
    n_components, component = connected_components(graph, directed=False)
    component = component[:n]
    # the person id: the smallest token of the strongest key present among the person's records
    chosen = np.full(n_components, None, dtype=object)
    chosen_kind = np.full(n_components, -1, dtype=np.int64)
    for k, name in enumerate([*names, RECORD_KEY]):
        codes, uniques = key_codes[name]
        best = _group_min(component, codes, n_components)
        fill = (chosen_kind < 0) & (best >= 0)
        chosen[fill] = np.asarray(uniques, dtype=object)[best[fill]]
        chosen_kind[fill] = k
    used = np.unique(component)
    order = pd.Series(chosen[used], dtype="str")
    rank, person_ids = pd.factorize(order, sort=True)
    code_of_component = np.full(n_components, -1, dtype=np.int64)
    code_of_component[used] = rank
    linkage = Linkage(person_code=code_of_component[component], person_ids=pd.Series(person_ids, dtype="str"))
    linkage.conflicts = find_conflicts(records, linkage, rules)
    kinds = np.full(len(person_ids), -1, dtype=np.int64)
    kinds[rank] = chosen_kind[used]
    linkage.figures = _figures(records, linkage, rules, kinds)
    return linkage


def find_conflicts(records: pd.DataFrame, linkage: Linkage, rules: dict) -> pd.DataFrame:
    """Persons whose records disagree, one row per (person, conflict), sorted."""
    found = []
    keys = key_names(rules)
    person = linkage.person_code
    for spec in rules.get("conflicts", []):
        value = records[key_column(spec["field"]) if spec["field"] in keys else spec["field"]]
        if spec["within"] == "record":
            hit = person[value.astype("boolean").fillna(False).to_numpy(dtype=bool)]
        else:
            group = person if spec["within"] == "person" else _codes(records[key_column(spec["within"])])[0]
            vcodes = _codes(value.mask(value.isin(spec.get("ignore", []))))[0]
            keep = (vcodes >= 0) & (group >= 0)
            pairs = pd.DataFrame({"g": group[keep], "v": vcodes[keep]}).drop_duplicates()
            sizes = pairs.groupby("g").size()
            bad_groups = sizes.index[sizes > 1].to_numpy()
            hit = person[np.isin(group, bad_groups) & (group >= 0)]
        codes = np.unique(hit)
        found.append(pd.DataFrame({"person_id": linkage.person_ids.array.take(codes), "conflict": spec["name"]}))
    if not found:
        return pd.DataFrame(columns=["person_id", "conflict"])
    return pd.concat(found, ignore_index=True).sort_values(["conflict", "person_id"]).reset_index(drop=True)


def _figures(records: pd.DataFrame, linkage: Linkage, rules: dict, id_kind: np.ndarray | None) -> dict:
    names = key_names(rules)
    n = len(records)
    per_person = np.bincount(linkage.person_code, minlength=len(linkage.person_ids)) if n else np.zeros(0, dtype=np.int64)
    has_any = np.zeros(n, dtype=bool)
    for name in names:
        has_any |= records[key_column(name)].notna().to_numpy()
    figures = {
        "records": int(n),
        "persons": int(len(linkage.person_ids)),
        "persons_with_several_records": int((per_person > 1).sum()),
        "most_records_of_one_person": int(per_person.max()) if len(per_person) else 0,
        "records_with_key": {name: int(records[key_column(name)].notna().sum()) for name in names},
        "records_without_any_key": int((~has_any).sum()),
    }
    if id_kind is not None and n:
        counts = np.bincount(id_kind[id_kind >= 0], minlength=len(names) + 1)
        figures["persons_by_id_key"] = {name: int(counts[k]) for k, name in enumerate([*names, RECORD_KEY])}
    counts = linkage.conflicts.groupby("conflict").size() if len(linkage.conflicts) else pd.Series(dtype="int64")
    figures["persons_with_conflicts"] = {c["name"]: int(counts.get(c["name"], 0)) for c in rules.get("conflicts", [])}
    return figures


# -- person attributes -----------------------------------------------------------------------------------------


def person_attributes(records: pd.DataFrame, linkage: Linkage, rules: dict | None = None) -> pd.DataFrame:
    """One row per person (sorted by id): the most common known sex, nationality and birth year (unknown on a tie)."""
    rules = rules or linkage_rules()
    person = linkage.person_code
    n_persons = len(linkage.person_ids)
    persons = pd.DataFrame({"person_id": linkage.person_ids.array}).astype("str")
    for attribute, spec in rules["attributes"].items():
        unknown = spec.get("unknown")
        value = records[attribute]
        vcodes, uniques = _codes(value.mask(value == unknown) if unknown is not None else value)
        keep = vcodes >= 0
        counts = pd.DataFrame({"p": person[keep], "v": vcodes[keep]}).value_counts().rename("n").reset_index()
        top = counts.groupby("p")["n"].transform("max")
        best = counts[counts["n"] == top]
        ties = best.groupby("p").size()
        single = best.drop_duplicates("p").set_index("p")["v"]
        single = single[ties.reindex(single.index) == 1]
        chosen = np.full(n_persons, -1, dtype=np.int64)
        chosen[single.index.to_numpy()] = single.to_numpy()
        column = pd.Series(pd.Series(uniques, dtype=value.dtype).array.take(chosen, allow_fill=True), dtype=value.dtype)
        if unknown is not None:
            column = column.fillna(unknown)
        persons[attribute] = column
    return persons
