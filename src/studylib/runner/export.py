"""Export of an executed notebook: a self-contained HTML page without code, and its PDF.

:func:`to_html` cleans the notebook for readers (no code, no stderr, no empty cells, no
cells tagged ``remove-cell``), reads the template's front matter, renders it with our
nbconvert template (:mod:`studylib.report.look`), adds the table of contents and removes
anything active (scripts, external links to fetch). :func:`to_pdf` renders that same HTML
with WeasyPrint as tagged PDF (PDF/UA-1); the PDF's dates and identifier come from the page itself, so the same
HTML always gives the same PDF bytes.
"""

from __future__ import annotations

import copy
import hashlib
import os
import html
import re
import threading
from dataclasses import dataclass, field


from studylib.report import look

TOC_MARK = "<!--studylib:toc-->"

_exporter_lock = threading.Lock()
_shared: list = []


@dataclass(frozen=True)
class ReportPage:
    """What the page around the notebook's outputs says (title block, methods, provenance)."""

    study_id: str
    title: str
    date: str  # YYYY-MM-DD of the run
    created: str  # ISO time of the run (PDF creation date)
    min_cell: int
    rounding: int
    kind: str = "Study"
    subtitle: str | None = None
    period: str | None = None
    summary: str | None = None
    synthetic: bool = False
    data_note: str = ""
    provenance: list[tuple[str, str]] = field(default_factory=list)
    generator: str = "studylib"


def front_matter_of(nb) -> dict[str, str]:
    """The front matter a template sent with :func:`studylib.report.look.front_matter` (last value wins)."""
    found: dict[str, str] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if look.FRONT_MATTER_MIME in data:
                value = data[look.FRONT_MATTER_MIME]
                found.update({k: str(v) for k, v in dict(value).items() if k in look.FRONT_MATTER_FIELDS})
    return found


def reader_notebook(nb):
    """A copy of ``nb`` as readers see it: outputs only, no stderr, no front matter, no hidden cells."""
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if "remove-cell" in tags or "injected-parameters" in tags or "parameters" in tags:
            continue
        if cell.cell_type == "code":
            if "remove-output" in tags:
                continue
            outputs = [o for o in cell.outputs if _shown(o)]
            if not outputs:
                continue
            cell.outputs = outputs
        elif cell.cell_type == "raw":
            continue
        cells.append(cell)
    nb.cells = cells
    return nb


def _shown(output) -> bool:
    if output.output_type == "stream":
        return output.get("name") == "stdout" and output.get("text", "").strip() != ""
    if output.output_type == "error":
        return False
    data = output.get("data", {})
    if look.FRONT_MATTER_MIME in data:
        return False  # read into the title block, not shown again
    return bool(set(data) - {"application/vnd.jupyter.widget-view+json"})


def _exporter():
    """The one HTMLExporter of this process (building one reads and compiles the templates)."""
    with _exporter_lock:
        if not _shared:
            from nbconvert import HTMLExporter

            _shared.append(HTMLExporter(
                template_name=look.template_name(),
                extra_template_basedirs=[str(look.template_base())],
                exclude_input=True,
                exclude_input_prompt=True,
                exclude_output_prompt=True,
                embed_images=True,
                sanitize_html=False,
            ))
        return _shared[0]


def warm_up_html() -> None:
    """Build the exporter once, while the first kernels start."""
    _exporter()


def warm_up_pdf() -> None:
    """Load WeasyPrint and its fonts once, before the first report needs them."""
    to_pdf("<!DOCTYPE html><html><head><style>" + look.stylesheet() + "</style></head><body><p>studylib</p></body></html>")


