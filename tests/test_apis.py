"""Wire-format parsers: endpoints, models, streaming flags, usage, text, errors, prompts."""

from __future__ import annotations

import json
import random

import fake_formats as ff
import pytest
from fake_provider import chat_completion, chat_stream_events

from flowgate_addon.apis import anthropic, gemini, openai
from flowgate_addon.apis.common import Usage

SIZES = [1, 3, 17, 64, 1000, 1_000_000]


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def random_split(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), 12))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def pieces(events: list[bytes]) -> list[list[bytes]]:
    """The same stream cut at event boundaries, at fixed sizes and at random places."""
    data = b"".join(events)
    return (
        [events] + [split(data, size) for size in SIZES] + [random_split(data, s) for s in (1, 2)]
    )


def dumped(obj: object) -> bytes:
    return json.dumps(obj).encode()


def data_of(event: bytes) -> dict:
    line = next(line for line in event.decode().splitlines() if line.startswith("data: "))
    return json.loads(line[len("data: ") :])


def event_of(obj: dict) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + json.dumps(obj).encode() + b"\n\n"


# --- OpenAI: endpoints ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/chat/completions", "chat.completions"),
        ("/embeddings", "embeddings"),
        ("/responses", "responses"),
        ("/completions", "completions"),
        ("/models", None),
        ("/responses/resp_123", None),
        ("/chat/completions/", None),
    ],
)
def test_openai_endpoint(path, name):
    assert openai.endpoint(path) == name


def test_openai_request_model_and_stream_flag():
    body = {"model": "gpt-4o-mini", "stream": True}
    assert openai.request_model("/responses", body) == "gpt-4o-mini"
    assert openai.request_model("/responses", None) is None
    assert openai.request_model("/responses", {"model": 5}) is None
    assert openai.is_stream("/responses", "", body) is True
    assert openai.is_stream("/responses", "", {"stream": "true"}) is False
    assert openai.is_stream("/responses", "", {}) is False
    assert openai.is_stream("/responses", "", None) is False


# --- OpenAI: Responses API ------------------------------------------------------------------

RESPONSES_BODY = {"model": "gpt-4.1-mini", "input": "Say hello"}
RESPONSES_TOOLS = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]


def test_responses_json_usage_and_text():
    reply = openai.read_json_response(dumped(ff.responses_response(RESPONSES_BODY)))
    assert reply.usage == Usage(15, 4, 0, 19, None)
    assert reply.text == "Hello from gpt-4.1-mini!"
    assert reply.error is None


def test_responses_json_cached_usage():
    body = {**RESPONSES_BODY, "input": [{"role": "user", "content": "[cached] hi"}]}
    usage = openai.read_json_response(dumped(ff.responses_response(body))).usage
    assert usage is not None
    assert usage.prompt_tokens == ff.RESPONSES_CACHED_INPUT_TOKENS == 30
    assert usage.cached_tokens == ff.RESPONSES_CACHED_TOKENS == 8
    assert usage.completion_tokens == 4
    assert usage.total_tokens == 34


def test_responses_json_cache_writes_are_read_when_reported():
    body = ff.responses_response(RESPONSES_BODY)
    body["usage"]["input_tokens_details"]["cache_write_tokens"] = 6
    assert openai.read_json_response(dumped(body)).usage.cache_write_tokens == 6


def test_responses_json_function_call():
    body = {**RESPONSES_BODY, "input": "[tool] weather?", "tools": RESPONSES_TOOLS}
    reply = openai.read_json_response(dumped(ff.responses_response(body)))
    assert reply.text == 'Hello from gpt-4.1-mini!\n[tool call] lookup({"city":"Paris"})'


@pytest.mark.parametrize("cached", [False, True])
def test_responses_stream_in_any_pieces(cached):
    body = {**RESPONSES_BODY, "stream": True}
    if cached:
        body["instructions"] = "Be brief. [cached]"
    for chunks in pieces(ff.responses_stream_events(body)):
        reply = openai.read_sse_response(chunks)
        assert reply.text == "Hello from gpt-4.1-mini!"
        assert reply.usage == (Usage(30, 4, 8, 34, None) if cached else Usage(15, 4, 0, 19, None))
        assert reply.error is None


def test_responses_stream_function_call_matches_json():
    body = {**RESPONSES_BODY, "input": "[tool] weather?", "tools": RESPONSES_TOOLS}
    expected = openai.read_json_response(dumped(ff.responses_response(body))).text
    for chunks in pieces(ff.responses_stream_events({**body, "stream": True})):
        assert openai.read_sse_response(chunks).text == expected


