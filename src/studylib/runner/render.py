"""Notebooks outside the batch: prepared for JupyterLab, or made elsewhere and rendered in the house style.

:func:`prepare_notebook` writes a report's notebook with its parameters injected and nothing
executed (papermill's ``--prepare-only``), for a researcher to run cell by cell in JupyterLab.

:func:`render_notebook` takes a notebook executed with plain papermill (or in JupyterLab) and
does what the runner does after execution: the disclosure audit (strict, with the dataset's key
and deny list when known, :mod:`studylib.runner.gate`), the HTML page and the PDF in the house
style (:mod:`studylib.runner.export`), the audit of those. A notebook that fails the audit is
refused and nothing is written; otherwise each file is written beside under a temporary name and
renamed into place, so a reader never finds half a page.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from studylib.data.atomic import write_file
from studylib.errors import StudylibError
from studylib.runner.study import DATA_PARAMETER, Report

FORMATS = ("html", "pdf")


class RenderError(StudylibError):
    """The notebook cannot be rendered (not a notebook, not executed, no dataset to audit against)."""


class RenderRefused(StudylibError):
    """The disclosure audit found something: the notebook is not rendered."""

    def __init__(self, notebook: Path, findings: list[str]):
        self.findings = findings
        super().__init__(f"{notebook}: the disclosure audit failed, nothing was written: " + "; ".join(findings[:5])
                         + (f" (and {len(findings) - 5} more)" if len(findings) > 5 else ""))


def prepared_path(out: Path, report: Report) -> Path:
    """``<out>/<study>.ipynb``, or ``<out>/<study>/<combination>.ipynb`` for a matrix combination."""
    return Path(out) / f"{report.key}.ipynb"


def prepare_notebook(report: Report, out: Path) -> Path:
    """Write ``report``'s template with its parameters injected (not executed) into ``out``; return the path."""
    from studylib.runner.template import papermill_module

    pm = papermill_module()
    target = prepared_path(out, report)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".prepare-") as folder:
        nb = pm.execute_notebook(str(report.study.template), str(Path(folder) / target.name), parameters=dict(report.parameters),
                                 prepare_only=True, progress_bar=False, log_output=False)
    import nbformat

    write_file(target, nbformat.writes(nb) + "\n")
    return target


@dataclass(frozen=True)
class Rendered:
    """What :func:`render_notebook` wrote."""

    files: dict[str, Path]
    data: Path
    audit: dict


def _read_executed(notebook: Path):
    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)
    except FileNotFoundError:
        raise RenderError(f"{notebook}: no such notebook") from None
    except Exception as err:  # noqa: BLE001 - nbformat raises many kinds for a file that is not a notebook
        raise RenderError(f"{notebook}: not a notebook ({type(err).__name__}: {err})") from None
    code = [c for c in nb.cells if c.cell_type == "code"]
    if code and not any(c.get("execution_count") or c.get("outputs") for c in code):
        raise RenderError(f"{notebook}: not executed (no cell has run); run it first, e.g. papermill {notebook.name} out.ipynb")
    return nb


def notebook_dataset(nb) -> Path | None:
    """The dataset a papermill run was given (its ``data_dir`` parameter), if any."""
    value = nb.metadata.get("papermill", {}).get("parameters", {}).get(DATA_PARAMETER)
    return Path(value) if value else None


def _without_stderr(nb):
    """Warnings and other stderr never reach the page (the runner sends them to its log)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    return nb


def render_notebook(notebook: Path, out: Path | None = None, *, data: Path | None = None, min_cell: int = 5,
                    rounding: int = 0, formats: tuple[str, ...] = FORMATS, title: str | None = None) -> Rendered:
    """Audit an executed notebook and write its report page (``<out>/<name>.html``) and PDF (``.pdf``).

    ``data``: the dataset it read (default: its papermill ``data_dir`` parameter, else the demo
    dataset), whose key and deny list the audit uses. Raises :class:`RenderRefused` when the audit
    finds anything (nothing written), :class:`RenderError` for a file that cannot be rendered.
    """
    import nbformat

    from studylib import paths
    from studylib.data.meta import is_dataset
    from studylib.runner import gate
    from studylib.runner.export import ReportPage, to_html, to_pdf
    from studylib.runner.provenance import data_identity, library_versions, sha256_file

    notebook = Path(notebook)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise RenderError(f"formats {', '.join(unknown) or '(none)'}: choose from {', '.join(FORMATS)}")
    nb = _without_stderr(_read_executed(notebook))
    data = Path(data or notebook_dataset(nb) or paths.demo_dataset_dir())
    if not is_dataset(data):
        raise RenderError(f"{data}: not a dataset folder; give the dataset the notebook read with --data")
    out = Path(out or notebook.parent)
    out.mkdir(parents=True, exist_ok=True)
    identity = data_identity(data)
    versions = library_versions()
    now = datetime.now(timezone.utc)
    parameters = nb.metadata.get("papermill", {}).get("parameters", {})
    page = ReportPage(
        study_id=notebook.stem, title=title or notebook.stem.replace("_", " ").capitalize(),
        date=now.date().isoformat(), created=now.isoformat(timespec="seconds"), min_cell=min_cell, rounding=rounding,
        kind="Notebook report", synthetic=identity["synthetic"],
        data_note=("Synthetic data: every person in this report is invented." if identity["synthetic"]
                   else "The centre's pseudonymised registration data."),
        provenance=[
            ("Notebook", f"{notebook.name} sha256 {sha256_file(notebook)}"),
            ("Data hash", f"sha256:{identity['content_hash']}" if identity["content_hash"] else "unknown"),
            ("Library", f"studylib {versions['studylib']} · nbconvert {versions['nbconvert']} · WeasyPrint {versions['weasyprint']}"),
            ("Rendered", now.isoformat(timespec="seconds")),
            ("Parameters", ", ".join(f"{k}={v!r}" for k, v in parameters.items() if k != DATA_PARAMETER) or "as executed"),
        ],
        generator=f"studylib {versions['studylib']}",
    )
    stage = Path(tempfile.mkdtemp(prefix=f".{notebook.stem}-render-", dir=out))
    try:
        nbformat.write(nb, stage / "notebook.ipynb")  # audited with the page, as the runner audits it; never published
        page_html = to_html(nb, page)
        (stage / "report.html").write_text(page_html)
        if "pdf" in formats:
            (stage / "report.pdf").write_bytes(to_pdf(page_html))
        verdict = gate.audit_report(stage, min_cell, data)
        if not verdict.passed:
            raise RenderRefused(notebook, verdict.findings)
        written = {}
        for fmt in formats:
            target = out / f"{notebook.stem}.{fmt}"
            os.replace(stage / f"report.{fmt}", target)  # the same file system: one rename each
            written[fmt] = target
        return Rendered(written, data, verdict.as_dict())
    finally:
        shutil.rmtree(stage, ignore_errors=True)
