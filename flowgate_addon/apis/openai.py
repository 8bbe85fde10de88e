"""OpenAI wire format: endpoints, usage in JSON and SSE, readable prompt/response text.

Covers Chat Completions, legacy Completions, Embeddings and the Responses API.
"""

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
    as_str,
    error_text,
    json_object,
    model_in_body,
    sse_objects,
    stream_flag_in_body,
)

# API path below the base URL -> endpoint name logged in `requests.endpoint`.
ENDPOINTS = {
    "/chat/completions": "chat.completions",
    "/embeddings": "embeddings",
    "/completions": "completions",
    "/responses": "responses",
}

# Responses API stream events whose `response` carries the final usage.
_FINAL_EVENTS = {"response.completed", "response.incomplete", "response.failed"}
_TEXT_PARTS = {"text", "input_text", "output_text"}


def endpoint(api_path: str) -> str | None:
    """Endpoint name for an API path below the base URL (no query), or None."""
    return ENDPOINTS.get(api_path)


request_model = model_in_body
is_stream = stream_flag_in_body


def usage_from(usage: Any) -> Usage | None:
    """OpenAI usage (Chat Completions or Responses names), with cache writes if reported."""
    result = Usage.from_obj(usage)
    if result is not None:
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        result.cache_write_tokens = as_int(as_dict(details).get("cache_write_tokens"))
    return result


def read_json_response(body: bytes) -> Reply:
    if (obj := json_object(body)) is None:
        return Reply()
    return Reply(usage_from(obj.get("usage")), response_text(obj), error_message(obj))


def read_sse_response(chunks: Iterable[bytes]) -> Reply:
    """Reassemble a stream (chat completion chunks or Responses API events).

    Text, tool calls, the last usage seen, and any error message.
    """
    reply = Reply()
    parts: list[str] = []
    tools: dict[int, dict[str, str]] = {}
    calls = _ResponseCalls()
    final: dict[str, Any] | None = None
    for obj in sse_objects(chunks):
        if usage := usage_from(obj.get("usage")):
            reply.usage = usage
        if message := error_message(obj):
            reply.error = message
        kind = obj.get("type")
        if isinstance(kind, str) and (kind.startswith("response.") or kind == "error"):
            calls.seen = True
            if kind in _FINAL_EVENTS and isinstance(obj.get("response"), dict):
                final = obj["response"]
                reply.finished = True
                if usage := usage_from(final.get("usage")):
                    reply.usage = usage
                if message := error_message(final):
                    reply.error = message
            elif kind == "response.output_text.delta" and isinstance(obj.get("delta"), str):
                parts.append(obj["delta"])
            elif kind == "response.refusal.delta" and isinstance(obj.get("delta"), str):
                calls.refusal.append(obj["delta"])
            else:
                calls.feed(kind, obj)
            continue
        for choice in as_list(obj.get("choices")):
            if as_dict(choice).get("finish_reason"):
                reply.finished = True
            delta = as_dict(as_dict(choice).get("delta"))
            if isinstance(delta.get("content"), str):
                parts.append(delta["content"])
            for call in as_list(delta.get("tool_calls")):
                call = as_dict(call)
                slot = tools.setdefault(
                    as_int(call.get("index")) or 0, {"name": "", "arguments": ""}
                )
                function = as_dict(call.get("function"))
                slot["name"] += as_str(function.get("name"))
                slot["arguments"] += as_str(function.get("arguments"))
    if calls.seen:
        text = "".join(parts)
        if calls.refusal:
            text = _join([text, "[refusal] " + "".join(calls.refusal)])
        text = _join([text, *calls.lines()])
        if not text and final is not None:
            text = responses_text(final) or ""
        reply.text = text
        return reply
    text = "".join(parts)
    if tools:
        text += "".join(
            f"\n[tool call] {t['name']}({t['arguments']})" for _, t in sorted(tools.items())
        )
    reply.text = text
    return reply