def test_responses_stream_cut_short_keeps_text_without_usage():
    events = ff.responses_stream_events({**RESPONSES_BODY, "stream": True})
    completed = [e for e in events if e.startswith(b"event: response.completed")]
    assert len(completed) == 1
    reply = openai.read_sse_response(events[:6])  # created, in_progress, 2 added, 2 deltas
    assert reply.text == "Hello from"
    assert reply.usage is None


def test_responses_stream_failed_event_gives_error_and_usage():
    events = ff.responses_stream_events({**RESPONSES_BODY, "stream": True})
    final = data_of(events[-1])
    final["type"] = "response.failed"
    final["response"]["status"] = "failed"
    final["response"]["error"] = {"code": "server_error", "message": "The model crashed."}
    reply = openai.read_sse_response([*events[:-1], event_of(final)])
    assert reply.error == "The model crashed."
    assert reply.usage == Usage(15, 4, 0, 19, None)


def test_responses_stream_error_event():
    events = ff.responses_stream_events({**RESPONSES_BODY, "stream": True})[:3]
    error = {
        "type": "error",
        "sequence_number": 3,
        "code": "rate_limit_exceeded",
        "message": "Rate limit reached for gpt-4.1-mini.",
        "param": None,
    }
    reply = openai.read_sse_response([*events, event_of(error)])
    assert reply.error == "Rate limit reached for gpt-4.1-mini."
    assert reply.text == ""


def test_responses_stream_text_comes_from_final_response_without_deltas():
    events = ff.responses_stream_events({**RESPONSES_BODY, "stream": True})
    reply = openai.read_sse_response([events[0], events[-1]])
    assert reply.text == "Hello from gpt-4.1-mini!"


def test_responses_stream_events_are_numbered_and_named():
    events = ff.responses_stream_events({**RESPONSES_BODY, "input": "[tool]", "stream": True})
    datas = [data_of(e) for e in events]
    assert [d["sequence_number"] for d in datas] == list(range(len(events)))
    for event, data in zip(events, datas, strict=True):
        assert event.startswith(b"event: " + data["type"].encode() + b"\ndata: ")
        assert event.endswith(b"}\n\n")
    kinds = [d["type"] for d in datas]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds.count("response.output_text.delta") == 4
    assert kinds.count("response.function_call_arguments.delta") == 2
    assert kinds[-1] == "response.completed"


def test_openai_json_error():
    body = dumped(ff.openai_error("Invalid 'input': empty.", "invalid_request_error", "input"))
    reply = openai.read_json_response(body)
    assert reply.error == "Invalid 'input': empty."
    assert reply.usage is None


def test_responses_prompt_text():
    assert openai.prompt_text({"model": "m", "input": "Hi", "instructions": "Be brief."}) == (
        "system: Be brief.\nuser: Hi"
    )
    body = {
        "model": "m",
        "input": [
            {"role": "developer", "content": "Answer in French."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            },
            {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "a cat"},
        ],
    }
    assert openai.prompt_text(body) == (
        "developer: Answer in French.\n"
        "user: What is this? [input_image]\n"
        "  [tool call] lookup({})\n"
        "tool: a cat"
    )


def test_openai_embeddings_prompt_is_unchanged():
    assert openai.prompt_text({"model": "e", "input": ["a", "b"]}) == '["a", "b"]'
    assert openai.prompt_text({"model": "e", "input": "a"}) == "a"


def test_chat_completions_still_parse():
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    reply = openai.read_json_response(dumped(chat_completion(body)))
    assert reply.text == "Hello from gpt-4o-mini!"
    assert reply.usage == Usage(25, 7, 0, 32, None)
    events = chat_stream_events({**body, "stream": True, "stream_options": {"include_usage": True}})
    for chunks in pieces(events):
        reply = openai.read_sse_response(chunks)
        assert reply.text == "Hello from gpt-4o-mini!"
        assert reply.usage == Usage(25, 7, 0, 32, None)


# --- Anthropic Messages ---------------------------------------------------------------------

