"""Atomic writes: a file appears whole with its mode, or not at all; nothing is left behind."""

from __future__ import annotations

import stat

import pytest

from studylib.data.atomic import write_file


def test_a_file_is_written_whole_with_its_mode(tmp_path):
    path = write_file(tmp_path / "list.json", "æøå\n", mode=0o600)
    assert path.read_text(encoding="utf-8") == "æøå\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_file(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["list.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_file(tmp_path / "stamp.json", "old")
    with pytest.raises(UnicodeEncodeError):
        write_file(path, "ø", encoding="ascii")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["stamp.json"]
