"""Counting persons into a table: the one way a published count is made in a study run.

:func:`count_persons` takes a frame with one row per person (``person_id``) and the columns
to count by, and returns the counts together with each person's cell, which is what the
release ledger records (:mod:`studylib.privacy.ledger`). It also owns how categories are
ordered and merged before a table is protected:

- order: a categorical column keeps its categories; a column named like a vocabulary of
  :mod:`studylib.data.vocabularies` (``sex``, ``decision``, ``age_band``, ...) follows the
  vocabulary; years run from the first to the last; anything else is sorted;
- missing values count as ``unknown``;
- categories no person falls in are left out (``keep_empty=True`` keeps the vocabulary's);
- merges a study allows (``disclosure: merge:``), applied only when a category would be
  hidden: ``other_or_unknown`` (sex: female, male, other or unknown), ``{"top": N}``
  (at most the N largest categories, the rest as ``other``; named ones each at least the
  minimum cell, and fewer named while ``other`` would be under it), ``adjacent`` (a small band joins its
  smaller neighbour: ``45-54`` and ``55+`` become ``45+``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from studylib.data import vocabularies as v
from studylib.privacy.disclosure import DisclosureError

PERSON = "person_id"
#: each person's record key, made at ingest (:mod:`studylib.privacy.cell_key`)
RECORD_KEY = "record_key"
OTHER = "other"
UNKNOWN = "unknown"
#: codes that mean "not known" in some vocabulary (``XX``: nationality unknown)
UNKNOWN_CODES = frozenset({"unknown", "XX"})
OTHER_OR_UNKNOWN = "other_or_unknown"
MERGE_RULES = ("other_or_unknown", "adjacent", "top")


@dataclass(frozen=True)
class PersonCount:
    """Counts of persons by some columns, and the cell of every person counted."""

    counts: pd.Series | pd.DataFrame  # labelled by codes, no margins
    dims: tuple[str, ...]  # the columns counted by
    labels: tuple[tuple, ...]  # the codes of each dimension, in order
    persons: np.ndarray  # person_id of every person counted
    cells: np.ndarray  # flat (row-major) cell of each of them
    record_keys: np.ndarray | None = None  # their record keys (the cell key method), when the frame has them

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(level) for level in self.labels)


def is_person_frame(data) -> bool:
    """True for a frame with one row per person (a ``person_id`` column)."""
    return isinstance(data, pd.DataFrame) and PERSON in data.columns


def count_persons(
    persons: pd.DataFrame,
    by: Sequence[str],
    *,
    where=None,
    keep_empty: bool = False,
    merge: Mapping[str, Any] | None = None,
    min_cell: int = 5,
    order: Mapping[str, Sequence] | None = None,
) -> PersonCount:
    """Count the persons of ``persons`` by the columns ``by`` (1 to 4 of them).

    ``where``: a boolean Series (aligned on the frame) or a ``DataFrame.query`` text that
    selects the persons counted. ``order``: per column the categories in the order wanted.

    ``keep_empty``: keep categories of the vocabulary with no person; ``merge``: category merges
    allowed (column -> rule); ``min_cell``: the minimum cell the merges aim at.

    Example::

        count_persons(cases, ["sector", "sex"], where="first_contact_year >= 2020", min_cell=5)
    """
    frame = _checked(persons, by)
    if where is not None:
        frame = frame[_selection(frame, where)]
    order = dict(order or {})
    merge = dict(merge or {})
    codes, labels = [], []
    for column in by:
        values = _values(frame[column])
        levels = _levels(frame[column], values, column, order.get(column), keep_empty)
        if column in merge:
            values, levels = _merge(values, levels, merge[column], column, min_cell)
        position = pd.Categorical(values, categories=list(levels))
        if (position.codes < 0).any():
            stray = sorted({str(x) for x in values[position.codes < 0]})[:5]
            raise DisclosureError(f"column {column!r} holds values not in its categories: {', '.join(stray)}")
        codes.append(position.codes.astype(np.int64))
        labels.append(tuple(levels))
    shape = tuple(len(level) for level in labels)
    cells = np.ravel_multi_index(codes, shape) if codes and frame.shape[0] else np.empty(0, dtype=np.int64)
    counts = np.bincount(cells, minlength=int(np.prod(shape))).reshape(shape)
    if not keep_empty:
        counts, labels, cells = _drop_empty(counts, labels, cells)
    table = _labelled(counts, list(by), labels)
    keys = frame[RECORD_KEY].to_numpy(dtype=float) if RECORD_KEY in frame.columns else None
    return PersonCount(table, tuple(by), tuple(labels), frame[PERSON].to_numpy(dtype=object), cells.astype(np.int64), keys)


def _checked(persons, by: Sequence[str]) -> pd.DataFrame:
    if not is_person_frame(persons):
        raise DisclosureError(
            "tables are counted from persons: pass a frame with one row per person and a person_id column "
            "(e.g. the dataset's cases), and the columns to count by"
        )
    if not 1 <= len(by) <= 4:
        raise DisclosureError(f"count by 1 to 4 columns, not {len(by)}")
    missing = [c for c in by if c not in persons.columns]
    if missing:
        raise DisclosureError(f"column(s) {missing} are not in the persons frame (it has {list(persons.columns)[:12]} ...)")
    if len(set(by)) != len(by):
        raise DisclosureError(f"a column is named twice in {list(by)}")
    duplicated = persons[PERSON].duplicated()
    if duplicated.any():
        raise DisclosureError(
            f"person_id {persons[PERSON][duplicated].iloc[0]!r} appears more than once: a table counts each person once "
            "(one row per person; count events through the person they belong to)"
        )
    return persons


def _selection(frame: pd.DataFrame, where) -> np.ndarray:
    if isinstance(where, str):
        mask = frame.eval(where)
    else:
        mask = where
    if isinstance(mask, pd.Series):
        if not mask.index.equals(frame.index):
            mask = mask.reindex(frame.index)
        mask = mask.fillna(False)
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (len(frame),):
        raise DisclosureError("where must be a boolean Series aligned on the persons frame, or a query text")
    return mask


def _values(series: pd.Series) -> np.ndarray:
    values = series.astype(object).where(series.notna(), UNKNOWN).to_numpy(dtype=object)
    return np.array([x if isinstance(x, str) else _plain(x) for x in values], dtype=object)


def _plain(value):
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (np.integer, int)) or (isinstance(value, float) and value.is_integer()):
        return int(value)
    return value


def _levels(series: pd.Series, values: np.ndarray, column: str, wanted, keep_empty: bool) -> list:
    present = list(dict.fromkeys(values.tolist()))
    if wanted is not None:
        levels = list(wanted)
    elif isinstance(series.dtype, pd.CategoricalDtype):
        levels = [_plain(x) for x in series.cat.categories]
    elif column in v.VOCABULARIES or column.removesuffix("_code") in v.VOCABULARIES:
        levels = list(v.VOCABULARIES.get(column, v.VOCABULARIES.get(column.removesuffix("_code"), ())))
    elif present and all(isinstance(x, (int, np.integer)) for x in present if x != UNKNOWN):
        numbers = [int(x) for x in present if x != UNKNOWN]
        levels = list(range(min(numbers), max(numbers) + 1)) if numbers else []
    else:
        levels = sorted(present, key=lambda x: (x == UNKNOWN, str(x)))
    for value in present:  # values outside a vocabulary (``unknown``, ``XX``) come last
        if value not in levels:
            levels.append(value)
    return levels


def _drop_empty(counts: np.ndarray, labels: list[tuple], cells: np.ndarray):
    keep = [np.flatnonzero(counts.sum(axis=tuple(a for a in range(counts.ndim) if a != axis)) > 0)
            for axis in range(counts.ndim)]
    if all(len(k) == n for k, n in zip(keep, counts.shape)):
        return counts, labels, cells
    if any(len(k) == 0 for k in keep):
        raise DisclosureError("no person is counted in this table (the selection is empty)")
    new = counts[np.ix_(*keep)]
    maps = []
    for k, n in zip(keep, counts.shape):
        m = np.full(n, -1, dtype=np.int64)
        m[k] = np.arange(len(k))
        maps.append(m)
    coords = np.unravel_index(cells, counts.shape)
    cells = np.ravel_multi_index([m[c] for m, c in zip(maps, coords)], new.shape) if len(cells) else cells
    return new, [tuple(level[i] for i in k) for level, k in zip(labels, keep)], cells


def _labelled(counts: np.ndarray, names: list[str], labels: list[tuple]) -> pd.Series | pd.DataFrame:
    if counts.ndim == 1:
        return pd.Series(counts, index=pd.Index(labels[0], name=names[0], dtype=object), name="persons")
    if counts.ndim == 2:
        return pd.DataFrame(counts, index=pd.Index(labels[0], name=names[0], dtype=object),
                            columns=pd.Index(labels[1], name=names[1], dtype=object))
    index = pd.MultiIndex.from_product(labels, names=names)
    return pd.Series(counts.ravel(), index=index, name="persons")


# --- merging categories ------------------------------------------------------------------------


def _merge(values: np.ndarray, levels: list, rule, column: str, min_cell: int) -> tuple[np.ndarray, list]:
    """Merge categories by a study's rule, only where a category would otherwise be hidden."""
    sizes = pd.Series(values).value_counts()
    size = lambda level: int(sizes.get(level, 0))  # noqa: E731
    small = lambda level: 1 <= size(level) <= min_cell - 1  # noqa: E731
    if rule == OTHER_OR_UNKNOWN:
        rest = [x for x in levels if x not in ("female", "male")]
        if not any(small(x) for x in rest):
            return values, levels
        label = "other or unknown"
        return np.where(np.isin(values, rest), label, values).astype(object), [x for x in levels if x not in rest] + [label]
    if isinstance(rule, Mapping) and set(rule) == {"top"}:
        n = int(rule["top"])
        if any(x in UNKNOWN_CODES for x in levels):  # ``XX`` (nationality unknown) is shown as unknown
            values = np.where(np.isin(values, list(UNKNOWN_CODES)), UNKNOWN, values).astype(object)
            levels = [x for x in levels if x not in UNKNOWN_CODES] + [UNKNOWN]
            sizes = pd.Series(values).value_counts()
        ranked = [x for x in sorted(levels, key=lambda x: (-size(x), levels.index(x))) if x not in (OTHER, UNKNOWN) and size(x) >= min_cell]
        named = ranked[:n]
        if len(named) == len([x for x in levels if x not in (OTHER, UNKNOWN) and size(x) > 0]):
            return values, levels
        rest = lambda: sum(size(x) for x in levels if x not in named and x != UNKNOWN)  # noqa: E731
        while named and 1 <= rest() <= min_cell - 1:  # 'other' itself would be hidden: the smallest named joins it
            named.pop()
        named = [x for x in levels if x in named]
        merged = np.where(np.isin(values, named) | (values == UNKNOWN), values, OTHER).astype(object)
        return merged, named + [OTHER] + ([UNKNOWN] if UNKNOWN in levels else [])
    if rule == "adjacent":
        return _merge_adjacent(values, levels, size, min_cell)
    raise DisclosureError(f"merge rule for {column!r} must be one of other_or_unknown, adjacent or {{top: N}}, not {rule!r}")


