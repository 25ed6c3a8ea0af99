"""Key files on real files: what is written, what is read, and every way a key file can be wrong.

The expectations are the file format written out here (a comment line, 64 hex digits, a
newline, mode 600), the messages word for word, and the standard library's ``hmac`` for the
tokens of a key read back.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import stat
import warnings

import pandas as pd
import pytest

from studylib.privacy.tokens import KeyFileError, KeyFileWarning, is_demo_key, keyed_token, new_key, read_key


def test_a_new_key_file_is_one_comment_line_and_32_random_bytes_in_hex_mode_600(tmp_path):
    path = new_key(tmp_path / "a.key")
    text = path.read_text(encoding="ascii")
    header, body, rest = text.split("\n")
    assert header == "# studylib key (HMAC-SHA256 pseudonymisation). Secret: never store it with the data."
    assert len(body) == 64 and int(body, 16) >= 0 and rest == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key(path) == bytes.fromhex(body)
    assert not is_demo_key(path)
    other = new_key(tmp_path / "b.key")
    assert read_key(other) != read_key(path)


def test_a_demo_key_says_so(tmp_path):
    path = new_key(tmp_path / "demo.key", demo=True)
    assert path.read_text().startswith("# studylib DEMO key for SYNTHETIC data only.")
    assert is_demo_key(path) and len(read_key(path)) == 32
    assert not is_demo_key(tmp_path / "missing.key")


def test_a_key_is_never_written_over_anything_not_even_a_dangling_link(tmp_path):
    link = tmp_path / "link.key"
    link.symlink_to(tmp_path / "elsewhere.key")  # path.exists() is False for it
    with pytest.raises(KeyFileError) as caught:
        new_key(link)
    assert str(caught.value) == f"{link}: a file is already there; a key is never overwritten"
    assert link.is_symlink() and not (tmp_path / "elsewhere.key").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.key"], "no temporary file is left"
    existing = tmp_path / "k.key"
    existing.write_text("x")
    with pytest.raises(KeyFileError, match="a file is already there; a key is never overwritten \\(choose another path\\)"):
        new_key(existing)
    assert existing.read_text() == "x"


def test_a_key_needs_an_existing_folder_it_can_write_in(tmp_path):
    with pytest.raises(KeyFileError) as caught:
        new_key(tmp_path / "no" / "a.key")
    assert str(caught.value) == f"{tmp_path / 'no' / 'a.key'}: folder {tmp_path / 'no'} does not exist"
    target = "/proc/self/a.key"  # a folder no one can create files in, not even root
    with pytest.raises(KeyFileError) as caught:
        new_key(target)
    message = str(caught.value)
    assert message.startswith(f"{target}: cannot create the key file (") and message.endswith(")")
    reason = message[len(f"{target}: cannot create the key file ("):-1]
    assert reason in {os.strerror(e) for e in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS)}, "the system's reason, nothing more"


def _key_file(tmp_path, content: bytes, mode: int = 0o600):
    path = tmp_path / "k.key"
    path.write_bytes(content)
    path.chmod(mode)
    return path


_HEX = bytes(range(32)).hex()


@pytest.mark.parametrize(
    "content",
    [
        f"# comment\n{_HEX}\n".encode(),
        f"   # an indented comment\n{_HEX}\n".encode(),
        f"# comment\n{_HEX[:30]}\n  {_HEX[30:]}  \n".encode(),  # hex over two lines, spaces around
        f"# comment\n{_HEX.upper()}\n".encode(),
        _HEX.encode(),
    ],
    ids=["plain", "indented-comment", "two-lines", "upper-case", "no-comment"],
)
def test_hex_key_files_read_as_the_same_key(tmp_path, content):
    assert read_key(_key_file(tmp_path, content)) == bytes(range(32))


def test_a_raw_key_file_is_its_bytes(tmp_path):
    raw = bytes(range(200, 256)) + b"\x00" * 8  # not text at all
    assert read_key(_key_file(tmp_path, raw)) == raw
    letters = b"g" * 40  # text, but not hex and without comment lines: raw bytes too
    assert read_key(_key_file(tmp_path, letters)) == letters


@pytest.mark.parametrize(
    "content",
    [b"# comment\nnot hex at all, and long enough to be a key\n", b"   # indented\nzz" + b"0" * 70 + b"\n",
     b"# comment\nXX" + _HEX.encode() + b"\n"],
    ids=["words", "indented-comment-then-words", "hex-with-letters-outside-hex"],
)
def test_a_damaged_key_file_is_refused_with_what_to_do(tmp_path, content):
    path = _key_file(tmp_path, content)
    with pytest.raises(KeyFileError) as caught:
        read_key(path)
    assert str(caught.value) == f"{path}: not a studylib key file (after the # comment lines, hex digits are expected)"


def test_a_short_key_is_refused_with_its_length(tmp_path):
    path = _key_file(tmp_path, b"# c\n" + bytes(31).hex().encode() + b"\n")
    with pytest.raises(KeyFileError) as caught:
        read_key(path)
    assert str(caught.value) == (f"{path}: key is too short (31 bytes; at least 32 random bytes are needed); "
                                 "make a new one with `studylib key new PATH`")
    assert len(read_key(_key_file(tmp_path, b"# c\n" + bytes(32).hex().encode() + b"\n"))) == 32


def test_missing_folders_and_unreadable_keys_are_named(tmp_path):
    with pytest.raises(KeyFileError) as caught:
        read_key(tmp_path / "none.key")
    assert str(caught.value) == f"{tmp_path / 'none.key'}: key file not found; make one with `studylib key new {tmp_path / 'none.key'}`"
    with pytest.raises(KeyFileError) as caught:
        read_key(tmp_path)
    assert str(caught.value) == f"{tmp_path}: not a file"
    with pytest.raises(KeyFileError) as caught:
        read_key("/proc/self/mem")  # a file that exists and cannot be read
    assert str(caught.value) == f"/proc/self/mem: cannot read the key file ({os.strerror(5)})"


def test_a_key_others_can_read_warns_where_it_is_read_and_a_private_one_does_not(tmp_path):
    path = _key_file(tmp_path, _HEX.encode(), mode=0o640)
    with pytest.warns(KeyFileWarning) as record:
        read_key(path)
    [warning] = record
    assert str(warning.message) == f"{path}: key file can be read by other users (mode 640); run `chmod 600 {path}`"
    if not os.environ.get("STUDYLIB_MUTATION"):  # mutmut's trampoline adds a frame between caller and read_key
        assert warning.filename == __file__, "the warning points at the caller"
    path.chmod(0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_key(path) == bytes(range(32))


def test_tokens_of_a_key_read_back_are_the_standard_hmac(tmp_path):
    key = read_key(new_key(tmp_path / "t.key"))
    token = keyed_token(pd.Series(["cpr:0101901234"]), key, "person")
    assert token[0] == hmac.new(key, b"person\x1fcpr:0101901234", hashlib.sha256).hexdigest()
    assert token.dtype == pd.Series(["x"], dtype="str").dtype
