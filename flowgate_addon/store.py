"""The log database: schema migrations and the background writer.

The event loop never touches SQLite. It hands finished `CallRecord`s to
`LogWriter.submit` (a lock-free queue put); a writer thread turns them into
rows and inserts them in batches, one transaction per batch. A locked, read-only,
full or broken database never stops proxying: rows wait in memory (up to
`max_backlog`) and the write is retried every second, on a fresh connection if
the old one may be stuck; failures and losses are counted, logged and kept in a
status file the dashboard reads (health.py). What is queued is written on shutdown.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils import Migrations

from flowgate_addon import health, retention, rollup

log = logging.getLogger("flowgate.store")

migrations = Migrations("flowgate")

REQUEST_COLUMNS: dict[str, type] = {
    "id": int,
    "ts": str,
    "mode": str,
    "method": str,
    "path": str,
    "endpoint": str,
    "host": str,
    "requested_model": str,
    "routed_model": str,
    "provider": str,
    "status": int,
    "error": str,
    "stream": int,
    "prompt_tokens": int,
    "completion_tokens": int,
    "cached_tokens": int,
    "total_tokens": int,
    "cache_write_tokens": int,
    "usage_source": str,
    "cost_usd": float,
    "saved_usd": float,
    "latency_ms": float,
    "ttft_ms": float,
    "tier": str,
    "score": float,
    "strategy": str,
    "route": str,
    "route_fallback": str,
    "caller": str,
    "session": str,
    "agent": str,
    "end_user": str,
    "prompt_hash": str,
    "client_ip": str,
    "prompt": str,
    "response": str,
}


@migrations()
def m001_requests(db: sqlite_utils.Database) -> None:
    columns = {k: v for k, v in REQUEST_COLUMNS.items() if k not in _ADDED_LATER}
    db["requests"].create(columns, pk="id", not_null={"ts"})
    for index in (["ts"], ["routed_model", "ts"], ["provider", "ts"], ["session"], ["status"]):
        db["requests"].create_index(index)


@migrations()
def m002_cache_write_tokens(db: sqlite_utils.Database) -> None:
    """Prompt tokens written to a provider's cache (Anthropic cache creation)."""
    db["requests"].add_column("cache_write_tokens", int)


@migrations()
def m003_routing(db: sqlite_utils.Database) -> None:
    """Routing explanations: per-dimension scores (JSON) and why a classifier was not used."""
    db["requests"].add_column("route", str)
    db["requests"].add_column("route_fallback", str)
    db["requests"].create_index(["tier", "ts"])


@migrations()
def m004_models(db: sqlite_utils.Database) -> None:
    """The model catalog, read from each provider's /models by `flowgate catalog sync`."""
    db["models"].create(
        {
            "provider": str,
            "model": str,
            "owned_by": str,
            "created": int,
            "context_window": int,
            "input_usd_per_1m": float,
            "output_usd_per_1m": float,
            "cached_input_usd_per_1m": float,
            "synced_at": str,
        },
        pk=("provider", "model"),
        not_null={"synced_at"},
    )
    db["models"].create_index(["model"])


@migrations()
def m005_rollups(db: sqlite_utils.Database) -> None:
    """Hourly rollups, first version: built by m007 now, with everything they later gained."""


@migrations()
def m006_ranking_indexes(db: sqlite_utils.Database) -> None:
    """The dashboards' top-20 lists: most expensive, largest, slowest, over-routed."""
    for column in ("cost_usd", "prompt_tokens", "latency_ms", "saved_usd"):
        db["requests"].create_index([column])


@migrations()
def m007_sessions_prompts(db: sqlite_utils.Database) -> None:
    """Sessions, agents and repeated prompts: a prompt hash per row, and the rollups rebuilt.

    Rows logged before this have no prompt hash, so they count as distinct prompts.
    """
    db["requests"].add_column("prompt_hash", str)
    db["requests"].create_index(["prompt_hash"])
    rollup.rebuild(db.conn)


# The log browser's facets. Each has an index that starts with it and holds the others, so
# every facet count, filtered by any other facet or not, reads one narrow index, never the
# rows (SQLite may pick the facet column's index even when another facet is the filter).
FACET_COLUMNS = ("provider", "routed_model", "tier", "status", "caller")


