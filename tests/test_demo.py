"""The demo dataset is (re)created on demand through synth -> key -> ingest, and only when needed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from studylib import paths
from studylib.demo import demo_is_current, ensure_demo_dataset, load_dataset
from studylib.privacy.tokens import is_demo_key

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """A project folder of its own, so the test never touches the checkout's demo."""
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    shutil.copytree(ROOT / "synthetic_data" / "profiles", tmp_path / "synthetic_data" / "profiles")
    monkeypatch.setenv("STUDYLIB_HOME", str(tmp_path))
    return tmp_path


def test_the_demo_is_built_once_and_rebuilt_when_a_profile_changes(home):
    assert paths.project_root() == home and not demo_is_current()
    messages: list[str] = []
    dataset = ensure_demo_dataset(progress=messages.append)
    assert dataset == home / "synthetic_data" / "generated" / "demo" / "dataset"
    assert (dataset / "dataset.json").is_file() and demo_is_current()
    assert is_demo_key(paths.demo_key_file()) and "DEMO" in paths.demo_key_file().name
    built = (dataset / "dataset.json").stat().st_mtime_ns

    ensure_demo_dataset(progress=messages.append)
    assert (dataset / "dataset.json").stat().st_mtime_ns == built, "an up-to-date demo is not rebuilt"
    assert messages[-1].startswith("demo dataset is up to date")

    profile = home / "synthetic_data" / "profiles" / "cleaning.yaml"
    profile.write_text(profile.read_text().replace("victim_share: 0.45", "victim_share: 0.5"))
    assert not demo_is_current()
    ensure_demo_dataset()
    assert (dataset / "dataset.json").stat().st_mtime_ns != built
    assert demo_is_current()


def test_a_template_reading_the_demo_path_gets_a_dataset_on_a_fresh_checkout(home):
    data = load_dataset(str(paths.demo_dataset_dir()))
    assert len(data.cases) > 1000 and set(data.cases.sector) >= {"au_pair", "agriculture", "cleaning"}
    # the raw exports and the truth stay in the raw area, the key beside it, none inside the dataset
    assert (paths.demo_raw_dir() / "truth" / "population.parquet").is_file()
    assert not any(p.suffix == ".key" for p in paths.demo_dataset_dir().rglob("*"))
