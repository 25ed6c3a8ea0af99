"""The form catalogue: the 14 registration forms as data (``form_catalogue.yaml``), loaded and checked.

The generator writes raw exports from it, ingest validates them against it, and the
documentation (``studylib forms``) is printed from it. Code here only reads and checks the
file; what a form holds is decided in the YAML.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError as PydanticValidationError, model_validator

from studylib.config import read_yaml
from studylib.data import vocabularies
from studylib.errors import ConfigError

FieldType = Literal["string", "code", "codes", "date", "integer", "decimal", "boolean"]

#: Vocabularies that are not in studylib.data.vocabularies but resolved elsewhere.
EXTERNAL_VOCABULARIES = {"indicator"}  # codes of the indicator catalogue (studylib.indicators)

DEFAULT_PATH = files("studylib.data") / "form_catalogue.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FormField(_Strict):
    """One field of a registration form."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: FieldType
    required: bool
    personal: bool
    description: str
    deny_list: bool = False  # raw values go (keyed) on the audit's deny list
    free_text: bool = False  # word sequences of the raw values go (keyed) on the deny list
    codes: str | tuple[str, ...] | None = None
    format: str | None = None
    max_length: int | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _codes_for_code_types(self) -> "FormField":
        if self.type in ("code", "codes") and self.codes is None:
            raise ValueError(f"field {self.name!r} of type {self.type} needs `codes`")
        if isinstance(self.codes, str) and self.codes not in vocabularies.VOCABULARIES and self.codes not in EXTERNAL_VOCABULARIES:
            raise ValueError(f"field {self.name!r}: unknown vocabulary {self.codes!r}")
        if self.format is not None:
            re.compile(self.format)
        if self.deny_list and not self.personal:
            raise ValueError(f"field {self.name!r}: deny_list is for personal fields only")
        if self.free_text and (not self.personal or self.type != "string"):
            raise ValueError(f"field {self.name!r}: free_text is for personal string fields only")
        return self

    def allowed_codes(self) -> tuple[str, ...] | None:
        """The codes this field accepts (None for external vocabularies and non-code fields)."""
        if self.codes is None or (isinstance(self.codes, str) and self.codes in EXTERNAL_VOCABULARIES):
            return None
        return vocabularies.vocabulary(self.codes) if isinstance(self.codes, str) else self.codes


class Form(_Strict):
    """One registration form: its code, purpose, who submits it and its own fields."""

    code: str = Field(pattern=r"^F(0[1-9]|1[0-4])$")
    slug: str = Field(pattern=r"^[a-z][a-z_]*$")
    title: str
    purpose: str
    contact: bool
    submitted_by: tuple[str, ...]
    minors_only: bool = False
    fields: tuple[FormField, ...]

    @model_validator(mode="after")
    def _organisations_known(self) -> "Form":
        unknown = set(self.submitted_by) - set(vocabularies.ORGANISATION)
        if unknown:
            raise ValueError(f"form {self.code}: unknown organisations in submitted_by: {sorted(unknown)}")
        return self


class ExportDialect(_Strict):
    """How values are spelled in a raw export."""

    file_pattern: str
    multi_separator: str
    booleans: dict[bool, tuple[str, ...]]
    date_formats: tuple[str, ...]
    missing: tuple[str, ...]


class ReferralStep(_Strict):
    """One step of the referral procedure: what happens, and the forms that record it."""

    step: str = Field(min_length=1)
    forms: tuple[str, ...] = Field(min_length=1)
    text: str = Field(min_length=1)


