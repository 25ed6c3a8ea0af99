"""What a report kernel may reach: a Landlock sandbox, and the process flags of the batch's helpers.

A report kernel runs a template, which is code a researcher wrote; it must not reach the key,
the deny list or anything else of the batch's. Its environment is an allow-list
(:func:`studylib.runner.kernel.kernel_environment`); this module closes the two other ways:

- **Files.** Before a kernel runs, it restricts itself with Landlock (Linux 5.13+, an
  unprivileged LSM that holds for root too): it may read the Python installation, ``/usr``,
  ``/etc``, ``/proc``, ``/sys``, the template's folder and the dataset; it may write only its
  private kernel folder (sockets, ``TMPDIR``) and the ledger folder the runner gave it. A key
  file whose path the template is told stays unreadable, whatever the kernel's uid.
- **Other processes.** A Landlock domain may not ptrace-access a process outside it, and
  ``/proc/<pid>/environ`` and ``/proc/<pid>/mem`` require that access: the batch, the fork
  server, the finisher and other kernels (each in its own domain) are out of reach, as root
  and as a normal user. Signals to processes outside the domain are blocked too (ABI 6+).
  The helpers are also made non-dumpable (:func:`conceal`), so that even an unsandboxed
  process of the same user cannot read their environment or memory.

Without Landlock (an old kernel, or an LSM list without it) :func:`restrict` says so and the
kernel runs with the environment allow-list only; ``studylib`` logs that line to the run log.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Iterable

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS, _PR_SET_PDEATHSIG = 4, 38, 1
_RULE_PATH_BENEATH = 1
_CREATE_RULESET_VERSION = 1

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_WRITE_TREE = sum(1 << b for b in range(4, 13))  # remove dir/file, make char/dir/reg/sock/fifo/block/sym
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1

_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | _TRUNCATE | _IOCTL_DEV

#: Read (and execute) only: what every Python kernel needs, none of it the batch's.
SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt", "/proc", "/sys", "/run/systemd/resolve")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The Landlock ABI version this system offers; 0 if none."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = _libc()
    version = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def _handled(abi: int) -> int:
    rights = EXECUTE | WRITE_FILE | READ_FILE | READ_DIR | _WRITE_TREE
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    if abi >= 5:
        rights |= _IOCTL_DEV
    return rights


class SandboxUnavailable(OSError):
    """Landlock is not available here (or refused the ruleset)."""


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise SandboxUnavailable(err, f"landlock {what}: {os.strerror(err)}")
    return result


def restrict(read: Iterable[str | os.PathLike], write: Iterable[str | os.PathLike], devices: bool = True) -> int:
    """Restrict this process (and what it starts) to reading ``read`` and writing ``write``.

    ``read`` and ``write`` are files or folders (a folder covers everything beneath it);
    paths that do not exist are left out. The system folders of :data:`SYSTEM_READ`, the
    Python installation and ``/dev`` (read and write, for ``/dev/null`` and the like) are
    always added. Irreversible. Returns the Landlock ABI used; raises
    :class:`SandboxUnavailable` if the system has no Landlock.
    """
    abi = landlock_abi()
    if abi < 1:
        raise SandboxUnavailable(0, "this system has no Landlock (Linux 5.13+ with landlock in its LSM list)")
    libc = _libc()
    handled = _handled(abi)
    attr = _RulesetAttr(handled, 0, (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = _check(libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)), "create_ruleset")
    try:
        readable = [*SYSTEM_READ, *python_paths(), *read]
        for path in readable:
            _add(libc, ruleset, path, (EXECUTE | READ_FILE | READ_DIR) & handled)
        if devices:
            _add(libc, ruleset, "/dev", (READ_FILE | WRITE_FILE | READ_DIR | _IOCTL_DEV) & handled)
        for path in write:
            _add(libc, ruleset, path, handled)
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _check(libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _add(libc, ruleset: int, path: str | os.PathLike, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not there: nothing to allow
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS
        rule = _PathBeneathAttr(rights, fd)
        _check(libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)), f"add_rule {path}")
    finally:
        os.close(fd)


def python_paths() -> list[str]:
    """The Python installation and every folder on ``sys.path`` (the code a kernel imports)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths.update(p for p in sys.path if p and os.path.isdir(p))
    # never the whole file system: ``python -m`` started in / puts / first on sys.path
    return sorted(p for p in paths if os.path.realpath(p) != "/")


