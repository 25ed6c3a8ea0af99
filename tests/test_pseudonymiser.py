"""The pseudonymiser (issue 12 item 1) and the audit's key check ("the audit never runs weaker than it says").

Tokens are checked against HMAC-SHA256 computed with the standard library (the oracle); the
key check runs on datasets made by the real ingest from the exports of tests/raw_exports.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import warnings
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import raw_exports
from studylib.cli import app
from studylib.forms.ingest import ingest, linkage_dir
from studylib.privacy.pseudonymiser import (
    AuditKeyError,
    Pseudonymiser,
    audit_key_check,
    dataset_key_record,
    dataset_tokens,
)
from studylib.privacy.tokens import KeyFileError, KeyFileWarning, new_key, read_key


def _hmac(key: bytes, purpose: str, value: str) -> str:
    return hmac.new(key, purpose.encode() + b"\x1f" + value.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return {"real": new_key(folder / "real.key"), "other": new_key(folder / "other.key"),
            "demo": new_key(folder / "DEMO.key", demo=True), "demo2": new_key(folder / "DEMO2.key", demo=True)}


@pytest.fixture(scope="module")
def datasets(keys, tmp_path_factory):
    """A real dataset (real key, raw exports not from the generator) and a demo one (demo key, synth.json)."""
    base = tmp_path_factory.mktemp("datasets")
    raw = base / "raw"
    raw_exports.write_raw_exports(raw, n_persons=15)
    real = ingest(raw, base / "real", Pseudonymiser.from_key_file(keys["real"])).dataset_dir
    synthetic = base / "synthetic"
    raw_exports.write_raw_exports(synthetic, n_persons=15)
    (synthetic / "synth.json").write_text("{}")
    demo = ingest(synthetic, base / "demo", Pseudonymiser.from_key_file(keys["demo"])).dataset_dir
    with_real_key = ingest(synthetic, base / "synthetic_real_key", Pseudonymiser.from_key_file(keys["real"])).dataset_dir
    return {"real": real, "demo": demo, "synthetic_real_key": with_real_key}


def test_tokens_are_hmac_sha256_of_purpose_and_value(keys):
    key = read_key(keys["real"])
    p = Pseudonymiser.from_key_file(keys["real"])
    values = pd.Series(["cpr:0101901234", None, "passport:AB123456:PL"])
    tokens = p.person_tokens(values)
    assert tokens[0] == _hmac(key, "person", "cpr:0101901234") and pd.isna(tokens[1])
    assert tokens[2] == _hmac(key, "person", "passport:AB123456:PL")
    events = p.event_tokens(pd.Series(["F01", "F04"]), pd.Series(["r1", "r1"]))
    assert list(events) == [f"F01-{_hmac(key, 'event', 'F01' + chr(31) + 'r1')[:20]}", f"F04-{_hmac(key, 'event', 'F04' + chr(31) + 'r1')[:20]}"]
    assert p.fingerprint == _hmac(key, "key", "fingerprint")[:16]


def test_the_pseudonymiser_never_shows_its_key(keys):
    key = read_key(keys["real"])
    p = Pseudonymiser.from_key_file(keys["real"])
    shown = repr(p) + str(p)
    assert key.hex() not in shown and p.fingerprint in shown
    assert not hasattr(p, "key") and not hasattr(p, "__dict__")  # slots only: no stray attribute holds it
    again = pickle.loads(pickle.dumps(p))  # to a worker process, through the pipe
    assert again.fingerprint == p.fingerprint and list(again.person_tokens(pd.Series(["x"]))) == list(p.person_tokens(pd.Series(["x"])))


def test_the_demo_marking_and_the_key_location_are_checked_once(keys, tmp_path):
    assert Pseudonymiser.from_key_file(keys["demo"]).demo and not Pseudonymiser.from_key_file(keys["real"]).demo
    out = tmp_path / "dataset"
    out.mkdir()
    inside = new_key(out / "k.key")
    with pytest.raises(KeyFileError, match="inside the output"):
        Pseudonymiser.from_key_file(inside, outputs=[out])
    assert Pseudonymiser.from_key_file(inside, outputs=[tmp_path / "elsewhere"]).fingerprint
    inside.chmod(0o644)
    with pytest.warns(KeyFileWarning, match="chmod 600"):
        Pseudonymiser.from_key_file(inside)


def test_seals_verify_only_the_same_payload_under_the_same_key(keys):
    p, q = Pseudonymiser.from_key_file(keys["real"]), Pseudonymiser.from_key_file(keys["other"])
    seal = p.seal(b'{"a":1}')
    assert seal == hmac.new(read_key(keys["real"]), b'state\x1f{"a":1}', hashlib.sha256).hexdigest()
    assert p.verify(b'{"a":1}', seal) and not p.verify(b'{"a":2}', seal) and not q.verify(b'{"a":1}', seal)
    assert not p.verify(b'{"a":1}', None) and not p.verify(b'{"a":1}', seal.upper())


# -- the audit's key check ------------------------------------------------------------------------------------


def test_real_data_with_its_key_runs_the_full_audit(datasets, keys):
    checked = audit_key_check(datasets["real"], keys["real"])
    assert checked.full and not checked.demo
    assert checked.fingerprint == Pseudonymiser.from_key_file(keys["real"]).fingerprint
    assert checked.as_dict()["key_and_name_checks"] == "full"
    assert read_key(keys["real"]).hex() not in json.dumps(checked.as_dict(), default=str)


@pytest.mark.parametrize("which", ["no key", "another key", "a demo key", "unreadable key"])
def test_real_data_without_its_key_refuses(datasets, keys, tmp_path, which):
    key_file = {"no key": None, "another key": keys["other"], "a demo key": keys["demo"], "unreadable key": tmp_path / "none.key"}[which]
    match = {"no key": "no key for the audit", "another key": "is not the dataset's", "a demo key": "is not the dataset's",
             "unreadable key": "key file not found"}[which]
    with pytest.raises(AuditKeyError, match=match):
        audit_key_check(datasets["real"], key_file)


def test_demo_data_runs_without_a_key_but_never_with_a_wrong_one(datasets, keys):
    without = audit_key_check(datasets["demo"], None)
    assert without.demo and not without.full and without.as_dict()["key_and_name_checks"] == "none"
    assert audit_key_check(datasets["demo"], keys["demo"]).full
    with pytest.raises(AuditKeyError, match="studylib demo --force"):  # the demo key was remade
        audit_key_check(datasets["demo"], keys["demo2"])


def test_synthetic_exports_with_a_real_key_are_not_demo_data(datasets, keys):
    assert dataset_key_record(datasets["synthetic_real_key"])[1] is False
    with pytest.raises(AuditKeyError, match="not demo data"):
        audit_key_check(datasets["synthetic_real_key"], None)


def test_an_older_dataset_falls_back_to_its_linkage_state_or_refuses(datasets, keys, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(datasets["real"], old)
    shutil.copytree(linkage_dir(datasets["real"]), linkage_dir(old))
    meta = json.loads((old / "dataset.json").read_text())
    for name in ("key_fingerprint", "demo_key", "synthetic"):
        del meta["made_by"][name]
    (old / "dataset.json").write_text(json.dumps(meta))
    assert audit_key_check(old, keys["real"]).full
    shutil.rmtree(linkage_dir(old))
    with pytest.raises(AuditKeyError, match="records no key fingerprint"):
        audit_key_check(old, keys["real"])


def test_dataset_tokens_are_the_person_and_event_tokens(datasets):
    import pyarrow.parquet as pq

    tokens = dataset_tokens(datasets["real"])
    persons = pq.read_table(datasets["real"] / "persons.parquet").column("person_id").to_pylist()
    events = pq.read_table(datasets["real"] / "events.parquet").column("event_id").to_pylist()
    assert tokens == set(persons) | {e.split("-")[1] for e in events}


def test_key_check_command(datasets, keys):
    runner = CliRunner()
    ok = runner.invoke(app, ["key", "check", str(keys["real"]), "--data", str(datasets["real"])])
    assert ok.exit_code == 0 and "made with this key" in ok.output
    assert read_key(keys["real"]).hex() not in ok.output
    wrong = runner.invoke(app, ["key", "check", str(keys["other"]), "--data", str(datasets["real"])])
    assert wrong.exit_code == 2 and "is not the dataset's" in " ".join(wrong.output.split())
