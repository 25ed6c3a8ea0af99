"""The release ledger: for every table a report publishes, which person falls in which cell.

Tables are counted from persons (:mod:`studylib.report.counting`), so the library knows
each table's cells person by person. In a study run the kernel records every published
table here (one JSON file with the table's layout, hidden cells and published values, and
one Parquet file with ``person_id`` and ``cell`` for the persons it counts), in the private
folder the runner names in ``STUDYLIB_LEDGER``. The runner reads the ledgers of a whole
release (:func:`read_ledger`) and attacks them together
(:mod:`studylib.privacy.release`). The ledger holds person tokens: it is private state of
the runner, never under ``reports/``, never published.

Also here: the release plan (:class:`PlanEntry`), the cells the runner tells a report's
kernel to hide in addition to what each table needs alone, read back in the kernel through
``STUDYLIB_RELEASE_PLAN``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from studylib.data.atomic import write_file
from studylib.errors import StudylibError

LEDGER_VERSION = 1


class LedgerError(StudylibError):
    """A ledger entry or a release plan that cannot be read."""


@dataclass(frozen=True)
class LedgerEntry:
    """One published table of a report, as counted from persons.

    ``labels`` are the category codes per dimension (the data's codes, not display labels);
    ``hidden`` and ``published`` are flat (row-major) over the full layout, Totals last on
    every axis when ``margins``; ``published`` is None when the true counts are published
    (it holds the rounded or perturbed values otherwise; ``deviation`` says how far a
    perturbed value may be from its count).
    """

    id: str
    report: str
    kind: str  # table | figure | statistics
    caption: str
    dims: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    margins: bool
    hidden: tuple[bool, ...]
    rounding: int | None = None
    published: tuple[int, ...] | None = None
    #: a perturbed table's largest difference between a published value and its count (cell key method)
    deviation: int | None = None
    min_cell: int = 5
    zeros_disclosive: bool = False
    persons: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object), repr=False, compare=False)
    cells: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64), repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """Inner categories per dimension (without Totals)."""
        return tuple(len(level) for level in self.labels)

    @property
    def full_shape(self) -> tuple[int, ...]:
        return tuple(n + (1 if self.margins else 0) for n in self.shape)

    @property
    def signature(self) -> str:
        """What identifies the table's layout across re-runs (a plan applies only to the same layout)."""
        return table_signature(self.dims, self.labels, self.margins)

    def hidden_array(self) -> np.ndarray:
        return np.asarray(self.hidden, dtype=bool).reshape(self.full_shape)

    def counts(self) -> np.ndarray:
        """True counts with Totals, from the persons (shape :attr:`full_shape`)."""
        inner = np.bincount(self.cells, minlength=int(np.prod(self.shape))).reshape(self.shape)
        if self.margins:
            for axis in range(inner.ndim):
                inner = np.concatenate([inner, inner.sum(axis=axis, keepdims=True)], axis=axis)
        return inner

    def metadata(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("persons"), out.pop("cells")
        out["version"] = LEDGER_VERSION
        return out


def table_signature(dims: Iterable, labels: Iterable[Iterable], margins: bool) -> str:
    text = json.dumps([list(map(str, dims)), [list(map(str, level)) for level in labels], bool(margins)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record(folder: str | os.PathLike, entry: LedgerEntry) -> None:
    """Write one entry into a report's ledger folder (Parquet first, then the JSON that names it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = _stem(entry.id)
    table = pa.table({"person_id": pa.array(np.asarray(entry.persons, dtype=object).astype(str), pa.string()),
                      "cell": pa.array(np.asarray(entry.cells, dtype=np.int32))})
    temporary = folder / f".{stem}.parquet.tmp"
    try:
        pq.write_table(table, temporary)
        os.replace(temporary, folder / f"{stem}.parquet")
    finally:
        temporary.unlink(missing_ok=True)
    write_file(folder / f"{stem}.json", json.dumps(entry.metadata(), sort_keys=True))


def read_ledger(folder: str | os.PathLike) -> list[LedgerEntry]:
    """Every entry of a report's ledger folder, in the order they were recorded.

    ``folder``: the ledger folder a report kernel wrote (``STUDYLIB_LEDGER``).

    Example::

        entries = read_ledger(os.environ["STUDYLIB_LEDGER"])
    """
    import pyarrow.parquet as pq

    folder = Path(folder)
    out = []
    for meta_file in sorted(folder.glob("*.json")):
        try:
            meta = json.loads(meta_file.read_text())
            meta.pop("version", None)
            cells = pq.read_table(meta_file.with_suffix(".parquet"))
        except (OSError, ValueError) as err:
            raise LedgerError(f"{meta_file}: cannot read the ledger entry ({err})") from None
        meta["dims"] = tuple(meta["dims"])
        meta["labels"] = tuple(tuple(level) for level in meta["labels"])
        meta["hidden"] = tuple(meta["hidden"])
        if meta.get("published") is not None:
            meta["published"] = tuple(meta["published"])
        out.append(LedgerEntry(**meta, persons=cells.column("person_id").to_numpy(zero_copy_only=False),
                               cells=cells.column("cell").to_numpy().astype(np.int64)))
    return out


def _stem(table_id: str) -> str:
    number = table_id.rsplit("#", 1)[-1]
    return "t" + "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in number)


# --- the release plan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanEntry:
    """Cells one table must hide because of the release (flat indices over the full layout)."""

    signature: str
    hide: tuple[int, ...]


def write_plan(path: str | os.PathLike, entries: dict[str, PlanEntry]) -> None:
    """Write a report's release plan: table id -> cells to hide."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    body = {"version": LEDGER_VERSION, "tables": {k: {"signature": e.signature, "hide": list(map(int, e.hide))}
                                                 for k, e in sorted(entries.items())}}
    write_file(Path(path), json.dumps(body, sort_keys=True))


def read_plan(path: str | os.PathLike | None) -> dict[str, PlanEntry]:
    """A release plan (empty without a path)."""
    if not path:
        return {}
    try:
        body = json.loads(Path(path).read_text())
        return {k: PlanEntry(v["signature"], tuple(int(i) for i in v["hide"])) for k, v in body["tables"].items()}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise LedgerError(f"{path}: cannot read the release plan ({err})") from None
