"""The descriptive helpers of the sector study (studylib.analysis.descriptive, .consent) on
hand-built persons and events: country names, years and bands, groups, reflection, missing values,
consent; and that the columns they make count as intended through a real safe table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from studylib.analysis import consent, descriptive as d
from studylib.data import vocabularies as v
from studylib.errors import ConfigError


def test_every_nationality_code_of_the_vocabulary_has_a_country_name():
    names = d.country_names()
    assert [c for c in v.NATIONALITY if c not in names] == []
    assert d.country_name("PH") == "Philippines" and d.country_name("NO") == "Norway" and d.country_name("NA") == "Namibia"
    assert d.country_name("XX") == "unknown"
    assert len(set(names.values())) == len(names)  # no two codes share a name


def test_country_names_of_a_series_and_an_unknown_code():
    shown = d.country_name(pd.Series(["PL", "XX", None, "RO"]))
    assert shown.tolist() == ["Poland", "unknown", "unknown", "Romania"]
    with pytest.raises(ValueError, match="QQ"):
        d.country_name(pd.Series(["PL", "QQ"]))
    with pytest.raises(ValueError, match="QQ"):
        d.country_name("QQ")


def test_a_country_file_with_an_unquoted_no_is_refused_naming_the_key(tmp_path):
    bad = tmp_path / "countries.yaml"
    bad.write_text("PL: Poland\nNO: Norway\n")  # YAML reads NO as false
    with pytest.raises(ConfigError, match="False"):
        d.country_names(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("'PL': ''\n")
    with pytest.raises(ConfigError, match="PL"):
        d.country_names(empty)


def test_with_country_names_keeps_the_persons_and_changes_only_the_column():
    persons = pd.DataFrame({"person_id": ["a", "b"], "nationality": ["DK", "UA"], "sex": ["female", "male"]})
    shown = d.with_country_names(persons)
    assert shown.nationality.tolist() == ["Denmark", "Ukraine"]
    assert persons.nationality.tolist() == ["DK", "UA"]  # the data keep their codes
    assert shown.sex.tolist() == ["female", "male"]


def test_size_order_puts_the_largest_first_and_other_and_unknown_last():
    values = pd.Series(["b", "unknown", "a", "other", "c", "c", "b", "unknown", "unknown", None])
    assert d.size_order(values) == ["b", "c", "a", "other", "unknown"]


def test_the_nationality_table_names_the_top_countries_and_counts_the_rest_as_other():
    from studylib.report import safe_table

    codes = ["PH"] * 12 + ["UA"] * 7 + ["IN"] * 6 + ["KE"] * 2 + ["TH"] * 1 + ["XX"] * 5
    persons = pd.DataFrame({"person_id": [f"p{i}" for i in range(len(codes))], "nationality": codes})
    named = d.with_country_names(persons)
    table = safe_table(named, rows="nationality", order={"nationality": d.size_order(named.nationality)},
                       merge={"nationality": {"top": 2}}, settings={"min_cell": 5})
    counts = table.protected.counts.drop("Total")
    assert list(counts.index) == ["Philippines", "Ukraine", "other", "unknown"]
    assert counts.to_dict() == {"Philippines": 12, "Ukraine": 7, "other": 9, "unknown": 5}


def test_reporting_year_and_previous_year():
    years = d.reporting_years(2015, 2024)
    assert (years.year, years.previous) == (2024, 2023)
    assert d.reporting_years(2015, 2024, 2015).previous is None
    assert d.reporting_years(2015, 2024, 2016).previous == 2015
    with pytest.raises(ValueError, match="outside"):
        d.reporting_years(2015, 2024, 2025)
    with pytest.raises(ValueError, match="after"):
        d.reporting_years(2024, 2015)


def test_period_bands_end_with_the_last_year():
    years = pd.Series([2014, 2015, 2016, 2017, 2018, 2019, 2020, 2024, 2025])
    bands = d.period_bands(years, 2015, 2024, width=3)
    assert list(bands.cat.categories) == ["2015", "2016–2018", "2019–2021", "2022–2024"]
    assert bands.astype(object).where(bands.notna(), None).tolist() == [
        None, "2015", "2016–2018", "2016–2018", "2016–2018", "2019–2021", "2019–2021", "2022–2024", None]
    assert list(d.period_bands(pd.Series([2020]), 2020, 2024, width=5).cat.categories) == ["2020–2024"]


def test_sector_groups():
    persons = pd.DataFrame({"sector": ["au_pair", "cleaning", "au_pair", "unknown"]})
    assert d.sector_groups(persons, "au_pair").tolist() == ["au_pair", "all_other_sectors", "au_pair", "all_other_sectors"]
    assert v.label(d.ALL_OTHER_SECTORS) == "all other sectors"


def test_case_age_bands_on_both_sides_of_each_edge():
    as_of = pd.Timestamp("2024-12-31")
    days = [0, 90, 91, 181, 182, 364, 365, 729, 730, 4000]
    first = pd.Series([as_of - pd.Timedelta(days=x) for x in days])
    assert d.case_age_bands(first, as_of).tolist() == [
        "under three months", "under three months", "three to six months", "three to six months",
        "six months to a year", "six months to a year", "one to two years", "one to two years",
        "two years or more", "two years or more"]


def test_day_bands_close_on_the_right():
    days = pd.Series([0, 1, 30, 31, 60, 61, 100, 101, 120, 121, None], dtype="Int64")
    bands = d.day_bands(days, (30, 60, 100, 120))
    assert bands.tolist() == ["none", "1–30 days", "1–30 days", "31–60 days", "31–60 days", "61–100 days", "61–100 days",
                              "101–120 days", "101–120 days", "more than 120 days", "none"]
    assert list(bands.cat.categories)[0] == "none"
    with pytest.raises(ValueError, match="edges"):
        d.day_bands(days, (60, 30))


def test_reflection_offered_and_accepted_from_the_reflection_forms():
    events = pd.DataFrame({
        "person_id": ["a", "a", "b", "c", "d"],
        "form": ["F06", "F06", "F06", "F05", "F06"],
        "offered": [True, True, True, None, False],
        "accepted": [False, True, False, None, None],
    })
    out = d.reflection_of(events, ["a", "b", "c", "d", "e"]).set_index("person_id")
    assert out.reflection_offered.to_dict() == {"a": True, "b": True, "c": False, "d": False, "e": False}
    assert out.reflection_accepted.to_dict() == {"a": True, "b": False, "c": False, "d": False, "e": False}


def test_recruitment_fee_or_debt_and_relation_from_the_interviews():
    events = pd.DataFrame({
        "event_id": [f"e{i}" for i in range(8)],
        "person_id": ["a", "a", "b", "c", "d", "e", "f", "f"],
        "form": ["F04", "F04", "F04", "F04", "F04", "F01", "F04", "F04"],
        "date": pd.to_datetime(["2020-01-01", "2020-03-01", "2020-01-01", "2020-01-01", "2020-01-01", "2020-01-01",
                                "2021-01-01", "2020-01-01"]),
        "claimed_debt_dkk": [None, 5000.0, 0.0, 1200.0, None, 9000.0, None, None],
        "recruitment_fee_dkk": [0.0, 15000.0, 0.0, 0.0, None, 300.0, 0.0, 0.0],
        "recruiter_relation": ["family", "unknown", "employer", None, "stranger", "family", "unknown", "intimate_partner"],
    })
    out = d.recruitment_of(events, ["a", "b", "c", "d", "e", "f", "g"]).set_index("person_id")
    # a: fee in a later interview, debt too; b: interviewed, nothing owed; c: debt only; d: the fee never asked;
    # e: a fee on a form that is not the interview; f: the latest interview names no relation; g: never interviewed
    assert out.fee_or_debt.to_dict() == {"a": "fee_and_debt", "b": "neither_recorded", "c": "debt_only", "d": "unknown",
                                         "e": "unknown", "f": "neither_recorded", "g": "unknown"}
    assert out.recruiter_relation.to_dict() == {"a": "family", "b": "employer", "c": "unknown", "d": "stranger",
                                                "e": "unknown", "f": "intimate_partner", "g": "unknown"}
    assert set(out.fee_or_debt) <= set(d.FEE_OR_DEBT) and set(out.recruiter_relation) <= set(v.RECRUITER_RELATION)


def test_every_recruiter_relation_has_one_group_and_unknown_stays_unknown():
    relation = pd.Series([*v.RECRUITER_RELATION, None])
    groups = d.recruiter_group(relation)
    assert groups.tolist() == ["someone_close"] * 3 + ["employer_or_agent"] * 2 + ["stranger_or_other"] * 2 + ["unknown"] * 2
    with pytest.raises(ValueError, match="'neighbour'"):
        d.recruiter_group(pd.Series(["neighbour"]))


def test_recruitment_of_data_whose_interviews_never_asked_is_all_unknown():
    events = pd.DataFrame({"event_id": ["e0", "e1"], "person_id": ["a", "b"], "form": ["F04", "F01"],
                           "date": pd.to_datetime(["2020-01-01"] * 2)})
    out = d.recruitment_of(events, ["a", "b"])
    assert (out.fee_or_debt == "unknown").all() and (out.recruiter_relation == "unknown").all()


def test_child_exploitation_names_forms_beyond_prostitution_forced_crime_and_begging():
    persons = pd.DataFrame({
        "sector": ["prostitution", "other", "forced_crime", "unknown", "begging", "agriculture", "unknown", "other", "unknown",
                   "au_pair"],
        "exploitation": ["sexual", "sexual", "criminal", "criminal", "other", "unknown", "labour", "other", "unknown", "mixed"],
    })
    assert d.child_exploitation(persons).tolist() == [
        "sexual_exploitation", "sexual_exploitation", "forced_crime", "forced_crime", "begging", "labour_exploitation",
        "labour_exploitation", "mixed_or_other", "unknown", "labour_exploitation"]


def test_outcome_or_open_and_missing_flags():
    persons = pd.DataFrame({"person_id": ["a", "b", "c"], "outcome": ["asylum", None, "other"],
                            "nationality": ["XX", "PL", "DK"], "region": ["unknown", "sjaelland", None]})
    assert d.outcome_or_open(persons.outcome).tolist() == ["asylum", "not_closed", "other"]
    flags = d.missing_flags(persons, ["nationality", "region"])
    assert flags.missing_nationality.tolist() == [True, False, False]
    assert flags.missing_region.tolist() == [True, False, True]
    with pytest.raises(KeyError, match="sex"):
        d.missing_flags(persons, ["sex"])


def test_data_as_of_is_the_latest_event():
    events = pd.DataFrame({"date": pd.to_datetime(["2024-01-05", "2025-03-18", None])})
    assert d.data_as_of(events) == pd.Timestamp("2025-03-18")
    with pytest.raises(ValueError, match="no dates"):
        d.data_as_of(pd.DataFrame({"date": pd.to_datetime([None, None])}))


def test_consent_required_keeps_only_the_persons_who_agreed():
    persons = pd.DataFrame({"person_id": list("abcd"), "research_consent": ["yes", "no", "unknown", "yes"]})
    assert consent.studied_persons(persons, "required").person_id.tolist() == ["a", "d"]
    assert consent.studied_persons(persons, "not_required").person_id.tolist() == list("abcd")
    assert consent.consent_status(persons).tolist() == ["agreed", "not_agreed_or_unknown", "not_agreed_or_unknown", "agreed"]
    with pytest.raises(ValueError, match="required"):
        consent.studied_persons(persons, "yes")
    with pytest.raises(KeyError, match="research_consent"):
        consent.consent_status(persons.drop(columns="research_consent"))
    assert np.array_equal(consent.STATUS_ORDER, ("agreed", "not_agreed_or_unknown"))
