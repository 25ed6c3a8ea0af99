"""A helper process of a batch that answers requests as JSON lines on its stdin and stdout.

The batch starts two kinds: the kernel fork server (:mod:`studylib.runner.kernel_fork`) and
the finisher (:mod:`studylib.runner.finishing`). Both are ``python -m <module>`` started
afresh (never a fork of the batch, whose threads and locks would be copied; never
:mod:`multiprocessing`, which re-imports the caller's main script in the child). The
helper first says ``{"ready": ...}``; every request carries an ``id`` and gets one reply
with that ``id``; anything else it says is an event, handed to ``on_event``. A helper that
goes away fails the requests waiting for it with :class:`WorkerGone`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Callable, Mapping, Sequence


class WorkerGone(RuntimeError):
    """The helper process did not start, stopped, or did not answer in time."""


def send(fd: int, message: dict) -> None:
    """Write one message (helper side)."""
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def take_stdio() -> tuple[int, int]:
    """(requests, replies): the helper's private copies of stdin and stdout.

    stdin becomes /dev/null and stdout goes to stderr, so that nothing else the helper (or a
    process it forks) prints can garble the replies.
    """
    requests, replies = os.dup(0), os.dup(1)
    quiet = os.open(os.devnull, os.O_RDONLY)
    os.dup2(quiet, 0)
    os.dup2(2, 1)
    os.close(quiet)
    return requests, replies


class LineWorker:
    """The batch's end of one helper process."""

    def __init__(self, module: str, env: Mapping[str, str] | None = None, *, python: str = sys.executable,
                 options: Sequence[str] = (), new_session: bool = False, on_event: Callable[[dict], None] | None = None):
        self.module = module
        self._changed = threading.Condition()
        self._replies: dict[int, dict] = {}
        self._next = 0
        self._ready: dict | None = None
        self._closed = False
        self._ended = False  # its stdout closed: it will say nothing more
        self._on_event = on_event or (lambda message: None)
        self.process = subprocess.Popen(
            [python, *options, "-m", module], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=None if env is None else dict(env), cwd="/", start_new_session=new_session,
        )
        threading.Thread(target=self._read, name=f"studylib-{module.rsplit('.', 1)[-1]}", daemon=True).start()

    @property
    def alive(self) -> bool:
        return not self._closed and not self._ended and self.process.poll() is None

    def request(self, message: dict, timeout: float) -> dict:
        """Send ``message`` once the helper is ready and return its reply (``WorkerGone`` if it cannot)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._wait(lambda: self._ready is not None, deadline, "start")
            self._next += 1
            ident = self._next
            try:
                self.process.stdin.write((json.dumps({**message, "id": ident}) + "\n").encode())
                self.process.stdin.flush()
            except (OSError, ValueError) as err:
                raise WorkerGone(f"the {self.module} helper is gone: {err}") from err
            self._wait(lambda: ident in self._replies, deadline, "answer")
            return self._replies.pop(ident)

    def wait_quietly(self, condition: Callable[[], bool], seconds: float) -> None:
        """Wait up to ``seconds`` for ``condition`` (checked whenever the helper says something)."""
        with self._changed:
            deadline = time.monotonic() + seconds
            while not condition() and not self._ended and self.process.poll() is None:
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    return

    def close(self, grace: float = 2.0) -> None:
        """Close its stdin (its signal to stop); kill it if it has not stopped after ``grace`` seconds."""
        self._closed = True
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with self._changed:
            self._changed.notify_all()

    def _wait(self, condition: Callable[[], bool], deadline: float, what: str) -> None:
        while not condition():
            if self._closed or self._ended:  # ended: its last words are read, so a reply it sent is not lost
                raise WorkerGone(f"the {self.module} helper stopped")
            if not self._changed.wait(max(0.0, deadline - time.monotonic())) and not condition():
                raise WorkerGone(f"the {self.module} helper did not {what} in time")

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            with self._changed:
                if "ready" in message and self._ready is None:
                    self._ready = message
                elif "id" in message:
                    self._replies[int(message["id"])] = message
                else:
                    self._on_event(message)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()
