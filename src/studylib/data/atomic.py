"""Atomic writes: a file or a folder appears whole under its name, or not at all.

Everything studylib writes for others to read (datasets, raw exports, deny lists, reports,
study files, stamps) goes through here: written under a temporary name in the same folder,
then renamed into place, so a reader or a crash never sees half of it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile
import uuid
from pathlib import Path


def write_file(path: str | os.PathLike, content: str | bytes, *, mode: int | None = None,
               encoding: str = "utf-8", newline: str | None = None, exclusive: bool = False) -> Path:
    """Write ``content`` to ``path`` atomically; ``mode`` (e.g. ``0o600``) is set before the rename.

    ``exclusive=True`` never replaces a file: it raises :class:`FileExistsError` when ``path``
    exists (the complete file is linked into place, so there is no moment when another
    process could create ``path`` in between, nor a half-written ``path``).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 600 until chmod
    try:
        if isinstance(content, bytes):
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
        else:
            with os.fdopen(fd, "w", encoding=encoding, newline=newline) as handle:
                handle.write(content)
        if mode is not None:
            os.chmod(tmp, mode)
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


_EXCHANGE = _renameat2()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically; False when the system or file system cannot."""
    if _EXCHANGE is None:
        return False
    rc = _EXCHANGE(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def replace_folder(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the complete folder ``new`` at ``target`` in one step; an older ``target`` is removed.

    Linux swaps the two with one ``renameat2(RENAME_EXCHANGE)``; elsewhere the old folder is
    moved aside (``.<name>.old-*``) and the new one renamed in, which :func:`recover` undoes
    after a crash between the two renames.
    """
    new, target = Path(new), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the old content
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def recover(target: Path) -> None:
    """After a crash between the two renames of :func:`replace_folder`: put the old folder back."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return
    olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds:
        os.rename(olds[-1], target)