class _ResponseCalls:
    """Function calls of a Responses API stream, keyed by output index."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}
        self.refusal: list[str] = []
        self.seen = False  # any Responses API event at all

    def feed(self, kind: str, obj: dict[str, Any]) -> None:
        index = obj.get("output_index")
        if not isinstance(index, int):
            return
        item = obj.get("item") if isinstance(obj.get("item"), dict) else {}
        if kind in ("response.output_item.added", "response.output_item.done"):
            if item.get("type") != "function_call":
                return
            slot = self.calls.setdefault(index, {"name": "", "arguments": ""})
            slot["name"] = str(item.get("name") or slot["name"])
            if isinstance(item.get("arguments"), str) and item["arguments"]:
                slot["arguments"] = item["arguments"]
        elif kind == "response.function_call_arguments.delta" and index in self.calls:
            self.calls[index]["arguments"] += str(obj.get("delta") or "")
        elif kind == "response.function_call_arguments.done" and index in self.calls:
            if isinstance(obj.get("arguments"), str):
                self.calls[index]["arguments"] = obj["arguments"]
            if isinstance(obj.get("name"), str):
                self.calls[index]["name"] = obj["name"]

    def lines(self) -> list[str]:
        return [f"[tool call] {c['name']}({c['arguments']})" for _, c in sorted(self.calls.items())]


def _join(pieces: list[str]) -> str:
    return "\n".join(piece for piece in pieces if piece)


def response_text(obj: dict[str, Any]) -> str | None:
    """Assistant text (and tool calls) of a chat completion or a Responses API response."""
    if obj.get("object") == "response" or isinstance(obj.get("output"), list):
        return responses_text(obj)
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    parts = []
    for choice in choices:
        choice = as_dict(choice)
        message = as_dict(choice.get("message"))
        if isinstance(message.get("content"), str):
            parts.append(message["content"])
        for call in as_list(message.get("tool_calls")):
            function = as_dict(as_dict(call).get("function"))
            parts.append(f"[tool call] {function.get('name')}({function.get('arguments')})")
        if isinstance(choice.get("text"), str):
            parts.append(choice["text"])
    return "\n".join(parts)


def responses_text(obj: dict[str, Any]) -> str | None:
    """Output text of a Responses API response, then its function calls, one per line."""
    output = obj.get("output")
    if not isinstance(output, list):
        return None
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[str] = []
    for item in output:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for content in item.get("content") or ():
                if not isinstance(content, dict):
                    continue
                if content.get("type") == "output_text":
                    texts.append(str(content.get("text") or ""))
                elif content.get("type") == "refusal":
                    refusals.append(str(content.get("refusal") or ""))
        elif item.get("type") == "function_call":
            calls.append(f"[tool call] {item.get('name')}({item.get('arguments')})")
    refusal = "[refusal] " + "".join(refusals) if refusals else ""
    return _join(["".join(texts), refusal, *calls])


def error_message(obj: dict[str, Any]) -> str | None:
    if message := error_text(obj.get("error"), "type", "code"):
        return message
    if obj.get("type") == "error" and obj.get("message"):
        # Responses API stream `error` event: the fields sit at the top level.
        return str(obj["message"])
    return None


def prompt_text(body: dict[str, Any]) -> str:
    """The prompt a request sent, as readable text: `role: content` per message."""
    if isinstance(body.get("messages"), list):
        lines = []
        for message in body["messages"]:
            if not isinstance(message, dict):
                continue
            lines.append(f"{message.get('role', '?')}: {content_text(message.get('content'))}")
            for call in as_list(message.get("tool_calls")):
                function = as_dict(as_dict(call).get("function"))
                lines.append(f"  [tool call] {function.get('name')}({function.get('arguments')})")
        return "\n".join(lines)
    if _is_responses_input(body):
        return _responses_prompt(body)
    for key in ("input", "prompt"):
        if key in body:
            value = body[key]
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return ""


def _is_responses_input(body: dict[str, Any]) -> bool:
    value = body.get("input")
    if isinstance(value, list):
        return any(isinstance(item, dict) for item in value)
    return isinstance(body.get("instructions"), str)


def _responses_prompt(body: dict[str, Any]) -> str:
    """Instructions and input items of a Responses API request."""
    lines = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        lines.append(f"system: {body['instructions']}")
    value = body.get("input")
    if isinstance(value, str):
        lines.append(f"user: {value}")
        return "\n".join(lines)
    for item in value if isinstance(value, list) else ():
        if isinstance(item, str):
            lines.append(f"user: {item}")
            continue
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message" or "role" in item:
            lines.append(f"{item.get('role', '?')}: {content_text(item.get('content'))}")
        elif kind == "function_call":
            lines.append(f"  [tool call] {item.get('name')}({item.get('arguments')})")
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(output, str):
                output = content_text(output)
            lines.append(f"tool: {output}")
        else:
            lines.append(f"[{kind}]")
    return "\n".join(lines)


def content_text(content: Any) -> str:
    """Message content as text; multimodal parts are summarised, not dumped."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and as_str(part.get("type")) in _TEXT_PARTS:
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict):
                parts.append(f"[{part.get('type', 'part')}]")
        return " ".join(parts)
    return "" if content is None else json.dumps(content, ensure_ascii=False)
