"""Rollups of the log, kept current by the writer, so dashboards stay fast.

Summing a month of a busy log row by row takes seconds; the same figures from
the rollups take milliseconds:

- `usage_hourly`: one row per hour, provider, model and tier.
- `callers_hourly`: the same sums per hour, caller and agent. Two narrow tables, not
  one with every key: their product would have as many rows as the log.
- `latency_hourly`: latency and time-to-first-token histograms per hour, with
  buckets an eighth of an octave wide (about 9 %), so p50/p95 over any range are
  read, not sorted.
- `sessions`: one row per `x-flowgate-session`, with its totals and when it was
  first and last seen.
- `prompts`: one row per distinct prompt (`prompt_hash`), with how often it was
  sent and what the repeats cost — spend a cache would have saved.

The writer calls `apply` inside the transaction that inserts the rows, so the
rollups always agree with `requests`.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

BUCKETS_PER_OCTAVE = 8

USAGE_KEYS = ("hour", "provider", "model", "tier")
CALLER_KEYS = ("hour", "caller", "agent")
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
_REAL = {"cost_usd", "saved_usd", "latency_ms", "repeat_cost_usd"}
SESSION_SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd", "saved_usd")
PROMPT_SUMS = ("requests", "prompt_tokens", "cost_usd", "repeat_cost_usd")
TABLES = ("usage_hourly", "callers_hourly", "latency_hourly", "sessions", "prompts")


def _added(columns: Sequence[str]) -> str:
    return ", ".join(f"{c} = {c} + excluded.{c}" for c in columns)


def _upsert(table: str, columns: Sequence[str], keys: Sequence[str], update: str) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {update}"
    )


USAGE_SQL = _upsert("usage_hourly", USAGE_KEYS + USAGE_SUMS, USAGE_KEYS, _added(USAGE_SUMS))
CALLER_SQL = _upsert("callers_hourly", CALLER_KEYS + USAGE_SUMS, CALLER_KEYS, _added(USAGE_SUMS))
LATENCY_SQL = _upsert(
    "latency_hourly",
    ("hour", "kind", "bucket", "n"),
    ("hour", "kind", "bucket"),
    "n = n + excluded.n",
)
SESSION_SQL = _upsert(
    "sessions",
    ("session", "agent", "caller", "first_ts", "last_ts", *SESSION_SUMS),
    ("session",),
    "agent = coalesce(excluded.agent, agent), caller = coalesce(excluded.caller, caller), "
    "first_ts = min(first_ts, excluded.first_ts), last_ts = max(last_ts, excluded.last_ts), "
    + _added(SESSION_SUMS),
)
# A prompt already seen: every request of the batch is a repeat.
PROMPT_SQL = _upsert(
    "prompts",
    ("prompt_hash", "first_ts", "last_ts", "model", *PROMPT_SUMS),
    ("prompt_hash",),
    "first_ts = min(first_ts, excluded.first_ts), last_ts = max(last_ts, excluded.last_ts), "
    "model = excluded.model, "
    "repeat_cost_usd = repeat_cost_usd + excluded.cost_usd, "
    + _added(("requests", "prompt_tokens", "cost_usd")),
)


def _sums(columns: Sequence[str]) -> str:
    return ", ".join(
        f"{c} {'REAL' if c in _REAL else 'INTEGER'} NOT NULL DEFAULT 0" for c in columns
    )


def create_tables(conn: sqlite3.Connection) -> None:
    for table, keys in (("usage_hourly", USAGE_KEYS), ("callers_hourly", CALLER_KEYS)):
        columns = ", ".join(f"{k} TEXT NOT NULL DEFAULT ''" for k in keys)
        conn.execute(
            f"CREATE TABLE {table} ({columns}, {_sums(USAGE_SUMS)}, "
            f"PRIMARY KEY ({', '.join(keys)}))"
        )
    conn.execute(
        "CREATE TABLE latency_hourly (hour TEXT NOT NULL, kind TEXT NOT NULL, "
        "bucket INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (hour, kind, bucket))"
    )
    conn.execute(
        "CREATE TABLE sessions (session TEXT PRIMARY KEY, agent TEXT, caller TEXT, "
        f"first_ts TEXT NOT NULL, last_ts TEXT NOT NULL, {_sums(SESSION_SUMS)})"
    )
    conn.execute("CREATE INDEX sessions_last_ts ON sessions (last_ts)")
    conn.execute("CREATE INDEX sessions_cost ON sessions (cost_usd)")
    conn.execute(
        "CREATE TABLE prompts (prompt_hash TEXT PRIMARY KEY, first_ts TEXT NOT NULL, "
        f"last_ts TEXT NOT NULL, model TEXT, {_sums(PROMPT_SUMS)})"
    )
    # Only repeated prompts are ranked, so only they are indexed.
    conn.execute("CREATE INDEX prompts_repeat_cost ON prompts (repeat_cost_usd) WHERE requests > 1")


def rebuild(conn: sqlite3.Connection, chunk: int = 50_000) -> None:
    """(Re)create the rollup tables and fill them from the rows already logged."""
    for table in TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    create_tables(conn)
    have = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    batch = RollupBatch(COLUMNS)
    select = ", ".join(c if c in have else "NULL" for c in COLUMNS)
    cursor = conn.execute(f"SELECT {select} FROM requests ORDER BY id")
    while rows := cursor.fetchmany(chunk):
        batch.apply(conn, rows)


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


# The log columns the rollups read.
COLUMNS = (
    "ts",
    "provider",
    "routed_model",
    "requested_model",
    "tier",
    "caller",
    "agent",
    "session",
    "prompt_hash",
    "status",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "saved_usd",
    "latency_ms",
    "ttft_ms",
)


class RollupBatch:
    """The rollup rows of one batch of log rows, summed in memory first."""

    def __init__(self, columns: Sequence[str]):
        index = {name: i for i, name in enumerate(columns)}
        self._at = tuple(index[c] for c in COLUMNS)

    def rows(self, rows: Iterable[Sequence[Any]]) -> dict[str, list[tuple[Any, ...]]]:
        usage: dict[tuple[str, ...], list[float]] = {}
        callers: dict[tuple[str, ...], list[float]] = {}
        latency: dict[tuple[str, str, int], int] = {}
        sessions: dict[str, list[Any]] = {}
        prompts: dict[str, list[Any]] = {}
        at = self._at
        for raw in rows:
            (
                ts,
                provider,
                model,
                requested,
                tier,
                caller,
                agent,
                session,
                prompt_hash,
                status,
                error,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
                cost,
                saved,
                ms,
                ttft,
            ) = (raw[i] for i in at)
            hour = ts[:13]
            model = model or requested or ""
            failed = status is None or status >= 400 or error is not None
            prompt_tokens, completion_tokens = prompt_tokens or 0, completion_tokens or 0
            cost, saved = cost or 0, saved or 0
            values = (
                1,
                failed,
                bool(tier),
                prompt_tokens,
                completion_tokens,
                cached_tokens or 0,
                cost,
                saved,
                ms or 0,
            )
            for table, key in (
                (usage, (hour, provider or "", model, tier or "")),
                (callers, (hour, caller or "", agent or "")),
            ):
                sums = table.get(key)
                if sums is None:
                    table[key] = list(values)
                else:
                    for i, value in enumerate(values):
                        sums[i] += value
            if ms is not None:
                entry = (hour, "latency", bucket(ms))
                latency[entry] = latency.get(entry, 0) + 1
            if ttft is not None:
                entry = (hour, "ttft", bucket(ttft))
                latency[entry] = latency.get(entry, 0) + 1
            if session:
                s = sessions.get(session)
                if s is None:
                    s = sessions[session] = [session, None, None, ts, ts, 0, 0, 0, 0, 0.0, 0.0]
                s[1], s[2] = agent or s[1], caller or s[2]
                s[3], s[4] = min(s[3], ts), max(s[4], ts)
                s[5] += 1
                s[6] += failed
                s[7] += prompt_tokens
                s[8] += completion_tokens
                s[9] += cost
                s[10] += saved
            if prompt_hash:
                p = prompts.get(prompt_hash)
                if p is None:  # the first in this batch: not a repeat unless seen before
                    prompts[prompt_hash] = [prompt_hash, ts, ts, model, 1, prompt_tokens, cost, 0.0]
                else:
                    p[1], p[2], p[3] = min(p[1], ts), max(p[2], ts), model
                    p[4] += 1
                    p[5] += prompt_tokens
                    p[6] += cost
                    p[7] += cost
        return {
            USAGE_SQL: [(*key, *sums) for key, sums in usage.items()],
            CALLER_SQL: [(*key, *sums) for key, sums in callers.items()],
            LATENCY_SQL: [(*key, n) for key, n in latency.items()],
            SESSION_SQL: [tuple(s) for s in sessions.values()],
            PROMPT_SQL: [tuple(p) for p in prompts.values()],
        }

    def apply(self, conn: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
        """Add a batch to the rollups (call inside the transaction that inserts it)."""
        for sql, values in self.rows(rows).items():
            if values:
                conn.executemany(sql, values)
