"""The study's disclosure settings as every safe table and figure in a notebook sees them.

Defaults come from the environment the runner starts the kernel with (``STUDYLIB_MIN_CELL``,
``STUDYLIB_ROUNDING``: ``none``, ``3`` or ``5``), else the library defaults (minimum cell 5,
suppression). A template's parameters cell may call :func:`configure` instead, e.g. with
injected ``disclosure_min_cell`` / ``disclosure_rounding`` parameters. Nobody passes the
settings to each table by hand.

Also here: the counters that number tables and figures in the order a notebook shows them.
"""

from __future__ import annotations

import os
from dataclasses import replace
from itertools import count

from studylib.errors import ConfigError
from studylib.privacy.disclosure import DisclosureError, DisclosureSettings
from studylib.privacy.marker import min_cell_problem
from studylib.privacy.rounding import BASES
from studylib.report.variables import MIN_CELL_VARIABLE, ROUNDING_VARIABLE


_UNSET = object()
_current: DisclosureSettings | None = None
_counters: dict[str, count] = {}


def settings_from_environment(environ=None) -> DisclosureSettings:
    """Settings from ``STUDYLIB_MIN_CELL`` and ``STUDYLIB_ROUNDING`` (defaults where unset)."""
    environ = os.environ if environ is None else environ
    min_cell = _read_min_cell(environ.get(MIN_CELL_VARIABLE, ""), MIN_CELL_VARIABLE)
    rounding = _read_rounding(environ.get(ROUNDING_VARIABLE, ""), ROUNDING_VARIABLE)
    try:
        return DisclosureSettings(min_cell=5 if min_cell is None else min_cell, rounding=rounding)
    except DisclosureError as err:
        raise ConfigError(f"environment {MIN_CELL_VARIABLE}/{ROUNDING_VARIABLE}: {err}") from None


def current_settings() -> DisclosureSettings:
    """The settings every safe table and figure uses unless given others."""
    global _current
    if _current is None:
        _current = settings_from_environment()
    return _current


def configure(min_cell=None, rounding=_UNSET, margins=None, zeros_disclosive=None) -> DisclosureSettings:
    """Set the study's disclosure settings for this kernel; unnamed ones keep their value.

    ``rounding`` is ``None`` (or ``"none"``) for suppression, or the base ``3`` or ``5``.
    """
    base = current_settings()
    changes = {}
    if min_cell is not None:
        changes["min_cell"] = _read_min_cell(min_cell, "min_cell")
    if rounding is not _UNSET:
        changes["rounding"] = _read_rounding(rounding, "rounding")
    if margins is not None:
        changes["margins"] = bool(margins)
    if zeros_disclosive is not None:
        changes["zeros_disclosive"] = bool(zeros_disclosive)
    global _current
    try:
        _current = replace(base, **changes)
    except DisclosureError as err:
        raise ConfigError(f"configure(): {err}") from None
    return _current


def reset() -> None:
    """Forget configured settings (back to the environment's) and restart the numbering."""
    global _current
    _current = None
    _counters.clear()


def next_number(kind: str) -> int:
    """The next number of a ``table`` or ``figure`` in this notebook (1, 2, ...)."""
    return next(_counters.setdefault(kind, count(1)))


def _read_min_cell(value, name: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (the minimum cell), not {value!r}") from None
    if problem := min_cell_problem(number, name):
        raise ConfigError(problem)
    return number


def _read_rounding(value, name: str) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null", "no")):
        return None
    try:
        base = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be none, 3 or 5, not {value!r}") from None
    if base not in BASES:
        raise ConfigError(f"{name} must be none, 3 or 5, not {value!r}")
    return base
