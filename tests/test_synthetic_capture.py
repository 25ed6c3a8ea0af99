"""The capture settings of a profile (issue 17, item 7) do what the profiles README says.

``heterogeneity_sd`` and ``heterogeneity_shared`` decide whether persons differ in
catchability and whether that makes lists dependent; ``dependence`` rules add referrals.
Oracle: odds ratios and conditional shares of the registration flags, computed here with
numpy, against the values the documented formula implies.
"""

from __future__ import annotations

import numpy as np
import pytest

from studylib.data.vocabularies import ORGANISATION
from studylib.synthetic.capture import register
from studylib.synthetic.profiles import Dependence

N = 200_000
VISIBILITY = np.array([0.2, 0.15, 0.25, 0.2, 0.1, 0.1, 0.1, 0.05])
LATENT_SEED = 1


def _odds_ratio(a: np.ndarray, b: np.ndarray) -> float:
    n11, n10, n01, n00 = (a & b).sum(), (a & ~b).sum(), (~a & b).sum(), (~a & ~b).sum()
    return float(n11 * n00 / (n10 * n01))


def _flags(sd: float, shared: float, dependence=()) -> tuple[np.ndarray, np.ndarray]:
    latent = np.random.default_rng(LATENT_SEED).standard_normal(N)
    return register(VISIBILITY, latent, sd, dependence, np.random.default_rng(2), shared=shared)


def test_no_heterogeneity_gives_independent_lists_at_their_visibility():
    captured, induced = _flags(0.0, 1.0)
    assert captured.mean(axis=0) == pytest.approx(VISIBILITY, abs=0.005)
    assert _odds_ratio(captured[:, 0], captured[:, 2]) == pytest.approx(1.0, abs=0.06)
    assert (induced == -1).all()


def test_shared_heterogeneity_makes_every_pair_of_lists_dependent():
    captured, _ = _flags(1.0, 1.0)
    for i, j in ((0, 2), (1, 3), (2, 3)):
        assert _odds_ratio(captured[:, i], captured[:, j]) > 1.5, (i, j)


def test_heterogeneity_of_each_organisations_own_keeps_the_lists_independent():
    own, _ = _flags(1.0, 0.0)
    assert _odds_ratio(own[:, 0], own[:, 2]) == pytest.approx(1.0, abs=0.06)
    half, _ = _flags(1.0, 0.5)
    full, _ = _flags(1.0, 1.0)
    assert 1.1 < _odds_ratio(half[:, 0], half[:, 2]) < _odds_ratio(full[:, 0], full[:, 2])
    # spread on the logit scale raises the share each organisation sees (the logistic curve is
    # convex below one half, where every visibility lies)
    assert (own.mean(axis=0) > VISIBILITY).all()


def test_a_referral_rule_raises_the_second_list_among_persons_on_the_first():
    police, outreach = ORGANISATION.index("police"), ORGANISATION.index("centre_outreach")
    rule = Dependence.model_validate({"from": "police", "to": "centre_outreach", "probability": 0.5, "lag_days": (0, 10)})
    captured, induced = _flags(0.0, 1.0, (rule,))
    on_police = captured[:, police]
    # P(outreach | police) = p + (1 - p) * 0.5; P(outreach | not police) = p
    p = VISIBILITY[outreach]
    assert captured[on_police, outreach].mean() == pytest.approx(p + (1 - p) * 0.5, abs=0.01)
    assert captured[~on_police, outreach].mean() == pytest.approx(p, abs=0.005)
    referred = induced[:, outreach] == police
    assert referred.any() and (captured[referred, police]).all()
    assert referred.mean() == pytest.approx(VISIBILITY[police] * (1 - p) * 0.5, abs=0.004)
