"""The release gate across batches: two batches that publish from one lineage at once.

Ledgers are built by hand here (no kernels), so that the order of events is the test's:
one batch's attack has let a report through that is not yet published when the other
batch's attack starts.
"""

from __future__ import annotations

import threading

import numpy as np

from studylib.privacy.ledger import LedgerEntry, record
from studylib.runner.release import ReleaseGate


def _ledger(folder, report: str, counts: dict[str, int]):
    """A one-way table by sector, ``counts`` persons per sector (person tokens p0, p1, ... by sector)."""
    labels = tuple(counts)
    persons, cells = [], []
    for cell, (sector, n) in enumerate(counts.items()):
        persons += [f"p-{sector}-{i}" for i in range(n)]
        cells += [cell] * n
    entry = LedgerEntry(id="t1", report=report, kind="table", caption="Persons by sector", dims=("sector",),
                        labels=(labels,), margins=False, hidden=(False,) * len(labels),
                        persons=np.asarray(persons, dtype=object), cells=np.asarray(cells, dtype=np.int64))
    record(folder, entry)
    return folder


def test_a_second_batch_waits_for_the_first_to_publish_and_then_sees_its_tables(tmp_path):
    # alone, each table is safe (no cell under 5); together they give "3 in b outside the capital"
    nation = _ledger(tmp_path / "ledger-nation", "nation", {"a": 10, "b": 8})
    without = _ledger(tmp_path / "ledger-without", "without_capital", {"a": 10, "b": 5})
    state = tmp_path / "state"
    first, second = ReleaseGate(state), ReleaseGate(state)  # two batches (two processes: flock is per open file)
    first.expect(["nation"])
    assert first.decide("nation", "lin", nation, 5, False).action == "publish"

    answer = {}
    thread = threading.Thread(target=lambda: answer.setdefault("d", second.decide("without_capital", "lin", without, 5, False)))
    second.expect(["without_capital"])
    thread.start()
    thread.join(1.5)
    assert thread.is_alive(), "the second batch decided while the first one's report was not yet published"
    first.published("nation", "lin", nation)
    first.leave("nation")
    thread.join(30)
    assert not thread.is_alive()
    assert answer["d"].action == "rerun", answer["d"]  # it saw the published table and protects against it
    assert answer["d"].plan["t1"].hide  # cells to hide in its table
    second.leave("without_capital")


def test_a_report_let_through_that_fails_lets_the_next_batch_go(tmp_path):
    nation = _ledger(tmp_path / "ledger-nation", "nation", {"a": 10, "b": 8})
    without = _ledger(tmp_path / "ledger-without", "without_capital", {"a": 10, "b": 5})
    first, second = ReleaseGate(tmp_path / "state"), ReleaseGate(tmp_path / "state")
    first.expect(["nation"])
    assert first.decide("nation", "lin", nation, 5, False).action == "publish"
    first.leave("nation")  # failed while publishing: nothing of it is out there
    second.expect(["without_capital"])
    assert second.decide("without_capital", "lin", without, 5, False).action == "publish"
    second.leave("without_capital")
