"""Critical rules checked against oracles that share no code with studylib.

- tokens: HMAC-SHA256 of purpose, separator and value, as the standard library's ``hmac``
  computes it (keys shorter and longer than SHA-256's block);
- linkage: hand-built records on both sides of each rule (a passport links only with a known
  nationality; a CPR number links whatever the names);
- the minors-only form F13: ages on the day before, on and after the 18th birthday
  (leap days too), computed here with ``datetime``;
- the "bic" model choice: every model refitted with statsmodels on a design built here;
- the BCa interval: scipy.stats.bootstrap's BCa on the same resamples.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import raw_exports
from studylib.analysis.extent import bca_limits, estimate_population
from studylib.forms.linkage import link, record_keys
from studylib.forms.reading import read_export
from studylib.forms.validation import validate_export
from studylib.privacy.tokens import KeyFileError, key_fingerprint, keyed_digests, keyed_token, person_token

MSE = Path(__file__).resolve().parent / "reference" / "mse"
KEY = bytes(range(32))


# ---------------------------------------------------------------- tokens


def _hmac(key: bytes, purpose: str, value: str) -> str:
    return hmac.new(key, purpose.encode() + b"\x1f" + value.encode("utf-8"), hashlib.sha256).hexdigest()


@pytest.mark.parametrize("key", [KEY, bytes(range(64)), bytes(range(65)), b"k" * 200], ids=["32", "64", "65", "200"])
def test_tokens_are_the_standard_librarys_hmac_of_purpose_and_value(key):
    values = ["cpr:0101901234", "passport:AB1234567:NG", "name_birth_date:søren ågård:1990-01-01", ""]
    for purpose in ("person", "event", "key"):
        assert keyed_digests(values, key, purpose) == [_hmac(key, purpose, v) for v in values]
    assert person_token(pd.Series(values), key).tolist() == [_hmac(key, "person", v) for v in values]


def test_the_purpose_separates_tokens_of_one_value():
    person = keyed_token(pd.Series(["F01:1"]), KEY, "person")[0]
    event = keyed_token(pd.Series(["F01:1"]), KEY, "event")[0]
    assert person != event and event == _hmac(KEY, "event", "F01:1")
    # the separator matters: purpose "pe" + value "rson..." is not purpose "person"
    assert keyed_digests(["x"], KEY, "person") != keyed_digests(["personx"], KEY, "")


def test_tokens_keep_missing_values_missing_and_can_be_cut_short():
    tokens = keyed_token(pd.Series(["a", None, "a", "b"], index=[7, 8, 9, 10], name="v"), KEY, "person", length=16)
    assert tokens.index.tolist() == [7, 8, 9, 10] and tokens.name == "v"
    assert tokens[7] == tokens[9] == _hmac(KEY, "person", "a")[:16] and tokens[10] == _hmac(KEY, "person", "b")[:16]
    assert pd.isna(tokens[8])
    assert len(keyed_token(pd.Series(["a"]), KEY, "person")[0]) == 64


def test_the_key_fingerprint_is_keyed_and_short():
    assert key_fingerprint(KEY) == _hmac(KEY, "key", "fingerprint")[:16]
    assert key_fingerprint(KEY) != key_fingerprint(bytes(range(1, 33)))


@pytest.mark.parametrize("key", [bytes(31), b"", "a" * 40, None])
def test_tokens_need_a_key_of_32_bytes(key):
    with pytest.raises(KeyFileError, match="a key of at least 32 bytes is needed"):
        keyed_token(pd.Series(["a"]), key, "person")


def test_a_key_of_exactly_32_bytes_is_enough():
    assert keyed_token(pd.Series(["a"]), bytes(32), "person")[0] == _hmac(bytes(32), "person", "a")


# ---------------------------------------------------------------- linkage


def _records(rows: list[dict]) -> pd.DataFrame:
    columns = ["cpr", "passport_no", "nationality", "first_name", "last_name", "sex"]
    frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns).astype("str")
    frame = frame.mask(frame == "None")
    for c in columns:
        frame[c] = frame[c].astype("str")
    frame["birth_date"] = pd.to_datetime(pd.Series([r.get("birth_date") for r in rows], dtype=object))
    frame["cpr_birth_date"] = pd.to_datetime(pd.Series([r.get("cpr_birth_date") for r in rows], dtype=object))
    keys = record_keys(frame, pd.Series([f"F01:{i}" for i in range(len(rows))], dtype="str"), KEY)
    return keys


def _persons(rows) -> list[int]:
    linkage = link(_records(rows))
    codes = linkage.person_code.tolist()
    # the same person gets the same number, in order of first appearance
    first = {c: i for i, c in reversed(list(enumerate(codes)))}
    return [first[c] for c in codes]


_ANNA = {"first_name": "Anna", "last_name": "Berg", "birth_date": "1990-03-04", "sex": "female"}
_OLGA = {"first_name": "Olga", "last_name": "Nowak", "birth_date": "1985-07-08", "sex": "female"}


@pytest.mark.parametrize("nationality, linked", [("NG", True), ("XX", False)])
def test_a_passport_links_two_records_only_with_a_known_nationality(nationality, linked):
    rows = [{**_ANNA, "passport_no": "P1234567", "nationality": nationality},
            {**_OLGA, "passport_no": "P1234567", "nationality": nationality}]
    assert _persons(rows) == ([0, 0] if linked else [0, 1])


def test_one_passport_number_of_two_nationalities_is_two_passports():
    rows = [{**_ANNA, "passport_no": "P1234567", "nationality": "NG"}, {**_OLGA, "passport_no": "P1234567", "nationality": "GH"}]
    assert _persons(rows) == [0, 1]


def test_a_cpr_number_links_whatever_the_names_and_names_link_with_the_birth_date():
    rows = [
        {**_ANNA, "cpr": "0403904321"},
        {**_OLGA, "cpr": "0403904321"},  # same CPR number, other name: one person (a conflict)
        {**_ANNA, "first_name": "ANNA", "last_name": "  berg"},  # same name and birth date: Anna
        {**_ANNA, "birth_date": "1990-03-05"},  # same name, other birth date: someone else
        {"sex": "male"},  # no key at all: a person of their own
        {"sex": "male"},
    ]
    assert _persons(rows) == [0, 0, 0, 3, 4, 5]


def test_a_birth_date_from_the_cpr_number_stands_in_for_an_empty_one():
    rows = [{**_ANNA}, {**_ANNA, "birth_date": None, "cpr_birth_date": "1990-03-04"}, {**_ANNA, "birth_date": None}]
    assert _persons(rows) == [0, 0, 2]


# ---------------------------------------------------------------- the minors-only form F13


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


_F13_CASES = [  # (birth date, form date): around the 18th birthday, and a leap day
    ("2006-06-16", "2024-06-15"), ("2006-06-15", "2024-06-15"), ("2006-06-14", "2024-06-15"),
    ("2008-02-29", "2026-02-28"), ("2008-02-29", "2026-03-01"), ("2010-01-01", "2024-06-15"),
    ("1990-01-01", "2024-06-15"),
]


@pytest.mark.parametrize("through_cpr", [False, True], ids=["birth_date", "cpr"])
def test_form_f13_is_refused_from_the_18th_birthday_on(tmp_path, through_cpr):
    records = raw_exports.make_records(raw_exports.make_persons(40, 1), 2)
    table = raw_exports.export_frame(records, "F13", "iso").reset_index(drop=True)
    table = pd.concat([table.iloc[:1]] * len(_F13_CASES), ignore_index=True)
    for i, (born, on) in enumerate(_F13_CASES):
        b = dt.date.fromisoformat(born)
        table.loc[i, "record_id"] = f"F13-{i + 1:07d}"
        table.loc[i, "date"] = on
        if through_cpr:
            table.loc[i, "birth_date"] = ""
            table.loc[i, "cpr"] = f"{b:%d%m%y}-{4 if b.year >= 2000 else 1}{i:03d}"
        else:
            table.loc[i, "birth_date"], table.loc[i, "cpr"] = born, ""
    path = raw_exports.write_export(table, tmp_path / "F13_child_protection.csv", "iso")
    result = validate_export(read_export(path), "F13")
    adult = [_age(dt.date.fromisoformat(b), dt.date.fromisoformat(d)) >= 18 for b, d in _F13_CASES]
    assert adult == [False, True, True, False, True, False, True]  # the oracle's own view of the cases
    minors_rule = result.problems[result.problems["rule"].str.contains("is for minors")]
    rejected_rows = sorted(int(r) for r in minors_rule["row"])
    assert rejected_rows == [i + 2 for i, a in enumerate(adult) if a]  # row 1 is the header
    assert set(minors_rule["column"]) == {"birth_date"}
    assert minors_rule["rule"].iloc[0] == "form F13 is for minors; the person was 18 or older on the date"
    assert len(result.values) == adult.count(False)


# ---------------------------------------------------------------- the "bic" model choice


def _overlap(name: str) -> pd.DataFrame:
    return pd.read_csv(MSE / f"{name}.csv")


def _oracle_bic(table: pd.DataFrame, pairs: tuple[tuple[int, int], ...]) -> tuple[float, float]:
    """(BIC, estimated total) of main effects plus ``pairs``, fitted by statsmodels on a design built here."""
    lists = [c for c in table.columns if c != "count"]
    m = len(lists)
    seen = {tuple(int(v) for v in row[lists]): int(row["count"]) for _, row in table.iterrows()}
    histories = [h for h in itertools.product((0, 1), repeat=m) if any(h)]
    counts = np.array([seen.get(h, 0) for h in histories], dtype=float)
    h = np.array(histories, dtype=float)
    dropped = [p for p in pairs if counts[(h[:, p[0]] == 1) & (h[:, p[1]] == 1)].sum() == 0]
    kept = [p for p in pairs if p not in dropped]
    keep = np.ones(len(h), dtype=bool)
    for i, j in dropped:
        keep &= ~((h[:, i] == 1) & (h[:, j] == 1))
    x = np.column_stack([np.ones(keep.sum()), h[keep]] + [h[keep, i] * h[keep, j] for i, j in kept])
    fit = sm.GLM(counts[keep], x, family=sm.families.Poisson()).fit()
    observed = counts.sum()
    k = x.shape[1] + len(dropped)
    return -2 * fit.llf + math.log(observed) * k, observed + math.exp(fit.params[0])


@pytest.mark.parametrize("name", ["uk_2013_4lists", "kosovo_4lists"])
def test_bic_chooses_the_model_statsmodels_scores_lowest(name):
    table = _overlap(name)
    lists = [c for c in table.columns if c != "count"]
    est = estimate_population(table, method="bic", interval="none")
    models = est.models
    ok = models[models["status"] == "ok"]
    assert len(ok) >= 8
    index = {f"{a}:{b}": (i, j) for (i, a), (j, b) in itertools.combinations(enumerate(lists), 2)}
    oracle = {}
    for _, row in ok.iterrows():
        pairs = tuple(index[t] for t in row["terms"].split(" + ")) if row["terms"] else ()
        oracle[row["terms"]] = _oracle_bic(table, pairs)
        assert row["bic"] == pytest.approx(oracle[row["terms"]][0], rel=1e-7), row["terms"]
        assert row["estimate"] == pytest.approx(oracle[row["terms"]][1], rel=1e-6), row["terms"]
    best = min(oracle, key=lambda t: oracle[t][0])
    assert models.loc[models["selected"], "terms"].tolist() == [best]
    assert est.total == pytest.approx(oracle[best][1], rel=1e-6)


# ---------------------------------------------------------------- the BCa interval


@pytest.mark.parametrize("seed", [1, 2])
def test_bca_limits_agree_with_scipy_on_the_same_resamples(seed):
    rng = np.random.default_rng(seed)
    sample = np.round(rng.exponential(6.0, size=70), 1)  # skewed, with ties: the acceleration matters
    n = len(sample)
    res = stats.bootstrap((sample,), np.mean, method="BCa", n_resamples=19999, confidence_level=0.95, random_state=rng)
    values, weights = np.unique(sample, return_counts=True)
    jackknife = (sample.sum() - values) / (n - 1)  # the mean without one person of each value
    lower, upper, z0, accel = bca_limits(res.bootstrap_distribution, float(sample.mean()), jackknife, weights.astype(float), 0.95)
    # the acceleration by the textbook formula over persons (Efron and Tibshirani 14.15)
    each = (sample.sum() - sample) / (n - 1)
    d = each.mean() - each
    assert accel == pytest.approx((d**3).sum() / (6 * ((d**2).sum()) ** 1.5), rel=1e-9)
    assert accel > 0.01
    # bias correction: replicates equal to the estimate (within 1e-9 relative) count half below (issue 17)
    dist, estimate = res.bootstrap_distribution, sample.mean()
    ties = np.isclose(dist, estimate, rtol=1e-9, atol=0.0)
    assert z0 == pytest.approx(stats.norm.ppf(np.mean((dist < estimate) & ~ties) + 0.5 * np.mean(ties)), abs=1e-12)
    spread = res.standard_error
    # scipy interpolates quantiles linearly, studylib uses the median-unbiased rule: they
    # differ by a small part of one gap between neighbouring resamples
    assert lower == pytest.approx(res.confidence_interval.low, abs=0.02 * spread)
    assert upper == pytest.approx(res.confidence_interval.high, abs=0.02 * spread)


def test_a_persons_id_is_the_token_of_its_strongest_key_and_the_figures_count_them():
    rows = [
        {**_ANNA, "cpr": "0403904321"},
        {**_ANNA, "first_name": "anna", "nationality": "NG", "passport_no": "P1"},  # joins Anna by name and birth date
        {**_OLGA, "passport_no": "P2", "nationality": "PL"},
        {**_OLGA, "first_name": "Olga", "last_name": "Nowak", "birth_date": "1985-07-08"},
        {"first_name": "Per", "last_name": "Holm", "birth_date": "1970-01-01", "sex": "male", "nationality": "DK"},
        {"sex": "unknown"},
    ]
    records = _records(rows)
    linkage = link(records)
    ids = linkage.person_id.tolist()
    anna = _hmac(KEY, "person", "cpr:0403904321")
    olga = _hmac(KEY, "person", "passport:P2:PL")
    per = _hmac(KEY, "person", "name_birth_date:holm per:1970-01-01")
    alone = _hmac(KEY, "person", "record:F01:5")
    assert ids == [anna, anna, olga, olga, per, alone]
    assert linkage.person_ids.tolist() == sorted({anna, olga, per, alone})
    figures = linkage.figures
    assert figures["records"] == 6 and figures["persons"] == 4
    assert figures["persons_with_several_records"] == 2 and figures["most_records_of_one_person"] == 2
    assert figures["records_with_key"] == {"cpr": 1, "passport": 2, "name_birth_date": 5}
    assert figures["records_without_any_key"] == 1
    assert figures["persons_by_id_key"] == {"cpr": 1, "passport": 1, "name_birth_date": 1, "record": 1}


def test_person_attributes_take_the_most_common_known_value_and_a_tie_is_unknown():
    from studylib.forms.linkage import person_attributes

    rows = [
        {**_ANNA, "cpr": "0403904321", "nationality": "NG"},
        {**_ANNA, "cpr": "0403904321", "nationality": "XX", "sex": "unknown"},  # unknowns do not vote
        {**_ANNA, "cpr": "0403904321", "nationality": "NG", "sex": "male"},
        {**_OLGA, "cpr": "0807854321", "nationality": "PL", "sex": "female"},
        {**_OLGA, "cpr": "0807854321", "nationality": "UA", "sex": "transgender"},
    ]
    records = _records(rows)
    linkage = link(records)
    persons = person_attributes(records, linkage).set_index("person_id")
    anna, olga = _hmac(KEY, "person", "cpr:0403904321"), _hmac(KEY, "person", "cpr:0807854321")
    assert persons.loc[anna, "nationality"] == "NG"
    assert persons.loc[anna, "sex"] == "unknown"  # female once, male once: a tie
    assert persons.loc[anna, "birth_year"] == 1990
    assert persons.loc[olga, "nationality"] == "XX" and persons.loc[olga, "sex"] == "unknown"
    assert persons.loc[olga, "birth_year"] == 1985
    conflicts = linkage.conflicts
    by = conflicts.groupby("conflict")["person_id"].apply(sorted).to_dict()
    assert by == {"sex": sorted([anna, olga]), "nationality": [olga]}


_NO_CONFLICTS = {"birth_dates_per_cpr": 0, "cpr_birth_date_differs": 0, "several_cpr_numbers": 0, "sex": 0,
                 "nationality": 0, "birth_year": 0}


def test_linking_no_records_gives_no_persons_and_zero_figures():
    linkage = link(_records([]))
    assert linkage.person_code.dtype == np.int64 and linkage.person_code.shape == (0,)
    assert linkage.person_ids.tolist() == [] and linkage.person_ids.dtype == pd.Series(["x"], dtype="str").dtype
    assert linkage.person_id.tolist() == []
    assert linkage.figures == {
        "records": 0, "persons": 0, "persons_with_several_records": 0, "most_records_of_one_person": 0,
        "records_with_key": {"cpr": 0, "passport": 0, "name_birth_date": 0}, "records_without_any_key": 0,
        "persons_with_conflicts": _NO_CONFLICTS,
    }


def test_linking_one_record():
    linkage = link(_records([{**_ANNA, "cpr": "0403904321"}]))
    assert linkage.person_code.tolist() == [0]
    assert linkage.person_id.tolist() == [_hmac(KEY, "person", "cpr:0403904321")]
    assert linkage.figures["persons"] == 1 and linkage.figures["most_records_of_one_person"] == 1
    assert linkage.figures["persons_with_several_records"] == 0
    assert linkage.figures["persons_by_id_key"] == {"cpr": 1, "passport": 0, "name_birth_date": 0, "record": 0}
    assert linkage.figures["persons_with_conflicts"] == _NO_CONFLICTS
    assert linkage.conflicts.empty


def _names(first, last, **names):
    from studylib.forms.linkage import normalise_names

    rules = {"names": {"transliterate": {"ø": "oe"}, **names}}
    index = [5, 9][: len(first)]
    return normalise_names(pd.Series(first, index=index, dtype="str"), pd.Series(last, index=index, dtype="str"), rules)


def test_name_rules_default_to_sorted_words_and_stripped_accents_and_can_say_otherwise():
    got = _names(["José Øby"], ["Ålund"])
    assert got.tolist() == ["alund jose oeby"] and got.index.tolist() == [5]
    assert got.dtype == pd.Series(["x"], dtype="str").dtype
    assert _names(["José Øby"], ["Ålund"], word_order="as_written").tolist() == ["jose oeby alund"]
    assert _names(["José"], ["Ålund"], strip_accents=False).tolist() == ["josé ålund"]  # å sorts after z
    assert _names(["José"], ["Ålund"], fold={}).tolist() == ["alund jose"]


def test_name_folds_apply_longest_first():
    assert _names(["Aaa"], ["B"], fold={"a": "x", "aa": "y"}).tolist() == ["b yx"]


def test_a_name_needs_both_parts():
    got = _names(["Anna", "  "], ["", "Berg"])
    assert got.isna().tolist() == [True, True] and got.index.tolist() == [5, 9]
    assert _names([None, "Anna"], ["Berg", None]).isna().tolist() == [True, True]


def test_a_name_and_birth_date_key_without_a_cpr_birth_date_column():
    from studylib.forms.linkage import _key_strings, linkage_rules

    rules = linkage_rules()
    spec = next(k for k in rules["keys"] if k["name"] == "name_birth_date")
    values = pd.DataFrame({"first_name": pd.Series(["Anna", "Olga"], dtype="str").array, "last_name": pd.Series(["Berg", "Nowak"], dtype="str").array,
                           "birth_date": pd.to_datetime(pd.Series(["1990-03-04", None], dtype=object)).array}, index=[3, 4])
    got = _key_strings(values, spec, rules)
    assert got.index.tolist() == [3, 4]
    assert got[3] == "name_birth_date:anna berg:1990-03-04" and pd.isna(got[4])


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_a_person_with_two_cpr_numbers_gets_the_smaller_token_whatever_the_order(order):
    cprs = ["0403904321", "0403901111"]
    rows = [{**_ANNA, "cpr": cprs[i]} for i in order]  # one person by name and birth date
    linkage = link(_records(rows))
    tokens = sorted(_hmac(KEY, "person", f"cpr:{c}") for c in cprs)
    assert linkage.person_id.tolist() == [tokens[0], tokens[0]]
    assert linkage.conflicts["conflict"].tolist() == ["several_cpr_numbers"]
