"""What is published is what was audited: an edited report is made again, a replaced dataset is refused."""

from __future__ import annotations

import pandas as pd
import pytest

from test_release_runner import _dataset, _study, _template
from studylib.runner.batch import BatchSettings, run_batch

pytestmark = pytest.mark.slow


@pytest.fixture
def published(tmp_path):
    data = _dataset(tmp_path)
    _template(tmp_path)
    study = _study(tmp_path, data, "nation")
    settings = BatchSettings(reports=tmp_path / "reports", workers=1, state=tmp_path / "state")
    first = run_batch([study], settings)
    assert first.outcomes[0].status == "published", first.outcomes[0].message
    return tmp_path, data, study, settings


def test_a_report_edited_after_publishing_is_made_again_not_skipped(published):
    root, _, study, settings = published
    page = root / "reports" / "nation" / "report.html"
    assert run_batch([study], settings).outcomes[0].status == "skipped"  # unchanged: nothing to do
    page.write_text(page.read_text().replace("</body>", "<p>Jensen, Anna 010190-1234</p></body>"))
    again = run_batch([study], settings).outcomes[0]
    assert again.status == "published", again.message
    assert "Jensen" not in page.read_text()


def test_a_dataset_table_replaced_by_a_valid_smaller_one_is_refused_before_any_kernel(published):
    root, data, study, settings = published
    cases = pd.read_parquet(data / "cases.parquet")
    cases.iloc[: len(cases) // 2].to_parquet(data / "cases.parquet")
    outcome = run_batch([study], settings.__class__(**{**settings.__dict__, "force": True})).outcomes[0]
    assert outcome.status == "invalid"
    assert "does not match what ingest recorded" in outcome.message and "nation.yaml" in outcome.message
    assert (root / "reports" / "nation" / "report.html").is_file()  # the last good report stays


def test_the_audit_never_runs_weaker_than_it_says(published, tmp_path, monkeypatch):
    """Real (non-demo) data: no key, or a key that is not the dataset's, refuses the report."""
    from studylib.privacy.tokens import new_key

    root, _, study, settings = published
    forced = settings.__class__(**{**settings.__dict__, "force": True})
    monkeypatch.delenv("STUDYLIB_KEY_FILE")
    outcome = run_batch([study], forced).outcomes[0]
    assert outcome.status == "failed" and "no key for the audit" in outcome.message
    monkeypatch.setenv("STUDYLIB_KEY_FILE", str(new_key(tmp_path / "other.key")))
    outcome = run_batch([study], forced).outcomes[0]
    assert outcome.status == "failed" and "is not the dataset's" in outcome.message


def test_the_manifest_records_the_key_fingerprint_the_audit_used(published):
    import json
    import os

    from studylib.privacy.tokens import key_fingerprint, read_key

    root = published[0]
    manifest = json.loads((root / "reports" / "nation" / "manifest.json").read_text())
    assert manifest["audit"]["key"]["key_fingerprint"] == key_fingerprint(read_key(os.environ["STUDYLIB_KEY_FILE"]))
    assert manifest["audit"]["key"]["key_and_name_checks"] == "full"
