"""The gate between a finished report and its publication: the disclosure audit.

:func:`audit_report` runs :mod:`studylib.privacy.audit` on everything a run produced (the
executed notebook, the HTML page, the PDF) in strict mode (only marked outputs: safe tables,
figures, statistics and sentences) with the study's minimum cell and, when it is
known, the key and the deny list (``STUDYLIB_KEY_FILE``, ``STUDYLIB_DENY_LIST`` or the
dataset's own ``<dataset>.denylist``; the demo key for the demo dataset), so that neither the key nor a person token nor a listed name can
slip through. The audit never runs weaker than it says: on real data, no key or a key whose
fingerprint is not the one the dataset recorded at ingest refuses the report
(:func:`studylib.privacy.pseudonymiser.audit_key_check`), and the manifest records the key
fingerprint the checks used. A report whose verdict is not ``passed`` is never published; the
manifest records the verdict (masked findings only, never the text found).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studylib import paths

KEY_VARIABLE = "STUDYLIB_KEY_FILE"
DENY_LIST_VARIABLE = "STUDYLIB_DENY_LIST"


@dataclass(frozen=True)
class Verdict:
    """The audit's verdict on one report."""

    passed: bool
    findings: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "passed" if self.passed else "failed"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, **self.record}


def audit_key(data: Path) -> tuple[Path | None, Path | None]:
    """The key file and deny list the audit may use for this dataset (never read by a kernel).

    The key: ``STUDYLIB_KEY_FILE``, or the demo key for the demo dataset. The deny list:
    ``STUDYLIB_DENY_LIST``, else the one ingest wrote beside the dataset (it needs the key).
    """
    from studylib.privacy.denylist import deny_list_path

    key = os.environ.get(KEY_VARIABLE)
    deny = os.environ.get(DENY_LIST_VARIABLE)
    beside = deny_list_path(data)
    default_deny = beside if beside.is_file() else None
    if key:
        return Path(key), Path(deny) if deny else default_deny
    demo_key = paths.demo_key_file()
    try:
        is_demo = data.resolve() == paths.demo_dataset_dir().resolve()
    except OSError:
        is_demo = False
    if is_demo and demo_key.is_file():
        return demo_key, Path(deny) if deny else default_deny
    return None, None


def audit_report(stage: Path, min_cell: int, data: Path) -> Verdict:
    """Audit every notebook, HTML page and PDF in a run's staging folder."""
    from studylib.privacy.audit import audit_path

    from studylib.privacy.pseudonymiser import AuditKeyError, audit_key_check

    key, deny_list = audit_key(data)
    try:
        strength = audit_key_check(data, key)
    except AuditKeyError as err:  # the audit would run weaker than it says: refuse instead
        message = f"the audit cannot run at full strength: {err}"
        return Verdict(False, [message], {"files": [], "findings": [], "counts": {"audit-key": 1}, "key": {"error": str(err)}})
    result = audit_path(stage, min_cell=min_cell, deny_list=deny_list, key=key, strict=True)
    record = result.as_dict()
    record.pop("status", None)
    record["key"] = strength.as_dict()
    prefix = f"{stage}{os.sep}"
    record["files"] = [f.removeprefix(prefix) for f in record["files"]]
    for finding in record["findings"]:
        finding["file"] = finding["file"].removeprefix(prefix)
    return Verdict(result.passed, [str(f).removeprefix(prefix) for f in result.findings], record)
