#!/usr/bin/env python3
"""Soak FlowGate: many mixed requests at high concurrency; nothing lost, memory flat.

Sends ``--requests`` (100,000) chat completions through a real ``flowgate start
--no-ui`` at ``--concurrency`` (32), to a local nginx that plays four providers:
JSON answers, SSE streams (with a usage chunk), 500s and 429s with ``retry-after``.
The mix is 60 % JSON, 30 % streams, 5 % 500, 5 % 429.

Checks and prints:

* every request got the status its provider gives, and every one is a row in
  ``requests`` after FlowGate stops (SIGTERM flushes the writer's queue);
* FlowGate's RSS after the first 10 % of requests and at the end (growth must stay
  under 30 MB);
* latency p50/p99 of the first and the last 10 % of requests (stable, not creeping).

Needs ``nginx`` (``apt-get install -y nginx``). Standalone: not part of the test
suite. Only talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import gateway as gw
import httpx

MIX = [("soak-json", 60), ("soak-sse", 30), ("soak-500", 5), ("soak-429", 5)]
EXPECTED_STATUS = {"soak-json": 200, "soak-sse": 200, "soak-500": 500, "soak-429": 429}
RSS_LIMIT_MB = 30.0


def sse_body() -> str:
    """A short completion stream, with the usage chunk include_usage asks for."""
    base = {"id": "chatcmpl-soak", "object": "chat.completion.chunk", "model": "soak-sse"}
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        *(
            {**base, "choices": [{"index": 0, "delta": {"content": word}}]}
            for word in ("Hello", " from", " the", " soak", " stream", "!")
        ),
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
        },
    ]
    lines = [f"data: {json.dumps(event, separators=(',', ':'))}\n\n" for event in events]
    return "".join(lines) + "data: [DONE]\n\n"


def nginx_locations() -> str:
    """Extra nginx locations: one per soak provider."""
    chat = gw.UPSTREAM_RESPONSE.replace("\\", "\\\\").replace("'", "\\'")
    stream = sse_body().replace("\\", "\\\\").replace("'", "\\'")
    error = '{"error": {"message": "%s", "type": "%s", "code": null}}'
    return f"""
        location /json/v1/chat/completions {{
            default_type application/json;
            return 200 '{chat}';
        }}
        location /sse/v1/chat/completions {{
            default_type text/event-stream;
            return 200 '{stream}';
        }}
        location /e500/v1/chat/completions {{
            default_type application/json;
            return 500 '{error % ("The server had an error", "server_error")}';
        }}
        location /e429/v1/chat/completions {{
            default_type application/json;
            add_header retry-after 1 always;
            return 429 '{error % ("Rate limit reached", "rate_limit_error")}';
        }}"""


def providers_config(upstream_port: int) -> str:
    base = f"http://{gw.HOST}:{upstream_port}"
    lines = ["providers:"]
    for name, path in (("soakjson", "json"), ("soaksse", "sse"), ("soak500", "e500")):
        model = {"json": "soak-json", "sse": "soak-sse", "e500": "soak-500"}[path]
        lines += [f"  {name}:", f"    base_url: {base}/{path}/v1", f"    models: [{model}]"]
    lines += ["  soak429:", f"    base_url: {base}/e429/v1", "    models: [soak-429]"]
    return "\n".join(lines) + "\n"


class Results:
    """What the load generator saw, in completion order."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.wrong: list[str] = []
        self.failures: list[str] = []


async def drive(url: str, total: int, concurrency: int, seed: int, results: Results) -> None:
    rng = random.Random(seed)
    models = [m for m, _ in MIX]
    weights = [w for _, w in MIX]
    plan = rng.choices(models, weights, k=total)
    next_index = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"authorization": "Bearer sk-soak"}
    async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as client:

        async def worker() -> None:
            for i in next_index:
                model = plan[i]
                body = {"model": model, "messages": [{"role": "user", "content": f"hi {i}"}]}
                if model == "soak-sse":
                    body["stream"] = True
                started = time.perf_counter()
                try:
                    async with client.stream("POST", url, json=body, headers=headers) as reply:
                        data = await reply.aread()
                except httpx.HTTPError as exc:
                    results.failures.append(f"{model}: {type(exc).__name__}: {exc}")
                    continue
                results.latencies_ms.append((time.perf_counter() - started) * 1000)
                if reply.status_code != EXPECTED_STATUS[model]:
                    results.wrong.append(f"{model}: {reply.status_code} {data[:200]!r}")
                elif model == "soak-sse" and b"[DONE]" not in data:
                    results.wrong.append(f"{model}: stream without [DONE]")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def sample_rss(pid: int, every_s: float, samples: list[tuple[float, int]], stop: threading.Event):
    while not stop.wait(every_s):
        try:
            samples.append((time.monotonic(), gw.rss_kb(pid)))
        except (OSError, RuntimeError):
            return


