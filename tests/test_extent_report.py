"""The extent report's pieces (issue 17): the chart of estimates and the recommended range."""

from __future__ import annotations

import json
from html import unescape
import warnings

import numpy as np
import pandas as pd
import pytest

from studylib.analysis.model_families import models_disagree, recommended_range
from studylib.privacy.marker import marker_for
from studylib.report.estimates import estimates_figure


def _families(rows):
    return pd.DataFrame(rows, columns=["family", "model", "total", "lower", "upper", "assumes", "supported", "why"])


def test_estimates_figure_is_a_safe_figure_of_estimates_only():
    frame = pd.DataFrame({"model": ["stepwise", "Mth Chao", "LCMCR"], "total": [2602.0, 1479.0, np.nan],
                          "lower": [2190.0, 1343.0, np.nan], "upper": [3133.0, 1646.0, np.nan]})
    fig = estimates_figure(frame, caption="Every family", recommended=(2023.0, 3346.0), truth=2664.0, min_cell=5)
    assert fig.png[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.marker == marker_for("statistics", 5, None, False, False)
    html = fig.to_html()
    attribute = html.split('data-studylib-safe="')[1].split('"')[0]
    assert json.loads(unescape(attribute))["rule"] == "statistics"
    # the alt text repeats every figure the chart shows
    for text in ("stepwise: 2,602 (2,190 to 3,133)", "Mth Chao: 1,479 (1,343 to 1,646)", "Recommended range 2,023 to 3,346",
                 "truth (synthetic data): 2,664"):
        assert text in fig.alt
    assert "LCMCR" not in fig.alt and fig.note == "Not drawn (no estimate): LCMCR."
    with pytest.raises(KeyError, match="'estimate'"):
        estimates_figure(frame, estimate="estimate")


def test_recommended_range_spans_the_supported_families_only():
    frame = _families([
        ("list dependence", "stepwise", 100.0, 80.0, 130.0, "", True, ""),
        ("heterogeneity", "Mth Chao", 60.0, 50.0, 70.0, "", False, ""),
        ("latent classes", "LCMCR", 120.0, 90.0, 180.0, "", True, ""),
    ])
    row = recommended_range(frame)
    assert (row["lower"], row["upper"]) == (80.0, 180.0)
    assert "list dependence, latent classes" in row["why"] and "disagree" not in row["why"]
    # the same families, now without overlap: the rule says they disagree
    apart = frame.assign(lower=[80.0, 50.0, 131.0], upper=[130.0, 70.0, 180.0])
    assert models_disagree(apart[apart.supported])
    assert "do not overlap, so the models disagree" in recommended_range(apart)["why"]
    # touching ranges overlap
    touching = frame.assign(lower=[80.0, 50.0, 130.0])
    assert not models_disagree(touching[touching.supported])
    none = recommended_range(frame.assign(supported=False))
    assert np.isnan(none["lower"]) and not none["supported"]


def test_compare_families_spans_the_mth_models_the_data_support_about_equally():
    from studylib.analysis import overlap_table
    from studylib.analysis.heterogeneity import closed_population_models
    from studylib.analysis.model_families import compare_families

    rng = np.random.default_rng(12)
    n = 4000
    alike = rng.random((n, 5)) < 0.2
    catchy = rng.random(n) < 0.3
    differ = rng.random((n, 5)) < np.where(catchy[:, None], 0.45, 0.06)
    quick = {"burn_in": 300, "samples": 200, "thin": 2}
    words = {}
    for name, flags in (("alike", alike), ("differ", differ)):
        table = overlap_table(pd.DataFrame(flags[flags.any(axis=1)], columns=[f"list_{c}" for c in "abcde"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = compare_families(table, seed=1, latent_class=quick).set_index("family")
        models = closed_population_models(table).set_index("model")
        mth = models[models.index.str.startswith("Mth")]
        near = mth[mth["aic"] <= mth["aic"].min() + 2]
        het = frame.loc["heterogeneity"]
        assert het["lower"] == near["lower"].min() and het["upper"] == near["upper"].max(), name
        assert het["total"] == mth.loc[mth["aic"].idxmin(), "total"]
        # an independent-lists model never beats the best Mth model by more than 2 (one column costs 2)
        assert models.loc["Mt", "aic"] - mth["aic"].min() >= -2 - 1e-9
        assert het["supported"]
        assert list(frame.index) == ["list dependence", "heterogeneity", "latent classes", "recommended"]
        rec = frame.loc["recommended"]
        supported = frame[frame.supported & (frame.index != "recommended")]
        assert rec["lower"] == supported["lower"].min() and rec["upper"] == supported["upper"].max()
        gain = models.loc["Mt", "aic"] - mth["aic"].min()
        words[name] = (gain > 2, het["why"])
    assert words["alike"][0] is np.False_ or not words["alike"][0]
    assert "cannot rule out" in words["alike"][1]
    assert words["differ"][0] and "shows" in words["differ"][1]


def test_compare_families_is_repeatable_with_its_seed():
    """The report's seed fixes every family's figures: the same seed the same frame, another
    seed other LCMCR draws (the log-linear and heterogeneity fits do not depend on it)."""
    from studylib.analysis import overlap_table
    from studylib.analysis.model_families import compare_families

    rng = np.random.default_rng(3)
    flags = rng.random((1500, 4)) < np.where((rng.random(1500) < 0.3)[:, None], 0.4, 0.1)
    table = overlap_table(pd.DataFrame(flags[flags.any(axis=1)], columns=[f"list_{c}" for c in "abcd"]))
    quick = {"burn_in": 100, "samples": 100, "thin": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b, c = (compare_families(table, seed=s, latent_class=quick) for s in (4, 4, 5))
    pd.testing.assert_frame_equal(a, b)
    lc = a.family == "latent classes"
    assert (a.loc[lc, ["lower", "total", "upper"]].to_numpy() != c.loc[lc, ["lower", "total", "upper"]].to_numpy()).any()
    fixed = ~lc & (a.family != "recommended")
    pd.testing.assert_frame_equal(a[fixed], c[fixed])
