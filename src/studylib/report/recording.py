"""What a report's kernel tells the runner about its tables: the ledger entries and the plan.

Every table, figure and statistics count column a notebook publishes is given an id
(``<report>#<n>``, numbered in the order the notebook makes them, so a re-run of the same
template gives the same ids) and, in a study run, recorded in the release ledger
(:mod:`studylib.privacy.ledger`) with the cell of every person it counts. When the runner has
found that the release needs more cells hidden, it re-runs the report with a plan
(``STUDYLIB_RELEASE_PLAN``); :func:`planned_hide` gives a table the cells the plan hides.
"""

from __future__ import annotations

import os

import numpy as np

from studylib.privacy.disclosure import ProtectedTable
from studylib.privacy.ledger import LedgerEntry, read_plan, record, table_signature
from studylib.report.counting import PersonCount
from studylib.report.settings import next_number, report_key
from studylib.report.variables import LEDGER_VARIABLE, PLAN_VARIABLE

_plan_cache: dict[str, dict] = {}


def next_table_id() -> str:
    """The id of the next table this notebook publishes."""
    return f"{report_key()}#{next_number('ledger')}"


def planned_hide(table_id: str, dims, labels, margins: bool, full_shape: tuple[int, ...]) -> np.ndarray | None:
    """The cells the release plan hides in this table (a boolean array over the full layout), or None."""
    path = os.environ.get(PLAN_VARIABLE)
    if not path:
        return None
    if path not in _plan_cache:
        _plan_cache.clear()
        _plan_cache[path] = read_plan(path)
    entry = _plan_cache[path].get(table_id)
    if entry is None or entry.signature != table_signature(dims, labels, margins):
        return None  # the table changed since the plan was made: the runner attacks it afresh
    mask = np.zeros(int(np.prod(full_shape)), dtype=bool)
    mask[list(entry.hide)] = True
    return mask.reshape(full_shape)


def record_table(table_id: str, kind: str, caption: str | None, count: PersonCount, protected: ProtectedTable,
                 dims: tuple | None = None, labels: tuple | None = None, cells: np.ndarray | None = None,
                 persons: np.ndarray | None = None) -> None:
    """Record one published table in the report's ledger (only in a study run with a ledger folder)."""
    folder = os.environ.get(LEDGER_VARIABLE)
    if not folder:
        return
    rounded = protected.rounding is not None or protected.settings.cell_key is not None
    perturbation = protected.settings.cell_key
    entry = LedgerEntry(
        id=table_id, report=report_key(), kind=kind, caption=caption or "",
        dims=tuple(str(d) for d in (dims or count.dims)),
        labels=tuple(tuple(str(x) for x in level) for level in (labels or count.labels)),
        margins=protected.margins,
        hidden=tuple(bool(x) for x in protected._hidden.ravel()),
        rounding=protected.rounding,
        published=tuple(int(x) for x in protected._published.ravel()) if rounded else None,
        deviation=None if perturbation is None else int(perturbation["max_deviation"]),
        min_cell=protected.min_cell, zeros_disclosive=protected.zeros_disclosive,
        persons=count.persons if persons is None else persons,
        cells=count.cells if cells is None else cells,
    )
    record(folder, entry)
