"""The release: every table a batch publishes from one dataset lineage, protected together.

A reader holds every report, brief and export of a release, and the earlier releases still
out there, so the unit of disclosure control is the release (DESIGN section 4). Each report's
kernel records its tables in a ledger folder (:mod:`studylib.privacy.ledger`); this module
keeps those ledgers in the runner's private state, per lineage (a dataset folder and the
periods appended to it)::

    <state>/<lineage>/published/<report>/   the ledger of the report version now published
    <state>/<lineage>/history/<time>-<report>/  ledgers of versions published before

and, before anything of a batch is published, attacks the new tables together with every
ledger already out there (:func:`studylib.privacy.release.attack_release`). Where the
attacker wins it plans more suppressions (:func:`~studylib.privacy.release.protect_release`,
the tables already out there frozen), and the affected reports are executed again with that
plan (:class:`ReleaseGate`); a report that cannot be made safe is refused, naming the tables
and the cell. A cell once hidden in a published report stays hidden when the report is made
again (its plan starts from the cells its published version hid).

The state holds person tokens: it is never under ``reports/`` and never published.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from studylib.data.atomic import replace_folder

PUBLISHED = "published"
HISTORY = "history"
MAX_ROUNDS = 4


def default_state(reports: Path) -> Path:
    """The runner's private state beside (never inside) the reports folder."""
    return Path(reports).resolve().parent / ".studylib-state"


def lineage(data: Path) -> str:
    """The lineage of a dataset: its folder (appended periods are ingested into the same folder)."""
    return hashlib.sha256(str(Path(data).resolve()).encode()).hexdigest()[:16]


def _folder_name(key: str) -> str:
    return key.replace("/", "__")


@dataclass
class Stored:
    """Where a lineage's ledgers live."""

    root: Path

    def published(self, key: str) -> Path:
        return self.root / PUBLISHED / _folder_name(key)

    def frozen_folders(self) -> list[Path]:
        """Every ledger already out there: the published versions and the history."""
        folders = []
        for parent in (self.root / PUBLISHED, self.root / HISTORY):
            if parent.is_dir():
                folders += sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
        return folders

    def publish(self, key: str, ledger: Path) -> None:
        """Make ``ledger`` the published version of ``key``; the previous one joins the history.

        Under a file lock, so that batches and cluster workers that publish at once keep every version."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._publish(key, ledger)

    def _publish(self, key: str, ledger: Path) -> None:
        target = self.published(key)
        previous = target.exists()
        if previous:
            history = self.root / HISTORY
            history.mkdir(parents=True, exist_ok=True)
            keep = history / f"{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns()}-{_folder_name(key)}"
            shutil.copytree(target, keep)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.parent / f".{target.name}.new"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(ledger, staged)
        replace_folder(staged, target)
        shutil.rmtree(staged, ignore_errors=True)


def initial_plan(stored: Stored, key: str) -> dict:
    """The cells the published version of a report hid (by table id and layout): they stay hidden."""
    from studylib.privacy.ledger import PlanEntry

    plan = {}
    for entry in entries_of([stored.published(key)]):
        hidden = np.flatnonzero(entry.hidden_array().ravel())
        if hidden.size:
            plan[entry.id] = PlanEntry(entry.signature, tuple(int(i) for i in hidden))
    return plan


def entries_of(folders: list[Path]):
    from studylib.privacy.ledger import read_ledger

    out = []
    for folder in folders:
        if folder.is_dir():
            out += read_ledger(folder)
    return out


def build_release(new: list, frozen: list, min_cell: int, zeros_disclosive: bool):
    """A :class:`~studylib.privacy.release.Release` over ledger entries (frozen ones get ``~`` ids).

    Each table keeps its entry's own ``min_cell`` (the one its report was protected with);
    ``min_cell`` stays the release's default (for a table built without one)."""
    from studylib.privacy.release import CountedTable, Release

    entries = [(e, False) for e in new] + [(e, True) for e in frozen]
    tokens = np.concatenate([np.asarray(e.persons, dtype=object) for e, _ in entries]) if entries else np.empty(0, dtype=object)
    codes, uniques = _factorize(tokens)
    tables, offset = [], 0
    for index, (entry, is_frozen) in enumerate(entries):
        n = len(entry.persons)
        cell = np.full(len(uniques), -1, dtype=np.int64)
        cell[codes[offset:offset + n]] = entry.cells
        offset += n
        hidden = entry.hidden_array()
        published = None if entry.published is None else np.asarray(entry.published, dtype=np.int64).reshape(entry.full_shape)
        table_id = f"~{index}~{entry.id}" if is_frozen else entry.id
        tables.append(CountedTable(id=table_id, shape=entry.shape, margins=entry.margins, cell=cell, hidden=hidden,
                                   rounding=entry.rounding, published=published, deviation=entry.deviation,
                                   labels=entry.labels, report=entry.report, min_cell=entry.min_cell))
    frozen_ids = frozenset(table.id for table in tables if table.id.startswith("~"))
    return Release(persons=len(uniques), tables=tuple(tables), min_cell=min_cell, zeros_disclosive=zeros_disclosive,
                   frozen=frozen_ids)


