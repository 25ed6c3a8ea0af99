"""The national annual overview (templates/overview.ipynb) through the real runner on a fixture
dataset: the victims identified in the reporting year come first, against the year before, as
counted in the test; every sector is named, and an unknown sector is shown as such."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from runner_fixtures import ROOT, dataset_tables, made_by, write_study
from studylib.data import write_dataset
from studylib.runner.batch import BatchSettings, run_batch
from studylib.runner.study import find_studies

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("overview")
    tables = dataset_tables(n=1500, seed=11)
    cases = tables["cases"]
    cases.loc[cases.index[::25], "sector"] = "unknown"  # 60 persons whose sector nobody recorded
    cases.loc[cases.index[1::40], "sector"] = "fishing"  # a small sector, beyond the six largest
    write_dataset(tables, root / "dataset", made_by=made_by("tests/test_overview_study.py", Path(os.environ["STUDYLIB_KEY_FILE"])))
    shutil.copytree(ROOT / "templates", root / "templates")
    write_study(root, yaml.safe_load((ROOT / "studies" / "overview.yaml").read_text()), data=root / "dataset")
    result = run_batch(find_studies(root / "studies"), BatchSettings(reports=root / "reports", workers=1, studies_dir=root / "studies"))
    return root, result, cases


def _text(root: Path) -> str:
    page = (root / "reports" / "overview" / "report.html").read_text()
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_the_report_is_published_and_starts_with_the_year_s_identified_victims(project):
    root, result, cases = project
    assert [o.status for o in result.outcomes] == ["published"], [o.message for o in result.outcomes]
    assert json.loads((root / "reports" / "overview" / "manifest.json").read_text())["audit"]["status"] == "passed"
    text = _text(root)
    by_year = cases[cases.decision == "identified"].first_contact_year.value_counts()
    last = int(cases.first_contact_year.max())
    sentence = (f"Of the persons first registered in {last}, {by_year.get(last, 0)} have been identified as victims of trafficking, "
                f"against {by_year.get(last - 1, 0)} of those registered in {last - 1}.")
    assert sentence in text
    assert text.index(sentence) < text.index("Persons by sector,")  # the year's victims come first


def test_every_sector_is_named_and_the_unknown_sector_is_shown_as_such(project):
    root, _, cases = project
    text = _text(root)
    table = re.search(r"Persons by sector, 2015–2024 \(every sector named\) sector persons (.*?) Total", text)
    assert table, "the table of persons by sector"
    shown = table.group(1)
    for sector in cases.sector.unique():
        assert sector.replace("_", " ") in shown, sector
    unknown = int((cases.sector == "unknown").sum())
    assert f"unknown {unknown}" in shown and "other" not in shown.split()
