"""The data contract: vocabularies, schemas, and dataset folders on real Parquet files."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from studylib.data import SCHEMA_VERSION, DatasetError, read_dataset, validate_tables, vocabularies as v, write_dataset
from studylib.data.schemas import CASE_COLUMNS
from studylib.errors import ValidationError

TOKEN = "ab" * 32


def _token(i: int) -> str:
    return f"{i:064x}"


def small_tables(n: int = 4) -> dict[str, pd.DataFrame]:
    ids = [_token(i + 1) for i in range(n)]
    persons = pd.DataFrame({"person_id": ids, "sex": ["female", "male"] * (n // 2), "birth_year": [1990 + i for i in range(n)], "nationality": ["PH"] * n,
                            "record_key": [(i + 0.5) / n for i in range(n)]})
    events = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "person_id": ids,
            "form": ["F01"] * n,
            "date": pd.to_datetime(["2020-01-02"] * n),
            "organisation": ["ngo"] * n,
            "region": ["hovedstaden"] * n,
            "sector": ["au_pair"] * n,
        }
    )
    indicators = pd.DataFrame({"person_id": ids[:2], "indicator": ["dr_deceived_job", "ec_excessive_hours"], "event_id": ["e0", "e1"]})
    cases = pd.DataFrame({c: None for c in CASE_COLUMNS}, index=range(n))
    cases = cases.assign(
        person_id=ids, sex=persons.sex, birth_year=persons.birth_year, nationality="PH", record_key=persons.record_key,
        region="hovedstaden",
        first_contact_date=pd.Timestamp("2020-01-02"), first_contact_year=2020, age_at_first_contact=[30, 29, 16, 27][:n],
        age_band=["25-34", "25-34", "15-17", "25-34"][:n], minor=[False, False, True, False][:n], sector="au_pair",
        exploitation="labour", recruitment_channel="agency", referral_source="ngo", n_lists=1,
        decision="identified", decision_date=pd.Timestamp("2020-02-01"), reflection_days=30, safe_house_days=10,
        outcome="prepared_return", research_consent="unknown",
        **{f"list_{o}": o == "ngo" for o in v.ORGANISATION}, **{f"service_{s}": False for s in v.SERVICE},
    )
    return {"persons": persons, "events": events, "indicators": indicators, "cases": cases}


def test_vocabularies_are_snake_case_ascii_and_unique():
    for name, codes in v.VOCABULARIES.items():
        assert len(set(codes)) == len(codes), name
        if name in ("nationality", "form", "age_band"):
            continue
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", c) for c in codes), name
    assert set(v.SECTOR_ISIC) == set(v.SECTOR)
    assert v.SECTOR_ISIC["au_pair"] == v.SECTOR_ISIC["domestic_work"] == "T"
    assert (v.SECTOR_ISIC["agriculture"], v.SECTOR_ISIC["cleaning"], v.SECTOR_ISIC["construction"], v.SECTOR_ISIC["hospitality"]) == ("A", "N", "F", "I")
    assert set(v.SEX_HTCDS) == set(v.SEX)


def test_age_bands_cover_the_edges():
    ages = pd.Series([0, 14, 15, 17, 18, 24, 25, 54, 55, 99, np.nan])
    assert v.age_band(ages).tolist() == ["0-14", "0-14", "15-17", "15-17", "18-24", "18-24", "25-34", "45-54", "55+", "55+", "unknown"]
    with pytest.raises(KeyError, match="known vocabularies"):
        v.vocabulary("colour")


def test_dataset_round_trip_keeps_content_and_hash(tmp_path):
    folder = write_dataset(small_tables(), tmp_path / "ds", made_by={"tool": "test"})
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["schema_version"] == SCHEMA_VERSION
    assert meta["row_counts"] == {"persons": 4, "events": 4, "indicators": 2, "cases": 4}
    ds = read_dataset(folder, validate=True)
    assert ds.content_hash == meta["content_hash"]
    assert list(ds.cases.columns) == list(CASE_COLUMNS)
    # the same tables written again give the same content hash
    again = write_dataset(small_tables(), tmp_path / "ds2")
    assert json.loads((again / "dataset.json").read_text())["content_hash"] == meta["content_hash"]


def test_every_validation_failure_is_collected_with_table_column_row_and_value(tmp_path):
    tables = small_tables()
    tables["persons"].loc[1, "sex"] = "robot"
    tables["persons"].loc[3, "person_id"] = "not-a-token"
    tables["cases"].loc[2, "sector"] = "mining"
    del tables["indicators"]
    with pytest.raises(ValidationError) as info:
        write_dataset(tables, tmp_path / "bad")
    text = str(info.value)
    assert "table indicators: table is missing" in text
    assert "table persons, row 1, column 'sex'" in text and "'robot'" in text
    assert "row 3, column 'person_id'" in text
    assert "table cases, row 2, column 'sector'" in text and "'mining'" in text
    assert not (tmp_path / "bad").exists(), "nothing half-written"
    assert not list(tmp_path.iterdir())


def test_rewriting_replaces_the_dataset_whole_and_a_tampered_one_is_refused(tmp_path):
    folder = write_dataset(small_tables(), tmp_path / "ds")
    tables = small_tables(2)
    write_dataset(tables, folder)
    assert read_dataset(folder).meta["row_counts"]["persons"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    persons = pd.read_parquet(folder / "persons.parquet")
    persons.loc[0, "birth_year"] = 1901
    persons.to_parquet(folder / "persons.parquet", index=False)
    with pytest.raises(DatasetError, match="content hash"):
        read_dataset(folder, validate=True)


def test_reading_a_folder_that_is_not_a_dataset_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="studylib ingest"):
        read_dataset(tmp_path)
    write_dataset(small_tables(), tmp_path / "ds")
    (tmp_path / "ds" / "events.parquet").unlink()
    with pytest.raises(DatasetError, match="events.parquet is missing"):
        read_dataset(tmp_path / "ds")


def test_labels_show_codes_with_spaces_and_leave_other_values():
    assert v.label("not_identified") == "not identified"
    assert list(v.label(pd.Index(["au_pair", "cleaning", 2019, None]))) == ["au pair", "cleaning", 2019, None]
    assert v.label(pd.Series(["forced_criminality"], name="x")).tolist() == ["forced criminality"]


def test_the_period_of_first_contact_defaults_to_the_data_and_says_what_is_wrong():
    from studylib.data import first_contact_in

    cases = pd.DataFrame({"person_id": list("abcd"), "first_contact_year": pd.array([2016, 2019, 2024, None], dtype="Int64")})
    persons, first, last = first_contact_in(cases)
    assert (first, last, list(persons.person_id)) == (2016, 2024, ["a", "b", "c"])
    persons, first, last = first_contact_in(cases, year_from=2017, year_to=2020)
    assert (first, last, list(persons.person_id)) == (2017, 2020, ["b"])
    with pytest.raises(ValueError, match="after year_to"):
        first_contact_in(cases, 2021, 2018)
    with pytest.raises(ValueError, match="give year_from and year_to"):
        first_contact_in(cases.iloc[3:])
