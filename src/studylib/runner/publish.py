"""Publishing into ``reports/``: atomic report folders, failure records, manifests and the index.

A report is assembled in a staging folder (``reports/.staging/<pid>-...``, same file
system) and only then swapped into ``reports/<id>/`` (or ``reports/<id>/<combination>/``)
with :func:`studylib.data.atomic.replace_folder` (one ``renameat2(RENAME_EXCHANGE)`` where the
system has it, else two renames that :func:`~studylib.data.atomic.recover` undoes after a crash). Readers see the old
report or the new one, never a mix, and the previous good report stays until the new one
is complete and audited. A failed run leaves its executed notebook, log and
``failure.json`` in ``<report>/failed/`` (swapped in the same way) and never touches the
good report beside it. ``reports/index.html`` lists every study with its status.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from studylib.data.atomic import replace_folder

MANIFEST = "manifest.json"
FAILED = "failed"
FAILURE = "failure.json"
STAGING = ".staging"
INDEX = "index.html"
REPORT_FILES = {"html": "report.html", "pdf": "report.pdf"}

@contextmanager
def staging(reports: Path, key: str) -> Iterator[Path]:
    """A fresh staging folder for ``key``, removed on exit unless it was published (moved)."""
    root = reports / STAGING
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{key.replace('/', '__')}-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale_staging(reports: Path) -> list[Path]:
    """Remove staging folders left by processes that no longer run (killed batches)."""
    removed = []
    for folder in (reports / STAGING).glob("*"):
        pid = folder.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def publish_report(stage: Path, reports: Path, key: str) -> Path:
    """Swap the complete report in ``stage`` into ``reports/<key>`` (dropping an old ``failed/``)."""
    target = reports / key
    replace_folder(stage, target)
    return target


def record_failure(stage: Path, reports: Path, key: str) -> Path:
    """Swap ``stage`` (notebook, log, failure.json) into ``reports/<key>/failed``; the good report stays."""
    target = reports / key / FAILED
    replace_folder(stage, target)
    return target


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- the index of all reports ------------------------------------------------------------------


@dataclass(frozen=True)
class ReportState:
    """What the reports folder says about one report."""

    key: str
    title: str
    manifest: dict | None
    failure: dict | None
    failed_files: tuple[str, ...] = ()

    @property
    def last_success(self) -> str | None:
        return (self.manifest or {}).get("run", {}).get("finished")

    @property
    def status(self) -> str:
        failed_at = (self.failure or {}).get("time")
        if failed_at and (not self.last_success or failed_at > self.last_success):
            return "failed"
        return "ok" if self.manifest else "never run"


def report_state(reports: Path, key: str, title: str) -> ReportState:
    folder = reports / key
    failed = folder / FAILED
    files = tuple(sorted(p.name for p in failed.iterdir())) if failed.is_dir() else ()
    return ReportState(key, title, read_json(folder / MANIFEST), read_json(failed / FAILURE), files)


def _readable_time(iso: str | None) -> str:
    """``2026-11-28T13:59:54+00:00`` as ``2026-11-28 13:59`` (UTC)."""
    return iso[:16].replace("T", " ") if iso else "–"


def index_html(states: list[tuple[str, str, list[ReportState]]], css: str, generated: str) -> str:
    """The index page: one row per report, grouped by study (id, title, reports)."""
    rows = []
    for study_id, title, reports in states:
        for state in reports:
            sub = state.key[len(study_id) + 1:] if state.key != study_id else ""
            links = []
            for fmt, name in REPORT_FILES.items():
                if state.manifest and name in state.manifest.get("files", {}):
                    links.append(f'<a href="{html.escape(state.key)}/{name}">{fmt.upper()}</a>')
            if state.manifest:
                links.append(f'<a href="{html.escape(state.key)}/{MANIFEST}">manifest</a>')
            if state.status == "failed":
                for name, label in (("run.log", "log"), ("notebook.ipynb", "notebook")):
                    if name in state.failed_files:
                        links.append(f'<a href="{html.escape(state.key)}/{FAILED}/{name}">{label}</a>')
            reason = (state.failure or {}).get("message", "") if state.status == "failed" else ""
            css_class = {"ok": "status-ok", "failed": "status-failed"}.get(state.status, "status-never")
            rows.append(
                "<tr>"
                f"<td><strong>{html.escape(title)}</strong><br><code>{html.escape(study_id)}</code>"
                + (f" · {html.escape(sub)}" if sub else "")
                + "</td>"
                f'<td class="{css_class}">{html.escape(state.status)}'
                + (f'<br><span class="note">{html.escape(reason[:300])}</span>' if reason else "")
                + "</td>"
                f"<td>{html.escape(_readable_time(state.last_success))}</td>"
                f"<td>{' · '.join(links) or '–'}</td>"
                "</tr>"
            )
    body = "\n".join(rows) or '<tr><td colspan="4">No studies yet.</td></tr>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>studylib reports</title>
<style>
{css}
</style>
</head>
<body class="studylib-report">
<header class="report-head">
<p class="report-kicker">studylib</p>
<h1 class="report-title">Reports</h1>
<p class="report-subtitle">Every study, its last run and its published reports.</p>
<dl class="report-meta"><div><dt>Updated</dt><dd>{html.escape(_readable_time(generated))} UTC</dd></div></dl>
</header>
<main class="report-body">
<table class="report-index">
<thead><tr><th>Study</th><th>Status</th><th>Last success (UTC)</th><th>Files</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
</main>
</body>
</html>
"""
