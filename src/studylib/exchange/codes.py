"""The exchange formats, as data: ``htcds.yaml`` read once, with what the other modules ask of it.

HTCDS v2 export fields and their code maps, the generalisation hierarchies of the
quasi-identifiers (a level maps codes to groups, or groups years into periods), and the CTDC
public file's required columns and codes. Nothing here reads or writes data.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Mapping

import numpy as np
import pandas as pd

from studylib.config import read_yaml
from studylib.errors import ConfigError

FORMATS_PATH = files("studylib.exchange") / "htcds.yaml"
#: years are grouped into periods counted from this year (2015-2016, 2017-2018, ... for 2-year periods)
PERIOD_ORIGIN = 1990


@lru_cache(maxsize=1)
def exchange_formats() -> dict:
    """The shipped exchange formats; ConfigError names the key that is missing."""
    data = read_yaml(FORMATS_PATH, "exchange formats")
    for key in ("export", "anonymity", "ctdc"):
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise ConfigError(f"{FORMATS_PATH}: section {key!r} is missing")
    qis = data["anonymity"]["quasi_identifiers"]
    unknown = [q for q in [*qis, *data["anonymity"]["suppress_order"]] if q not in data["export"]["fields"]]
    if unknown:
        raise ConfigError(f"{FORMATS_PATH}: anonymity names columns the export does not have: {unknown}")
    return data


def export_code_map(column: str, field: str) -> Mapping[str, str] | None:
    """Our code -> HTCDS code for the cases ``column`` exported as ``field`` (None: codes kept)."""
    codes = exchange_formats()["export"]["codes"]
    return codes.get(f"{column}@{field}", codes.get(column))


def hierarchy(field: str) -> list[dict]:
    """The generalisation levels of a quasi-identifier (level 0 is ``{}``: the code as exported)."""
    return exchange_formats()["anonymity"]["quasi_identifiers"][field]


def generalise(values: np.ndarray, level: dict) -> np.ndarray:
    """Distinct values at one level of a hierarchy: mapped to their group, or years to periods."""
    if "periods" in level:
        width = int(level["periods"])
        years = pd.to_numeric(pd.Series(values), errors="coerce")
        start = PERIOD_ORIGIN + ((years - PERIOD_ORIGIN) // width) * width
        text = start.astype("Int64").astype(str) + "-" + (start + width - 1).astype("Int64").astype(str)
        return np.where(years.notna(), text.to_numpy(dtype=object), values).astype(object)
    return np.array([level.get(v, v) for v in values], dtype=object)


def level_description(field: str, level: int) -> str:
    """How a level shows the values, for the metadata (e.g. ``2-year periods``, ``groups: 0-17, 18+``)."""
    if level == 0:
        return "as registered"
    spec = hierarchy(field)[level]
    if "periods" in spec:
        return f"{spec['periods']}-year periods"
    return "groups: " + ", ".join(sorted(set(map(str, spec.values()))))


def group_labels(field: str) -> set[str]:
    """Every group a hierarchy may show instead of a code (a year period is recognised by its shape)."""
    return {str(g) for level in hierarchy(field) for g in level.values() if not isinstance(g, int)}
