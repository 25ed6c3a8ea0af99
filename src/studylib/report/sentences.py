"""Findings in words: sentences whose every number is a published cell or a share of published cells.

A report's key results are sentences, and a number in a sentence is published as surely as
one in a table. :func:`sentence` fills a text's ``{placeholders}`` only with

- :class:`PublishedValue`: one published cell of a safe table (``table.value("identified")``,
  ``table.value("female", "Total")``); a hidden cell shows as the symbol (``[c]``);
- :func:`share`: a share of two published values, rounded as the study says (whole percent
  by default); nothing when either is hidden;
- :func:`year` / :func:`period`: a year or a span of years, said as such;
- :func:`name`: a name that holds digits (a catalogue version), said as a name;
- :func:`estimate`: a model's estimate (not a count), rounded to tens or more;
- words (text without digits).

The text itself may hold no digits, so that no count slips in through an f-string. The
sentence is shown as Markdown and HTML carrying the safe marker (rule ``sentence``); the
front matter's summary (:func:`studylib.report.look.front_matter`) takes only such sentences.

Example::

    by_decision = safe_table(cases, rows="decision", caption="Persons by identification")
    sentence("{n} persons were identified in {when}, {p} of those registered.",
             n=by_decision.value("identified"), when=period(2015, 2024),
             p=share(by_decision.value("identified"), by_decision.value("Total")))
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from studylib.privacy.disclosure import TOTAL, DisclosureError
from studylib.privacy.marker import MARKER_METADATA_KEY, marker_attribute, marker_for
from studylib.report.exhibit import escape as _e
from studylib.report.settings import current_settings

_DIGIT = re.compile(r"\d")


@dataclass(frozen=True)
class PublishedValue:
    """One cell as a table published it: its shown value, or hidden."""

    value: int | None  # None when hidden
    symbol: str
    where: str  # the table and cell, for messages

    @classmethod
    def of_table(cls, table, labels: tuple) -> "PublishedValue":
        protected = table.protected
        published = protected.published
        key = _key(published, labels)
        try:
            shown = published.loc[key]
        except KeyError:
            raise DisclosureError(f"table {table.caption or table.number!r} has no cell {labels!r}") from None
        hidden = bool(protected.suppressed.loc[key])
        value = None if hidden or shown is None or str(shown) == "<NA>" else int(shown)
        return cls(value, protected.settings.symbol, f"{table.caption or 'table'} {labels!r}")

    @property
    def hidden(self) -> bool:
        return self.value is None

    def text(self) -> str:
        return self.symbol if self.value is None else f"{self.value:,}"


@dataclass(frozen=True)
class Share:
    """A share of two published values, as a percentage rounded as the study says."""

    part: PublishedValue
    whole: PublishedValue
    decimals: int = 0

    def text(self) -> str:
        if self.part.hidden or self.whole.hidden or not self.whole.value:
            return self.part.symbol
        return f"{100.0 * self.part.value / self.whole.value:.{self.decimals}f} %"


@dataclass(frozen=True)
class Estimate:
    """A model's estimate (not a count of persons), said rounded: "about 8,700"."""

    value: float
    round_to: int

    def text(self) -> str:
        if self.value is None or self.value != self.value:  # NaN: no estimate
            return "no estimate"
        return f"{int(round(self.value / self.round_to) * self.round_to):,}"


def estimate(value: float, round_to: int = 100) -> Estimate:
    """An estimate from a model (an extent estimate, an interval's end), rounded to ``round_to``
    (at least 10): a figure the data do not count, said as roughly as it is known.

    ``value``: the model's figure; ``round_to``: the rounding (at least 10).

    Example::

        sentence("About {n} persons were never registered.", n=estimate(result.total - result.observed))
    """
    if int(round_to) < 10:
        raise DisclosureError("an estimate in a sentence is rounded to 10 or more (round_to=10, 100, ...)")
    return Estimate(float(value) if value is not None else float("nan"), int(round_to))


@dataclass(frozen=True)
class Name:
    """A name that holds digits (a catalogue version, a form code), said as a name, not a number."""

    value: str

    def text(self) -> str:
        return self.value


