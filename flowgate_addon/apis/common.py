"""What every wire format reports: usage, reply text, errors; and SSE framing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

_EVENT_SPLIT = re.compile(rb"(\r?\n\r?\n)")


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    total_tokens: int | None = None
    cache_write_tokens: int | None = None  # prompt tokens written to a provider cache

    @classmethod
    def from_obj(cls, usage: Any) -> Usage | None:
        """OpenAI's usage object (Chat Completions and Responses field names)."""
        if not isinstance(usage, dict):
            return None
        details = as_dict(usage.get("prompt_tokens_details") or usage.get("input_tokens_details"))
        prompt = as_int(usage.get("prompt_tokens", usage.get("input_tokens")))
        completion = as_int(usage.get("completion_tokens", usage.get("output_tokens")))
        total = as_int(usage.get("total_tokens"))
        if total is None and prompt is not None:
            total = prompt + (completion or 0)
        return cls(prompt, completion, as_int(details.get("cached_tokens")), total)


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: wrong types read as absent."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """`value` if it is a JSON array, else an empty one: wrong types read as absent."""
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str:
    """`value` if it is a string, else an empty one."""
    return value if isinstance(value, str) else ""


@dataclass
class Reply:
    """What a response said: usage, text, and any error message."""

    usage: Usage | None = None
    text: str | None = None
    error: str | None = None
    # A stream got to its end (a finish reason, message_stop, a final response event):
    # a client that hangs up after this has its whole answer.
    finished: bool = False


def error_text(error: Any, *fallback_keys: str) -> str | None:
    """The message of a response's `error` member: a string as is, or a dict's `message`
    (else the first of `fallback_keys` it has, else the whole dict)."""
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        return str(next((error[k] for k in ("message", *fallback_keys) if error.get(k)), error))
    return None


def sse_payloads(data: bytes) -> Iterator[str]:
    """The `data:` payloads of a complete SSE byte stream, in order."""
    for event in _EVENT_SPLIT.split(data):
        lines = [
            line[5:].lstrip()
            for line in event.decode("utf-8", "replace").splitlines()
            if line.startswith("data:")
        ]
        if lines:
            yield "\n".join(lines)


def model_in_body(api_path: str, body: dict[str, Any] | None) -> str | None:
    """`request_model` for formats that name the model in the JSON body."""
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) and model else None


def stream_flag_in_body(api_path: str, query: str, body: dict[str, Any] | None) -> bool:
    """`is_stream` for formats that ask for a stream with `"stream": true`."""
    return isinstance(body, dict) and body.get("stream") is True


def json_object(data: bytes | str) -> dict[str, Any] | None:
    """A JSON object, or None for anything else (bad JSON, arrays, scalars)."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        return None
    return value if isinstance(value, dict) else None


def sse_objects(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a stream's `data:` events (`[DONE]` and non-JSON skipped)."""
    for payload in sse_payloads(b"".join(chunks)):
        if (obj := json_object(payload)) is not None:
            yield obj
