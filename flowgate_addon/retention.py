"""Log retention: prune old rows and give the space back, so the log does not grow forever.

Two limits, both off by default (`logging.retention_days`, `logging.max_db_mb`):

- Rows of `requests` older than the retention period are deleted, and so are `sessions`
  and `prompts` rows last seen before it. The hourly rollups (`usage_hourly`,
  `callers_hourly`, `latency_hourly`) are kept: they are small, and they hold the
  long-term totals the dashboards chart.
- When the database file (with its WAL) is larger than the size cap, the oldest rows are
  deleted until the data would fit in 90 % of it (the estimate counts pages in use, and
  index pages free up later than rows, so it may end somewhat lower); sessions and prompts
  last seen before the oldest row kept go with them.

The log writer runs a pass on its own thread (the only writer) when it starts and then
every `interval` seconds. A pass is split into short transactions of a few thousand rows,
and into slices of about half a second, between which the writer inserts what is queued.
A pass that fails (the database is locked, say) is logged and tried again later.

Space is given back with SQLite's incremental auto-vacuum, which a database must be
created with; FlowGate's is not, so the first pass with a limit set converts it with one
`VACUUM`: it rewrites the whole file once (0.8 s for a 160 MB log here; it needs as much
free disk as the database takes), while rows wait in memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger("flowgate.retention")

INCREMENTAL = 2  # PRAGMA auto_vacuum value
MB = 1024 * 1024  # logging.max_db_mb counts these
OLDEST_SQL = "DELETE FROM requests WHERE id IN (SELECT id FROM requests ORDER BY id LIMIT ?)"


def cutoff_ts(days: float, now: float | None = None) -> str:
    """The `ts` before which rows are older than `days` (same format as the log's `ts`)."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC) - timedelta(days)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def file_bytes(path: Path) -> int:
    """The database's size on disk: the main file and its write-ahead log."""
    total = 0
    for name in (str(path), f"{path}-wal"):
        with contextlib.suppress(OSError):  # no WAL: nothing to add
            total += os.path.getsize(name)
    return total


def used_bytes(conn: sqlite3.Connection) -> int:
    """What the data takes: every page that is not on the free list."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return (pages - free) * size


class Pruner:
    """Decides when to prune and does it, a slice at a time, on the writer's connection."""

    CHUNK = 5000  # rows per delete transaction
    SLICE = 0.5  # seconds of pruning before queued rows get their turn
    VACUUM_PAGES = 2000  # pages given back per incremental vacuum step
    LOCK_WAIT_MS = 200  # pruning can wait for later; inserts keep their own busy timeout
    TARGET = 0.9  # a database over the cap is pruned down to this share of it

    def __init__(
        self,
        path: Path,
        retention_days: float | None = None,
        max_db_mb: float | None = None,
        interval: float = 3600.0,
    ):
        self.path = path
        self.retention_days = retention_days
        self.max_bytes = int(max_db_mb * MB) if max_db_mb else None
        self.interval = interval
        self.pruned = 0  # request rows deleted, in all passes
        self.passes = 0  # passes completed
        self.failures = 0
        self._next = 0.0  # monotonic time of the next pass (or slice); 0: at once
        self._pass: Iterator[None] | None = None
        self._counts: dict[str, int] = {}
        self._start_bytes = 0

    @property
    def active(self) -> bool:
        return self.retention_days is not None or self.max_bytes is not None

    def wait(self) -> float:
        """Seconds until the next pass (or the rest of one) is due."""
        return max(0.0, self._next - time.monotonic())

    def run(self, conn: sqlite3.Connection) -> None:
        """Prune for one slice if due. Never raises."""
        if not self.active or self.wait() > 0:
            return
        saved_wait = None
        try:
            saved_wait = conn.execute("PRAGMA busy_timeout").fetchone()[0]
            conn.execute(f"PRAGMA busy_timeout={self.LOCK_WAIT_MS}")
            if self._pass is None:
                self._start_bytes = file_bytes(self.path)
                self._counts = {"requests": 0, "sessions": 0, "prompts": 0}
                self._pass = self._steps(conn, self._counts)
            deadline = time.monotonic() + self.SLICE
            while time.monotonic() < deadline:
                next(self._pass)
            self._next = 0.0  # not finished: go on once queued rows are written
        except StopIteration:
            self._finish()
        except Exception as exc:  # a locked or broken database: try again later
            if conn.in_transaction:
                conn.rollback()
            self._pass = None
            self.failures += 1
            retry = min(self.interval, 60.0)
            self._next = time.monotonic() + retry
            log.warning(
                "FlowGate could not prune the log (%s); %d rows pruned so far, retrying in %.0f s",
                exc,
                self._counts.get("requests", 0),
                retry,
            )
        finally:
            if saved_wait is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(f"PRAGMA busy_timeout={int(saved_wait)}")

    def _finish(self) -> None:
        self._pass = None
        self.passes += 1
        self._next = time.monotonic() + self.interval
        counts = self._counts
        log.log(
            logging.INFO if any(counts.values()) else logging.DEBUG,
            "FlowGate pruned the log: %d requests, %d sessions, %d prompts; %.1f MB -> %.1f MB",
            counts["requests"],
            counts["sessions"],
            counts["prompts"],
            self._start_bytes / MB,
            file_bytes(self.path) / MB,
        )

    # --- one pass, as steps of one short transaction each ------------------------------

    def _steps(self, conn: sqlite3.Connection, counts: dict[str, int]) -> Iterator[None]:
        if self.retention_days is not None:
            cutoff = cutoff_ts(self.retention_days)
            yield from self._delete_requests(
                conn, counts, "SELECT id FROM requests WHERE ts < ? ORDER BY ts LIMIT ?", cutoff
            )
            yield from self._delete_rollups(conn, counts, cutoff)
        over = self.max_bytes is not None and file_bytes(self.path) > self.max_bytes
        if over:
            yield from self._cap(conn, counts)
        yield from self._reclaim(conn, changed=over or any(counts.values()))

    def _delete(self, conn: sqlite3.Connection, sql: str, *params: object) -> int:
        with conn:
            return conn.execute(sql, params).rowcount

    def _delete_requests(
        self, conn: sqlite3.Connection, counts: dict[str, int], select: str, *params: object
    ) -> Iterator[None]:
        sql = f"DELETE FROM requests WHERE id IN ({select})"
        while True:
            deleted = self._delete(conn, sql, *params, self.CHUNK)
            counts["requests"] += deleted
            self.pruned += deleted
            yield
            if deleted < self.CHUNK:
                return

    def _delete_rollups(
        self, conn: sqlite3.Connection, counts: dict[str, int], before: str
    ) -> Iterator[None]:
        """Sessions and prompts last seen before `before`; the hourly rollups stay."""
        for table in ("sessions", "prompts"):
            sql = (
                f"DELETE FROM {table} WHERE rowid IN "
                f"(SELECT rowid FROM {table} WHERE last_ts < ? LIMIT ?)"
            )
            while True:
                deleted = self._delete(conn, sql, before, self.CHUNK)
                counts[table] += deleted
                yield
                if deleted < self.CHUNK:
                    break

    def _cap(self, conn: sqlite3.Connection, counts: dict[str, int]) -> Iterator[None]:
        """Delete the oldest rows until the data would fit in TARGET of the cap."""
        assert self.max_bytes is not None
        target = int(self.max_bytes * self.TARGET)
        rows = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        used = used_bytes(conn)
        deleted_any = False
        while used > target and rows:
            per_row = max(1, used // rows)
            chunk = min(self.CHUNK, max(1, -(-(used - target) // per_row)))
            deleted = self._delete(conn, OLDEST_SQL, chunk)
            counts["requests"] += deleted
            self.pruned += deleted
            rows -= deleted
            deleted_any = deleted_any or deleted > 0
            yield
            used = used_bytes(conn)
        if used > target:
            log.warning(
                "FlowGate's log holds %.1f MB besides request rows, more than logging.max_db_mb "
                "allows",
                used / MB,
            )
        if deleted_any:
            oldest = conn.execute("SELECT min(ts) FROM requests").fetchone()[0]
            if oldest is None:  # nothing left: everything seen up to now goes
                oldest = "\uffff"
            yield from self._delete_rollups(conn, counts, oldest)

    def _reclaim(self, conn: sqlite3.Connection, changed: bool) -> Iterator[None]:
        """Give free pages back to the file system, then empty the write-ahead log."""
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
            started = time.monotonic()
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("VACUUM")  # once: the setting takes effect when the file is rebuilt
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            log.info(
                "FlowGate converted the log to incremental vacuum (once) in %.1f s",
                time.monotonic() - started,
            )
            yield
            return
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        while free:
            conn.execute(f"PRAGMA incremental_vacuum({self.VACUUM_PAGES})").fetchall()
            changed = True
            yield
            left, free = free, conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free >= left:  # nothing given back (a reader holds the pages): next pass
                break
        if changed:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
