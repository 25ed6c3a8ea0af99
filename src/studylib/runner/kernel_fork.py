"""Report kernels forked from one preloaded process, so that a batch imports pandas once.

Every report kernel of a batch imports the same libraries (IPython, ipykernel, pandas,
pyarrow, matplotlib, studylib's report and privacy code): about 1.3 CPU-seconds each, most
of a small report's work. A :class:`KernelForks` server is started once per batch, with the
kernels' environment (secrets already stripped, never the batch's memory: it is a fresh
``python -m studylib.runner.kernel_fork``). It imports :data:`PRELOAD`, then forks one
child per report kernel; the child takes its own environment, working folder and session,
and runs ``ipykernel_launcher`` as a launched kernel would. Before forking a template's
kernel, the server also loads the studylib modules that the template imports
(:func:`studylib.runner.template.studylib_imports`), once for the whole batch; other
libraries a template imports are loaded by its kernel, as usual.

The batch talks to the server over its stdin and stdout (JSON lines). :class:`ForkedKernel`
looks like the :class:`subprocess.Popen` that jupyter_client would otherwise hold
(``poll``, ``wait``, ``send_signal``, ``kill``); the child's exit is seen through a pidfd
and its exit status comes from the server, which reaps it.

The server is non-dumpable (:func:`studylib.runner.sandbox.conceal`). A forked kernel, before
it runs anything of the template, restricts itself with the sandbox the batch sent
(:func:`studylib.runner.sandbox.restrict`: the files it may read and write) and gives up all
capabilities, so that neither its files nor ``/proc`` lead it to the key, as root or not.

When the batch goes away, so do the server and its kernels, at once: the server watches the
batch through a pidfd (also while it is still loading its libraries) and kernels are killed
by the kernel when the server ends (``PR_SET_PDEATHSIG``); a killed batch leaves nothing
running.

Set ``STUDYLIB_KERNEL_FORK=0`` to launch every kernel as a process of its own.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

from studylib.runner import sandbox
from studylib.runner.worker import LineWorker, WorkerGone, send, take_stdio

SWITCH = "STUDYLIB_KERNEL_FORK"

#: Imported before the first fork: what every report kernel needs. Not the inline backend
#: (``matplotlib_inline.backend_inline``): on import it registers its figure formatters with the
#: IPython shell, which the server does not have; imported in the kernel, it finds the kernel's
#: (tests/test_kernel_outputs.py compares a forked kernel's outputs with a launched one's).
PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "IPython.core.interactiveshell",
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "studylib.data.dataset",
    "studylib.demo",
    "studylib.privacy.disclosure",
    "studylib.report.tables",
    "studylib.report.figures",
    "studylib.report.statistics",
    "studylib.report.look",
    "studylib.report.guidance",
)

#: Catalogues read once by the server (each cached by file and modification time), so that a
#: kernel printing a checklist or the referral procedure does not parse them again.
WARM = ("studylib.indicators.catalogue:catalogue", "studylib.data.form_catalogue:form_catalogue")

_LAUNCHER = ("-m", "ipykernel_launcher")
KERNEL_NAME = "python3"  # the kernel spec whose command the server copies (its Python and interpreter options)
_STARTED_IN = os.getcwd()  # the server's folder, first on its sys.path (``python -m``)


class KernelForkError(RuntimeError):
    """The fork server could not start or could not fork a kernel."""


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether kernels are forked (default) or launched one process each (``STUDYLIB_KERNEL_FORK=0``)."""
    value = (os.environ if env is None else env).get(SWITCH, "1").strip().lower()
    return value not in {"0", "no", "false", "off"} and hasattr(os, "fork") and hasattr(os, "pidfd_open")


