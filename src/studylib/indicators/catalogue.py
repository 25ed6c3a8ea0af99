"""The indicator catalogue: loading and checking ``catalogue.yaml`` and local catalogues.

What the indicators are, how they are graded and how grades combine is decided in the YAML
(the shipped ``catalogue.yaml``: the ILO / European Commission 2009 indicators). This module
only reads and checks such files and returns the catalogue as a long table, one row per
indicator and list: ``code, dimension, list, grade, provisional, text``, with the catalogue
version in ``.attrs["version"]`` and the rest of the header (lists, dimensions, combination
rule) in ``.attrs["spec"]`` (JSON-serialisable, so the table can be written to Parquet).

A local catalogue adjusts another one instead of copying it::

    version: dk-2025-1          # its own version, different from its base's
    base: default               # the shipped catalogue, or a path (relative to this file)
    remove: [rv_general_context]
    add:
      - code: cd_identity_rented
        dimension: coercion_destination
        text: Works under another person's identity
        grades: {adult_labour: medium, child_labour: medium, adult_sexual: medium, child_sexual: medium}
        provisional: [adult_sexual, child_sexual]
    regrade:
      dr_deceived_wages: {adult_labour: strong}        # a regraded grade is no longer provisional
      cd_forced_tasks_clients: {adult_sexual: strong, provisional: [adult_sexual]}

Every problem of a file (unknown dimension, duplicate code, missing grade, a grade other than
strong, medium or weak, ...) is collected and reported together in one :class:`CatalogueError`
naming the file and the entry.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from studylib.data import vocabularies
from studylib.errors import ConfigError, Problem, ValidationError

DEFAULT_PATH = Path(__file__).with_name("catalogue.yaml")

#: The grades, strongest first.
GRADES: tuple[str, ...] = ("strong", "medium", "weak")
#: The two combination rules; a person's age chooses one.
RULES: tuple[str, ...] = ("adult", "child")
#: Columns of the catalogue table.
COLUMNS: tuple[str, ...] = ("code", "dimension", "list", "grade", "provisional", "text")

_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
_HEADER_KEYS = ("version", "title", "source", "lists", "exploitation", "child_under", "dimensions", "presence", "rules", "indicators")
_LOCAL_KEYS = ("version", "title", "source", "base", "add", "remove", "regrade")
_INDICATOR_KEYS = ("code", "dimension", "text", "grades", "provisional")


class CatalogueError(ValidationError, ConfigError):
    """An indicator catalogue (or its use) is invalid; every problem names the file and entry."""

    def __init__(self, problems: list[Problem], summary: str = "the indicator catalogue is invalid") -> None:
        super().__init__(problems=list(problems), summary=summary)


class _Findings:
    """Problems of one file, collected as they are found."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.problems: list[Problem] = []

    def add(self, entry: str, rule: str, value: Any = None) -> None:
        self.problems.append(Problem(where=f"{self.path}: {entry}", rule=rule, value=value))

    def raise_if_any(self) -> None:
        if self.problems:
            raise CatalogueError(self.problems, summary=f"indicator catalogue {self.path} is invalid")


# -- reading ---------------------------------------------------------------------------------

def _resolve(path: str | Path | None, relative_to: Path | None = None) -> Path:
    if path is None or str(path) == "default":
        return DEFAULT_PATH
    p = Path(path).expanduser()
    if not p.is_absolute() and relative_to is not None:
        p = relative_to.parent / p
    return p


