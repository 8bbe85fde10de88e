"""A local stand-in for LLM providers, for tests.

OpenAI chat completions, embeddings and Responses; Anthropic Messages under any
path containing /anthropic/; Gemini generateContent under /gemini/ (payloads
from fake_formats).

JSON answers are compressed (zstd, br or gzip) when the client accepts it, as real
providers do.
It answers chat completions (JSON and SSE, with OpenAI's exact include_usage
behaviour), embeddings and models, under any base path ending in /v1. Model
names pick behaviours: `fail-400`, `fail-500`, `no-usage`. Every request it
receives is recorded so tests can check what FlowGate sent upstream.
"""

from __future__ import annotations

import gzip
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import brotli
import fake_formats as formats
import zstandard

CREATED = 1_700_000_000
PROMPT_TOKENS = 25
CACHED_PROMPT_TOKENS = 40
CACHED_TOKENS = 16
COMPLETION_TOKENS = 7
EMBEDDING_TOKENS = 8


def reply_pieces(model: str, body: dict[str, Any] | None = None) -> list[str]:
    """The reply, in stream pieces; model `echo` repeats the last message back."""
    if model == "echo" and body and body.get("messages"):
        return [str(body["messages"][-1].get("content", ""))]
    return ["Hello", " from", f" {model}", "!"]


def usage_for(body: dict[str, Any]) -> dict[str, Any]:
    cached = "[cached]" in json.dumps(body.get("messages", ""))
    prompt = CACHED_PROMPT_TOKENS if cached else PROMPT_TOKENS
    return {
        "prompt_tokens": prompt,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": prompt + COMPLETION_TOKENS,
        "prompt_tokens_details": {
            "cached_tokens": CACHED_TOKENS if cached else 0,
            "audio_tokens": 0,
        },
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def compress(data: bytes, accept: str) -> tuple[str | None, bytes]:
    """Compress as a provider would: the best encoding the client accepts."""
    if "zstd" in accept:
        return "zstd", zstandard.ZstdCompressor().compress(data)
    if "br" in accept:
        return "br", brotli.compress(data)
    if "gzip" in accept:
        return "gzip", gzip.compress(data)
    return None, data


# What each provider's GET /models lists; the first path segment picks the provider.
LISTED_MODELS = {
    "deepseek": ["deepseek-chat", "r2-preview"],
    "anthropic": ["claude-sonnet-4-5", "claude-new-model", "claude-newest-model"],
    "gemini": ["gemini-2.0-flash", "gemini-new-model"],
    "": ["gpt-4o-mini"],
}


def model_list(path: str, query: str) -> dict[str, Any]:
    """A provider's model list in its own format, paged where the real one pages."""
    provider = path.strip("/").split("/")[0]
    models = LISTED_MODELS.get(provider, LISTED_MODELS[""])
    if provider == "anthropic":  # pages of two, continued with ?after_id=
        start = (
            models.index(query.split("after_id=")[1].split("&")[0]) + 1
            if "after_id=" in query
            else 0
        )
        page = models[start : start + 2]
        return {
            "data": [
                {"id": m, "type": "model", "created_at": "2025-09-29T00:00:00Z"} for m in page
            ],
            "has_more": start + 2 < len(models),
            "last_id": page[-1],
        }
    if provider == "gemini":  # pages of one, continued with ?pageToken=
        index = int(query.split("pageToken=")[1].split("&")[0]) if "pageToken=" in query else 0
        body: dict[str, Any] = {
            "models": [{"name": f"models/{models[index]}", "inputTokenLimit": 1048576}]
        }
        if index + 1 < len(models):
            body["nextPageToken"] = str(index + 1)
        return body
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": provider or "openai"}
            for m in models
        ],
    }


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def chat_completion(body: dict[str, Any]) -> dict[str, Any]:
    model = body["model"]
    result: dict[str, Any] = {
        "id": "chatcmpl-fake123",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "".join(reply_pieces(model, body)),
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "system_fingerprint": "fp_fake",
    }
    if model != "no-usage":
        result["usage"] = usage_for(body)
    return result