def _factorize(tokens: np.ndarray):
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(tokens, dtype=object))
    return codes, uniques


@dataclass
class Loss:
    """Information lost to disclosure control in one report: hidden inner cells and persons in them."""

    cells: int = 0
    hidden: int = 0
    persons: int = 0
    hidden_persons: int = 0

    def add(self, entry) -> None:
        shape = entry.shape
        hidden = entry.hidden_array()
        inner = hidden[tuple(slice(0, n) for n in shape)] if entry.margins else hidden
        counts = np.bincount(entry.cells, minlength=int(np.prod(shape))).reshape(shape)
        self.cells += int(np.prod(shape))
        self.hidden += int(inner.sum())
        self.persons += int(counts.sum())
        self.hidden_persons += int(counts[inner].sum())

    def as_dict(self) -> dict:
        share = self.hidden_persons / self.persons if self.persons else 0.0
        return {"cells": self.cells, "hidden_cells": self.hidden, "persons_counted": self.persons,
                "persons_in_hidden_cells": self.hidden_persons, "share_of_persons_hidden": round(share, 4)}

    def __str__(self) -> str:
        share = 100.0 * self.hidden_persons / self.persons if self.persons else 0.0
        return f"{self.hidden} of {self.cells} cells hidden, {share:.1f}% of the persons counted"


def loss_of(entries) -> Loss:
    loss = Loss()
    for entry in entries:
        loss.add(entry)
    return loss


# --- the gate every report of a batch passes before it is published ------------------------------


@dataclass
class Decision:
    action: str  # publish | rerun | refuse
    plan: dict = field(default_factory=dict)  # table id -> PlanEntry, for rerun
    message: str = ""
    seconds: float = 0.0


