"""The cases table: one row per person, derived from persons, events and indicators.

The rules (which form a value comes from, defaults, services) are data in
``case_rules.yaml``; the contact forms and their organisations (the lists for extent
estimation) come from the form catalogue. Everything is computed per column with group-bys,
so a million persons take seconds.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import numpy as np
import pandas as pd
import yaml

from studylib.data import vocabularies
from studylib.data.schemas import CASE_COLUMNS

RULES_PATH = files("studylib.data") / "case_rules.yaml"


@lru_cache(maxsize=1)
def case_rules() -> dict:
    """The shipped case derivation rules."""
    return yaml.safe_load(RULES_PATH.read_text(encoding="utf-8"))


def _contact_forms() -> tuple[str, ...]:
    from studylib.forms.catalogue import form_catalogue  # the catalogue says which forms are contacts

    return form_catalogue().contact_forms


def _ordered(events: pd.DataFrame) -> pd.DataFrame:
    return events.sort_values(["person_id", "date", "event_id"], kind="stable")


def _pick(events: pd.DataFrame, sources: list[dict], contact: tuple[str, ...]) -> pd.Series:
    """Per person, the value of the first source with a known value (see case_rules.yaml)."""
    result = pd.Series(dtype="object")
    for source in sources:
        forms = contact if source["forms"] == "contact" else tuple(source["forms"])
        column = source["field"]
        if column not in events.columns:
            continue
        sub = events[events["form"].isin(forms)]
        sub = sub[sub[column].notna() & (sub[column].astype("str") != "unknown")]
        if sub.empty:
            continue
        grouped = sub.groupby("person_id", sort=False)[column]
        picked = grouped.last() if source["pick"] == "latest" else grouped.first()
        result = result.combine_first(picked.astype("object")) if len(result) else picked.astype("object")
    return result


def derive_cases(
    persons: pd.DataFrame,
    events: pd.DataFrame,
    indicators: pd.DataFrame | None = None,
    event_ages: pd.Series | None = None,
    rules: dict | None = None,
    contact_forms: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """The cases table of :data:`studylib.data.schemas.CASES`, one row per person with a contact form.

    ``event_ages`` (age in whole years on each event's date, indexed by ``event_id``) gives
    exact ages; ingest has them from the birth dates before it drops them. Without it the
    age at first contact is the first contact year minus the birth year (up to a year too
    old). ``indicators`` is accepted for the signature of the data contract; no case column
    needs it (indicator-based classification is :mod:`studylib.indicators`)."""
    rules = rules or case_rules()
    contact = contact_forms or _contact_forms()
    events = _ordered(events)
    contacts = events[events["form"].isin(contact)]
    first = contacts.drop_duplicates("person_id", keep="first").set_index("person_id")
    cases = persons[persons["person_id"].isin(first.index)].copy()
    cases = cases.sort_values("person_id").reset_index(drop=True)
    pid = cases["person_id"]

    cases["first_contact_date"] = pid.map(first["date"]).astype("datetime64[ns]")
    cases["first_contact_year"] = cases["first_contact_date"].dt.year.astype("Int64")
    age = _age_at_first_contact(cases, events, first, event_ages)
    cases["age_at_first_contact"] = age
    cases["age_band"] = vocabularies.age_band(age).to_numpy()
    cases["minor"] = (age < rules["adult_age"]).astype("boolean")

    for name, sources in rules["values"].items():
        default = rules["defaults"].get(name)
        column = pid.map(_pick(events, sources, contact))
        cases[name] = column.fillna(default) if default is not None else column

    lists = contacts.groupby(["person_id", "organisation"], observed=True).size().unstack(fill_value=0)
    for org in vocabularies.ORGANISATION:
        flag = lists[org] > 0 if org in lists.columns else pd.Series(False, index=lists.index)
        cases[f"list_{org}"] = pid.map(flag).fillna(False).astype(bool)
    cases["n_lists"] = cases[[f"list_{o}" for o in vocabularies.ORGANISATION]].sum(axis=1).astype("Int64")

    decision = rules["decision"]
    decisions = events[events["form"].isin(decision["forms"]) & events[decision["field"]].notna()]
    latest = decisions.drop_duplicates("person_id", keep="last").set_index("person_id")
    cases["decision"] = pid.map(latest[decision["field"]]).fillna(decision["default"])
    cases["decision_date"] = pid.map(latest[decision["date"]]).astype("datetime64[ns]")

    reflection = rules["reflection_days"]
    granted = events[events["form"].isin(reflection["forms"])].groupby("person_id")[reflection["field"]].max()
    cases["reflection_days"] = pid.map(granted).astype("Int64")

    cases["safe_house_days"] = pid.map(_safe_house_days(events, rules["safe_house_days"])).astype("Int64")

    forms_of = events.groupby(["person_id", "form"], observed=True).size().unstack(fill_value=0)
    for service, forms in rules["services"].items():
        present = [f for f in forms if f in forms_of.columns]
        flag = (forms_of[present].sum(axis=1) > 0) if present else pd.Series(False, index=forms_of.index)
        cases[f"service_{service}"] = pid.map(flag).fillna(False).astype(bool)

    return cases[list(CASE_COLUMNS)].reset_index(drop=True)


def _age_at_first_contact(cases: pd.DataFrame, events: pd.DataFrame, first: pd.DataFrame, event_ages: pd.Series | None) -> pd.Series:
    pid = cases["person_id"]
    if event_ages is None:
        return (cases["first_contact_year"] - cases["birth_year"].astype("Int64")).astype("Int64")
    ages = events["event_id"].map(event_ages).astype("Int64")
    at_first = pid.map(pd.Series(first["event_id"].map(event_ages).to_numpy(), index=first.index)).astype("Int64")
    # the first contact form had no birth date: the youngest age on any of the person's forms
    youngest = ages.groupby(events["person_id"].to_numpy()).min()
    return at_first.fillna(pid.map(youngest)).astype("Int64")


def _safe_house_days(events: pd.DataFrame, spec: dict) -> pd.Series:
    stays = events[events["form"].isin(spec["forms"])]
    if stays.empty:
        return pd.Series(dtype="Int64")
    as_of = events["date"].max()
    end = stays[spec["end"]].fillna(as_of)
    days = (end - stays[spec["start"]]).dt.days.clip(lower=0)
    return days.groupby(stays["person_id"]).sum(min_count=1).astype("Int64")