def _read_yaml(path: Path) -> dict:
    found = _Findings(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        found.add("(file)", "indicator catalogue not found")
        found.raise_if_any()
    except (OSError, UnicodeDecodeError) as exc:
        found.add("(file)", f"cannot read: {exc}")
        found.raise_if_any()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(file)"
        found.add(where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}")
        found.raise_if_any()
    if not isinstance(raw, dict):
        found.add("(top)", "must be a mapping with `version` and `indicators` (or `base`)", type(raw).__name__)
        found.raise_if_any()
    return raw


def _as_version(value: Any) -> str | None:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return None


# -- the header: lists, dimensions, combination rule -------------------------------------------

def _check_header(raw: dict, found: _Findings) -> dict:
    """Check everything but the indicators; return the spec (JSON-serialisable)."""
    for key in raw:
        if key not in _HEADER_KEYS:
            found.add(f"key {key!r}", f"unknown key; a catalogue has {', '.join(_HEADER_KEYS)} "
                      "(a local catalogue has `base`, see the catalogue module)")
    for key in ("version", "lists", "exploitation", "child_under", "dimensions", "presence", "rules", "indicators"):
        if key not in raw:
            found.add(f"key {key!r}", "missing")
    version = _as_version(raw.get("version"))
    if "version" in raw and version is None:
        found.add("key 'version'", "must be a non-empty string", raw.get("version"))

    dims: list[dict] = []
    seen: set[str] = set()
    for i, d in enumerate(raw.get("dimensions") or []):
        entry = f"dimensions[{i}]"
        if not isinstance(d, dict):
            found.add(entry, "must be a mapping with code, kind, title", d)
            continue
        code, kind = d.get("code"), d.get("kind")
        if not isinstance(code, str) or not _CODE.match(code):
            found.add(f"{entry}, key 'code'", "must be a snake_case code", code)
            continue
        if code in seen:
            found.add(f"dimension {code!r} ({entry})", "duplicate dimension code", code)
        if not isinstance(kind, str) or not _CODE.match(kind):
            found.add(f"dimension {code!r} ({entry}), key 'kind'", "must be a snake_case kind (recruitment, exploitation, destination)", kind)
        extra = set(d) - {"code", "kind", "title"}
        if extra:
            found.add(f"dimension {code!r} ({entry})", f"unknown keys {sorted(extra)}")
        seen.add(code)
        dims.append({"code": code, "kind": kind, "title": str(d.get("title") or code)})
    if "dimensions" in raw and not dims:
        found.add("key 'dimensions'", "must be a non-empty list of dimensions")
    kinds = {d["kind"] for d in dims}

    rules: dict[str, list[str]] = {}
    raw_rules = raw.get("rules")
    if raw_rules is not None and not isinstance(raw_rules, dict):
        found.add("key 'rules'", "must map adult and child to the dimension kinds they need", raw_rules)
        raw_rules = {}
    for name, need in (raw_rules or {}).items():
        if name not in RULES:
            found.add(f"rules, key {name!r}", f"unknown rule; the rules are {', '.join(RULES)}")
            continue
        if not isinstance(need, list) or not need or not all(isinstance(k, str) for k in need):
            found.add(f"rules, key {name!r}", "must be a non-empty list of dimension kinds", need)
            continue
        for k in need:
            if k not in kinds:
                found.add(f"rules, key {name!r}", f"no dimension has kind {k!r}; kinds are {', '.join(sorted(kinds))}", k)
        rules[name] = list(need)
    if raw_rules is not None:
        for name in RULES:
            if name not in raw_rules:
                found.add(f"rules, key {name!r}", "missing")

    lists: dict[str, dict] = {}
    raw_lists = raw.get("lists")
    if raw_lists is not None and not isinstance(raw_lists, dict):
        found.add("key 'lists'", "must map list names to {rule, exploitation, grades}", raw_lists)
        raw_lists = {}
    for name, spec in (raw_lists or {}).items():
        entry = f"list {name!r}"
        if not isinstance(name, str) or not _CODE.match(name):
            found.add(entry, "list names must be snake_case codes", name)
            continue
        if not isinstance(spec, dict):
            found.add(entry, "must be a mapping with rule, exploitation, grades", spec)
            continue
        rule, family, grades = spec.get("rule"), spec.get("exploitation"), spec.get("grades")
        if rule not in RULES:
            found.add(f"{entry}, key 'rule'", f"must be one of {', '.join(RULES)}", rule)
        if not isinstance(family, str) or not _CODE.match(family):
            found.add(f"{entry}, key 'exploitation'", "must be a snake_case list family (labour, sexual)", family)
        if not isinstance(grades, list) or not grades or any(g not in GRADES for g in grades):
            found.add(f"{entry}, key 'grades'", f"must be a non-empty list of {', '.join(GRADES)}", grades)
            grades = [g for g in grades if g in GRADES] if isinstance(grades, list) else list(GRADES)
        extra = set(spec) - {"rule", "exploitation", "grades"}
        if extra:
            found.add(entry, f"unknown keys {sorted(extra)}")
        lists[name] = {"rule": rule, "exploitation": family, "grades": list(grades)}
    if raw_lists is not None and not lists:
        found.add("key 'lists'", "must name at least one list")
    families = {v["exploitation"] for v in lists.values()}
    for family in sorted(f for f in families if isinstance(f, str)):
        for rule in RULES:
            n = sum(1 for v in lists.values() if v["exploitation"] == family and v["rule"] == rule)
            if n != 1:
                found.add("key 'lists'", f"list family {family!r} needs exactly one list with rule {rule!r} (found {n})")

    exploitation: dict[str, str] = {}
    raw_expl = raw.get("exploitation")
    if raw_expl is not None and not isinstance(raw_expl, dict):
        found.add("key 'exploitation'", "must map every exploitation code to a list family", raw_expl)
        raw_expl = {}
    if raw_expl is not None:
        for code in vocabularies.EXPLOITATION:
            if code not in raw_expl:
                found.add(f"exploitation, key {code!r}", "missing: every exploitation code needs a list family")
        for code, family in raw_expl.items():
            if code not in vocabularies.EXPLOITATION:
                found.add(f"exploitation, key {code!r}", f"unknown exploitation code; codes are {', '.join(vocabularies.EXPLOITATION)}")
            elif family not in families:
                found.add(f"exploitation, key {code!r}", f"unknown list family; families are {', '.join(sorted(map(str, families)))}", family)
            else:
                exploitation[code] = family

    child_under = raw.get("child_under")
    if "child_under" in raw and (not isinstance(child_under, int) or isinstance(child_under, bool) or not 1 <= child_under <= 120):
        found.add("key 'child_under'", "must be a whole number of years between 1 and 120", child_under)

    presence: list[list[str]] = []
    raw_presence = raw.get("presence")
    if raw_presence is not None and (not isinstance(raw_presence, list) or not raw_presence):
        found.add("key 'presence'", "must be a non-empty list of grade combinations, e.g. [strong, strong]", raw_presence)
        raw_presence = []
    for i, combo in enumerate(raw_presence or []):
        if not isinstance(combo, list) or not combo or any(g not in GRADES for g in combo):
            found.add(f"presence[{i}]", f"must be a non-empty list of grades ({', '.join(GRADES)})", combo)
        else:
            presence.append(list(combo))

    return {
        "version": version,
        "title": str(raw.get("title") or ""),
        "lists": lists,
        "exploitation": exploitation,
        "child_under": child_under,
        "dimensions": dims,
        "presence": presence,
        "rules": rules,
    }


# -- indicators ---------------------------------------------------------------------------------

def _label(entry: Any, i: int, section: str = "indicators") -> str:
    code = entry.get("code") if isinstance(entry, dict) else None
    return f"indicator {code!r} ({section}[{i}])" if isinstance(code, str) else f"{section}[{i}]"


def _check_grades(grades: Any, entry: str, spec: dict, found: _Findings, *, partial: bool) -> dict[str, str | None]:
    """Check a mapping of list -> grade (or null). ``partial`` allows lists to be left out (regrade)."""
    out: dict[str, str | None] = {}
    if not isinstance(grades, dict):
        found.add(f"{entry}, key 'grades'", "must map each list to strong, medium, weak or null", grades)
        return out
    for name in grades:
        if name not in spec["lists"]:
            found.add(f"{entry}, key 'grades'", f"unknown list {name!r}; lists are {', '.join(spec['lists'])}")
    for name, lst in spec["lists"].items():
        if name not in grades:
            if not partial:
                found.add(f"{entry}, key 'grades'", f"missing grade for list {name!r} (write null if the indicator is not on that list)")
            continue
        grade = grades[name]
        if grade is not None and grade not in GRADES:
            found.add(f"{entry}, list {name!r}", "grade must be strong, medium or weak (or null: not on the list)", grade)
        elif grade is not None and grade not in lst["grades"]:
            found.add(f"{entry}, list {name!r}", f"grade {grade!r} is not allowed on this list (allowed: {', '.join(lst['grades'])})", grade)
        else:
            out[name] = grade
    return out


def _check_provisional(value: Any, grades: dict, entry: str, spec: dict, found: _Findings) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        found.add(f"{entry}, key 'provisional'", "must be a list of list names", value)
        return []
    out = []
    for name in value:
        if name not in spec["lists"]:
            found.add(f"{entry}, key 'provisional'", f"unknown list {name!r}; lists are {', '.join(spec['lists'])}", name)
        elif name not in grades:
            continue  # its grade is missing or bad, which is reported already
        elif grades[name] is None:
            found.add(f"{entry}, key 'provisional'", f"list {name!r} has no grade to be provisional", name)
        else:
            out.append(name)
    return out


def _check_indicator(raw: Any, entry: str, spec: dict, found: _Findings) -> dict | None:
    """Check one indicator entry; return it normalised, or None when it is unusable."""
    if not isinstance(raw, dict):
        found.add(entry, f"must be a mapping with {', '.join(_INDICATOR_KEYS)}", raw)
        return None
    for key in raw:
        if key not in _INDICATOR_KEYS:
            found.add(f"{entry}, key {key!r}", f"unknown key; an indicator has {', '.join(_INDICATOR_KEYS)}")
    ok = True
    code = raw.get("code")
    if not isinstance(code, str) or not _CODE.match(code):
        found.add(f"{entry}, key 'code'", "must be a snake_case code (lower-case letters, digits, _)", code)
        ok = False
    dims = [d["code"] for d in spec["dimensions"]]
    dimension = raw.get("dimension")
    if dimension not in dims:
        found.add(f"{entry}, key 'dimension'", f"unknown dimension; dimensions are {', '.join(dims)}", dimension)
        ok = False
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        found.add(f"{entry}, key 'text'", "must be a non-empty text", text)
        ok = False
    n_before = len(found.problems)
    grades = _check_grades(raw.get("grades"), entry, spec, found, partial=False)
    if len(found.problems) == n_before and grades and all(g is None for g in grades.values()):
        found.add(f"{entry}, key 'grades'", "the indicator is on no list (every grade is null)")
    provisional = _check_provisional(raw.get("provisional"), grades, entry, spec, found)
    if not ok or len(grades) != len(spec["lists"]):
        return None
    return {"code": code, "dimension": dimension, "text": text.strip(), "grades": grades, "provisional": provisional}


def _check_indicators(items: Any, section: str, spec: dict, found: _Findings, taken: set[str]) -> list[dict]:
    """Check a list of indicator entries; codes must be unique among themselves and ``taken``."""
    if not isinstance(items, list):
        found.add(f"key {section!r}", "must be a list of indicators", items)
        return []
    out = []
    seen = set(taken)
    for i, raw in enumerate(items):
        entry = _label(raw, i, section)
        ind = _check_indicator(raw, entry, spec, found)
        code = raw.get("code") if isinstance(raw, dict) else None
        if isinstance(code, str):
            if code in seen:
                found.add(f"{entry}, key 'code'", "duplicate code: codes must be unique across the catalogue", code)
                continue
            seen.add(code)
        if ind is not None:
            out.append(ind)
    return out


# -- local catalogues -------------------------------------------------------------------------

def _apply_local(raw: dict, path: Path, seen: tuple[Path, ...]) -> tuple[dict, list[dict], str]:
    """Load the base of a local catalogue and apply its remove / add / regrade sections."""
    found = _Findings(path)
    for key in raw:
        if key not in _LOCAL_KEYS:
            found.add(f"key {key!r}", f"unknown key; a local catalogue has {', '.join(_LOCAL_KEYS)}")
    base_path = _resolve(raw.get("base"), relative_to=path)
    if not isinstance(raw.get("base"), str):
        found.add("key 'base'", "must be `default` or the path of another catalogue", raw.get("base"))
        found.raise_if_any()
    if base_path.resolve() in seen:
        found.add("key 'base'", "circular base: a catalogue cannot be its own base", raw.get("base"))
    elif not base_path.is_file():
        found.add("key 'base'", f"base catalogue {base_path} not found", raw.get("base"))
    found.raise_if_any()
    spec, entries, _ = _load_file(base_path, seen)
    base_version = spec["version"]

    version = _as_version(raw.get("version"))
    if version is None:
        found.add("key 'version'", "a local catalogue needs its own non-empty version", raw.get("version"))
    elif version == base_version:
        found.add("key 'version'", f"must differ from the version of its base ({base_version})", version)

    by_code = {e["code"]: dict(e, grades=dict(e["grades"]), provisional=list(e["provisional"])) for e in entries}

    remove = raw.get("remove") or []
    if not isinstance(remove, list):
        found.add("key 'remove'", "must be a list of indicator codes", remove)
        remove = []
    for i, code in enumerate(remove):
        if not isinstance(code, str) or code not in by_code:
            found.add(f"remove[{i}]", f"unknown indicator code (not in base {base_version})", code)
    removed = {c for c in remove if isinstance(c, str) and c in by_code}

    regrade = raw.get("regrade") or {}
    if not isinstance(regrade, dict):
        found.add("key 'regrade'", "must map indicator codes to {list: grade}", regrade)
        regrade = {}
    for code, change in regrade.items():
        entry = f"regrade {code!r}"
        if code not in by_code:
            found.add(entry, f"unknown indicator code (not in base {base_version})", code)
            continue
        if code in removed:
            found.add(entry, "the indicator is also removed", code)
            continue
        if not isinstance(change, dict) or not change:
            found.add(entry, "must map lists to strong, medium, weak or null (plus optional `provisional`)", change)
            continue
        change = dict(change)
        provisional = change.pop("provisional", None)
        new = _check_grades(change, entry, spec, found, partial=True)
        ind = by_code[code]
        grades = {**ind["grades"], **new}
        if all(g is None for g in grades.values()):
            found.add(entry, "the indicator would be on no list (remove it instead)")
            continue
        marked = _check_provisional(provisional, grades, entry, spec, found)
        kept = [name for name in ind["provisional"] if name not in new and grades.get(name) is not None]
        ind["grades"] = grades
        ind["provisional"] = [name for name in spec["lists"] if name in kept or name in marked]

    kept_entries = [e for c, e in by_code.items() if c not in removed]
    added = _check_indicators(raw.get("add") or [], "add", spec, found, taken={e["code"] for e in kept_entries})
    found.raise_if_any()
    spec = dict(spec, version=version, title=str(raw.get("title") or spec["title"]))
    return spec, kept_entries + added, base_version


def _load_file(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict, list[dict], str | None]:
    """Read and check one catalogue file (following ``base``); return spec, entries, base version."""
    try:
        stat = path.stat()
    except OSError:
        found = _Findings(path)
        found.add("(file)", "indicator catalogue not found")
        found.raise_if_any()
    checked = _read_checked(str(path), stat.st_mtime_ns, stat.st_size)
    if checked[0] == "local":  # applied afresh each time, so a changed base is always seen
        return _apply_local(checked[1], path, (*seen, path.resolve()))
    return checked[1], checked[2], None


@lru_cache(maxsize=32)
def _read_checked(path: str, mtime_ns: int, size: int) -> tuple:
    """A file read and, if it is a full catalogue, checked (cached per modification time).

    Returns ``("local", raw)`` or ``("full", spec, entries)``; callers never change these.
    """
    source = Path(path)
    raw = _read_yaml(source)
    if "base" in raw:
        return ("local", raw)
    found = _Findings(source)
    spec = _check_header(raw, found)
    entries = _check_indicators(raw.get("indicators", []), "indicators", spec, found, taken=set())
    if "indicators" in raw and isinstance(raw["indicators"], list) and not raw["indicators"]:
        found.add("key 'indicators'", "must list at least one indicator")
    found.raise_if_any()
    return ("full", spec, entries)


def _table(spec: dict, entries: list[dict], source: Path, base_version: str | None) -> pd.DataFrame:
    rows = [
        (e["code"], e["dimension"], name, e["grades"][name], name in e["provisional"], e["text"])
        for e in entries
        for name in spec["lists"]
        if e["grades"][name] is not None
    ]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["provisional"] = table["provisional"].astype(bool)
    table.attrs = {"version": spec["version"], "source": str(source), "base_version": base_version, "spec": copy.deepcopy(spec)}
    return table


# -- public API ---------------------------------------------------------------------------------

def catalogue(path: str | Path | None = None) -> pd.DataFrame:
    """The indicator catalogue as a long table, one row per indicator and list.

    ``path`` is None or ``"default"`` for the shipped catalogue, or the path of a catalogue or
    local catalogue file. Columns: ``code, dimension, list, grade, provisional, text``;
    ``.attrs["version"]`` is the catalogue version. Raises :class:`CatalogueError`.
    """
    source = _resolve(path)
    spec, entries, base_version = _load_file(source)
    return _table(spec, entries, source, base_version)


def as_catalogue(value: pd.DataFrame | str | Path | None) -> pd.DataFrame:
    """Accept a catalogue table (from :func:`catalogue`), a path, ``"default"`` or None."""
    if value is None or isinstance(value, (str, Path)):
        return catalogue(value)
    if isinstance(value, pd.DataFrame):
        problems = []
        missing = [c for c in COLUMNS if c not in value.columns]
        if missing:
            problems.append(Problem(where="catalogue table", rule=f"missing columns {missing}"))
        if "spec" not in value.attrs or "version" not in value.attrs:
            problems.append(Problem(where="catalogue table", rule="has no .attrs['spec'] / .attrs['version']: pass the table that catalogue() returns"))
        elif not missing:
            for name in value.attrs["spec"]["lists"]:
                if not (value["list"] == name).any():
                    problems.append(Problem(where="catalogue table", rule=f"has no rows for list {name!r} (was it filtered?)"))
        if problems:
            raise CatalogueError(problems, summary="not a usable catalogue table")
        return value
    raise TypeError(f"catalogue must be a table from catalogue(), a path or None, not {type(value).__name__}")


def dimensions(path: str | Path | pd.DataFrame | None = None) -> pd.DataFrame:
    """The dimensions of a catalogue, in order: ``dimension, kind, title``."""
    spec = as_catalogue(path).attrs["spec"]
    table = pd.DataFrame(
        [(d["code"], d["kind"], d["title"]) for d in spec["dimensions"]], columns=["dimension", "kind", "title"]
    )
    table.attrs["version"] = spec["version"]
    return table


def indicator_codes(
    dimension: str | None = None, list_name: str | None = None, path: str | Path | pd.DataFrame | None = None
) -> tuple[str, ...]:
    """Indicator codes in catalogue order, optionally of one dimension and/or on one list."""
    table = as_catalogue(path)
    spec = table.attrs["spec"]
    problems = []
    known_dims = [d["code"] for d in spec["dimensions"]]
    if dimension is not None and dimension not in known_dims:
        problems.append(Problem(where="indicator_codes", rule=f"unknown dimension; dimensions are {', '.join(known_dims)}", value=dimension))
    if list_name is not None and list_name not in spec["lists"]:
        problems.append(Problem(where="indicator_codes", rule=f"unknown list; lists are {', '.join(spec['lists'])}", value=list_name))
    if problems:
        raise CatalogueError(problems, summary="bad catalogue lookup")
    keep = pd.Series(True, index=table.index)
    if dimension is not None:
        keep &= table["dimension"] == dimension
    if list_name is not None:
        keep &= table["list"] == list_name
    return tuple(pd.unique(table.loc[keep, "code"]).tolist())
