"""Microseconds FlowGate's own code spends per request, without sockets or mitmproxy's I/O.

Drives the addon's hooks (request, responseheaders, response) in-process with mitmproxy's
test harness for a small chat completion, then times the writer thread turning the
queued calls into rows. Prints a table; run it before and after touching a hook.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from flowgate_addon.addon import FlowGate

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]})
REPLY = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Hello! How can I help?"},
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
    }
).encode()


def flows(count: int) -> list:
    mode = ProxyMode.parse("reverse:http://127.0.0.1:9")
    made = []
    for _ in range(count):
        flow = tflow.tflow()
        flow.client_conn.proxy_mode = mode
        flow.request = tutils.treq(
            method=b"POST",
            path=b"/v1/chat/completions",
            content=BODY.encode(),
            headers=(
                (b"content-type", b"application/json"),
                (b"authorization", b"Bearer sk-bench"),
            ),
        )
        flow.request.timestamp_start = time.time()
        made.append(flow)
    return made


def one_run(count: int, workdir: Path) -> tuple[float, float]:
    config = workdir / "flowgate.yaml"
    config.write_text(
        f"database: {{path: {workdir / f'{time.monotonic_ns()}.db'}, flush_interval_ms: 60000}}\n"
        "providers:\n  openai: {base_url: 'http://127.0.0.1:9/v1'}\n"
    )
    gate = FlowGate()
    with taddons.context(gate) as tctx:
        tctx.configure(gate, listen_host="127.0.0.1")
        tctx.configure(gate, flowgate_config=str(config))
        batch = flows(count)
        response = tutils.tresp(content=REPLY)

        async def drive() -> float:  # in an event loop, as the hooks run in mitmproxy
            start = time.perf_counter()
            for flow in batch:
                gate.request(flow)
                flow.response = response
                gate.responseheaders(flow)
                gate.response(flow)
            return (time.perf_counter() - start) / count

        hooks = asyncio.run(drive())
        start = time.perf_counter()
        gate.done()  # the writer builds and inserts every queued row
        writer = (time.perf_counter() - start) / count
    return hooks * 1e6, writer * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="calls per run (5000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs; median shown (5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FLOWGATE_HOME"] = tmp
        runs = [one_run(args.requests, Path(tmp)) for _ in range(args.repeats)]
    hooks = statistics.median(r[0] for r in runs)
    writer = statistics.median(r[1] for r in runs)
    print(f"\n## FlowGate's own work per request (median of {args.repeats} x {args.requests})\n")
    print("| where | µs per request |\n|---|---:|")
    print(f"| event loop: request + responseheaders + response hooks | {hooks:.1f} |")
    print(f"| writer thread: row building (usage, cost, redaction) + insert | {writer:.1f} |")


if __name__ == "__main__":
    main()
