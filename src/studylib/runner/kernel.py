"""The kernel of one report: its own sockets, its own folder, its own environment.

Many kernels start at once in one process (a batch) or on one machine (several batches).
Papermill's default TCP ports can collide (ZMQ "Address already in use"); a
:class:`StudyKernel` talks over IPC sockets inside a private temporary folder that only it
uses (created with ``mkdtemp``, removed afterwards), so two kernels can never pick the same
address. Its environment is built per kernel (:func:`kernel_environment`): the disclosure
settings and the study id reach the template as ``STUDYLIB_*`` variables, without touching
``os.environ`` of the shared process, and anything that looks like a secret is left out.

Running kernels are registered by a token so that a watchdog (report timeout) or a
cancelled batch can kill them from another thread.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from jupyter_client import AsyncKernelManager
from traitlets import Dict, List, Unicode

from studylib.runner import kernel_fork

#: Environment variables never passed to a kernel: a template must not see keys or passwords.
_SECRET = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.I)

_running: dict[str, "StudyKernel"] = {}
_running_lock = threading.Lock()


def kernel_environment(extra: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a kernel: ``base`` (default ``os.environ``) without secrets, plus ``extra``."""
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if not _SECRET.search(k)}
    env.update({"PYTHONHASHSEED": "0", "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


class StudyKernel(AsyncKernelManager):
    """An ipykernel on IPC sockets in a private folder, with a per-kernel environment and working folder."""

    kernel_folder = Unicode("", config=True, help="private folder for the connection file and IPC sockets")
    kernel_env = Dict(config=True, help="variables added to the kernel's environment")
    kernel_cwd = Unicode("", config=True, help="working folder of the kernel")
    report_token = Unicode("", config=True, help="registry token, so that the kernel can be killed from outside")
    preload = List(Unicode(), config=True, help="studylib modules a forked kernel finds loaded (the template's imports)")

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
        if self.kernel_cwd:
            kw["cwd"] = self.kernel_cwd
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        forks = kernel_fork.active()
        if forks is not None and forks.can_launch(kernel_cmd):
            await self._fork_kernel(forks, kernel_cmd, kw)
        else:
            await super()._async_launch_kernel(kernel_cmd, **kw)
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
            process = await asyncio.to_thread(forks.spawn, kernel_cmd, kw["env"], kw.get("cwd"), self.preload)
        except kernel_fork.KernelForkError as err:
            self.log.warning("%s; launching the kernel as a process of its own", err)
            await super()._async_launch_kernel(kernel_cmd, **kw)
            return
        provisioner = self.provisioner
        provisioner.process = process
        provisioner.pid = process.pid
        provisioner.pgid = process.pid  # the child is a session leader
        provisioner.cwd = kw.get("cwd") or os.getcwd()
        self._reconcile_connection_info(provisioner.connection_info)

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


@contextmanager
def kernel_folder() -> Iterator[Path]:
    """A private folder (mode 0700) for one kernel's connection file and sockets, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="studylib-kernel-", dir=_short_tempdir()))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
