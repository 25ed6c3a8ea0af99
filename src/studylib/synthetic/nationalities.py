"""What the generator knows about each nationality: name locales, EU membership, calling code,
passport number shape. The facts live in ``nationalities.yaml`` (package data); this module
loads and checks them against the nationality vocabulary.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

from pydantic import BaseModel, ConfigDict, Field, ValidationError as PydanticValidationError, model_validator

from studylib.config import read_yaml
from studylib.data import vocabularies
from studylib.errors import ConfigError

DEFAULT_PATH = files("studylib.synthetic") / "nationalities.yaml"
DEFAULT_PASSPORT = "LLDDDDDDD"


class Nationality(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    locales: tuple[str, ...] = ()
    first_locales: tuple[str, ...] = ()
    last_locales: tuple[str, ...] = ()
    eu: bool
    calling_code: str | None
    passport: str = Field(default=DEFAULT_PASSPORT, pattern=r"^[LD]{6,12}$")
    join_syllables: bool = False

    @model_validator(mode="after")
    def _some_locale(self) -> "Nationality":
        if not (self.locales or (self.first_locales and self.last_locales)):
            raise ValueError("needs `locales`, or both `first_locales` and `last_locales`")
        return self

    @property
    def given_name_locales(self) -> tuple[str, ...]:
        return self.first_locales or self.locales

    @property
    def family_name_locales(self) -> tuple[str, ...]:
        return self.last_locales or self.locales


@lru_cache(maxsize=1)
def nationalities() -> dict[str, Nationality]:
    """The nationality table, one entry for every code of the nationality vocabulary."""
    raw = read_yaml(DEFAULT_PATH, "nationality table")
    problems = []
    table = {}
    for code, entry in raw.items():
        if code not in vocabularies.NATIONALITY:
            problems.append(f"{DEFAULT_PATH}: key {code}: not a nationality code of the vocabulary")
            continue
        try:
            table[code] = Nationality.model_validate(entry)
        except PydanticValidationError as err:
            problems += [f"{DEFAULT_PATH}: key {code}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
    missing = sorted(set(vocabularies.NATIONALITY) - set(raw))
    if missing:
        problems.append(f"{DEFAULT_PATH}: missing nationalities {missing}")
    if problems:
        raise ConfigError("\n".join(problems))
    return table


def eu_mask() -> "np.ndarray":
    """Boolean array over the nationality vocabulary: EU member or not."""
    import numpy as np

    table = nationalities()
    return np.array([table[c].eu for c in vocabularies.NATIONALITY])
