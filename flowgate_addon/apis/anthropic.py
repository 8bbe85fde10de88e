"""Anthropic Messages wire format: endpoints, usage with cache tokens, readable text."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from flowgate_addon.apis.common import (
    Reply,
    Usage,
    as_dict,
    as_int,
    as_list,
    error_text,
    json_object,
    model_in_body,
    sse_objects,
    stream_flag_in_body,
)

# API path below the base URL (…/v1) -> endpoint name logged in `requests.endpoint`.
ENDPOINTS = {
    "/messages": "messages",
    "/messages/count_tokens": "messages.count_tokens",
}

_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def endpoint(api_path: str) -> str | None:
    """Endpoint name for an API path below the base URL (no query), or None."""
    return ENDPOINTS.get(api_path)


request_model = model_in_body
is_stream = stream_flag_in_body


def usage_from(raw: Any) -> Usage | None:
    """Anthropic usage -> Usage; prompt tokens include cache reads and cache writes."""
    if not isinstance(raw, dict):
        return None
    fresh = as_int(raw.get("input_tokens"))
    written = as_int(raw.get("cache_creation_input_tokens"))
    read = as_int(raw.get("cache_read_input_tokens"))
    completion = as_int(raw.get("output_tokens"))
    if fresh is None and written is None and read is None and completion is None:
        return None
    prompt = None
    if fresh is not None or written is not None or read is not None:
        prompt = (fresh or 0) + (written or 0) + (read or 0)
    total = None if prompt is None and completion is None else (prompt or 0) + (completion or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=read,
        total_tokens=total,
        cache_write_tokens=written,
    )


def read_json_response(body: bytes) -> Reply:
    if (obj := json_object(body)) is None:
        return Reply()
    return Reply(usage_from(obj.get("usage")), response_text(obj), error_message(obj))


def read_sse_response(chunks: Iterable[bytes]) -> Reply:
    """Reassemble a streamed message: text, tool calls, final usage, errors.

    `message_start` carries the input and cache counts (and a first output count);
    `message_delta` carries the cumulative output count and, in newer API versions,
    the input and cache counts again.
    """
    reply = Reply()
    raw_usage: dict[str, int] = {}
    blocks: dict[int, dict[str, Any]] = {}
    for obj in sse_objects(chunks):
        kind = obj.get("type")
        if message := error_message(obj):
            reply.error = message
        if kind == "message_stop":
            reply.finished = True
        elif kind == "message_start":
            _merge_usage(raw_usage, as_dict(obj.get("message")).get("usage"))
        elif kind == "message_delta":
            _merge_usage(raw_usage, obj.get("usage"))
        elif kind == "content_block_start":
            block = obj.get("content_block")
            if isinstance(block, dict) and isinstance(obj.get("index"), int):
                blocks[obj["index"]] = {"block": block, "text": [], "json": []}
        elif kind == "content_block_delta":
            index = obj.get("index")
            slot = blocks.get(index) if isinstance(index, int) else None
            delta = obj.get("delta") or {}
            if slot is None or not isinstance(delta, dict):
                continue
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                slot["text"].append(delta["text"])
            elif delta.get("type") == "input_json_delta":
                slot["json"].append(str(delta.get("partial_json") or ""))
    reply.usage = usage_from(raw_usage) if raw_usage else None
    texts: list[str] = []
    calls: list[str] = []
    for _, slot in sorted(blocks.items()):
        block = slot["block"]
        if block.get("type") == "text":
            texts.append(str(block.get("text") or "") + "".join(slot["text"]))
        elif block.get("type") in ("tool_use", "server_tool_use"):
            arguments = "".join(slot["json"])
            if not arguments:
                arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            calls.append(f"[tool call] {block.get('name')}({arguments})")
    reply.text = _join(["".join(texts), *calls])
    return reply


def _merge_usage(into: dict[str, int], raw: Any) -> None:
    if not isinstance(raw, dict):
        return
    for name in _USAGE_FIELDS:
        value = as_int(raw.get(name))
        if value is not None:
            into[name] = value


def _join(pieces: list[str]) -> str:
    return "\n".join(piece for piece in pieces if piece)


def response_text(obj: dict[str, Any]) -> str | None:
    """Text blocks of a message, then its tool calls, one per line; None for other shapes."""
    content = obj.get("content")
    if not isinstance(content, list):
        return None
    texts: list[str] = []
    calls: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") in ("tool_use", "server_tool_use"):
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            calls.append(f"[tool call] {block.get('name')}({arguments})")
    return _join(["".join(texts), *calls])


def error_message(obj: dict[str, Any]) -> str | None:
    """`{"type": "error", "error": {"type": ..., "message": ...}}` -> the message."""
    return error_text(obj.get("error"), "type")


def prompt_text(body: dict[str, Any]) -> str:
    """The prompt a request sent: `system: ...` first, then `role: content` per message."""
    lines = []
    system = body.get("system")
    if isinstance(system, str) and system:
        lines.append(f"system: {system}")
    elif isinstance(system, list) and system:
        lines.append(f"system: {content_text(system)}")
    for message in as_list(body.get("messages")):
        if isinstance(message, dict):
            lines.append(f"{message.get('role', '?')}: {content_text(message.get('content'))}")
    return "\n".join(lines)


def content_text(content: Any) -> str:
    """Message content as text; images, documents and tool traffic are summarised."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else json.dumps(content, ensure_ascii=False)
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif not isinstance(block, dict):
            continue
        elif block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            parts.append(f"[tool call] {block.get('name')}({arguments})")
        elif block.get("type") == "tool_result":
            inner = block.get("content")
            parts.append(f"[tool result] {content_text(inner)}".rstrip())
        else:
            parts.append(f"[{block.get('type', 'block')}]")
    return " ".join(parts)
