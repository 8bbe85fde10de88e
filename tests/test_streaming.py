"""StreamTap: chunks pass on at once, and injected usage is removed exactly."""

from __future__ import annotations

import time

import pytest
from fake_provider import chat_stream_events

from flowgate_addon.apis.openai import read_sse_response
from flowgate_addon.record import CallRecord
from flowgate_addon.streaming import StreamTap

BODY = {"model": "gpt-4o-mini", "stream": True, "messages": []}


def record() -> CallRecord:
    return CallRecord(
        t_start=time.time(),
        mode="gateway",
        client_ip=None,
        method="POST",
        path="/v1/chat/completions",
        endpoint="chat.completions",
        host="x",
    )


def feed(tap: StreamTap, data: bytes, size: int) -> list[bytes]:
    out = []
    for i in range(0, len(data), size):
        result = tap(data[i : i + size])
        out.extend([result] if isinstance(result, bytes) else result)
    end = tap(b"")
    out.extend([end] if isinstance(end, bytes) else end)
    return out


def test_passthrough_returns_each_chunk_unchanged():
    data = b"".join(chat_stream_events(BODY))
    rec = record()
    tap = StreamTap(rec, strip_usage=False)
    for i in range(0, len(data), 37):
        chunk = data[i : i + 37]
        assert tap(chunk) is chunk
    assert tap(b"") == []
    assert rec.t_first is not None and rec.t_end is not None


@pytest.mark.parametrize("size", [1, 2, 7, 64, 300, 100_000])
def test_stripping_gives_the_stream_the_client_asked_for(size):
    asked = b"".join(chat_stream_events(BODY))
    upstream = b"".join(chat_stream_events({**BODY, "stream_options": {"include_usage": True}}))
    assert upstream != asked
    rec = record()
    out = feed(StreamTap(rec, strip_usage=True), upstream, size)
    assert b"".join(out) == asked
    assert b"" not in out, "an empty chunk would end a chunked response early"
    usage = read_sse_response(rec.chunks).usage
    assert usage is not None and usage.prompt_tokens == 25


def test_stripping_with_crlf_events_and_usage_first_key():
    upstream = (
        b'data: {"usage":null,"choices":[{"delta":{"content":"hi"}}]}\r\n\r\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}\r\n\r\n'
        b"data: [DONE]\r\n\r\n"
    )
    out = feed(StreamTap(record(), strip_usage=True), upstream, 5)
    assert b"".join(out) == (
        b'data: {"choices":[{"delta":{"content":"hi"}}]}\r\n\r\ndata: [DONE]\r\n\r\n'
    )


def test_an_incomplete_tail_is_passed_on_at_the_end():
    out = feed(StreamTap(record(), strip_usage=True), b"data: partial", 4)
    assert b"".join(out) == b"data: partial"


def test_sse_reassembly_of_tool_calls():
    events = [
        b'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":'
        b'{"name":"get_weather","arguments":"{\\"ci"}}]}}]}\n\n',
        b'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":'
        b'{"arguments":"ty\\": \\"Oslo\\"}"}}]}}]}\n\n',
        b"data: [DONE]\n\n",
    ]
    reply = read_sse_response(events)
    assert reply.text == '\n[tool call] get_weather({"city": "Oslo"})'
