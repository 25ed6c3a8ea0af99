"""Secret keys and keyed tokens: the pseudonymisation of identifiers (DESIGN section 4).

A key is at least 32 random bytes kept in a file of mode 600 that never lies with the data.
A token is HMAC-SHA256 under that key of a *purpose* and a value (``person``, ``event``, ...),
so the same value gives unrelated tokens for different purposes, the same key gives the same
tokens in every run, and another key gives unlinkable ones. Plain hashing would not do: the
space of CPR numbers (~3.7e8) is searched in seconds.

The key is never logged, printed or written anywhere but its own file; error messages name
the file and what is wrong with it, never its content.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from studylib.data.atomic import write_file
from studylib.errors import StudylibError

#: Fewest random bytes a key may have.
MIN_KEY_BYTES = 32
#: Bytes a new key gets.
NEW_KEY_BYTES = 32

_HEADER = "# studylib key (HMAC-SHA256 pseudonymisation). Secret: never store it with the data.\n"
_DEMO_HEADER = (
    "# studylib DEMO key for SYNTHETIC data only. It is not secret; never use it for real data.\n"
)
_SEP = b"\x1f"  # unit separator between purpose and value


class KeyFileError(StudylibError):
    """A key file is missing, too short, malformed, or in the wrong place."""


class KeyFileWarning(UserWarning):
    """A key file can be read by other users."""


def new_key(path: str | os.PathLike, demo: bool = False) -> Path:
    """Write a new random key to ``path`` (mode 600). Refuses to overwrite an existing file.

    ``path``: the new key file; ``demo``: mark the key as one for synthetic data only.

    Example::

        new_key("keys/centre.key")
    """
    path = Path(path)
    if path.exists():
        raise KeyFileError(f"{path}: a file is already there; a key is never overwritten (choose another path)")
    if not path.parent.is_dir():
        raise KeyFileError(f"{path}: folder {path.parent} does not exist")
    text = (_DEMO_HEADER if demo else _HEADER) + secrets.token_bytes(NEW_KEY_BYTES).hex() + "\n"
    try:  # complete or not at all, mode 600 from the first byte, never over an existing file
        return write_file(path, text, mode=0o600, encoding="ascii", exclusive=True)
    except FileExistsError:
        raise KeyFileError(f"{path}: a file is already there; a key is never overwritten") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create the key file ({exc.strerror or exc})") from None


def read_key(path: str | os.PathLike) -> bytes:
    """Read a key file: hex text (comment lines start with ``#``) or raw bytes; at least 32 bytes.

    ``path``: the key file (mode 600).

    Example::

        key = read_key("keys/centre.key")
    """
    path = Path(path)
    if not path.exists():
        raise KeyFileError(f"{path}: key file not found; make one with `studylib key new {path}`")
    if not path.is_file():
        raise KeyFileError(f"{path}: not a file")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        warnings.warn(
            f"{path}: key file can be read by other users (mode {mode:o}); run `chmod 600 {path}`",
            KeyFileWarning,
            stacklevel=2,
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key file ({exc.strerror})") from None
    key = _decode_key(raw)
    if key is None:
        raise KeyFileError(f"{path}: not a studylib key file (after the # comment lines, hex digits are expected)")
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(
            f"{path}: key is too short ({len(key)} bytes; at least {MIN_KEY_BYTES} random bytes are needed); "
            "make a new one with `studylib key new PATH`"
        )
    return key


def is_demo_key(path: str | os.PathLike) -> bool:
    """Whether a key file was made with ``--demo`` (for synthetic data only)."""
    try:
        return Path(path).read_bytes().startswith(_DEMO_HEADER.encode())
    except OSError:
        return False


def _decode_key(raw: bytes) -> bytes | None:
    """Hex text (with ``#`` comment lines) as written by :func:`new_key`, else the raw bytes.

    None for a text with comment lines whose body is not hex (a damaged key file)."""
    try:
        lines = raw.decode("ascii").splitlines()
    except UnicodeDecodeError:
        return raw
    comments = [line for line in lines if line.lstrip().startswith("#")]
    body = "".join(line.strip() for line in lines if not line.lstrip().startswith("#"))
    if len(body) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in body):
        return bytes.fromhex(body)
    return None if comments else raw


def _hmac_pads(key: bytes) -> tuple:
    """Inner and outer SHA-256 states of HMAC (RFC 2104), to copy per value (twice as fast as hmac.new)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    return inner, outer


def keyed_digests(values, key: bytes, purpose: str) -> list[str]:
    """HMAC-SHA256 hex of ``purpose`` + separator + each value (a list of str, no missing)."""
    inner, outer = _hmac_pads(key)
    prefix = purpose.encode() + _SEP
    icopy, ocopy = inner.copy, outer.copy
    out = []
    append = out.append
    for value in values:
        i = icopy()
        i.update(prefix)
        i.update(value.encode("utf-8"))
        o = ocopy()
        o.update(i.digest())
        append(o.hexdigest())
    return out


def keyed_token(values: pd.Series, key: bytes, purpose: str, length: int = 64) -> pd.Series:
    """Tokens of a Series of strings (missing stays missing), hashing each distinct value once."""
    _check_key(key)
    values = pd.Series(values)
    codes, uniques = pd.factorize(values.astype("str"), use_na_sentinel=True)
    digests = keyed_digests(pd.Index(uniques).tolist(), key, purpose)
    if length < 64:
        digests = [d[:length] for d in digests]
    tokens = pc.take(pa.array(digests, type=pa.large_string()), pa.array(codes, mask=codes < 0))
    return pd.Series(pd.array(tokens, dtype="str"), index=values.index, name=values.name)


def person_token(keys: pd.Series, key: bytes) -> pd.Series:
    """Person tokens: HMAC-SHA256 (64 hex digits) of each linkage key, e.g. ``cpr:0101901234``.

    ``keys``: linkage keys (``cpr:...``, ``passport:...``), one per record; ``key``: the
    secret key's bytes (:func:`read_key`).

    Example::

        person_token(pd.Series(["cpr:0101901234"]), read_key("secret.key"))
    """
    return keyed_token(keys, key, purpose="person")


def key_fingerprint(key: bytes) -> str:
    """A short keyed value that tells two keys apart without revealing either."""
    _check_key(key)
    return keyed_digests(["fingerprint"], key, purpose="key")[0][:16]


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"a key of at least {MIN_KEY_BYTES} bytes is needed (read it with read_key)")
