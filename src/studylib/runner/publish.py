"""Publishing into ``reports/``: atomic report folders, failure records, manifests and the index.

A report is assembled in a staging folder (``reports/.staging/<pid>-...``, same file
system) and only then swapped into ``reports/<id>/`` (or ``reports/<id>/<combination>/``)
with :func:`studylib.data.atomic.replace_folder` (one ``renameat2(RENAME_EXCHANGE)`` where the
system has it, else two renames that :func:`~studylib.data.atomic.recover` undoes after a crash). Readers see the old
report or the new one, never a mix, and the previous good report stays until the new one
is complete and audited. ``reports/index.html`` lists every study with its status.

A failed run's executed notebook and log may hold raw small tables, whole tokens or names:
they never enter ``reports/``. They go to the staff area, ``<state>/failed/<report>/`` (the
runner's private state folder beside the reports, mode 700), with ``failure.json``, which
also records the audit of both files; the public index says "failed, see the staff index"
and links none of them; ``<state>/failed/index.html`` (the staff index) does.

A published report keeps its executed notebook and log too, in ``<state>/runs/<report>/``
with ``run.json`` (the run, and the audit of both files): staff can see how the published
version was made. Reports whose study is gone are marked on the index (``orphan``, see
:mod:`studylib.runner.orphans`).
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
FAILED = "failed"  # the staff area's folder (inside the runner's state folder)
FAILURE = "failure.json"
RUNS = "runs"  # the executed notebook and log of each published report (inside the state folder)
RUN_RECORD = "run.json"
RUN_FILES = ("notebook.ipynb", "run.log")
STAFF_MODE = 0o700
STAGING = ".staging"
INDEX = "index.html"
REPORT_FILES = {"html": "report.html", "pdf": "report.pdf"}
#: The downloads the index links to (the data package lists every CSV and figure file).
DOWNLOAD_LINKS = {"tables.xlsx": "XLSX", "datapackage.json": "data package"}

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
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (one we may not signal counts as running); sends it nothing."""
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


def publish_report(stage: Path, reports: Path, key: str, state: Path | None = None) -> Path:
    """Swap the complete report in ``stage`` into ``reports/<key>`` (and drop its failure record from the staff area)."""
    target = reports / key
    replace_folder(stage, target)
    if state is not None:
        shutil.rmtree(staff_area(state) / key, ignore_errors=True)
    return target


def staff_area(state: Path) -> Path:
    """``<state>/failed``: the failed runs, for staff only (made mode 700 if missing; a symlink is refused)."""
    folder = Path(state) / FAILED
    folder.mkdir(parents=True, exist_ok=True, mode=STAFF_MODE)
    if folder.is_symlink() or not folder.is_dir():
        raise OSError(f"{folder}: the staff area must be a folder, not a link")
    Path(state).chmod(STAFF_MODE)
    folder.chmod(STAFF_MODE)
    return folder


def record_failure(stage: Path, state: Path, key: str) -> Path:
    """Swap ``stage`` (notebook, log, failure.json) into ``<state>/failed/<key>``; the good report stays."""
    target = staff_area(state) / key
    target.parent.mkdir(parents=True, exist_ok=True, mode=STAFF_MODE)
    replace_folder(stage, target)
    return target


def keep_run_files(stage: Path, state: Path) -> Path:
    """Move the executed notebook and log out of ``stage`` into a new folder of ``<state>/runs``,
    before ``stage`` is published; :func:`keep_run` puts it in place."""
    staff_area(state)  # the state folder is made private (mode 700) before anything is kept in it
    root = Path(state) / RUNS
    root.mkdir(exist_ok=True, mode=STAFF_MODE)
    (root / STAGING).mkdir(exist_ok=True, mode=STAFF_MODE)
    folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root / STAGING))
    for name in RUN_FILES:
        if (stage / name).exists():
            (stage / name).rename(folder / name)
    return folder


