"""Byte-exact provider payloads for Anthropic Messages, Gemini and the OpenAI Responses API.

Pure functions of the request, shared by the parser unit tests and by fake
provider servers. Every reply says "Hello from <model>!". Markers in the request
text pick behaviours:

- `[cached]`: the usage reports prompt-cache reads (and, for Anthropic, writes);
- `[tool]`: the reply also calls the first tool the request declares (or
  `get_weather` when it declares none) with `TOOL_ARGS`.

Streams are lists of complete SSE events, so tests can split and re-join them.
"""

from __future__ import annotations

import json
from typing import Any

CREATED = 1_700_000_000
CACHE_MARKER = "[cached]"
TOOL_MARKER = "[tool]"
DEFAULT_TOOL = "get_weather"
TOOL_ARGS = {"city": "Paris"}

# Anthropic Messages: usage of every reply.
ANTHROPIC_INPUT_TOKENS = 20  # uncached input tokens (`input_tokens`)
ANTHROPIC_OUTPUT_TOKENS = 6
ANTHROPIC_START_OUTPUT_TOKENS = 1  # the provisional count in `message_start`
ANTHROPIC_CACHE_WRITE_TOKENS = 30  # with [cached]: `cache_creation_input_tokens`
ANTHROPIC_CACHE_READ_TOKENS = 50  # with [cached]: `cache_read_input_tokens`
ANTHROPIC_MESSAGE_ID = "msg_01FakeF1owGateMessage001"
ANTHROPIC_TOOL_USE_ID = "toolu_01FakeF1owGateToolUse01"

# Gemini: usageMetadata of every reply (partial counts on earlier stream chunks).
GEMINI_PROMPT_TOKENS = 12
GEMINI_COMPLETION_TOKENS = 5
GEMINI_TOTAL_TOKENS = GEMINI_PROMPT_TOKENS + GEMINI_COMPLETION_TOKENS  # 17
GEMINI_CACHED_TOKENS = 4  # with [cached]: `cachedContentTokenCount` (part of the prompt)
GEMINI_RESPONSE_ID = "fakeGeminiResponse01"

# OpenAI Responses API: usage of every reply.
RESPONSES_INPUT_TOKENS = 15
RESPONSES_OUTPUT_TOKENS = 4
RESPONSES_TOTAL_TOKENS = RESPONSES_INPUT_TOKENS + RESPONSES_OUTPUT_TOKENS  # 19
RESPONSES_CACHED_INPUT_TOKENS = 30  # with [cached]: input_tokens ...
RESPONSES_CACHED_TOKENS = 8  # ... of which read from the cache
RESPONSES_CACHED_TOTAL_TOKENS = RESPONSES_CACHED_INPUT_TOKENS + RESPONSES_OUTPUT_TOKENS  # 34
RESPONSES_ID = "resp_fake0123456789abcdef"
RESPONSES_MESSAGE_ID = "msg_fake0123456789abcdef"
RESPONSES_CALL_ITEM_ID = "fc_fake0123456789abcdef"
RESPONSES_CALL_ID = "call_fakeF1owGate01"


def reply_pieces(model: str) -> list[str]:
    return ["Hello", " from", f" {model}", "!"]


def reply_text(model: str) -> str:
    return "".join(reply_pieces(model))


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _has(marker: str, *values: Any) -> bool:
    return any(marker in json.dumps(value) for value in values if value is not None)


# --- Anthropic Messages ------------------------------------------------------------------


def anthropic_cached(body: dict[str, Any]) -> bool:
    return _has(CACHE_MARKER, body.get("system"), body.get("messages"))


def anthropic_tool(body: dict[str, Any]) -> str | None:
    """The tool this reply calls, or None."""
    if not _has(TOOL_MARKER, body.get("system"), body.get("messages")):
        return None
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("name"):
            return str(tool["name"])
    return DEFAULT_TOOL


