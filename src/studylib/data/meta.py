"""The metadata file of a dataset folder (``dataset.json``): its name and reading it.

Kept apart from :mod:`studylib.data.dataset` (which loads pandas and pyarrow) so that the
runner's skip path, study checks and the demo check can look at a dataset without them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from studylib.errors import StudylibError

META_FILE = "dataset.json"


class DatasetError(StudylibError):
    """A dataset folder is missing, incomplete or does not match its metadata."""


def is_dataset(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a dataset (has its metadata file).

    Example::

        is_dataset("synthetic_data/generated/demo/dataset")
    """
    return (Path(folder) / META_FILE).is_file()


def read_meta(folder: str | os.PathLike) -> dict:
    """The dataset's metadata; :class:`DatasetError` names the file when it is missing or unreadable.

    ``folder``: the dataset folder.

    Example::

        read_meta(data_dir)["content_hash"]
    """
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise DatasetError(f"{folder}: not a dataset folder (no {META_FILE}); make one with `studylib ingest`")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
