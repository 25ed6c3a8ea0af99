"""The study's disclosure settings as every safe table and figure in a notebook sees them.

Defaults come from the environment the runner starts the kernel with: one JSON object in
``STUDYLIB_DISCLOSURE`` (:mod:`studylib.report.variables`), else the library defaults
(minimum cell 5, suppression, ``[c]`` for hidden cells). A template's parameters cell may call
:func:`configure` instead. Nobody passes the settings to each table by hand.

Also here: whether this kernel is a study run (:func:`in_study_run`: tables must then be
counted from persons), and the counters that number tables and figures in the order a
notebook shows them.
"""

from __future__ import annotations

import os
from dataclasses import replace
from itertools import count

from studylib.errors import ConfigError
from studylib.privacy.disclosure import DisclosureError, DisclosureSettings
from studylib.privacy.marker import min_cell_problem
from studylib.privacy.rounding import BASES
from studylib.report.variables import DISCLOSURE_VARIABLE, REPORT_VARIABLE


_UNSET = object()
_current: DisclosureSettings | None = None
_counters: dict[str, count] = {}


def settings_from_environment(environ=None) -> DisclosureSettings:
    """Settings from ``STUDYLIB_DISCLOSURE`` (the library defaults where it is unset)."""
    environ = os.environ if environ is None else environ
    text = environ.get(DISCLOSURE_VARIABLE, "").strip()
    if not text:
        return DisclosureSettings()
    try:
        return DisclosureSettings.from_json(text, where=f"environment {DISCLOSURE_VARIABLE}")
    except (DisclosureError, TypeError) as err:
        where = f"environment {DISCLOSURE_VARIABLE}"
        raise ConfigError(str(err) if str(err).startswith(where) else f"{where}: {err}") from None


def in_study_run(environ=None) -> bool:
    """True in a kernel the runner started for a report (not in an interactive session).

    ``environ``: the environment to look in (default: this process's).

    Example::

        data_dir = data_dir if in_study_run() else "my_test_dataset"
    """
    environ = os.environ if environ is None else environ
    return bool(environ.get(REPORT_VARIABLE))


def report_key(environ=None) -> str:
    """The report this kernel makes (``interactive`` outside a study run)."""
    environ = os.environ if environ is None else environ
    return environ.get(REPORT_VARIABLE) or "interactive"


def current_settings() -> DisclosureSettings:
    """The settings every safe table and figure uses unless given others.

    Example::

        current_settings().min_cell
    """
    global _current
    if _current is None:
        _current = settings_from_environment()
    return _current


def configure(min_cell=None, rounding=_UNSET, margins=None, zeros_disclosive=None, symbol=None, merge=None,
              cell_key=_UNSET) -> DisclosureSettings:
    """Set the study's disclosure settings for this kernel; unnamed ones keep their value.

    ``rounding`` is ``None`` (or ``"none"``) for suppression, or the base ``3`` or ``5``;
    ``symbol`` what hidden cells show; ``merge`` the category merges allowed (column -> rule).
    In a study run the settings may only get stricter than the study's.

    ``min_cell``: the smallest count shown; ``margins``: tables get Totals;
    ``zeros_disclosive``: zero cells are hidden like small ones; ``cell_key``: ``True`` (or
    a dict of ``max_deviation``, ``variance``, ``no_small``) perturbs every count by the cell
    key method instead of hiding cells, ``None`` goes back to suppression (in a study run the
    method stays the study's).

    Example::

        configure(min_cell=10, rounding=5, symbol="..")
        configure(cell_key={"max_deviation": 3})
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
    if symbol is not None:
        changes["symbol"] = symbol
    if merge is not None:
        changes["merge"] = dict(merge)
    if cell_key is not _UNSET:
        changes["cell_key"] = _read_cell_key(cell_key, base)
    if in_study_run() and "min_cell" in changes and changes["min_cell"] < base.min_cell:
        raise ConfigError(f"configure(): the study's minimum cell is {base.min_cell}; a report may not lower it")
    global _current
    try:
        _current = replace(base, **changes)
    except DisclosureError as err:
        raise ConfigError(f"configure(): {err}") from None
    return _current


def _read_cell_key(value, base: DisclosureSettings) -> dict | None:
    """``configure(cell_key=...)``: None (suppression), or the perturbation over the current one;
    in a study run the method stays the study's and the perturbation may only grow."""
    chosen = None if value in (None, False) else {**(base.cell_key or {}), **({} if value is True else dict(value))}
    if in_study_run() and (chosen is None) != (base.cell_key is None):
        raise ConfigError(f"configure(): the study's method is {base.rule}; a report may not change it")
    if in_study_run() and chosen is not None:
        weaker = sorted(k for k, v in chosen.items() if k in base.cell_key and v < base.cell_key[k])
        if weaker:
            raise ConfigError(f"configure(): the study's cell_key {', '.join(f'{k} is {base.cell_key[k]}' for k in weaker)}; "
                              "a report may not lower it")
    return chosen


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