ANTHROPIC_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "Say hello"}],
}
CACHED_BODY = {
    **ANTHROPIC_BODY,
    "system": [
        {"type": "text", "text": "Long context [cached]", "cache_control": {"type": "ephemeral"}}
    ],
}
TOOL_BODY = {
    **ANTHROPIC_BODY,
    "messages": [{"role": "user", "content": "Weather? [tool]"}],
    "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
}
PLAIN_USAGE = Usage(20, 6, 0, 26, 0)
CACHED_USAGE = Usage(100, 6, 50, 106, 30)  # 20 fresh + 30 written + 50 read


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/messages", "messages"),
        ("/messages/count_tokens", "messages.count_tokens"),
        ("/messages/batches", None),
        ("/models", None),
        ("/complete", None),
    ],
)
def test_anthropic_endpoint(path, name):
    assert anthropic.endpoint(path) == name


def test_anthropic_request_model_and_stream_flag():
    assert anthropic.request_model("/messages", ANTHROPIC_BODY) == "claude-sonnet-4-5"
    assert anthropic.request_model("/messages", None) is None
    assert anthropic.is_stream("/messages", "", {**ANTHROPIC_BODY, "stream": True}) is True
    assert anthropic.is_stream("/messages", "", ANTHROPIC_BODY) is False
    assert anthropic.is_stream("/messages", "beta=true", None) is False


def test_anthropic_json_usage_and_text():
    reply = anthropic.read_json_response(dumped(ff.anthropic_message(ANTHROPIC_BODY)))
    assert reply.usage == PLAIN_USAGE
    assert reply.text == "Hello from claude-sonnet-4-5!"
    assert reply.error is None


def test_anthropic_json_cache_tokens():
    reply = anthropic.read_json_response(dumped(ff.anthropic_message(CACHED_BODY)))
    assert reply.usage == CACHED_USAGE
    assert CACHED_USAGE.prompt_tokens == (
        ff.ANTHROPIC_INPUT_TOKENS + ff.ANTHROPIC_CACHE_WRITE_TOKENS + ff.ANTHROPIC_CACHE_READ_TOKENS
    )


def test_anthropic_json_tool_use():
    reply = anthropic.read_json_response(dumped(ff.anthropic_message(TOOL_BODY)))
    assert reply.text == 'Hello from claude-sonnet-4-5!\n[tool call] lookup({"city": "Paris"})'


@pytest.mark.parametrize(
    ("body", "usage"), [(ANTHROPIC_BODY, PLAIN_USAGE), (CACHED_BODY, CACHED_USAGE)]
)
def test_anthropic_stream_in_any_pieces(body, usage):
    events = ff.anthropic_stream_events({**body, "stream": True})
    assert b"event: ping\ndata: " in b"".join(events)
    for chunks in pieces(events):
        reply = anthropic.read_sse_response(chunks)
        assert reply.text == "Hello from claude-sonnet-4-5!"
        assert reply.usage == usage
        assert reply.error is None


def test_anthropic_stream_tool_use_matches_json():
    expected = anthropic.read_json_response(dumped(ff.anthropic_message(TOOL_BODY))).text
    for chunks in pieces(ff.anthropic_stream_events({**TOOL_BODY, "stream": True})):
        assert anthropic.read_sse_response(chunks).text == expected


def test_anthropic_stream_older_message_delta_with_output_tokens_only():
    events = ff.anthropic_stream_events({**CACHED_BODY, "stream": True})
    rewritten = []
    for event in events:
        data = data_of(event)
        if data["type"] == "message_delta":
            data["usage"] = {"output_tokens": 9}
            event = event_of(data)
        rewritten.append(event)
    assert anthropic.read_sse_response(rewritten).usage == Usage(100, 9, 50, 109, 30)


def test_anthropic_stream_message_delta_input_counts_win():
    events = ff.anthropic_stream_events({**ANTHROPIC_BODY, "stream": True})
    rewritten = []
    for event in events:
        data = data_of(event)
        if data["type"] == "message_delta":
            data["usage"].update(input_tokens=25, cache_read_input_tokens=None)
            event = event_of(data)
        rewritten.append(event)
    assert anthropic.read_sse_response(rewritten).usage == Usage(25, 6, 0, 31, 0)


def test_anthropic_stream_cut_before_message_delta_keeps_provisional_count():
    events = ff.anthropic_stream_events({**ANTHROPIC_BODY, "stream": True})
    reply = anthropic.read_sse_response(events[:5])  # start, block start, ping, 2 deltas
    assert reply.text == "Hello from"
    assert reply.usage == Usage(20, ff.ANTHROPIC_START_OUTPUT_TOKENS, 0, 21, 0)