class LineageHold:
    """The release lock of a lineage (``<state>/<lineage>/.release.lock``, an ``flock``), held
    from an attack until every report it let through has left the gate (:attr:`keys`).

    Taking it waits for another process's batch that holds it; the system drops it if the
    holder dies, however it dies.
    """

    def __init__(self, root: Path):
        import fcntl

        root.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(root / ".release.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.keys: set[str] = set()

    def done(self, key: str) -> bool:
        """``key`` has left the gate; True (and the lock let go) if it was the last one held for."""
        if key not in self.keys:
            return False
        self.keys.discard(key)
        if self.keys:
            return False
        self.release()
        return True

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class _Arrival:
    key: str
    lineage: str
    ledger: Path
    min_cell: int
    zeros_disclosive: bool
    event: threading.Event = field(default_factory=threading.Event)
    decision: Decision | None = None
    rounds: int = 0


class Gate(Protocol):
    """What a report's run asks of its batch's release gate: :class:`ReleaseGate` in the batch's
    process, :class:`RemoteGate` on a Dask worker."""

    state: Path

    def expect(self, keys) -> None: ...
    def leave(self, key: str) -> None: ...
    def initial_plan(self, key: str, lineage_id: str) -> dict: ...
    def decide(self, key: str, lineage_id: str, ledger: Path, min_cell: int, zeros_disclosive: bool,
               cancel: threading.Event | None = None) -> Decision: ...
    def published(self, key: str, lineage_id: str, ledger: Path) -> None: ...


class ReleaseGate:
    """Holds each report of a batch, once executed (its ledger complete), until the release is
    known safe. A report is exported and audited after the gate, once, in its last round.

    Every report that is to be made joins (:meth:`expect`); one that fails leaves
    (:meth:`leave`); one that is ready waits in :meth:`decide`. When every report still in
    the batch is waiting, the tables of each lineage are attacked together with what is
    already out there, and each report is told to publish, to run again with a plan, or that
    it is refused.

    Batches in other processes may publish from the same lineage at the same time: from the
    attack until the last report it let through has been published (or has failed), the gate
    holds the lineage's release lock (:class:`LineageHold`), so that another batch's attack
    sees everything this one publishes.
    """

    def __init__(self, state: Path):
        self.state = Path(state)
        self.lock = threading.Condition()
        self.expected: set[str] = set()
        self.waiting: dict[str, _Arrival] = {}
        self.holds: dict[str, LineageHold] = {}
        self.seconds = 0.0

    def stored(self, lineage_id: str) -> Stored:
        return Stored(self.state / lineage_id)

    def expect(self, keys) -> None:
        with self.lock:
            self.expected.update(keys)

    def leave(self, key: str) -> None:
        with self.lock:
            self.expected.discard(key)
            self.waiting.pop(key, None)
            for lineage_id, hold in list(self.holds.items()):
                if hold.done(key):
                    del self.holds[lineage_id]
            self._maybe_decide()

    def initial_plan(self, key: str, lineage_id: str) -> dict:
        """The cells the published version of this report hid: they stay hidden."""
        return initial_plan(self.stored(lineage_id), key)

    def decide(self, key: str, lineage_id: str, ledger: Path, min_cell: int, zeros_disclosive: bool,
               cancel: threading.Event | None = None) -> Decision:
        arrival = _Arrival(key, lineage_id, ledger, min_cell, zeros_disclosive)
        with self.lock:
            previous = self.waiting.get(key)
            arrival.rounds = previous.rounds + 1 if previous else 1
            self.waiting[key] = arrival
            self.expected.add(key)
            self._maybe_decide()
        while not arrival.event.wait(0.2):
            if cancel is not None and cancel.is_set():
                self.leave(key)
                return Decision("refuse", message="the batch was cancelled before the release was checked")
        return arrival.decision

    def published(self, key: str, lineage_id: str, ledger: Path) -> None:
        """The report was published: its ledger becomes the published version (the old one joins the history)."""
        with self.lock:
            self.stored(lineage_id).publish(key, ledger)

    # -- inside the lock

    def _maybe_decide(self) -> None:
        pending = [a for a in self.waiting.values() if a.decision is None]
        if not pending or set(self.expected) - set(a.key for a in pending):
            return
        started = time.monotonic()
        by_lineage: dict[str, list[_Arrival]] = {}
        for arrival in pending:
            by_lineage.setdefault(arrival.lineage, []).append(arrival)
        for lineage_id, arrivals in by_lineage.items():
            hold = self.holds.get(lineage_id) or LineageHold(self.state / lineage_id)
            try:
                decisions = self._decide_lineage(lineage_id, arrivals)
            except Exception as err:  # noqa: BLE001 - a failed check never publishes
                decisions = {a.key: Decision("refuse", message=f"the release check failed: {type(err).__name__}: {err}") for a in arrivals}
            for arrival in arrivals:
                arrival.decision = decisions[arrival.key]
            hold.keys |= {k for k, d in decisions.items() if d.action == "publish"}
            if hold.keys:
                self.holds[lineage_id] = hold
            else:
                hold.release()
        seconds = time.monotonic() - started
        self.seconds += seconds
        holding = rerunning = False
        for arrival in pending:
            if arrival.decision.action == "hold":
                arrival.decision = None  # waits, unchanged, for the reports that run again
                holding = True
                continue
            arrival.decision.seconds = seconds
            if arrival.decision.action == "rerun":
                rerunning = True
            else:
                self.waiting.pop(arrival.key, None)
                self.expected.discard(arrival.key)
            arrival.event.set()
        if holding and not rerunning:
            self._maybe_decide()  # the reports that were to change were refused: decide again without them

    def _decide_lineage(self, lineage_id: str, arrivals: list[_Arrival]) -> dict[str, Decision]:
        from studylib.privacy.ledger import PlanEntry, read_ledger
        from studylib.privacy.release import attack_release, protect_release

        keys = {a.key for a in arrivals}
        new = [e for a in arrivals for e in read_ledger(a.ledger)]
        frozen = entries_of(self.stored(lineage_id).frozen_folders())
        min_cell = max(a.min_cell for a in arrivals)
        zeros = any(a.zeros_disclosive for a in arrivals)
        release = build_release(new, frozen, min_cell, zeros)
        verdict = attack_release(release)
        if bool(verdict["safe"].all()):
            return {k: Decision("publish") for k in keys}
        frozen_masks = {t.id: t.hidden for t in release.tables if t.id.startswith("~")}
        plan = protect_release(release, frozen=frozen_masks)
        refused_reports = set()
        for message in plan.refused:
            refused_reports |= {k for k in keys if k in message}
        signatures = {e.id: e.signature for e in new}
        reports_of = {e.id: e.report for e in new}
        plans: dict[str, dict] = {}
        for table_id, mask in plan.hidden.items():
            if table_id.startswith("~") or table_id not in reports_of:
                continue
            plans.setdefault(reports_of[table_id], {})[table_id] = PlanEntry(
                signatures[table_id], tuple(int(i) for i in np.flatnonzero(np.asarray(mask).ravel())))
        out = {}
        for arrival in arrivals:
            if plan.refused and (arrival.key in refused_reports or not refused_reports):
                out[arrival.key] = Decision("refuse", message="the release cannot be made safe: " + "; ".join(plan.refused[:3]))
            elif arrival.key in plans and arrival.rounds < MAX_ROUNDS:
                mine = plans[arrival.key]
                added = sum(len(plan.added.get(t, ())) for t in mine)
                shown = sum(len(plan.shown.get(t, ())) for t in mine)
                out[arrival.key] = Decision("rerun", plan=mine,
                                            message=f"{added} more cells to hide and {shown} hidden cells the release "
                                                    f"gives away to show")
            elif arrival.key in plans:
                out[arrival.key] = Decision("refuse", message=f"still unsafe after {MAX_ROUNDS} rounds of release protection")
            else:
                out[arrival.key] = Decision("hold")  # nothing to change here: waits for the others' re-runs
        if all(d.action == "hold" for d in out.values()):
            unsafe = verdict[~verdict["safe"]]
            first = unsafe.iloc[0]
            return {k: Decision("refuse", message=f"the release is unsafe at {first['table']} {first['cell']} and no plan changes it") for k in keys}
        return out


# --- the gate across processes: reports on a Dask cluster ---------------------------------------


def _decision_data(decision: Decision) -> dict:
    return {"action": decision.action, "message": decision.message, "seconds": decision.seconds,
            "plan": {k: [e.signature, list(e.hide)] for k, e in decision.plan.items()}}


def _decision_of(data: dict) -> Decision:
    from studylib.privacy.ledger import PlanEntry

    plan = {k: PlanEntry(sig, tuple(hide)) for k, (sig, hide) in data["plan"].items()}
    return Decision(data["action"], plan, data["message"], data["seconds"])


class GateServer:
    """The batch's side of a gate for reports on a Dask cluster: it reads the workers' requests
    from a Dask ``Queue`` and answers each through a Dask ``Variable`` (workers share the file
    system, so ledger folders are paths both sides can read)."""

    def __init__(self, gate: ReleaseGate, client, name: str):
        from distributed import Queue

        self.gate, self.client, self.name = gate, client, name
        self.queue = Queue(name, client=client)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._pump, name="studylib-release-gate", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while not self.stop.is_set():
            try:
                message = self.queue.get(timeout=0.5)
            except Exception:  # noqa: BLE001 - a timeout: nothing asked
                continue
            if message["op"] == "leave":
                self.gate.leave(message["key"])
            elif message["op"] == "expect":
                self.gate.expect([message["key"]])
            elif message["op"] == "decide":
                threading.Thread(target=self._decide, args=(message,), daemon=True).start()

    def _decide(self, message: dict) -> None:
        from distributed import Variable

        decision = self.gate.decide(message["key"], message["lineage"], Path(message["ledger"]),
                                    message["min_cell"], message["zeros_disclosive"])
        Variable(f"{self.name}-{message['key']}", client=self.client).set({"seq": message["seq"], "decision": _decision_data(decision)})

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class RemoteGate:
    """A worker's side of the batch's gate (see :class:`GateServer`); the same calls as :class:`ReleaseGate`."""

    def __init__(self, state: Path, client, name: str):
        self.state, self.client, self.name = Path(state), client, name

    def stored(self, lineage_id: str) -> Stored:
        return Stored(self.state / lineage_id)

    def expect(self, keys) -> None:
        for key in keys:  # the batch expects every report it submitted; this is one back after waiting for its lock
            self._send({"op": "expect", "key": key})

    def initial_plan(self, key: str, lineage_id: str) -> dict:
        return initial_plan(self.stored(lineage_id), key)

    def _send(self, message: dict) -> None:
        from distributed import Queue

        Queue(self.name, client=self.client).put(message)

    def leave(self, key: str) -> None:
        self._send({"op": "leave", "key": key})

    def decide(self, key: str, lineage_id: str, ledger: Path, min_cell: int, zeros_disclosive: bool,
               cancel: threading.Event | None = None) -> Decision:
        import uuid

        from distributed import Variable

        seq = uuid.uuid4().hex
        self._send({"op": "decide", "key": key, "lineage": lineage_id, "ledger": str(ledger), "min_cell": min_cell,
                    "zeros_disclosive": zeros_disclosive, "seq": seq})
        answer = Variable(f"{self.name}-{key}", client=self.client)
        while True:
            try:
                value = answer.get(timeout=1)
            except Exception:  # noqa: BLE001 - not answered yet
                value = None
            if value and value.get("seq") == seq:
                return _decision_of(value["decision"])
            if cancel is not None and cancel.is_set():
                return Decision("refuse", message="the batch was cancelled before the release was checked")

    def published(self, key: str, lineage_id: str, ledger: Path) -> None:
        self.stored(lineage_id).publish(key, ledger)
