"""Ingest (issue 3): keys and tokens, round trip of synthetic exports, privacy, linkage, periods.

The raw exports come from the real generator (``studylib synth --messy``) and, where a test
needs to control every value, from tests/raw_exports.py. Every test runs the real ingest on
real files; the bad-input corpus is in test_ingest_corpus.py.
"""

from __future__ import annotations

import hashlib
import hmac as stdlib_hmac
import json
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import raw_exports
from studylib.cli import app
from studylib.data import read_dataset
from studylib.data.cases import derive_cases
from studylib.data.schemas import CASES
from studylib.errors import StudylibError
from studylib.data.form_catalogue import form_catalogue
from studylib.forms.ingest import IngestError, event_ids, ingest, linkage_dir
from studylib.privacy.denylist import deny_list_path
from studylib.forms.linkage import normalise_names
from studylib.forms.reading import parse_dates, parse_decimal, read_export
from studylib.privacy.denylist import DenyList
from studylib.privacy.tokens import KeyFileError, KeyFileWarning, is_demo_key, new_key, person_token, read_key
from studylib.synthetic import SynthOptions, generate

CAT = form_catalogue()
KEY = bytes(range(32, 64))
OTHER_KEY = bytes(range(100, 132))


@pytest.fixture(scope="module")
def messy_raw(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("synth") / "raw"
    generate(SynthOptions(out=raw, persons=1500, messy=True, seed=20261128))
    return raw


@pytest.fixture(scope="module")
def ingested(messy_raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("ingested") / "dataset"
    return ingest(messy_raw, out, KEY)


def _personal_values(raw: Path) -> set[str]:
    """Every value of a personal field (and every record id) in the raw exports."""
    values: set[str] = set()
    for path in sorted(raw.glob("F*_*.*")):
        table = read_export(path).frame
        personal = [f.name for f in CAT.fields_of(path.name[:3]) if f.personal] + ["record_id"]
        for column in personal:
            if column in table.columns:
                values.update(v.strip() for v in table[column].dropna().unique() if v.strip())
    return values


# -- keys and tokens ---------------------------------------------------------------------------------------


def test_new_key_is_random_private_and_never_overwritten(tmp_path):
    first, second = new_key(tmp_path / "a.key"), new_key(tmp_path / "b.key")
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert read_key(first) != read_key(second) and len(read_key(first)) >= 32
    before = first.read_bytes()
    with pytest.raises(KeyFileError, match="never overwritten"):
        new_key(first)
    assert first.read_bytes() == before
    demo = new_key(tmp_path / "DEMO.key", demo=True)
    assert is_demo_key(demo) and not is_demo_key(first)


def test_a_key_is_written_whole_or_not_at_all(tmp_path):
    from studylib.data.atomic import write_file

    existing = tmp_path / "taken.key"
    existing.write_text("somebody else's key\n")
    with pytest.raises(FileExistsError):  # what new_key relies on if a file appears after its check
        write_file(existing, "new\n", mode=0o600, exclusive=True)
    assert existing.read_text() == "somebody else's key\n"
    script = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_FSIZE, (40, 40))\n"
              "from studylib.privacy.tokens import KeyFileError, new_key\n"
              "try:\n    new_key(sys.argv[1])\nexcept KeyFileError as err:\n    print(err)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "full.key")], capture_output=True, text=True)
    assert "cannot create the key file" in done.stdout, done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.key"]  # no partial key, no temporary file


def test_read_key_says_what_is_wrong_and_never_shows_the_key(tmp_path):
    with pytest.raises(KeyFileError, match="not found"):
        read_key(tmp_path / "missing.key")
    short = tmp_path / "short.key"
    short.write_text("00ff" * 8)  # 16 bytes
    short.chmod(0o600)
    with pytest.raises(KeyFileError, match="too short") as err:
        read_key(short)
    assert "00ff" not in str(err.value)
    damaged = tmp_path / "damaged.key"
    damaged.write_text("# studylib key\nnot hex at all, not hex at all, not hex at all\n")
    damaged.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a studylib key file"):
        read_key(damaged)
    open_key = new_key(tmp_path / "open.key")
    open_key.chmod(0o644)
    with pytest.warns(KeyFileWarning, match="chmod 600"):
        read_key(open_key)


def test_person_tokens_are_keyed_stable_and_unlinkable_across_keys():
    keys = pd.Series(["cpr:0101901234", None, "cpr:0101901234", "passport:RO:X123456"])
    once, again = person_token(keys, KEY), person_token(keys, KEY)
    other = person_token(keys, OTHER_KEY)
    assert once.equals(again)
    assert pd.isna(once.iloc[1]) and once.iloc[0] == once.iloc[2] and once.iloc[0] != once.iloc[3]
    assert once.dropna().str.fullmatch(r"[0-9a-f]{64}").all()
    assert not set(once.dropna()) & set(other.dropna())
    import hashlib

    assert once.iloc[0] != hashlib.sha256(b"cpr:0101901234").hexdigest()  # not a plain hash


def test_names_are_compared_after_normalisation():
    first = pd.Series(["Søren", "SOEREN", "soren", " Anne-Marie ", "Anne  Marie", "Jensen", None])
    last = pd.Series(["Ærbøl", "aerboel", "Aerbol", "Jensen", "jensen", "Anne-Marie", "Jensen"])
    keys = normalise_names(first, last)
    assert keys.iloc[0] == keys.iloc[1] == keys.iloc[2]
    assert keys.iloc[3] == keys.iloc[4] == keys.iloc[5]  # hyphens, spacing and word order
    assert keys.iloc[0] != keys.iloc[3] and pd.isna(keys.iloc[6])


def test_danish_and_iso_spellings_of_values():
    dates = parse_dates(pd.Series(["2020-01-31", "31-01-2020", "31.01.2020", "31-02-2020", "2020/01/31"]), CAT.export.date_formats)
    assert list(dates[:3]) == [pd.Timestamp("2020-01-31")] * 3 and dates[3:].isna().all()
    numbers = parse_decimal(pd.Series(["1.234,50", "1234,5", "1234.5", "1,234.50", "12", "abc"]))
    assert list(numbers[:5]) == [1234.5, 1234.5, 1234.5, 1234.5, 12.0] and pd.isna(numbers.iloc[5])


# -- round trip and privacy ---------------------------------------------------------------------------------


def test_synthetic_exports_round_trip_into_a_valid_dataset(ingested, messy_raw):
    data = read_dataset(ingested.dataset_dir, validate=True)
    report = ingested.report
    truth = pd.read_parquet(messy_raw / "truth" / "records.parquet")
    assert len(data.events) == len(truth) - report["rejected"]["rows"]
    assert len(data.events) > 5000 and len(data.cases) > 1000
    assert data.persons["person_id"].is_unique and set(data.events["person_id"]) == set(data.persons["person_id"])
    assert set(data.cases["person_id"]) <= set(data.persons["person_id"])
    assert set(data.indicators["event_id"]) <= set(data.events.loc[data.events["form"] == "F04", "event_id"])
    assert data.events["event_id"].str.fullmatch(r"F(0[1-9]|1[0-4])-[0-9a-f]{20}").all()
    assert sorted(p.name for p in ingested.dataset_dir.iterdir()) == [
        "cases.parquet", "dataset.json", "events.parquet", "indicators.parquet", "ingest_report.json", "ingest_report.md", "persons.parquet"]
    assert report["ignored_files"] == ["synth.json"]  # truth/ is a folder: never read
    assert report["linkage"]["persons"] == len(data.persons)
    assert 0 < report["uniqueness"]["cases_unique"] <= len(data.cases)
    text = (ingested.dataset_dir / "ingest_report.md").read_text()
    for heading in ("## Files", "## Rejected rows", "## Linkage", "## Uniqueness"):
        assert heading in text


def test_no_personal_value_reaches_the_dataset_or_the_report(ingested, messy_raw):
    personal = _personal_values(messy_raw)
    assert len(personal) > 3000  # names, CPR and passport numbers, phones, notes, record ids
    out = ingested.dataset_dir
    cells: set[str] = set()
    for path in out.glob("*.parquet"):
        table = pd.read_parquet(path)
        assert not {f.name for f in CAT.person_fields if f.personal} & set(table.columns)
        for column in table.columns:
            cells.update(table[column].dropna().astype(str).unique())
    # two letters identify nobody, and a surname such as Hu, written HU, is also a country code
    personal = {value for value in personal if len(value) >= 3}
    assert not cells & personal
    for path in linkage_dir(out).glob("*.parquet"):  # the linkage tokens beside the dataset hold none either
        table = pd.read_parquet(path)
        for column in table.columns:
            assert not set(table[column].dropna().astype(str).unique()) & personal
    text = "\n".join((out / name).read_text() for name in ("ingest_report.json", "ingest_report.md", "dataset.json"))
    deny = deny_list_path(out).read_text()
    for value in personal:
        if len(value) >= 5:
            assert value not in text, "a personal value is in the report"
            assert value not in deny
    assert KEY.hex() not in text and KEY.hex() not in deny


def test_the_deny_list_lies_beside_the_dataset_and_knows_the_names(ingested, messy_raw):
    path = deny_list_path(ingested.dataset_dir)
    assert path.parent == ingested.dataset_dir.parent and stat.S_IMODE(path.stat().st_mode) == 0o600
    deny = DenyList.read(path)
    f01 = read_export(messy_raw / "F01_outreach.csv").frame
    row = f01[(f01["first_name"].str.strip() != "") & (f01["last_name"].str.strip() != "")].iloc[0]
    from studylib.privacy.denylist import normalise_name

    name = normalise_name(f"{row['first_name']} {row['last_name']}")
    assert deny.lookup([name], KEY) == {name}
    assert not deny.lookup([name], OTHER_KEY)


def test_a_large_deny_list_is_made_in_a_second_process_with_the_same_result(tmp_path, monkeypatch):
    import studylib.forms.deny_list_job as deny_list_job

    raw = tmp_path / "raw"
    raw_exports.write_raw_exports(raw, n_persons=30)
    inline = ingest(raw, tmp_path / "inline", KEY)
    monkeypatch.setattr(deny_list_job, "IN_BACKGROUND", 1)
    background = ingest(raw, tmp_path / "background", KEY)
    assert DenyList.read(background.deny_list).digests == DenyList.read(inline.deny_list).digests
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file left


def test_linkage_recovers_the_true_persons_of_messy_exports(ingested, messy_raw):
    truth = pd.read_parquet(messy_raw / "truth" / "records.parquet")
    truth["event_id"] = event_ids(truth["form"], truth["record_id"], KEY).to_numpy()
    events = pd.read_parquet(ingested.dataset_dir / "events.parquet", columns=["event_id", "person_id"])
    linked = truth.merge(events, on="event_id")
    assert len(linked) == len(events)
    pure = linked.groupby("person_id")["true_id"].transform("nunique").eq(1)
    per_true = linked.assign(pure=pure).groupby("true_id").agg(clusters=("person_id", "nunique"), pure=("pure", "all"))
    exactly = ((per_true["clusters"] == 1) & per_true["pure"]).mean()
    merged = (linked.groupby("person_id")["true_id"].nunique() > 1).mean()
    assert exactly >= 0.99, f"only {exactly:.2%} of the true persons recovered"
    assert merged <= 0.001, f"{merged:.2%} of persons wrongly merged"


def test_same_key_same_dataset_other_key_unlinkable(ingested, messy_raw, tmp_path):
    again = ingest(messy_raw, tmp_path / "again", KEY)
    other = ingest(messy_raw, tmp_path / "other", OTHER_KEY)
    first, second, third = (read_dataset(r.dataset_dir) for r in (ingested, again, other))
    assert second.meta["content_hash"] == first.meta["content_hash"]
    assert second.persons.equals(first.persons)
    assert third.meta["content_hash"] != first.meta["content_hash"]
    assert not set(third.persons["person_id"]) & set(first.persons["person_id"])
    assert not set(third.events["event_id"]) & set(first.events["event_id"])
    assert len(third.persons) == len(first.persons) and len(third.events) == len(first.events)


# -- two periods ----------------------------------------------------------------------------------------------


def _split_periods(raw: Path, target: Path, cutoff: str) -> tuple[Path, Path]:
    """The exports of ``raw`` as two periods (before and from ``cutoff``), spelled as they were."""
    early, late = target / "2019", target / "2020"
    early.mkdir(parents=True)
    late.mkdir(parents=True)
    for path in sorted(raw.glob("F*_*.csv")):
        table = read_export(path).frame
        dates = parse_dates(table["date"], CAT.export.date_formats)
        before = (dates < pd.Timestamp(cutoff)).to_numpy()
        for folder, part in ((early, table[before]), (late, table[~before])):
            part.to_csv(folder / path.name, index=False)
    return early, late


def test_two_periods_one_after_the_other_equal_both_together(ingested, messy_raw, tmp_path):
    early, late = _split_periods(messy_raw, tmp_path / "periods", "2020-01-01")
    together = ingest([early, late], tmp_path / "together", KEY)
    first = ingest(early, tmp_path / "monthly", KEY)
    appended = ingest(late, tmp_path / "monthly", KEY, append=True)
    hashes = {read_dataset(r.dataset_dir, validate=True).meta["content_hash"] for r in (together, appended, ingested)}
    assert len(hashes) == 1, "append, together and the unsplit exports must give the same dataset"
    assert first.report["dataset"]["persons"] < appended.report["dataset"]["persons"]
    assert appended.report["mode"] == "append" and appended.report["records_added"] > 0
    # the same exports again add nothing
    again = ingest(late, tmp_path / "monthly", KEY, append=True)
    assert again.report["records_added"] == 0 and again.report["records_already_in_dataset"] == appended.report["records_added"]
    assert read_dataset(again.dataset_dir).meta["content_hash"] in hashes
    # the deny list grows with the periods
    assert len(DenyList.read(deny_list_path(tmp_path / "monthly"))) > len(DenyList.read(deny_list_path(tmp_path / "together"))) * 0.9
    with pytest.raises(IngestError, match="another key"):
        ingest(late, tmp_path / "monthly", OTHER_KEY, append=True)


def test_append_refuses_a_dataset_whose_linkage_tokens_are_gone(tmp_path):
    raw = tmp_path / "raw"
    raw_exports.write_raw_exports(raw, n_persons=20)
    ingest(raw, tmp_path / "ds", KEY)
    import shutil

    shutil.rmtree(linkage_dir(tmp_path / "ds"))
    with pytest.raises(IngestError, match="linkage tokens"):
        ingest(raw, tmp_path / "ds", KEY, append=True)


# -- conflicts ------------------------------------------------------------------------------------------------


def test_conflicts_are_reported_not_resolved(tmp_path):
    persons = raw_exports.make_persons(30, 4)
    records = raw_exports.make_records(persons, 5)
    with_cpr = records[records["cpr"] != ""]
    person = with_cpr["true_id"].value_counts().index[0]  # a person with several CPR records
    rows = records.index[(records["true_id"] == person) & (records["cpr"] != "")]
    assert len(rows) >= 2
    records.loc[rows[1], "birth_date"] = "1950-06-15"  # one CPR number, two birth dates
    # the person's records disagree on sex with as many votes each way: a tie
    own = records.index[records["true_id"] == person]
    half = len(own) // 2
    records.loc[own[:half], "sex"] = "female"
    records.loc[own[half:2 * half], "sex"] = "transgender"
    records.loc[own[2 * half:], "sex"] = "unknown"  # an odd record out does not vote
    raw_exports.write_raw_exports(tmp_path / "raw", records=records)
    result = ingest(tmp_path / "raw", tmp_path / "ds", KEY)
    conflicts = result.report["conflicts"]
    assert conflicts["birth_dates_per_cpr"]["persons"] == 1
    assert conflicts["cpr_birth_date_differs"]["persons"] == 1
    assert conflicts["sex"]["persons"] == 1
    flagged = conflicts["sex"]["person_ids"][0]
    persons_table = read_dataset(result.dataset_dir).persons.set_index("person_id")
    assert persons_table.loc[flagged, "sex"] == "unknown", "a tie is not resolved"
    assert "birth_dates_per_cpr: 1 persons" in (result.dataset_dir / "ingest_report.md").read_text()


# -- the cases table ------------------------------------------------------------------------------------------


def _events(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in ("date", "start_date", "end_date"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column])
    return frame


def test_cases_are_derived_from_the_events_by_the_rules():
    a, b, c = ("a" * 64, "b" * 64, "c" * 64)
    persons = pd.DataFrame({"person_id": [a, b, c], "sex": ["female", "male", "male"], "birth_year": pd.array([1990, 2008, None], dtype="Int64"),
                            "nationality": ["NG", "RO", "XX"]})
    events = _events([
        {"event_id": "F02-1", "person_id": a, "form": "F02", "date": "2020-03-01", "organisation": "hotline", "region": "hovedstaden", "sector": "cleaning"},
        {"event_id": "F01-1", "person_id": a, "form": "F01", "date": "2020-01-10", "organisation": "ngo", "region": "syddanmark", "sector": "prostitution"},
        {"event_id": "F04-1", "person_id": a, "form": "F04", "date": "2020-04-01", "organisation": "centre_outreach", "region": "hovedstaden",
         "sector": "hospitality", "exploitation": "labour", "recruitment_channel": "agency", "research_consent": "yes"},
        {"event_id": "F05-1", "person_id": a, "form": "F05", "date": "2020-05-01", "organisation": "centre_outreach", "region": "hovedstaden",
         "decision": "pending", "sector": "unknown", "exploitation": "labour"},
        {"event_id": "F05-2", "person_id": a, "form": "F05", "date": "2020-06-01", "organisation": "centre_outreach", "region": "hovedstaden",
         "decision": "identified", "sector": "unknown", "exploitation": "mixed"},
        {"event_id": "F06-1", "person_id": a, "form": "F06", "date": "2020-06-02", "organisation": "immigration_service", "region": "hovedstaden", "days_granted": 60},
        {"event_id": "F06-2", "person_id": a, "form": "F06", "date": "2020-08-01", "organisation": "immigration_service", "region": "hovedstaden", "days_granted": 120},
        {"event_id": "F07-1", "person_id": a, "form": "F07", "date": "2020-06-03", "organisation": "ngo", "region": "hovedstaden",
         "start_date": "2020-06-03", "end_date": "2020-07-03"},
        {"event_id": "F07-2", "person_id": a, "form": "F07", "date": "2020-09-01", "organisation": "ngo", "region": "hovedstaden",
         "start_date": "2020-09-01", "end_date": None},
        {"event_id": "F14-1", "person_id": a, "form": "F14", "date": "2020-09-11", "organisation": "centre_outreach", "region": "hovedstaden", "outcome": "residence_permit"},
        {"event_id": "F03-1", "person_id": b, "form": "F03", "date": "2021-02-01", "organisation": "police", "region": "midtjylland",
         "sector": "forced_crime", "exploitation_suspected": "criminal"},
        {"event_id": "F08-1", "person_id": b, "form": "F08", "date": "2021-02-05", "organisation": "health_clinic", "region": "midtjylland"},
        {"event_id": "F04-9", "person_id": c, "form": "F04", "date": "2021-03-01", "organisation": "police", "region": "abroad", "sector": "other"},
    ])
    ages = pd.Series([29, 30, 30, 30, 30, 30, 30, 30, 30, 30, 13, 13, None], dtype="Int64")
    cases = CASES.validate(derive_cases(persons, events, event_ages=ages)).set_index("person_id")
    assert list(cases.index) == [a, b]  # c has no contact form: not a case
    first = cases.loc[a]
    assert first["first_contact_date"] == pd.Timestamp("2020-01-10") and first["first_contact_year"] == 2020
    assert first["region"] == "syddanmark" and first["referral_source"] == "ngo"
    assert first["age_at_first_contact"] == 30 and first["age_band"] == "25-34" and not first["minor"]
    assert first["sector"] == "hospitality"  # the decisions say unknown: the interview's sector
    assert first["exploitation"] == "mixed" and first["recruitment_channel"] == "agency" and first["research_consent"] == "yes"
    assert first["list_ngo"] and first["list_hotline"] and not first["list_police"] and first["n_lists"] == 2
    assert first["decision"] == "identified" and first["decision_date"] == pd.Timestamp("2020-06-01")
    assert first["reflection_days"] == 120
    assert first["safe_house_days"] == 30 + 181  # the open stay counts up to the latest event of the data (2021-03-01)
    assert first["service_safe_house"] and not first["service_health"] and first["outcome"] == "residence_permit"
    second = cases.loc[b]
    assert second["minor"] and second["age_band"] == "0-14" and second["exploitation"] == "criminal"
    assert second["decision"] == "pending" and pd.isna(second["decision_date"]) and second["service_health"]
    assert pd.isna(second["reflection_days"]) and pd.isna(second["safe_house_days"]) and pd.isna(second["outcome"])
    assert second["research_consent"] == "unknown" and second["recruitment_channel"] == "unknown" and second["list_police"]
    # without exact ages: first contact year minus birth year
    rough = derive_cases(persons, events).set_index("person_id")
    assert rough.loc[a, "age_at_first_contact"] == 30 and rough.loc[b, "age_at_first_contact"] == 13


# -- the command line ------------------------------------------------------------------------------------------


def _run(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def test_cli_key_new_and_ingest(tmp_path):
    raw = tmp_path / "raw"
    raw_exports.write_raw_exports(raw, n_persons=15)
    made = _run("key", "new", str(tmp_path / "k.key"))
    assert made.exit_code == 0 and stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    assert _run("key", "new", str(tmp_path / "k.key")).exit_code == 2
    assert "must contain DEMO" in _run("key", "new", str(tmp_path / "x.key"), "--demo").output
    assert _run("key", "new", str(tmp_path / "DEMO-test.key"), "--demo").exit_code == 0
    done = _run("ingest", str(raw), "--out", str(tmp_path / "ds"), env={"STUDYLIB_KEY_FILE": str(tmp_path / "k.key")})
    assert done.exit_code == 0, done.output
    assert "dataset written" in done.output and (tmp_path / "ds" / "dataset.json").is_file()
    key_hex = read_key(tmp_path / "k.key").hex()
    assert key_hex not in done.output
    demo = _run("ingest", str(raw), "--out", str(tmp_path / "demo"), "--key-file", str(tmp_path / "DEMO-test.key"))
    assert demo.exit_code == 0 and "is a demo key: use it for synthetic data only" in " ".join(demo.output.split())


@pytest.mark.parametrize("problem", ["no key", "short key", "key inside the output", "output not a dataset", "no exports"])
def test_cli_refuses_without_writing_anything(problem, tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw_exports.write_raw_exports(raw, n_persons=10)
    key = new_key(tmp_path / "k.key")
    args = ["ingest", str(raw), "--out", str(out), "--key-file", str(key)]
    expected = {"no key": "no key", "short key": "too short", "key inside the output": "inside the output folder",
                "output not a dataset": "not a dataset folder", "no exports": "no form exports"}[problem]
    if problem == "no key":
        args = args[:-2]
    elif problem == "short key":
        (tmp_path / "short.key").write_text("abcd" * 4)
        args[-1] = str(tmp_path / "short.key")
    elif problem == "key inside the output":
        out.mkdir()
        args[-1] = str(new_key(out / "k.key"))
    elif problem == "output not a dataset":
        out.mkdir()
        (out / "thesis.docx").write_text("precious")
    elif problem == "no exports":
        args[1] = str(tmp_path / "empty")
        (tmp_path / "empty").mkdir()
    result = _run(*args, env={"STUDYLIB_KEY_FILE": ""} if problem == "no key" else None)
    assert result.exit_code == 2 and expected in " ".join(result.output.split())
    assert not (out / "dataset.json").exists() and not list(tmp_path.glob(".out*"))
    if problem == "output not a dataset":
        assert (out / "thesis.docx").read_text() == "precious"


# -- issue 12: the sealed linkage state, the output lock, leftovers, what the dataset records ----------------


@pytest.fixture()
def small_ingest(tmp_path):
    raw = tmp_path / "raw"
    raw_exports.write_raw_exports(raw, n_persons=20)
    result = ingest(raw, tmp_path / "ds", KEY)
    return raw, tmp_path / "ds", result


def _state(ds: Path) -> dict:
    return json.loads((linkage_dir(ds) / "state.json").read_text())


def test_the_linkage_state_is_sealed_with_an_hmac_under_the_key(small_ingest):
    raw, ds, _ = small_ingest
    state = _state(ds)
    seal = state.pop("seal")
    body = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
    assert seal == stdlib_hmac.new(KEY, b"state\x1f" + body, hashlib.sha256).hexdigest()  # oracle: the stdlib
    assert state["links_sha256"] == hashlib.sha256((linkage_dir(ds) / "links.parquet").read_bytes()).hexdigest()
    assert ingest(raw, ds, KEY, append=True).report["records_added"] == 0  # sealed: accepted


def _other_fingerprint() -> str:
    from studylib.privacy.tokens import key_fingerprint

    return key_fingerprint(OTHER_KEY)


@pytest.mark.parametrize("edit", ["fingerprint of a second key", "content hash", "seal removed", "links replaced"])
def test_an_edited_linkage_state_is_refused(small_ingest, edit):
    raw, ds, _ = small_ingest
    path = linkage_dir(ds) / "state.json"
    state = _state(ds)
    before = {p.name: p.read_bytes() for p in (ds.iterdir())}
    if edit == "fingerprint of a second key":  # the attack of the issue: a second key appended
        state["key_fingerprint"] = _other_fingerprint()
        path.write_text(json.dumps(state))
        with pytest.raises(IngestError, match="edited or damaged"):
            ingest(raw, ds, OTHER_KEY, append=True)
        with pytest.raises(IngestError, match=r"another key \(or edited\)"):
            ingest(raw, ds, KEY, append=True)
        assert {p.name: p.read_bytes() for p in ds.iterdir()} == before
        return
    if edit == "content hash":
        state["dataset_content_hash"] = "0" * 64
        path.write_text(json.dumps(state))
        match = "edited or damaged"
    elif edit == "seal removed":
        del state["seal"]
        path.write_text(json.dumps(state))
        match = "no seal"
    else:
        links = pd.read_parquet(linkage_dir(ds) / "links.parquet")
        links.iloc[:-1].to_parquet(linkage_dir(ds) / "links.parquet", index=False)
        match = "not the file the linkage state was sealed with"
    with pytest.raises(IngestError, match=match):
        ingest(raw, ds, KEY, append=True)
    assert {p.name: p.read_bytes() for p in ds.iterdir()} == before  # nothing changed


def test_dataset_records_the_key_fingerprint_and_demo_marking(tmp_path):
    from studylib.privacy.pseudonymiser import Pseudonymiser
    from studylib.privacy.tokens import key_fingerprint

    raw = tmp_path / "raw"
    raw_exports.write_raw_exports(raw, n_persons=15)
    made = read_dataset(ingest(raw, tmp_path / "real", KEY).dataset_dir).meta["made_by"]
    assert made["key_fingerprint"] == key_fingerprint(KEY) and made["demo_key"] is False and made["synthetic"] is False
    demo_key = new_key(tmp_path / "DEMO.key", demo=True)
    (raw / "synth.json").write_text("{}")
    made = read_dataset(ingest(raw, tmp_path / "demo", Pseudonymiser.from_key_file(demo_key)).dataset_dir).meta["made_by"]
    assert made["demo_key"] is True and made["synthetic"] is True
    text = "".join(p.read_text(errors="replace") for d in ("real", "demo") for p in (tmp_path / d).iterdir())
    assert KEY.hex() not in text and read_key(demo_key).hex() not in text


def test_a_second_ingest_into_the_same_output_is_refused_while_one_runs(small_ingest):
    import fcntl

    raw, ds, _ = small_ingest
    lock = ds.with_name(".ds.lock")
    with open(lock, "w") as handle:  # what a running ingest holds
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(IngestError, match="another ingest is writing"):
            ingest(raw, ds, KEY)
    lock.unlink()
    ingest(raw, ds, KEY)
    assert not lock.exists()


def test_a_killed_ingest_leaves_temporaries_that_the_next_run_removes(tmp_path):
    """A real kill (SIGKILL) of an ingest while it writes; the next run cleans up and succeeds."""
    import signal
    import time

    raw = tmp_path / "raw"
    raw_exports.write_raw_exports(raw, n_persons=60)
    child = ("import sys, time, studylib.forms.ingest as m\n"
             "from studylib.data import dataset as d\n"
             "real = d.write_dataset\n"
             "def slow(*a, **k):\n"
             "    out = real(*a, **k); print('staged', flush=True); time.sleep(60); return out\n"
             "m.write_dataset = slow\n"
             f"m.ingest(sys.argv[1], sys.argv[2], bytes(range(32, 64)))\n")
    proc = subprocess.Popen([sys.executable, "-c", child, str(raw), str(tmp_path / "ds")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "staged"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert any(n.startswith(".ds.ingest-") for n in left) and any(n.startswith(".ds.denylist-") for n in left), left
    result = ingest(raw, tmp_path / "ds", KEY)
    assert result.report["dataset"]["persons"] > 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_the_deny_list_holds_note_sequences_and_token_prefixes(small_ingest):
    from studylib.privacy.denylist import NOTE_PURPOSE, TOKEN_PURPOSE, note_forms
    from studylib.privacy.tokens import keyed_digests

    raw, ds, result = small_ingest
    deny = DenyList.read(result.deny_list)
    assert deny.note_words == 5 and deny.token_prefix == 12
    data = read_dataset(ds)
    person, event = data.persons["person_id"].iloc[0], data.events["event_id"].iloc[0]
    for token in (person, event.split("-")[1]):
        assert keyed_digests([token[:12]], KEY, TOKEN_PURPOSE)[0] in deny.digests
    notes = pd.concat([read_export(p).frame.get("notes", pd.Series(dtype=str)) for p in raw.glob("F*.csv")])
    note = next(n for n in notes if isinstance(n, str) and len(n.split()) >= 5)
    assert keyed_digests([note_forms(note)[0]], KEY, NOTE_PURPOSE)[0] in deny.digests
    assert stat.S_IMODE(result.deny_list.stat().st_mode) == 0o600


def test_dates_after_the_export_date_are_rejected_per_row(tmp_path):
    """The export date: --export-date, else the one the generator recorded in synth.json, else today."""
    records = raw_exports.make_records(raw_exports.make_persons(20, 6), 7)
    raw = tmp_path / "raw"
    raw_exports.write_raw_exports(raw, records=records, dialects=("iso",))
    f01 = raw_exports.export_frame(records, "F01").reset_index(drop=True)
    dates = pd.to_datetime(f01["date"])
    cut = dates.sort_values().iloc[len(dates) // 2]
    after = int((dates > cut).sum())
    key = new_key(tmp_path / "k.key")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(raw), "--out", str(tmp_path / "a"), "--key-file", str(key),
                                 "--export-date", cut.strftime("%Y-%m-%d")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "a" / "ingest_report.json").read_text())
    rows = {(r["file"], r["row"]) for r in report["rejected"]["listed"] if r["column"] == "date" and "export date" in r["rule"]}
    assert {r for r in rows if r[0] == "F01_outreach.csv"} == {("F01_outreach.csv", i + 2) for i in np.flatnonzero(dates > cut)}
    assert after > 0
    (raw / "synth.json").write_text(json.dumps({"export_date": cut.strftime("%Y-%m-%d")}))
    recorded = ingest(raw, tmp_path / "b", KEY)
    assert recorded.report["rejected"]["rows"] == report["rejected"]["rows"]
    bad = runner.invoke(app, ["ingest", str(raw), "--out", str(tmp_path / "c"), "--key-file", str(key), "--export-date", "1.2.2020"])
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output