def matplotlib_folders(env: dict[str, str]) -> list[str]:
    """Matplotlib's configuration and font cache folders (read only) as a kernel with ``env`` finds them."""
    home = env.get("HOME", os.path.expanduser("~"))
    found = [env.get("MPLCONFIGDIR", ""),
             os.path.join(env.get("XDG_CONFIG_HOME", os.path.join(home, ".config")), "matplotlib"),
             os.path.join(env.get("XDG_CACHE_HOME", os.path.join(home, ".cache")), "matplotlib")]
    return [p for p in found if p]


def conceal() -> None:
    """Make this process non-dumpable: its ``/proc/<pid>/environ`` and ``mem`` become unreadable to others of its user."""
    if sys.platform.startswith("linux"):
        _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def reveal() -> None:
    """Undo :func:`conceal` (a kernel forked from a concealed server holds nothing secret)."""
    if sys.platform.startswith("linux"):
        _libc().prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)


def die_with_parent(parent: int) -> None:
    """Be killed (SIGKILL) when the parent thread ends; exit now if ``parent`` is already gone."""
    if sys.platform.startswith("linux"):
        import signal

        _libc().prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def kernel_rules(folder: str, cwd: str | None, env: dict[str, str], readable: Iterable[str]) -> tuple[list[str], list[str]]:
    """(read, write) for a report kernel: its folder, working folder, dataset, ledger and plan."""
    read = [*(p for p in (cwd,) if p), *readable, *matplotlib_folders(env)]
    plan = env.get("STUDYLIB_RELEASE_PLAN")
    if plan:
        read.append(plan)
    write = [folder]
    inputs = env.get("STUDYLIB_INPUTS")
    if inputs:  # the file where the kernel notes the configuration files it reads (studylib.inputs)
        Path(inputs).parent.mkdir(parents=True, exist_ok=True)
        Path(inputs).touch()
        write.append(inputs)
    ledger = env.get("STUDYLIB_LEDGER")
    if ledger:
        Path(ledger).mkdir(parents=True, exist_ok=True)
        write.append(ledger)
    return read, write


_PR_CAPBSET_DROP, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
_CAP_LAST = 63


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Give up every capability, for good: a kernel running as root is then root only by name.

    Without ``CAP_SYS_PTRACE`` it cannot read ``/proc/<pid>/environ`` or ``mem`` of a
    non-dumpable process (:func:`conceal`); without ``CAP_DAC_*`` it cannot read files of
    other users. The bounding set is emptied first, so that no program it starts gets any back.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = _libc()
    for cap in range(_CAP_LAST + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last capability this kernel knows
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(libc.capset(ctypes.byref(header), data), "capset")  # glibc's wrapper of the capset system call


def launch_command(cmd: list[str], rules: dict[str, list[str]]) -> list[str]:
    """``cmd`` (a kernel launched as a process of its own) run inside the sandbox of ``rules``."""
    import json

    return [sys.executable, "-m", "studylib.runner.sandbox", json.dumps(rules), "--", *cmd]


def _main(argv: list[str]) -> None:
    """``python -m studylib.runner.sandbox RULES -- COMMAND...``: restrict, drop capabilities, then run COMMAND."""
    import json

    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m studylib.runner.sandbox '{\"read\": [...], \"write\": [...]}' -- COMMAND [ARG...]")
    rules, command = json.loads(argv[0]), argv[2:]
    try:
        restrict(rules.get("read", []), rules.get("write", []))
    except SandboxUnavailable as err:
        print(f"studylib: the report kernel runs without a file sandbox ({err}); only its environment is filtered", file=sys.stderr)
    drop_capabilities()
    os.execvp(command[0], command)


if __name__ == "__main__":
    _main(sys.argv[1:])
