"""Figures a reader can read: bars carry their published values, count axes have whole-number
ticks, colours are the Okabe-Ito colour-blind safe set. Counts come from pandas in the test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from studylib.report import safe_figure

# Okabe & Ito (2008), "Color Universal Design": blue, orange, bluish green, reddish purple, ...
OKABE_ITO = {"#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"}


pytestmark = pytest.mark.usefixtures("fresh_report")


def _persons(**counts) -> pd.DataFrame:
    rows = [band for band, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"person_id": [f"t{i}" for i in range(len(rows))], "band": rows})


def _labels(figure) -> list[str]:
    return [t.get_text() for t in figure.figure.axes[0].texts]


def test_bars_carry_their_published_values_and_a_hidden_bar_none():
    persons = _persons(a=1234, b=7, c=6, d=2, e=9)  # d (2) is hidden, and one more to protect it
    figure = safe_figure(persons, rows="band", kind="bar", caption="Persons by band")
    counts = persons.band.value_counts()
    shown = _labels(figure)
    assert "1,234" in shown
    assert "2" not in shown and "[c]" in shown  # the hidden bar: the symbol at the axis, never its value
    values = [x for x in shown if x != "[c]"]
    assert len(values) + shown.count("[c]") == len(counts)  # one label a bar, drawn or hidden
    assert sorted(values) == sorted(f"{n:,}" for n in counts if f"{n:,}" in values)  # each a count of pandas
    assert len(values) >= 3

def test_count_axes_have_whole_number_ticks_and_shares_do_not_need_them():
    persons = _persons(a=5, b=6, c=18)  # an axis to about 20: matplotlib alone ticks it at 2.5, 7.5, ...
    axis = safe_figure(persons, rows="band", kind="bar", caption="small").figure.axes[0]
    ticks = [t for t in axis.get_yticks() if axis.get_ylim()[0] <= t <= axis.get_ylim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    horizontal = safe_figure(persons, rows="band", kind="barh", caption="small").figure.axes[0]
    assert all(float(t).is_integer() for t in horizontal.get_xticks())
    shares = safe_figure(persons, rows="band", kind="bar", shares="total", caption="shares")
    assert sorted(_labels(shares)) == sorted(f"{100 * n / 29:.1f} %" for n in (5, 6, 18))


def test_the_colours_are_the_colour_blind_safe_set():
    persons = pd.DataFrame({"person_id": [f"t{i}" for i in range(60)], "band": ["a", "b"] * 30,
                            "sex": ["female"] * 20 + ["male"] * 20 + ["other"] * 20})
    figure = safe_figure(persons, rows="band", columns="sex", kind="bar", caption="by sex")
    colours = {to_hex(p.get_facecolor()) for p in figure.figure.axes[0].patches}
    assert len(colours) == 3 and colours <= OKABE_ITO


def test_many_bars_are_not_labelled():
    persons = _persons(**{f"k{i:02d}": 10 + i for i in range(45)})
    figure = safe_figure(persons, rows="band", kind="bar", caption="many")
    assert [x for x in _labels(figure) if x != "[c]"] == []
    assert np.all(np.isfinite(figure.figure.axes[0].get_ylim()))
