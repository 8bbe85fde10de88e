"""Time FlowGate's dashboard and log browser on a log of a million realistic requests.

Generates the rows (30 days of traffic: several providers and models, routed and
unrouted calls, errors, streams, callers and sessions, repeated prompts) into a fresh
log database through the same rollup code the log writer uses, then times, in a real
Datasette with FlowGate's plugins and metadata: the dashboard page, every chart's query
for each period, the log browser's first page and filtered pages, and FlowGate's own
pages. Prints a markdown table of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from datasette.app import Datasette

from flowgate_addon.cli import plugins_dir
from flowgate_addon.record import prompt_hash
from flowgate_addon.rollup import RollupBatch
from flowgate_addon.store import _INSERT_COLUMNS, _INSERT_SQL, open_db
from flowgate_addon.ui_metadata import SETTINGS, metadata

# provider, model, USD per 1M tokens in, out; the weights make cheap models the common case.
MODELS = [
    ("openai", "gpt-4o-mini", 0.15, 0.60, 30),
    ("openai", "gpt-4o", 2.50, 10.0, 12),
    ("openai", "o3", 2.00, 8.00, 3),
    ("anthropic", "claude-sonnet-4-5", 3.00, 15.0, 15),
    ("anthropic", "claude-haiku-4-5", 1.00, 5.00, 10),
    ("gemini", "gemini-2.0-flash", 0.10, 0.40, 15),
    ("deepseek", "deepseek-chat", 0.28, 0.42, 10),
    ("groq", "llama-3.1-8b-instant", 0.05, 0.08, 5),
]
TIERS = [None, None, "SIMPLE", "MEDIUM", "COMPLEX", "REASONING"]
CALLERS = [None, "web", "ci", "support-bot", "batch-jobs", "research", "mobile"]
AGENTS = [None, "summarizer", "coder", "triage", "planner"]


def generate(path: Path, count: int, seed: int = 1) -> float:
    """Write COUNT rows (and their rollups) into a new log database; seconds taken."""
    started = time.perf_counter()
    db = open_db(path)
    rollup = RollupBatch(_INSERT_COLUMNS)
    rng = random.Random(seed)
    weights = [m[4] for m in MODELS]
    now = datetime.now(UTC)
    prompts = [f"Summarise ticket #{i} for the on-call engineer." for i in range(2000)]
    batch: list[tuple] = []
    for i in range(count):
        ts = now - timedelta(seconds=rng.random() * 30 * 86400)
        provider, model, price_in, price_out, _ = rng.choices(MODELS, weights)[0]
        tokens_in = int(rng.lognormvariate(6.5, 1.3))
        tokens_out = int(rng.lognormvariate(5, 1))
        failed = rng.random() < 0.03
        tier = rng.choice(TIERS)
        cost = (tokens_in * price_in + tokens_out * price_out) / 1e6
        stream = rng.random() < 0.6
        prompt = rng.choice(prompts) if rng.random() < 0.3 else f"user: question {i}"
        row = dict.fromkeys(_INSERT_COLUMNS)
        row.update(
            ts=ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            mode="gateway" if rng.random() < 0.7 else "proxy",
            method="POST",
            path="/v1/chat/completions",
            endpoint="chat.completions",
            host=f"api.{provider}.com",
            requested_model="auto" if tier else model,
            routed_model=model,
            provider=provider,
            status=rng.choice([429, 500, 502, 400]) if failed else 200,
            error="upstream error" if failed else None,
            stream=int(stream),
            prompt_tokens=tokens_in,
            completion_tokens=0 if failed else tokens_out,
            cached_tokens=int(tokens_in * 0.5) if rng.random() < 0.2 else 0,
            total_tokens=tokens_in + tokens_out,
            usage_source="provider",
            cost_usd=0.0 if failed else cost,
            saved_usd=cost * rng.uniform(-0.2, 3) if tier else None,
            latency_ms=rng.lognormvariate(6.8, 0.7),
            ttft_ms=rng.lognormvariate(5.8, 0.5) if stream else None,
            tier=tier,
            score=round(rng.random(), 3) if tier else None,
            strategy="complexity" if tier else None,
            caller=rng.choice(CALLERS),
            # about eight agents' sessions at a time, each within ten minutes
            session=f"session-{int(ts.timestamp()) // 600}-{rng.randrange(8)}",
            agent=rng.choice(AGENTS),
            client_ip="127.0.0.1",
            prompt=prompt,
            prompt_hash=prompt_hash({"messages": prompt}),
            response="assistant: an answer",
        )
        batch.append(tuple(row[c] for c in _INSERT_COLUMNS))
        if len(batch) >= 20_000:
            _write(db.conn, rollup, batch)
            batch = []
    _write(db.conn, rollup, batch)
    db.conn.execute("ANALYZE")
    db.conn.close()
    return time.perf_counter() - started


def _write(conn, rollup: RollupBatch, rows: list[tuple]) -> None:
    with conn:
        conn.executemany(_INSERT_SQL, rows)
        rollup.apply(conn, rows)


async def timings(path: Path, repeats: int) -> list[tuple[str, float, float]]:
    """(what, median ms, max ms) for every page and chart query."""
    ds = Datasette(
        [str(path)],
        plugins_dir=str(plugins_dir()),
        metadata=metadata(path),
        settings={**SETTINGS, "sql_time_limit_ms": 10_000},
    )
    db = path.stem
    dashboards = ds.plugin_config("datasette-dashboards")
    targets = [(f"{slug} page", f"/-/dashboards/{slug}?period=30d") for slug in dashboards]
    targets.append(("log browser, first page (5 facets)", f"/{db}/requests"))
    targets.append(("log browser, one model", f"/{db}/requests?routed_model=gpt-4o"))
    targets.append(("log browser, one session", f"/{db}/requests?session={_any(path, 'session')}"))
    repeated = _any(path, "prompt_hash", "prompt LIKE 'Summarise%'")
    targets.append(("log browser, one repeated prompt", f"/{db}/requests?prompt_hash={repeated}"))
    targets.append(("request page", f"/-/flowgate/request/{_any(path, 'id')}"))
    targets.append(("router page (recent decisions)", "/-/flowgate/router"))
    targets.append(("model catalog page", "/-/flowgate/models"))
    for period in ("24h", "7d", "30d"):
        for slug, dashboard in dashboards.items():
            for name, chart in dashboard["charts"].items():
                query = urlencode({"sql": chart["query"], "_shape": "objects", "period": period})
                targets.append((f"{slug}: {name} ({period})", f"/{db}.json?{query}"))
    results = []
    for label, url in targets:
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            response = await ds.client.get(url)
            runs.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                sys.exit(f"error: {url} answered {response.status_code}: {response.text[:300]}")
        results.append((label, statistics.median(runs), max(runs)))
    return results


def _any(path: Path, column: str, where: str = "1") -> str:
    """A value of a column from the middle of the log, to open the page it links to."""
    conn = sqlite3.connect(path)
    try:
        [(count,)] = conn.execute("SELECT max(id) FROM requests")
        sql = f"SELECT {column} FROM requests WHERE id >= ? AND {where} LIMIT 1"
        return str(conn.execute(sql, (count // 2,)).fetchone()[0])
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to generate (1M)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per target (5)")
    parser.add_argument("--db", type=Path, help="reuse/keep this database file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flowgate-dash-") as tmp:
        path = args.db or Path(tmp) / "flowgate.db"
        if not path.exists():
            seconds = generate(path, args.rows)
            print(f"generated {args.rows:,} rows in {seconds:.0f} s", file=sys.stderr)
        open_db(path).conn.close()  # a kept database gets any newer migrations
        results = asyncio.run(timings(path, args.repeats))
    print(f"\n## Dashboard and log browser on {args.rows:,} rows (median of {args.repeats})\n")
    print("| page or chart query | median ms | max ms |")
    print("|---|---:|---:|")
    for label, median, worst in results:
        print(f"| {label} | {median:.1f} | {worst:.1f} |")


if __name__ == "__main__":
    main()
