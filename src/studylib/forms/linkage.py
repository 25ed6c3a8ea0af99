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
import yaml
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from studylib.privacy.tokens import person_token

RULES_PATH = files("studylib.forms") / "linkage_rules.yaml"
NAME_FIELDS = ("first_name", "last_name")
#: The key every record has: its own record (links nothing; the person id of a record without identifiers).
RECORD_KEY = "record"


@lru_cache(maxsize=1)
def linkage_rules() -> dict:
    """The shipped linkage rules."""
    return yaml.safe_load(RULES_PATH.read_text(encoding="utf-8"))


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
            text = column.dt.strftime("%Y-%m-%d")
        else:
            text = column.astype("str")
        not_values = spec.get("not_a_value", {}).get(name, [])
        parts.append(text.mask(text.isin(not_values)))
    joined = pd.Series(spec["name"], index=values.index, dtype="str")
    missing = pd.Series(False, index=values.index)
    for part in parts:
        missing |= part.isna()
        joined = joined + ":" + part.fillna("")
    return joined.mask(missing)


def record_keys(values: pd.DataFrame, record_ids: pd.Series, key: bytes, rules: dict | None = None) -> pd.DataFrame:
    """Keyed tokens of each record's linkage keys and the attributes linkage compares.

    ``values`` holds the validated person fields (cpr, passport_no, nationality, first_name,
    last_name, birth_date, cpr_birth_date, sex); ``record_ids`` a unique id per record (form and
    record id). Nothing in the result is an identifier: tokens, sex, nationality, birth year."""
    rules = rules or linkage_rules()
    out = pd.DataFrame(index=values.index)
    for spec in rules["keys"]:
        out[key_column(spec["name"])] = person_token(_key_strings(values, spec, rules), key)
    out[key_column(RECORD_KEY)] = person_token(RECORD_KEY + ":" + record_ids.astype("str"), key)
    born = values["birth_date"].fillna(values["cpr_birth_date"])
    out["birth_date"] = person_token("birth_date:" + born.dt.strftime("%Y-%m-%d"), key)
    stated, from_cpr = values["birth_date"], values["cpr_birth_date"]
    out["cpr_birth_date_differs"] = (stated.notna() & from_cpr.notna() & (stated.dt.strftime("%d%m%y") != from_cpr.dt.strftime("%d%m%y"))).astype(bool)
    out["sex"] = values["sex"].astype("str")
    out["nationality"] = values["nationality"].astype("str")
    out["birth_year"] = born.dt.year.astype("Int64")
    return out


# -- linking --------------------------------------------------------------------------------------------------


@dataclass
class Linkage:
    """Who is one person: a person id per record, figures and conflicts."""

    person_id: pd.Series  # per record (index of the records)
    figures: dict = field(default_factory=dict)
    conflicts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["person_id", "conflict"]))


def link(records: pd.DataFrame, rules: dict | None = None) -> Linkage:
    """Group records into persons by shared key tokens; choose each person's id; find conflicts."""
    rules = rules or linkage_rules()
    names = key_names(rules)
    n = len(records)
    if n == 0:
        return Linkage(person_id=pd.Series([], dtype="str", index=records.index),
                       figures=_figures(records, pd.Series([], dtype="str"), rules, None, None))
    rows, cols = [], []
    offset = n
    for name in names:
        codes, uniques = pd.factorize(records[key_column(name)], use_na_sentinel=True)
        has = codes >= 0
        rows.append(np.nonzero(has)[0])
        cols.append(codes[has] + offset)
        offset += len(uniques)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = sparse.coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(offset, offset)).tocsr()
    _, component = connected_components(graph, directed=False)
    component = pd.Series(component[:n], index=records.index)
    # the person id: the smallest token of the strongest key present among the person's records
    chosen = pd.Series(pd.NA, index=pd.unique(component), dtype="str")
    chosen_kind = pd.Series(pd.NA, index=chosen.index, dtype="str")
    for name in [*names, RECORD_KEY]:
        best = records[key_column(name)].groupby(component).min()
        fill = chosen.isna() & best.reindex(chosen.index).notna()
        chosen[fill] = best.reindex(chosen.index)[fill]
        chosen_kind[fill] = name
    person_id = component.map(chosen).astype("str")
    conflicts = find_conflicts(records, person_id, rules)
    kinds = component.map(chosen_kind)
    return Linkage(person_id=person_id, figures=_figures(records, person_id, rules, kinds, conflicts), conflicts=conflicts)


