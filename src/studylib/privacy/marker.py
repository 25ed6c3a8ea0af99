"""The safe marker: how a table or figure says which disclosure rule made it publishable.

In HTML the marker is an attribute on the ``<table>`` (or the ``<figure>`` that wraps a
figure's ``<img>``)::

    <table data-studylib-safe='{"version": 1, "rule": "suppression", "min_cell": 5,
                                "rounding": null, "margins": true, "zeros_disclosive": false}'>

In a notebook the same object sits in the output's metadata under ``studylib_safe``.
``rule`` is ``suppression``, ``rounding``, ``cell_key`` (counts perturbed by the cell key
method; the marker's ``cell_key`` object holds ``max_deviation``, ``variance`` and
``no_small``: no count 1..no_small is ever shown), ``statistics`` (estimates and rates whose
count columns follow the minimum cell: :func:`studylib.report.safe_statistics`), ``sentence``
(a finding in words whose numbers are published cells: :mod:`studylib.report.sentences`),
``catalogue`` (text printed from the project's catalogues, which holds no number:
:mod:`studylib.report.guidance`) or ``front-matter`` (the title block's fields); ``min_cell`` is the minimum cell applied;
``rounding`` the base (3 or 5) or null. :func:`studylib.report.safe_table` and
:func:`studylib.report.safe_figure` write it; :mod:`studylib.privacy.audit` reads it.
"""

from __future__ import annotations

import html
import json
import numbers
import re
from typing import Any

from studylib.privacy.rounding import BASES

MARKER_ATTRIBUTE = "data-studylib-safe"
MARKER_METADATA_KEY = "studylib_safe"
MARKER_VERSION = 1
RULES = ("suppression", "rounding", "cell_key", "statistics", "sentence", "catalogue", "front-matter")
#: a number standing alone in a text (``12``, ``3.5``, ``2024``), not part of a name such as ``F03`` or ``ilo-2009-r1``:
#: what catalogue text (rule ``catalogue``) may not hold
STANDALONE_NUMBER = re.compile(r"(?<![A-Za-z0-9.\-])\d+(?![A-Za-z0-9])")
#: the same, a year (1900-2099) excepted: what a subtitle or period may not hold
NOT_A_YEAR = re.compile(r"(?<![A-Za-z0-9.\-])(?!(?:19|20)\d\d(?![A-Za-z0-9]))\d+(?![A-Za-z0-9])")
#: what the marker of a ``cell_key`` table says of its perturbation
CELL_KEY_FIELDS = ("max_deviation", "variance", "no_small")


class MarkerError(ValueError):
    """A marker that cannot be read: not JSON, an unknown rule, or missing settings."""


def min_cell_problem(value: Any, name: str = "min_cell") -> str | None:
    """What is wrong with a minimum cell size (a whole number of at least 2), or None.

    The one check behind the disclosure settings, the audit and the marker reader.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
        return f"{name} must be a whole number of at least 2, not {value!r}"
    return None


def marker_for(rule: str, min_cell: int, rounding: int | None, margins: bool, zeros_disclosive: bool,
               cell_key: dict[str, Any] | None = None) -> dict[str, Any]:
    """The marker object for a table or figure protected with these settings."""
    out = {
        "version": MARKER_VERSION,
        "rule": rule,
        "min_cell": int(min_cell),
        "rounding": None if rounding is None else int(rounding),
        "margins": bool(margins),
        "zeros_disclosive": bool(zeros_disclosive),
    }
    if cell_key is not None:
        out["cell_key"] = {name: cell_key[name] for name in CELL_KEY_FIELDS}
    return out


def marker_attribute(marker: dict[str, Any]) -> str:
    """The marker as an HTML attribute (leading space included), escaped for double quotes."""
    return f' {MARKER_ATTRIBUTE}="{html.escape(json.dumps(marker, sort_keys=True), quote=True)}"'


def parse_marker(value: str | dict) -> dict[str, Any]:
    """A marker read from an attribute value (already unescaped) or metadata; MarkerError if invalid.

    ``value``: the marker as text (an attribute value) or as a dict (notebook metadata).

    Example::

        parse_marker(output['metadata'][MARKER_METADATA_KEY])
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise MarkerError(f"marker is not JSON ({err.msg})") from None
    if not isinstance(value, dict):
        raise MarkerError("marker is not a JSON object")
    rule = value.get("rule")
    if rule not in RULES:
        raise MarkerError(f"marker rule must be one of {RULES}, not {rule!r}")
    min_cell = value.get("min_cell")
    if problem := min_cell_problem(min_cell, "marker min_cell"):
        raise MarkerError(problem)
    rounding = value.get("rounding")
    if rule == "rounding" and rounding not in BASES:
        raise MarkerError(f"marker of rule 'rounding' needs base {' or '.join(map(str, BASES))}, not {rounding!r}")
    if rule == "cell_key" or (rule == "statistics" and "cell_key" in value):
        perturbation = value.get("cell_key")
        if not isinstance(perturbation, dict) or any(
                isinstance(perturbation.get(name), bool) or not isinstance(perturbation.get(name), numbers.Real)
                for name in CELL_KEY_FIELDS):
            raise MarkerError(f"marker of rule 'cell_key' needs a cell_key object with {', '.join(CELL_KEY_FIELDS)}, "
                              f"not {perturbation!r}")
    return value
