"""The audit's text scanner (issue 12 item 3, detection): the key and tokens however written,
names in any word order and with look-alike letters, words copied from free-text notes.

The deny list comes from a real ingest of tests/raw_exports.py exports; every spelling of the
key or a token is built here with the standard library (hex, base64, uuid, str of a list,
numpy's print), independently of the scanner. Each rule also has its near misses that must
not be found (tables of counts, years, a provenance hash, ordinary text).
"""

from __future__ import annotations

import base64
import uuid

import numpy as np
import pandas as pd
import pytest

import raw_exports
from studylib.data import read_dataset
from studylib.forms.ingest import ingest
from studylib.privacy.denylist import DenyList, make_deny_list
from studylib.privacy.personal_data import TextScanner

KEY = bytes(range(7, 39))


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    base = tmp_path_factory.mktemp("scanner")
    records = raw_exports.make_records(raw_exports.make_persons(25, 3), 4)
    f01 = records[records["form"] == "F01"].index
    records.loc[f01[0], ["first_name", "last_name"]] = ["Maria Grace", "Okafor"]
    records.loc[f01[1], "notes"] = "Arbejdsgiveren tog hendes pas og lod hende sove i kælderen under vaskeriet"
    raw_exports.write_raw_exports(base / "raw", records=records)
    result = ingest(base / "raw", base / "ds", KEY)
    data = read_dataset(result.dataset_dir)
    return DenyList.read(result.deny_list), data


@pytest.fixture(scope="module")
def scanner(ingested):
    return TextScanner(KEY, ingested[0])


def _rules(scanner: TextScanner, text: str) -> set[str]:
    return {m.rule for m in scanner.scan(text)}


# -- the key --------------------------------------------------------------------------------------------------


def _key_spellings() -> dict[str, str]:
    h = KEY.hex()
    return {
        "16-hex groups": " ".join(h[i:i + 16] for i in range(0, 64, 16)),
        "4-hex groups, upper case": " ".join(h[i:i + 4] for i in range(0, 64, 4)).upper(),
        "bytes with colons": ":".join(h[i:i + 2] for i in range(0, 64, 2)),
        "groups over lines": "\n".join(h[i:i + 8] for i in range(0, 64, 8)),
        "0x list": ", ".join(f"0x{b:02x}" for b in KEY),
        "integer list": str(list(KEY)),
        "numpy array": str(np.frombuffer(KEY, dtype=np.uint8)),
        "first 12 hex digits": f"prefix {h[:12]} only",
        "middle 14 hex digits, mixed case": "x " + h[20:34].upper()[:7] + h[27:34] + " y",
        "six integers": "bytes " + ", ".join(str(b) for b in KEY[10:16]),
        "base64": base64.b64encode(KEY).decode(),
        "urlsafe base64 of half": base64.urlsafe_b64encode(KEY[:16]).decode().rstrip("="),
    }


@pytest.mark.parametrize("spelling", list(_key_spellings()))
def test_the_key_is_found_however_it_is_written(scanner, spelling):
    assert "key" in _rules(scanner, f"The kernel printed: {_key_spellings()[spelling]}\n"), spelling


def test_the_key_is_found_without_a_deny_list():
    plain = TextScanner(KEY)
    for spelling, text in _key_spellings().items():
        assert "key" in {m.rule for m in plain.scan(text)}, spelling


# -- tokens ---------------------------------------------------------------------------------------------------


def _token_spellings(token: str) -> dict[str, str]:
    raw = bytes.fromhex(token)
    return {
        "16-digit prefix": f"person {token[:16]} was",
        "12-digit prefix, upper case": f"id={token[:12].upper()};",
        "as a UUID": str(uuid.UUID(token[:32])),
        "base64 of the bytes": base64.b64encode(raw).decode(),
        "base64 of the text": base64.b64encode(token.encode()).decode(),
        "groups of 4": " ".join(token[i:i + 4] for i in range(0, 32, 4)),
        "integer list of the first 8 bytes": str(list(raw[:8])),
    }


@pytest.mark.parametrize("spelling", list(_token_spellings("0" * 64)))
def test_a_person_token_is_found_however_it_is_written(ingested, scanner, spelling):
    token = ingested[1].persons["person_id"].iloc[3]
    assert "token" in _rules(scanner, _token_spellings(token)[spelling]), spelling


def test_an_event_token_prefix_is_found(ingested, scanner):
    event = ingested[1].events["event_id"].iloc[5]
    assert "token" in _rules(scanner, f"event {event.split('-')[1][:14]}")


def test_a_uuid_and_even_hex_groups_are_tokens_even_without_the_dataset():
    plain = TextScanner()
    assert "token" in {m.rule for m in plain.scan(str(uuid.uuid4()))}
    assert "token" in {m.rule for m in plain.scan("3fa9 0c1d 77be 12aa 9c0f 4e2b 1a7d 88c3")}


NEAR_MISSES = [
    "Persons by year: 2019 2020 2021 2022 2023 2024 2025 2026",
    "| 12 | 15 | 20 | 33 | 41 | 7 | 9 | 250 | 5 |",
    "[12, 15, 20, 33, 41, 7, 9, 250, 5, 18, 1, 3]",
    "Data: sha256:" + "ab12" * 16,
    "A decade of added face value: 1234 5678 dead beef",
    "Tabel 3 viser 120 personer i 2023 og 97 i 2024 (kilde: 2024-11-30).",
    "The reflection period was offered to most persons in the au pair sector.",
]


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_are_not_findings(scanner, text):
    assert _rules(scanner, text) == set(), text


# -- names and notes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Maria Okafor", "Okafor, Maria", "OKAFOR Maria Grace", "Grace Okafor",
                                  "M\u0430ria Ok\u0430for",  # Cyrillic а
                                  "\u041c\u0430ri\u0430 \u041ek\u0430f\u043er",  # Cyrillic М, а, О, о
                                  "\uff2d\uff41\uff52\uff49\uff41 Okafor"])  # fullwidth
def test_a_name_is_found_in_any_word_order_and_with_look_alike_letters(scanner, text):
    assert "deny-list" in _rules(scanner, f"Case note: {text} was met."), text


def test_a_sentence_of_a_free_text_note_is_found_and_a_common_word_is_not(scanner):
    found = scanner.scan("Quote: lod hende sove i kælderen, said the worker.")
    assert [m.shown for m in found if m.rule == "deny-list"] == ["[words of a free-text note, 5 words]"]
    assert _rules(scanner, "Hun sov i kælderen.") == set()


def test_names_are_not_found_without_the_right_key(ingested):
    other = TextScanner(bytes(range(100, 132)), ingested[0])
    assert "deny-list" not in {m.rule for m in other.scan("Okafor, Maria")}


def test_a_format_1_deny_list_is_still_read_in_written_order(tmp_path):
    import json

    from studylib.privacy.tokens import keyed_digests

    body = {"format": "studylib-deny-list", "version": 1, "hash": "hmac-sha256", "purpose": "deny-list", "max_words": 2,
            "digests": keyed_digests(["okafor maria"], KEY, "deny-list")}  # format 1: the words as written
    (tmp_path / "old.denylist").write_text(json.dumps(body))
    read = DenyList.read(tmp_path / "old.denylist")
    assert read.ordered
    assert "deny-list" in {m.rule for m in TextScanner(KEY, read).scan("Okafor Maria")}
    assert "deny-list" not in {m.rule for m in TextScanner(KEY, read).scan("Maria Okafor")}
