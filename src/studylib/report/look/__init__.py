"""The report's look: our nbconvert template, its print CSS, and the front matter a template sends.

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
FRONT_MATTER_FIELDS = ("subtitle", "period", "summary")

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

    In JupyterLab it shows as a line of text; the exported report puts it in the title block.
    """
    unknown = sorted(set(fields) - set(FRONT_MATTER_FIELDS))
    if unknown:
        raise TypeError(f"front_matter() takes {', '.join(FRONT_MATTER_FIELDS)}; not {', '.join(unknown)}")
    from IPython.display import display

    values = {k: str(v) for k, v in fields.items() if v is not None}
    text = " · ".join(f"**{k}**: {v}" for k, v in values.items())
    display({FRONT_MATTER_MIME: values, "text/markdown": text}, raw=True)
