"""Log retention: old rows pruned, the size cap kept, space given back, locks survived."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from flowgate_addon.config import ConfigError, load_settings
from flowgate_addon.retention import MB, cutoff_ts, file_bytes
from flowgate_addon.store import LogWriter, open_db

OLD = cutoff_ts(30)  # a month ago
NEW = cutoff_ts(0)


def row(item: tuple) -> dict:
    i, ts, text = item
    return {
        "ts": ts,
        "endpoint": "chat.completions",
        "provider": "openai",
        "routed_model": "gpt-4o",
        "status": 200,
        "prompt_tokens": 10,
        "cost_usd": 0.001,
        "latency_ms": 120.0,
        "caller": "ci",
        "session": f"{'old' if ts == OLD else 'new'}-session-{i % 3}",
        "prompt_hash": f"hash-{i}",
        "prompt": text,
    }


def fill(path: Path, items: list[tuple]) -> None:
    """Write rows through a writer without limits, as an older FlowGate would have."""
    writer = LogWriter(path, row, batch_size=1000, flush_interval=0.01)
    writer.start()
    for item in items:
        writer.submit(item)
    writer.stop()
    assert writer.status.written == len(items)


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def query(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_old_rows_sessions_and_prompts_are_pruned_hourly_rollups_kept(tmp_path):
    path = tmp_path / "log.db"
    fill(path, [(i, OLD, "old") for i in range(40)] + [(i, NEW, "new") for i in range(40, 50)])
    writer = LogWriter(path, row, flush_interval=0.01, retention_days=7, prune_interval=0.1)
    writer.start()
    wait_for(lambda: writer.pruner.passes >= 1)
    assert writer.pruned == 40
    # It keeps pruning, every interval: a late row that is already old goes too.
    writer.submit((50, OLD, "late"))
    writer.submit((51, NEW, "fresh"))
    wait_for(lambda: writer.pruned == 41)
    writer.stop()
    assert query(path, "SELECT prompt FROM requests ORDER BY id") == [("new",)] * 10 + [("fresh",)]
    sessions = {s for (s,) in query(path, "SELECT session FROM sessions")}
    assert sessions == {"new-session-0", "new-session-1", "new-session-2"}
    prompts = {p for (p,) in query(path, "SELECT prompt_hash FROM prompts")}
    assert prompts == {f"hash-{i}" for i in range(40, 50)} | {"hash-51"}
    # The hourly rollups keep the long-term totals, old hours included.
    usage = query(path, "SELECT hour, sum(requests) FROM usage_hourly GROUP BY hour ORDER BY hour")
    assert usage == [(OLD[:13], 41), (NEW[:13], 11)]
    assert query(path, f"SELECT * FROM callers_hourly WHERE hour = '{OLD[:13]}'")[0][3] == 41
    latency = f"SELECT sum(n) FROM latency_hourly WHERE hour = '{OLD[:13]}' AND kind = 'latency'"
    assert query(path, latency) == [(41,)]
    assert query(path, "PRAGMA auto_vacuum") == [(2,)]  # incremental from now on


def test_without_limits_nothing_is_pruned_or_rewritten(tmp_path):
    path = tmp_path / "log.db"
    fill(path, [(i, OLD, "old") for i in range(5)])
    writer = LogWriter(path, row, flush_interval=0.01, prune_interval=0.01)
    writer.start()
    time.sleep(0.1)
    writer.stop()
    assert writer.pruned == 0
    assert query(path, "SELECT count(*) FROM requests") == [(5,)]
    assert query(path, "PRAGMA auto_vacuum") == [(0,)]  # never converted


def test_the_size_cap_brings_the_file_back_under_it(tmp_path):
    path = tmp_path / "log.db"
    text = "x" * 10_000
    fill(path, [(i, NEW, f"{i}:{text}") for i in range(2500)])
    before = file_bytes(path)
    assert before > 20 * MB  # well over the cap
    writer = LogWriter(path, row, flush_interval=0.01, max_db_mb=10, prune_interval=0.2)
    writer.start()
    wait_for(lambda: writer.pruner.passes >= 1)
    first = file_bytes(path)
    assert first < 10 * MB
    assert 0 < writer.pruned < 2500
    # The newest rows are the ones kept.
    ids = query(path, "SELECT min(id), max(id), count(*) FROM requests")[0]
    assert ids[1] == 2500 and ids[2] == 2500 - writer.pruned and ids[0] == writer.pruned + 1
    assert query(path, "PRAGMA auto_vacuum") == [(2,)]

    # The log grows past the cap again; the next pass frees pages with incremental vacuum.
    for i in range(2500, 4000):
        writer.submit((i, NEW, f"{i}:{text}"))
    wait_for(lambda: writer.status.written == 1500)
    grown = file_bytes(path)
    assert grown > 10 * MB
    passes = writer.pruner.passes
    wait_for(lambda: writer.pruner.passes > passes + 1)
    second = file_bytes(path)
    writer.stop()
    assert second < 10 * MB
    assert query(path, "SELECT max(id) FROM requests") == [(4000,)]


def test_pruning_a_locked_database_is_retried_and_loses_no_rows(tmp_path):
    path = tmp_path / "log.db"
    fill(path, [(i, OLD, "old") for i in range(20)])
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # nobody else can write now
    writer = LogWriter(path, row, flush_interval=0.01, retention_days=7, prune_interval=0.1)
    writer.start()
    wait_for(lambda: writer.pruner.failures >= 1)
    assert writer.pruned == 0 and writer._thread.is_alive()
    for i in range(20, 30):
        writer.submit((i, NEW, "new"))
    time.sleep(0.05)
    blocker.rollback()
    blocker.close()
    wait_for(lambda: writer.pruned == 20 and writer.status.written == 10)
    writer.stop()
    assert writer.status.dropped == 0
    assert query(path, "SELECT count(*), min(prompt) FROM requests") == [(10, "new")]


def test_a_fresh_log_with_limits_is_incremental_at_once(tmp_path):
    path = tmp_path / "log.db"
    writer = LogWriter(path, row, flush_interval=0.01, max_db_mb=10)
    writer.start()
    wait_for(lambda: writer.pruner.passes >= 1)
    writer.submit((0, NEW, "new"))
    writer.stop()
    assert query(path, "PRAGMA auto_vacuum") == [(2,)]
    assert query(path, "SELECT count(*) FROM requests") == [(1,)]
    open_db(path).conn.close()  # and it still opens and migrates as usual


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("logging: {retention_days: 0}", "logging.retention_days"),
        ("logging: {retention_days: soon}", "logging.retention_days"),
        ("logging: {max_db_mb: 5}", "logging.max_db_mb"),
    ],
)
def test_invalid_limits_name_their_key(tmp_path, text, key):
    config = tmp_path / "flowgate.yaml"
    config.write_text(text + "\n")
    with pytest.raises(ConfigError, match=rf"line 1: {key}: "):
        load_settings(config)


def test_limits_are_read_from_the_config(tmp_path):
    config = tmp_path / "flowgate.yaml"
    config.write_text("logging:\n  retention_days: 30\n  max_db_mb: 500\n")
    settings = load_settings(config)
    assert (settings.logging.retention_days, settings.logging.max_db_mb) == (30, 500)
    defaults = load_settings(None).logging
    assert (defaults.retention_days, defaults.max_db_mb) == (None, None)
