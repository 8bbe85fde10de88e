"""The log writer's status file and how the dashboard judges it (health.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from flowgate_addon import health
from flowgate_addon.store import LogWriter


def status(**changes) -> health.WriterStatus:
    return health.WriterStatus(**{"database": "flowgate.db", "updated": time.time(), **changes})


def test_a_writer_writing_normally_is_ok():
    assert health.assess(status(written=10, last_write_at=time.time())) == (
        "ok",
        "writing normally",
    )


def test_failing_writes_say_what_fails_and_what_waits():
    now = time.time()
    level, text = health.assess(
        status(waiting=42, last_error="database is locked", last_error_at=now, last_write_at=1)
    )
    assert level == "error"
    assert text == (
        "cannot write the log: database is locked; 42 rows waiting in memory, retried every second"
    )
    # A write that worked after the error: healthy again.
    assert health.assess(status(last_error="x", last_error_at=1, last_write_at=now))[0] == "ok"


def test_lost_rows_are_counted_by_cause():
    level, text = health.assess(status(dropped=1200, row_errors=2, lost_at_exit=3))
    assert level == "error"
    assert text == (
        "1,205 log rows lost (1,200 pushed out of a full backlog, 2 that could not be built, "
        "3 unwritten at shutdown)"
    )


def test_a_silent_writer_and_a_killed_one_are_warnings():
    level, text = health.assess(status(updated=time.time() - 120))
    assert level == "warning" and "has not reported for 120 s" in text
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    level, text = health.assess(status(pid=gone.pid))
    assert level == "warning" and "without a clean shutdown" in text


def test_status_files_are_read_whole_and_garbage_is_skipped(tmp_path):
    db = tmp_path / "flowgate.db"
    folder = health.status_dir(db)
    folder.mkdir()
    (folder / "broken.json").write_text("{not json")
    (folder / "alien.json").write_text(json.dumps({"unknown": 1}))
    health.StatusFile(db).write(status(written=7))
    [found] = health.read_all(db)
    assert found.written == 7 and found.updated > 0
    assert not list(folder.glob("*.tmp"))


def test_the_writer_reports_while_running_and_cleans_up_after_a_clean_stop(tmp_path):
    db = tmp_path / "flowgate.db"
    writer = LogWriter(db, lambda record: record, flush_interval=0.01)
    writer.start()
    writer.submit({"ts": "2026-12-01T00:00:00Z"})
    deadline = time.monotonic() + 10
    while not ((found := health.read_all(db)) and found[0].written == 1):
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    assert found[0].running and found[0].last_write_at
    writer.stop()
    assert health.read_all(db) == [] and not health.status_dir(db).exists()


def test_a_writer_that_lost_rows_leaves_its_report(tmp_path):
    db = tmp_path / "flowgate.db"

    def to_row(record):
        if record == "bad":
            raise ValueError("cannot build this row")
        return record

    writer = LogWriter(db, to_row, flush_interval=0.01)
    writer.start()
    writer.submit("bad")
    writer.submit({"ts": "2026-12-01T00:00:00Z"})
    writer.stop()
    [found] = health.read_all(db)
    assert not found.running and found.row_errors == 1 and found.written == 1
    assert health.assess(found) == ("error", "1 log row lost (1 that could not be built)")
