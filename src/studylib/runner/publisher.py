"""Who publishes a release, and when the next one comes: the project's ``release.yaml``.

The file sits beside the ``studies/`` folder (the project's root) and says, for every report
the project publishes::

    publisher: Centre against Human Trafficking
    contact: https://example.org/contact   # a web page: the audit refuses an e-mail address as personal data
    data_as_at: 2026-11-30        # when the data were extracted (default: when the dataset was written)
    next_release: 2027-06         # a date or a month, or words ("June 2027")
    licence: CC BY 4.0            # optional

A report prints them in its provenance, its workbook's contents sheet and its data package,
as the releases readers know do (the UK's National Referral Mechanism statistics give the
same four facts). Without the file a report says nothing of them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from studylib.config import read_yaml
from studylib.errors import ConfigError

FILE = "release.yaml"

#: How each field is named for readers, in the order they are shown.
SHOWN = {"publisher": "Publisher", "contact": "Contact", "data_as_at": "Data as at", "next_release": "Next release",
         "licence": "Licence"}


class ReleaseInfo(BaseModel):
    """The publisher's facts of a release."""

    model_config = ConfigDict(extra="forbid")

    publisher: str = Field(min_length=1)
    contact: str = Field(min_length=1)
    data_as_at: str | None = None
    next_release: str | None = None
    licence: str | None = None

    @field_validator("contact")
    @classmethod
    def _no_mailbox(cls, value: str) -> str:
        if "@" in value:
            raise ValueError("an e-mail address would fail every report: the disclosure audit refuses e-mail addresses "
                             "as personal data. Give the web page of the centre's contact form or its phone desk instead")
        return value

    @field_validator("data_as_at", "next_release", "licence", mode="before")
    @classmethod
    def _as_text(cls, value):
        if isinstance(value, (dt.date, dt.datetime)):
            return value.isoformat()
        return None if value is None else str(value)

    def shown(self, data_as_at: str | None = None) -> dict[str, str]:
        """Reader's name -> value, without empty fields; ``data_as_at`` fills a missing date."""
        values = self.model_dump()
        values["data_as_at"] = values["data_as_at"] or data_as_at
        return {SHOWN[k]: str(values[k]) for k in SHOWN if values.get(k)}


def release_file(study_file: Path) -> Path:
    """Where the release file of a study's project is: ``<project>/release.yaml`` beside ``studies/``."""
    return Path(study_file).resolve().parent.parent / FILE


def read_release_info(study_file: Path) -> ReleaseInfo | None:
    """The project's release facts, or None without a file; ConfigError naming the file and field if wrong."""
    path = release_file(study_file)
    if not path.is_file():
        return None
    raw = read_yaml(path, "release file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the release file must be a mapping (publisher:, contact:, ...)")
    try:
        return ReleaseInfo.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'file'}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{path}: {problems}") from None