def to_html(nb, page: ReportPage) -> str:
    """The report page for an executed notebook (self-contained; no code; no script)."""
    matter = front_matter_of(nb)
    page_fields = {
        **page.__dict__,
        "subtitle": page.subtitle or matter.get("subtitle"),
        "period": page.period or matter.get("period"),
        "summary": page.summary or matter.get("summary"),
        "layout": matter.get("layout") if matter.get("layout") in look.LAYOUTS else look.LAYOUTS[0],
        "css": look.stylesheet(),
    }
    exporter = _exporter()
    with _exporter_lock:  # one render at a time: an exporter keeps state while it renders
        body, _ = exporter.from_notebook_node(reader_notebook(nb), resources={"studylib": page_fields})
    body = strip_active_content(body)
    return body.replace(TOC_MARK, table_of_contents(body), 1)


_HEADING = re.compile(r"<h([23])\b[^>]*\bid=\"([^\"]+)\"[^>]*>(.*?)</h\1>", re.S | re.I)


def headings(page_html: str) -> list[tuple[int, str, str]]:
    """(level, id, text) of every h2/h3 with an id, in order (the contents title excluded)."""
    found = []
    for level, ident, inner in _HEADING.findall(page_html):
        text = html.unescape(re.sub(r"<[^>]+>", "", inner)).replace("¶", "").strip()
        if text:
            found.append((int(level), ident, text))
    return found


def table_of_contents(page_html: str) -> str:
    """An ordered list of the page's sections (h2) with their subsections (h3)."""
    items: list[str] = []
    open_sub = False
    for level, ident, text in headings(page_html):
        link = f'<a href="#{html.escape(ident, quote=True)}">{html.escape(text)}</a>'
        if level == 2:
            if open_sub:
                items.append("</ol></li>")
                open_sub = False
            elif items:
                items.append("</li>")
            items.append(f"<li>{link}")
        else:
            if not items:
                items.append("<li>")
            if not open_sub:
                items.append("<ol>")
                open_sub = True
            items.append(f"<li>{link}</li>")
    if items:
        items.append("</ol></li>" if open_sub else "</li>")
    return "<ol>" + "".join(items) + "</ol>"


_SCRIPT = re.compile(r"<script\b.*?</script\s*>", re.S | re.I)
_ACTIVE = re.compile(r"<(iframe|object|embed)\b.*?(</\1\s*>|/>)", re.S | re.I)
_LINK = re.compile(r"<link\b[^>]*>", re.I)
_EXTERNAL_SRC = re.compile(r"""\s(src|srcset|poster|data)\s*=\s*(["'])(https?:)?//[^"']*\2""", re.I)


def strip_active_content(page_html: str) -> str:
    """Remove scripts, embedded frames, stylesheet links and any source fetched from elsewhere."""
    page_html = _SCRIPT.sub("", page_html)
    page_html = _ACTIVE.sub("", page_html)
    page_html = _LINK.sub("", page_html)
    return _EXTERNAL_SRC.sub("", page_html)


#: WeasyPrint's tagged variant (structure tree, marked content, XMP metadata).
PDF_VARIANT = "pdf/ua-1"

#: The fixed time stamped into embedded fonts (2020-01-01), so that the same HTML gives the same PDF bytes.
_FONT_EPOCH = "1577836800"


def to_pdf(page_html: str) -> bytes:
    """Render the report page to PDF with WeasyPrint; the same HTML gives the same bytes."""
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    # fontTools stamps every embedded font subset with the time it was made unless
    # SOURCE_DATE_EPOCH is set: without it two renders a second apart differ
    os.environ.setdefault("SOURCE_DATE_EPOCH", _FONT_EPOCH)
    identifier = hashlib.sha256(page_html.encode()).hexdigest()[:32].encode()
    data_only = URLFetcher(allowed_protocols={"data"})  # a report fetches nothing from outside the page
    document = HTML(string=page_html, base_url=None, url_fetcher=data_only)
    # tagged (PDF/UA-1): headings, tables and figures' alt texts reach screen readers, as public bodies must offer
    return document.write_pdf(pdf_identifier=identifier, pdf_variant=PDF_VARIANT)

