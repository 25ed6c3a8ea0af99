"""The extent report as the runner publishes it (issue 17, item 5): the chart of every family,
the recommended range and why, a headline that says whether the families agree, the truth on
synthetic data, R-hat and effective sample size, and the fixed methods text.

The extent report of the demo release (conftest's ``demo_release``: studies/extent.yaml with
every other study on the demo dataset; synth -> ingest on demand, real kernels, export, audit,
publish). Oracles: the published table of families read back from the
HTML, the overlap rule written out here, and the truth counted here from the generator's
truth/population.parquet.
"""

from __future__ import annotations

import base64
import html
import re

import pandas as pd
import pytest

from studylib import paths

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(demo_release):
    reports, result = demo_release  # the extent report as the demo release publishes it
    assert [o.status for o in result.outcomes if o.key == "extent"] == ["published"], [o.message for o in result.outcomes]
    page = (reports / "extent" / "report.html").read_text()
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))
    return page, text


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


def _families(page: str) -> pd.DataFrame:
    """The published table of families, read back from the HTML."""
    table = re.search(r"<caption>Every family of models, [^<]*</caption>(.*?)</table>", page, re.S).group(1)
    head = re.findall(r"<th>([^<]*)</th>", table.split("</thead>")[0])
    rows = [re.findall(r"<t[hd]>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)]
    frame = pd.DataFrame([[html.unescape(c) for c in r] for r in rows], columns=head).set_index("family")
    for column in ("lower end", "central", "upper end"):
        frame[column] = frame[column].map(_number)
    return frame


def _first_window(page: str) -> tuple[int, int]:
    first, last = re.search(r"<dt>Period</dt><dd>(\d{4})–(\d{4})</dd>", page).groups()
    return int(first), int(last)


def test_the_chart_draws_every_family_and_the_recommended_range(report):
    page, _ = report
    img = re.search(r'<img alt="(range chart: Every family&#x27;s estimate and 95% range[^"]*|range chart: Every family\'s estimate and 95% range[^"]*)"[^>]*src="data:image/png;base64,([^"]+)"', page)
    assert img, "no chart of every family's estimate"
    alt = html.unescape(img.group(1))
    for family in ("list dependence", "heterogeneity", "latent classes"):
        assert family in alt, alt
    assert "Recommended range" in alt or "recommended" in alt.lower()
    assert base64.b64decode(img.group(2))[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_headline_gives_the_recommended_range_and_says_whether_the_families_agree(report):
    page, _ = report
    families = _families(page)
    summary = html.unescape(re.sub(r"<[^>]+>", "", re.search(r'<p class="report-summary">(.*?)</p>', page, re.S).group(1)))
    low, high = (_number(x) for x in re.search(r"between ([\d,]+) and ([\d,]+) in \d{4}", summary).groups())
    rec = families.loc["recommended"]
    # the headline rounds (estimate()): within the rounding of the table's ends
    assert abs(low - rec["lower end"]) <= 0.05 * rec["lower end"] and abs(high - rec["upper end"]) <= 0.05 * rec["upper end"], (summary, rec)
    supported = families[(families.index != "recommended") & (families["supported"] == "yes")]
    assert len(supported) >= 2
    overlap = supported["lower end"].max() <= supported["upper end"].min()  # every range shares a point
    assert ("ranges overlap" in summary) == overlap and ("disagree" in summary) == (not overlap), summary
    # the recommended range is the envelope of the supported families (the published figures)
    assert rec["lower end"] == supported["lower end"].min() and rec["upper end"] == supported["upper end"].max()


def test_the_truth_is_compared_with_every_range_on_synthetic_data(report):
    page, text = report
    families = _families(page)
    first, last = _first_window(page)
    truth = pd.read_parquet(paths.demo_raw_dir() / "truth" / "population.parquet")
    true_total = int(truth["year"].between(first, last).sum())
    for family, row in families.iterrows():
        inside = row["lower end"] <= true_total <= row["upper end"]
        assert row["truth inside"] == ("yes" if inside else "no"), (family, true_total, row.to_dict())
    where = "inside" if families.loc["recommended", "truth inside"] == "yes" else "outside"
    assert f"On these synthetic data the true population lies {where} the recommended range." in text


def test_the_latent_class_row_reports_r_hat_effective_sample_size_and_its_verdict(report):
    page, text = report
    why = _families(page).loc["latent classes", "why"]
    rhat, ess = re.search(r"R-hat (\d\.\d{3}), effective sample size ([\d,]+)", why).groups()
    converged = float(rhat) <= 1.05 and _number(ess) >= 400
    assert why.startswith("chains converged" if converged else "chains not converged"), why
    assert _families(page).loc["latent classes", "supported"] == ("yes" if converged else "no")


def test_the_methods_text_no_longer_says_unregistered_persons_are_not_counted(report):
    _, text = report
    assert "are not counted" not in text
    assert "Where a report estimates the number of persons never registered (multiple systems estimation), it says so" in text



def test_the_headline_covers_the_last_window_and_the_periods_and_strata_are_beside_it(report):
    page, text = report
    first, last = _first_window(page)
    truth = pd.read_parquet(paths.demo_raw_dir() / "truth" / "population.parquet")
    assert last - first + 1 == 3 and last == int(truth["year"].max())  # period_years 3: not ten pooled years
    assert "by period of first contact: every year and every window of 3 years" in text
    for label in (f"{y}" for y in range(int(truth["year"].min()), last + 1)):
        assert f" {label} year " in text, label  # every year has a row
    assert f" {first}–{last} window " in text
    for row in ("sum over sectors", "sum over sexes", "sum over age bands", "all persons together"):
        assert row in text, row