@migrations()
def m008_facet_indexes(db: sqlite_utils.Database) -> None:
    """Covering indexes for the log browser's facets, replacing single-facet ones."""
    for old in ("provider_ts", "routed_model_ts", "tier_ts", "status"):
        db.execute(f"DROP INDEX IF EXISTS idx_requests_{old}")
    for column in FACET_COLUMNS:
        others = [c for c in FACET_COLUMNS if c != column]
        db["requests"].create_index([column, *others], index_name=f"facet_{column}")


# Columns that later migrations add, so that m001 creates the original table.
_ADDED_LATER = {"cache_write_tokens", "route", "route_fallback", "prompt_hash"}


def open_db(path: Path) -> sqlite_utils.Database:
    """Open (creating if needed) the log database in WAL mode, migrated to the latest schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=5.0)
    try:
        db = sqlite_utils.Database(conn)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        migrations.apply(db)
    except BaseException:
        conn.close()
        raise
    return db


def analyze(path: Path) -> None:
    """Refresh the query planner's statistics (sampled: a few ms at a million rows).

    Without them SQLite can pick a poor index for the log browser's filtered facets.
    Its own connection, which never waits for a lock: statistics can wait, rows cannot.
    """
    try:
        conn = sqlite3.connect(str(path), timeout=0)
        try:
            conn.execute("PRAGMA analysis_limit=1000")
            conn.execute("ANALYZE")
            conn.commit()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        log.warning("FlowGate could not refresh the log's statistics (%s)", exc)


_INSERT_COLUMNS = [c for c in REQUEST_COLUMNS if c != "id"]
_INSERT_SQL = (
    f"INSERT INTO requests ({', '.join(_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _INSERT_COLUMNS)})"
)


# Write failures after which the same connection is worth trying again.
_STILL_USABLE = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_BUSY_SNAPSHOT", "SQLITE_BUSY_TIMEOUT"}


class LogWriter:
    """Batches rows into SQLite on its own thread."""

    TICK = 0.02  # seconds between wake-ups while rows are pending
    ANALYZE_EVERY = 100_000  # rows between refreshes of the planner's statistics
    WARN_EVERY = 60.0  # seconds between warnings while writes keep failing

    def __init__(
        self,
        path: Path,
        to_row: Callable[[Any], dict[str, Any]],
        batch_size: int = 500,
        flush_interval: float = 0.25,
        max_backlog: int = 100_000,
        final_retry_seconds: float = 5.0,
        retention_days: float | None = None,
        max_db_mb: float | None = None,
        prune_interval: float = 3600.0,
    ):
        self.path = path
        self.to_row = to_row
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.status = health.WriterStatus(str(path))
        self.pruner = retention.Pruner(path, retention_days, max_db_mb, prune_interval)
        self._status_file = health.StatusFile(path)
        self._status_shown = 0.0
        self._warned_at: float | None = None  # when a failing streak was last reported
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._backlog: deque[tuple[Any, ...]] = deque()
        self._max_backlog = max_backlog
        self._final_retry_seconds = final_retry_seconds
        self._stop = object()
        self._thread: threading.Thread | None = None
        self._db: sqlite_utils.Database | None = None
        self._rollup = rollup.RollupBatch(_INSERT_COLUMNS)

    @property
    def pruned(self) -> int:
        """Old rows deleted by retention_days / max_db_mb (see retention.py)."""
        return self.pruner.pruned

    def start(self) -> None:
        """Open the database and start writing.

        A folder that cannot be created raises; a database that cannot be opened or
        migrated now (locked, read-only, full) does not: proxying starts, rows wait in
        memory and the writer keeps trying.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()
        if self._db is None:
            log.error(
                "FlowGate cannot open the log database %s (%s); calls are proxied and their "
                "rows kept in memory (up to %d) until it can, retried every second",
                self.path,
                self.status.last_error,
                self._max_backlog,
            )
        self._show_status(force=True)
        self._thread = threading.Thread(target=self._run, name="flowgate-writer", daemon=True)
        self._thread.start()

    def submit(self, record: Any) -> None:
        """Queue a finished call; safe and cheap to call from the event loop."""
        self._queue.put(record)

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(self._stop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("FlowGate log writer did not finish within %.0f s", timeout)
        elif self._backlog:
            self.status.lost_at_exit = len(self._backlog)
            log.error("FlowGate could not write %d queued log rows", len(self._backlog))
        self._thread = None
        self._close()
        self.status.running = False
        self.status.waiting = len(self._backlog)
        if self.status.lost:
            self._status_file.write(self.status)  # keep the loss visible
        else:
            self._status_file.remove()

    def _open(self) -> None:
        try:
            self._db = open_db(self.path)
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)

    def _close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.conn.close()
            self._db = None

    def _failed(self, exc: Exception) -> None:
        self.status.failed_writes += 1
        self.status.last_error = str(exc)
        self.status.last_error_at = time.time()

    def _warn(self, waiting: int) -> None:
        """Say a write failed: at once, then once a minute while it keeps failing."""
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < self.WARN_EVERY:
            return
        self._warned_at = now
        log.warning(
            "FlowGate log write failed (%s); %d rows kept for retry, %d failures so far",
            self.status.last_error,
            waiting,
            self.status.failed_writes,
        )

    def _show_status(self, force: bool = False) -> None:
        """Refresh the status file: at most once a second, and every HEARTBEAT when idle."""
        now = time.monotonic()
        if not force and now - self._status_shown < 1.0:
            return
        self._status_shown = now
        self.status.waiting = len(self._backlog)
        self.status.pruned = self.pruner.pruned
        self._status_file.write(self.status)

    def _run(self) -> None:
        # Wake once per tick, not once per request: a thread wake-up per call costs the
        # proxy more than the row itself. Each tick's rows are built in one short slice,
        # so the event loop never waits long for the GIL; inserts are batched per
        # flush interval.
        if self._db is not None:
            analyze(self.path)
        stopping = False
        while not stopping:
            # Idle: a heartbeat for the status file; rows kept: retry now and then.
            timeout = 1.0 if self._backlog else health.HEARTBEAT
            if self.pruner.active and self._db is not None:  # prune between batches
                self.pruner.run(self._db.conn)
                timeout = min(timeout, self.pruner.wait())
            try:
                items = [self._queue.get(timeout=timeout)]
            except queue.Empty:
                self._flush(final=False)
                self._show_status(force=not self._backlog)
                continue
            deadline = time.monotonic() + self.flush_interval
            pending = 0
            while True:
                for item in items:
                    if item is self._stop:
                        stopping = True
                        break
                    self._convert(item)
                    pending += 1
                now = time.monotonic()
                if stopping or pending >= self.batch_size or now >= deadline:
                    break
                time.sleep(min(self.TICK, deadline - now))
                items = self._drain()
            self._flush(final=stopping)
            self._show_status()

    def _insert(self, rows: list[tuple[Any, ...]]) -> bool:
        """One attempt at writing rows and rollups in one transaction; False if it failed."""
        if self._db is None:
            self._open()  # counts a failure itself
            if self._db is None:
                return False
        try:
            with self._db.conn:  # rows and rollups in one transaction: always agree
                self._db.conn.executemany(_INSERT_SQL, rows)
                self._rollup.apply(self._db.conn, rows)
        except sqlite3.Error as exc:
            self._failed(exc)
            if getattr(exc, "sqlite_errorname", "") not in _STILL_USABLE:
                # A connection opened read-only, or to a file that went bad, stays that
                # way: the next attempt opens a new one.
                self._close()
            return False
        return True

    def _drain(self) -> list[Any]:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _convert(self, record: Any) -> None:
        try:
            row = self.to_row(record)
        except Exception:  # a bad record must not take the writer down
            self.status.row_errors += 1
            log.exception("FlowGate could not build a log row")
            return
        self._backlog.append(tuple(row.get(c) for c in _INSERT_COLUMNS))
        if len(self._backlog) > self._max_backlog:
            self._backlog.popleft()
            self.status.dropped += 1
            if self.status.dropped % 10_000 == 1:
                log.error(
                    "FlowGate's log backlog is full (%d rows): the oldest are being dropped, "
                    "%d so far",
                    self._max_backlog,
                    self.status.dropped,
                )

    def _flush(self, final: bool) -> None:
        """Insert the backlog in one transaction; on shutdown, keep retrying for a while."""
        give_up = time.monotonic() + (self._final_retry_seconds if final else 0.0)
        while self._backlog:
            rows = list(self._backlog)
            if not self._insert(rows):
                self._warn(len(rows))
                if time.monotonic() >= give_up:
                    return
                time.sleep(0.1)
                continue
            for _ in rows:
                self._backlog.popleft()
            if (
                self.status.written + len(rows)
            ) // self.ANALYZE_EVERY > self.status.written // self.ANALYZE_EVERY:
                analyze(self.path)
            self.status.written += len(rows)
            self.status.last_write_at = time.time()
            if self._warned_at is not None:
                log.warning("FlowGate log writes work again: %d waiting rows written", len(rows))
                self._warned_at = None
