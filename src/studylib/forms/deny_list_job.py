"""The deny list of an ingest, made while ingest reads (issue 12 item 6; the list is :mod:`studylib.privacy.denylist`).

Keyed hashes of the raw names and identifiers, of the word sequences of free-text notes and
of the prefixes of the dataset's tokens, written beside the dataset (never inside) for the
output audit. An append adds to the earlier periods' list.

Ingest hands over each export's distinct names, identifiers and notes (Arrow arrays) as soon
as the export is validated (:meth:`DenyListJob.add`); whoever hashes them (the second process,
or this one) drops the values it has hashed before, so each is hashed once. Once
:data:`IN_BACKGROUND` distinct values have come, they are hashed in a second process (spawned:
the pseudonymiser goes through a pipe, never a file) while ingest goes on reading, linking
and writing; smaller lists are made in the ingest's process. :meth:`DenyListJob.add_tokens`
adds the dataset's tokens once they exist, :meth:`DenyListJob.wait` waits for the list,
:meth:`DenyListJob.finish` puts it in place and :meth:`DenyListJob.cancel` removes it. Until
then it lives in a temporary file beside its place, made at once (so that a killed ingest
leaves it for the next run to remove).

The list is the same, digest for digest, however the values were split into batches: a
deny list of several batches is the union of their lists.

This module imports only the privacy layer, so that the second process starts quickly.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from studylib.privacy.denylist import DenyList, deny_list_path
from studylib.privacy.pseudonymiser import Pseudonymiser

#: From this many distinct names, identifiers and notes on, the deny list is hashed in a second
#: process while ingest reads, links and writes (the hashing is pure Python; the machine has a
#: second core).
IN_BACKGROUND = 50_000
#: Values handed over to the second process at a time (fewer, larger batches: less joining).
BATCH = 100_000


class DenyListJob:
    """The deny list of one ingest into ``dataset_dir``; see the module docstring."""

    def __init__(self, key: Pseudonymiser, dataset_dir: Path, append: bool, in_background: int | None = None):
        self.path = deny_list_path(dataset_dir)
        self.key = key
        self.previous = self.path if append and self.path.is_file() else None
        self.in_background = IN_BACKGROUND if in_background is None else in_background
        self.handed = self.waiting = 0  # values handed over, and not yet sent (an export's values are distinct)
        self.pending: tuple[list[pa.Array], list[pa.Array]] = ([], [])  # handed over, not yet hashed
        self.made = _Made()  # the list made so far in this process
        self.executor = None
        self.futures: list = []  # every batch sent: a failed one fails the list, none is left out silently
        self.tmp = None
        Path(dataset_dir).parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}-", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)

    def add(self, names: list[pa.Array], notes: list[pa.Array] = ()) -> None:
        """Hand over raw names and identifiers, and free-text notes (text arrays; missing values are skipped)."""
        self.pending[0].extend(names)
        self.pending[1].extend(notes)
        count = sum(len(a) for a in [*names, *notes])
        self.handed += count
        self.waiting += count
        if self.executor is None and self.handed >= self.in_background:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        if self.executor is not None and (not self.futures or self.waiting >= BATCH):
            self._hand_over()

    def _hand_over(self) -> None:
        """Send the values not yet hashed to the worker (it hashes the batches in the order sent)."""
        if self.pending[0] or self.pending[1]:
            self.futures.append(self.executor.submit(add_to_deny_list, *self.pending, self.key, str(self.tmp)))
            self.pending = ([], [])
            self.waiting = 0

    def add_tokens(self, *tokens: pd.Series) -> None:
        """Add the prefixes of the dataset's tokens (person ids, event ids): the list is then complete."""
        values = [t for column in tokens for t in column.dropna().tolist()]
        if self.executor is not None:  # after the names, in the same worker
            self._hand_over()
            self.futures.append(self.executor.submit(write_deny_list, values, self.key, str(self.tmp), self.previous))
        else:
            self.made.add(*self.pending, self.key)
            self.pending = ([], [])
            write_deny_list(values, self.key, str(self.tmp), self.previous, made=self.made)

    def wait(self) -> None:
        for future in self.futures:
            future.result()

    def finish(self) -> Path:
        self.wait()
        os.replace(self.tmp, self.path)
        self.tmp = None
        return self.path

    def cancel(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
        if self.tmp is not None:
            _MADE.pop(str(self.tmp), None)
            self.tmp.unlink(missing_ok=True)


class _Made:
    """A deny list being made: the parts hashed so far and the values they hold (hashed once)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.notes: set[str] = set()
        self.parts: list[DenyList] = []

    def add(self, names: list[pa.Array], notes: list[pa.Array], key: Pseudonymiser) -> None:
        fresh_names, fresh_notes = _fresh(names, self.names), _fresh(notes, self.notes)
        if fresh_names or fresh_notes or not self.parts:
            self.parts.append(key.deny_list(fresh_names, fresh_notes))


def _fresh(arrays: list[pa.Array], seen: set[str]) -> list[str]:
    """The distinct values of ``arrays`` not in ``seen`` (sorted), added to ``seen``."""
    if not arrays:
        return []
    values = pc.unique(pc.drop_null(pa.chunked_array([a.cast(pa.large_string()) for a in arrays], type=pa.large_string())))
    fresh = sorted(set(values.to_pylist()) - seen)
    seen.update(fresh)
    return fresh


#: Deny lists being made in this process and not yet written, by temporary path (the worker of
#: a DenyListJob keeps them here until the tokens are added).
_MADE: dict[str, _Made] = {}


def add_to_deny_list(names: list[pa.Array], notes: list[pa.Array], key: Pseudonymiser, path: str) -> str:
    """Hash a batch of names and notes into the list made for ``path`` (in the worker)."""
    _MADE.setdefault(path, _Made()).add(names, notes, key)
    return path


def write_deny_list(tokens: list[str], key: Pseudonymiser, path: str, previous: Path | None = None,
                    made: _Made | None = None) -> Path:
    """Join the list made for ``path`` (or ``made``), the prefixes of ``tokens`` and the list at
    ``previous``, and write it to ``path``, owner-only."""
    made = _MADE.pop(path, None) if made is None else made
    parts = (made.parts if made is not None else []) + [key.token_list(tokens)]
    if previous is not None:
        parts.append(DenyList.read(previous))
    deny = joined(parts)
    deny.write(path)
    os.chmod(path, 0o600)
    return Path(path)


def joined(parts: list[DenyList]) -> DenyList:
    """The union of deny lists, joined in pairs (each digest is copied about log2(parts) times)."""
    while len(parts) > 1:
        pairs = [a.union(b) for a, b in zip(parts[::2], parts[1::2])]
        parts = pairs + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]