def soak(args: argparse.Namespace, workdir: Path) -> bool:
    nginx = gw.find_executable("nginx")
    flowgate = gw.find_executable("flowgate")
    if not nginx or not flowgate:
        sys.exit("error: needs nginx and flowgate on PATH (apt-get install -y nginx)")
    with ExitStack() as stack:
        upstream = stack.enter_context(
            gw.running(gw.start_nginx(nginx, workdir, extra=nginx_locations()))
        )
        service = gw.start_flowgate_with(
            flowgate, workdir, "flowgate-soak", providers_config(upstream.port)
        )
        db = gw.flowgate_db(service)
        url = service.url
        probe_body = json.dumps(
            {"model": "soak-json", "messages": [{"role": "user", "content": "up?"}]}
        )

        def probe() -> tuple[int, str]:
            try:
                reply = httpx.post(url, content=probe_body, headers=gw.HEADERS, timeout=5)
                return reply.status_code, f"HTTP {reply.status_code}"
            except httpx.HTTPError as exc:
                return 0, str(exc)

        gw.wait_until_ready(service, probe)
        rows_before = gw.settled_rows(db) or 0

        # Warm-up (imports, caches, connection pools), then the measured soak.
        asyncio.run(drive(url, args.warmup, args.concurrency, 1, Results()))
        samples: list[tuple[float, int]] = []
        stop = threading.Event()
        sampler = threading.Thread(
            target=sample_rss, args=(service.proc.pid, 1.0, samples, stop), daemon=True
        )
        results = Results()
        rss_start = gw.rss_kb(service.proc.pid)
        sampler.start()
        started = time.monotonic()
        asyncio.run(drive(url, args.requests, args.concurrency, 2, results))
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join()
        rss_end = gw.rss_kb(service.proc.pid)
        # SIGTERM: the writer flushes everything queued before FlowGate exits.
        gw.stop_process(service.proc)
        rows = (gw.count_rows(db) or 0) - rows_before

    sent = args.requests + args.warmup
    answered = len(results.latencies_ms) + args.warmup
    tenth = max(1, len(results.latencies_ms) // 10)
    first, last = results.latencies_ms[:tenth], results.latencies_ms[-tenth:]
    rss_10 = next((kb for t, kb in samples if t - started >= elapsed * 0.1), rss_start)
    growth_mb = (rss_end - rss_10) / 1024
    print(
        f"\n## Soak: {args.requests:,} mixed requests at concurrency {args.concurrency} "
        f"(+{args.warmup:,} warm-up)\n"
    )
    print("| measure | value |")
    print("|---|---:|")
    print(f"| duration | {elapsed:.0f} s ({args.requests / elapsed:,.0f} req/s) |")
    print(f"| requests sent (warm-up included) | {sent:,} |")
    print(f"| answered | {answered:,} |")
    print(f"| client errors (no answer) | {len(results.failures):,} |")
    print(f"| wrong status or broken stream | {len(results.wrong):,} |")
    print(f"| rows in `requests` after SIGTERM | {rows:,} |")
    print(f"| lost rows | {answered - rows:,} |")
    print(f"| RSS at start / after 10 % / end | {rss_start / 1024:.1f} / {rss_10 / 1024:.1f} "
          f"/ {rss_end / 1024:.1f} MB |")  # fmt: skip
    print(f"| RSS growth from 10 % to end | {growth_mb:+.1f} MB |")
    print(f"| latency p50 first / last 10 % | {statistics.median(first):.1f} / "
          f"{statistics.median(last):.1f} ms |")  # fmt: skip
    print(f"| latency p99 first / last 10 % | {percentile(first, 0.99):.1f} / "
          f"{percentile(last, 0.99):.1f} ms |")  # fmt: skip
    for line in (results.failures + results.wrong)[:10]:
        print(f"  {line}", file=sys.stderr)
    ok = not results.failures and not results.wrong and rows == answered
    ok = ok and growth_mb < RSS_LIMIT_MB
    print(f"\n{'PASS' if ok else 'FAIL'}: lost rows {answered - rows}, RSS growth "
          f"{growth_mb:+.1f} MB (limit {RSS_LIMIT_MB:.0f})")  # fmt: skip
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000, help="measured requests")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--warmup", type=int, default=2_000, help="requests before measuring")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="flowgate-soak-"))
    print(f"work directory: {workdir}", file=sys.stderr)
    ok = soak(args, workdir)
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