def name(value: str) -> Name:
    """A name with digits (``ILO 2009``, ``2026.1``, ``F13``) for a sentence; never a count.

    ``value``: the name.

    Example::

        sentence("Indicators of the {catalogue} catalogue.", catalogue=name("ILO 2009"))
    """
    if not isinstance(value, str):
        raise DisclosureError(f"name() takes a text, not {type(value).__name__}: a number goes in as a published value")
    return Name(value)


@dataclass(frozen=True)
class Years:
    """A year or a span of years (not a count)."""

    first: int
    last: int | None = None

    def text(self) -> str:
        return str(self.first) if self.last is None or self.last == self.first else f"{self.first}–{self.last}"


def share(part: PublishedValue, whole: PublishedValue, decimals: int | None = None) -> Share:
    """``part`` as a percentage of ``whole``, both published cells (whole percent unless ``decimals``).

    Example::

        sentence("{p} of them were women.", p=share(by_sex.value("female"), by_sex.value("Total")))
    """
    for value in (part, whole):
        if not isinstance(value, PublishedValue):
            raise DisclosureError("share() takes published values (table.value(...)), not numbers")
    return Share(part, whole, 0 if decimals is None else int(decimals))


def year(value: int) -> Years:
    """A year, said as a year.

    ``value``: the year.

    Example::

        sentence("The catalogue changed in {y}.", y=year(2013))
    """
    return Years(_year(value))


def period(first: int, last: int | None = None) -> Years:
    """A span of years (``2015–2024``).

    ``first``: the first year; ``last``: the last (default: only ``first``).

    Example::

        sentence("Persons first registered in {years}.", years=period(2015, 2024))
    """
    return Years(_year(first), None if last is None else _year(last))


def _year(value) -> int:
    number = int(value)
    if not 1900 <= number <= 2100 or number != value:
        raise DisclosureError(f"{value!r} is not a year")
    return number


@dataclass(frozen=True)
class SafeSentence:
    """A finding in words, every number from published cells; shown with the safe marker."""

    text: str
    marker: dict

    def _repr_mimebundle_(self, include=None, exclude=None):
        html = f'<p class="studylib-sentence"{marker_attribute(self.marker)}>{_e(self.text)}</p>'
        return {"text/markdown": self.text, "text/html": html, "text/plain": self.text}, {MARKER_METADATA_KEY: self.marker}

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def sentence(text: str, **values) -> SafeSentence:
    """A sentence whose placeholders are filled only with published values, shares, years and words.

    ``text``: the sentence, with ``{placeholders}``; ``values``: a published value, share, year,
    period, estimate or name for each placeholder.

    Example::

        table = safe_table(cases, rows="sector")
        sentence("{n} persons worked as au pairs.", n=table.value("au_pair"))
    """
    if _DIGIT.search(text):
        raise DisclosureError(
            f"the text of a sentence may hold no digits ({text[:60]!r}); put every number in as a published "
            "value, a share or a year: sentence('{n} persons', n=table.value(...))"
        )
    names = {field for _, field, _, _ in string.Formatter().parse(text) if field}
    missing, unused = sorted(names - set(values)), sorted(set(values) - names)
    if missing or unused:
        raise DisclosureError(f"sentence placeholders and values differ: missing {missing}, unused {unused}")
    shown = {}
    for name, value in values.items():
        if isinstance(value, (PublishedValue, Share, Years, Name, Estimate)):
            shown[name] = value.text()
        elif isinstance(value, str) and not _DIGIT.search(value):
            shown[name] = value
        else:
            raise DisclosureError(
                f"sentence value {name!r} is {type(value).__name__} {value!r}: only published values "
                "(table.value(...)), share(...), year(...), period(...) and words without digits can go into a sentence"
            )
    settings = current_settings()
    return SafeSentence(text.format(**shown), marker_for("sentence", settings.min_cell, settings.rounding, False, settings.zeros_disclosive,
                                                         cell_key=None if settings.cell_key is None else dict(settings.cell_key)))


def _key(published, labels: tuple):
    labels = tuple(labels)
    if not labels:
        raise DisclosureError("name the cell: table.value('identified') or table.value('female', 'Total')")
    if published.ndim == 1:
        return labels[0] if len(labels) == 1 else labels
    if len(labels) == 1:
        return (labels[0], TOTAL)
    return (labels[:-1] if len(labels) > 2 else labels[0], labels[-1])
