"""Configuration files: a broken one is refused with the file, the line and the column."""

from __future__ import annotations

import pytest

from studylib.config import read_yaml
from studylib.errors import ConfigError
from studylib.forms import load_catalogue


def test_invalid_yaml_names_file_line_and_column(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\nkeys: [cpr, passport\nnames: {}\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path, "linkage rules")
    text = str(info.value)
    assert text.startswith(f"{path}: linkage rules is not valid YAML (line ") and "column" in text


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="form catalogue not found"):
        load_catalogue(tmp_path / "nowhere.yaml")
    assert read_yaml(tmp_path.joinpath("x.yaml").write_text("a: [1, 2]") and tmp_path / "x.yaml") == {"a": [1, 2]}
