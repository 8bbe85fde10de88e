"""What the hot path learns about one call, and how it becomes a log row.

The event loop only fills in a `CallRecord` (timestamps, raw bytes, routing
facts). Everything slower — JSON parsing of responses, token counting,
pricing, text extraction — happens in `to_row`, on the writer thread.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from mitmproxy.http import Headers, Response
from mitmproxy.net import encoding

from flowgate_addon.apis import wire_format
from flowgate_addon.apis.common import Reply, Usage, json_object
from flowgate_addon.config import LoggingSettings
from flowgate_addon.pricing import PriceBook
from flowgate_addon.routing import Decision, route_json


@dataclass(slots=True)
class CallRecord:
    t_start: float
    mode: str
    client_ip: str | None
    method: str
    path: str
    endpoint: str
    host: str | None
    provider: str | None = None
    requested_model: str | None = None
    routed_model: str | None = None
    strategy: str | None = None
    stream: bool = False
    strip_usage: bool = False
    body_changed: bool = False
    session: str | None = None
    agent: str | None = None
    end_user: str | None = None
    request_body: bytes | None = None
    status: int | None = None
    response_body: bytes | None = None
    response_headers: Headers | None = None  # read on the writer thread, not the loop
    chunks: list[bytes] = field(default_factory=list)
    t_first: float | None = None
    t_end: float | None = None
    error: str | None = None
    local: bool = False  # answered by FlowGate itself (models list, its own errors)
    api: str = "openai"  # wire format, a key of flowgate_addon.apis.FORMATS
    sse: bool = False  # the response was an event stream
    caller: str | None = None  # the caller token's name
    price_key: str | None = None  # the provider's name in the price map
    # Routing: the decision, and what the requested model would have cost instead.
    decision: Decision | None = None
    route_header: str | None = None
    route_opt_out: bool = False
    baseline_model: str | None = None
    baseline_price_key: str | None = None
    client_key_ok: bool = True  # False when routing chose a provider the client did not ask for
    timed_out: bool = False  # the upstream went silent too long and FlowGate cut it off
    client_gone: bool = False  # the client hung up before the response was over

    def keep_response(self, response: Response) -> None:
        """Keep a buffered response body (still encoded) for the writer thread."""
        self.response_body = response.raw_content
        self.response_headers = response.headers


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def to_row(
    record: CallRecord,
    prices: PriceBook,
    log: LoggingSettings,
    redact: Callable[[str | None], str | None],
) -> dict[str, Any]:
    """Build the `requests` row: usage, cost, latency, and readable texts with secrets removed.

    Texts are redacted before they are clipped, so a cut never leaves half a key behind.
    """
    from flowgate_addon import tokencount

    fmt = wire_format(record.api)
    body = json_object(record.request_body or b"{}") or {}
    reply = _read_reply(record, fmt)
    usage = reply.usage
    usage_source = "provider" if usage and usage.prompt_tokens is not None else None
    # SDKs hang up as soon as a stream's end marker arrives, often before the upstream's
    # last bytes: a client gone after the end of its answer is not a cancelled call.
    failure = None if record.client_gone and reply.finished else record.error
    ok = record.status is not None and 200 <= record.status < 300 and not failure
    # A stream broken off (client gone, upstream cut off): the tokens seen so far.
    partial = bool(record.chunks and reply.text) and not ok and record.status == 200
    if (
        usage_source is None
        and (ok or partial)
        and not record.local
        and record.endpoint in _COUNTABLE
    ):
        model = record.routed_model or record.requested_model or ""
        usage = Usage(
            prompt_tokens=tokencount.count_request(model, body),
            completion_tokens=tokencount.count_text(model, reply.text or ""),
        )
        usage.total_tokens = usage.prompt_tokens + (usage.completion_tokens or 0)
        usage_source = "estimated"
    usage = usage or Usage()
    model = record.routed_model or record.requested_model
    tokens = (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
    cost = prices.cost(model, *tokens, record.price_key, usage.cache_write_tokens)
    saved = None
    if record.baseline_model and cost is not None:
        baseline = prices.cost(
            record.baseline_model, *tokens, record.baseline_price_key, usage.cache_write_tokens
        )
        saved = None if baseline is None else baseline - cost
    end = record.t_end or record.t_start
    decision = record.decision
    error = failure or (reply.error if not ok else None)
    if error is None and not ok and record.status is not None:  # an error body not in JSON
        detail = reply.text or _body_text(record)
        error = f"HTTP {record.status}" + (f": {detail}" if detail else "")
    return {
        "ts": iso(record.t_start),
        "mode": record.mode,
        "method": record.method,
        "path": record.path,
        "endpoint": record.endpoint,
        "host": record.host,
        "requested_model": record.requested_model,
        "routed_model": record.routed_model,
        "provider": record.provider,
        "status": record.status,
        "error": _clip(redact(error), 2000),
        "stream": int(record.stream),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
        "total_tokens": usage.total_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "usage_source": usage_source,
        "cost_usd": cost,
        "saved_usd": saved,
        "latency_ms": round((end - record.t_start) * 1000, 3),
        "ttft_ms": round((record.t_first - record.t_start) * 1000, 3) if record.t_first else None,
        "tier": decision.tier if decision else None,
        "score": decision.score if decision else None,
        "strategy": record.strategy,
        "route": route_json(decision) if decision else None,
        "route_fallback": decision.fallback if decision else None,
        "caller": record.caller,
        "session": record.session,
        "agent": record.agent,
        "end_user": record.end_user,
        "client_ip": record.client_ip,
        "prompt_hash": prompt_hash(body),
        "prompt": _clip(redact(fmt.prompt_text(body)), log.max_text_chars)
        if log.store_prompts and body
        else None,
        "response": _clip(redact(reply.text), log.max_text_chars) if log.store_responses else None,
    }


_COUNTABLE = {"chat.completions", "completions", "embeddings"}

# What makes two requests the same prompt, in every wire format: instructions, the
# conversation, tools. Not the model, sampling settings or metadata.
PROMPT_FIELDS = (
    "system",
    "instructions",
    "messages",
    "input",
    "prompt",
    "contents",
    "systemInstruction",
    "system_instruction",
    "tools",
)


def prompt_hash(body: dict[str, Any]) -> str | None:
    """A short fingerprint of a request's prompt, to find prompts sent again and again.

    A hash, not the text: it is kept even when prompts are not stored.
    """
    prompt = {k: body[k] for k in PROMPT_FIELDS if body.get(k) is not None}
    if not prompt:
        return None
    text = json.dumps(prompt, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=10).hexdigest()


def _read_reply(record: CallRecord, fmt: ModuleType) -> Reply:
    if record.chunks:
        if record.sse:
            return fmt.read_sse_response(record.chunks)
        return fmt.read_json_response(b"".join(record.chunks))
    if record.response_body:
        body = _decoded_body(record)
        if body is None:
            return Reply(error="response body could not be decoded")
        return fmt.read_json_response(body)
    return Reply()


def _decoded_body(record: CallRecord) -> bytes | None:
    """The buffered response body without its content-encoding (None if undecodable)."""
    body = record.response_body or b""
    content_encoding = record.response_headers and record.response_headers.get("content-encoding")
    if not content_encoding:
        return body
    try:
        return encoding.decode(body, content_encoding)
    except ValueError:
        return None


def _body_text(record: CallRecord, limit: int = 500) -> str | None:
    """The start of a buffered response body, as text."""
    body = _decoded_body(record)
    return (body[:limit].decode("utf-8", "replace").strip() or None) if body else None


def _clip(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters not stored]"
