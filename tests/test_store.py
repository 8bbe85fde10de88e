"""The background writer: batches, survives a locked database, loses nothing on stop."""

from __future__ import annotations

import sqlite3
import threading

from flowgate_addon.store import REQUEST_COLUMNS, LogWriter, open_db


def row(i: int) -> dict:
    return {
        "ts": f"2026-01-01T00:00:{i % 60:02d}.000Z",
        "endpoint": "chat.completions",
        "status": 200,
        "prompt": f"p{i}",
    }


def test_schema_is_migrated_once_and_in_wal(tmp_path):
    path = tmp_path / "x.db"
    db = open_db(path)
    assert set(db["requests"].columns_dict) == set(REQUEST_COLUMNS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.conn.close()
    db = open_db(path)  # re-opening applies nothing twice
    names = [r[0] for r in db.execute("SELECT name FROM _sqlite_migrations")]
    assert names == [
        "m001_requests",
        "m002_cache_write_tokens",
        "m003_routing",
        "m004_models",
        "m005_rollups",
        "m006_ranking_indexes",
        "m007_sessions_prompts",
        "m008_facet_indexes",
    ]


def test_a_database_from_the_first_schema_is_migrated(tmp_path):
    from flowgate_addon.store import migrations

    path = tmp_path / "old.db"
    import sqlite_utils

    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="m002_cache_write_tokens")
    db["requests"].insert({"ts": "2026-01-01T00:00:00.000Z", "prompt_tokens": 5})
    assert "cache_write_tokens" not in db["requests"].columns_dict
    db.conn.close()
    db = open_db(path)
    assert {"cache_write_tokens", "route", "route_fallback"} <= set(db["requests"].columns_dict)
    assert db.execute("SELECT prompt_tokens FROM requests").fetchall() == [(5,)]
    assert db["models"].pks == ["provider", "model"]


def test_rows_are_written_in_batches_off_the_caller_thread(tmp_path):
    seen_threads = set()

    def to_row(i: int) -> dict:
        seen_threads.add(threading.current_thread().name)
        return row(i)

    writer = LogWriter(tmp_path / "x.db", to_row, batch_size=50, flush_interval=0.01)
    writer.start()
    for i in range(1000):
        writer.submit(i)
    writer.stop()
    assert writer.status.written == 1000
    assert seen_threads == {"flowgate-writer"}
    count = sqlite3.connect(tmp_path / "x.db").execute("SELECT count(*) FROM requests")
    assert count.fetchone()[0] == 1000


def test_a_locked_database_delays_rows_but_loses_none(tmp_path):
    path = tmp_path / "x.db"
    open_db(path).conn.close()
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # nobody else can write now
    writer = LogWriter(path, row, batch_size=10, flush_interval=0.01)
    writer.start()
    writer._db.conn.execute("PRAGMA busy_timeout=10")
    for i in range(30):
        writer.submit(i)
    deadline = threading.Event()
    while writer.status.failed_writes == 0 and not deadline.wait(0.02):
        pass
    assert writer.status.failed_writes > 0 and writer.status.written == 0
    blocker.rollback()
    blocker.close()
    writer.stop()
    assert writer.status.written == 30 and writer.status.dropped == 0
    assert sqlite3.connect(path).execute("SELECT count(*) FROM requests").fetchone()[0] == 30


def test_a_bad_record_is_counted_not_fatal(tmp_path):
    def to_row(i: int) -> dict:
        if i == 3:
            raise ValueError("broken record")
        return row(i)

    writer = LogWriter(tmp_path / "x.db", to_row, flush_interval=0.01)
    writer.start()
    for i in range(6):
        writer.submit(i)
    writer.stop()
    assert (writer.status.written, writer.status.row_errors) == (5, 1)


def test_backlog_is_bounded_when_the_database_stays_broken(tmp_path):
    path = tmp_path / "x.db"
    writer = LogWriter(
        path, row, batch_size=1000, flush_interval=0.01, max_backlog=1000, final_retry_seconds=0.3
    )
    writer.start()
    writer._db.execute("DROP TABLE requests")  # every insert fails from now on
    for i in range(1500):
        writer.submit(i)
    writer.stop(timeout=10)
    assert writer.status.written == 0
    assert writer.status.dropped == 500


def test_every_facet_count_reads_a_covering_index(tmp_path):
    """The log browser's facet counts, filtered by another facet or not, never read rows."""
    from flowgate_addon.store import FACET_COLUMNS

    db = open_db(tmp_path / "x.db")
    for filter_column in (None, *FACET_COLUMNS):
        where = f"WHERE {filter_column} = ?" if filter_column else ""
        params = ["x"] if filter_column else []
        for column in FACET_COLUMNS:
            # The query Datasette's column facet runs.
            sql = (
                f"SELECT {column} AS value, count(*) AS count FROM (SELECT * FROM requests "
                f"{where}) WHERE {column} IS NOT NULL GROUP BY {column} "
                "ORDER BY count DESC, value LIMIT 31"
            )
            plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "COVERING INDEX facet_" in plan, (filter_column, column, plan)
    db.conn.close()


def test_the_writer_keeps_planner_statistics(tmp_path):
    writer = LogWriter(tmp_path / "x.db", row, flush_interval=0.01)
    writer.ANALYZE_EVERY = 5
    writer.start()
    for i in range(12):
        writer.submit(i)
    writer.stop()
    conn = sqlite3.connect(tmp_path / "x.db")
    stats = dict(conn.execute("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'requests'"))
    assert int(stats["facet_provider"].split()[0]) >= 5  # refreshed after rows were written
