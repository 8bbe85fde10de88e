"""A local stand-in for an OpenAI-compatible embeddings endpoint, for tests.

POST /v1/embeddings answers in OpenAI's format (floats, or base64 float32 when
asked, as the openai client does by default) with deterministic vectors that
depend on the text: component 0 grows with the text's length (a crude
"difficulty" signal, so a model can tell short prompts from long ones) and the
rest come from a hash of the text. Every request is recorded so tests can check
the path and the key that were used. `status`, `delay` and `dim` change its
behaviour while it runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DIM = 16


def _float32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


def embed(text: str, dim: int = DIM) -> list[float]:
    """The vector the server returns for `text` (float32 values, as sent)."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vector = [math.tanh((len(text) - 40) / 20)]
    vector += [rng.uniform(-0.2, 0.2) for _ in range(dim - 1)]
    return [_float32(value) for value in vector]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeEmbeddings:
    """Run with `start()`; `base_url` is http://127.0.0.1:PORT/v1."""

    dim: int = DIM
    status: int = 200  # anything else answers with an OpenAI-style error body
    delay: float = 0.0  # seconds to wait before answering
    error_message: str = "the fake failed on purpose"
    received: list[Received] = field(default_factory=list)

    def start(self) -> FakeEmbeddings:
        fake = self
        self._stopping = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.received.append(Received(self.path, headers, body))
                if fake.delay:
                    fake._stopping.wait(fake.delay)
                if self.path.rstrip("/") != "/v1/embeddings":
                    return self._json(404, _error(f"no route {self.path}", "not_found"))
                if fake.status != 200:
                    return self._json(fake.status, _error(fake.error_message, "fake"))
                if not isinstance(body, dict) or "input" not in body:
                    return self._json(400, _error("'input' is required", "invalid_request"))
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                if not inputs or not all(isinstance(item, str) and item for item in inputs):
                    return self._json(400, _error("input must be non-empty text", "invalid"))
                as_base64 = body.get("encoding_format") == "base64"
                data = []
                for index, text in enumerate(inputs):
                    vector: Any = embed(text, fake.dim)
                    if as_base64:
                        packed = struct.pack(f"<{len(vector)}f", *vector)
                        vector = base64.b64encode(packed).decode()
                    data.append({"object": "embedding", "index": index, "embedding": vector})
                tokens = sum(len(text.split()) for text in inputs)
                self._json(
                    200,
                    {
                        "object": "list",
                        "data": data,
                        "model": body.get("model", ""),
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                    },
                )

            def _json(self, status: int, obj: Any) -> None:
                payload = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "param": None, "code": code}}
