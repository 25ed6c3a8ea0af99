"""The logistic model of identification (studylib.analysis.identification) against statsmodels'
Logit fitted in the test on hand-built persons; traits left out on both sides of each threshold;
separation and too few persons give a reason, never a crash or a meaningless model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from studylib.analysis.identification import identification_model


def _persons(n=300, seed=1, pending=40):
    """Persons whose odds of identification double for women and halve for minors."""
    rng = np.random.default_rng(seed)
    female = rng.random(n) < 0.6
    minor = rng.random(n) < 0.2
    logit = -0.2 + np.log(2.0) * female - np.log(2.0) * minor
    identified = rng.random(n) < 1 / (1 + np.exp(-logit))
    decision = np.where(identified, "identified", "not_identified").astype(object)
    decision[:pending] = "pending"
    return pd.DataFrame({"person_id": [f"p{i}" for i in range(n)], "decision": decision,
                         "female": female, "minor": pd.array(minor, dtype="boolean")})


def test_odds_ratios_match_statsmodels_logit_fitted_in_the_test():
    persons = _persons()
    result = identification_model(persons, {"woman": "female", "minor at first contact": persons.minor})
    decided = persons[persons.decision != "pending"]
    y = (decided.decision == "identified").astype(float).to_numpy()
    X = sm.add_constant(np.column_stack([decided.female.astype(float), decided.minor.astype(float)]))
    oracle = sm.Logit(y, X).fit(disp=0)
    assert result.reported and result.persons == len(decided) and result.identified == int(y.sum())
    assert list(result.terms.index) == ["woman", "minor at first contact"]
    np.testing.assert_allclose(result.terms["odds ratio"], np.exp(oracle.params[1:]), rtol=1e-6)
    np.testing.assert_allclose(result.terms[["lower 95%", "upper 95%"]], np.exp(oracle.conf_int(0.05)[1:]), rtol=1e-5)
    np.testing.assert_allclose(result.terms["p-value"], oracle.pvalues[1:], rtol=1e-5)


def test_pending_cases_are_left_out_and_a_missing_trait_counts_as_no():
    persons = _persons()
    persons.loc[persons.index[50:60], "minor"] = pd.NA
    result = identification_model(persons, {"minor": "minor"})
    decided = persons[persons.decision != "pending"]
    x = decided.minor.fillna(False).astype(float).to_numpy()
    oracle = sm.Logit((decided.decision == "identified").astype(float).to_numpy(), sm.add_constant(x)).fit(disp=0)
    assert result.persons == len(decided)
    assert result.terms.loc["minor", "odds ratio"] == pytest.approx(np.exp(oracle.params[1]), rel=1e-6)


def test_too_few_persons_with_a_decision_on_both_sides_of_the_threshold():
    persons = _persons(n=80, pending=0)
    assert identification_model(persons.iloc[:40], {"woman": "female"}, min_persons=40, min_level=5, min_per_term=5).reported
    small = identification_model(persons.iloc[:39], {"woman": "female"}, min_persons=40, min_level=5, min_per_term=5)
    assert not small.reported and small.reason == "too few persons with a decision for a model of identification"
    assert small.terms.empty


def test_a_trait_too_few_persons_have_is_left_out_on_both_sides_of_the_threshold():
    persons = _persons(pending=0)
    rare = np.zeros(len(persons), dtype=bool)
    yes = np.flatnonzero(persons.decision == "identified")
    no = np.flatnonzero(persons.decision == "not_identified")
    rare[[*yes[:5], *no[:5]]] = True  # ten persons have it, both decisions among them
    kept = identification_model(persons, {"woman": "female", "rare": rare}, min_level=10)
    rare[no[4]] = False  # nine
    dropped = identification_model(persons, {"woman": "female", "rare": rare}, min_level=10)
    assert list(kept.terms.index) == ["woman", "rare"] and kept.left_out == {}
    assert list(dropped.terms.index) == ["woman"] and dropped.left_out == {"rare": "too few persons with it"}
    common = identification_model(persons, {"almost everyone": np.arange(len(persons)) >= 9}, min_level=10)
    assert not common.reported and common.left_out == {"almost everyone": "too few persons without it"}


def test_a_trait_that_separates_the_decisions_is_left_out_with_the_reason():
    persons = _persons(pending=0)
    separating = (persons.decision == "identified").to_numpy() & (np.arange(len(persons)) < 60)  # all identified
    result = identification_model(persons, {"woman": "female", "separates": separating})
    assert list(result.terms.index) == ["woman"]
    assert "same decision" in result.left_out["separates"]
    assert np.isfinite(result.terms.to_numpy()).all()


def test_too_few_of_the_rarer_decision_leaves_traits_out_from_the_last():
    persons = _persons(pending=0)
    identified = persons.index[persons.decision == "identified"]
    persons.loc[identified[25:], "decision"] = "not_identified"  # 25 identified: room for two traits at ten each
    extra = np.arange(len(persons)) % 2 == 0
    result = identification_model(persons, {"woman": "female", "minor": "minor", "even": extra}, min_per_term=10)
    assert list(result.terms.index) == ["woman", "minor"]
    assert result.left_out == {"even": "too few decisions for this many traits"}
    persons.loc[identified[:16], "decision"] = "not_identified"  # nine identified
    none = identification_model(persons, {"woman": "female"}, min_per_term=10)
    assert not none.reported and none.reason == "too few persons identified for a model of identification"


def test_a_trait_column_that_is_not_there_is_named():
    with pytest.raises(KeyError, match="trait 'woman': column 'sex_female'"):
        identification_model(_persons(), {"woman": "sex_female"})