@contextmanager
def kept_run(stage: Path, state: Path, key: str) -> Iterator[Path]:
    """The executed notebook and log of a report being published, moved out of ``stage`` into the
    staff area's ``runs/``: in place as ``<state>/runs/<key>`` when the block ends (after the report
    was published), moved back into ``stage`` if it fails (the failure record keeps them then)."""
    folder = keep_run_files(stage, state)
    try:
        yield folder
    except BaseException:
        for name in RUN_FILES:
            if (folder / name).exists():
                (folder / name).rename(stage / name)
        raise
    else:
        try:
            keep_run(folder, state, key)
        except OSError:
            pass  # the report is published; only the staff copy of its run is missing
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def keep_run(folder: Path, state: Path, key: str) -> Path:
    """Swap a folder made by :func:`keep_run_files` into ``<state>/runs/<key>`` (the previous run's goes)."""
    target = Path(state) / RUNS / key
    target.parent.mkdir(parents=True, exist_ok=True, mode=STAFF_MODE)
    replace_folder(folder, target)
    shutil.rmtree(folder, ignore_errors=True)
    return target


def remove_stale_kept_runs(state: Path) -> None:
    """Folders of :func:`keep_run_files` left by processes that no longer run."""
    for folder in (Path(state) / RUNS / STAGING).glob("*"):
        pid = folder.name.split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


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
    kept_files: tuple[str, ...] = ()  # the published run's notebook and log in ``<state>/runs/<key>``
    orphan: str | None = None  # why no study file makes this report any more (see runner.orphans)

    @property
    def failure_audit(self) -> str:
        """What the audit of the failed run's files found: ``passed``, ``N findings`` or ``not audited``."""
        audit = (self.failure or {}).get("audit")
        if not isinstance(audit, dict):
            return "not audited"
        return "passed" if audit.get("passed") else f"{len(audit.get('findings', []))} findings"

    @property
    def last_success(self) -> str | None:
        return (self.manifest or {}).get("run", {}).get("finished")

    @property
    def status(self) -> str:
        failed_at = (self.failure or {}).get("time")
        if failed_at and (not self.last_success or failed_at > self.last_success):
            return "failed"
        return "ok" if self.manifest else "never run"


def report_state(reports: Path, key: str, title: str, state: Path | None = None) -> ReportState:
    """The report's published manifest and its failure record in the staff area (``state``: default beside the reports)."""
    from studylib.runner.release import default_state

    state = Path(state or default_state(reports))
    failed, kept = state / FAILED / key, state / RUNS / key
    files = tuple(sorted(p.name for p in failed.iterdir())) if failed.is_dir() else ()
    kept_files = tuple(sorted(p.name for p in kept.iterdir() if p.is_file())) if kept.is_dir() else ()
    return ReportState(key, title, read_json(reports / key / MANIFEST), read_json(failed / FAILURE), files, kept_files)


def _readable_time(iso: str | None) -> str:
    """``2026-11-28T13:59:54+00:00`` as ``2026-11-28 13:59`` (UTC)."""
    return iso[:16].replace("T", " ") if iso else "–"


def _run_links(folder: str, record: str, present) -> list[str]:
    """Links to a run's log, notebook and record in ``folder``, those of them that are there."""
    return [f'<a href="{folder}/{name}">{label}</a>' for name, label in
            (("run.log", "log"), ("notebook.ipynb", "notebook"), (record, "record")) if name in present]


