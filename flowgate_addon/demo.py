"""`flowgate demo`: realistic traffic through a real FlowGate, so the dashboards come alive.

A stand-in upstream (an OpenAI-compatible server on loopback, answering for every
provider with plausible usage, latency, streams and the odd error) takes the place
of the providers; a real `flowgate start` with smart routing on sits in front of it
and logs into the configured database; a pool of clients sends a mix of routed and
named-model requests. Nothing leaves the machine and no key is needed.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

PROVIDERS = {
    "openai": "/openai/v1",
    "anthropic": "/anthropic/v1",
    "gemini": "/gemini/v1beta",
    "deepseek": "/deepseek/v1",
}
TIERS = {
    "SIMPLE": "deepseek-chat",
    "MEDIUM": "gemini-2.0-flash",
    "COMPLEX": "claude-sonnet-4-5",
    "REASONING": "o3",
}
NAMED_MODELS = ["gpt-4o-mini", "gpt-4o", "claude-haiku-4-5", "deepseek-chat"]
PROMPTS = [
    "What is the capital of Portugal?",
    "Translate 'good morning' into Spanish.",
    "Summarise this ticket in one sentence: the login page times out for EU users.",
    "Write a Python function that merges two sorted lists.",
    "Explain the difference between a process and a thread.",
    "Review this SQL and suggest an index:\n```sql\nSELECT * FROM orders WHERE customer_id = ?"
    " ORDER BY created_at DESC LIMIT 20;\n```",
    "Our checkout service drops 2% of payments under load. First, review this handler:\n"
    "```python\nasync def pay(req):\n    order = await db.get(req.order_id)\n"
    "    await gateway.charge(order.total)\n    return json.dumps({'ok': True})\n```\n"
    "Then design a retry scheme with idempotency keys that keeps p99 latency under 200 ms, "
    "and finally return the plan as JSON with exactly three keys: causes, design, risks.",
    "Design a rate limiter for a multi-tenant API gateway in a distributed system: compare "
    "token bucket and sliding window, handle clock skew across regions, give the Redis data "
    "model and a Go sketch:\n```go\nfunc Allow(tenant string) bool {\n    return true\n}\n```"
    "\nAnswer as a markdown table, then the code.",
    "Prove that the square root of 2 is irrational, step by step.",
    "Derive the closed form of the sum of the first n squares and prove it by induction.",
]
AGENTS = ["support-bot", "coder", "summarizer", "planner"]


class StandIn:
    """An OpenAI-compatible upstream on loopback for every demo provider."""

    def __init__(self, seed: int = 7):
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                status, delay, words, prompt_tokens = stand_in._plan(body)
                time.sleep(delay)
                if status != 200:
                    self._send(status, _error(status))
                elif body.get("stream"):
                    self._stream(body, words, prompt_tokens)
                else:
                    self._send(200, _completion(body, words, prompt_tokens))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], words: list[str], prompt_tokens: int) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for event in _events(body, words, prompt_tokens):
                    chunk = b"data: " + event + b"\n\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    time.sleep(0.005)
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _plan(self, body: dict[str, Any]) -> tuple[int, float, list[str], int]:
        """Status, delay, reply words and prompt size for one request (seeded, thread-safe)."""
        text = json.dumps(body.get("messages", ""))
        with self._lock:
            roll = self._rng.random()
            status = 429 if roll < 0.02 else 500 if roll < 0.04 else 200
            delay = self._rng.uniform(0.02, 0.25)
            words = ["word"] * self._rng.randint(15, 300)
        return status, delay, words, max(8, len(text) // 4)

    def start(self) -> StandIn:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _completion(body: dict[str, Any], words: list[str], prompt_tokens: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-demo",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": " ".join(words)},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(prompt_tokens, len(words)),
    }


def _events(body: dict[str, Any], words: list[str], prompt_tokens: int) -> list[bytes]:
    base = {"id": "chatcmpl-demo", "object": "chat.completion.chunk", "model": body.get("model")}
    events = [
        json.dumps({**base, "choices": [{"index": 0, "delta": {"content": w + " "}}]}).encode()
        for w in words
    ]
    events.append(
        json.dumps(
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        ).encode()
    )
    options = body.get("stream_options") or {}
    if options.get("include_usage"):
        usage = {**base, "choices": [], "usage": _usage(prompt_tokens, len(words))}
        events.append(json.dumps(usage).encode())
    events.append(b"[DONE]")
    return events


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _error(status: int) -> dict[str, Any]:
    message = "Rate limit reached, try again" if status == 429 else "The server had an error"
    kind = "rate_limit_error" if status == 429 else "server_error"
    return {"error": {"message": message, "type": kind, "code": None}}


def demo_config(stand_in_url: str) -> dict[str, Any]:
    """FlowGate settings for the demo: every provider is the stand-in, routing is on."""
    return {
        "providers": {
            name: {"base_url": stand_in_url + path, "api_key": f"demo-{name}-key"}
            for name, path in PROVIDERS.items()
        },
        "smart_router": {"enabled": True, "strategy": "complexity", "tiers": TIERS},
    }


def send_traffic(
    base_url: str,
    count: int,
    concurrency: int = 8,
    seed: int = 11,
) -> dict[int, int]:
    """COUNT requests through the gateway; returns how many got each HTTP status."""
    rng = random.Random(seed)
    plans = []
    for i in range(count):
        prompt = rng.choice(PROMPTS)
        model = "auto" if rng.random() < 0.6 else rng.choice(NAMED_MODELS)
        headers = {"authorization": "Bearer demo", "x-flowgate-session": f"demo-{i // 6}"}
        if rng.random() < 0.5:
            headers["x-flowgate-agent"] = rng.choice(AGENTS)
        body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
        if rng.random() < 0.4:
            body["stream"] = True
        plans.append((headers, body))
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def send(client: httpx.Client, plan: tuple[dict[str, str], dict[str, Any]]) -> None:
        headers, body = plan
        response = client.post(f"{base_url}/chat/completions", json=body, headers=headers)
        with lock:
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    with (
        httpx.Client(timeout=30, trust_env=False) as client,
        ThreadPoolExecutor(concurrency) as pool,
    ):
        list(pool.map(lambda plan: send(client, plan), plans))
    return statuses
