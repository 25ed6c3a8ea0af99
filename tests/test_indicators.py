"""The indicator catalogue, its validation, local catalogues, classification and the performance helpers."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
import yaml
from scipy import stats
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import proportion_confint

from studylib.analysis import indicator_performance as perf
from studylib.errors import ConfigError, StudylibError
from studylib.indicators import CatalogueError, catalogue, classify, dimensions, indicator_codes
from studylib.indicators.catalogue import DEFAULT_PATH

DIMS = ["deceptive_recruitment", "coercive_recruitment", "recruitment_vulnerability",
        "exploitative_conditions", "coercion_destination", "destination_vulnerability"]
LISTS = ["adult_labour", "child_labour", "adult_sexual", "child_sexual"]


# -- the shipped catalogue ------------------------------------------------------------------------

def test_catalogue_table_shape_and_version():
    cat = catalogue()
    assert list(cat.columns) == ["code", "dimension", "list", "grade", "provisional", "text"]
    assert cat.attrs["version"] == yaml.safe_load(DEFAULT_PATH.read_text())["version"]
    assert set(cat["dimension"]) == set(DIMS)
    assert set(cat["list"]) == set(LISTS)
    assert set(cat["grade"]) == {"strong", "medium", "weak"}
    assert not cat.duplicated(["code", "list"]).any()
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", c) for c in cat["code"])
    # a code belongs to one dimension only, though texts repeat across dimensions
    assert (cat.groupby("code")["dimension"].nunique() == 1).all()
    assert cat.groupby("text")["dimension"].nunique().max() > 1


def test_adult_labour_counts_match_the_reference():
    # ilo_indicators_2009.md: "Six dimensions, in order, with the number of adult labour indicators"
    reference = {"deceptive_recruitment": 10, "coercive_recruitment": 10, "recruitment_vulnerability": 16,
                 "exploitative_conditions": 9, "coercion_destination": 15, "destination_vulnerability": 7}
    cat = catalogue()
    counts = cat[cat["list"] == "adult_labour"].groupby("dimension").size().to_dict()
    assert counts == reference
    assert indicator_codes(list_name="adult_labour") == tuple(cat.loc[cat["list"] == "adult_labour", "code"])


def test_child_lists_have_no_weak_grade_and_no_adults_only_indicators():
    cat = catalogue()
    child = cat[cat["list"].str.startswith("child_")]
    assert "weak" not in set(child["grade"])
    for code in ("rv_false_law_info", "ec_no_social_protection"):  # "adults only" in the reference
        assert set(cat.loc[cat["code"] == code, "list"]) == {"adult_labour", "adult_sexual"}
    # "W (M for children)" and "W/S": children get the stronger grade
    grade = cat.set_index(["code", "list"])["grade"]
    assert grade[("rv_general_context", "adult_labour")] == "weak"
    assert grade[("rv_general_context", "child_labour")] == "medium"
    assert grade[("dr_deceived_education", "child_labour")] == "strong"


def test_sexual_lists_are_derived_from_labour_and_all_provisional():
    cat = catalogue()
    assert cat.loc[cat["list"].str.endswith("_sexual"), "provisional"].all()
    assert not cat.loc[cat["list"].str.endswith("_labour"), "provisional"].any()
    grade = cat.pivot(index="code", columns="list", values="grade")
    assert grade.loc["cd_forced_tasks_clients", "adult_sexual"] == "strong"
    assert grade.loc["cd_forced_tasks_clients", "adult_labour"] == "medium"
    differs = grade.index[(grade["adult_sexual"].fillna("-") != grade["adult_labour"].fillna("-"))]
    assert list(differs) == ["cd_forced_tasks_clients"]
    assert (grade["child_sexual"].fillna("-") == grade["child_labour"].fillna("-")).all()


def test_dimensions_table_and_codes_by_dimension():
    dims = dimensions()
    assert list(dims["dimension"]) == DIMS
    assert dict(zip(dims["dimension"], dims["kind"])) == {
        "deceptive_recruitment": "recruitment", "coercive_recruitment": "recruitment",
        "recruitment_vulnerability": "recruitment", "exploitative_conditions": "exploitation",
        "coercion_destination": "destination", "destination_vulnerability": "destination"}
    ec_child = indicator_codes("exploitative_conditions", "child_labour")
    assert "ec_no_social_protection" not in ec_child and "ec_excessive_hours" in ec_child
    assert all(c.startswith("ec_") for c in ec_child)
    with pytest.raises(CatalogueError, match="unknown dimension"):
        indicator_codes("no_such_dimension")


def test_catalogue_table_survives_parquet(tmp_path):
    cat = catalogue()
    cat.to_parquet(tmp_path / "cat.parquet")
    back = pd.read_parquet(tmp_path / "cat.parquet")
    assert back.attrs["version"] == cat.attrs["version"]
    pd.testing.assert_frame_equal(back.reset_index(drop=True), cat.reset_index(drop=True), check_dtype=False)


# -- validation -----------------------------------------------------------------------------------

def _shipped() -> dict:
    return yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _problems(err: CatalogueError) -> list[str]:
    return [str(p) for p in err.problems]


def _entry(data: dict, code: str) -> dict:
    return next(i for i in data["indicators"] if i["code"] == code)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: _entry(d, "dr_deceived_wages").update(dimension="deceptive_recruitmnt"),
         r"indicator 'dr_deceived_wages' \(indicators\[1\]\), key 'dimension': unknown dimension.*'deceptive_recruitmnt'"),
        (lambda d: _entry(d, "cr_violence").update(code="dr_deceived_job"),
         r"indicator 'dr_deceived_job' \(indicators\[10\]\), key 'code': duplicate code"),
        (lambda d: _entry(d, "ec_hazardous_work")["grades"].pop("adult_sexual"),
         r"indicator 'ec_hazardous_work' \(indicators\[41\]\), key 'grades': missing grade for list 'adult_sexual'"),
        (lambda d: _entry(d, "dv_unknown_area")["grades"].update(adult_labour="moderate"),
         r"indicator 'dv_unknown_area' \(indicators\[61\]\), list 'adult_labour': grade must be strong, medium or weak.*'moderate'"),
        (lambda d: _entry(d, "dv_unknown_area")["grades"].update(child_labour="weak"),
         r"indicator 'dv_unknown_area' \(indicators\[61\]\), list 'child_labour': grade 'weak' is not allowed on this list"),
    ],
    ids=["unknown_dimension", "duplicate_code", "missing_grade", "bad_grade", "weak_on_child_list"],
)
def test_each_catalogue_error_names_file_and_entry(tmp_path, change, expected):
    data = _shipped()
    change(data)
    path = _write(tmp_path / "mine.yaml", data)
    with pytest.raises(CatalogueError) as caught:
        catalogue(path)
    err = caught.value
    assert isinstance(err, ConfigError) and isinstance(err, StudylibError)
    assert len(err.problems) == 1
    message = _problems(err)[0]
    assert message.startswith(f"{path}: ")
    assert re.search(expected, message), message


def test_all_catalogue_problems_are_reported_together(tmp_path):
    data = _shipped()
    _entry(data, "dr_deceived_wages")["dimension"] = "nowhere"
    _entry(data, "cr_violence")["code"] = "dr_deceived_job"
    _entry(data, "ec_hazardous_work")["grades"].pop("child_labour")
    _entry(data, "dv_unknown_area")["grades"]["adult_labour"] = "high"
    data["dimensions"][0]["code"] = "Bad Code"
    path = _write(tmp_path / "many.yaml", data)
    with pytest.raises(CatalogueError) as caught:
        catalogue(path)
    text = str(caught.value)
    assert str(path) in text
    for needle in ("dimensions[0]", "'dr_deceived_wages'", "duplicate code", "missing grade for list 'child_labour'", "'high'"):
        assert needle in text, needle


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("version: x\nindicators: [\n  - code: a\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"broken\.yaml: line \d+, column \d+: not valid YAML"):
        catalogue(bad)
    with pytest.raises(CatalogueError, match="not found"):
        catalogue(tmp_path / "absent.yaml")


def test_header_problems_are_named(tmp_path):
    data = _shipped()
    data["rules"]["adult"] = ["recruitment", "exploitation", "destiny"]
    data["exploitation"].pop("mixed")
    data["presence"].append(["strong", "huge"])
    data["colour"] = "blue"
    path = _write(tmp_path / "head.yaml", data)
    with pytest.raises(CatalogueError) as caught:
        catalogue(path)
    text = str(caught.value)
    for needle in ("rules, key 'adult': no dimension has kind 'destiny'", "exploitation, key 'mixed': missing",
                   "presence[5]", "key 'colour': unknown key"):
        assert needle in text, needle


# -- local catalogues -----------------------------------------------------------------------------

NEW_INDICATOR = {
    "code": "cd_identity_rented", "dimension": "coercion_destination", "text": "Works under another person's identity",
    "grades": {"adult_labour": "strong", "child_labour": "strong", "adult_sexual": "medium", "child_sexual": "medium"},
    "provisional": ["adult_sexual"],
}


def test_local_catalogue_adds_removes_and_regrades(tmp_path):
    local = _write(tmp_path / "dk.yaml", {
        "version": "dk-2025-1",
        "base": "default",
        "remove": ["rv_general_context"],
        "add": [NEW_INDICATOR],
        "regrade": {"dr_deceived_wages": {"adult_labour": "strong"},
                    "cd_forced_to_lie": {"adult_sexual": "strong", "provisional": ["adult_sexual"]},
                    "cd_threats_violence": {"adult_sexual": "medium"}},
    })
    base, cat = catalogue(), catalogue(local)
    assert cat.attrs["version"] == "dk-2025-1" and cat.attrs["base_version"] == base.attrs["version"]
    assert "rv_general_context" not in set(cat["code"])
    g = cat.set_index(["code", "list"])
    assert g.loc[("cd_identity_rented", "adult_labour"), "grade"] == "strong"
    assert bool(g.loc[("cd_identity_rented", "adult_sexual"), "provisional"])
    assert not bool(g.loc[("cd_identity_rented", "child_sexual"), "provisional"])
    assert g.loc[("dr_deceived_wages", "adult_labour"), "grade"] == "strong"
    assert g.loc[("dr_deceived_wages", "child_labour"), "grade"] == "medium"
    assert bool(g.loc[("cd_forced_to_lie", "adult_sexual"), "provisional"])
    # a regraded grade is a specialist's decision: no longer provisional (the others stay)
    assert not bool(g.loc[("cd_threats_violence", "adult_sexual"), "provisional"])
    assert bool(g.loc[("cd_threats_violence", "child_sexual"), "provisional"])
    assert len(cat) == len(base) - 4 + 4
    # a local catalogue on a local catalogue, by relative path
    (tmp_path / "sub").mkdir()
    second = _write(tmp_path / "sub" / "dk2.yaml", {"version": "dk-2025-2", "base": "../dk.yaml", "remove": ["cd_identity_rented"]})
    assert "cd_identity_rented" not in set(catalogue(second)["code"])


def test_local_catalogue_problems_are_named(tmp_path):
    local = _write(tmp_path / "bad_local.yaml", {
        "version": catalogue().attrs["version"],
        "base": "default",
        "remove": ["no_such_code"],
        "add": [dict(NEW_INDICATOR, code="dr_deceived_job"), dict(NEW_INDICATOR, dimension="elsewhere")],
        "regrade": {"ghost": {"adult_labour": "strong"}, "cr_violence": {"child_labour": "weak"}},
    })
    with pytest.raises(CatalogueError) as caught:
        catalogue(local)
    text = str(caught.value)
    assert all(str(p).startswith(f"{local}: ") for p in caught.value.problems)
    for needle in ("key 'version': must differ from the version of its base", "remove[0]: unknown indicator code",
                   "indicator 'dr_deceived_job' (add[0]), key 'code': duplicate code",
                   "(add[1]), key 'dimension': unknown dimension", "regrade 'ghost': unknown indicator code",
                   "regrade 'cr_violence', list 'child_labour': grade 'weak' is not allowed"):
        assert needle in text, needle


def test_local_catalogue_base_missing_or_circular(tmp_path):
    missing = _write(tmp_path / "a.yaml", {"version": "a", "base": "nowhere.yaml"})
    with pytest.raises(CatalogueError, match=r"a\.yaml: key 'base': base catalogue .*nowhere\.yaml not found"):
        catalogue(missing)
    _write(tmp_path / "b.yaml", {"version": "b", "base": "c.yaml"})
    circular = _write(tmp_path / "c.yaml", {"version": "c", "base": "b.yaml"})
    with pytest.raises(CatalogueError, match="circular base"):
        catalogue(circular)


def test_changed_base_is_seen_by_its_local_catalogue(tmp_path):
    base = _write(tmp_path / "base.yaml", _shipped())
    local = _write(tmp_path / "local.yaml", {"version": "local-1", "base": "base.yaml", "remove": ["cd_violence"]})
    assert catalogue(local).attrs["base_version"] == _shipped()["version"]
    changed = _shipped()
    changed["version"] = "base-2"
    _write(base, changed)
    os.utime(base, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert catalogue(local).attrs["base_version"] == "base-2"


# -- classification -------------------------------------------------------------------------------

def _classify(cases: dict[str, tuple[float | None, str, list[str]]], cat=None) -> pd.DataFrame:
    persons = pd.DataFrame([(pid, age, expl) for pid, (age, expl, _) in cases.items()], columns=["person_id", "age", "exploitation"])
    rows = [(pid, code) for pid, (_, _, codes) in cases.items() for code in codes]
    indicators = pd.DataFrame(rows, columns=["person_id", "indicator"])
    return classify(indicators, persons, cat).set_index("person_id")


RECRUITMENT = ["dr_deceived_job", "dr_deceived_wages"]       # strong + medium
EXPLOITATION = ["ec_excessive_hours", "ec_low_no_salary"]   # strong + medium
DESTINATION = ["cd_violence", "cd_isolation"]               # strong + strong


def test_dimension_presence_rule_every_branch():
    out = _classify({
        "two_strong": (30, "labour", ["cd_documents_confiscated", "cd_debt_bondage"]),
        "strong_medium": (30, "labour", ["cd_violence", "cd_forced_to_lie"]),
        "strong_weak": (30, "labour", ["cd_violence", "cd_threat_inform_family"]),
        "three_medium": (30, "labour", ["cd_threats_violence", "cd_forced_illicit", "cd_forced_to_lie"]),
        "two_medium_weak": (30, "labour", ["cd_threats_violence", "cd_forced_to_lie", "cd_threat_inform_family"]),
        "one_strong": (30, "labour", ["cd_violence"]),
        "two_medium": (30, "labour", ["cd_threats_violence", "cd_forced_to_lie"]),
        "medium_two_weak": (30, "labour", ["dv_economic_reasons", "dv_past_difficulties", "dv_personal_characteristics"]),
        "strong_twice": (30, "labour", ["cd_violence", "cd_violence"]),  # two interviews, one indicator
        "other_dims": (30, "labour", ["cd_violence", "dv_economic_reasons"]),  # one per dimension: neither
        "nothing": (30, "labour", []),
    })
    present = out["coercion_destination"]
    assert present[["two_strong", "strong_medium", "strong_weak", "three_medium", "two_medium_weak"]].all()
    assert not present[["one_strong", "two_medium", "strong_twice", "other_dims", "nothing"]].any()
    assert not out.loc["medium_two_weak", "destination_vulnerability"]
    assert not out.loc["other_dims", "destination_vulnerability"]
    assert not out["presumed_victim"].any()  # no recruitment or exploitation for anyone


def test_adult_and_child_rules():
    out = _classify({
        "adult_all_three": (35, "labour", RECRUITMENT + EXPLOITATION + DESTINATION),
        "adult_no_destination": (35, "labour", RECRUITMENT + EXPLOITATION),
        "adult_no_recruitment": (35, "labour", EXPLOITATION + DESTINATION),
        "child_recruit_exploit": (12, "labour", RECRUITMENT + EXPLOITATION),
        "child_no_exploitation": (12, "labour", RECRUITMENT + DESTINATION),
        "adult_vulnerability_only": (35, "labour", ["rv_illegal_status", "rv_lack_information", "rv_economic_reasons"]
                                     + EXPLOITATION + ["dv_exploiter_dependency", "dv_unknown_area", "dv_past_difficulties"]),
    })
    assert out["presumed_victim"].to_dict() == {
        "adult_all_three": True, "adult_no_destination": False, "adult_no_recruitment": False,
        "child_recruit_exploit": True, "child_no_exploitation": False, "adult_vulnerability_only": True}
    assert out["rule"].astype(str).to_dict() == {
        "adult_all_three": "adult", "adult_no_destination": "adult", "adult_no_recruitment": "adult",
        "child_recruit_exploit": "child", "child_no_exploitation": "child", "adult_vulnerability_only": "adult"}
    assert out.loc["adult_vulnerability_only", ["recruitment_vulnerability", "destination_vulnerability"]].all()
    assert out.loc["adult_all_three", "explanation"] == (
        "deceptive_recruitment: dr_deceived_job (strong), dr_deceived_wages (medium); "
        "exploitative_conditions: ec_excessive_hours (strong), ec_low_no_salary (medium); "
        "coercion_destination: cd_isolation (strong), cd_violence (strong)")
    assert out.loc["adult_no_destination", "explanation"].endswith("; missing: destination")
    assert out.loc["child_no_exploitation", "explanation"].endswith("missing: exploitation")


def test_seventeen_and_eighteen_year_old_with_the_same_indicators():
    # cr_threats_violence and cr_debt_bondage: medium for adults, strong for children;
    # ec_no_education: weak for adults, medium for children
    same = ["cr_threats_violence", "cr_debt_bondage", "ec_excessive_hours", "ec_no_education"]
    out = _classify({"seventeen": (17, "labour", same), "eighteen": (18, "labour", same),
                     "seventeen_and_a_half": (17.5, "labour", same)})
    assert out.loc["seventeen", ["rule", "list"]].astype(str).tolist() == ["child", "child_labour"]
    assert out.loc["eighteen", ["rule", "list"]].astype(str).tolist() == ["adult", "adult_labour"]
    assert out.loc["seventeen", "presumed_victim"] and out.loc["seventeen_and_a_half", "presumed_victim"]
    assert out.loc["seventeen", "coercive_recruitment"] and not out.loc["eighteen", "coercive_recruitment"]
    assert out.loc["eighteen", "exploitative_conditions"]  # strong + weak
    assert not out.loc["eighteen", "presumed_victim"]
    assert "cr_debt_bondage (strong)" in out.loc["seventeen", "explanation"]


def test_list_choice_by_exploitation_and_unknown_age():
    tasks = ["cd_forced_tasks_clients", "cd_forced_to_lie"]  # medium+medium (labour), strong+medium (sexual)
    adults_only = ["ec_excessive_hours", "ec_no_social_protection"]
    out = _classify({
        "sexual": (25, "sexual", tasks), "labour": (25, "labour", tasks), "criminal": (25, "criminal", tasks),
        "missing_exploitation": (25, None, tasks), "age_unknown": (None, "sexual", tasks),
        "adult_adults_only": (40, "labour", adults_only), "child_adults_only": (10, "labour", adults_only),
    })
    assert out["list"].astype(str).to_dict() == {
        "sexual": "adult_sexual", "labour": "adult_labour", "criminal": "adult_labour",
        "missing_exploitation": "adult_labour", "age_unknown": "adult_sexual",
        "adult_adults_only": "adult_labour", "child_adults_only": "child_labour"}
    assert out["coercion_destination"].to_dict() == {
        "sexual": True, "labour": False, "criminal": False, "missing_exploitation": False, "age_unknown": True,
        "adult_adults_only": False, "child_adults_only": False}
    assert out["age_unknown"].to_dict()["age_unknown"] and out["age_unknown"].sum() == 1
    assert out.loc["adult_adults_only", "exploitative_conditions"]
    assert not out.loc["child_adults_only", "exploitative_conditions"]  # adults-only indicator counts for nothing


def test_result_records_catalogue_version_and_provisional_lists(tmp_path):
    out = _classify({"a": (30, "sexual", DESTINATION), "b": (30, "labour", [])})
    assert out.attrs["catalogue_version"] == catalogue().attrs["version"]
    assert set(out["catalogue_version"].astype(str)) == {catalogue().attrs["version"]}
    assert out.attrs["provisional_lists_used"] == ["adult_sexual"]
    assert list(out.columns[:3]) == ["rule", "list", "age_unknown"] and list(out.columns[3:9]) == DIMS
    local = _write(tmp_path / "v2.yaml", {"version": "v2", "base": "default", "regrade": {"cd_isolation": {"adult_labour": "medium"}}})
    out2 = _classify({"a": (30, "labour", ["cd_isolation", "cd_forced_to_lie"])}, cat=catalogue(local))
    assert out2.attrs["catalogue_version"] == "v2" and not out2.loc["a", "coercion_destination"]
    assert _classify({"a": (30, "labour", ["cd_isolation", "cd_forced_to_lie"])}).loc["a", "coercion_destination"]


def test_unknown_indicator_code_and_other_bad_input():
    persons = pd.DataFrame({"person_id": ["p1", "p2", "p2"], "age": [30, "old", 20], "exploitation": ["labour", "slavery", "labour"]})
    indicators = pd.DataFrame({"person_id": ["p1", "p1", "p2", "p2"],
                               "indicator": ["cd_violence", "cd_volence", "cd_volence", "xx_unknown"]})
    with pytest.raises(CatalogueError) as caught:
        classify(indicators, persons)
    text = str(caught.value)
    assert "indicators, row 1, column 'indicator': unknown indicator code" in text and "(2 row(s)) (value 'cd_volence')" in text
    assert "indicators, row 3, column 'indicator'" in text and "'xx_unknown'" in text
    assert "persons, row 2, column 'person_id': duplicate person" in text
    assert "persons, row 1, column 'age': age is not a number" in text
    assert "persons, row 1, column 'exploitation': unknown exploitation" in text
    with pytest.raises(CatalogueError, match="persons, column 'exploitation': missing column"):
        classify(indicators, persons.drop(columns="exploitation"))


def test_indicator_rows_of_other_persons_are_left_out():
    persons = pd.DataFrame({"person_id": ["p1"], "age": [30], "exploitation": ["labour"]})
    indicators = pd.DataFrame({"person_id": ["p1", "p9", "p9"], "indicator": ["cd_violence", "cd_isolation", "cd_debt_bondage"]})
    out = classify(indicators, persons)
    assert len(out) == 1 and not out["coercion_destination"].any() and out.attrs["indicator_rows_ignored"] == 2
    with pytest.raises(CatalogueError, match="no indicator row belongs to any of the persons"):
        classify(indicators[indicators["person_id"] == "p9"], persons)


def _reference_classify(indicators: pd.DataFrame, persons: pd.DataFrame) -> pd.Series:
    """The rule of the reference, written out person by person (slow, obviously right)."""
    cat = catalogue()
    grade = {(r.list, r.code): r.grade for r in cat.itertuples()}
    dim_of = dict(zip(cat["code"], cat["dimension"]))
    found = indicators.groupby("person_id")["indicator"].apply(set).to_dict()
    out = {}
    for p in persons.itertuples():
        child = p.age == p.age and p.age < 18
        lst = ("child_" if child else "adult_") + ("sexual" if p.exploitation == "sexual" else "labour")
        present = set()
        for dim in DIMS:
            gs = [grade[(lst, c)] for c in found.get(p.person_id, ()) if dim_of[c] == dim and (lst, c) in grade]
            s, m, w = gs.count("strong"), gs.count("medium"), gs.count("weak")
            if s >= 2 or (s >= 1 and m + w >= 1) or m >= 3 or (m >= 2 and w >= 1):
                present.add(dim)
        recruit = bool(present & set(DIMS[:3]))
        exploit = "exploitative_conditions" in present
        dest = bool(present & set(DIMS[4:]))
        out[p.person_id] = recruit and exploit and (child or dest)
    return pd.Series(out)


def test_classify_agrees_with_a_person_by_person_reading_of_the_rule():
    rng = np.random.default_rng(7)
    n = 600
    codes = np.asarray(catalogue()["code"].unique())
    persons = pd.DataFrame({
        "person_id": [f"p{i}" for i in range(n)],
        "age": np.where(rng.random(n) < 0.1, np.nan, rng.integers(10, 60, n)),
        "exploitation": rng.choice(["labour", "sexual", "criminal", "unknown"], n),
    })
    k = rng.integers(0, 25, n)
    indicators = pd.DataFrame({"person_id": np.repeat(persons["person_id"].to_numpy(), k),
                               "indicator": rng.choice(codes, k.sum())}).astype({"indicator": "category"})
    got = classify(indicators, persons).set_index("person_id")["presumed_victim"]
    want = _reference_classify(indicators.astype({"indicator": str}), persons)
    assert 0.05 < got.mean() < 0.95  # both outcomes exercised
    pd.testing.assert_series_equal(got, want.reindex(got.index), check_names=False)


# -- performance helpers --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def study_data():
    return _make_study()


def _make_study():
    """A small study: indicators drawn more often for identified persons; some decisions pending."""
    rng = np.random.default_rng(11)
    n = 500
    cat = catalogue()
    codes = np.asarray(cat["code"].unique())
    cases = pd.DataFrame({
        "person_id": [f"p{i:04d}" for i in range(n)],
        "sector": rng.choice(["au_pair", "agriculture", "cleaning"], n, p=[0.3, 0.3, 0.4]),
        "sex": rng.choice(["female", "male"], n),
        "age_at_first_contact": rng.integers(15, 60, n),
        "exploitation": rng.choice(["labour", "sexual"], n, p=[0.8, 0.2]),
    })
    cases["age_band"] = pd.cut(cases["age_at_first_contact"], [0, 18, 25, 35, 200], right=False,
                               labels=["15-17", "18-24", "25-34", "35-44"]).astype(str)
    latent = rng.random(n)
    cases["decision"] = np.where(rng.random(n) < 0.05, "pending", np.where(rng.random(n) < 0.15 + 0.6 * latent, "identified", "not_identified"))
    prefix_weight = {"dr": 2.0, "cr": 2.0, "rv": 0.7, "ec": 3.0, "cd": 1.5, "dv": 4.0}
    weights = np.array([prefix_weight[c[:2]] for c in codes])
    rows = []
    for pid, lat in zip(cases["person_id"], latent):
        k = int(rng.integers(2, 6) + 10 * lat)
        rows += [(pid, c) for c in rng.choice(codes, k, replace=False, p=weights / weights.sum())]
    indicators = pd.DataFrame(rows, columns=["person_id", "indicator"])
    classification = perf.classify_cases(indicators, cases)
    return cases, indicators, classification


def test_indicator_prevalence_counts_and_wilson_rates(study_data):
    cases, indicators, _ = study_data
    counts = perf.indicator_prevalence_counts(indicators, cases)
    n_codes = catalogue()["code"].nunique()
    assert list(counts.columns) == ["sector", "dimension", "indicator", "persons", "with_indicator"]
    assert len(counts) == 4 * n_codes and list(counts["sector"].unique()) == ["au_pair", "agriculture", "cleaning", "all"]
    direct = pd.crosstab(indicators.merge(cases, on="person_id")["sector"], indicators.merge(cases, on="person_id")["indicator"])
    got = counts.set_index(["sector", "indicator"])["with_indicator"]
    for sector in ("au_pair", "cleaning"):
        for code in ("cd_violence", "dr_deceived_job", "ec_hazardous_work"):
            assert got[(sector, code)] == direct.loc[sector, code]
    assert got[("all", "cd_violence")] == indicators.loc[indicators["indicator"] == "cd_violence", "person_id"].nunique()
    assert (counts.loc[counts["sector"] == "all", "persons"] == len(cases)).all()
    rates = perf.wilson_rates(counts, "with_indicator")
    low, high = proportion_confint(counts["with_indicator"], counts["persons"], alpha=0.05, method="wilson")
    np.testing.assert_allclose(rates["ci_low"], low)
    np.testing.assert_allclose(rates["ci_high"], high)
    np.testing.assert_allclose(rates["proportion"], counts["with_indicator"] / counts["persons"])
    suppressed = counts.assign(with_indicator=counts["with_indicator"].where(counts["with_indicator"] >= 5))
    assert perf.wilson_rates(suppressed, "with_indicator")["ci_low"].isna().sum() == (counts["with_indicator"] < 5).sum()


def test_dimension_prevalence_counts(study_data):
    cases, _, classification = study_data
    counts = perf.dimension_prevalence_counts(classification, cases)
    assert set(counts["dimension"]) == set(DIMS) | {"presumed_victim"}
    merged = cases.merge(classification, on="person_id")
    got = counts.set_index(["sector", "dimension"])
    for sector in ("au_pair", "agriculture", "cleaning"):
        sub = merged[merged["sector"] == sector]
        assert got.loc[(sector, "coercion_destination"), "present"] == sub["coercion_destination"].sum()
        assert got.loc[(sector, "presumed_victim"), "persons"] == len(sub)
    assert got.loc[("all", "presumed_victim"), "present"] == classification["presumed_victim"].sum()


def test_agreement_matches_direct_computation(study_data):
    cases, _, classification = study_data
    confusion = perf.agreement_counts(classification, cases)
    decided = cases[cases["decision"] != "pending"].merge(classification, on="person_id")
    assert confusion.attrs["excluded_pending"] == (cases["decision"] == "pending").sum()
    tp = int((decided["presumed_victim"] & (decided["decision"] == "identified")).sum())
    fn = int((~decided["presumed_victim"] & (decided["decision"] == "identified")).sum())
    fp = int((decided["presumed_victim"] & (decided["decision"] == "not_identified")).sum())
    tn = int((~decided["presumed_victim"] & (decided["decision"] == "not_identified")).sum())
    assert confusion.to_numpy().tolist() == [[tp, fp], [fn, tn]]
    assert min(tp, fn, fp, tn) > 0
    result = perf.agreement_statistics(confusion).set_index("measure")
    n = tp + fn + fp + tn
    assert result.loc["sensitivity", "estimate"] == pytest.approx(tp / (tp + fn))
    assert result.loc["specificity", "estimate"] == pytest.approx(tn / (tn + fp))
    assert result.loc["specificity", "ci_low"] == pytest.approx(proportion_confint(tn, tn + fp, method="wilson")[0])
    po = (tp + tn) / n
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n**2
    assert result.loc["cohens_kappa", "estimate"] == pytest.approx((po - pe) / (1 - pe))
    sm_kappa = cohens_kappa(np.array([[tp, fp], [fn, tn]]))
    assert result.loc["cohens_kappa", "ci_low"] == pytest.approx(sm_kappa.kappa_low)
    assert result.loc["cohens_kappa", "ci_high"] == pytest.approx(sm_kappa.kappa_upp)
    # after disclosure control: a suppressed cell makes what needs it NaN, the rest stays
    hidden = confusion.astype("float64")
    hidden.loc["presumed_victim", "identified"] = np.nan
    partial = perf.agreement_statistics(hidden).set_index("measure")["estimate"]
    assert partial[["sensitivity", "positive_predictive_value", "cohens_kappa"]].isna().all()
    assert partial["specificity"] == pytest.approx(tn / (tn + fp))


def test_indicator_accuracy_matches_direct_computation(study_data):
    cases, indicators, _ = study_data
    counts = perf.indicator_accuracy_counts(indicators, cases)
    acc = perf.indicator_accuracy(counts).set_index("indicator")
    decided = cases[cases["decision"] != "pending"]
    has = set(indicators.loc[indicators["indicator"] == "cd_violence", "person_id"])
    flag = decided["person_id"].isin(has)
    ident = decided["decision"] == "identified"
    a, b = int((flag & ident).sum()), int((~flag & ident).sum())
    c, d = int((flag & ~ident).sum()), int((~flag & ~ident).sum())
    row = acc.loc["cd_violence"]
    assert [row["identified_with"], row["identified_without"], row["not_identified_with"], row["not_identified_without"]] == [a, b, c, d]
    sens, spec = a / (a + b), d / (c + d)
    assert row["sensitivity"] == pytest.approx(sens) and row["specificity"] == pytest.approx(spec)
    assert row["sensitivity_low"] == pytest.approx(proportion_confint(a, a + b, method="wilson")[0])
    assert row["lr_positive"] == pytest.approx(sens / (1 - spec))
    assert row["lr_negative"] == pytest.approx((1 - sens) / spec)
    z = stats.norm.ppf(0.975)
    se = np.sqrt(1 / a - 1 / (a + b) + 1 / c - 1 / (c + d))
    assert row["lr_positive_low"] == pytest.approx(np.exp(np.log(sens / (1 - spec)) - z * se))
    assert row["lr_positive_high"] == pytest.approx(np.exp(np.log(sens / (1 - spec)) + z * se))
    assert len(acc) == catalogue()["code"].nunique()


def test_identification_model_matches_statsmodels_logit(study_data):
    cases, _, classification = study_data
    table = perf.identification_model(classification, cases).set_index("term")
    data = cases[cases["decision"] != "pending"].merge(classification, on="person_id")
    data["y"] = (data["decision"] == "identified").astype(int)
    for dim in DIMS:
        data[dim] = data[dim].astype(int)
    refs = {v: data[v].value_counts().idxmax() for v in ("sex", "age_band", "sector")}
    formula = "y ~ " + " + ".join(DIMS) + " + " + " + ".join(f"C({v}, Treatment('{r}'))" for v, r in refs.items())
    fit = smf.logit(formula, data).fit(disp=0)
    assert table.attrs["n"] == len(data) and table.attrs["dropped"] == []
    for dim in DIMS:
        assert table.loc[dim, "odds_ratio"] == pytest.approx(np.exp(fit.params[dim]), rel=1e-5)
        assert table.loc[dim, "ci_low"] == pytest.approx(np.exp(fit.conf_int().loc[dim, 0]), rel=1e-5)
        assert table.loc[dim, "p_value"] == pytest.approx(fit.pvalues[dim], rel=1e-4)
    sector_terms = [t for t in table.index if t.startswith("sector[")]
    assert len(sector_terms) == 2
    for term in sector_terms:
        level = term[len("sector["):-1]
        name = f"C(sector, Treatment('{refs['sector']}'))[T.{level}]"
        assert table.loc[term, "odds_ratio"] == pytest.approx(np.exp(fit.params[name]), rel=1e-5)
        assert table.loc[term, "reference"] == refs["sector"]
    counts = perf.model_counts(classification, cases)
    by_level = counts.set_index(["variable", "level"])
    assert by_level.loc[("sector", "cleaning"), "persons"] == (data["sector"] == "cleaning").sum()
    assert by_level.loc[("coercion_destination", "present"), "identified"] == int((data["coercion_destination"] & data["y"]).sum())
