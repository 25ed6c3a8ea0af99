"""The index pages: ``reports/index.html`` (every study and its reports) and the staff index.

:func:`write_index` rewrites both from what is on disk (and the study files, when given):
failed runs link only from the staff index; reports whose study is gone are marked orphaned
(:mod:`studylib.runner.orphans`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from studylib.data.atomic import write_file
from studylib.errors import StudylibError
from studylib.runner import publish
from studylib.runner.lock import report_lock
from studylib.runner.orphans import find_orphans
from studylib.runner.release import default_state
from studylib.runner.study import find_studies, read_study, reports_of


def _study_listing(studies_dir: Path | None) -> dict[str, tuple[str, list[str]]]:
    """Study id -> (title, report keys) from the study files, read leniently (for the index only)."""
    listing: dict[str, tuple[str, list[str]]] = {}
    for file in find_studies(studies_dir) if studies_dir and studies_dir.is_dir() else []:
        raw = None  # a file that is not even YAML is listed by its name
        try:
            raw = yaml.safe_load(file.read_text()) or {}
            study = read_study(file)
            keys = [r.key for r in reports_of(study)]
            listing[study.id] = (study.title, keys)
        except (StudylibError, yaml.YAMLError, OSError, AttributeError, TypeError):
            title = raw.get("title", file.stem) if isinstance(raw, dict) else file.stem
            listing[file.stem] = (str(title), [file.stem])
    return listing


def write_index(reports: Path, studies_dir: Path | None = None, state: Path | None = None) -> Path:
    """Rewrite ``reports/index.html`` from what is on disk (and the study files, if given), and the staff index.

    ``state``: the runner's private folder (default beside the reports), whose ``failed/``
    holds the failed runs; its ``index.html`` (staff only) links them, the public one never does.
    """
    from studylib.report import look

    state = state or default_state(reports)
    staff = state / publish.FAILED
    listing = _study_listing(studies_dir)
    for manifest_path in sorted([*reports.glob(f"*/{publish.MANIFEST}"), *reports.glob(f"*/*/{publish.MANIFEST}"),
                                 *staff.glob(f"*/{publish.FAILURE}"), *staff.glob(f"*/*/{publish.FAILURE}")]):
        record = publish.read_json(manifest_path) or {}
        study_id, key = record.get("study"), record.get("report")
        if not study_id or not key or key.startswith("."):
            continue
        title, keys = listing.get(study_id, (record.get("title", study_id), []))
        if key not in keys:
            keys = [*keys, key]
        listing[study_id] = (title, keys)
    orphans = {o.key: o.why for o in find_orphans(reports, studies_dir, state)}
    states = [(sid, title, [replace(publish.report_state(reports, k, title, state), orphan=orphans.get(k)) for k in keys])
              for sid, (title, keys) in sorted(listing.items())]
    generated = publish.now_iso()
    page = publish.index_html(states, look.stylesheet(), generated)
    path = reports / publish.INDEX
    with report_lock(reports, ".index", wait=60):
        write_file(path, page)
        if any(s.failure for _, _, group in states for s in group) or staff.is_dir() or (state / publish.RUNS).is_dir():
            write_file(publish.staff_area(state) / publish.INDEX, publish.staff_index_html(states, look.stylesheet(), generated))
    return path
