"""Gemini API (generativelanguage, v1beta) wire format: endpoints, usage, readable text.

Requests name the model in the path: `/models/gemini-2.0-flash:generateContent`.
`streamGenerateContent` answers as SSE with `?alt=sse`, and otherwise as one JSON
array of GenerateContentResponse objects sent in pieces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from flowgate_addon.apis.common import (
    Reply,
    Usage,
    as_dict,
    as_int,
    as_list,
    error_text,
    sse_objects,
)

METHODS = {
    "generateContent": "generateContent",
    "streamGenerateContent": "streamGenerateContent",
    "embedContent": "embedContent",
    "batchEmbedContents": "batchEmbedContents",
    "countTokens": "countTokens",
}

_MODEL_METHOD = re.compile(r"^/models/([^/:]+):([A-Za-z]+)$")


def endpoint(api_path: str) -> str | None:
    """Endpoint name for an API path below the base URL (no query), or None."""
    match = _MODEL_METHOD.match(api_path)
    return METHODS.get(match.group(2)) if match else None


def request_model(api_path: str, body: dict[str, Any] | None) -> str | None:
    """The model named in the path (`/models/NAME:method`); the body never names it."""
    match = _MODEL_METHOD.match(api_path)
    return match.group(1) if match and match.group(2) in METHODS else None


def is_stream(api_path: str, query: str, body: dict[str, Any] | None) -> bool:
    return endpoint(api_path) == "streamGenerateContent"


def usage_from(raw: Any) -> Usage | None:
    """usageMetadata -> Usage; thinking tokens count as completion tokens."""
    if not isinstance(raw, dict):
        return None
    prompt = as_int(raw.get("promptTokenCount"))
    tool_prompt = as_int(raw.get("toolUsePromptTokenCount"))
    if tool_prompt is not None:
        prompt = (prompt or 0) + tool_prompt
    candidates = as_int(raw.get("candidatesTokenCount"))
    thoughts = as_int(raw.get("thoughtsTokenCount"))
    completion = candidates
    if thoughts is not None:
        completion = (candidates or 0) + thoughts
    total = as_int(raw.get("totalTokenCount"))
    if total is None and (prompt is not None or completion is not None):
        total = (prompt or 0) + (completion or 0)
    if prompt is None and completion is None and total is None:
        return None
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=as_int(raw.get("cachedContentTokenCount")),
        total_tokens=total,
    )


def read_json_response(body: bytes) -> Reply:
    """One GenerateContentResponse, or the JSON array a non-SSE stream sends."""
    return _read_objects(_json_objects(body))


def read_sse_response(chunks: Iterable[bytes]) -> Reply:
    """`?alt=sse` stream: each `data:` event is one GenerateContentResponse."""
    return _read_objects(sse_objects(chunks))


def _read_objects(objects: Iterable[Any]) -> Reply:
    reply = Reply()
    texts: list[str] = []
    calls: list[str] = []
    seen = False
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        if usage := usage_from(obj.get("usageMetadata")):
            reply.usage = usage
        if message := error_message(obj):
            reply.error = message
        candidates = obj.get("candidates")
        if not isinstance(candidates, list):
            continue
        seen = True
        first = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
        reply.finished = reply.finished or bool(first.get("finishReason"))
        for part in as_list(as_dict(first.get("content")).get("parts")):
            if not isinstance(part, dict) or part.get("thought") is True:
                continue
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            call = part.get("functionCall") or part.get("function_call")
            if isinstance(call, dict):
                calls.append(_call_text(call))
    if seen:
        reply.text = "\n".join(piece for piece in ["".join(texts), *calls] if piece)
    return reply


def _call_text(call: dict[str, Any]) -> str:
    arguments = json.dumps(call.get("args") or {}, ensure_ascii=False)
    return f"[tool call] {call.get('name')}({arguments})"


def _json_objects(body: bytes) -> Iterator[Any]:
    """The top-level object, or each element of a top-level array.

    A stream cut short leaves an unterminated array: its complete elements still count.
    """
    text = body.decode("utf-8", "replace")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        pass
    else:
        yield from value if isinstance(value, list) else [value]
        return
    start = text.lstrip()
    if not start.startswith("["):
        return
    decoder = json.JSONDecoder()
    pos = len(text) - len(start) + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        try:
            item, pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            return
        yield item


def error_message(obj: dict[str, Any]) -> str | None:
    """`{"error": {"code": 400, "message": ..., "status": ...}}` -> the message."""
    return error_text(obj.get("error"), "status")


def prompt_text(body: dict[str, Any]) -> str:
    """`system: ...` from systemInstruction, then `role: text` per content."""
    lines = []
    system = body.get("systemInstruction") or body.get("system_instruction")
    if isinstance(system, dict):
        lines.append(f"system: {parts_text(system.get('parts'))}")
    elif isinstance(system, str):
        lines.append(f"system: {system}")
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    elif isinstance(contents, str):
        contents = [{"role": "user", "parts": [{"text": contents}]}]
    for content in contents if isinstance(contents, list) else ():
        if isinstance(content, dict):
            lines.append(f"{content.get('role') or 'user'}: {parts_text(content.get('parts'))}")
    if not lines and isinstance(body.get("content"), dict):  # embedContent, countTokens
        lines.append(parts_text(body["content"].get("parts")))
    return "\n".join(lines)


def parts_text(parts: Any) -> str:
    """Parts as text; inline data, files and function traffic are summarised."""
    if isinstance(parts, dict):
        parts = [parts]
    if not isinstance(parts, list):
        return ""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            out.append(part["text"])
        elif call := part.get("functionCall") or part.get("function_call"):
            out.append(_call_text(call) if isinstance(call, dict) else "[tool call]")
        elif result := part.get("functionResponse") or part.get("function_response"):
            name = result.get("name") if isinstance(result, dict) else None
            out.append(f"[tool result {name}]" if name else "[tool result]")
        elif data := (
            part.get("inlineData")
            or part.get("inline_data")
            or part.get("fileData")
            or part.get("file_data")
        ):
            out.append(f"[{_kind(data)}]")
        else:
            out.append(f"[{next(iter(part), 'part')}]")
    return " ".join(out)


def _kind(data: Any) -> str:
    """Inline or file data by its MIME type: `image/png` -> `image`; unknown -> `file`."""
    mime = (data.get("mimeType") or data.get("mime_type")) if isinstance(data, dict) else None
    if isinstance(mime, str) and "/" in mime:
        return mime.split("/", 1)[0]
    return "file"
