"""The data dictionary: every table and column of the pseudonymised dataset, made from the schemas.

``docs/data-dictionary.md`` is this module's output (``studylib data-dictionary``); a test keeps
the two the same, so the dictionary never drifts from what :mod:`studylib.data.schemas` checks.
"""

from __future__ import annotations

from studylib.data import vocabularies as v

#: What each table holds, in the words of the data contract.
TABLE_NOTES = {
    "persons": "one row per person: the keyed token and the few facts that do not change",
    "events": "one row per submitted form; each form adds its own non-identifying fields (docs/forms.md)",
    "indicators": "one row per indicator ticked on an identification interview (F04)",
    "cases": "one row per person, the analysis view derived from the three tables above (data/case_rules.yaml)",
}


def _vocabulary_of(check) -> str | None:
    values = getattr(check, "statistics", {}).get("allowed_values")
    if values is None:
        return None
    values = tuple(values)
    for name, codes in v.VOCABULARIES.items():
        if set(values) == set(codes):
            return f"vocabulary `{name}`"
        if set(codes) < set(values) and len(set(values) - set(codes)) <= 2:
            return f"vocabulary `{name}` and {', '.join(f'`{x}`' for x in sorted(set(values) - set(codes)))}"
    return ", ".join(f"`{x}`" for x in values[:12]) + (" ..." if len(values) > 12 else "")


def _kind(column) -> str:
    """The column's type in words (the same whatever pandas calls its string type)."""
    name = str(column.dtype)
    if "datetime" in name:
        return "date"
    if name in ("Int64", "int64"):
        return "whole number"
    if name in ("bool", "boolean"):
        return "yes/no"
    if name in ("float64", "Float64"):
        return "number"
    return "text"


def _rule(column) -> str:
    parts = []
    for check in column.checks:
        stats = getattr(check, "statistics", {}) or {}
        name = getattr(check, "name", "")
        if name == "isin":
            parts.append(_vocabulary_of(check) or "codes")
        elif name == "str_matches":
            pattern = str(stats.get("pattern", ""))
            parts.append("keyed token (64 hex digits, HMAC-SHA256)" if "{64}" in pattern else f"matches `{pattern}`")
        elif name == "in_range":
            below = "" if stats.get("include_max", True) else ", less than the upper end"
            parts.append(f"{stats.get('min_value')} to {stats.get('max_value')}{below}")
        elif name == "greater_than_or_equal_to":
            parts.append(f"at least {stats.get('min_value')}")
        else:
            parts.append(name)
    if column.unique:
        parts.append("unique")
    if not column.required:
        parts.append("absent in datasets ingested before it existed")
    return "; ".join(parts) or "–"


def data_dictionary_markdown() -> str:
    """The dictionary as Markdown: one section per table, one row per column."""
    from studylib.data.schemas import SCHEMA_VERSION, TABLES

    lines = ["# Data dictionary", "",
             f"The tables of a pseudonymised dataset (schema version {SCHEMA_VERSION}), made from "
             "`studylib.data.schemas` by `studylib data-dictionary` (a test keeps this page in sync). "
             "Codes are lower-case ASCII snake_case from `studylib.data.vocabularies`.", ""]
    for name, schema in TABLES.items():
        lines += [f"## {name}", "", TABLE_NOTES.get(name, ""), "",
                  ("Other columns allowed: yes (each form's own fields)." if not schema.strict else "Other columns allowed: no."),
                  "", "| column | type | missing allowed | values |", "|---|---|---|---|"]
        for column_name, column in schema.columns.items():
            lines.append(f"| `{column_name}` | {_kind(column)} | {'yes' if column.nullable else 'no'} | {_rule(column)} |")
        lines.append("")
    return "\n".join(lines)
