"""Case classification: which persons the indicator catalogue presumes to be victims, and why.

:func:`classify` applies a catalogue's combination rule (declared in the catalogue YAML) to the
indicators found for each person, vectorised over all persons at once (numpy counting, no
per-person Python loop):

- a person's list is chosen by age (``child_under``, 18 in the shipped catalogue) and
  exploitation type (the catalogue's ``exploitation`` mapping: ``sexual`` uses the sexual
  lists; ``labour``, ``criminal``, ``mixed``, ``other`` and ``unknown`` use the labour lists);
- a person of unknown age gets the adult rule (the stricter one) and ``age_unknown`` is True;
- an indicator that is not on the person's list (an "adults only" indicator for a child)
  counts for nothing; an indicator found in several interviews counts once;
- a dimension is present when the grades of its indicators reach one of the catalogue's
  ``presence`` combinations; a person is presumed a victim when every dimension kind that
  their rule names has a present dimension.

Indicator rows of persons not in ``persons`` are left out (so a selection of persons can be
classified against the whole indicators table); their number is in ``.attrs``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from studylib.data import vocabularies
from studylib.errors import Problem
from studylib.indicators.catalogue import CatalogueError, as_catalogue

#: Grade levels used for counting (0: not on the list).
_LEVEL = {"weak": 1, "medium": 2, "strong": 3}


def _check_inputs(indicators: pd.DataFrame, persons: pd.DataFrame) -> None:
    problems: list[Problem] = []
    for name, table, cols in (("indicators", indicators, ("person_id", "indicator")), ("persons", persons, ("person_id", "age", "exploitation"))):
        if not isinstance(table, pd.DataFrame):
            problems.append(Problem(where=name, rule=f"must be a table (DataFrame), not {type(table).__name__}"))
            continue
        for col in cols:
            if col not in table.columns:
                problems.append(Problem(where=name, column=col, rule="missing column"))
    if problems:
        raise CatalogueError(problems, summary="cannot classify")


def _first_rows(mask: np.ndarray, values: pd.Series, where: str, column: str, rule: str) -> list[Problem]:
    """One problem per distinct bad value: its first row and how many rows have it."""
    if not mask.any():
        return []
    bad = pd.DataFrame({"value": values.to_numpy()[mask].astype(str), "row": np.flatnonzero(mask)})
    first = bad.groupby("value", sort=True, dropna=False)["row"].agg(["first", "size"])
    return [
        Problem(where=where, row=int(r["first"]), column=column, value=value,
                rule=f"{rule} ({int(r['size'])} row(s))")
        for value, r in first.iterrows()
    ]


def _codes_of(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Positions of ``values`` in ``index`` (-1 where absent), hashed in Arrow (no Python objects)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cat_pos = _codes_of(pd.Series(values.cat.categories), index)
        codes = values.cat.codes.to_numpy()
        return np.where(codes >= 0, cat_pos[codes], -1)
    try:
        pos = pc.index_in(pa.array(values, from_pandas=True), value_set=pa.array(index.array, from_pandas=True), skip_nulls=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError):
        return index.get_indexer(values)  # mixed or unusual types: let pandas compare them
    return pos.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _persons_rule(persons: pd.DataFrame, spec: dict, list_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Problem]]:
    """Per person: list position, child flag, age-unknown flag (and problems found)."""
    problems: list[Problem] = []
    raw_age = persons["age"]
    age = pd.to_numeric(raw_age, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    age_unknown = np.isnan(age)
    problems += _first_rows(age_unknown & raw_age.notna().to_numpy(), raw_age, "persons", "age", "age is not a number")
    problems += _first_rows(~age_unknown & ((age < 0) | (age > 130)), raw_age, "persons", "age", "age out of range 0-130")
    child = ~age_unknown & (age < spec["child_under"])

    expl = persons["exploitation"]
    expl_pos = _codes_of(expl, pd.Index(vocabularies.EXPLOITATION))
    unknown_pos = vocabularies.EXPLOITATION.index("unknown")
    missing = expl.isna().to_numpy()
    problems += _first_rows((expl_pos < 0) & ~missing, expl, "persons", "exploitation",
                            f"unknown exploitation; codes are {', '.join(vocabularies.EXPLOITATION)}")
    expl_pos = np.where(missing, unknown_pos, expl_pos)

    # list position for every (child?, exploitation) pair, looked up in one take
    lookup = np.full((2, len(vocabularies.EXPLOITATION)), -1, dtype=np.int64)
    for e, code in enumerate(vocabularies.EXPLOITATION):
        family = spec["exploitation"][code]
        for is_child, rule in ((0, "adult"), (1, "child")):
            name = next(n for n, lst in spec["lists"].items() if lst["rule"] == rule and lst["exploitation"] == family)
            lookup[is_child, e] = list_names.index(name)
    list_pos = lookup[child.astype(np.int64), np.clip(expl_pos, 0, None)]
    return list_pos, child, age_unknown, problems


def _grade_matrix(table: pd.DataFrame, list_names: list[str], dim_codes: list[str]) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """Indicator codes (ordered by dimension, then catalogue order), grade levels [list, code], dimension per code."""
    first = table.drop_duplicates("code")[["code", "dimension"]]
    dim_pos = pd.Index(dim_codes).get_indexer(first["dimension"])
    order = np.argsort(dim_pos, kind="stable")
    codes = pd.Index(first["code"].to_numpy()[order])
    code_dim = dim_pos[order].astype(np.int64)
    levels = np.zeros((len(list_names), len(codes)), dtype=np.int64)
    levels[pd.Index(list_names).get_indexer(table["list"]), codes.get_indexer(table["code"])] = table["grade"].map(_LEVEL).to_numpy()
    return codes, levels, code_dim


def _presence(counts: np.ndarray, combos: list[list[str]]) -> np.ndarray:
    """counts[person, dimension, level-1] -> present[person, dimension] (any combination reached)."""
    present = np.zeros(counts.shape[:2], dtype=bool)
    for combo in combos:
        need = np.zeros(3, dtype=np.int64)
        for g in combo:
            need[_LEVEL[g] - 1] += 1
        present |= (counts >= need).all(axis=2)
    return present


def _explanations(
    p: np.ndarray, c: np.ndarray, g: np.ndarray, d: np.ndarray, present: np.ndarray,
    codes: pd.Index, code_dim: np.ndarray, dim_codes: list[str], missing_mask: np.ndarray, kinds: list[str],
) -> np.ndarray:
    """Readable text per person, built with array operations over the rows that matter.

    ``dimension: code (grade), code (grade); dimension: ...`` for the present dimensions,
    then ``missing: kind, kind`` for the kinds the person's rule needs but lacks.
    Rows ``p, c, g, d`` are sorted by person, dimension, code.
    """
    n = present.shape[0]
    keep = present[p, d]
    p, c, g, d = p[keep], c[keep], g[keep], d[keep]
    # every piece of text there can be, looked up by [kind of piece, code, grade]:
    # 0 opens a person "dim: code (grade)", 1 opens a dimension "; dim: code (grade)",
    # 2 continues a dimension ", code (grade)"
    grades = ("", "weak", "medium", "strong")
    heads = [f"{dim_codes[j]}: " for j in code_dim]
    pieces_table = np.array(
        [
            [[f"{sep}{head if kind < 2 else ''}{code} ({grade})" for grade in grades] for code, head in zip(codes, heads)]
            for kind, sep in enumerate(("", "; ", ", "))
        ],
        dtype=object,
    )
    if len(p):
        new_person = np.r_[True, p[1:] != p[:-1]]
        new_group = new_person | np.r_[True, d[1:] != d[:-1]]
        kind = np.where(new_person, 0, np.where(new_group, 1, 2))
        starts = np.flatnonzero(new_person)
        joined = np.add.reduceat(pieces_table[kind, c, g], starts)
    else:
        starts, joined = np.array([], dtype=np.int64), np.array([], dtype=object)
    out = np.full(n, "", dtype=object)
    out[p[starts] if len(p) else starts] = joined
    # missing kinds: bitmask per person -> precomputed text
    notes = np.array(
        ["" if m == 0 else "missing: " + ", ".join(k for i, k in enumerate(kinds) if m >> i & 1) for m in range(1 << len(kinds))],
        dtype=object,
    )
    note = notes[missing_mask]
    both = (out != "") & (note != "")
    return out + np.where(both, "; ", "").astype(object) + note


def classify(indicators: pd.DataFrame, persons: pd.DataFrame, catalogue: pd.DataFrame | str | None = None) -> pd.DataFrame:
    """Classify persons with an indicator catalogue.

    ``indicators``: ``person_id``, ``indicator`` (catalogue codes; several interviews allowed).
    ``persons``: ``person_id`` (unique), ``age`` at the interview (missing: adult rule, flagged),
    ``exploitation`` (vocabulary code; chooses the list). ``catalogue``: a table from
    :func:`~studylib.indicators.catalogue`, a catalogue file, or None for the shipped one.

    Returns one row per person, in the order of ``persons``: ``person_id``, ``rule``
    (adult/child), ``list``, ``age_unknown``, one boolean column per dimension,
    ``presumed_victim``, ``explanation`` and ``catalogue_version`` (also in
    ``.attrs["catalogue_version"]``). An unknown indicator code, a duplicate person, an
    unknown exploitation code or a bad age raises :class:`CatalogueError` listing them all.
    """
    _check_inputs(indicators, persons)
    table = as_catalogue(catalogue)
    spec = table.attrs["spec"]
    version = table.attrs["version"]
    list_names = list(spec["lists"])
    dim_codes = [dim["code"] for dim in spec["dimensions"]]
    kinds = list(dict.fromkeys(dim["kind"] for dim in spec["dimensions"]))
    codes, levels, code_dim = _grade_matrix(table, list_names, dim_codes)

    problems: list[Problem] = []
    pid = pd.Index(persons["person_id"])
    problems += _first_rows(pid.isna(), persons["person_id"], "persons", "person_id", "missing person_id")
    if not pid.is_unique:
        dup = pid.duplicated(keep="first") & ~pid.isna()
        problems += _first_rows(dup, persons["person_id"], "persons", "person_id", "duplicate person")
    list_pos, child, age_unknown, person_problems = _persons_rule(persons, spec, list_names)
    problems += person_problems

    c_all = _codes_of(indicators["indicator"], codes)
    problems += _first_rows(c_all < 0, indicators["indicator"], "indicators", "indicator",
                            f"unknown indicator code (not in catalogue {version})")
    if problems:
        raise CatalogueError(problems, summary="cannot classify")
    p_all = _codes_of(indicators["person_id"], pid)
    known = p_all >= 0
    if len(p_all) and not known.any() and len(pid):
        raise CatalogueError([Problem(where="indicators", column="person_id",
                                      rule="no indicator row belongs to any of the persons (different datasets or keys?)")],
                             summary="cannot classify")

    # which (person, indicator) pairs were found (several interviews count once), and their
    # grade on the person's list; nonzero() gives them sorted by person, then code (and the
    # codes are ordered by dimension)
    n_persons, n_codes = len(pid), len(codes)
    found = np.zeros((n_persons, n_codes), dtype=bool)
    found[p_all[known], c_all[known]] = True
    graded = np.where(found, levels.astype(np.int8)[list_pos], np.int8(0))
    del found
    p, c = np.nonzero(graded)
    g = graded[p, c].astype(np.int64)
    del graded
    d = code_dim[c]

    n_dims = len(dim_codes)
    counts = np.bincount((p * n_dims + d) * 3 + (g - 1), minlength=n_persons * n_dims * 3).reshape(n_persons, n_dims, 3)
    present = _presence(counts, spec["presence"])

    dim_kind = np.array([kinds.index(dim["kind"]) for dim in spec["dimensions"]])
    kind_present = np.stack([present[:, dim_kind == k].any(axis=1) for k in range(len(kinds))], axis=1)
    needs = np.array([[k in spec["rules"][rule] for k in kinds] for rule in ("adult", "child")])
    person_needs = needs[child.astype(np.int64)]
    lacking = person_needs & ~kind_present
    presumed = ~lacking.any(axis=1)
    missing_mask = (lacking.astype(np.int64) << np.arange(len(kinds))).sum(axis=1)

    explanation = _explanations(p, c, g, d, present, codes, code_dim, dim_codes, missing_mask, kinds)

    out = pd.DataFrame(
        {
            "person_id": persons["person_id"].to_numpy(),
            "rule": pd.Categorical.from_codes(child.astype(np.int8), categories=["adult", "child"]),
            "list": pd.Categorical.from_codes(list_pos, categories=list_names),
            "age_unknown": age_unknown,
            **{dim: present[:, j] for j, dim in enumerate(dim_codes)},
            "presumed_victim": presumed,
            "explanation": pd.array(explanation, dtype="str"),
            "catalogue_version": pd.Categorical.from_codes(np.zeros(n_persons, dtype=np.int8), categories=[version]),
        }
    )
    out.attrs = {
        "catalogue_version": version,
        "dimensions": dim_codes,
        "indicator_rows_ignored": int((~known).sum()),
        "provisional_lists_used": sorted(set(table.loc[table["provisional"], "list"]) & set(np.asarray(list_names)[np.unique(list_pos)])),
    }
    return out


__all__ = ["classify"]
