"""Publishing mechanics on real folders, no kernel: staging, stale staging, swaps, state and index.

Every expectation is written out by hand here (file names, JSON text, the status of a report
from the times in its manifest and failure record, the links in the index), so a changed
comparison or a dropped link fails a case.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from studylib.runner import publish
from studylib.runner.publish import ReportState


def test_staging_is_a_fresh_folder_of_this_process_removed_on_every_way_out(tmp_path):
    with publish.staging(tmp_path, "au_pair/region=north") as folder:
        assert folder.parent == tmp_path / ".staging" and folder.is_dir()
        assert folder.name.startswith(f"{os.getpid()}-au_pair__region=north-")
        (folder / "report.html").write_text("x")
    assert not folder.exists()
    with pytest.raises(RuntimeError):
        with publish.staging(tmp_path, "k") as folder:
            raise RuntimeError("boom")
    assert not folder.exists() and (tmp_path / ".staging").is_dir()


def test_stale_staging_of_dead_processes_is_removed_and_live_ones_stay(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = tmp_path / ".staging"
    root.mkdir()
    mine, gone, odd = root / f"{os.getpid()}-a-x", root / f"{dead.pid}-b-y", root / "notapid-c"
    for folder in (mine, gone, odd):
        folder.mkdir()
        (folder / "f").write_text("x")
    assert publish.remove_stale_staging(tmp_path) == [gone]
    assert mine.is_dir() and odd.is_dir() and not gone.exists()
    assert publish.remove_stale_staging(tmp_path / "nothing-here") == []


def test_a_process_is_alive_or_not():
    assert publish._alive(os.getpid())
    assert publish._alive(1)  # init: alive, maybe not ours to signal
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not publish._alive(dead.pid)


def test_json_is_written_sorted_indented_and_read_back_or_none(tmp_path):
    path = tmp_path / "m.json"
    when = datetime(2026, 1, 2, 3, 4, 5)
    publish.write_json(path, {"b": 1, "a": {"d": when, "c": [1]}})
    assert path.read_text() == '{\n  "a": {\n    "c": [\n      1\n    ],\n    "d": "2026-01-02 03:04:05"\n  },\n  "b": 1\n}\n'
    assert publish.read_json(path) == {"a": {"c": [1], "d": "2026-01-02 03:04:05"}, "b": 1}
    (tmp_path / "bad.json").write_text("{not json")
    assert publish.read_json(tmp_path / "bad.json") is None
    assert publish.read_json(tmp_path / "missing.json") is None


def _folder(path, files: dict[str, str]):
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def test_publishing_swaps_the_whole_report_and_a_failure_goes_to_the_staff_area(tmp_path):
    reports, state = tmp_path / "reports", tmp_path / "state"
    first = _folder(tmp_path / "s1", {"report.html": "one", "manifest.json": "{}"})
    assert publish.publish_report(first, reports, "study") == reports / "study"
    assert (reports / "study" / "report.html").read_text() == "one"
    failed = _folder(tmp_path / "s2", {"failure.json": '{"time": "t"}', "run.log": "log"})
    assert publish.record_failure(failed, state, "study") == state / "failed" / "study"
    assert (reports / "study" / "report.html").read_text() == "one", "the good report stays"
    assert sorted(p.name for p in (state / "failed" / "study").iterdir()) == ["failure.json", "run.log"]
    assert not (reports / "study" / "failed").exists(), "nothing of a failed run lies under reports/"
    assert (state.stat().st_mode & 0o777) == 0o700
    second = _folder(tmp_path / "s3", {"report.html": "two"})
    publish.publish_report(second, reports, "study")
    assert sorted(p.name for p in (reports / "study").iterdir()) == ["report.html"], "the old report is gone"
    assert (reports / "study" / "report.html").read_text() == "two"


def test_now_is_utc_to_the_second():
    text = publish.now_iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", text)
    assert abs((datetime.fromisoformat(text) - datetime.now(timezone.utc)).total_seconds()) < 120


_OK = {"run": {"finished": "2026-05-01T10:00:00+00:00"}, "files": {"report.html": {}, "report.pdf": {}}}


@pytest.mark.parametrize(
    "manifest, failure, status",
    [
        (None, None, "never run"),
        (_OK, None, "ok"),
        (None, {"time": "2026-05-01T09:00:00+00:00"}, "failed"),
        (_OK, {"time": "2026-05-01T10:00:01+00:00"}, "failed"),  # failed after the last success
        (_OK, {"time": "2026-05-01T10:00:00+00:00"}, "ok"),  # not after it
        (_OK, {"time": "2026-05-01T09:59:59+00:00"}, "ok"),
        (_OK, {"message": "no time"}, "ok"),
        ({"files": {}}, {"time": "2026-05-01T09:00:00+00:00"}, "failed"),  # a manifest without a finish time
    ],
)
def test_a_reports_status_from_its_manifest_and_failure(manifest, failure, status):
    state = ReportState("k", "T", manifest, failure)
    assert state.status == status
    assert state.last_success == (manifest or {}).get("run", {}).get("finished")


def test_report_state_reads_the_folder(tmp_path):
    folder, failed = tmp_path / "k", tmp_path / "state" / "failed" / "k"
    folder.mkdir(parents=True)
    failed.mkdir(parents=True)
    publish.write_json(folder / "manifest.json", _OK)
    publish.write_json(failed / "failure.json", {"time": "2026-05-02T00:00:00+00:00"})
    (failed / "run.log").write_text("log")
    state = publish.report_state(tmp_path, "k", "Title", tmp_path / "state")
    assert state == ReportState("k", "Title", _OK, {"time": "2026-05-02T00:00:00+00:00"}, ("failure.json", "run.log"))
    assert publish.report_state(tmp_path, "none", "T", tmp_path / "state") == ReportState("none", "T", None, None, ())


def test_readable_time():
    assert publish._readable_time("2026-11-28T13:59:54+00:00") == "2026-11-28 13:59"
    assert publish._readable_time(None) == "–" and publish._readable_time("") == "–"


def test_the_index_lists_each_report_with_its_status_links_and_reason():
    failed = ReportState("s/region=n<1>", "T", _OK, {"time": "2026-06-01T00:00:00+00:00", "message": "x" * 400},
                         ("notebook.ipynb", "run.log"))
    ok = ReportState("s", "T", {"run": {"finished": "2026-05-01T10:00:00+00:00"}, "files": {"report.html": {}}}, None)
    never = ReportState("t", "Other & co", None, None)
    page = publish.index_html([("s", "Study <one>", [ok, failed]), ("t", "Other & co", [never])], "body{}", "2026-06-02T08:09:10+00:00")
    rows = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[1], re.S)
    assert len(rows) == 3
    assert rows[0] == ('<td><strong>Study &lt;one&gt;</strong><br><code>s</code></td><td class="status-ok">ok</td>'
                       '<td>2026-05-01 10:00</td><td><a href="s/report.html">HTML</a> · <a href="s/manifest.json">manifest</a></td>')
    key = "s/region=n&lt;1&gt;"
    assert rows[1] == (
        '<td><strong>Study &lt;one&gt;</strong><br><code>s</code> · region=n&lt;1&gt;</td>'
        '<td class="status-failed">failed<br><span class="note">the last run failed; see the staff index</span></td><td>2026-05-01 10:00</td>'
        f'<td><a href="{key}/report.html">HTML</a> · <a href="{key}/report.pdf">PDF</a> · <a href="{key}/manifest.json">manifest</a></td>'
    )
    assert "x" * 20 not in page and "failed/" not in page  # the public index says nothing of why, links nothing of it
    assert rows[2] == '<td><strong>Other &amp; co</strong><br><code>t</code></td><td class="status-never">never run</td><td>–</td><td>–</td>'
    assert "<style>\nbody{}\n</style>" in page and "<dd>2026-06-02 08:09 UTC</dd>" in page
    assert "default-src 'none'" in page


def test_an_index_without_studies_says_so():
    page = publish.index_html([], "", "2026-06-02T08:09:10+00:00")
    assert '<tr><td colspan="4">No studies yet.</td></tr>' in page


def test_a_failure_without_files_links_nothing_of_them():
    state = ReportState("k", "T", None, {"time": "2026-06-01T00:00:00+00:00", "message": "why"})
    page = publish.index_html([("k", "T", [state])], "", "2026-06-02T08:09:10+00:00")
    row = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[1], re.S)[0]
    assert row.endswith('<td class="status-failed">failed<br><span class="note">the last run failed; see the staff index</span></td><td>–</td><td>–</td>')
    assert "why" not in page
    assert json.dumps(state.failure)  # plain data


def test_asking_whether_a_process_is_alive_sends_it_nothing():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert publish._alive(child.pid)
        with pytest.raises(subprocess.TimeoutExpired):  # signal 0 only: the process must still run
            child.wait(timeout=1)
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user in a child")
def test_a_process_we_may_not_signal_is_alive():
    pid = os.fork()
    if pid == 0:  # the child becomes nobody, for whom init exists but may not be signalled
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os._exit(0 if publish._alive(1) else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_links_need_the_files_in_the_manifest_and_notes_only_for_failures():
    no_files = ReportState("k", "T", {"run": {"finished": "2026-05-01T10:00:00+00:00"}}, {"time": "2026-04-01T00:00:00+00:00", "message": "old"})
    quiet = ReportState("q", "T", None, {"time": "2026-06-01T00:00:00+00:00"})
    page = publish.index_html([("k", "T", [no_files]), ("q", "T", [quiet])], "", "2026-06-02T08:09:10+00:00")
    body = page.split("<tbody>\n")[1].split("\n</tbody>")[0]
    first, second = body.split("\n")
    assert first == ('<tr><td><strong>T</strong><br><code>k</code></td><td class="status-ok">ok</td>'
                     '<td>2026-05-01 10:00</td><td><a href="k/manifest.json">manifest</a></td></tr>')
    assert second == ('<tr><td><strong>T</strong><br><code>q</code></td><td class="status-failed">failed<br>'
                      '<span class="note">the last run failed; see the staff index</span></td><td>–</td><td>–</td></tr>')


def test_an_empty_index_has_one_row_saying_so():
    page = publish.index_html([], "", "2026-06-02T08:09:10+00:00")
    assert '<tbody>\n<tr><td colspan="4">No studies yet.</td></tr>\n</tbody>' in page


def test_a_stale_entry_that_cannot_be_removed_as_a_folder_does_not_stop_the_cleaning(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = tmp_path / ".staging"
    root.mkdir()
    (root / f"{dead.pid}-stray-file").write_text("not a folder")  # rmtree fails on it
    (root / f"{dead.pid}-folder").mkdir()
    removed = publish.remove_stale_staging(tmp_path)
    assert sorted(p.name for p in removed) == sorted([f"{dead.pid}-stray-file", f"{dead.pid}-folder"])
    assert not (root / f"{dead.pid}-folder").exists()
