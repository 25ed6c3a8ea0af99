"""The cell key method in a release: record keys made at ingest, perturbed tables that agree
wherever the same persons are counted, the audit's rule for them, the release attacker
reading them as intervals, and a real study run with ``disclosure: {method: cell_key}``.

Oracles of the test's own: cell keys summed in integers here, the published value looked up
here from the perturbation table's probabilities, record keys recomputed with the standard
library's ``hmac``, the exact-count attacker against the perturbed one on the same persons."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner_fixtures import ROOT, dataset_tables, made_by
from studylib.data.dataset import write_dataset
from studylib.privacy.audit import audit_path
from studylib.privacy.cell_key import perturbation_table
from studylib.privacy.disclosure import DisclosureError, DisclosureSettings
from studylib.privacy.ledger import read_ledger
from studylib.privacy.pseudonymiser import Pseudonymiser
from studylib.privacy.release import CountedTable, Release, attack_release
from studylib.privacy.tokens import read_key
from studylib.report import configure, safe_table
from studylib.report.settings import reset
from studylib.runner.batch import BatchSettings, run_batch
from studylib.runner.release import build_release, default_state, lineage
from studylib.runner.study import find_studies, read_study


@pytest.fixture
def perturbing(monkeypatch):
    for name in ("STUDYLIB_DISCLOSURE", "STUDYLIB_STUDY_ID", "STUDYLIB_LEDGER", "STUDYLIB_REPORT"):
        monkeypatch.delenv(name, raising=False)
    reset()
    configure(cell_key=True)
    yield
    reset()


def _key() -> bytes:
    import os

    return read_key(os.environ["STUDYLIB_KEY_FILE"])


def _cases(n: int = 400, seed: int = 7) -> pd.DataFrame:
    cases = dataset_tables(n, seed)["cases"]
    cases.insert(4, "record_key", Pseudonymiser(_key()).record_keys(cases["person_id"]))
    return cases


def _published(cases: pd.DataFrame, members: np.ndarray) -> int:
    """The test's own cell key method: integer sum of 2**52 units, then the row's cumulative."""
    units = np.round(cases["record_key"].to_numpy()[members] * 2**52).astype(np.int64)
    cell_key = (int(units.sum()) % 2**52) / 2**52
    count = int(members.sum())
    table = perturbation_table(3, 2.0, 2)
    row = table.probabilities[min(count, table.top)]
    shift = count - min(count, table.top)
    first = int(np.flatnonzero(np.cumsum(row) > cell_key)[0])
    return min(count, table.top) + first - 3 + shift


def test_record_keys_are_keyed_digests_of_the_person_token():
    key = _key()
    tokens = ["a" * 64, "b" * 64, "0123456789abcdef" * 4]
    expected = []
    for token in tokens:
        digest = hmac.new(key, b"record\x1f" + token.encode(), hashlib.sha256).digest()
        expected.append((int.from_bytes(digest[:8], "big") >> 12) / 2**52)
    assert Pseudonymiser(key).record_keys(tokens).tolist() == expected
    other = Pseudonymiser(b"k" * 32).record_keys(tokens)
    assert not np.isin(other, expected).any()  # another key: unrelated record keys


def test_the_demo_dataset_carries_record_keys_from_its_key():
    from studylib import paths
    from studylib.data.dataset import read_dataset
    from studylib.demo import ensure_demo_dataset

    data = read_dataset(ensure_demo_dataset())
    persons = data.persons
    assert persons["record_key"].between(0, 1, inclusive="left").all()
    demo = Pseudonymiser(read_key(paths.demo_key_file()))
    assert np.array_equal(persons["record_key"].to_numpy(), demo.record_keys(persons["person_id"]))
    cases = data.cases.set_index("person_id")
    assert np.array_equal(cases["record_key"].to_numpy(), persons.set_index("person_id").loc[cases.index, "record_key"].to_numpy())


def test_the_same_persons_get_the_same_number_in_every_table(perturbing):
    cases = _cases()
    one = safe_table(cases, rows="sector", caption="Persons by sector")
    two = safe_table(cases, rows="sector", columns="sex", caption="Persons by sector and sex")
    again = safe_table(cases.sample(frac=1, random_state=3), rows="sector", columns="sex", caption="Again, shuffled")
    by_sector = one.protected.published
    assert two.protected.published["Total"].to_dict() == by_sector.to_dict()  # the same persons: the same number
    assert again.protected.published.equals(two.protected.published)
    true = two.protected.counts
    shown = two.protected.published
    for sector in true.index:
        for sex in true.columns:
            members = np.ones(len(cases), dtype=bool)
            if sector != "Total":
                members &= (cases["sector"] == sector).to_numpy()
            if sex != "Total":
                members &= (cases["sex"] == sex).to_numpy()
            assert shown.loc[sector, sex] == _published(cases, members), (sector, sex)
            assert abs(shown.loc[sector, sex] - true.loc[sector, sex]) <= 3
            assert shown.loc[sector, sex] not in (1, 2)
            if true.loc[sector, sex] == 0:
                assert shown.loc[sector, sex] == 0
    assert "need not add up" in two.to_html() and "at most 3" in two.to_html()


def test_counts_without_their_persons_or_record_keys_are_refused(perturbing):
    cases = _cases().drop(columns="record_key")
    with pytest.raises(DisclosureError, match="record_key column"):
        safe_table(cases, rows="sector")
    with pytest.warns(UserWarning), pytest.raises(DisclosureError, match="without their persons"):
        safe_table(pd.Series([12, 30], index=pd.Index(["a", "b"], name="x")))


def test_the_settings_refuse_what_the_method_cannot_do():
    with pytest.raises(DisclosureError, match="exclude each other"):
        DisclosureSettings(rounding=3, cell_key={})
    with pytest.raises(DisclosureError, match="disclosive zeros"):
        DisclosureSettings(zeros_disclosive=True, cell_key={})
    with pytest.raises(DisclosureError, match="unknown setting"):
        DisclosureSettings(cell_key={"deviation": 3})
    assert DisclosureSettings(cell_key={"max_deviation": 4}).cell_key == {"max_deviation": 4, "variance": 2.0, "no_small": 2}
    text = DisclosureSettings(cell_key={}).to_json()
    assert DisclosureSettings.from_json(text).rule == "cell_key"


def test_a_study_file_that_mixes_methods_is_refused_naming_the_key(tmp_path):
    study = {"id": "mixed", "title": "Mixed", "template": "../templates/overview.ipynb", "data": "demo",
             "disclosure": {"method": "cell_key", "min_cell": 5, "rounding": 3}}
    path = tmp_path / "studies" / "mixed.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(Exception, match=r"(?s)mixed\.yaml.*disclosure.*rounding"):
        read_study(path)


def test_the_audit_accepts_perturbed_small_counts_but_never_1_or_2(perturbing, tmp_path):
    cases = _cases()
    table = safe_table(cases, rows="sector", columns="sex", caption="Persons by sector and sex")
    html = table.to_html()
    assert re.search(r"<td>[34]</td>", html), "the case needs a perturbed 3 or 4"
    page = tmp_path / "ok" / "report.html"
    page.parent.mkdir()
    page.write_text(f"<html><body>{html}</body></html>")
    assert audit_path(page, min_cell=5, strict=True).passed
    planted = tmp_path / "two" / "report.html"
    planted.parent.mkdir()
    planted.write_text(f"<html><body>{re.sub(r'<td>[34]</td>', '<td>2</td>', html, count=1)}</body></html>")
    found = audit_path(planted, min_cell=5, strict=True)
    assert [f.rule for f in found.findings] == ["small-count"]
    reset()
    configure(cell_key=None)
    suppressed = tmp_path / "suppressed" / "report.html"  # the same 3 under a suppression marker is a small count
    suppressed.parent.mkdir()
    plain = safe_table(cases, rows="sector", columns="sex", caption="Persons by sector and sex").to_html()
    suppressed.write_text(f"<html><body>{re.sub(r'<td>[0-9]{2,}</td>', '<td>3</td>', plain, count=1)}</body></html>")
    assert "small-count" in [f.rule for f in audit_path(suppressed, min_cell=5, strict=True).findings]


def test_a_difference_of_two_perturbed_tables_is_only_noise_to_the_release_attacker(perturbing, tmp_path, monkeypatch):
    """Persons by sector for the nation and for the nation without one region: exact, the
    difference gives away a cell of 1 to 4 persons; perturbed, the same tables give nothing."""
    cases = _cases(300, seed=11)
    region = cases["region"].value_counts().index[-1]
    without = cases["region"] != region
    small = cases[~without]["sector"].value_counts()
    assert ((small >= 1) & (small <= 4)).any(), "the case needs a sector with 1 to 4 persons in the region"
    monkeypatch.setenv("STUDYLIB_LEDGER", str(tmp_path / "ledger"))
    safe_table(cases, rows="sector", caption="Nation")
    safe_table(cases, rows="sector", where=without, caption="Nation without one region")
    entries = read_ledger(tmp_path / "ledger")
    assert [e.deviation for e in entries] == [3, 3] and all(e.published is not None for e in entries)
    perturbed = build_release(entries, [], 5, False)
    assert all(t.spread == 3 for t in perturbed.tables)
    assert attack_release(perturbed)["safe"].all()
    exact = Release(persons=perturbed.persons, min_cell=5, tables=tuple(
        CountedTable(t.id, t.shape, t.margins, t.cell, np.zeros(t.full_shape, dtype=bool), labels=t.labels)
        for t in perturbed.tables))
    verdict = attack_release(exact)
    assert not verdict["safe"].all()
    assert (verdict.loc[~verdict["safe"], "kind"] == "difference").any()


def test_a_perturbed_table_must_stay_within_its_deviation():
    cell = np.array([0, 0, 1, 1, 1])
    with pytest.raises(Exception, match="more than 3 from its count"):
        CountedTable("t", (2,), False, cell, np.zeros(2, dtype=bool), published=np.array([6, 3]), deviation=3)
    CountedTable("t", (2,), False, cell, np.zeros(2, dtype=bool), published=np.array([5, 3]), deviation=3)


@pytest.mark.slow
def test_a_study_with_the_cell_key_method_publishes_the_same_numbers_on_every_run(tmp_path):
    tables = dataset_tables(400, seed=5)
    keys = Pseudonymiser(_key()).record_keys(tables["persons"]["person_id"])
    tables["persons"]["record_key"] = keys
    tables["cases"].insert(4, "record_key", keys)
    data = write_dataset(tables, tmp_path / "dataset", made_by=made_by("tests/test_cell_key_release.py"))
    study = yaml.safe_load((ROOT / "studies" / "overview.yaml").read_text())
    study.update(id="overview_ck", template=str(ROOT / "templates" / "overview.ipynb"), data=str(data),
                 formats=["html"], disclosure={"method": "cell_key", "min_cell": 5})
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "overview_ck.yaml").write_text(yaml.safe_dump(study))
    reports = tmp_path / "reports"

    def run(force: bool) -> str:
        settings = BatchSettings(reports=reports, workers=1, force=force, studies_dir=tmp_path / "studies")
        result = run_batch(find_studies(tmp_path / "studies"), settings)
        assert result.ok, [o.message for o in result.outcomes]
        return (reports / "overview_ck" / "report.html").read_text()

    first, second = run(False), run(True)
    cells = lambda page: re.findall(r"<td[^>]*>([^<]*)</td>", page)  # noqa: E731
    assert cells(first) and cells(first) == cells(second)
    counts = [int(c) for c in cells(first) if re.fullmatch(r"\d+", c)]
    assert counts and not any(c in (1, 2) for c in counts)
    assert "cell key method" in first
    manifest = json.loads((reports / "overview_ck" / "manifest.json").read_text())
    assert manifest["audit"]["status"] == "passed"
    ledger = default_state(reports) / lineage(data) / "published"
    entries = [e for folder in ledger.iterdir() for e in read_ledger(folder)]
    assert entries and all(e.deviation == 3 and e.published is not None for e in entries)
    from studylib.exchange.aggregates import published_values, release_tables

    exported = release_tables(reports, default_state(reports), "overview_ck")
    assert exported and all("cell key method" in t.method() for t in exported)
    for table in exported:
        meta = table.metadata()
        assert meta["settings"]["max_deviation"] == 3 and meta["settings"]["cell_key"]["no_small"] == 2
        assert any("need not add up" in note for note in meta["notes"])
    exported_values = [np.asarray(published_values(t.entry), dtype=float) for t in exported]  # nan: hidden
    true_counts = [t.entry.counts() for t in exported]
    assert all(not np.isin(v, [1, 2]).any() and np.nanmax(np.abs(v - c)) <= 3 for v, c in zip(exported_values, true_counts))
    assert any((np.nan_to_num(v, nan=-1) != c).any() for v, c in zip(exported_values, true_counts)), "the export holds the true counts"


def test_the_attacker_knows_a_count_published_above_zero_holds_someone():
    """A perturbed 3 over one person, beside an exact 4 over the same person and three others:
    zero is never perturbed, so the perturbed cell holds 1 to 4 persons, a small count the
    reader has narrowed (read as 0 to 6, it would not be)."""
    one = CountedTable("perturbed", (1,), False, np.array([0, -1, -1, -1]), np.zeros(1, dtype=bool),
                       published=np.array([3]), deviation=3)
    four = CountedTable("exact", (1,), False, np.array([0, 0, 0, 0]), np.zeros(1, dtype=bool))
    verdict = attack_release(Release(persons=4, tables=(one, four), min_cell=5))
    unsafe = verdict[~verdict["safe"]]
    assert list(unsafe["table"]) == ["perturbed"], verdict
    assert (unsafe["lower"].iloc[0], unsafe["upper"].iloc[0]) == (1, 4)
    published_zero = replace(one, published=np.array([0]))  # a published 0 may hide 0 to 3 persons: safe
    zero = attack_release(Release(persons=4, tables=(published_zero, four), min_cell=5)).set_index("table")
    assert zero.loc["perturbed", "safe"] and (zero.loc["perturbed", "lower"], zero.loc["perturbed", "upper"]) == (0, 3)


def test_a_statistics_table_shows_the_same_perturbed_counts_as_the_tables(perturbing):
    from studylib.report import safe_statistics

    cases = _cases()
    table = safe_table(cases, rows="sector", caption="Persons by sector")
    means = cases.groupby("sector")["reflection_days"].mean().to_frame("mean days")
    shown = safe_statistics(means, "Days of reflection", counts={"persons": cases}, by="sector")
    perturbed = table.protected.published.drop("Total")
    cells = dict(re.findall(r"<th>([^<]+)</th><td>[^<]*</td><td>(\d+)</td>", shown.to_html()))
    assert cells and {k.replace(" ", "_"): int(v) for k, v in cells.items()} == perturbed.astype(int).to_dict()
    assert perturbed.astype(int).to_dict() != table.protected.counts.drop("Total").astype(int).to_dict()


@settings(max_examples=12, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.integers(20, 160), st.lists(st.sampled_from(
    [("sector",), ("sex",), ("region",), ("sector", "sex"), ("region", "sex"), ("sector", "region", "sex")]),
    min_size=2, max_size=5))
def test_any_release_of_perturbed_tables_holds_its_true_counts_and_is_read_without_error(seed, n, layouts):
    """Random persons, random tables (with and without a filter): every published value lies
    within the deviation of its count, and the attacker's programme, whose intervals the true
    counts satisfy, always solves (an infeasible one would refuse every report)."""
    import os
    import tempfile

    rng = np.random.default_rng(seed)
    cases = _cases(n, seed=seed % 1000)
    cases["region"] = rng.choice(["hovedstaden", "sjaelland", "syddanmark"], size=n)
    reset()
    configure(cell_key=True)
    with tempfile.TemporaryDirectory() as ledger:
        old = {"STUDYLIB_LEDGER": os.environ.get("STUDYLIB_LEDGER")}
        os.environ["STUDYLIB_LEDGER"] = ledger
        try:
            for i, dims in enumerate(layouts):
                where = None if i % 2 == 0 else (cases["region"] != "sjaelland")
                safe_table(cases, rows=dims[0], columns=list(dims[1:]) or None, where=where, caption=f"Table {i}")
            entries = read_ledger(ledger)
        finally:
            for k, value in old.items():
                os.environ.pop(k, None) if value is None else os.environ.__setitem__(k, value)
            reset()
    assert len(entries) == len(layouts)
    release = build_release(entries, [], 5, False)  # CountedTable checks every value against its count
    for table in release.tables:
        shown = np.asarray(table.published)
        assert np.abs(shown - table.counts()).max() <= 3 and not np.isin(shown, [1, 2]).any()
    verdict = attack_release(release)
    assert verdict["lower"].notna().all() and verdict["upper"].notna().all()


def test_a_study_run_keeps_the_method_its_study_file_chose(monkeypatch):
    from studylib.errors import ConfigError

    monkeypatch.setenv("STUDYLIB_REPORT", "overview")
    monkeypatch.setenv("STUDYLIB_DISCLOSURE", DisclosureSettings().to_json())
    reset()
    try:
        with pytest.raises(ConfigError, match="method is suppression"):
            configure(cell_key=True)
        monkeypatch.setenv("STUDYLIB_DISCLOSURE", DisclosureSettings(cell_key={}).to_json())
        reset()
        with pytest.raises(ConfigError, match="method is cell_key"):
            configure(cell_key=None)
        assert configure(cell_key={"max_deviation": 4}).cell_key["max_deviation"] == 4  # stays the method
        with pytest.raises(ConfigError, match="max_deviation is 4; a report may not lower it"):
            configure(cell_key={"max_deviation": 3})
    finally:
        reset()
