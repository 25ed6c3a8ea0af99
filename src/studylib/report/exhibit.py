"""What every numbered exhibit shares: its heading, its HTML table frame, its notebook output.

A safe table (:mod:`studylib.report.tables`), a statistics table
(:mod:`studylib.report.statistics`) and a figure (:mod:`studylib.report.figures`) are each
an :class:`Exhibit`: shown in a notebook as HTML plus plain text, with the safe marker in
the output's metadata, and headed ``Table 3. caption`` in plain text.
"""

from __future__ import annotations

import html

from studylib.privacy.marker import MARKER_METADATA_KEY, marker_attribute


def escape(value) -> str:
    """``value`` as HTML text (quotes escaped too, so it may sit in an attribute)."""
    return html.escape(str(value), quote=True)


def heading(kind: str, number: int, caption: str | None) -> str:
    """The plain-text heading of an exhibit: ``Table 3. caption`` (or ``Table 3.``)."""
    return f"{kind} {number}. {caption}" if caption else f"{kind} {number}."


def table_html(classes: str, marker: dict, number: int, caption: str | None, thead: str, tbody: str, notes) -> str:
    """A marked, numbered ``<table>`` with its caption and the notes under it."""
    parts = [f'<table class="{classes}"{marker_attribute(marker)} data-studylib-number="{number}">']
    if caption:
        parts.append(f"<caption>{escape(caption)}</caption>")
    parts += [thead, tbody, "</table>"]
    parts += [f'<p class="table-note">{escape(note)}</p>' for note in notes if note]
    return '<div class="studylib-exhibit">' + "".join(parts) + "</div>"


class Exhibit:
    """Notebook display of an exhibit; a subclass gives ``to_html``, ``to_text`` and ``safe_marker``."""

    def safe_marker(self) -> dict:
        raise NotImplementedError

    def to_html(self) -> str:
        raise NotImplementedError

    def to_text(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self.to_html(), "text/plain": self.to_text()}, {MARKER_METADATA_KEY: self.safe_marker()}

    def __repr__(self) -> str:
        return self.to_text()
