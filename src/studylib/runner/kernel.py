"""The kernel of one report: its own sockets, its own folder, its own environment.

Many kernels start at once in one process (a batch) or on one machine (several batches).
Papermill's default TCP ports can collide (ZMQ "Address already in use"); a
:class:`StudyKernel` talks over IPC sockets inside a private temporary folder that only it
uses (created with ``mkdtemp``, removed afterwards), so two kernels can never pick the same
address. Its environment is built per kernel (:func:`kernel_environment`): the disclosure
settings and the study id reach the template as ``STUDYLIB_*`` variables, without touching
``os.environ`` of the shared process. Only variables on an allow-list (:data:`ALLOWED`) reach
a kernel: a secret under a name nobody foresaw (``RT_DB_PASS``) stays out, and so do
``STUDYLIB_KEY_FILE`` and ``STUDYLIB_DENY_LIST``. What a kernel may read and write beyond that
is decided by :mod:`studylib.runner.sandbox` (its folder, the dataset, the ledger).

Kernel folders are named ``studylib-kernel-<batch pid>-*``; :func:`remove_stale_kernel_folders`
removes those of batches that no longer run (a killed batch cannot clean up).

Running kernels are registered by a token so that a watchdog (report timeout) or a
cancelled batch can kill them from another thread.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from studylib.runner.publish import process_alive

from jupyter_client import AsyncKernelManager
from traitlets import Dict, List, Unicode

from studylib.runner import kernel_fork, sandbox

#: The variables a kernel is given (exact names, or prefixes ending in ``*``); nothing else passes.
ALLOWED = (
    "PATH", "HOME", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR", "VIRTUAL_ENV", "CONDA_PREFIX", "JUPYTER_*", "IPYTHONDIR",
    "MPL*", "OPENBLAS_*", "OMP_*", "MKL_*", "XDG_*", "PYTHONPATH", "COVERAGE_*", "SOURCE_DATE_EPOCH", "TERM",
    "STUDYLIB_DISCLOSURE", "STUDYLIB_STUDY_ID", "STUDYLIB_REPORT", "STUDYLIB_LEDGER", "STUDYLIB_RELEASE_PLAN",
    "STUDYLIB_HOME", "STUDYLIB_KERNEL_FORK", "STUDYLIB_INPUTS",
)
#: Never passed, whatever the allow-list says: the audit's secrets.
NEVER = frozenset({"STUDYLIB_KEY_FILE", "STUDYLIB_DENY_LIST"})

_FOLDER_PREFIX = "studylib-kernel-"

_running: dict[str, "StudyKernel"] = {}
_running_lock = threading.Lock()


def allowed(name: str) -> bool:
    """Whether a variable of this name may reach a kernel (:data:`ALLOWED`, never :data:`NEVER`)."""
    if name in NEVER:
        return False
    return any(name == rule or (rule.endswith("*") and name.startswith(rule[:-1])) for rule in ALLOWED)


def kernel_environment(extra: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a kernel: the allowed variables of ``base`` (default ``os.environ``), plus ``extra``.

    ``extra`` is what the runner (trusted code) hands the kernel; a name of :data:`NEVER` in
    it (``STUDYLIB_KEY_FILE``) raises ``ValueError`` rather than reach a template.
    """
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if allowed(k)}
    env.update({"PYTHONHASHSEED": "0", "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    refused = sorted(k for k in extra if k in NEVER)
    if refused:
        raise ValueError(f"never given to a kernel: {', '.join(refused)} (the audit's secrets)")
    env.update({k: str(v) for k, v in extra.items()})
    return env


class StudyKernel(AsyncKernelManager):
    """An ipykernel on IPC sockets in a private folder, with a per-kernel environment and working folder."""

    kernel_folder = Unicode("", config=True, help="private folder for the connection file and IPC sockets")
    kernel_env = Dict(config=True, help="variables added to the kernel's environment")
    kernel_cwd = Unicode("", config=True, help="working folder of the kernel")
    report_token = Unicode("", config=True, help="registry token, so that the kernel can be killed from outside")
    preload = List(Unicode(), config=True, help="studylib modules a forked kernel finds loaded (the template's imports)")
    readable = List(Unicode(), config=True, help="folders the kernel may read besides the system's and its working folder (the dataset)")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.kernel_folder:
            raise ValueError("StudyKernel needs kernel_folder (a private temporary folder)")
        self.transport = "ipc"
        self.cache_ports = False
        self.connection_file = os.path.join(self.kernel_folder, "kernel.json")
        self.ip = os.path.join(self.kernel_folder, "ipc")

    async def _async_pre_start_kernel(self, **kw):
        kw["env"] = kernel_environment(self.kernel_env)
        private_tmp = os.path.join(self.kernel_folder, "tmp")
        os.makedirs(private_tmp, mode=0o700, exist_ok=True)
        kw["env"]["TMPDIR"] = private_tmp  # the sandbox lets the kernel write only in its folder
        # IPython's own folder too, unless the batch names one (``make coverage`` does): the user's
        # ~/.ipython may not exist yet (the sandbox forbids making it) and its startup scripts
        # would make a report depend on whose account ran it
        kw["env"].setdefault("IPYTHONDIR", os.path.join(self.kernel_folder, "ipython"))
        if self.kernel_cwd:
            kw["cwd"] = self.kernel_cwd
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        forks = kernel_fork.active()
        if forks is not None and forks.can_launch(kernel_cmd):
            await self._fork_kernel(forks, kernel_cmd, kw)
        else:
            await self._launch_sandboxed(kernel_cmd, kw)
        if self.report_token:
            with _running_lock:
                _running[self.report_token] = self

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        with _running_lock:
            if _running.get(self.report_token) is self:
                del _running[self.report_token]
        await super()._async_cleanup_resources(restart=restart)

    cleanup_resources = _async_cleanup_resources

    async def _fork_kernel(self, forks, kernel_cmd, kw) -> None:
        """Fork the kernel from the batch's preloaded process; launch it as usual if that fails."""
        try:
            process = await asyncio.to_thread(forks.spawn, kernel_cmd, kw["env"], kw.get("cwd"), self.preload,
                                              sandbox=self.sandbox_rules(kw["env"], kw.get("cwd")))
        except kernel_fork.KernelForkError as err:
            self.log.warning("%s; launching the kernel as a process of its own", err)
            await self._launch_sandboxed(kernel_cmd, kw)
            return
        provisioner = self.provisioner
        provisioner.process = process
        provisioner.pid = process.pid
        provisioner.pgid = process.pid  # the child is a session leader
        provisioner.cwd = kw.get("cwd") or os.getcwd()
        self._reconcile_connection_info(provisioner.connection_info)

    async def _launch_sandboxed(self, kernel_cmd, kw) -> None:
        """Launch the kernel as a process of its own, inside the same sandbox a forked kernel enters."""
        rules = self.sandbox_rules(kw["env"], kw.get("cwd"))
        await super()._async_launch_kernel(sandbox.launch_command(list(kernel_cmd), rules), **kw)

    def sandbox_rules(self, env: Mapping[str, str], cwd: str | None) -> dict[str, list[str]]:
        """What the kernel may read and write (:func:`studylib.runner.sandbox.kernel_rules`)."""
        read, write = sandbox.kernel_rules(self.kernel_folder, cwd, dict(env), self.readable)
        return {"read": read, "write": write}

    def kill_process(self) -> bool:
        """Kill the kernel process group at once (any thread); True if there was one."""
        provisioner = self.provisioner
        pid = getattr(provisioner, "pid", None)
        pgid = getattr(provisioner, "pgid", None)
        try:
            if pgid and pgid != os.getpgid(0):
                os.killpg(pgid, signal.SIGKILL)
            elif pid:
                os.kill(pid, signal.SIGKILL)
            else:
                return False
        except ProcessLookupError:
            return False
        return True


def kill_kernel(token: str) -> bool:
    """Kill the running kernel registered under ``token``; False if none runs."""
    with _running_lock:
        kernel = _running.get(token)
    return kernel.kill_process() if kernel else False


def running_tokens() -> list[str]:
    with _running_lock:
        return list(_running)


def _short_tempdir() -> str | None:
    """A temp root short enough for Unix socket paths (limit ~107 bytes)."""
    root = tempfile.gettempdir()
    return root if len(root) < 60 else ("/tmp" if os.path.isdir("/tmp") else None)


def remove_stale_kernel_folders(root: str | None = None) -> list[Path]:
    """Remove the kernel folders of batches that no longer run (``studylib-kernel-<pid>-*``)."""
    root = root or _short_tempdir()
    removed = []
    if not root:
        return removed
    for folder in Path(root).glob(f"{_FOLDER_PREFIX}*"):
        pid = folder.name[len(_FOLDER_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)) and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextmanager
def kernel_folder() -> Iterator[Path]:
    """A private folder (mode 0700) for one kernel's connection file and sockets, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{os.getpid()}-", dir=_short_tempdir()))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