def launch_prefix(cmd: Sequence[str]) -> tuple[str, tuple[str, ...]] | None:
    """(Python, interpreter options) of an ipykernel launch command, or None if ``cmd`` is not one.

    ``[python, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", file]`` gives
    ``(python, ("-Xfrozen_modules=off",))``: a kernel can be forked from a server started
    with the same Python and the same options.
    """
    cmd = list(cmd)
    for i in range(1, len(cmd) - 1):
        if tuple(cmd[i:i + 2]) == _LAUNCHER:
            return os.path.abspath(cmd[0]), tuple(cmd[1:i])  # not realpath: a venv's python is a link to another
    return None


def spec_command(kernel_name: str = KERNEL_NAME) -> list[str] | None:
    """The launch command of a kernel spec, with ``python`` resolved as jupyter_client does; None if unknown."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = list(KernelSpecManager().get_kernel_spec(kernel_name).argv)
    except (NoSuchKernel, OSError, ValueError):
        return None
    if argv and argv[0] in {"python", f"python{sys.version_info[0]}"}:
        argv[0] = sys.executable
    return argv


# ----------------------------------------------------------------------------- the server


def _import(name: str) -> None:
    try:
        __import__(name)
    except Exception:  # noqa: BLE001 - a kernel that needs it will raise the error itself
        pass


def _warm(target: str) -> None:
    """Call ``module:function`` once, so that its cache is there in every kernel forked after."""
    import importlib

    module, _, function = target.partition(":")
    try:
        getattr(importlib.import_module(module), function)()
    except Exception:  # noqa: BLE001 - a kernel that needs it will raise the error itself
        pass


def serve(preload: Sequence[str] = PRELOAD) -> None:
    """Run the fork server on stdin/stdout until stdin closes (``python -m studylib.runner.kernel_fork``)."""
    requests, replies = take_stdio()  # kernels write stray output where a launched kernel would: stderr
    sandbox.conceal()
    batch = _watch_batch()
    with _ends_with_batch(batch):
        for name in preload:
            _import(name)
        for target in WARM:
            _warm(target)
    send(replies, {"ready": os.getpid()})
    children: set[int] = set()
    buffer = b""
    while True:
        readable, _, _ = select.select([requests, *([batch] if batch is not None else [])], [], [], 0.05)
        _reap(children, replies)
        if batch is not None and batch in readable:
            break  # the batch has ended (killed, even): so do its kernels
        if not readable:
            continue
        chunk = os.read(requests, 1 << 16)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            for name in request.get("preload", []):
                if name == "studylib" or name.startswith("studylib."):
                    _import(name)  # once for every kernel of the batch that needs it
            try:
                pid = _fork_kernel(request, (requests, replies))
            except Exception as err:  # noqa: BLE001 - reported to the batch, which launches normally
                send(replies, {"id": request.get("id"), "error": f"{type(err).__name__}: {err}"})
                continue
            children.add(pid)
            send(replies, {"id": request.get("id"), "pid": pid})
    for pid in children:  # the batch is gone: so are its kernels
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 5
    while children and time.monotonic() < deadline:
        _reap(children, None)
        time.sleep(0.02)
    os._exit(0)  # nothing to flush; skip tearing down the preloaded libraries


def _watch_batch() -> int | None:
    """A pidfd of the batch (this server's parent): readable once the batch has ended."""
    try:
        fd = os.pidfd_open(os.getppid())
    except OSError:
        return None
    if os.getppid() == 1:  # the batch ended before the pidfd was taken
        os._exit(1)
    return fd


@contextmanager
def _ends_with_batch(batch: int | None) -> Iterator[None]:
    """While the server loads its libraries (seconds), a thread ends it if the batch ends."""
    if batch is None:
        yield
        return
    stop_read, stop_write = os.pipe()

    def watch() -> None:
        readable, _, _ = select.select([batch, stop_read], [], [])
        if batch in readable:
            os._exit(1)

    watcher = threading.Thread(target=watch, name="studylib-batch-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        os.write(stop_write, b"x")
        watcher.join()  # no thread left when the server forks
        os.close(stop_read)
        os.close(stop_write)


def _reap(children: set[int], replies: int | None) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        if replies is not None:
            send(replies, {"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def _fork_kernel(request: dict, private_fds: tuple[int, ...]) -> int:
    argv = list(request["argv"])
    rules = request.get("sandbox")
    env = {str(k): str(v) for k, v in request["env"].items()}
    cwd = os.path.abspath(request.get("cwd") or os.getcwd())
    server = os.getpid()
    env["JPY_PARENT_PID"] = str(server)  # as jupyter_client sets it: the kernel ends if its parent (this server) does
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking with threads; the server's only threads are OpenBLAS's
        # and jemalloc's idle pools, which both re-create themselves in the child (pthread_atfork)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the kernel process from here on: never return into the server's loop
        for fd in private_fds:
            os.close(fd)
        sandbox.die_with_parent(server)
        os.setsid()
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        import tempfile

        tempfile.tempdir = None  # found again from the kernel's TMPDIR
        sandbox.reveal()  # the kernel holds nothing secret; its own /proc stays its own
        if rules is not None:
            _enter_sandbox(rules)
        if "numpy.random" in sys.modules:  # fork copies the global random state; reseed it as a new process would
            sys.modules["numpy.random"].seed()
        import ipykernel_launcher  # what ``python -m ipykernel_launcher`` would run, with its argv and path
        from ipykernel import kernelapp

        # the kernel app read JPY_PARENT_PID when the server imported it: name the parent explicitly
        after = next(i for i in range(len(argv)) if tuple(argv[i:i + 2]) == _LAUNCHER) + len(_LAUNCHER)
        sys.argv = [ipykernel_launcher.__file__, *argv[after:], f"--IPKernelApp.parent_handle={env['JPY_PARENT_PID']}"]
        _matplotlib_as_in(cwd)
        if sys.path and sys.path[0] in ("", _STARTED_IN):  # as ipykernel_launcher does; IPython adds '' (the cwd) back
            del sys.path[0]

        kernelapp.launch_new_instance()
        code = 0
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    return 0  # not reached


def _enter_sandbox(rules: dict) -> None:
    """Restrict this kernel to the files of ``rules`` and drop every capability (see the module docstring)."""
    try:
        sandbox.restrict(rules.get("read", []), rules.get("write", []))
    except sandbox.SandboxUnavailable as err:
        print(f"studylib: the report kernel runs without a file sandbox ({err}); "
              "only its environment is filtered", file=sys.stderr)
    sandbox.drop_capabilities()


def _matplotlib_as_in(cwd: str) -> None:
    """Matplotlib's settings as a kernel started in ``cwd`` would have read them on import.

    The server imported matplotlib in its own folder; a ``matplotlibrc`` in the kernel's
    folder comes first for a kernel launched there, so it is applied (over the defaults, as
    on import), and ``MPLBACKEND`` again after it.
    """
    matplotlib = sys.modules.get("matplotlib")
    rc = os.path.join(cwd, "matplotlibrc")
    if matplotlib is None or not os.path.isfile(rc):
        return
    matplotlib.rc_file(rc)
    if os.environ.get("MPLBACKEND"):
        matplotlib.rcParams["backend"] = os.environ["MPLBACKEND"]


def server_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The server's environment: the kernels' (``env``), with the backend ipykernel gives its kernels.

    ipykernel sets ``MPLBACKEND`` to the inline backend before a kernel imports matplotlib
    (unless it is set already); the server imports matplotlib, so it needs the same value.
    """
    return {"MPLBACKEND": "module://matplotlib_inline.backend_inline", **env}


# ----------------------------------------------------------------------------- the client


class ForkedKernel:
    """A forked kernel process, with the part of :class:`subprocess.Popen` jupyter_client uses."""

    stdin = stdout = stderr = None

    def __init__(self, forks: "KernelForks", pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._forks = forks
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except OSError:  # already gone
            self._pidfd = None

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        if self._pidfd is not None and not select.select([self._pidfd], [], [], 0)[0]:
            return None
        self.returncode = self._forks.exit_status(self.pid)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
            time.sleep(0.05)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class KernelForks:
    """A fork server for one batch's kernels (see the module docstring). Use as a context manager."""

    def __init__(self, env: Mapping[str, str], kernel_cmd: Sequence[str] | None = None):
        """``kernel_cmd``: the kernels' launch command (default: the ``python3`` spec's), whose Python
        and interpreter options the server runs with; other kernels are launched as usual."""
        prefix = launch_prefix(kernel_cmd or spec_command() or [sys.executable, *_LAUNCHER])
        if prefix is None:
            raise KernelForkError(f"not an ipykernel launch command: {kernel_cmd}")
        self.prefix = prefix
        self._exits: dict[int, int] = {}
        self._spawned: set[int] = set()
        self._worker = LineWorker("studylib.runner.kernel_fork", server_environment(env), python=prefix[0],
                                  options=prefix[1], new_session=True, on_event=self._event)

    @property
    def pid(self) -> int:
        """The server's process id (the parent of every forked kernel)."""
        return self._worker.process.pid

    def __enter__(self) -> "KernelForks":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def can_launch(self, cmd: Sequence[str]) -> bool:
        """Whether ``cmd`` launches ipykernel with the server's Python and options (else it is launched as usual)."""
        return self._worker.alive and launch_prefix(cmd) == self.prefix

    def spawn(self, cmd: Sequence[str], env: Mapping[str, str], cwd: str | os.PathLike | None,
              preload: Sequence[str] = (), timeout: float = 60.0, sandbox: Mapping[str, Sequence[str]] | None = None) -> ForkedKernel:
        """Fork a kernel running ``cmd`` (an ipykernel launch) with ``env`` in ``cwd``.

        ``preload``: studylib modules to load in the server first (the template's imports).
        ``sandbox``: ``{"read": [...], "write": [...]}``, the files the kernel may reach
        (:func:`studylib.runner.sandbox.restrict`); None: no file sandbox.
        """
        request = {"argv": list(cmd), "env": dict(env), "cwd": str(cwd) if cwd else None, "preload": list(preload),
                   "sandbox": None if sandbox is None else {k: [str(p) for p in v] for k, v in sandbox.items()}}
        try:
            reply = self._worker.request(request, timeout)
        except WorkerGone as err:
            raise KernelForkError(str(err)) from err
        if "error" in reply:
            raise KernelForkError(f"could not fork a kernel: {reply['error']}")
        pid = int(reply["pid"])
        self._spawned.add(pid)
        return ForkedKernel(self, pid)

    def exit_status(self, pid: int, wait: float = 1.0) -> int:
        """The exit status of a forked kernel that has ended (as the server reports it)."""
        self._worker.wait_quietly(lambda: pid in self._exits, wait)
        return self._exits.pop(pid, -signal.SIGKILL)

    def close(self) -> None:
        """Stop the server (its kernels are killed if any still run)."""
        self._worker.close()
        for pid in list(self._spawned):  # normally all ended; a server that was killed leaves none behind
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass

    def _event(self, message: dict) -> None:
        if "exited" in message:
            pid = int(message["exited"])
            self._exits[pid] = int(message["status"])
            self._spawned.discard(pid)


_active: list[KernelForks] = []
_active_lock = threading.Lock()


def active() -> KernelForks | None:
    """The fork server the current batch started, if any."""
    with _active_lock:
        return _active[-1] if _active else None


@contextmanager
def batch_forks(env: Mapping[str, str]) -> Iterator[KernelForks | None]:
    """Start a fork server for a batch (when :func:`enabled`) and make it :func:`active`; None if there is none."""
    forks = None
    if enabled():
        try:
            forks = KernelForks(env)
        except (OSError, KernelForkError):
            forks = None
    if forks is None:
        yield None
        return
    with _active_lock:
        _active.append(forks)
    try:
        yield forks
    finally:
        with _active_lock:
            _active.remove(forks)
        forks.close()


if __name__ == "__main__":
    serve()
