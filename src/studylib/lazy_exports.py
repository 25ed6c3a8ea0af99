"""Lazy package exports: a package names its public objects and the module that holds each,
and the module is imported on first use (PEP 562), so importing a light part of a package
does not load pandas, scipy or matplotlib.
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable, Mapping


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """The ``__getattr__`` of ``package``: ``exports`` maps each public name to its module."""

    def __getattr__(name: str) -> object:
        if name in exports:
            return getattr(import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def lazy_dir(names: Mapping[str, object], exports: Mapping[str, str]) -> Callable[[], list[str]]:
    """The ``__dir__`` of a lazy package: its own names and every lazy export (tab completion sees them)."""

    def __dir__() -> list[str]:
        return sorted(set(names) | set(exports))

    return __dir__