def staff_index_html(states: list[tuple[str, str, list[ReportState]]], css: str, generated: str) -> str:
    """The staff index (``<state>/failed/index.html``): every failed run, why, its audit, and links to its files."""
    rows = []
    for study_id, title, reports in states:
        for state in reports:
            if not state.failure:
                continue
            key = html.escape(state.key)
            links = _run_links(key, FAILURE, state.failed_files)
            superseded = "" if state.status == "failed" else " (a later run published)"
            rows.append(
                f"<tr><td><strong>{html.escape(title)}</strong><br><code>{key}</code></td>"
                f'<td class="status-failed">{html.escape(_readable_time(state.failure.get("time")))}{superseded}<br>'
                f'<span class="note">{html.escape(str(state.failure.get("message", ""))[:600])}</span></td>'
                f"<td>{html.escape(state.failure_audit)}</td><td>{' · '.join(links) or '–'}</td></tr>"
            )
    body = "\n".join(rows) or '<tr><td colspan="4">No failed runs.</td></tr>'
    kept = []
    for study_id, title, reports in states:
        for state in reports:
            if not state.kept_files:
                continue
            key = html.escape(state.key)
            links = _run_links(f"../{RUNS}/{key}", RUN_RECORD, state.kept_files)
            kept.append(f"<tr><td><strong>{html.escape(title)}</strong><br><code>{key}</code></td>"
                        f"<td>{html.escape(_readable_time(state.last_success))}</td><td>{' · '.join(links)}</td></tr>")
    kept_body = "\n".join(kept) or '<tr><td colspan="3">No published runs kept.</td></tr>'
    main = f"""<table class="report-index">
<thead><tr><th>Study</th><th>Failed (UTC)</th><th>Audit of its files</th><th>Files</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
<h2>Published runs</h2>
<p>The executed notebook and log of each published report (its record holds their audit).</p>
<table class="report-index">
<thead><tr><th>Study</th><th>Published (UTC)</th><th>Files</th></tr></thead>
<tbody>
{kept_body}
</tbody>
</table>"""
    return _index_page("studylib failed runs (staff only)", "studylib · staff only", "Failed runs",
                       "Executed notebooks and logs of failed runs. They may hold raw small tables and\n"
                       "tokens: never publish or forward them. The audit column says what the disclosure audit found in them.",
                       main, css, generated)


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
            published = state.manifest.get("files", {}) if state.manifest else {}
            for name, label in DOWNLOAD_LINKS.items():
                if name in published:
                    links.append(f'<a href="{html.escape(state.key)}/{name}">{label}</a>')
            if state.manifest:
                links.append(f'<a href="{html.escape(state.key)}/{MANIFEST}">manifest</a>')
            status = "orphaned" if state.orphan else state.status
            reason = (f"{state.orphan}; `studylib prune` removes it" if state.orphan else
                      "the last run failed; see the staff index" if state.status == "failed" else "")
            css_class = {"ok": "status-ok", "failed": "status-failed", "orphaned": "status-failed"}.get(status, "status-never")
            rows.append(
                "<tr>"
                f"<td><strong>{html.escape(title)}</strong><br><code>{html.escape(study_id)}</code>"
                + (f" · {html.escape(sub)}" if sub else "")
                + "</td>"
                f'<td class="{css_class}">{html.escape(status)}'
                + (f'<br><span class="note">{html.escape(reason[:300])}</span>' if reason else "")
                + "</td>"
                f"<td>{html.escape(_readable_time(state.last_success))}</td>"
                f"<td>{' · '.join(links) or '–'}</td>"
                "</tr>"
            )
    body = "\n".join(rows) or '<tr><td colspan="4">No studies yet.</td></tr>'
    main = f"""<table class="report-index">
<thead><tr><th>Study</th><th>Status</th><th>Last success (UTC)</th><th>Files</th></tr></thead>
<tbody>
{body}
</tbody>
</table>"""
    return _index_page("studylib reports", "studylib", "Reports", "Every study, its last run and its published reports.",
                       main, css, generated)


def _index_page(title: str, kicker: str, heading: str, subtitle: str, main: str, css: str, generated: str) -> str:
    """The frame both index pages share: a self-contained page (no outside resources) in the report style."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{html.escape(title)}</title>
<style>
{css}
</style>
</head>
<body class="studylib-report">
<header class="report-head">
<p class="report-kicker">{html.escape(kicker)}</p>
<h1 class="report-title">{html.escape(heading)}</h1>
<p class="report-subtitle">{html.escape(subtitle)}</p>
<dl class="report-meta"><div><dt>Updated</dt><dd>{html.escape(_readable_time(generated))} UTC</dd></div></dl>
</header>
<main class="report-body">
{main}
</main>
</body>
</html>
"""


_alive = process_alive  # the name the tests of this module use