def _merge_adjacent(values: np.ndarray, levels: list, size, min_cell: int) -> tuple[np.ndarray, list]:
    bands = [[x] for x in levels if x != UNKNOWN]
    counts = [size(x) for x in levels if x != UNKNOWN]
    while len(bands) > 1:
        small = [i for i, c in enumerate(counts) if 1 <= c <= min_cell - 1]
        if not small:
            break
        i = small[0]
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(bands)]
        j = min(neighbours, key=lambda k: counts[k])
        a, b = sorted((i, j))
        bands[a:b + 1] = [bands[a] + bands[b]]
        counts[a:b + 1] = [counts[a] + counts[b]]
    mapping = {}
    out_levels = []
    for band in bands:
        label = _band_label(band)
        out_levels.append(label)
        mapping.update({x: label for x in band})
    if UNKNOWN in levels:
        out_levels.append(UNKNOWN)
    merged = np.array([mapping.get(x, x) for x in values.tolist()], dtype=object)
    return merged, out_levels


def _band_label(band: list) -> str:
    if len(band) == 1:
        return band[0]
    first, last = str(band[0]), str(band[-1])
    low = first.split("-")[0].rstrip("+")
    if last.endswith("+"):
        return f"{low}+"
    return f"{low}-{last.split('-')[-1]}"
