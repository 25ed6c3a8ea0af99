"""What a referral group should look for and do, printed from the project's catalogues.

A municipality that meets one victim a year cannot remember the signs or the procedure, so a
regional brief prints both: :func:`indicator_checklist` from the indicator catalogue
(:mod:`studylib.indicators.catalogue`: the indicators graded strong, for adults and for
children) and :func:`referral_procedure` from the form catalogue's ``referral`` steps
(:mod:`studylib.data.form_catalogue`: what happens, who may do it, the forms that record it).

Both are texts of configuration, never of data: a template cannot put words of its own into
them, and they refuse any catalogue text that holds a number, so that no count can travel in
them. They carry the safe marker of rule ``catalogue``; the audit accepts such an output only
without numbers (:mod:`studylib.privacy.audit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from studylib.data import vocabularies as v
from studylib.privacy.disclosure import DisclosureError
from studylib.privacy.marker import STANDALONE_NUMBER, marker_attribute, marker_for
from studylib.report.exhibit import Exhibit, escape
from studylib.report.settings import current_settings

#: who an indicator list is for, by the list's combination rule
AGES = {"adult": "Adults", "child": "Children (under eighteen)"}


@dataclass(frozen=True)
class Group:
    """A heading and its entries (each a title and an optional explanation)."""

    heading: str
    entries: tuple[tuple[str, str], ...]


@dataclass(frozen=True, repr=False)  # shown as its text, as every exhibit
class SafeGuidance(Exhibit):
    """Catalogue text shown as lists, with the safe marker of rule ``catalogue``."""

    groups: tuple[Group, ...]
    note: str
    ordered: bool
    marker: dict

    def safe_marker(self) -> dict:
        return self.marker

    def to_text(self) -> str:
        lines = []
        for group in self.groups:
            if group.heading:
                lines.append(group.heading)
            for number, (title, text) in enumerate(group.entries, 1):
                bullet = f"{_ordinal(number)}." if self.ordered else "[ ]"
                lines.append(f"  {bullet} {title}" + (f"{': ' if self.ordered else ' '}{text}" if text else ""))
        return "\n".join(lines + ([self.note] if self.note else []))

    def to_html(self) -> str:
        tag = "ol" if self.ordered else "ul"
        parts = [f'<div class="studylib-guidance"{marker_attribute(self.marker)}>']
        for group in self.groups:
            if group.heading:
                parts.append(f'<p class="guidance-heading">{escape(group.heading)}</p>')
            items = "".join(
                f"<li><strong>{escape(title)}</strong>" + (f" {escape(text)}" if text else "") + "</li>"
                for title, text in group.entries)
            parts.append(f'<{tag} class="guidance-{"steps" if self.ordered else "checklist"}">{items}</{tag}>')
        if self.note:
            parts.append(f'<p class="table-note">{escape(self.note)}</p>')
        return "".join(parts) + "</div>"


def _organisation(code: str) -> str:
    """An organisation code as a reader knows it (``ngo`` -> ``NGO``, ``health_clinic`` -> ``health clinic``)."""
    return "NGO" if code == "ngo" else v.label(code)


def _ordinal(number: int) -> str:
    """Steps are lettered (a, b, c), so that the text of a step list holds no number."""
    return "abcdefghijklmnopqrstuvwxyz"[number - 1] if number <= 26 else "z"


def _checked(groups: Sequence[Group], note: str, source: str) -> None:
    for group in groups:
        for text in (group.heading, *(part for entry in group.entries for part in entry)):
            if STANDALONE_NUMBER.search(text):
                raise DisclosureError(f"{source}: the text {text[:70]!r} holds a number; catalogue text printed in a "
                                      "report may hold none (write it in words)")
    if STANDALONE_NUMBER.search(note):
        raise DisclosureError(f"{source}: the note {note[:70]!r} holds a number")


def _guidance(groups: list[Group], note: str, ordered: bool, source: str) -> SafeGuidance:
    _checked(groups, note, source)
    settings = current_settings()
    marker = marker_for("catalogue", settings.min_cell, settings.rounding, False, settings.zeros_disclosive)
    return SafeGuidance(tuple(groups), note, ordered, marker)


def indicator_checklist(catalogue: pd.DataFrame | str | None = None, grades: Sequence[str] = ("strong",),
                        ages: Sequence[str] = ("adult", "child")) -> SafeGuidance:
    """The indicators of the catalogue graded ``grades``, for adults and for children, as a checklist.

    ``catalogue``: a catalogue frame or file (default: the shipped one); ``grades``: the grades
    listed; ``ages``: ``adult``, ``child`` or both (the lists of each rule). Each indicator's text
    is listed once per age group (labour and sexual lists together), in the catalogue's order
    of dimensions. An indicator graded so only on a list whose grades are provisional is marked
    *provisional*.

    Example::

        display(indicator_checklist())
    """
    from studylib.indicators.catalogue import as_catalogue, dimensions

    table = as_catalogue(catalogue)
    unknown = sorted(set(ages) - set(AGES))
    if unknown:
        raise DisclosureError(f"indicator_checklist(ages=...): {unknown} unknown; ages are {sorted(AGES)}")
    order = {code: i for i, code in enumerate(dimensions(table)["dimension"])}
    groups = []
    for age in ages:
        chosen = table[table["list"].str.startswith(age + "_") & table["grade"].isin(list(grades))]
        chosen = chosen.assign(_order=chosen["dimension"].map(order)).sort_values("_order", kind="stable")
        entries = []
        for text, rows in chosen.groupby("text", sort=False):
            provisional = bool(rows["provisional"].all())
            entries.append((str(text), "(provisional grade)" if provisional else ""))
        if entries:
            groups.append(Group(AGES[age], tuple(entries)))
    version = str(table.attrs.get("version", "")) if hasattr(table, "attrs") else ""
    grade_words = " or ".join(grades)
    note = (f"Indicators graded {grade_words} in the indicator catalogue{f' {version}' if version else ''}. "
            "Any one of them is reason to contact the centre; its identification interview goes through the full lists.")
    return _guidance(groups, note, ordered=False, source="indicator catalogue")


def referral_procedure(catalogue=None) -> SafeGuidance:
    """The referral procedure of the form catalogue: each step, who may take it and the forms that record it.

    ``catalogue``: a :class:`~studylib.data.form_catalogue.FormCatalogue` (default: the shipped one).

    Example::

        display(referral_procedure())
    """
    from studylib.data.form_catalogue import form_catalogue

    cat = catalogue or form_catalogue()
    steps = cat.referral_steps()
    if not steps:
        raise DisclosureError("the form catalogue has no referral steps (add a `referral:` section)")
    entries = []
    for step, forms, who in steps:
        by = ", ".join(_organisation(org) for org in who)
        recorded = "; ".join(f"{form.title} ({form.code})" for form in forms)
        entries.append((step.step, f"{step.text} Who: {by}. Recorded on: {recorded}."))
    note = "From the form catalogue, whose forms record every step."
    return _guidance([Group("", tuple(entries))], note, ordered=True, source="form catalogue")
