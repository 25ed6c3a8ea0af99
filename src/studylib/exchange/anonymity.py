"""k-anonymity of case-level data: global recoding first, local suppression second.

The quasi-identifiers (QIs) are columns of codes; each has a generalisation hierarchy
(:func:`studylib.exchange.codes.hierarchy`). An equivalence class is the set of records that
show the same values on every QI; the data are k-anonymous when every class holds at least k
records. A blank (suppressed) value is a value of its own here, not a wildcard, so the k of a
file is recomputed by grouping its QI columns as they stand.

1. Global recoding: while more than ``max_suppressed`` of the records sit in classes smaller
   than k, raise by one level the QI whose raising leaves the fewest such records (ties: the
   QI named first; QIs in ``recode_last`` only once every other is at its top level). Every
   record of a column is shown at the same level.
2. Local suppression: the records still in small classes have their values blanked one QI at
   a time (``suppress_order``), the classes recounted after each; records left in a class of
   fewer than k when every QI is blank are removed.

Whole classes move together (all records of a class share its size), so a class of at least k
is never made smaller. Vectorised: codes are integers and classes are counted with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from studylib.exchange.codes import generalise, level_description

SUPPRESSED = ""


@dataclass(frozen=True)
class AnonymityResult:
    """The recoded and suppressed QI columns, which records stay, and what was lost."""

    columns: dict[str, pd.Categorical]  # QI -> values, for the records kept
    keep: np.ndarray  # boolean over the input records
    k: int  # the k asked for
    k_achieved: int  # the smallest class of the output (0 when nothing is left)
    levels: dict[str, int]
    max_levels: dict[str, int]
    suppressed: dict[str, float] = field(default_factory=dict)  # QI -> share of the input records blanked
    removed: float = 0.0  # share of the input records removed

    def information_loss(self) -> dict:
        """What the recoding and suppression cost, as shares (no counts)."""
        precision = [self.levels[q] / self.max_levels[q] if self.max_levels[q] else 0.0 for q in self.levels]
        return {
            "recoding": {q: {"level": self.levels[q], "of": self.max_levels[q], "shown": level_description(q, self.levels[q])}
                         for q in self.levels},
            "precision_lost": round(float(np.mean(precision)) if precision else 0.0, 4),
            "suppressed_share": {q: round(v, 4) for q, v in self.suppressed.items()},
            "removed_share": round(self.removed, 4),
        }


class _Column:
    """One QI as integer codes at every level of its hierarchy."""

    def __init__(self, values: pd.Series, levels: list[dict], name: str):
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes, uniques = values.cat.codes.to_numpy(), np.asarray(values.cat.categories, dtype=object)
        else:
            codes, uniques = pd.factorize(values.astype(object).to_numpy(), use_na_sentinel=False)
        self.name = name
        self.base = codes.astype(np.int64)
        self.labels: list[np.ndarray] = []  # per level: the label of each level code
        self.remap: list[np.ndarray] = []  # per level: base code -> level code
        for level in levels:
            shown = generalise(np.asarray(uniques, dtype=object), level)
            level_codes, level_labels = pd.factorize(shown, use_na_sentinel=False)
            self.remap.append(level_codes.astype(np.int64))
            self.labels.append(np.asarray(level_labels, dtype=object))

    @property
    def max_level(self) -> int:
        return len(self.remap) - 1

    def codes(self, level: int) -> np.ndarray:
        return self.remap[level][self.base]

    def size(self, level: int) -> int:
        return len(self.labels[level]) + 1  # one more for the suppressed value


def class_sizes(codes: list[np.ndarray], radices: list[int]) -> np.ndarray:
    """For every record, the size of its equivalence class over the given integer code columns."""
    if not codes:
        return np.zeros(0, dtype=np.int64)
    key = np.zeros(len(codes[0]), dtype=np.int64)
    product = 1
    for column, radix in zip(codes, radices):
        key = key * radix + column
        product *= radix
    if product <= 4 * len(key) + 1024:
        counts = np.bincount(key, minlength=product)
        return counts[key]
    inverse, _ = pd.factorize(key)
    return np.bincount(inverse)[inverse]


def anonymise(frame: pd.DataFrame, hierarchies: dict[str, list[dict]], k: int, max_suppressed: float,
              suppress_order: list[str], recode_last: tuple[str, ...] = ()) -> AnonymityResult:
    """k-anonymise the QI columns of ``frame`` (the keys of ``hierarchies``); see the module docstring."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    names = list(hierarchies)
    columns = [_Column(frame[q], hierarchies[q], q) for q in names]
    n = len(frame)
    levels = [0] * len(columns)

    def small(levels_now: list[int]) -> int:
        sizes = class_sizes([c.codes(lv) for c, lv in zip(columns, levels_now)],
                            [c.size(lv) for c, lv in zip(columns, levels_now)])
        return int((sizes < k).sum())

    violating = small(levels)
    while violating > max_suppressed * n:
        best, best_count = None, violating
        open_first = [i for i, c in enumerate(columns) if levels[i] < c.max_level and names[i] not in recode_last]
        for i in open_first or range(len(columns)):
            if levels[i] == columns[i].max_level:
                continue
            trial = levels.copy()
            trial[i] += 1
            count = small(trial)
            if best is None or count < best_count:
                best, best_count = i, count
        if best is None:
            break
        levels[best] += 1
        violating = best_count

    codes = [c.codes(lv) for c, lv in zip(columns, levels)]
    radices = [c.size(lv) for c, lv in zip(columns, levels)]
    blank = [c.size(lv) - 1 for c, lv in zip(columns, levels)]
    suppressed = {q: 0.0 for q in names}
    sizes = class_sizes(codes, radices)
    for q in suppress_order:
        under = sizes < k
        if not under.any():
            break
        i = names.index(q)
        codes[i] = np.where(under, blank[i], codes[i])
        suppressed[q] = float(under.sum()) / n if n else 0.0
        sizes = class_sizes(codes, radices)
    keep = sizes >= k
    out = {}
    for i, (column, lv) in enumerate(zip(columns, levels)):
        labels = pd.Index(np.append(column.labels[lv], SUPPRESSED).astype(object), dtype=object)
        out[names[i]] = pd.Categorical.from_codes(codes[i][keep], categories=labels)
    achieved = int(sizes[keep].min()) if keep.any() else 0
    return AnonymityResult(columns=out, keep=keep, k=k, k_achieved=achieved,
                           levels=dict(zip(names, levels)), max_levels={c.name: c.max_level for c in columns},
                           suppressed=suppressed, removed=float((~keep).sum()) / n if n else 0.0)