def find_conflicts(records: pd.DataFrame, person_id: pd.Series, rules: dict) -> pd.DataFrame:
    """Persons whose records disagree, one row per (person, conflict)."""
    found = []
    keys = key_names(rules)
    for spec in rules.get("conflicts", []):
        value = records[key_column(spec["field"]) if spec["field"] in keys else spec["field"]]
        if spec["within"] == "record":
            hit = person_id[value.astype("boolean").fillna(False).to_numpy(dtype=bool)]
        else:
            group = person_id if spec["within"] == "person" else records[key_column(spec["within"])]
            keep = value.notna() & group.notna() & ~value.isin(spec.get("ignore", []))
            distinct = pd.DataFrame({"g": group[keep], "v": value[keep]}).drop_duplicates().groupby("g").size()
            bad_groups = distinct.index[distinct > 1]
            hit = person_id[group.isin(bad_groups) & group.notna()]
        found.append(pd.DataFrame({"person_id": hit.to_numpy(), "conflict": spec["name"]}))
    if not found:
        return pd.DataFrame(columns=["person_id", "conflict"])
    return pd.concat(found, ignore_index=True).drop_duplicates().sort_values(["conflict", "person_id"]).reset_index(drop=True)


def _figures(records: pd.DataFrame, person_id: pd.Series, rules: dict, id_kind: pd.Series | None, conflicts: pd.DataFrame | None) -> dict:
    names = key_names(rules)
    n = len(records)
    per_person = person_id.value_counts() if n else pd.Series([], dtype="int64")
    has_any = pd.Series(False, index=records.index)
    for name in names:
        has_any |= records[key_column(name)].notna()
    figures = {
        "records": int(n),
        "persons": int(len(per_person)),
        "persons_with_several_records": int((per_person > 1).sum()),
        "most_records_of_one_person": int(per_person.max()) if len(per_person) else 0,
        "records_with_key": {name: int(records[key_column(name)].notna().sum()) for name in names},
        "records_without_any_key": int((~has_any).sum()),
    }
    if id_kind is not None and n:
        kinds = pd.DataFrame({"p": person_id, "k": id_kind}).drop_duplicates("p")["k"].value_counts()
        figures["persons_by_id_key"] = {name: int(kinds.get(name, 0)) for name in [*names, RECORD_KEY]}
    if conflicts is not None:
        counts = conflicts.groupby("conflict").size() if len(conflicts) else pd.Series(dtype="int64")
        figures["persons_with_conflicts"] = {c["name"]: int(counts.get(c["name"], 0)) for c in rules.get("conflicts", [])}
    return figures


# -- person attributes -----------------------------------------------------------------------------------------


def person_attributes(records: pd.DataFrame, person_id: pd.Series, rules: dict | None = None) -> pd.DataFrame:
    """One row per person: the most common known sex, nationality and birth year (unknown on a tie)."""
    rules = rules or linkage_rules()
    persons = pd.DataFrame({"person_id": pd.unique(person_id.dropna())})
    persons = persons.sort_values("person_id").reset_index(drop=True)
    for attribute, spec in rules["attributes"].items():
        unknown = spec.get("unknown")
        value = records[attribute]
        keep = value.notna() & ((value != unknown) if unknown is not None else True)
        counts = pd.DataFrame({"p": person_id[keep], "v": value[keep]}).groupby(["p", "v"], observed=True).size().rename("n").reset_index()
        top = counts.groupby("p")["n"].transform("max")
        best = counts[counts["n"] == top]
        single = best.groupby("p")["v"].agg(["first", "size"])
        chosen = single["first"].where(single["size"] == 1)
        column = persons["person_id"].map(chosen)
        if unknown is not None:
            column = column.fillna(unknown)
        persons[attribute] = column.astype(value.dtype)
    return persons
