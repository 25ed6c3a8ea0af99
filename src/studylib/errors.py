"""The error types of studylib: every user-facing failure says where and what to fix."""

from __future__ import annotations

from dataclasses import dataclass, field


class StudylibError(Exception):
    """Base of every error that the command line reports as a message, not a traceback."""


@dataclass(frozen=True)
class Problem:
    """One validation finding: where it is (file or table, row, column or key) and what is wrong."""

    where: str
    rule: str
    row: int | None = None
    column: str | None = None
    value: object = None

    def __str__(self) -> str:
        parts = [self.where]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None:
            parts.append(f"column {self.column!r}")
        loc = ", ".join(parts)
        shown = "" if self.value is None else f" (value {str(self.value)[:60]!r})"
        return f"{loc}: {self.rule}{shown}"


@dataclass
class ValidationError(StudylibError):
    """Several problems found together (collected, not stopped at the first)."""

    problems: list[Problem] = field(default_factory=list)
    summary: str = "validation failed"

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"{self.summary}: {len(self.problems)} problem(s)"
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        return f"{head}\n{shown}{more}"


class ConfigError(StudylibError):
    """A configuration file (profile, study, catalogue) is malformed; the message names file and key."""
