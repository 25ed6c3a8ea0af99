"""Study files (``studies/<id>.yaml``): what a study declares, and the reports it asks for.

What users write is declared here as pydantic models (:class:`StudyFile`); how it is checked
is separate: :func:`read_study` parses the YAML, validates the schema, resolves paths
(relative to the study file; ``data: demo`` is the demo synthetic dataset) and checks that
files exist; :func:`parameter_problems` compares the parameters (and matrix keys) with the
template's ``parameters`` cell. Every problem names the file, the line and the key, and all
of them are collected into one :class:`~studylib.errors.ValidationError`, before any kernel
starts. :func:`reports_of` fans a study out into one :class:`Report` per matrix combination.
"""

from __future__ import annotations

import difflib
import itertools
import re
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError as PydanticError, field_validator, model_validator

from studylib import paths
from studylib.data.meta import META_FILE, is_dataset
from studylib.errors import Problem, StudylibError, ValidationError

#: The template parameter through which the runner passes the study's dataset folder.
DATA_PARAMETER = "data_dir"

#: ``data: demo`` in a study file means the demo synthetic dataset.
DEMO_DATA = "demo"

Scalar = Union[bool, int, float, str, None]
Value = Union[Scalar, list[Scalar]]

_ID = r"^[a-z][a-z0-9_]*$"


class TopMerge(BaseModel):
    """Merge rule ``{top: N}``: the N largest categories by name, the rest as ``other``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    top: int = Field(ge=1)


MergeRule = Literal["other_or_unknown", "adjacent"] | TopMerge


class CellKey(BaseModel):
    """The cell key method's perturbation (see :mod:`studylib.privacy.cell_key`)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    max_deviation: int = Field(3, ge=1, le=10, description="a published count differs from the true one by at most this")
    variance: float = Field(2.0, gt=0, description="the variance of the perturbation")
    no_small: int = Field(2, ge=1, description="counts 1..no_small are never published")


