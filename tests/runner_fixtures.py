"""Fixtures of the runner tests: a random but schema-valid dataset and a small study project.

``make_dataset`` writes a pseudonymised dataset (persons, events, indicators, cases) with
``studylib.data.write_dataset``, so it passes the data contract exactly as ingest output
would. ``make_project`` lays out a throw-away project (studies/, templates/, reports/) with
copies of the real templates and study files pointed at that dataset.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from studylib.data import vocabularies as v
from studylib.data import write_dataset

ROOT = Path(__file__).resolve().parents[1]

#: Sectors drawn with these weights; the three studied sectors dominate so their reports have content.
_SECTORS = {"au_pair": 0.25, "agriculture": 0.2, "cleaning": 0.25, "construction": 0.1, "hospitality": 0.1, "prostitution": 0.1}


def _draw(rng: np.random.Generator, codes, n: int, p=None) -> np.ndarray:
    return rng.choice(np.asarray(list(codes), dtype=object), size=n, p=p)


def dataset_tables(n: int = 400, seed: int = 7) -> dict[str, pd.DataFrame]:
    """Random tables that satisfy the data contract (``n`` persons)."""
    rng = np.random.default_rng(seed)
    ids = [f"{x:064x}" for x in rng.integers(1, 2**62, size=n, dtype=np.int64)]
    sex = _draw(rng, ("female", "male", "transgender", "unknown"), n, [0.62, 0.34, 0.01, 0.03])
    nationality = _draw(rng, ("PH", "RO", "BG", "UA", "TH", "NG", "PL", "LT", "VN", "XX"), n,
                        [0.25, 0.18, 0.12, 0.1, 0.08, 0.08, 0.07, 0.05, 0.04, 0.03])
    year = rng.integers(2015, 2025, size=n)
    day = rng.integers(0, 365, size=n)
    first = pd.to_datetime([f"{y}-01-01" for y in year]) + pd.to_timedelta(day, unit="D")
    age = rng.integers(15, 62, size=n).astype(float)
    age[rng.random(n) < 0.05] = np.nan
    birth_year = pd.array(np.where(np.isnan(age), np.nan, year - np.nan_to_num(age)), dtype="Int64")
    persons = pd.DataFrame({"person_id": ids, "sex": sex, "birth_year": birth_year, "nationality": nationality})

    orgs = np.array(v.ORGANISATION, dtype=object)
    lists = rng.random((n, len(orgs))) < 0.25
    lists[np.arange(n), rng.integers(0, len(orgs), size=n)] = True
    region = _draw(rng, v.REGION[:5], n)
    events = pd.DataFrame({
        "event_id": [f"ev{i:06d}" for i in range(n)],
        "person_id": ids,
        "form": "F01",
        "date": first,
        "organisation": orgs[lists.argmax(axis=1)],
        "region": region,
    })
    indicators = pd.DataFrame({"person_id": ids[: n // 2], "indicator": "dr_deceived_job", "event_id": events.event_id[: n // 2]})

    sectors = _draw(rng, _SECTORS, n, list(_SECTORS.values()))
    decision = _draw(rng, v.DECISION, n, [0.55, 0.3, 0.15])
    decided = decision != "pending"
    ages = pd.array(age, dtype="Int64")
    cases = pd.DataFrame({
        "person_id": ids, "sex": sex, "birth_year": birth_year, "nationality": nationality, "region": region,
        "first_contact_date": first, "first_contact_year": pd.array(year, dtype="Int64"),
        "age_at_first_contact": ages, "age_band": v.age_band(pd.Series(age)).to_numpy(),
        "minor": pd.array(np.where(np.isnan(age), None, age < 18), dtype="boolean"),
        "sector": sectors,
        "exploitation": np.where(sectors == "prostitution", "sexual", "labour"),
        "recruitment_channel": _draw(rng, v.RECRUITMENT_CHANNEL, n),
        "referral_source": _draw(rng, v.ORGANISATION, n),
        **{f"list_{o}": lists[:, i] for i, o in enumerate(orgs)},
        "n_lists": pd.array(lists.sum(axis=1), dtype="Int64"),
        "decision": decision,
        "decision_date": pd.Series(first + pd.to_timedelta(30, unit="D")).where(decided),
        "reflection_days": pd.array(np.where(decided, rng.integers(0, 121, size=n), np.nan), dtype="Int64"),
        "safe_house_days": pd.array(rng.integers(0, 200, size=n), dtype="Int64"),
        **{f"service_{s}": rng.random(n) < 0.4 for s in v.SERVICE},
        "outcome": pd.Series(_draw(rng, v.OUTCOME, n)).where(decided, None),
        "research_consent": _draw(rng, v.RESEARCH_CONSENT, n),
    })
    return {"persons": persons, "events": events, "indicators": indicators, "cases": cases}


def made_by(tool: str, key: Path | None = None, **more) -> dict:
    """``dataset.json``'s ``made_by`` for a test dataset: it records the fingerprint of the key the
    tests audit with (``key``, else ``STUDYLIB_KEY_FILE``: tests/conftest.py sets one for the
    session), as ingest does, so that the runner's audit runs at full strength."""
    from studylib.privacy.tokens import key_fingerprint, read_key

    key = key or (Path(os.environ["STUDYLIB_KEY_FILE"]) if os.environ.get("STUDYLIB_KEY_FILE") else None)
    record = {"tool": tool, **more}
    if key is not None:
        record["key_fingerprint"] = key_fingerprint(read_key(key))
    return record


def make_dataset(folder: Path, n: int = 400, seed: int = 7, key: Path | None = None) -> Path:
    """Write a schema-valid random dataset to ``folder`` and return it."""
    return write_dataset(dataset_tables(n, seed), folder, made_by=made_by("tests/runner_fixtures.py", key, seed=seed))


def make_project(root: Path, dataset: Path, studies: tuple[str, ...] = ("au_pair", "agriculture", "cleaning", "overview")) -> Path:
    """A project folder with copies of the real templates and the named studies pointed at ``dataset``."""
    shutil.copytree(ROOT / "templates", root / "templates", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (root / "studies").mkdir(parents=True)
    for name in studies:
        write_study(root, yaml.safe_load((ROOT / "studies" / f"{name}.yaml").read_text()), data=dataset)
    return root


def write_study(root: Path, study: dict, data: Path | None = None) -> Path:
    """Write ``study`` as ``root/studies/<id>.yaml`` (``data`` replaces its dataset folder)."""
    study = dict(study)
    if data is not None:
        study["data"] = str(data)
    path = root / "studies" / f"{study['id']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def publish_demo_studies(reports: Path, studies: list[Path], studies_dir: Path, workers: int = 1):
    """Run studies of the project on the demo data into ``reports`` (the audit uses the demo
    key, so the test key is set aside meanwhile); the batch result."""
    import pytest

    from studylib.demo import ensure_demo_dataset
    from studylib.runner.batch import BatchSettings, run_batch

    ensure_demo_dataset()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("STUDYLIB_KEY_FILE", raising=False)
        return run_batch(studies, BatchSettings(reports=reports, workers=workers, studies_dir=studies_dir))