def test_anthropic_stream_error_event():
    events = ff.anthropic_stream_events({**ANTHROPIC_BODY, "stream": True})[:4]
    error = ff.anthropic_event(ff.anthropic_error("overloaded_error", "Overloaded"))
    assert error.startswith(b"event: error\ndata: ")
    reply = anthropic.read_sse_response([*events, error])
    assert reply.error == "Overloaded"
    assert reply.text == "Hello"


def test_anthropic_json_error_and_count_tokens():
    body = dumped(ff.anthropic_error("invalid_request_error", "max_tokens: Field required"))
    reply = anthropic.read_json_response(body)
    assert reply.error == "max_tokens: Field required"
    assert reply.usage is None and reply.text is None
    counted = anthropic.read_json_response(dumped(ff.anthropic_count_tokens(ANTHROPIC_BODY)))
    assert counted.usage is None, "counting tokens bills nothing"


def test_anthropic_prompt_text():
    assert anthropic.prompt_text({**ANTHROPIC_BODY, "system": "Be brief."}) == (
        "system: Be brief.\nuser: Say hello"
    )
    body = {
        "model": "m",
        "system": [
            {"type": "text", "text": "You see images."},
            {"type": "text", "text": "Be kind."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
                    {"type": "text", "text": "What is it?"},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "zoom", "input": {"x": 2}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a cat"}],
            },
        ],
    }
    assert anthropic.prompt_text(body) == (
        "system: You see images. Be kind.\n"
        "user: [image] What is it?\n"
        'assistant: [tool call] zoom({"x": 2})\n'
        "user: [tool result] a cat"
    )


# --- Gemini ---------------------------------------------------------------------------------

MODEL = "gemini-2.0-flash"
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}
GEMINI_CACHED = {**GEMINI_BODY, "systemInstruction": {"parts": [{"text": "Context [cached]"}]}}
GEMINI_TOOL = {
    "contents": [{"role": "user", "parts": [{"text": "Weather? [tool]"}]}],
    "tools": [{"functionDeclarations": [{"name": "lookup", "parameters": {"type": "object"}}]}],
}
GEMINI_USAGE = Usage(12, 5, None, 17, None)
GEMINI_CACHED_USAGE = Usage(12, 5, 4, 17, None)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (f"/models/{MODEL}:generateContent", "generateContent"),
        (f"/models/{MODEL}:streamGenerateContent", "streamGenerateContent"),
        ("/models/text-embedding-004:embedContent", "embedContent"),
        (f"/models/{MODEL}:countTokens", "countTokens"),
        ("/models", None),
        (f"/models/{MODEL}", None),
        (f"/models/{MODEL}:launchRockets", None),
        ("/tunedModels/mine:generateContent", None),
        (f"/v1beta/models/{MODEL}:generateContent", None),
    ],
)
def test_gemini_endpoint(path, name):
    assert gemini.endpoint(path) == name


def test_gemini_request_model_and_stream_flag():
    assert gemini.request_model(f"/models/{MODEL}:generateContent", GEMINI_BODY) == MODEL
    assert gemini.request_model("/models/gemini-2.5-pro:streamGenerateContent", None) == (
        "gemini-2.5-pro"
    )
    assert gemini.request_model("/models", None) is None
    assert gemini.is_stream(f"/models/{MODEL}:streamGenerateContent", "alt=sse", None) is True
    assert gemini.is_stream(f"/models/{MODEL}:streamGenerateContent", "", GEMINI_BODY) is True
    assert gemini.is_stream(f"/models/{MODEL}:generateContent", "", {"stream": True}) is False


@pytest.mark.parametrize(
    ("body", "usage"), [(GEMINI_BODY, GEMINI_USAGE), (GEMINI_CACHED, GEMINI_CACHED_USAGE)]
)
def test_gemini_json_usage_and_text(body, usage):
    reply = gemini.read_json_response(dumped(ff.gemini_response(MODEL, body)))
    assert reply.usage == usage
    assert reply.text == "Hello from gemini-2.0-flash!"
    assert reply.error is None


def test_gemini_json_thinking_tokens_count_as_completion():
    obj = ff.gemini_response("gemini-2.5-flash", GEMINI_BODY)
    obj["candidates"][0]["content"]["parts"].insert(0, {"text": "Let me think", "thought": True})
    obj["usageMetadata"].update(thoughtsTokenCount=40, totalTokenCount=57)
    reply = gemini.read_json_response(dumped(obj))
    assert reply.usage == Usage(12, 45, None, 57, None)
    assert reply.text == "Hello from gemini-2.5-flash!"


