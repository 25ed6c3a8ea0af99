"""Provenance of a report: hashes of its template, data and look, library versions, fingerprint.

The fingerprint of a report is one hash over everything that decides its content: the
template's bytes, the dataset's content hash, the parameters and matrix combination, the
disclosure settings, formats, title, the report's look and the library version. A report
whose fingerprint equals that of its last good report need not run again. Everything here
is cheap (no notebook, papermill or scipy import), so a run with nothing to do is fast.
"""

from __future__ import annotations

import hashlib
import json
import platform
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from studylib import __version__, paths
from studylib.data.meta import read_meta
from studylib.report import look
from studylib.runner.study import DATA_PARAMETER, Report

#: The report's look (:mod:`studylib.report.look`: importing it loads no pandas).
LOOK_FOLDER = look.FOLDER


_LIBRARIES = ("papermill", "nbclient", "nbconvert", "ipykernel", "weasyprint", "pandas", "matplotlib")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ledger_digest(folder: Path) -> str:
    """One sha256 over a release ledger folder (every file's relative path and content), as the
    manifest records it: pruning moves a ledger only while it is still the one its report published."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def canonical(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) for hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Versions of studylib and of the libraries that shape a report."""
    found = {"studylib": __version__, "python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


@lru_cache(maxsize=1)
def look_hash() -> str:
    """One hash over the report's look (nbconvert template and CSS)."""
    h = hashlib.sha256()
    for path in sorted(LOOK_FOLDER.iterdir()):
        if path.suffix in (".j2", ".css", ".json"):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def data_identity(folder: Path) -> dict[str, Any]:
    """What the manifest records of a dataset: content hash, schema version, whether it is synthetic.

    Only these fields: ``dataset.json`` may say more about how the data were made, and
    none of that belongs in a report's manifest.
    """
    meta = read_meta(folder)
    made_by = canonical(meta.get("made_by", {})).lower()
    synthetic = "synth" in made_by or paths_is_within(folder, paths.generated_dir())
    return {
        "path": str(folder),
        "content_hash": meta.get("content_hash"),
        "schema_version": meta.get("schema_version"),
        "synthetic": bool(synthetic),
        "as_at": str(meta.get("created") or "")[:10] or None,  # the day the dataset was written
    }


def paths_is_within(path: Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def template_hash(path: Path) -> str:
    """The hash of a template's content: its cells' types, sources and tags, and the kernel.

    Outputs, execution counts and other metadata are left out, so a template saved in
    JupyterLab after a run is still the same template."""
    try:
        notebook = json.loads(Path(path).read_text(encoding="utf-8"))
        cells = [[c.get("cell_type"), "".join(c.get("source", "")), sorted((c.get("metadata") or {}).get("tags", []))]
                 for c in notebook.get("cells", [])]
        kernel = (notebook.get("metadata") or {}).get("kernelspec", {}).get("name")
    except (OSError, ValueError, AttributeError):
        return sha256_file(path)
    return hashlib.sha256(canonical({"cells": cells, "kernel": kernel}).encode()).hexdigest()


def inputs_identity(paths) -> dict[str, str | None]:
    """Path -> sha256 of every input file a report read (None where the file is gone)."""
    out = {}
    for path in paths:
        try:
            out[str(path)] = sha256_file(Path(path))
        except OSError:
            out[str(path)] = None
    return out


def release_facts(study_file: Path) -> dict | None:
    """The project's release file (:mod:`studylib.runner.publisher`) as data, for the fingerprint."""
    from studylib.runner.publisher import read_release_info

    info = read_release_info(study_file)
    return None if info is None else info.model_dump()


def fingerprint(report: Report, template_sha256: str, data_hash: str) -> str:
    """The hash that decides whether a report must run again."""
    spec = report.study.spec
    parameters = {k: v for k, v in report.parameters.items() if k != DATA_PARAMETER}
    return hashlib.sha256(canonical({
        "template": template_sha256,
        "data": data_hash,
        "parameters": parameters,
        "disclosure": spec.disclosure.model_dump(),
        "formats": sorted(spec.formats),
        "release": release_facts(report.study.file),
        "title": report.title,
        "subtitle": spec.subtitle,
        "look": look_hash(),
        "studylib": __version__,
    }).encode()).hexdigest()