class Disclosure(BaseModel):
    """Disclosure control of every table in the report (DESIGN section 4)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    method: Literal["suppression", "cell_key"] = Field(
        "suppression", description="suppression (or rounding, with rounding:), or cell_key: every count perturbed "
                                   "the same way wherever the same persons are counted")
    cell_key: CellKey = Field(default_factory=CellKey, description="the perturbation of method cell_key")
    min_cell: int = Field(ge=2, description="smallest count shown; smaller cells are protected")
    #: the bases of :data:`studylib.privacy.rounding.BASES` (not imported: scipy is slow to load)
    rounding: Literal[3, 5] | None = Field(None, description="controlled rounding to this base; none: cell suppression")
    zeros_disclosive: bool = Field(False, description="treat zero counts as disclosive too (hide them)")
    symbol: str = Field("[c]", min_length=1, max_length=8, pattern=r"^\D+$", description="what every hidden cell shows")
    merge: dict[str, MergeRule] = Field(default_factory=dict, description="category merges allowed before cells are hidden: column -> other_or_unknown | adjacent | {top: N}")

    @model_validator(mode="after")
    def _one_method(self) -> "Disclosure":
        if self.method == "cell_key" and self.rounding is not None:
            raise ValueError("method cell_key perturbs the counts; it cannot be combined with rounding")
        if self.method == "cell_key" and self.zeros_disclosive:
            raise ValueError("method cell_key publishes zeros as zero; it cannot protect disclosive zeros")
        if self.method == "cell_key" and self.cell_key.max_deviation < self.cell_key.no_small:
            raise ValueError("cell_key: max_deviation must be at least no_small (a count of 1 must be able to move past it)")
        return self


class Timeouts(BaseModel):
    """How long one cell and one whole report may run, in seconds."""

    model_config = ConfigDict(extra="forbid", strict=True)
    cell: float = Field(600, gt=0)
    report: float = Field(1800, gt=0)


class StudyFile(BaseModel):
    """The content of ``studies/<id>.yaml`` exactly as a user writes it."""

    model_config = ConfigDict(extra="forbid", strict=True)
    id: str = Field(pattern=_ID, description="the study's name; equals the file name and the report folder")
    title: str = Field(min_length=1)
    report_title: str | None = Field(None, min_length=1, description="a matrix study's title of each report, naming matrix "
                                                                   "keys as '{region}' (filled with the value's name)")
    subtitle: str | None = None
    template: str = Field(min_length=1, description="notebook template, relative to the study file")
    data: str = Field(min_length=1, description="dataset folder, relative to the study file, or 'demo'")
    parameters: dict[str, Value] = Field(default_factory=dict)
    disclosure: Disclosure
    formats: list[Literal["html", "pdf", "xlsx", "csv", "png", "svg"]] = Field(
        min_length=1, description="html and pdf: the report; xlsx and csv: its tables as data; png and svg: its figures")
    matrix: dict[str, list[Scalar]] | None = None
    timeout: Timeouts = Field(default_factory=Timeouts)

    @field_validator("parameters", mode="before")
    @classmethod
    def _no_parameters(cls, parameters):
        return {} if parameters is None else parameters  # ``parameters:`` with every line commented out

    @field_validator("formats")
    @classmethod
    def _unique_formats(cls, formats: list[str]) -> list[str]:
        if len(set(formats)) != len(formats):
            raise ValueError("formats are listed more than once")
        return formats

    @field_validator("matrix")
    @classmethod
    def _non_empty_matrix(cls, matrix: dict[str, list] | None) -> dict[str, list] | None:
        for key, values in (matrix or {}).items():
            if not values:
                raise ValueError(f"matrix {key!r} has no values")
            if len(set(map(repr, values))) != len(values):
                raise ValueError(f"matrix {key!r} lists a value more than once")
        return matrix

    @model_validator(mode="after")
    def _title_names_matrix_keys(self) -> "StudyFile":
        named = title_keys(self.report_title or "")
        unknown = sorted(named - set(self.matrix or {}))
        if unknown:
            raise ValueError(f"report_title names {', '.join('{' + k + '}' for k in unknown)}, which the matrix does not have"
                             + (f" (its keys: {', '.join(self.matrix)})" if self.matrix else " (the study has no matrix)"))
        return self


_TITLE_KEY = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def title_keys(title: str) -> set[str]:
    """The matrix keys a title names as ``{key}``."""
    return set(_TITLE_KEY.findall(title))


def value_name(key: str, value: Any) -> str:
    """A matrix value as a reader knows it: its name where its vocabulary has one (a region's), else the value itself."""
    from studylib.data.vocabularies import VALUE_NAMES

    return VALUE_NAMES.get(key, {}).get(str(value), str(value))


@dataclass(frozen=True)
class Study:
    """A checked study file with its paths resolved."""

    file: Path
    spec: StudyFile
    template: Path
    data: Path

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def title(self) -> str:
        return self.spec.title


@dataclass(frozen=True)
class Report:
    """One report a study asks for: the whole study, or one combination of its matrix."""

    study: Study
    combination: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``<id>`` or ``<id>/<combination>``: the report's folder under the reports folder."""
        return self.study.id if not self.combination else f"{self.study.id}/{combination_name(self.combination)}"

    @property
    def parameters(self) -> dict[str, Any]:
        """What the runner injects: the study's parameters, this combination, and the data folder."""
        return {**self.study.spec.parameters, **self.combination, DATA_PARAMETER: str(self.study.data)}

    @property
    def title(self) -> str:
        """The study's title; for a combination, the study's ``report_title`` with each ``{key}`` filled with
        the value's name, or else the title with the values after it."""
        title = self.study.title
        if not self.combination:
            return title
        if self.study.spec.report_title:
            return _TITLE_KEY.sub(lambda m: value_name(m.group(1), self.combination[m.group(1)]), self.study.spec.report_title)
        return f"{title} ({', '.join(f'{k}: {v}' for k, v in self.combination.items())})"


def combination_name(combination: dict[str, Any]) -> str:
    """A folder name for a matrix combination, e.g. ``region-hovedstaden``."""
    return "__".join(f"{k}-{_slug(v)}" for k, v in combination.items())


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", str(value)).strip("_") or "none"


def reports_of(study: Study) -> list[Report]:
    """One report per matrix combination (one report when there is no matrix)."""
    matrix = study.spec.matrix or {}
    keys = list(matrix)
    return [Report(study, dict(zip(keys, values))) for values in itertools.product(*matrix.values())] or [Report(study)]


# --- reading ---------------------------------------------------------------------------


def key_lines(text: str) -> dict[tuple, int]:
    """Line number (1-based) of every mapping key in a YAML text, by key path."""
    lines: dict[tuple, int] = {}

    def walk(node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[(*path, key.value)] = key.start_mark.line + 1
                walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    try:
        walk(yaml.compose(text), ())
    except yaml.YAMLError:
        pass
    return lines


def _where(file: Path, lines: dict[tuple, int], loc: tuple) -> str:
    line = next((lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in lines), None)
    dotted = ".".join(str(p) for p in loc)
    return f"{file}" + (f" line {line}" if line else "") + (f", key {dotted!r}" if dotted else "")


def _schema_problems(file: Path, lines: dict[tuple, int], err: PydanticError) -> list[Problem]:
    problems = []
    for e in err.errors():
        loc = _clean_loc(e["loc"])
        rule = "unknown key (not part of a study file)" if e["type"] == "extra_forbidden" else e["msg"]
        value = None if e["type"] in ("missing", "extra_forbidden") else e.get("input")
        problems.append(Problem(where=_where(file, lines, loc), rule=rule, value=value if not isinstance(value, (dict, list)) else None))
    return _unique(problems)


def _clean_loc(loc: tuple) -> tuple:
    """Drop pydantic's union-branch labels (``str``, ``list[...]``) from an error location."""
    branch = re.compile(r"^(bool|int|float|str|none|list\[.*\]|nullable\[.*\]|function-.*)$")
    return tuple(p for p in loc if not (isinstance(p, str) and branch.match(p)))


def _unique(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if p.where not in seen:
            seen.add(p.where)
            out.append(p)
    return out


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


@lru_cache(maxsize=1)
def _demo_dataset() -> Path:
    """The demo dataset, (re)created on demand once per process (synth -> demo key -> ingest)."""
    from studylib.demo import ensure_demo_dataset

    return ensure_demo_dataset()


def read_study(file: str | Path) -> Study:
    """Read and check one study file; raise one ValidationError naming every problem."""
    file = Path(file)
    if not file.is_file():
        raise ValidationError([Problem(where=str(file), rule="study file not found")], summary="study file")
    text = file.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file} line {mark.line + 1}" if mark else str(file)
        raise ValidationError([Problem(where=where, rule=f"not valid YAML: {getattr(exc, 'problem', exc)}")], summary=f"{file}: study file is not valid") from None
    lines = key_lines(text)
    if not isinstance(raw, dict):
        raise ValidationError([Problem(where=str(file), rule="a study file is a mapping of keys (id, title, template, ...)")], summary=f"{file}: study file is not valid")
    try:
        spec = StudyFile.model_validate(raw)
    except PydanticError as err:
        raise ValidationError(_schema_problems(file, lines, err), summary=f"{file}: study file is not valid") from None

    problems: list[Problem] = []
    if spec.id != file.stem:
        problems.append(Problem(where=_where(file, lines, ("id",)), rule=f"id must equal the file name {file.stem!r}", value=spec.id))
    template = _resolve(file.parent, spec.template)
    if not template.is_file():
        problems.append(Problem(where=_where(file, lines, ("template",)), rule=f"template not found: {template}"))
    elif template.suffix != ".ipynb":
        problems.append(Problem(where=_where(file, lines, ("template",)), rule="a template is a notebook (.ipynb)", value=spec.template))
    data = paths.demo_dataset_dir() if spec.data == DEMO_DATA else _resolve(file.parent, spec.data)
    if spec.data == DEMO_DATA:
        try:
            data = _demo_dataset()
        except StudylibError as err:
            problems.append(Problem(where=_where(file, lines, ("data",)), rule=f"the demo dataset cannot be made: {err}"))
    if not is_dataset(data):
        hint = "; create it with `studylib demo`" if spec.data == DEMO_DATA else ""
        problems.append(Problem(where=_where(file, lines, ("data",)), rule=f"not a dataset folder (no {META_FILE}): {data}{hint}"))
    if DATA_PARAMETER in spec.parameters:
        problems.append(Problem(where=_where(file, lines, ("parameters", DATA_PARAMETER)), rule=f"set the dataset with the key 'data', not parameters.{DATA_PARAMETER}"))
    for key in set(spec.parameters) & set(spec.matrix or {}):
        problems.append(Problem(where=_where(file, lines, ("matrix", key)), rule="a parameter is either fixed in 'parameters' or varied in 'matrix', not both"))
    if problems:
        raise ValidationError(problems, summary=f"{file}: study file is not valid")
    return Study(file=file, spec=spec, template=template, data=data)


def find_studies(folder: str | Path) -> list[Path]:
    """Every study file in ``folder`` (``*.yaml`` and ``*.yml``), by name."""
    folder = Path(folder)
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


# --- parameters against the template -------------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def accepts(annotation: str | None, value: Any) -> bool:
    """Whether ``value`` fits a parameter annotation such as ``int``, ``Optional[str]`` or ``list[str]``."""
    if not annotation or annotation == "None":
        return True
    text = annotation.replace(" ", "")
    optional = re.fullmatch(r"Optional\[(.+)\]", text)
    if optional:
        return value is None or accepts(optional.group(1), value)
    base = re.split(r"\[", text, maxsplit=1)[0].lower()
    if base not in _TYPES:
        return True  # an annotation we do not know: papermill decides
    if isinstance(value, bool) and base in ("int", "float"):
        return False
    return isinstance(value, _TYPES[base])


def parameter_problems(study: Study, declared: dict[str, Any]) -> list[Problem]:
    """Problems of the study's parameters and matrix against the template's parameters cell.

    ``declared`` maps each template parameter to its description (an object with
    ``inferred_type_name``, as :func:`studylib.runner.template.template_parameters` returns).
    """
    lines = key_lines(study.file.read_text())
    problems = []
    known = ", ".join(sorted(declared)) or "none"
    if DATA_PARAMETER not in declared:
        problems.append(Problem(where=_where(study.file, lines, ("template",)),
                                rule=f"template {study.template.name} has no parameter {DATA_PARAMETER!r}; the runner passes the dataset folder through it"))
    given = [(("parameters", k), k, [v]) for k, v in study.spec.parameters.items()]
    given += [(("matrix", k), k, list(v)) for k, v in (study.spec.matrix or {}).items()]
    for loc, name, values in given:
        if name not in declared:
            problems.append(Problem(where=_where(study.file, lines, loc), rule=f"template {study.template.name} has no parameter {name!r} (it has: {known})"))
            continue
        annotation = getattr(declared[name], "inferred_type_name", None)
        domain = parameter_domain(getattr(declared[name], "help", "") or "")
        for value in values:
            if not accepts(annotation, value):
                problems.append(Problem(where=_where(study.file, lines, loc), rule=f"template {study.template.name} declares {name}: {annotation}", value=repr(value)))
            elif domain is not None and (problem := domain_problem(domain, value, study.template.parent)):
                problems.append(Problem(where=_where(study.file, lines, loc), rule=f"{name}: {problem}", value=repr(value)))
    return problems


_DOMAIN = re.compile(r"\[(vocabulary|one of|range|file):?\s*([^\]]*)\]")


def parameter_domain(help_text: str) -> tuple[str, str] | None:
    """The domain a template declares in a parameter's comment: ``[vocabulary: sector]``,
    ``[one of: stepwise, main, bic]``, ``[range: 1..20]`` or ``[file]`` (a file that must exist)."""
    found = _DOMAIN.search(help_text)
    return (found.group(1), found.group(2).strip()) if found else None


def domain_problem(domain: tuple[str, str], value: Any, base: Path) -> str | None:
    """What is wrong with ``value`` in a declared domain (None for a fitting value, or None itself)."""
    kind, spec = domain
    if value is None:
        return None
    if kind == "vocabulary":
        from studylib.data.vocabularies import VOCABULARIES

        codes = VOCABULARIES.get(spec, ())
        if value not in codes:
            close = difflib.get_close_matches(str(value), codes, n=1)
            return f"{value!r} is not a {spec} code" + (f"; did you mean {close[0]!r}?" if close else f" (codes: {', '.join(codes)})")
    elif kind == "one of":
        choices = [c.strip() for c in spec.split(",") if c.strip()]
        if str(value) not in choices:
            return f"{value!r} is not one of {', '.join(choices)}"
    elif kind == "range":
        low, _, high = spec.partition("..")
        number = float(value)
        if (low.strip() and number < float(low)) or (high.strip() and number > float(high)):
            return f"{value!r} is outside {spec}"
    elif kind == "file":
        path = Path(str(value))
        if not (path if path.is_absolute() else base / path).is_file():
            return f"the file {value!r} does not exist (a relative path is read from the template's folder, where its kernel runs)"
    return None


def new_study_text(study_id: str, title: str, template: str, data: str, declared: dict[str, Any]) -> str:
    """The text of a new study file: required keys filled in, the template's parameters listed as comments."""
    lines = [
        f"# Study file: `studylib run studies/{study_id}.yaml`. Keys: id, title, subtitle, template, data,",
        "# parameters, disclosure, formats, matrix (one report per combination; report_title: '... {key} ...'),",
        "# timeout (cell, report).",
        f"id: {study_id}",
        f"title: {json_str(title)}",
        f"template: {json_str(template)}",
        f"data: {json_str(data)}  # a dataset folder (relative to this file), or 'demo'",
        "parameters:  # uncomment a line to set a parameter (each line is valid YAML)",
    ]
    for name, p in declared.items():
        if name == DATA_PARAMETER:
            continue
        kind = getattr(p, "inferred_type_name", "None")
        note = getattr(p, "help", "")
        value, computed = _yaml_default(getattr(p, "default", ""))
        about = f"{kind}{': ' + note if note else ''}" + (f" (the template computes its default: {computed})" if computed else "")
        lines.append(f"  # {name}: {value}  # {about}")
    lines += [
        "disclosure:",
        "  min_cell: 5  # counts 1..4 are protected",
        "  rounding: null  # or 3 / 5: controlled rounding instead of suppression",
        "  method: suppression  # or cell_key: perturb every count instead (docs/disclosure.md, section 6)",
        "formats: [html, pdf, xlsx, csv, png, svg]  # the report, its tables as data, its figures",
        "",
    ]
    return "\n".join(lines)


def _yaml_default(source: str) -> tuple[str, str | None]:
    """A template default (Python source) as a YAML value, or ``null`` and the source when it is computed."""
    import ast

    from studylib.runner.template import parse_python

    try:
        value = ast.literal_eval(parse_python(str(source).lstrip(" \t"), mode="eval"))
    except (ValueError, SyntaxError):
        return "null", str(source)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip(), None
    return "null", str(source)


def json_str(value: str) -> str:
    """A YAML-safe scalar (JSON strings are valid YAML)."""
    import json

    return json.dumps(value, ensure_ascii=False)
