"""Case-level exchange: the HTCDS export's k recomputed from the file, its tokens, and the CTDC import.

Oracles written here: the quasi-identifiers named by the issue (age band, sex, nationality,
region, year), class sizes counted with collections.Counter over the CSV as read by the csv
module, HTCDS and CTDC codes as the reference (../shared/reference/htcds_v2.md) spells them,
and hand-built files on both sides of k and with every kind of problem.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runner_fixtures import dataset_tables, made_by
from studylib.data import read_dataset, write_dataset
from studylib.errors import ValidationError
from studylib.exchange.ctdc_import import import_ctdc
from studylib.exchange.htcds_export import export_cases, write_csv
from studylib.privacy.pseudonymiser import Pseudonymiser

QUASI = ["prs_Gender", "sl_AgeBand", "prs_Citizenship", "sl_Region", "sl_RegistrationYear"]
GENDER = {"female": "Feminine", "male": "Masculine", "transgender": "NonConforming", "unknown": "NonSpecifiedUnknown"}
STATUS = {"identified": "ActualVictimOfTrafficking", "not_identified": "NotAVictimOfTrafficking", "pending": "PossibleVictimOfTrafficking"}


def _studylib(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studylib.cli", *args], capture_output=True, text=True, env=os.environ)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _smallest_class(rows: list[dict[str, str]]) -> int:
    return min(Counter(tuple(r[q] for q in QUASI) for r in rows).values())


def _dataset(folder: Path, n: int = 3000, seed: int = 4) -> Path:
    return write_dataset(dataset_tables(n, seed), folder / "dataset", made_by=made_by("tests/test_exchange.py"))


def _key() -> Pseudonymiser:
    return Pseudonymiser.from_key_file(os.environ["STUDYLIB_KEY_FILE"])


# ---------------------------------------------------------------- the HTCDS export


@pytest.mark.parametrize("k", [2, 5, 11])
def test_the_export_meets_its_k_recomputed_from_the_file(tmp_path, k):
    data = _dataset(tmp_path)
    out = tmp_path / "partner.csv"
    done = _studylib("export", "htcds", "--data", str(data), "--out", str(out), "--k", str(k))
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert rows and _smallest_class(rows) >= k
    assert meta["k"] == k and meta["k_achieved"] == _smallest_class(rows)
    assert set(meta["quasi_identifiers"]) == set(QUASI)
    loss = meta["information_loss"]
    assert set(loss["recoding"]) == set(QUASI) and 0 <= loss["precision_lost"] <= 1
    # who refused research use is not exported: at most the others are there
    cases = read_dataset(data).cases
    assert len(rows) <= int((cases.research_consent != "no").sum())


def test_the_export_holds_no_identifier_dataset_token_or_key_and_two_exports_cannot_be_joined(tmp_path):
    data = _dataset(tmp_path)
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (first, second):
        assert _studylib("export", "htcds", "--data", str(data), "--out", str(out), "--k", "5").returncode == 0
    text = first.read_text() + first.with_suffix(".json").read_text()
    dataset = read_dataset(data)
    tokens = set(dataset.persons.person_id) | {e.rsplit("-", 1)[-1] for e in dataset.events.event_id}
    assert not [t for t in tokens if t in text]
    key_hex = [line for line in Path(os.environ["STUDYLIB_KEY_FILE"]).read_text().splitlines() if not line.startswith("#")][0]
    assert key_hex.strip() not in text
    header = _rows(first)[0].keys()
    assert not {"prs_IdentityNumber", "prs_Email", "prs_HomePhone", "prs_MobilePhone", "person_id"} & set(header)
    a, b = _rows(first), _rows(second)
    ids_a, ids_b = {r["cas_CaseID"] for r in a}, {r["cas_CaseID"] for r in b}
    assert len(ids_a) == len(a) and not ids_a & ids_b
    assert all(len(t) == 32 and int(t, 16) >= 0 for t in ids_a)
    # the same data, in another order: the row order does not join them either
    assert [tuple(r[q] for q in QUASI) for r in a] != [tuple(r[q] for q in QUASI) for r in b]


def _cases_by_hand(nationalities: list[str]) -> pd.DataFrame:
    tables = dataset_tables(len(nationalities), seed=1)
    cases = tables["cases"]
    cases["sex"], cases["age_band"], cases["region"] = "female", "25-34", "hovedstaden"
    cases["first_contact_year"] = pd.array([2020] * len(cases), dtype="Int64")
    cases["nationality"] = nationalities
    cases["research_consent"] = "yes"
    return cases


def test_global_recoding_comes_first_when_it_makes_every_class_big_enough():
    eu = ["DE", "PL", "RO", "BG", "LT", "LV", "EE", "CZ", "SK", "HU"]
    export = export_cases(_cases_by_hand([c for c in eu for _ in range(3)]), k=5)  # 3 of each: every class too small
    rows = export.frame
    assert set(rows.prs_Citizenship) == {"europe_eu"} and len(rows) == 30
    assert (rows[QUASI] != "").all().all()  # nothing suppressed
    assert export.anonymity.levels["prs_Citizenship"] == 1 and export.anonymity.levels["sl_AgeBand"] == 0


def test_local_suppression_takes_the_one_left_over_after_recoding():
    eu = ["DE", "PL", "RO", "BG", "LT", "LV", "EE", "CZ", "SK", "HU"]
    nationalities = [c for c in eu for _ in range(3)] + ["US"]  # one American: 1 in 31 is under the 5% budget
    export = export_cases(_cases_by_hand(nationalities), k=5)
    rows = export.frame
    assert export.anonymity.levels["prs_Citizenship"] == 1
    assert len(rows) == 30 and "americas" not in set(rows.prs_Citizenship)
    assert export.metadata()["information_loss"]["removed_share"] == round(1 / 31, 4)


@pytest.mark.parametrize("size, recoded", [(4, True), (5, False)])
def test_a_class_at_k_stays_as_it_is_and_one_below_k_does_not(size, recoded):
    nationalities = ["DE"] * 40 + ["PL"] * size
    export = export_cases(_cases_by_hand(nationalities), k=5)
    shown = set(export.frame.prs_Citizenship)
    assert (shown == {"DE", "PL"}) is not recoded
    assert min(Counter(map(tuple, export.frame[QUASI].to_numpy())).values()) >= 5


# ---------------------------------------------------------------- the CTDC import


CTDC_HEADER = ["yearOfRegistration", "gender", "ageBroad", "majorityStatus", "citizenship", "isForcedLabour",
               "isSexualExploit", "isOtherExploit", "typeOfLabourAgriculture", "typeOfLabourDomesticWork", "CountryOfExploitation"]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_a_ctdc_file_becomes_a_dataset_with_its_codes_as_ours(tmp_path):
    ctdc = _write(tmp_path / "ctdc.csv", CTDC_HEADER, [
        ["2019", "Female", "18--20", "Adult", "PH", "1", "0", "0", "1", "0", "DK"],
        ["2020", "Male", "9--17", "Minor", "RO", "0", "1", "0", "0", "0", "SE"],
        ["2021", "Transgender/NonConforming", "48+", "Adult", "ZZ", "1", "1", "0", "0", "1", ""],
    ])
    done = _studylib("import", "ctdc", str(ctdc), "--out", str(tmp_path / "imported"))
    assert done.returncode == 0, done.stderr
    cases = read_dataset(tmp_path / "imported", validate=True).cases.sort_values("first_contact_year")
    assert list(cases.sex) == ["female", "male", "transgender"]
    assert list(cases.age_band) == ["18-24", "unknown", "unknown"]  # 9--17 and 48+ straddle our bands
    assert list(cases.minor) == [False, True, False]
    assert list(cases.nationality) == ["PH", "RO", "XX"]  # ZZ is ISO-shaped but not in our list
    assert list(cases.sector) == ["agriculture", "prostitution", "domestic_work"]
    assert list(cases.exploitation) == ["labour", "sexual", "mixed"]
    assert list(cases.region) == ["unknown", "abroad", "unknown"]
    assert list(cases.first_contact_year) == [2019, 2020, 2021]
    meta = json.loads((tmp_path / "imported" / "dataset.json").read_text())
    assert meta["made_by"]["key_fingerprint"] == _key().fingerprint  # the audit can run at full strength


def test_every_missing_column_and_unknown_code_is_reported_together_and_nothing_is_written(tmp_path):
    header = ["yearOfRegistration", "citizenship", "isForcedLabour"]  # gender and ageBroad missing
    bad = _write(tmp_path / "bad.csv", header, [["2019", "PH", "1"], ["2015-2016", "Narnia", "yes"], ["2020", "RO", "0"]])
    with pytest.raises(ValidationError) as caught:
        import_ctdc(bad, tmp_path / "out", _key())
    found = {(p.column, p.row) for p in caught.value.problems}
    assert found == {("gender", 1), ("ageBroad", 1), ("yearOfRegistration", 3), ("citizenship", 3), ("isForcedLabour", 3)}
    assert all(p.where == str(bad) for p in caught.value.problems)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    done = _studylib("import", "ctdc", str(bad), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "row 3" in done.stderr and "'citizenship'" in done.stderr and "'gender'" in done.stderr


def test_the_import_round_trips_a_file_made_from_our_export(tmp_path):
    cases = dataset_tables(600, seed=9)["cases"]
    consenting = cases[cases.research_consent != "no"]
    export = export_cases(cases, k=1)  # k = 1: nothing recoded, so every value must come back
    write_csv(export.frame, tmp_path / "ours.csv")
    result = import_ctdc(tmp_path / "ours.csv", tmp_path / "imported", _key())
    assert result.dialect == "htcds"
    back = read_dataset(tmp_path / "imported", validate=True).cases
    columns = ["sex", "age_band", "nationality", "region", "first_contact_year", "sector", "exploitation", "decision"]
    assert Counter(map(tuple, back[columns].astype(str).to_numpy())) == Counter(map(tuple, consenting[columns].astype(str).to_numpy()))
    assert not set(back.person_id) & set(cases.person_id)
    assert np.array_equal(back.record_key.to_numpy(), _key().record_keys(back.person_id))  # the cell key method works on it


def test_the_import_reads_a_k_anonymous_export_with_generalised_values_as_unknown(tmp_path):
    data = _dataset(tmp_path, n=10000)
    out = tmp_path / "partner.csv"
    assert _studylib("export", "htcds", "--data", str(data), "--out", str(out), "--k", "5").returncode == 0
    assert json.loads(out.with_suffix(".json").read_text())["information_loss"]["recoding"]["sl_RegistrationYear"]["level"] == 0
    rows = [r for r in _rows(out) if r["sl_RegistrationYear"].isdigit()]  # a suppressed year cannot be imported
    assert len(rows) > 0.9 * len(_rows(out))
    assert {r["prs_Citizenship"] for r in rows} & {"europe_eu", "other"}  # generalised values are there to read
    kept = _write(tmp_path / "years.csv", list(rows[0]), [list(r.values()) for r in rows])
    import_ctdc(kept, tmp_path / "imported", _key())
    back = read_dataset(tmp_path / "imported", validate=True).cases
    gender = {v: k for k, v in GENDER.items()}
    assert Counter(back.sex) == Counter(gender.get(r["prs_Gender"], "unknown") for r in rows)
    status = {v: k for k, v in STATUS.items()}
    assert Counter(back.decision) == Counter(status[r["vic_TraffickingStatus"]] for r in rows)
    assert set(back.age_band) <= {"0-14", "15-17", "18-24", "25-34", "35-44", "45-54", "55+", "unknown"}


# ---------------------------------------------------------------- aggregates: the layout of one table


def _entry(dims, labels, cells, hidden, published=None, rounding=None):
    from studylib.privacy.ledger import LedgerEntry

    return LedgerEntry(id="r#1", report="r", kind="table", caption="c", dims=dims, labels=labels, margins=True,
                       hidden=tuple(hidden), rounding=rounding, published=published,
                       persons=np.array([f"p{i}" for i in range(len(cells))], dtype=object), cells=np.array(cells))


def test_a_table_of_three_dimensions_is_one_row_per_cell_with_totals_and_the_symbol():
    from studylib.exchange.aggregates import table_grid

    # 2 x 1 x 2 inner cells; persons fall in inner cells 0, 0, 1, 3 (row-major)
    labels = (("au_pair", "cleaning"), ("female",), ("2023", "2024"))
    full = 3 * 2 * 3
    hidden = [False] * full
    hidden[1] = True  # au_pair, female, 2024
    grid = table_grid(_entry(("sector", "sex", "year"), labels, [0, 0, 1, 3], hidden), "[c]")
    assert list(grid.columns) == ["sector", "sex", "year", "persons"] and len(grid) == full
    shown = {tuple(r[:3]): r[3] for r in grid.itertuples(index=False)}
    assert shown[("au pair", "female", "2023")] == 2 and shown[("au pair", "female", "2024")] == "[c]"
    assert shown[("cleaning", "female", "2024")] == 1 and shown[("Total", "Total", "Total")] == 4
    assert shown[("au pair", "Total", "Total")] == 3


def test_a_rounded_table_shows_the_published_values_not_the_counts():
    from studylib.exchange.aggregates import table_grid

    grid = table_grid(_entry(("sector",), (("au_pair", "cleaning"),), [0, 0, 1, 1, 1, 1, 1],
                             [False, False, False], published=(3, 6, 9), rounding=3), "[c]")
    assert list(grid.persons) == [3, 6, 9] and list(grid.sector) == ["au pair", "cleaning", "Total"]


# ---------------------------------------------------------------- the synthetic export


def test_the_noise_is_the_discrete_laplace_of_the_stated_variance():
    from scipy import stats

    from studylib.exchange.synthetic_export import discrete_laplace

    epsilon = 0.5
    noise = discrete_laplace(200_000, epsilon, np.random.default_rng(3))
    assert noise.dtype.kind == "i"
    assert abs(noise.mean()) < 0.05
    assert stats.dlaplace.var(epsilon) == pytest.approx(2 * np.exp(-epsilon) / (1 - np.exp(-epsilon)) ** 2)
    assert noise.var() == pytest.approx(stats.dlaplace.var(epsilon), rel=0.03)
    # the distribution itself, not only its moments
    values, counts = np.unique(noise[np.abs(noise) <= 3], return_counts=True)
    assert np.allclose(counts / len(noise), stats.dlaplace.pmf(values, epsilon), atol=0.005)


def test_the_synthetic_file_states_epsilon_holds_only_vocabulary_codes_and_no_token(tmp_path):
    data = _dataset(tmp_path, n=2000)
    out = tmp_path / "synthetic.csv"
    done = _studylib("export", "synthetic", "--data", str(data), "--out", str(out), "--years", "2015-2024", "--epsilon", "2")
    assert done.returncode == 0, done.stderr
    assert "utility" in done.stderr and "sector x sex" in done.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["epsilon"] == 2.0 and meta["epsilon_per_marginal"] * len(meta["marginals"]) == pytest.approx(2.0)
    assert "utility" not in json.dumps(meta)  # computed from the true data: printed for the staff, not shared
    rows = _rows(out)
    assert {r["prs_Gender"] for r in rows} <= set(GENDER.values())
    assert {int(r["sl_RegistrationYear"]) for r in rows} <= set(range(2015, 2025))
    text = out.read_text()
    assert not [t for t in read_dataset(data).persons.person_id if t in text]


@pytest.mark.parametrize("epsilon, largest", [(200.0, 0), (0.05, None)])
def test_with_a_large_budget_the_marginals_come_back_and_with_a_small_one_they_do_not(epsilon, largest):
    from studylib.exchange.synthetic_export import synthesise

    cases = dataset_tables(3000, seed=6)["cases"]
    export = synthesise(cases, epsilon, (2015, 2024), np.random.default_rng(0))
    true = pd.crosstab(cases.sector, cases.sex)
    synthetic = pd.crosstab(export.cases.sector, export.cases.sex).reindex_like(true).fillna(0)
    error = int((synthetic - true).abs().to_numpy().max())
    if largest is not None:
        assert error == largest and len(export.frame) == len(cases)
    else:  # 8 tables share 0.05: noise of standard deviation ~ 226 per cell
        assert error > 20
