"""The vectorised paths of ingest (issue 12, speed) against independent oracles.

Mixed-encoding detection (numpy over the bytes) against the regular expression it replaced,
CPR birth dates (numpy over the digits) against Python's ``datetime`` and the CPR office's
century rules written out here, and the deny list made in batches while the exports are read
against the deny list of all values made at once by :mod:`studylib.privacy.denylist`.
"""

from __future__ import annotations

import random
import re
from datetime import date

import pandas as pd
import pyarrow as pa
import pytest

from studylib.forms.deny_list_job import DenyListJob
from studylib.forms.reading import holds_utf8_sequences
from studylib.forms.validation import cpr_birth_dates
from studylib.privacy.denylist import DenyList, make_deny_list, make_token_list
from studylib.privacy.pseudonymiser import Pseudonymiser

KEY = bytes(range(32, 64))
#: A UTF-8 sequence of a non-ASCII character, as a regular expression (the oracle).
UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


@pytest.mark.parametrize("data, expected", [
    ("Søren;Ærø\n".encode("utf-8"), True),
    ("Søren;Ærø\n".encode("cp1252"), False),
    (b"plain ascii, no letters beyond\n", False),
    (b"", False),
    (b"cut \xc3", False),  # a lead byte at the very end
    (b"\xe2\x82\xac", True), (b"\xe2\x82", False),  # the euro sign whole and cut
    (b"\xf0\x9f\x98\x80", True), (b"\xf0\x9f\x98", False), (b"\xf5\x80\x80\x80", False),
    (b"\xc1\xbf", False), (b"\xc2\x80", True), (b"\xdf\xbf", True), (b"\xc2\xc0", False),
    (b"\xe5\x80", False), (b"\xe6\xf8\xe5", False),  # cp1252 ae, oe, aa
])
def test_utf8_sequences_are_found_on_both_sides_of_each_byte_range(data, expected):
    assert holds_utf8_sequences(data) is expected
    assert bool(UTF8_SEQUENCE.search(data)) is expected


def test_utf8_detection_agrees_with_the_regular_expression_on_random_bytes():
    rng = random.Random(20261202)
    edges = [0x00, 0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xef, 0xf0, 0xf4, 0xf5, 0xf8, 0xff]
    for _ in range(5000):
        data = bytes(rng.choice(edges) if rng.random() < 0.7 else rng.randrange(256) for _ in range(rng.randrange(0, 9)))
        assert holds_utf8_sequences(data) == bool(UTF8_SEQUENCE.search(data)), data


def _century(first_serial_digit: int, yy: int) -> int:
    """The CPR office's rules, written out: the century from the serial's first digit and the year."""
    if first_serial_digit <= 3:
        return 1900
    if first_serial_digit in (4, 9):
        return 2000 if yy <= 36 else 1900
    return 2000 if yy <= 57 else 1800


def _oracle(cpr: str | None):
    if cpr is None or not re.fullmatch(r"[0-9]{10}", cpr):
        return None
    day, month, yy = int(cpr[0:2]), int(cpr[2:4]), int(cpr[4:6])
    try:
        return pd.Timestamp(date(_century(int(cpr[6]), yy) + yy, month, day))
    except ValueError:
        return None


def test_cpr_birth_dates_agree_with_datetime_and_the_century_rules():
    rng = random.Random(7)
    numbers = [f"{rng.randint(0, 32):02d}{rng.randint(0, 13):02d}{rng.randint(0, 99):02d}{rng.randint(0, 9999):04d}"
               for _ in range(20000)]
    numbers += ["2902004000", "2902014000", "2902005800", "2902964000", "3112369999", "0101374000", "0101364000",
                "0101585000", "0101575000", "3104901234", "0000000000", "", "123456789", "12345678901", "0101901a34",
                "٠١٠١٩٠١٢٣٤", None]
    found = cpr_birth_dates(pd.Series(numbers, dtype="str"))
    for number, got in zip(numbers, found):
        expected = _oracle(number)
        assert (pd.isna(got) and expected is None) or got == expected, (number, got, expected)
    assert found.dtype == "datetime64[ns]"


NAMES = [["Maria Okafor", "0101901234", "P000000001"], ["Søren Ærbøl", "Maria Okafor", "+45 12345678"],
         ["Anne-Marie Jensen Nielsen", "p1@example.org", "0101901234"], []]
NOTES = [["Mødt ved opsøgende arbejde med Maria i opgang 12; ingen løn"], ["kort"],
         ["Mødt ved opsøgende arbejde med Maria i opgang 12; ingen løn", "Ringede om natten fra en ukendt adresse i byen"], []]
TOKENS = pd.Series(["a" * 64, "F01-" + "0123456789abcdef0123", None, "b" * 64], dtype="str")


@pytest.mark.parametrize("in_background", [1, 10**9], ids=["second process", "this process"])
def test_a_deny_list_made_in_batches_is_the_deny_list_of_all_values_at_once(tmp_path, in_background):
    key = Pseudonymiser(KEY)
    job = DenyListJob(key, tmp_path / "ds", append=False, in_background=in_background)
    try:
        for names, notes in zip(NAMES, NOTES):  # batches that repeat values of earlier ones
            job.add([pa.array(names, type=pa.string())], [pa.array(notes, type=pa.large_string())])
        job.add_tokens(TOKENS)
        path = job.finish()
    finally:
        job.cancel()
    made = DenyList.read(path)
    whole = make_deny_list([n for batch in NAMES for n in batch], KEY, notes=[n for batch in NOTES for n in batch])
    whole = whole.union(make_token_list(TOKENS.dropna().tolist(), KEY))
    assert made == whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds.denylist"]  # the temporary file went into place


def test_a_batch_that_fails_in_the_second_process_fails_the_deny_list(tmp_path):
    """No batch is left out silently: the list is not put in place, and nothing is left behind."""
    job = DenyListJob(Pseudonymiser(KEY), tmp_path / "ds", append=False, in_background=1)
    try:
        job.add([pa.array([b"\xff not text"], type=pa.binary())])  # the first batch goes to the worker at once
        job.add([pa.array(["Maria Okafor"])])
        job.add_tokens(TOKENS)
        with pytest.raises(pa.ArrowInvalid):
            job.finish()
    finally:
        job.cancel()
    assert list(tmp_path.iterdir()) == []