def test_gemini_json_function_call():
    reply = gemini.read_json_response(dumped(ff.gemini_response(MODEL, GEMINI_TOOL)))
    assert reply.text == 'Hello from gemini-2.0-flash!\n[tool call] lookup({"city": "Paris"})'


@pytest.mark.parametrize(
    ("body", "usage"), [(GEMINI_BODY, GEMINI_USAGE), (GEMINI_CACHED, GEMINI_CACHED_USAGE)]
)
def test_gemini_sse_in_any_pieces(body, usage):
    events = ff.gemini_stream_events(MODEL, body)
    assert all(e.startswith(b"data: {") and e.endswith(b"}\r\n\r\n") for e in events)
    for chunks in pieces(events):
        reply = gemini.read_sse_response(chunks)
        assert reply.text == "Hello from gemini-2.0-flash!"
        assert reply.usage == usage


def test_gemini_sse_usage_grows_and_last_chunk_wins():
    counts = [
        c["usageMetadata"]["candidatesTokenCount"] for c in ff.gemini_chunks(MODEL, GEMINI_BODY)
    ]
    assert counts == [1, 2, 4, 5]
    events = ff.gemini_stream_events(MODEL, GEMINI_BODY)
    assert gemini.read_sse_response(events[:2]).usage == Usage(12, 2, None, 14, None)


def test_gemini_sse_function_call():
    expected = 'Hello from gemini-2.0-flash!\n[tool call] lookup({"city": "Paris"})'
    for chunks in pieces(ff.gemini_stream_events(MODEL, GEMINI_TOOL)):
        assert gemini.read_sse_response(chunks).text == expected


def test_gemini_json_array_stream():
    array = b"".join(ff.gemini_stream_array(MODEL, GEMINI_CACHED))
    assert array.startswith(b"[{") and array.endswith(b"]")
    assert len(json.loads(array)) == 4
    reply = gemini.read_json_response(array)
    assert reply.text == "Hello from gemini-2.0-flash!"
    assert reply.usage == GEMINI_CACHED_USAGE


def test_gemini_json_array_stream_cut_short():
    array = b"".join(ff.gemini_stream_array(MODEL, GEMINI_BODY)[:3])
    reply = gemini.read_json_response(array + b'\r\n,\r\n{\n  "candid')
    assert reply.text == "Hello from gemini-2.0-flash"
    assert reply.usage == Usage(12, 4, None, 16, None)


def test_gemini_errors():
    error = ff.gemini_error(
        400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT"
    )
    reply = gemini.read_json_response(dumped(error))
    assert reply.error == "API key not valid. Please pass a valid API key."
    assert reply.usage is None and reply.text is None
    in_array = dumped(
        [
            ff.gemini_chunks(MODEL, GEMINI_BODY)[0],
            ff.gemini_error(503, "The model is overloaded.", "UNAVAILABLE"),
        ]
    )
    reply = gemini.read_json_response(in_array)
    assert reply.error == "The model is overloaded."
    assert reply.text == "Hello"
    sse = [
        *ff.gemini_stream_events(MODEL, GEMINI_BODY)[:1],
        b"data: " + dumped(ff.gemini_error(500, "Internal error.", "INTERNAL")) + b"\r\n\r\n",
    ]
    assert gemini.read_sse_response(sse).error == "Internal error."


def test_gemini_count_tokens_bills_nothing():
    assert gemini.read_json_response(dumped(ff.gemini_count_tokens(GEMINI_BODY))).usage is None


def test_gemini_prompt_text():
    body = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {
                "parts": [
                    {"text": "What is this?"},
                    {"inlineData": {"mimeType": "image/png", "data": "AA"}},
                ]
            },
            {"role": "model", "parts": [{"functionCall": {"name": "zoom", "args": {"x": 2}}}]},
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "zoom", "response": {"r": 1}}}],
            },
        ],
    }
    assert gemini.prompt_text(body) == (
        "system: Be brief.\n"
        "user: What is this? [image]\n"
        'model: [tool call] zoom({"x": 2})\n'
        "user: [tool result zoom]"
    )
    assert gemini.prompt_text({"content": {"parts": [{"text": "embed me"}]}}) == "embed me"
