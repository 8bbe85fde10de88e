"""Hourly rollups of the log, kept current by the writer, so dashboards stay fast.

Summing a month of a busy log row by row takes seconds; the same figures from
`usage_hourly` (one row per hour, provider, model, tier and caller) take
milliseconds. Latency and time-to-first-token percentiles come from
`latency_hourly`, a histogram per hour with buckets an eighth of an octave wide
(about 9 %), so p50/p95 over any range are read, not sorted.

The writer calls `apply` inside the transaction that inserts the rows, so the
rollups always agree with `requests`.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

BUCKETS_PER_OCTAVE = 8

USAGE_KEYS = ("hour", "provider", "model", "tier", "caller")
USAGE_SUMS = (
    "requests",
    "errors",
    "routed",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "saved_usd",
    "latency_ms",
)
USAGE_SQL = (
    f"INSERT INTO usage_hourly ({', '.join(USAGE_KEYS + USAGE_SUMS)}) "
    f"VALUES ({', '.join('?' for _ in USAGE_KEYS + USAGE_SUMS)}) "
    f"ON CONFLICT ({', '.join(USAGE_KEYS)}) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in USAGE_SUMS)
)
LATENCY_SQL = (
    "INSERT INTO latency_hourly (hour, kind, bucket, n) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (hour, kind, bucket) DO UPDATE SET n = n + excluded.n"
)


def create_tables(conn: sqlite3.Connection) -> None:
    keys = ", ".join(f"{k} TEXT NOT NULL DEFAULT ''" for k in USAGE_KEYS)
    sums = ", ".join(
        f"{c} {'REAL' if c in ('cost_usd', 'saved_usd', 'latency_ms') else 'INTEGER'} "
        "NOT NULL DEFAULT 0"
        for c in USAGE_SUMS
    )
    conn.execute(
        f"CREATE TABLE usage_hourly ({keys}, {sums}, PRIMARY KEY ({', '.join(USAGE_KEYS)}))"
    )
    conn.execute(
        "CREATE TABLE latency_hourly (hour TEXT NOT NULL, kind TEXT NOT NULL, "
        "bucket INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (hour, kind, bucket))"
    )


def bucket(ms: float) -> int:
    """Histogram bucket of a duration: 0 up to 1 ms, then 8 per doubling."""
    return int(BUCKETS_PER_OCTAVE * math.log2(ms)) + 1 if ms > 1 else 0


def bucket_ms(index: int) -> float:
    """A bucket's middle, in ms (what a percentile falling in it is reported as).

    Registered as the SQL function `bucket_ms` for the dashboards' queries.
    """
    if index <= 0:
        return 1.0
    return 2 ** ((index - 0.5) / BUCKETS_PER_OCTAVE)


def backfill(conn: sqlite3.Connection, columns: Sequence[str], chunk: int = 50_000) -> None:
    """Roll up rows logged before the rollup tables existed (once, by the migration)."""
    batch = RollupBatch(columns)
    cursor = conn.execute(f"SELECT {', '.join(columns)} FROM requests ORDER BY id")
    while rows := cursor.fetchmany(chunk):
        batch.apply(conn, rows)


class RollupBatch:
    """The rollup rows of one batch of log rows, summed in memory first."""

    def __init__(self, columns: Sequence[str]):
        index = {name: i for i, name in enumerate(columns)}
        self._ts = index["ts"]
        self._keys = [index["provider"], index["routed_model"], index["tier"], index["caller"]]
        self._requested = index["requested_model"]
        self._status, self._error = index["status"], index["error"]
        self._values = [
            index[c] for c in ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd")
        ]
        self._saved, self._latency, self._ttft = (
            index["saved_usd"],
            index["latency_ms"],
            index["ttft_ms"],
        )

    def rows(
        self, rows: Iterable[Sequence[Any]]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        usage: dict[tuple[str, ...], list[float]] = {}
        latency: dict[tuple[str, str, int], int] = {}
        for row in rows:
            hour = row[self._ts][:13]
            provider, model, tier, caller = (row[i] or "" for i in self._keys)
            key = (hour, provider, model or row[self._requested] or "", tier, caller)
            sums = usage.get(key)
            if sums is None:
                sums = usage[key] = [0] * len(USAGE_SUMS)
            status = row[self._status]
            sums[0] += 1
            sums[1] += status is None or status >= 400 or row[self._error] is not None
            sums[2] += bool(tier)
            for i, column in enumerate(self._values, start=3):
                sums[i] += row[column] or 0
            sums[7] += row[self._saved] or 0
            if (ms := row[self._latency]) is not None:
                sums[8] += ms
                entry = (hour, "latency", bucket(ms))
                latency[entry] = latency.get(entry, 0) + 1
            if (ms := row[self._ttft]) is not None:
                entry = (hour, "ttft", bucket(ms))
                latency[entry] = latency.get(entry, 0) + 1
        return (
            [(*key, *sums) for key, sums in usage.items()],
            [(*key, n) for key, n in latency.items()],
        )

    def apply(self, conn: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
        """Add a batch to the rollups (call inside the transaction that inserts it)."""
        usage, latency = self.rows(rows)
        conn.executemany(USAGE_SQL, usage)
        conn.executemany(LATENCY_SQL, latency)
