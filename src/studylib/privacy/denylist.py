"""Deny lists: keyed hashes of the names and identifiers ingest saw, for the audit to look for.

Ingest writes one with :func:`make_deny_list` (names, CPR numbers, passport numbers, phones,
e-mails from the raw exports) and :meth:`DenyList.write`. It holds only HMAC-SHA256 digests
under the pseudonymisation key (purpose ``deny-list``, so no digest equals a person token),
sorted, so the file reveals nothing without the key. The audit normalises the report's text
the same way, hashes its words and word groups, and looks them up.

Normalisation (:func:`normalise_name`): case folded, Danish letters spelt out (æ ae, ø oe,
å aa), other accents dropped, separators between digits removed (``010190-1234`` and
``12 34 56 78`` become one word), everything else that is not a letter or digit a space.
A name of three or more words is also listed by its word pairs (first and last, and each
two neighbours), so ``Maria Okafor`` is found in a report that leaves out ``Grace``, and a
name with ø or å also as written without them (``Soren`` for ``Søren``).
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from studylib.data.atomic import write_file
from studylib.errors import StudylibError
from studylib.privacy.tokens import MIN_KEY_BYTES, KeyFileError, keyed_digests

PURPOSE = "deny-list"
FORMAT = "studylib-deny-list"
VERSION = 1
#: Longest word group looked up in a report (longer names are listed by their word pairs).
MAX_WORDS = 4

_LETTERS = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "ß": "ss", "þ": "th", "ð": "d", "đ": "d", "ł": "l", "œ": "oe", "ı": "i"})
#: Danish letters as written without them (Søren as Soren): names are listed in both spellings.
_PLAIN = str.maketrans({"ø": "o", "å": "a"})
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_DIGIT_JOIN = re.compile(r"(?<=\d)[ \u00a0./-](?=\d)")
WORD = re.compile(r"[^\W_]+")


class DenyListError(StudylibError):
    """A deny-list file is missing or malformed."""


def fold_text(text: str) -> str:
    """Text folded for comparison (see module docstring); word boundaries kept."""
    text = unicodedata.normalize("NFKD", text.casefold().translate(_LETTERS))
    return _DIGIT_JOIN.sub("", _COMBINING.sub("", text))


def name_words(text: str) -> list[str]:
    """The words of a name or identifier after folding."""
    return WORD.findall(fold_text(text))


def normalise_name(text: str) -> str:
    """A name or identifier as the deny list compares it: folded words joined by one space."""
    return " ".join(name_words(text))


def name_forms(text: str) -> list[str]:
    """The normalised forms under which a name is listed: itself, word pairs of long names,
    and the same with ø and å written o and a."""
    forms = []
    for spelling in dict.fromkeys([text, text.casefold().translate(_PLAIN)]):
        words = name_words(spelling)
        if not words or (len(words) == 1 and len(words[0]) < 2):
            continue
        if len(words) <= MAX_WORDS:
            forms.append(" ".join(words))
        if len(words) >= 3:
            forms.append(f"{words[0]} {words[-1]}")
            forms.extend(f"{a} {b}" for a, b in zip(words, words[1:]))
    return list(dict.fromkeys(forms))


@dataclass(frozen=True)
class DenyList:
    """Keyed digests of normalised names and identifiers; ``max_words`` is the longest form listed."""

    digests: frozenset[str]
    max_words: int = 2

    def __len__(self) -> int:
        return len(self.digests)

    def lookup(self, forms: Iterable[str], key: bytes) -> set[str]:
        """The normalised forms (word groups) whose digest is on the list."""
        forms = list(dict.fromkeys(forms))
        return {form for form, digest in zip(forms, keyed_digests(forms, key, PURPOSE)) if digest in self.digests}

    def write(self, path: str | os.PathLike) -> Path:
        """Write the list as JSON (digests sorted), atomically."""
        path = Path(path)
        body = {"format": FORMAT, "version": VERSION, "hash": "hmac-sha256", "purpose": PURPOSE,
                "max_words": self.max_words, "digests": sorted(self.digests)}
        return write_file(path, json.dumps(body, indent=0))

    @classmethod
    def read(cls, path: str | os.PathLike) -> "DenyList":
        path = Path(path)
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DenyListError(f"{path}: deny list not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DenyListError(f"{path}: not a deny list ({err})") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise DenyListError(f"{path}: not a deny list (key 'format' is not {FORMAT!r})")
        if body.get("version") != VERSION:
            raise DenyListError(f"{path}: deny list version {body.get('version')!r} is not {VERSION}")
        digests = body.get("digests")
        if not isinstance(digests, list) or not all(isinstance(d, str) and re.fullmatch(r"[0-9a-f]{64}", d) for d in digests):
            raise DenyListError(f"{path}: key 'digests' must be a list of 64-hex HMAC-SHA256 digests")
        max_words = body.get("max_words")
        if not isinstance(max_words, int) or not 1 <= max_words <= MAX_WORDS:
            raise DenyListError(f"{path}: key 'max_words' must be a whole number from 1 to {MAX_WORDS}")
        return cls(frozenset(digests), max_words)


def deny_list_path(dataset_dir: str | os.PathLike) -> Path:
    """Where a dataset's deny list lives: beside the dataset folder (``<dataset>.denylist``), never inside."""
    dataset_dir = Path(dataset_dir)
    return dataset_dir.with_name(dataset_dir.name + ".denylist")


def make_deny_list(names: Iterable, key: bytes) -> DenyList:
    """A deny list of names and identifiers (missing and blank ones are skipped)."""
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"a key of at least {MIN_KEY_BYTES} bytes is needed (read it with read_key)")
    forms = []
    for name in names:
        if name is None or (not isinstance(name, str) and pd.isna(name)):
            continue
        forms.extend(name_forms(str(name)))
    forms = list(dict.fromkeys(forms))
    max_words = max((len(f.split(" ")) for f in forms), default=1)
    return DenyList(frozenset(keyed_digests(forms, key, PURPOSE)), max_words)
