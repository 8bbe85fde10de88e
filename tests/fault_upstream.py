"""A local OpenAI-compatible upstream that misbehaves on command, for fault tests.

The requested model picks the behaviour (chat completions only):

- `fault-ok`: a normal SSE stream (or JSON reply), with usage when asked for.
- `fault-long`: a long SSE stream of `LONG_EVENTS` content events, then usage.
- `fault-huge`: the same with `HUGE_EVENTS`, several megabytes.
- `fault-hang`: reads the request and never answers (until `stop()`).
- `fault-stall`: sends headers and `PARTIAL_EVENTS` content events, then sends
  nothing more while keeping the connection open (until `stop()`).
- `fault-drop`: sends headers and `PARTIAL_EVENTS` content events, then closes the
  connection in the middle of the chunked body.
- `fault-429`: 429 with a `retry-after` header and an OpenAI rate-limit error.
- `fault-503`: 503 with a plain-text body that must reach the client unchanged.

`plain_port` is a second listener that speaks plain HTTP, for `https://` base
URLs that must fail the TLS handshake.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from fake_provider import serve

CREATED = 1_700_000_000
PROMPT_TOKENS = 11
PARTIAL_EVENTS = 3
LONG_EVENTS = 200
HUGE_EVENTS = 60_000  # ~9 MB: more than the sockets between client and upstream hold
RETRY_AFTER = "17"
RATE_LIMIT_BODY = {
    "error": {
        "message": "Rate limit reached for requests",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}
OVERLOADED_BODY = b"upstream overloaded: try again later\n"


def piece(i: int) -> str:
    return f" word{i}"


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunk(model: str, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
    obj: dict[str, Any] = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        obj["usage"] = usage
    return _event(obj)


def content_events(model: str, count: int) -> list[bytes]:
    first = [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
    events = [_chunk(model, first)]
    for i in range(count):
        delta = [{"index": 0, "delta": {"content": piece(i)}, "finish_reason": None}]
        events.append(_chunk(model, delta))
    return events


def full_stream(model: str, count: int, include_usage: bool) -> list[bytes]:
    events = content_events(model, count)
    events.append(_chunk(model, [{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if include_usage:
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": count,
            "total_tokens": PROMPT_TOKENS + count,
        }
        events.append(_chunk(model, [], usage))
    events.append(b"data: [DONE]\n\n")
    return events


class FaultUpstream:
    """Run with `start()`; `base_url` is http(s)://127.0.0.1:PORT."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.tls = tls
        self.release = threading.Event()  # set by stop(): hung handlers return
        self.hanging = threading.Semaphore(0)  # released once per request that hangs or stalls
        self.dropped = threading.Semaphore(0)  # released once per dropped stream

    def start(self) -> FaultUpstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._json(200, {"object": "list", "data": []})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                body = json.loads(raw or b"{}")
                model = body.get("model", "")
                usage = (body.get("stream_options") or {}).get("include_usage") is True
                if model == "fault-hang":
                    upstream.hanging.release()
                    upstream.release.wait(60)
                elif model == "fault-429":
                    self._json(429, RATE_LIMIT_BODY, {"retry-after": RETRY_AFTER})
                elif model == "fault-503":
                    self.send_response(503)
                    self.send_header("content-type", "text/plain")
                    self.send_header("content-length", str(len(OVERLOADED_BODY)))
                    self.end_headers()
                    self.wfile.write(OVERLOADED_BODY)
                elif model in ("fault-stall", "fault-drop"):
                    self._start_stream()
                    for event in content_events(model, PARTIAL_EVENTS):
                        self._send_chunk(event)
                    if model == "fault-stall":
                        upstream.hanging.release()
                        upstream.release.wait(60)
                    else:  # half a chunk, then the connection goes away
                        self.wfile.write(b"100\r\ndata: {")
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        upstream.dropped.release()
                    self.close_connection = True
                elif not body.get("stream"):
                    self._json(200, _completion(model))
                else:
                    count = {"fault-long": LONG_EVENTS, "fault-huge": HUGE_EVENTS}.get(
                        model, PARTIAL_EVENTS
                    )
                    self._start_stream()
                    for event in full_stream(model, count, usage):
                        self._send_chunk(event)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()

            def _start_stream(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream; charset=utf-8")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()

            def _send_chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server, self.port, self.base_url = serve(Handler, self.tls)
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 1, "total_tokens": 12},
    }


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
