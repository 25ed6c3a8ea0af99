"""The pseudonymiser: the one holder of the key during an ingest (DESIGN section 4, issue 12 item 1).

A :class:`Pseudonymiser` is made once from a key file (:meth:`Pseudonymiser.from_key_file`):
it reads the key, refuses a key that lies with the data (inside an output folder), and knows
whether the key is a demo key (for synthetic data only). From then on it gives what ingest
needs, and nothing gives back the key's bytes:

- person tokens (HMAC-SHA256 ``person``), event tokens (``event``, 20 hex digits), deny lists
  (``deny-list``) and the key fingerprint (:func:`studylib.privacy.tokens.key_fingerprint`);
- a seal (:meth:`Pseudonymiser.seal`, HMAC ``state``) that authenticates a state file, so
  that an edited linkage state is refused.

For the runner ("the audit never runs weaker than it says"), :func:`audit_key_check` tells
whether a key file matches the fingerprint a dataset recorded at ingest and whether the
dataset is demo data; :class:`AuditKeyError` says what to do when the audit cannot run at
full strength on real data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from studylib.errors import StudylibError
from studylib.privacy.denylist import DenyList, make_deny_list, make_token_list
from studylib.privacy.tokens import KeyFileError, is_demo_key, key_fingerprint, keyed_digests, keyed_token, read_key

#: Hex digits of an event token (80 bits).
EVENT_TOKEN_HEX = 20
#: The file the generator writes into a folder of synthetic raw exports.
SYNTHETIC_MARKER = "synth.json"


class AuditKeyError(StudylibError):
    """The audit cannot run with the key it needs: no key, or a key the dataset was not made with."""


class Pseudonymiser:
    """Keyed tokens, deny lists, fingerprint and seals under one key; see the module docstring.

    ``repr`` shows the fingerprint only. The object can be sent to a worker process (the key
    goes through the pipe, never a file)."""

    __slots__ = ("_key", "demo", "source", "fingerprint")

    def __init__(self, key: bytes, *, demo: bool = False, source: str | None = None) -> None:
        self._key = bytes(key)
        self.fingerprint = key_fingerprint(self._key)  # checks the key's length
        self.demo = bool(demo)
        self.source = source

    @classmethod
    def from_key_file(cls, key_file: str | os.PathLike, *, outputs: Iterable[str | os.PathLike] = ()) -> "Pseudonymiser":
        """Read ``key_file``; refuse it when it lies inside one of ``outputs`` (folders or files the
        caller writes); KeyFileWarning when other users can read it."""
        key_file = Path(key_file)
        check_key_location(key_file, outputs)
        key = read_key(key_file)
        return cls(key, demo=is_demo_key(key_file), source=str(key_file))

    def __repr__(self) -> str:
        return f"Pseudonymiser(fingerprint={self.fingerprint!r}, demo={self.demo})"

    def __getstate__(self):
        return {"key": self._key, "demo": self.demo, "source": self.source}

    def __setstate__(self, state) -> None:
        self._key = state["key"]
        self.fingerprint = key_fingerprint(self._key)
        self.demo = state["demo"]
        self.source = state["source"]

    # -- tokens ---------------------------------------------------------------------------------------

    def person_tokens(self, keys: pd.Series) -> pd.Series:
        """Person tokens (64 hex digits) of linkage keys such as ``cpr:0101901234`` (missing stays missing)."""
        return keyed_token(keys, self._key, purpose="person")

    def record_keys(self, person_ids) -> np.ndarray:
        """Each person's record key for the cell key method: a number in [0, 1) from a keyed
        digest of the person token (purpose ``record``), the same in every period and re-run."""
        from studylib.privacy.cell_key import record_key_of

        digests = keyed_digests([str(p) for p in person_ids], self._key, purpose="record")
        return np.fromiter((record_key_of(bytes.fromhex(d)) for d in digests), dtype=float, count=len(digests))

    def event_tokens(self, forms: pd.Series, record_ids: pd.Series) -> pd.Series:
        """``<form>-`` and 20 hex digits of a keyed token of form and record id, per record."""
        forms = pd.Series(forms).astype("str").reset_index(drop=True)
        record_ids = pd.Series(record_ids).astype("str").reset_index(drop=True)
        return forms + "-" + keyed_token(forms + "\x1f" + record_ids, self._key, "event", EVENT_TOKEN_HEX)

    def deny_list(self, names: Iterable, notes: Iterable = ()) -> DenyList:
        """The deny list of raw names and identifiers, and of the word sequences of free-text notes."""
        return make_deny_list(names, self._key, notes=notes)

    def token_list(self, tokens: Iterable[str]) -> DenyList:
        """The deny list of the prefixes of the dataset's tokens (join it to the names' list)."""
        return make_token_list(tokens, self._key)

    # -- seals ----------------------------------------------------------------------------------------

    def seal(self, payload: bytes) -> str:
        """HMAC-SHA256 (hex) of ``payload`` under the key, purpose ``state``."""
        return hmac.new(self._key, b"state\x1f" + payload, hashlib.sha256).hexdigest()

    def verify(self, payload: bytes, seal: object) -> bool:
        """Whether ``seal`` is this key's seal of ``payload`` (constant-time comparison)."""
        return isinstance(seal, str) and hmac.compare_digest(self.seal(payload), seal)

    def scanner_key(self) -> bytes:
        """The key bytes, for the output audit's scanner only (it looks for the key in reports)."""
        return self._key


