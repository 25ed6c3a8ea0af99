"""The report's look: our nbconvert template, its print CSS, and the front matter a template sends.

A template may ask for the ``brief`` layout (two pages in print, for a referral group).
This folder is an nbconvert template (``conf.json``, ``index.html.j2``) extending JupyterLab's
cell markup, with one stylesheet (``report.css``) for the screen and, through WeasyPrint, for
print: title block, table of contents, numbered tables and figures (CSS counters), methods
note, provenance footer, running header and page numbers. Nothing in it loads anything from
the network. A template calls :func:`front_matter` to tell the report its period or subtitle.
"""

from __future__ import annotations

from pathlib import Path

#: Mime type of the front-matter message (read by the export, never shown in a report).
FRONT_MATTER_MIME = "application/vnd.studylib.front-matter+json"

#: Fields a template may set in the report's front matter.
FRONT_MATTER_FIELDS = ("subtitle", "period", "summary", "layout")

#: Page layouts: ``report`` (title block, contents, sections) and ``brief`` (two pages for a
#: referral group: no contents, two columns, small type).
LAYOUTS = ("report", "brief")

FOLDER = Path(__file__).resolve().parent


def template_name() -> str:
    """The nbconvert template name of this folder (found under :func:`template_base`)."""
    return FOLDER.name


def template_base() -> Path:
    """The folder that holds this template (passed to nbconvert as an extra template base dir)."""
    return FOLDER.parent


def stylesheet() -> str:
    """The report's CSS (screen and print)."""
    return (FOLDER / "report.css").read_text()


def front_matter(**fields: object) -> None:
    """Tell the report its ``subtitle``, ``period`` or ``summary`` (call it from a template cell).

    ``summary`` takes safe sentences only (:func:`studylib.report.sentence`, one or a list);
    ``subtitle`` and ``period`` are words, where a number may only be a year; ``layout`` is
    one of :data:`LAYOUTS` (default ``report``). In JupyterLab it shows as a line of text; the
    exported report puts it in the title block.
    """
    unknown = sorted(set(fields) - set(FRONT_MATTER_FIELDS))
    if unknown:
        raise TypeError(f"front_matter() takes {', '.join(FRONT_MATTER_FIELDS)}; not {', '.join(unknown)}")
    from IPython.display import display

    from studylib.privacy.marker import MARKER_METADATA_KEY, marker_for
    from studylib.report.settings import current_settings

    values = {}
    for name, value in fields.items():
        if value is None:
            continue
        if name == "layout" and value not in LAYOUTS:
            raise ValueError(f"front_matter(layout=...) is one of {', '.join(LAYOUTS)}, not {value!r}")
        values[name] = _summary_text(value) if name == "summary" else _words(name, value)
    text = " · ".join(f"**{k}**: {v}" for k, v in values.items() if k != "layout")
    settings = current_settings()
    marker = marker_for("front-matter", settings.min_cell, settings.rounding, False, settings.zeros_disclosive)
    display({FRONT_MATTER_MIME: values, "text/markdown": text}, raw=True, metadata={MARKER_METADATA_KEY: marker})




def _words(name: str, value: object) -> str:
    text = str(value)
    from studylib.privacy.marker import NOT_A_YEAR

    if NOT_A_YEAR.search(text):
        raise ValueError(
            f"front_matter({name}=...): {text[:60]!r} holds a number that is not a year; numbers reach a report "
            "only through safe tables, statistics and sentences (summary=[sentence(...)])"
        )
    return text


def _summary_text(value: object) -> str:
    from studylib.report.sentences import SafeSentence

    sentences = [value] if isinstance(value, SafeSentence) else list(value) if isinstance(value, (list, tuple)) else None
    if sentences is None or not all(isinstance(s, SafeSentence) for s in sentences):
        raise TypeError(
            "front_matter(summary=...) takes safe sentences only (studylib.report.sentence(...), one or a list), "
            "so that every number in it is a published cell"
        )
    return " ".join(s.text for s in sentences)
