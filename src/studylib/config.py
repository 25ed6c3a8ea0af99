"""Configuration data files: reading a YAML file (catalogues, rules, profiles, studies) with an
error that names the file, and the line and column where YAML could not parse it.

What a file must hold is checked by its reader (pydantic models or rules); this module only
turns the text into data, the same way for every configuration file of the project.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from studylib.errors import ConfigError


def read_yaml(path: str | os.PathLike | Any, what: str = "configuration file") -> Any:
    """The data of a YAML file; ConfigError (file, line, column) if it is missing or not valid YAML.

    ``path`` may also be an ``importlib.resources`` traversable (a file shipped in the package).
    """
    if not hasattr(path, "read_text") or isinstance(path, Path):
        from studylib.inputs import note_input

        note_input(path)
    try:
        text = path.read_text(encoding="utf-8") if hasattr(path, "read_text") else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {what} cannot be read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: {what} is not valid YAML{where}: {problem}") from None
