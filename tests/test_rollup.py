"""Hourly rollups: kept by the writer in step with `requests`, and backfilled on upgrade."""

from __future__ import annotations

import random
import sqlite3

import pytest
import sqlite_utils

from flowgate_addon.rollup import bucket, bucket_ms
from flowgate_addon.store import LogWriter, migrations, open_db

MODELS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"), ("deepseek", "r1")]


def random_rows(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        provider, model = rng.choice(MODELS)
        status = rng.choice([200] * 8 + [429, 500])
        rows.append(
            {
                "ts": f"2026-11-{rng.randint(20, 23):02d}T{rng.randint(0, 23):02d}:"
                f"{rng.randint(0, 59):02d}:00.000Z",
                "provider": provider,
                "routed_model": model,
                "requested_model": model,
                "status": status,
                "error": None if status == 200 else "upstream said no",
                "tier": rng.choice([None, "SIMPLE", "COMPLEX"]),
                "caller": rng.choice([None, "ci", "web"]),
                "agent": rng.choice([None, "coder", "triage"]),
                "session": rng.choice([None, f"s-{rng.randint(1, 40)}"]),
                "prompt_hash": rng.choice([None, f"p-{rng.randint(1, 300)}"]),
                "prompt_tokens": rng.randint(1, 5000),
                "completion_tokens": rng.randint(1, 800),
                "cached_tokens": rng.choice([0, 0, 100]),
                "cost_usd": rng.random() / 100,
                "saved_usd": rng.choice([None, rng.random() / 1000]),
                "latency_ms": rng.lognormvariate(6, 1),
                "ttft_ms": rng.choice([None, rng.lognormvariate(5, 0.5)]),
                "endpoint": f"row-{i}",
            }
        )
    return rows


TOTALS = (
    "count(*), sum(status >= 400 OR error IS NOT NULL), sum(tier IS NOT NULL), "
    "sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens), "
    "round(sum(cost_usd), 9), round(total(saved_usd), 9), round(sum(latency_ms), 6)"
)
ROLLED = (
    "sum(requests), sum(errors), sum(routed), sum(prompt_tokens), sum(completion_tokens), "
    "sum(cached_tokens), round(sum(cost_usd), 9), round(sum(saved_usd), 9), "
    "round(sum(latency_ms), 6)"
)


SESSION_TOTALS = (
    "count(*), sum(status >= 400 OR error IS NOT NULL), min(ts), max(ts), "
    "sum(prompt_tokens), sum(completion_tokens), round(sum(cost_usd), 9), "
    "round(total(saved_usd), 9)"
)
SESSION_ROLLED = (
    "requests, errors, first_ts, last_ts, prompt_tokens, completion_tokens, "
    "round(cost_usd, 9), round(saved_usd, 9)"
)


def assert_rollups_match(path) -> None:
    conn = sqlite3.connect(path)
    for keys, table, rollup_keys in [
        ("substr(ts, 1, 13), provider, routed_model", "usage_hourly", "hour, provider, model"),
        (
            "substr(ts, 1, 10), coalesce(tier, ''), provider",
            "usage_hourly",
            "substr(hour, 1, 10), tier, provider",
        ),
        (
            "substr(ts, 1, 13), coalesce(caller, ''), coalesce(agent, '')",
            "callers_hourly",
            "hour, caller, agent",
        ),
    ]:
        by_raw = conn.execute(
            f"SELECT {keys}, {TOTALS} FROM requests GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ).fetchall()
        by_rollup = conn.execute(
            f"SELECT {rollup_keys}, {ROLLED} FROM {table} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ).fetchall()
        assert by_rollup == by_raw
    sessions = conn.execute(
        f"SELECT session, {SESSION_TOTALS} FROM requests WHERE session IS NOT NULL "
        "GROUP BY session ORDER BY session"
    ).fetchall()
    assert sessions
    assert (
        conn.execute(f"SELECT session, {SESSION_ROLLED} FROM sessions ORDER BY session").fetchall()
        == sessions
    )
    # A session's agent and caller: the last ones it named.
    for session, agent in conn.execute("SELECT session, agent FROM sessions"):
        assert (
            agent
            == conn.execute(
                "SELECT agent FROM requests WHERE session = ? AND agent IS NOT NULL "
                "ORDER BY id DESC LIMIT 1",
                (session,),
            ).fetchone()[0]
        )
    # Prompts: how often each was sent, and what all but its first sending cost.
    prompts = conn.execute(
        "SELECT prompt_hash, count(*), min(ts), max(ts), sum(prompt_tokens), "
        "round(sum(cost_usd), 9), round(sum(cost_usd) - (SELECT cost_usd FROM requests f "
        "WHERE f.prompt_hash = r.prompt_hash ORDER BY id LIMIT 1), 9) "
        "FROM requests r WHERE prompt_hash IS NOT NULL GROUP BY prompt_hash ORDER BY 1"
    ).fetchall()
    assert (
        conn.execute(
            "SELECT prompt_hash, requests, first_ts, last_ts, prompt_tokens, "
            "round(cost_usd, 9), round(repeat_cost_usd, 9) FROM prompts ORDER BY 1"
        ).fetchall()
        == prompts
    )
    latency = conn.execute(
        "SELECT kind, sum(n) FROM latency_hourly GROUP BY kind ORDER BY kind"
    ).fetchall()
    assert (
        latency
        == conn.execute(
            "SELECT 'latency', count(latency_ms) FROM requests UNION ALL "
            "SELECT 'ttft', count(ttft_ms) FROM requests ORDER BY 1"
        ).fetchall()
    )


def test_the_writer_keeps_rollups_in_step(tmp_path):
    rows = random_rows(2000)
    writer = LogWriter(tmp_path / "log.db", lambda r: r, batch_size=97, flush_interval=0.01)
    writer.start()
    for item in rows:
        writer.submit(item)
    writer.stop()
    assert writer.status.written == 2000
    assert_rollups_match(tmp_path / "log.db")
    conn = sqlite3.connect(tmp_path / "log.db")
    assert conn.execute("SELECT count(*) FROM prompts WHERE requests > 1").fetchone()[0] > 100


@pytest.mark.parametrize("before", ["m005_rollups", "m007_sessions_prompts"])
def test_an_older_database_is_backfilled(tmp_path, before):
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before=before)
    rows = random_rows(1500, seed=3)
    for row in rows:  # rows from before prompt hashes
        del row["prompt_hash"]
    db["requests"].insert_all(rows)
    db.conn.close()
    open_db(path).conn.close()
    assert_rollups_match(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM prompts").fetchone() == (0,)
    assert conn.execute("SELECT count(DISTINCT agent) FROM callers_hourly").fetchone() == (3,)


@pytest.mark.parametrize("ms", [1.001, 1.5, 37.0, 812.0, 4096.0, 120_000.0])
def test_a_bucket_reports_within_half_its_width(ms):
    # Buckets are 2**(1/8) wide (about 9 %): the middle is within 2**(1/16) of any value.
    assert 2**-0.0625 <= bucket_ms(bucket(ms)) / ms <= 2**0.0625


def test_durations_up_to_a_millisecond_share_the_first_bucket():
    assert bucket(0.0) == bucket(0.4) == bucket(1.0) == 0 and bucket_ms(0) == 1.0
