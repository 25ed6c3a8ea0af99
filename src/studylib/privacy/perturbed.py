"""Tables perturbed by the cell key method: from a table's persons to what it publishes.

Every cell (each Total too) gets its cell key from the record keys of the persons it counts
(:func:`studylib.privacy.cell_key.cell_keys`), and its published value from the perturbation
table (:func:`studylib.privacy.cell_key.perturbation_table`). The same persons therefore get
the same value in every table, report and re-run, and a difference of two tables shows
noise, not the persons between them. A Total is perturbed on its own, so a perturbed table
need not add up. Cells a release plan hides stay hidden.
"""

from __future__ import annotations

import itertools

import numpy as np

from studylib.privacy.cell_key import cell_keys, perturbation_table
from studylib.privacy.disclosure import DisclosureError, DisclosureSettings, ProtectedTable, _assemble, _hide_mask, _table_array

NEEDS_RECORD_KEYS = (
    "the cell key method needs each person's record key: pass the persons with their record_key column "
    "(the dataset's persons and cases carry it; a dataset ingested before it existed must be ingested again)"
)


def full_cells(cells: np.ndarray, shape: tuple[int, ...], margins: bool) -> tuple[np.ndarray, np.ndarray]:
    """(person, cell) pairs of the published layout: each person's inner cell, and with
    ``margins`` every Total that counts them (Totals last on every axis)."""
    cells = np.asarray(cells, dtype=np.int64)
    person = np.arange(len(cells))
    if not margins:
        return person, cells
    inner = np.unravel_index(cells, shape)
    full = tuple(n + 1 for n in shape)
    pairs_person, pairs_cell = [], []
    for totals in itertools.product((False, True), repeat=len(shape)):
        index = tuple(np.full(len(cells), n) if total else i for i, n, total in zip(inner, shape, totals))
        pairs_person.append(person)
        pairs_cell.append(np.ravel_multi_index(index, full))
    return np.concatenate(pairs_person), np.concatenate(pairs_cell)


def perturb_table(counts, cells: np.ndarray, record_keys: np.ndarray | None, settings: DisclosureSettings,
                  hide=None) -> ProtectedTable:
    """A table of person counts (``counts``, labelled, no margins) perturbed by the cell key method.

    ``cells``: each counted person's flat inner cell; ``record_keys``: theirs; ``hide``: the
    cells a release plan hides (labelled like the counts, Totals may be included).
    """
    if settings.cell_key is None:
        raise DisclosureError("perturb_table needs settings with the cell key method (cell_key=...)")
    if record_keys is None:
        raise DisclosureError(NEEDS_RECORD_KEYS)
    keys = np.asarray(record_keys, dtype=float)
    if len(keys) != len(cells) or np.isnan(keys).any() or (keys < 0).any() or (keys >= 1).any():
        raise DisclosureError("record keys must be one number in [0, 1) per person counted; " + NEEDS_RECORD_KEYS)
    values, layout = _table_array(counts, settings.margins)
    inner_shape = tuple(n - 1 for n in values.shape) if settings.margins else values.shape
    person, cell = full_cells(cells, inner_shape, settings.margins)
    if np.bincount(cell, minlength=values.size).reshape(values.shape).tolist() != values.tolist():
        raise DisclosureError("the persons' cells do not add up to the table's counts")
    table = perturbation_table(**settings.cell_key)
    published = table.perturb(values, cell_keys(keys[person], cell, values.size).reshape(values.shape))
    nothing = np.zeros(values.shape, dtype=bool)
    hidden = nothing if hide is None else _hide_mask(hide, layout)
    return _assemble(values, nothing, hidden, published, settings, layout)