def anthropic_usage(body: dict[str, Any], output_tokens: int = ANTHROPIC_OUTPUT_TOKENS) -> dict:
    cached = anthropic_cached(body)
    written = ANTHROPIC_CACHE_WRITE_TOKENS if cached else 0
    return {
        "input_tokens": ANTHROPIC_INPUT_TOKENS,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": ANTHROPIC_CACHE_READ_TOKENS if cached else 0,
        "cache_creation": {"ephemeral_5m_input_tokens": written, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def anthropic_message(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer to a Messages request."""
    model = body["model"]
    content: list[dict[str, Any]] = [{"type": "text", "text": reply_text(model)}]
    tool = anthropic_tool(body)
    if tool:
        content.append(
            {"type": "tool_use", "id": ANTHROPIC_TOOL_USE_ID, "name": tool, "input": TOOL_ARGS}
        )
    return {
        "id": ANTHROPIC_MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if tool else "end_turn",
        "stop_sequence": None,
        "usage": anthropic_usage(body),
    }


def anthropic_event(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + _compact(obj) + b"\n\n"


def anthropic_stream_events(body: dict[str, Any]) -> list[bytes]:
    """The SSE events of a streamed Messages answer, byte for byte."""
    model = body["model"]
    tool = anthropic_tool(body)
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": ANTHROPIC_MESSAGE_ID,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": anthropic_usage(body, ANTHROPIC_START_OUTPUT_TOKENS),
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        for piece in reply_pieces(model)
    ]
    events.append({"type": "content_block_stop", "index": 0})
    if tool:
        arguments = json.dumps(TOOL_ARGS)
        cut = arguments.index(":") + 2
        events.append(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "tool_use",
                    "id": ANTHROPIC_TOOL_USE_ID,
                    "name": tool,
                    "input": {},
                },
            }
        )
        events += [
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": part},
            }
            for part in ("", arguments[:cut], arguments[cut:])
        ]
        events.append({"type": "content_block_stop", "index": 1})
    usage = anthropic_usage(body)
    events += [
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
            "usage": {
                "input_tokens": usage["input_tokens"],
                "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                "cache_read_input_tokens": usage["cache_read_input_tokens"],
                "output_tokens": usage["output_tokens"],
            },
        },
        {"type": "message_stop"},
    ]
    return [anthropic_event(event) for event in events]


def anthropic_count_tokens(body: dict[str, Any]) -> dict[str, Any]:
    return {"input_tokens": ANTHROPIC_INPUT_TOKENS}


def anthropic_error(error_type: str, message: str) -> dict[str, Any]:
    """An error body (HTTP error answer, or the data of an `error` stream event)."""
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": "req_011FakeF1owGateRequest1",
    }


# --- Gemini ------------------------------------------------------------------------------


def gemini_cached(body: dict[str, Any]) -> bool:
    return _has(CACHE_MARKER, body.get("systemInstruction"), body.get("contents"))


def gemini_tool(body: dict[str, Any]) -> str | None:
    if not _has(TOOL_MARKER, body.get("systemInstruction"), body.get("contents")):
        return None
    for tool in body.get("tools") or ():
        declarations = tool.get("functionDeclarations") if isinstance(tool, dict) else None
        for declaration in declarations or ():
            if isinstance(declaration, dict) and declaration.get("name"):
                return str(declaration["name"])
    return DEFAULT_TOOL


def gemini_usage(body: dict[str, Any], completion: int = GEMINI_COMPLETION_TOKENS) -> dict:
    usage: dict[str, Any] = {
        "promptTokenCount": GEMINI_PROMPT_TOKENS,
        "candidatesTokenCount": completion,
        "totalTokenCount": GEMINI_PROMPT_TOKENS + completion,
    }
    if gemini_cached(body):
        usage["cachedContentTokenCount"] = GEMINI_CACHED_TOKENS
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": GEMINI_PROMPT_TOKENS}]
    if gemini_cached(body):
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": GEMINI_CACHED_TOKENS}]
    return usage


def _gemini_chunk(
    model: str, parts: list[dict[str, Any]], usage: dict[str, Any], last: bool
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if last:
        candidate["finishReason"] = "STOP"
    candidate["index"] = 0
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": GEMINI_RESPONSE_ID,
    }


def _tool_part(tool: str) -> dict[str, Any]:
    return {"functionCall": {"name": tool, "args": TOOL_ARGS}}


def gemini_response(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer to generateContent for `model` (named in the request path)."""
    parts: list[dict[str, Any]] = [{"text": reply_text(model)}]
    if tool := gemini_tool(body):
        parts.append(_tool_part(tool))
    return _gemini_chunk(model, parts, gemini_usage(body), last=True)


def gemini_chunks(model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The GenerateContentResponse objects of a streamed answer, in order.

    Every chunk carries usageMetadata with the counts so far; the last one the final counts.
    """
    parts: list[list[dict[str, Any]]] = [[{"text": piece}] for piece in reply_pieces(model)]
    if tool := gemini_tool(body):
        parts.append([_tool_part(tool)])
    chunks = []
    for i, chunk_parts in enumerate(parts):
        last = i == len(parts) - 1
        done = (
            GEMINI_COMPLETION_TOKENS
            if last
            else round(GEMINI_COMPLETION_TOKENS * (i + 1) / len(parts))
        )
        chunks.append(_gemini_chunk(model, chunk_parts, gemini_usage(body, max(done, 1)), last))
    return chunks


def gemini_stream_events(model: str, body: dict[str, Any]) -> list[bytes]:
    """streamGenerateContent?alt=sse: one `data:` event per chunk, CRLF-framed like Google."""
    return [
        b"data: " + json.dumps(chunk, separators=(",", ": ")).encode() + b"\r\n\r\n"
        for chunk in gemini_chunks(model, body)
    ]


def gemini_stream_array(model: str, body: dict[str, Any]) -> list[bytes]:
    """streamGenerateContent without alt=sse: one JSON array, sent piece by piece."""
    chunks = [json.dumps(chunk, indent=2) for chunk in gemini_chunks(model, body)]
    pieces = [("[" if i == 0 else "\r\n,\r\n") + text for i, text in enumerate(chunks)]
    pieces.append("\r\n]")
    return [piece.encode() for piece in pieces]


def gemini_count_tokens(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "totalTokens": GEMINI_PROMPT_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": GEMINI_PROMPT_TOKENS}],
    }


def gemini_error(code: int, message: str, status: str) -> dict[str, Any]:
    """A Google API error body, e.g. (400, "...", "INVALID_ARGUMENT")."""
    return {"error": {"code": code, "message": message, "status": status}}


# --- OpenAI Responses API ----------------------------------------------------------------


def responses_cached(body: dict[str, Any]) -> bool:
    return _has(CACHE_MARKER, body.get("instructions"), body.get("input"))


def responses_tool(body: dict[str, Any]) -> str | None:
    if not _has(TOOL_MARKER, body.get("instructions"), body.get("input")):
        return None
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") == "function" and tool.get("name"):
            return str(tool["name"])
    return DEFAULT_TOOL


def responses_usage(body: dict[str, Any]) -> dict[str, Any]:
    cached = responses_cached(body)
    prompt = RESPONSES_CACHED_INPUT_TOKENS if cached else RESPONSES_INPUT_TOKENS
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": RESPONSES_CACHED_TOKENS if cached else 0},
        "output_tokens": RESPONSES_OUTPUT_TOKENS,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + RESPONSES_OUTPUT_TOKENS,
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _message_item(text: str | None) -> dict[str, Any]:
    return {
        "id": RESPONSES_MESSAGE_ID,
        "type": "message",
        "status": "in_progress" if text is None else "completed",
        "content": [] if text is None else [_output_text(text)],
        "role": "assistant",
    }


def _call_item(tool: str, done: bool) -> dict[str, Any]:
    return {
        "id": RESPONSES_CALL_ITEM_ID,
        "type": "function_call",
        "status": "completed" if done else "in_progress",
        "arguments": json.dumps(TOOL_ARGS, separators=(",", ":")) if done else "",
        "call_id": RESPONSES_CALL_ID,
        "name": tool,
    }


def _response(body: dict[str, Any], done: bool) -> dict[str, Any]:
    model = body["model"]
    output: list[dict[str, Any]] = []
    tool = responses_tool(body)
    if done:
        output.append(_message_item(reply_text(model)))
        if tool:
            output.append(_call_item(tool, done=True))
    tools = [
        {"description": None, "strict": True, **tool}
        for tool in body.get("tools") or ()
        if isinstance(tool, dict)
    ]
    return {
        "id": RESPONSES_ID,
        "object": "response",
        "created_at": CREATED,
        "status": "completed" if done else "in_progress",
        "background": False,
        "completed_at": CREATED + 1 if done else None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None,
        "service_tier": "default" if done else "auto",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": tools,
        "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": responses_usage(body) if done else None,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def responses_response(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer to POST /responses."""
    return _response(body, done=True)


def responses_stream_events(body: dict[str, Any]) -> list[bytes]:
    """The SSE events of a streamed Responses answer, byte for byte."""
    model = body["model"]
    text = reply_text(model)
    where = {"item_id": RESPONSES_MESSAGE_ID, "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response(body, done=False)},
        {"type": "response.in_progress", "response": _response(body, done=False)},
        {"type": "response.output_item.added", "output_index": 0, "item": _message_item(None)},
        {"type": "response.content_part.added", **where, "part": _output_text("")},
    ]
    events += [
        {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
        for piece in reply_pieces(model)
    ]
    events += [
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": _output_text(text)},
        {"type": "response.output_item.done", "output_index": 0, "item": _message_item(text)},
    ]
    if tool := responses_tool(body):
        arguments = json.dumps(TOOL_ARGS, separators=(",", ":"))
        cut = arguments.index(":") + 1
        call = {"item_id": RESPONSES_CALL_ITEM_ID, "output_index": 1}
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": 1,
                "item": _call_item(tool, done=False),
            }
        )
        events += [
            {"type": "response.function_call_arguments.delta", **call, "delta": part}
            for part in (arguments[:cut], arguments[cut:])
        ]
        events += [
            {
                "type": "response.function_call_arguments.done",
                **call,
                "name": tool,
                "arguments": arguments,
            },
            {
                "type": "response.output_item.done",
                "output_index": 1,
                "item": _call_item(tool, done=True),
            },
        ]
    events.append({"type": "response.completed", "response": _response(body, done=True)})
    out = []
    for number, event in enumerate(events):
        event = {"type": event["type"], "sequence_number": number, **event}
        out.append(b"event: " + event["type"].encode() + b"\ndata: " + _compact(event) + b"\n\n")
    return out


def openai_error(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """An OpenAI error body (Chat Completions and Responses share it)."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