def chat_stream_events(body: dict[str, Any]) -> list[bytes]:
    """The SSE events OpenAI sends for this request body, byte for byte."""
    model = body["model"]
    options = body.get("stream_options") or {}
    include_usage = options.get("include_usage") is True and model != "no-usage"

    def chunk(choices: list[dict[str, Any]], usage: Any = None, last: bool = False) -> bytes:
        obj: dict[str, Any] = {
            "id": "chatcmpl-fake123",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if include_usage:
            obj["usage"] = usage if last else None
        return b"data: " + _dump(obj) + b"\n\n"

    def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

    events = [chunk(delta({"role": "assistant", "content": "", "refusal": None}))]
    events += [chunk(delta({"content": piece})) for piece in reply_pieces(model, body)]
    events.append(chunk(delta({}, "stop")))
    if include_usage:
        events.append(chunk([], usage_for(body), last=True))
    events.append(b"data: [DONE]\n\n")
    return events


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeProvider:
    """Run with `start()`; `base_url` is http://127.0.0.1:PORT."""

    received: list[Received] = field(default_factory=list)
    # When set, a stream pauses after its first event until this is set (or 10 s pass).
    gate: threading.Event | None = None
    gate_released: bool | None = None
    # Serve HTTPS with this server-side context (see conftest.test_ca).
    tls: ssl.SSLContext | None = None

    def start(self) -> FakeProvider:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._record(self, None)
                path, _, query = self.path.partition("?")
                if path.endswith("/models"):
                    self._json(200, model_list(path, query))
                else:
                    self._json(
                        404, {"error": {"message": "not found", "type": "invalid_request_error"}}
                    )

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                fake._record(self, body)
                path, _, query = self.path.partition("?")
                if "/anthropic/" in path and path.endswith("/messages"):
                    if body.get("model") == "fail-500":
                        self._json(
                            500,
                            {
                                "type": "error",
                                "error": {"type": "api_error", "message": "Internal server error"},
                            },
                        )
                    elif body.get("stream"):
                        self._stream(formats.anthropic_stream_events(body))
                    else:
                        self._json(200, formats.anthropic_message(body))
                elif "/gemini/" in path and ":" in path:
                    model, _, method = path.rsplit("/", 1)[1].partition(":")
                    if method == "generateContent":
                        self._json(200, formats.gemini_response(model, body))
                    elif "alt=sse" in query:
                        self._stream(formats.gemini_stream_events(model, body))
                    else:  # Gemini's default stream: one JSON array, sent in pieces
                        self._stream(formats.gemini_stream_array(model, body), "application/json")
                elif path.endswith("/responses"):
                    if body.get("stream"):
                        self._stream(formats.responses_stream_events(body))
                    else:
                        self._json(200, formats.responses_response(body))
                elif self.path.endswith("/chat/completions"):
                    self._chat(body)
                elif self.path.endswith("/embeddings"):
                    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    self._json(
                        200,
                        {
                            "object": "list",
                            "data": [
                                {"object": "embedding", "index": i, "embedding": [0.25] * 8}
                                for i in range(len(inputs))
                            ],
                            "model": body["model"],
                            "usage": {
                                "prompt_tokens": EMBEDDING_TOKENS,
                                "total_tokens": EMBEDDING_TOKENS,
                            },
                        },
                    )
                else:
                    self._json(
                        404,
                        {
                            "error": {
                                "message": f"unknown path {self.path}",
                                "type": "invalid_request_error",
                            }
                        },
                    )

            def _chat(self, body: dict[str, Any]) -> None:
                model = body.get("model")
                if model == "fail-400":
                    self._json(
                        400,
                        {
                            "error": {
                                "message": "Invalid value for 'temperature': must be <= 2.",
                                "type": "invalid_request_error",
                                "param": "temperature",
                                "code": "invalid_value",
                            }
                        },
                    )
                elif model == "fail-500":
                    self._json(
                        500,
                        {
                            "error": {
                                "message": "The server had an error while processing your request.",
                                "type": "server_error",
                                "param": None,
                                "code": None,
                            }
                        },
                    )
                elif body.get("stream") and model == "sized-stream":
                    # A whole event stream with a content-length, as some servers send it.
                    data = b"".join(chat_stream_events(body))
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif body.get("stream"):
                    self._stream(chat_stream_events(body))
                else:
                    self._json(200, chat_completion(body))

            def _json(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                encoding, data = compress(data, self.headers.get("accept-encoding", ""))
                if encoding:
                    self.send_header("content-encoding", encoding)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(
                self, events: list[bytes], content_type: str = "text/event-stream; charset=utf-8"
            ) -> None:
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for i, event in enumerate(events):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                    if i == 1 and fake.gate is not None:
                        fake.gate_released = fake.gate.wait(10)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self.server, self.port, self.base_url = serve(Handler, self.tls)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _record(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        self.received.append(Received(handler.command, handler.path, headers, body))

    def last(self, path_suffix: str) -> Received:
        for item in reversed(self.received):
            if item.path.endswith(path_suffix):
                return item
        raise AssertionError(f"upstream received nothing at {path_suffix}")


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many requests at once: no refused or reset connects
    daemon_threads = True


def serve(
    handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
) -> tuple[ThreadingHTTPServer, int, str]:
    """Serve HANDLER on a free loopback port (HTTPS with TLS), on a daemon thread."""
    server = _Server(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    scheme = "http"
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port, f"{scheme}://127.0.0.1:{port}"
