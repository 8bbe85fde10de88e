"""OpenAI wire format: endpoints, usage in JSON and SSE, readable prompt/response text."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from flowgate_addon.apis.common import Reply, Usage, sse_payloads

# API path below the base URL -> endpoint name logged in `requests.endpoint`.
ENDPOINTS = {
    "/chat/completions": "chat.completions",
    "/embeddings": "embeddings",
    "/completions": "completions",
    "/responses": "responses",
}


def read_json_response(body: bytes) -> Reply:
    try:
        obj = json.loads(body)
    except ValueError:
        return Reply()
    if not isinstance(obj, dict):
        return Reply()
    return Reply(Usage.from_obj(obj.get("usage")), response_text(obj), error_message(obj))


def read_sse_response(chunks: Iterable[bytes]) -> Reply:
    """Reassemble a streamed chat completion: text, tool calls, last usage, errors."""
    reply = Reply()
    parts: list[str] = []
    tools: dict[int, dict[str, str]] = {}
    for payload in sse_payloads(b"".join(chunks)):
        if payload == "[DONE]":
            continue
        try:
            obj = json.loads(payload)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        if usage := Usage.from_obj(obj.get("usage")):
            reply.usage = usage
        if message := error_message(obj):
            reply.error = message
        for choice in obj.get("choices") or ():
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                parts.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                slot = tools.setdefault(call.get("index", 0), {"name": "", "arguments": ""})
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
    text = "".join(parts)
    if tools:
        text += "".join(
            f"\n[tool call] {t['name']}({t['arguments']})" for _, t in sorted(tools.items())
        )
    reply.text = text
    return reply


def response_text(obj: dict[str, Any]) -> str | None:
    """Assistant text (and tool calls) of a chat completion; None for other shapes."""
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    parts = []
    for choice in choices:
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            parts.append(message["content"])
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            parts.append(f"[tool call] {function.get('name')}({function.get('arguments')})")
        if isinstance(choice.get("text"), str):
            parts.append(choice["text"])
    return "\n".join(parts)


def error_message(obj: dict[str, Any]) -> str | None:
    error = obj.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or error)
    if isinstance(error, str):
        return error
    return None


def prompt_text(body: dict[str, Any]) -> str:
    """The prompt a request sent, as readable text: `role: content` per message."""
    if isinstance(body.get("messages"), list):
        lines = []
        for message in body["messages"]:
            if not isinstance(message, dict):
                continue
            lines.append(f"{message.get('role', '?')}: {content_text(message.get('content'))}")
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                lines.append(f"  [tool call] {function.get('name')}({function.get('arguments')})")
        return "\n".join(lines)
    for key in ("input", "prompt"):
        if key in body:
            value = body[key]
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return ""


def content_text(content: Any) -> str:
    """Message content as text; multimodal parts are summarised, not dumped."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict):
                parts.append(f"[{part.get('type', 'part')}]")
        return " ".join(parts)
    return "" if content is None else json.dumps(content, ensure_ascii=False)