class FormCatalogue(_Strict):
    """The whole catalogue: version, export dialect, shared fields, the 14 forms and the referral procedure."""

    version: str
    export: ExportDialect
    common_fields: tuple[FormField, ...]
    person_fields: tuple[FormField, ...]
    forms: tuple[Form, ...]
    referral: tuple[ReferralStep, ...] = ()

    @model_validator(mode="after")
    def _fourteen_unique_forms(self) -> "FormCatalogue":
        codes = [f.code for f in self.forms]
        if sorted(codes) != list(vocabularies.FORM_CODES):
            raise ValueError(f"forms must be exactly {vocabularies.FORM_CODES[0]}..{vocabularies.FORM_CODES[-1]} once each; found {codes}")
        for form in self.forms:
            names = [f.name for f in self.fields_of(form.code)]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"form {form.code}: duplicate field names {sorted(dup)}")
        for number, step in enumerate(self.referral, 1):
            unknown = sorted(set(step.forms) - set(codes))
            if unknown:
                raise ValueError(f"referral step {number} ({step.step!r}) names unknown forms {unknown}")
        return self

    # -- lookups ---------------------------------------------------------------------------
    def form(self, code: str) -> Form:
        for form in self.forms:
            if form.code == code:
                return form
        raise KeyError(f"unknown form {code!r}; forms are {', '.join(vocabularies.FORM_CODES)}")

    def fields_of(self, code: str) -> tuple[FormField, ...]:
        """All fields of a form, in export column order: common, person, then the form's own."""
        return self.common_fields + self.person_fields + self.form(code).fields

    def columns_of(self, code: str) -> list[str]:
        return [f.name for f in self.fields_of(code)]

    def personal_fields(self, code: str) -> list[str]:
        return [f.name for f in self.fields_of(code) if f.personal]

    def deny_list_fields(self, code: str) -> list[str]:
        """Fields of a form whose raw values go (keyed) on the deny list; names are added by ingest as "first last"."""
        return [f.name for f in self.fields_of(code) if f.deny_list]

    def free_text_fields(self, code: str) -> list[str]:
        """Fields of a form whose word sequences go (keyed) on the deny list: free-text notes."""
        return [f.name for f in self.fields_of(code) if f.free_text]

    def file_name(self, code: str, fmt: str = "csv") -> str:
        """The raw export file name of a form, e.g. ``F01_outreach.csv``."""
        return f"{code}_{self.form(code).slug}.{fmt}"

    def referral_steps(self) -> list[tuple[ReferralStep, tuple[Form, ...], tuple[str, ...]]]:
        """Each referral step with its forms and who may do it (the forms' ``submitted_by``, in order, once each)."""
        out = []
        for step in self.referral:
            forms = tuple(self.form(code) for code in step.forms)
            who = tuple(dict.fromkeys(org for form in forms for org in form.submitted_by))
            out.append((step, forms, who))
        return out

    @property
    def contact_forms(self) -> tuple[str, ...]:
        """Forms whose organisation counts as one of the lists that registered the person."""
        return tuple(f.code for f in self.forms if f.contact)


def _format_pydantic(path: Path | str, err: PydanticValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        lines.append(f"  - {path}: key {key or '(top)'}: {e['msg']}")
    return f"{path}: the form catalogue is malformed:\n" + "\n".join(lines)


def load_catalogue(path: str | Path | None = None) -> FormCatalogue:
    """Load and check a form catalogue file (the shipped one by default)."""
    source = DEFAULT_PATH if path is None else Path(path)
    raw = read_yaml(source, "form catalogue")
    try:
        return FormCatalogue.model_validate(raw)
    except PydanticValidationError as err:
        raise ConfigError(_format_pydantic(source, err)) from None


@lru_cache(maxsize=1)
def form_catalogue() -> FormCatalogue:
    """The shipped catalogue (cached)."""
    return load_catalogue()


def catalogue_markdown(catalogue: FormCatalogue | None = None) -> str:
    """The catalogue as Markdown documentation, generated from the data file."""
    cat = catalogue or form_catalogue()
    out = [f"# Registration forms (catalogue version {cat.version})", ""]
    out.append("Every form also carries the common fields and the person fields listed at the end. "
               "Personal fields exist only in raw exports; \"deny list\": their raw values (and every name) "
               "also go, keyed, on the list that the disclosure audit checks every report against.")
    for form in cat.forms:
        out += ["", f"## {form.code} {form.title}", "", form.purpose, ""]
        out.append(f"Submitted by: {', '.join(form.submitted_by)}. Raw export: `{cat.file_name(form.code)}`."
                   + (" Counts as a registration list for extent estimation." if form.contact else "")
                   + (" Minors only." if form.minors_only else ""))
        out += ["", *_field_table(form.fields)]
    if cat.referral:
        out += ["", "## Referral procedure", "", "What a referral group's brief prints as the procedure (the steps of `referral`).", ""]
        for number, (step, forms, who) in enumerate(cat.referral_steps(), 1):
            out.append(f"{number}. **{step.step}** ({', '.join(f.code for f in forms)}; {', '.join(who)}): {step.text}")
    out += ["", "## Common fields", "", *_field_table(cat.common_fields)]
    out += ["", "## Person fields (linkage; personal data is dropped at ingest)", "", *_field_table(cat.person_fields)]
    return "\n".join(out) + "\n"


def _field_table(fields) -> list[str]:
    rows = ["| field | type | codes / format | required | personal | description |", "|---|---|---|---|---|---|"]
    for f in fields:
        codes = f.codes if isinstance(f.codes, str) else (", ".join(f.codes) if f.codes else (f.format or ""))
        rows.append(f"| {f.name} | {f.type} | {codes} | {'yes' if f.required else 'no'} | {_personal(f)} | {f.description} |")
    return rows


def _personal(field: FormField) -> str:
    if not field.personal:
        return "no"
    return "yes, deny list" if field.deny_list else "yes, deny list (word runs)" if field.free_text else "yes"
