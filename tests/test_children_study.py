"""The children's study (templates/children.ipynb, studies/children.yaml) through the real runner
(kernels, export, audit, release gate) on fixture datasets with child protection notifications
(F13): its sections, the minors and their notifications counted in the test, the Kaplan-Meier time
to notification computed by statsmodels in the test, and a tiny dataset that says "too few"."""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from statsmodels.duration.survfunc import SurvfuncRight

from runner_fixtures import ROOT, dataset_tables, made_by, write_study
from studylib.data import write_dataset
from studylib.runner.batch import BatchSettings, run_batch
from studylib.runner.export import headings
from studylib.runner.study import find_studies

pytestmark = pytest.mark.slow

SECTIONS = ["1. Key results", "2. Who the minors are", "3. Forms of exploitation", "4. Identification",
            "5. Child protection notifications", "6. Data and methods", "Methods"]


def _tables(n: int, seed: int) -> dict[str, pd.DataFrame]:
    """The fixture tables, with more minors, and an F13 for every minor but each sixth (days after first contact: 0-13)."""
    tables = dataset_tables(n=n, seed=seed)
    cases = tables["cases"]
    young = np.flatnonzero(np.random.default_rng(seed).random(len(cases)) < 0.25)
    cases.loc[young, "age_at_first_contact"] = 16
    cases.loc[young, "age_band"] = "15-17"
    cases.loc[young, "minor"] = True
    cases.loc[young[: len(young) // 3], "sector"] = "agriculture"  # minors in labour exploitation too
    minors = cases[cases.minor.fillna(False).astype(bool)].reset_index(drop=True)
    notified = minors[minors.index % 6 != 5]
    f13 = pd.DataFrame({"event_id": [f"f13{i:05d}" for i in range(len(notified))], "person_id": notified.person_id.to_numpy(),
                        "form": "F13", "date": notified.first_contact_date.to_numpy() + pd.to_timedelta(notified.index % 14, unit="D"),
                        "organisation": "municipality", "region": notified.region.to_numpy(),
                        "unaccompanied": pd.array(notified.index % 2 == 0, dtype="boolean")})
    tables["events"] = pd.concat([tables["events"], f13], ignore_index=True)
    return tables


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("children")
    key = Path(os.environ["STUDYLIB_KEY_FILE"])
    normal, tiny = _tables(600, 7), _tables(30, 3)
    for name, tables in (("dataset", normal), ("tiny", tiny)):
        write_dataset(tables, root / name, made_by=made_by("tests/test_children_study.py", key))
    import shutil

    shutil.copytree(ROOT / "templates", root / "templates")
    study = yaml.safe_load((ROOT / "studies" / "children.yaml").read_text())
    write_study(root, study, data=root / "dataset")
    write_study(root, {**study, "id": "tiny"}, data=root / "tiny")
    result = run_batch(find_studies(root / "studies"), BatchSettings(reports=root / "reports", workers=2, studies_dir=root / "studies"))
    return root, result, normal


def _page(root: Path, study: str) -> str:
    return (root / "reports" / study / "report.html").read_text()


def _text(root: Path, study: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", _page(root, study))))


def test_both_reports_are_published_and_audited_with_their_sections(project):
    root, result, _ = project
    assert {o.study: o.status for o in result.outcomes} == {"children": "published", "tiny": "published"}, \
        [o.message for o in result.outcomes]
    for study in ("children", "tiny"):
        assert json.loads((root / "reports" / study / "manifest.json").read_text())["audit"]["status"] == "passed"
        assert [text for level, _, text in headings(_page(root, study)) if level == 2] == SECTIONS


def test_the_minors_their_exploitation_and_notifications_as_counted_in_the_test(project):
    root, _, tables = project
    text = _text(root, "children")
    cases, events = tables["cases"], tables["events"]
    minors = cases[cases.minor.fillna(False).astype(bool)]
    assert re.search(rf"In 2015–2024, {len(minors)} minors were registered for the first time", text)
    # labour exploitation: in a labour sector and not sexually exploited (the fixture's persons are exploited for their labour
    # except those in prostitution, and some of those were moved to agriculture above)
    labour = int(((minors.exploitation == "labour") & (minors.sector != "prostitution")).sum())
    assert labour >= 5 and f"{labour} were exploited for their labour" in text
    f13 = events[events.form == "F13"]
    not_notified = int((~minors.person_id.isin(f13.person_id)).sum())
    assert not_notified >= 5 and f"{not_notified} of them had no child protection notification" in text
    # Kaplan-Meier from first contact to the notification, minors not notified censored at the data's last event
    first = minors.set_index("person_id").first_contact_date
    when = f13.set_index("person_id").date.reindex(first.index)
    as_of = events.date.max()
    days = ((when.fillna(as_of)) - first).dt.days.to_numpy(dtype=float)
    median = SurvfuncRight(days, when.notna().astype(int).to_numpy()).quantile(0.5)
    row = re.search(r"Days from first contact to a child protection notification .*? minors ([\d,]+) (\d+) days?", text)
    assert row and int(row.group(1)) == len(minors) and int(row.group(2)) == int(median)


def test_a_tiny_dataset_says_too_few_in_words(project):
    root, _, _ = project
    text = _text(root, "tiny")
    minors = _tables(30, 3)["cases"].minor.fillna(False).astype(bool).sum()  # the tiny dataset's
    assert minors < 10
    assert "Too few minors were registered in 2015–2024 to report figures about them." in text
    for section in ("the minors registered", "forms of exploitation", "identification decisions", "child protection notifications"):
        assert f"Too few minors to report: {section}" in text
    assert "<caption>" not in _page(root, "tiny")
