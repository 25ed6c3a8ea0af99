"""Deny lists: keyed hashes of the names and identifiers ingest saw, for the audit to look for.

Ingest writes one with :func:`make_deny_list` (names, CPR numbers, passport numbers, phones,
e-mails from the raw exports) and :meth:`DenyList.write`. It holds only HMAC-SHA256 digests
under the pseudonymisation key (purpose ``deny-list``, so no digest equals a person token),
sorted, so the file reveals nothing without the key. The audit normalises the report's text
the same way, hashes its words and word groups, and looks them up.

Normalisation (:func:`normalise_name`): case folded, Danish letters spelt out (æ ae, ø oe,
å aa), other accents dropped, separators between digits removed (``010190-1234`` and
``12 34 56 78`` become one word), everything else that is not a letter or digit a space.
Look-alike letters of other scripts (a Cyrillic ``а`` for a Latin ``a``; the table is
``confusables.yaml``) are folded to the Latin letter before hashing (:func:`skeleton`).

Names are listed with their words in sorted order, and the audit sorts the words of each word
group it looks up, so ``Okafor, Maria`` is found as well as ``Maria Okafor``. A name of three
or more words is also listed by its word pairs (first and last, and each two neighbours), so
``Maria Okafor`` is found in a report that leaves out ``Grace``, and a name with ø or å also
as written without them (``Soren`` for ``Søren``).

Free-text notes are listed by their word sequences: every run of :data:`NOTE_WORDS`
neighbouring words (in order, purpose ``deny-list-note``), so a sentence copied from a note
into a report is found; notes shorter than that are not listed (too common to tell apart).
Each word of those sequences is listed too (``deny-list-note-word``), so the audit hashes
only the runs of a report's words that all occur in notes.

The tokens of the dataset (person ids, event ids) are listed by their first
:data:`TOKEN_PREFIX` hex digits (purpose ``deny-list-token``), so that the audit finds a person
token shown cut short, grouped, as a UUID or in base64 without knowing the dataset.

Format version 1 (before names were sorted) is still read: its names are looked up in the
order written.
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

from functools import lru_cache
from importlib.resources import files

from studylib.config import read_yaml
from studylib.data.atomic import write_file
from studylib.errors import StudylibError
from studylib.privacy.tokens import MIN_KEY_BYTES, KeyFileError, keyed_digests

PURPOSE = "deny-list"
NOTE_PURPOSE = "deny-list-note"
NOTE_WORD_PURPOSE = "deny-list-note-word"
TOKEN_PURPOSE = "deny-list-token"
#: Hex digits of the token prefixes listed: a token cut to 12 or more digits is still found.
TOKEN_PREFIX = 12
FORMAT = "studylib-deny-list"
VERSION = 2
READABLE_VERSIONS = (1, 2)
#: Words in each listed sequence of a free-text note.
NOTE_WORDS = 5
CONFUSABLES_PATH = files("studylib.privacy") / "confusables.yaml"
#: Longest word group looked up in a report (longer names are listed by their word pairs).
MAX_WORDS = 4

_LETTERS = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "ß": "ss", "þ": "th", "ð": "d", "đ": "d", "ł": "l", "œ": "oe", "ı": "i"})
#: Danish letters as written without them (Søren as Soren): names are listed in both spellings.
_PLAIN = str.maketrans({"ø": "o", "å": "a"})
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_DIGIT_JOIN = re.compile(r"(?<=\d)[ \u00a0./-](?=\d)")
WORD = re.compile(r"[^\W_]+")
_HEX_DIGITS = re.compile(r"[0-9a-f]*")


class DenyListError(StudylibError):
    """A deny-list file is missing or malformed."""


@lru_cache(maxsize=1)
def _confusables() -> dict[int, str]:
    table = read_yaml(CONFUSABLES_PATH, "confusables table")["letters"]
    return str.maketrans({str(k): str(v) for k, v in table.items()})


def fold_text(text: str) -> str:
    """Text folded for comparison (see module docstring); word boundaries kept."""
    text = unicodedata.normalize("NFKD", text.casefold().translate(_LETTERS))
    return _DIGIT_JOIN.sub("", _COMBINING.sub("", text))


def skeleton(folded: str) -> str:
    """Folded text with look-alike letters of other scripts as the Latin letter they look like
    (``confusables.yaml``): what the deny list hashes and the audit compares."""
    return folded if folded.isascii() else folded.translate(_confusables())


def name_words(text: str) -> list[str]:
    """The words of a name or identifier after folding."""
    return WORD.findall(fold_text(text))


def normalise_name(text: str) -> str:
    """A name or identifier as the deny list compares it: folded words joined by one space.

    ``text``: a name or an identifier as written.

    Example::

        normalise_name("  MARÍA   Santos ")
    """
    return " ".join(name_words(text))


def sorted_group(words) -> str:
    """A word group as names are listed: its words in sorted order, joined by one space."""
    return " ".join(sorted(words))


def name_forms(text: str, ordered: bool = False) -> list[str]:
    """The normalised forms under which a name is listed: itself, word pairs of long names,
    and the same with ø and å written o and a; words sorted unless ``ordered`` (format 1)."""
    join = " ".join if ordered else sorted_group
    forms = []
    for spelling in dict.fromkeys([text, text.casefold().translate(_PLAIN)]):
        words = WORD.findall(skeleton(fold_text(spelling)))
        if not words or (len(words) == 1 and len(words[0]) < 2):
            continue
        if len(words) <= MAX_WORDS:
            forms.append(join(words))
        if len(words) >= 3:
            forms.append(join([words[0], words[-1]]))
            forms.extend(join([a, b]) for a, b in zip(words, words[1:]))
    return list(dict.fromkeys(forms))


def note_forms(text: str, size: int = NOTE_WORDS) -> list[str]:
    """The word sequences of ``size`` neighbouring words of a free-text note (none if it is shorter)."""
    words = WORD.findall(skeleton(fold_text(text)))
    return list(dict.fromkeys(" ".join(words[i:i + size]) for i in range(len(words) - size + 1)))


@dataclass(frozen=True)
class DenyList:
    """Keyed digests of normalised names and identifiers (and of note word sequences).

    ``max_words`` is the longest name form listed; ``note_words`` the length of the listed
    note sequences (0: none); ``token_prefix`` the hex digits of the listed token prefixes
    (0: none); ``ordered`` is True for format 1 lists, whose names keep the order in which
    they were written."""

    digests: frozenset[str]
    max_words: int = 2
    note_words: int = 0
    ordered: bool = False
    token_prefix: int = 0

    def __len__(self) -> int:
        return len(self.digests)

    def lookup(self, forms: Iterable[str], key: bytes) -> set[str]:
        """The normalised forms (word groups, as listed) whose digest is on the list."""
        forms = list(dict.fromkeys(forms))
        return {form for form, digest in zip(forms, keyed_digests(forms, key, PURPOSE)) if digest in self.digests}

    def lookup_notes(self, sequences: Iterable[str], key: bytes) -> set[str]:
        """The note word sequences whose digest is on the list."""
        sequences = list(dict.fromkeys(sequences))
        return {s for s, digest in zip(sequences, keyed_digests(sequences, key, NOTE_PURPOSE)) if digest in self.digests}

    def lookup_note_words(self, words: Iterable[str], key: bytes) -> set[str]:
        """The words that occur in some listed note (to look up only runs of such words)."""
        words = list(dict.fromkeys(words))
        return {w for w, digest in zip(words, keyed_digests(words, key, NOTE_WORD_PURPOSE)) if digest in self.digests}

    def lookup_token_prefixes(self, prefixes: Iterable[str], key: bytes) -> set[str]:
        """The hex prefixes (lower case, :data:`TOKEN_PREFIX` digits) of tokens on the list."""
        prefixes = list(dict.fromkeys(prefixes))
        return {p for p, digest in zip(prefixes, keyed_digests(prefixes, key, TOKEN_PURPOSE)) if digest in self.digests}

    def union(self, other: "DenyList") -> "DenyList":
        """This list and ``other`` together (an append joins the periods' lists)."""
        if self.ordered != other.ordered:
            raise DenyListError("cannot join a format 1 deny list with a newer one: ingest all periods again")
        return DenyList(self.digests | other.digests, max(self.max_words, other.max_words),
                        max(self.note_words, other.note_words), self.ordered, max(self.token_prefix, other.token_prefix))

    def write(self, path: str | os.PathLike) -> Path:
        """Write the list as JSON (digests sorted), atomically, owner-only."""
        path = Path(path)
        body = {"format": FORMAT, "version": 1 if self.ordered else VERSION, "hash": "hmac-sha256", "purpose": PURPOSE,
                "max_words": self.max_words, "note_words": self.note_words, "token_prefix": self.token_prefix,
                "digests": sorted(self.digests)}
        return write_file(path, json.dumps(body), mode=0o600)  # indent=None: the C encoder (1M digests in 0.2 s)

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
        version = body.get("version")
        if version not in READABLE_VERSIONS:
            raise DenyListError(f"{path}: deny list version {version!r} is not one of {READABLE_VERSIONS}; "
                                "ingest again with this studylib to make a current one")
        digests = body.get("digests")
        if (not isinstance(digests, list) or not all(isinstance(d, str) and len(d) == 64 for d in digests)
                or not _HEX_DIGITS.fullmatch("".join(digests))):
            raise DenyListError(f"{path}: key 'digests' must be a list of 64-hex HMAC-SHA256 digests")
        max_words = body.get("max_words")
        if not isinstance(max_words, int) or not 1 <= max_words <= MAX_WORDS:
            raise DenyListError(f"{path}: key 'max_words' must be a whole number from 1 to {MAX_WORDS}")
        note_words = body.get("note_words", 0)
        if not isinstance(note_words, int) or isinstance(note_words, bool) or note_words < 0:
            raise DenyListError(f"{path}: key 'note_words' must be a whole number, 0 or more")
        token_prefix = body.get("token_prefix", 0)
        if token_prefix not in (0, TOKEN_PREFIX):
            raise DenyListError(f"{path}: key 'token_prefix' must be 0 or {TOKEN_PREFIX}")
        return cls(frozenset(digests), max_words, note_words, ordered=version == 1, token_prefix=token_prefix)


def deny_list_path(dataset_dir: str | os.PathLike) -> Path:
    """Where a dataset's deny list lives: beside the dataset folder (``<dataset>.denylist``), never inside."""
    dataset_dir = Path(dataset_dir)
    return dataset_dir.with_name(dataset_dir.name + ".denylist")


def _present(values: Iterable):
    for value in values:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            continue
        yield str(value)


def token_prefixes(tokens: Iterable[str]) -> list[str]:
    """The listed prefixes of tokens (person ids; event ids without their ``F01-``), lower case."""
    return list(dict.fromkeys(t.rsplit("-", 1)[-1][:TOKEN_PREFIX].lower() for t in _present(tokens)))


def make_token_list(tokens: Iterable[str], key: bytes) -> DenyList:
    """A deny list of the :data:`TOKEN_PREFIX`-digit prefixes of ``tokens`` only (join it to the names' list)."""
    return DenyList(frozenset(keyed_digests(token_prefixes(tokens), key, TOKEN_PURPOSE)), 1, 0, token_prefix=TOKEN_PREFIX)


def make_deny_list(names: Iterable, key: bytes, notes: Iterable = ()) -> DenyList:
    """A deny list of names and identifiers and of the word sequences of free-text ``notes``
    (missing and blank ones are skipped).

    ``names``: names and identifiers; ``key``: the pseudonymisation key, which the list's
    keyed hashes use; ``notes``: free-text notes.

    Example::

        make_deny_list(["Maria Santos", "0101901234"], read_key("secret.key"), notes=["met at the bus station"])
    """
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"a key of at least {MIN_KEY_BYTES} bytes is needed (read it with read_key)")
    forms: dict[str, None] = {}
    for name in _present(names):
        forms.update(dict.fromkeys(name_forms(name)))
    sequences: dict[str, None] = {}
    for note in _present(notes):
        sequences.update(dict.fromkeys(note_forms(note)))
    note_words = {w: None for sequence in sequences for w in sequence.split(" ")}
    max_words = max((f.count(" ") + 1 for f in forms), default=1)
    digests = (set(keyed_digests(list(forms), key, PURPOSE)) | set(keyed_digests(list(sequences), key, NOTE_PURPOSE))
               | set(keyed_digests(list(note_words), key, NOTE_WORD_PURPOSE)))
    return DenyList(frozenset(digests), max_words, NOTE_WORDS if sequences else 0)