def as_pseudonymiser(key: "Pseudonymiser | bytes") -> Pseudonymiser:
    """A Pseudonymiser as given, or one made from raw key bytes (for callers that read the key themselves)."""
    if isinstance(key, Pseudonymiser):
        return key
    if isinstance(key, (bytes, bytearray)):
        return Pseudonymiser(bytes(key))
    raise KeyFileError("a Pseudonymiser (Pseudonymiser.from_key_file) or the key's bytes are needed")


def check_key_location(key_file: str | os.PathLike, outputs: Iterable[str | os.PathLike]) -> None:
    """A key never lies with the data: refuse a key file at or inside any of ``outputs``."""
    key_path = Path(key_file).resolve()
    for folder in outputs:
        folder = Path(folder).resolve()
        if key_path == folder or key_path.is_relative_to(folder):
            raise KeyFileError(
                f"{key_file}: the key file is inside the output {folder}; a key is never stored "
                "with the data (and the output is replaced on ingest). Move the key elsewhere."
            )


# -- what the dataset recorded, for the audit -------------------------------------------------------------


def canonical_json(body: dict) -> bytes:
    """The bytes a seal covers: JSON with sorted keys, no spaces."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class AuditKey:
    """Which key the audit of a dataset's reports can use and at what strength.

    ``fingerprint`` is the key's (None without a key); ``dataset_fingerprint`` what the dataset
    recorded at ingest; ``demo`` whether the dataset is demo data (made with a demo key from
    synthetic raw exports); ``full`` whether the key and name checks can find anything."""

    key_file: Path | None
    fingerprint: str | None
    dataset_fingerprint: str | None
    demo: bool

    @property
    def full(self) -> bool:
        return self.fingerprint is not None and self.fingerprint == self.dataset_fingerprint

    def as_dict(self) -> dict:
        return {"key_fingerprint": self.fingerprint, "dataset_key_fingerprint": self.dataset_fingerprint,
                "demo": self.demo, "key_and_name_checks": "full" if self.full else "none"}


def dataset_key_record(dataset_dir: str | os.PathLike) -> tuple[str | None, bool]:
    """The key fingerprint a dataset recorded at ingest and whether it is demo data.

    Read from ``dataset.json`` (``made_by``); for datasets made before it was recorded there,
    the fingerprint of the linkage state beside the dataset (not demo)."""
    dataset_dir = Path(dataset_dir)
    try:
        meta = json.loads((dataset_dir / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError):
        meta = {}
    made = meta.get("made_by") if isinstance(meta, dict) else None
    made = made if isinstance(made, dict) else {}
    fingerprint = made.get("key_fingerprint")
    if not isinstance(fingerprint, str):
        try:
            state = json.loads(dataset_dir.with_name(dataset_dir.name + ".linkage").joinpath("state.json").read_text())
            fingerprint = state.get("key_fingerprint") if isinstance(state.get("key_fingerprint"), str) else None
        except (OSError, json.JSONDecodeError, AttributeError):
            fingerprint = None
    return fingerprint, bool(made.get("demo_key")) and bool(made.get("synthetic"))


def audit_key_check(dataset_dir: str | os.PathLike, key_file: str | os.PathLike | None) -> AuditKey:
    """The key the audit of reports on ``dataset_dir`` uses; :class:`AuditKeyError` when it would run weaker.

    On real (non-demo) data: no key, an unreadable key, a dataset without a recorded
    fingerprint, or a key whose fingerprint is not the dataset's is refused. On demo data no
    key is allowed (the result says the key checks did not run), a wrong key is refused too:
    the checks it runs could match nothing."""
    dataset_dir = Path(dataset_dir)
    recorded, demo = dataset_key_record(dataset_dir)
    if key_file is None:
        if demo:
            return AuditKey(None, None, recorded, demo)
        raise AuditKeyError(f"{dataset_dir}: not demo data, and no key for the audit: set STUDYLIB_KEY_FILE to the key the "
                            "dataset was ingested with (without it the audit cannot look for the key, tokens and names)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fingerprint = key_fingerprint(read_key(key_file))
    except KeyFileError as err:
        raise AuditKeyError(f"the audit's key: {err}") from None
    if recorded is None:
        raise AuditKeyError(f"{dataset_dir}: the dataset records no key fingerprint (made by an older studylib): "
                            "ingest it again so the audit can check that its key is the dataset's")
    if fingerprint != recorded:
        what = "re-make the demo dataset (`studylib demo --force`)" if demo else "give the key the dataset was ingested with"
        raise AuditKeyError(f"{key_file}: the key's fingerprint {fingerprint} is not the dataset's ({recorded}, {dataset_dir}): "
                            f"the audit's key and name checks would match nothing; {what}")
    return AuditKey(Path(key_file), fingerprint, recorded, demo)


def is_synthetic_source(raw_dirs: Iterable[str | os.PathLike]) -> bool:
    """Whether every raw folder was written by the generator (holds its ``synth.json``)."""
    raw_dirs = [Path(d) for d in raw_dirs]
    return bool(raw_dirs) and all((d / SYNTHETIC_MARKER).is_file() for d in raw_dirs)


def dataset_tokens(dataset_dir: str | os.PathLike) -> frozenset[str]:
    """The tokens a dataset holds (person ids and the hex part of event ids), for the audit's scanner."""
    import pyarrow.parquet as pq

    dataset_dir = Path(dataset_dir)
    tokens: set[str] = set()
    for table, column in (("persons", "person_id"), ("events", "event_id")):
        path = dataset_dir / f"{table}.parquet"
        if path.is_file():
            values = pq.read_table(path, columns=[column]).column(column).to_pylist()
            tokens.update(v.rsplit("-", 1)[-1].lower() for v in values if v)
    return frozenset(tokens)
