"""Property-based tests: every parser of client or upstream bytes takes any input without raising.

Inputs are raw random bytes and near-valid ones: real streams and bodies with random parts
replaced by values of the wrong type, SSE framing around random JSON, random chunkings.
"""

from __future__ import annotations

import itertools
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import fake_formats as ff
import pytest
from fake_provider import chat_completion, chat_stream_events, usage_for
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from test_streaming import record

from flowgate_addon import tokencount
from flowgate_addon.apis import FORMATS, anthropic, gemini, openai
from flowgate_addon.apis.common import (
    Reply,
    Usage,
    error_text,
    json_object,
    model_in_body,
    sse_objects,
    sse_payloads,
    stream_flag_in_body,
)
from flowgate_addon.record import prompt_hash
from flowgate_addon.streaming import StreamTap

# Hypothesis caches constants and Unicode tables under its home directory; keep that out of
# the working tree. No example database either (`database=None`): runs are derandomized.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "flowgate-hypothesis")

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=60)

MODULES = [openai, anthropic, gemini]
USAGE_FROM = [openai.usage_from, anthropic.usage_from, gemini.usage_from, Usage.from_obj]
DEEP = b"[" * 3000  # nests deeper than the JSON decoder's recursion limit

# --- Strategies -----------------------------------------------------------------------------

# Every member name the parsers look at, so random objects reach their branches.
KEYS = [
    *("usage", "prompt_tokens", "completion_tokens", "total_tokens", "input_tokens"),
    *("output_tokens", "prompt_tokens_details", "input_tokens_details", "cached_tokens"),
    *("cache_write_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"),
    *("choices", "delta", "content", "tool_calls", "index", "function", "name", "arguments"),
    *("message", "type", "error", "response", "output", "output_index", "item", "text"),
    *("refusal", "code", "status", "candidates", "parts", "thought", "functionCall"),
    *("function_call", "args", "usageMetadata", "promptTokenCount", "toolUsePromptTokenCount"),
    *("candidatesTokenCount", "thoughtsTokenCount", "totalTokenCount"),
    *("cachedContentTokenCount", "content_block", "partial_json", "input", "role", "messages"),
    *("system", "instructions", "prompt", "contents", "systemInstruction", "system_instruction"),
    *("functionResponse", "function_response", "inlineData", "inline_data", "fileData"),
    *("file_data", "mimeType", "mime_type", "model", "stream", "tools", "object", "tool_result"),
]
# String values the parsers compare against.
WORDS = [
    *("response.completed", "response.incomplete", "response.failed", "error", "message"),
    *("response.output_text.delta", "response.refusal.delta", "response.output_item.added"),
    *("response.output_item.done", "response.function_call_arguments.delta", "refusal"),
    *("response.function_call_arguments.done", "message_start", "message_delta", "text"),
    *("content_block_start", "content_block_delta", "text_delta", "input_json_delta"),
    *("tool_use", "server_tool_use", "tool_result", "function_call", "function_call_output"),
    *("output_text", "input_text", "image_url", "image/png", "response", "user", "[DONE]"),
]

# Any str json.loads can return, lone surrogates included.
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
keys = st.sampled_from(KEYS) | any_text
odd_ints = st.sampled_from([0, -1, -(2**63), 2**63, 2**64 + 1, 10**40, -(10**40)])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | odd_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(WORDS)
    | any_text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)
json_dicts = st.dictionaries(keys, json_values, max_size=6)


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """`value` with random parts replaced, removed or added: near-valid input."""
    if depth > 12 or draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    if isinstance(value, dict) and value:
        out = dict(value)
        for key in draw(st.lists(st.sampled_from(sorted(out)), max_size=3, unique=True)):
            action = draw(st.integers(0, 3))
            if action == 0:
                del out[key]
            elif action == 1:
                out[key] = draw(json_values)
            else:
                out[key] = draw(mutated(out[key], depth + 1))
        if draw(st.integers(0, 5)) == 0:
            out[draw(keys)] = draw(json_values)
        return out
    if isinstance(value, list) and value:
        out = list(value)
        for i in draw(st.lists(st.integers(0, len(out) - 1), max_size=3, unique=True)):
            out[i] = draw(mutated(out[i], depth + 1))
        if draw(st.integers(0, 5)) == 0:
            out.insert(draw(st.integers(0, len(out))), draw(json_values))
        return out
    return value if draw(st.booleans()) else draw(json_values)


def dump(value: Any, compact: bool = True) -> bytes:
    """JSON as a provider might send it; NaN/Infinity and lone surrogates included."""
    text = json.dumps(value, separators=(",", ":") if compact else None, ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def _valid_objects() -> dict[str, list[dict[str, Any]]]:
    """Parsed events and bodies of real answers, per format, to mutate."""
    chat = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "[tool]"}]}
    chat_usage = {**chat, "stream_options": {"include_usage": True}}
    cached = {
        "model": "m",
        "messages": [{"role": "user", "content": "[cached] [tool]"}],
        "input": "[cached] [tool]",
        "contents": [{"parts": [{"text": "[cached] [tool]"}]}],
    }

    def objs(events: list[bytes]) -> list[dict[str, Any]]:
        return list(sse_objects(events))

    return {
        "openai": [
            *objs(chat_stream_events(chat_usage)),
            *objs(ff.responses_stream_events(cached)),
            ff.responses_response(cached),
            chat_completion(chat),
            ff.openai_error("bad", "invalid_request_error", "model", "x"),
            {"type": "error", "message": "m", "code": "c"},
            {"type": "response.refusal.delta", "delta": "no"},
            {"choices": [{"message": {"content": "c"}, "text": "t"}], "object": "x"},
            {
                "object": "response",
                "output": [{"type": "message", "content": [{"type": "refusal", "refusal": "r"}]}],
            },
        ],
        "anthropic": [
            *objs(ff.anthropic_stream_events(cached)),
            ff.anthropic_message(cached),
            ff.anthropic_error("overloaded_error", "busy"),
            {"type": "content_block_delta", "index": 0, "delta": "x"},
        ],
        "gemini": [
            *ff.gemini_chunks("g", cached),
            ff.gemini_response("g", cached),
            ff.gemini_error(429, "slow down", "RESOURCE_EXHAUSTED"),
            {
                "usageMetadata": {
                    "promptTokenCount": 1,
                    "toolUsePromptTokenCount": 2,
                    "candidatesTokenCount": 3,
                    "thoughtsTokenCount": 4,
                    "cachedContentTokenCount": 1,
                },
                "candidates": [{"content": {"parts": [{"thought": True, "text": "t"}, 1]}}],
            },
        ],
    }


VALID = _valid_objects()
ALL_VALID = [obj for objs in VALID.values() for obj in objs]

# Real request bodies, to mutate for prompt_text.
REQUESTS = [
    {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
            },
        ],
    },
    {
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "output": [{"type": "output_text", "text": "x"}]},
            "plain",
        ],
    },
    {"input": ["a", "b"], "prompt": "p"},
    {"input": "hi", "instructions": "sys", "system": "sys", "systemInstruction": "sys"},
    {"input": [{"type": "web_search_call"}, 1], "contents": "hi"},
    {
        "system": [{"type": "text", "text": "sys"}],
        "messages": [
            {
                "role": "user",
                "content": [
                    "s",
                    {"type": "text", "text": "t"},
                    {"type": "tool_use", "name": "f", "input": {"a": 1}},
                    {"type": "tool_result", "content": [{"type": "text", "text": "r"}]},
                    {"type": "image"},
                ],
            }
        ],
    },
    {
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "hi"},
                    {"functionCall": {"name": "f", "args": {"a": 1}}},
                    {"functionResponse": {"name": "f"}},
                    {"inlineData": {"mimeType": "image/png"}},
                    {"fileData": {}},
                    "s",
                ],
            }
        ],
        "content": {"parts": [{"text": "embed me"}]},
    },
]

objects = st.sampled_from(ALL_VALID) | st.sampled_from(ALL_VALID).flatmap(mutated) | json_dicts
# Request bodies are JSON objects (anything else is read as `{}` before the parsers see it).
request_bodies = (
    st.sampled_from(REQUESTS)
    | st.sampled_from(REQUESTS).flatmap(mutated).map(lambda b: b if isinstance(b, dict) else {})
    | json_dicts
)
separators = st.sampled_from([b"\n\n", b"\r\n\r\n", b"\n", b"\r\n", b"\n\r\n", b""])


@st.composite
def sse_event(draw: st.DrawFn) -> bytes:
    """One near-valid SSE event: a `data:` line with (usually) JSON, random framing."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        payload = draw(st.binary(max_size=40))
    elif kind == 1:
        payload = b"[DONE]"
    elif kind == 2:
        payload = dump(draw(json_values))
    else:
        payload = dump(draw(objects), compact=draw(st.booleans()))
    if draw(st.integers(0, 4)) == 0:  # cut short
        payload = payload[: draw(st.integers(0, len(payload)))]
    head = draw(st.sampled_from([b"data: ", b"data:", b"data:  ", b"event: x\ndata: ", b"id: 1\n"]))
    return head + payload + draw(separators)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """`data` cut at random places (empty chunks excluded)."""
    if not data:
        return []
    cuts = draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=12, unique=True))
    bounds = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


sse_streams = st.lists(sse_event(), max_size=8).map(b"".join) | st.binary(max_size=300)
chunked_streams = sse_streams.flatmap(chunked)

# --- Invariants -------------------------------------------------------------------------------


def check_usage(usage: Any) -> None:
    assert usage is None or isinstance(usage, Usage)
    if usage is not None:
        for name in (
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "total_tokens",
            "cache_write_tokens",
        ):
            value = getattr(usage, name)
            assert value is None or (type(value) is int), (name, value)


def check_reply(reply: Any) -> None:
    assert isinstance(reply, Reply)
    check_usage(reply.usage)
    assert reply.text is None or isinstance(reply.text, str)
    assert reply.error is None or isinstance(reply.error, str)


# --- common -----------------------------------------------------------------------------------


@FUZZ
@given(sse_streams)
@example(DEEP)
@example(b"data: \xff\xfe\n\ndata:\r\n\r\n")
def test_sse_payloads_and_objects(data):
    payloads = list(sse_payloads(data))
    assert all(isinstance(p, str) for p in payloads)
    assert all(isinstance(o, dict) for o in sse_objects([data]))


@FUZZ
@given(st.binary(max_size=200) | st.builds(dump, json_values) | any_text)
@example(DEEP)
@example(b"data: " + DEEP)
@example("[" * 5000)
@example(b"1" * 5000)  # more digits than int() converts
@example(b"\xff")
def test_json_object(data):
    value = json_object(data)
    assert value is None or isinstance(value, dict)


@FUZZ
@given(json_values)
@example({"prompt_tokens": 1, "prompt_tokens_details": "x"})
@example({"input_tokens": 1, "input_tokens_details": [1]})
@example({"prompt_tokens": 1, "prompt_tokens_details": 7})
@example({"prompt_tokens": True, "completion_tokens": math.nan, "total_tokens": "3"})
def test_usage_parsers(raw):
    for usage_from in USAGE_FROM:
        check_usage(usage_from(raw))


@FUZZ
@given(st.sampled_from(VALID["openai"]).flatmap(mutated))
def test_usage_parsers_on_near_valid_usage(obj):
    obj = obj if isinstance(obj, dict) else {"usage": obj}
    response = obj.get("response") if isinstance(obj.get("response"), dict) else {}
    for raw in (obj, obj.get("usage"), response.get("usage")):
        for usage_from in USAGE_FROM:
            check_usage(usage_from(raw))


def test_usage_of_valid_objects_counts_bools_as_nothing():
    usage = Usage.from_obj({"prompt_tokens": True, "completion_tokens": 2})
    assert usage is not None and usage.prompt_tokens is None and usage.total_tokens is None


@FUZZ
@given(json_values, st.lists(any_text | st.sampled_from(["type", "code", "status"]), max_size=3))
def test_error_text(error, fallback):
    text = error_text(error, *fallback)
    assert text is None or isinstance(text, str)


@FUZZ
@given(any_text, any_text, json_values)
def test_body_flags(path, query, body):
    model = model_in_body(path, body)
    assert model is None or (isinstance(model, str) and model)
    assert stream_flag_in_body(path, query, body) in (True, False)


# --- every wire format ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
class TestWireFormat:
    @FUZZ
    @given(chunks=chunked_streams)
    @example(chunks=[b'data: {"choices": 5}\n\n'])
    @example(chunks=[b'data: {"choices": [1]}\n\n'])
    @example(chunks=[b'data: {"choices": [{"delta": {"tool_calls": [{"index": []}]}}]}\n\n'])
    @example(chunks=[b'data: {"choices":[{"delta":{"tool_calls":[{"index":"a"},{}]}}]}\n\n'])
    @example(chunks=[b'data: {"choices":[{"delta":{"tool_calls":[{"function":{"name":1}}]}}]}\n\n'])
    @example(chunks=[b'data: {"type": "message_start", "message": []}\n\n'])
    @example(chunks=[b'data: {"candidates": [{"content": "x"}]}\n\n'])
    @example(chunks=[b'data: {"candidates": [{"content": {"parts": 3}}]}\n\n'])
    @example(chunks=[b"data: " + DEEP + b"\n\n"])
    def test_read_sse_response(self, fmt, chunks):
        check_reply(fmt.read_sse_response(chunks))

    @FUZZ
    @given(
        body=st.binary(max_size=200)
        | st.builds(dump, objects, st.booleans())
        | st.builds(dump, st.lists(objects, max_size=3), st.booleans())
    )
    @example(body=DEEP)
    @example(body=b'{"choices": [{"message": []}]}')
    @example(body=b'{"choices": [{"message": {"tool_calls": [1]}}]}')
    @example(body=b'{"usage": {"prompt_tokens": 1, "prompt_tokens_details": "x"}}')
    @example(body=b'[{"candidates": []}, ' + DEEP)
    def test_read_json_response(self, fmt, body):
        check_reply(fmt.read_json_response(body))
        # A body cut short anywhere (a stream that ended early) is as harmless.
        for end in (1, len(body) // 2, len(body) - 1):
            check_reply(fmt.read_json_response(body[:end]))

    @FUZZ
    @given(body=request_bodies)
    @example(body={"messages": 5})
    @example(body={"messages": [{"role": "user", "tool_calls": 1}]})
    @example(body={"messages": [{"tool_calls": [{"function": []}]}]})
    @example(body={"messages": [{"tool_calls": ["x"]}]})
    @example(body={"input": [{"type": "message", "content": 3}], "instructions": 1})
    @example(body={"contents": {"parts": {"text": "\ud800"}}, "content": {"parts": 1}})
    @example(body={"messages": [{"content": [{"type": []}]}]})
    def test_prompt_text(self, fmt, body):
        assert isinstance(fmt.prompt_text(body), str)

    @FUZZ
    @given(
        path=any_text
        | st.sampled_from(["/chat/completions", "/messages", "/models/x:streamGenerateContent"])
        | st.builds("/models/{}:{}".format, any_text, any_text),
        query=any_text,
        body=json_values,
    )
    def test_request_facts(self, fmt, path, query, body):
        name = fmt.endpoint(path)
        assert name is None or isinstance(name, str)
        model = fmt.request_model(path, body)
        assert model is None or isinstance(model, str)
        assert fmt.is_stream(path, query, body) in (True, False)


SEEDS = ALL_VALID + REQUESTS


@pytest.mark.parametrize("seed", range(len(SEEDS)))
@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_every_known_shape_mutated(seed, data):
    """Each real answer and request, with random parts swapped for wrong types, in every format."""
    value = data.draw(mutated(SEEDS[seed]) | st.just(SEEDS[seed]))
    raw = dump(value)
    for fmt in MODULES:
        check_reply(fmt.read_json_response(raw))
        check_reply(fmt.read_sse_response([b"data: " + raw + b"\n\n", b"data: [DONE]\n\n"]))
        if isinstance(value, dict):
            assert isinstance(fmt.prompt_text(value), str)
    for usage_from in USAGE_FROM:
        check_usage(usage_from(value.get("usage") if isinstance(value, dict) else value))


# --- valid streams: any chunking gives the same reply -----------------------------------------

pieces = st.lists(st.text(max_size=6), min_size=1, max_size=4)
markers = st.sampled_from(["", "[cached]", "[tool]", "[cached] [tool]"])


@st.composite
def valid_stream(draw: st.DrawFn) -> tuple[str, list[bytes], bool]:
    text = draw(markers) + draw(st.text(max_size=8))
    model = draw(st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1))
    body = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": text}],
        "input": text,
        "contents": [{"parts": [{"text": text}]}],
        "stream_options": {"include_usage": draw(st.booleans())},
    }
    kind = draw(st.sampled_from(["chat", "responses", "anthropic", "gemini"]))
    events = {
        "chat": lambda: chat_stream_events(body),
        "responses": lambda: ff.responses_stream_events(body),
        "anthropic": lambda: ff.anthropic_stream_events(body),
        "gemini": lambda: ff.gemini_stream_events(model, body),
    }[kind]()
    api = {"chat": "openai", "responses": "openai"}.get(kind, kind)
    reports_usage = kind != "chat" or body["stream_options"]["include_usage"]
    return api, events, reports_usage


@FUZZ
@given(valid_stream().flatmap(lambda s: st.tuples(st.just(s), chunked(b"".join(s[1])))))
def test_valid_streams_read_the_same_at_any_chunking(case):
    (api, events, reports_usage), chunks = case
    fmt = FORMATS[api]
    whole = fmt.read_sse_response(events)
    assert fmt.read_sse_response(chunks) == whole
    check_reply(whole)
    assert whole.text
    if reports_usage:
        assert whole.usage is not None and whole.usage.prompt_tokens is not None


@FEW
@given(markers)
def test_gemini_array_stream_cut_anywhere(marker):
    body = {"contents": [{"parts": [{"text": marker}]}]}
    data = b"".join(ff.gemini_stream_array("g", body))
    full = gemini.read_json_response(data)
    assert full.usage is not None and full.usage.total_tokens == ff.GEMINI_TOTAL_TOKENS
    for end in range(0, len(data), 7):
        check_reply(gemini.read_json_response(data[:end]))


# --- the usage stripper -----------------------------------------------------------------------


def run_tap(chunks: list[bytes], strip_usage: bool = True) -> list[bytes]:
    tap = StreamTap(record(), strip_usage=strip_usage)
    out: list[bytes] = []
    for chunk in [*chunks, b""]:
        result = tap(chunk)
        assert isinstance(result, bytes | list)
        out.extend([result] if isinstance(result, bytes) else result)
    assert all(isinstance(piece, bytes) for piece in out)
    return out


@FUZZ
@given(chunked_streams)
@example([b"data: " + DEEP + b"\n\n"])
@example([b'data: {"usage": 1, "choices": [], "x": ' + DEEP + b"\n\n"])
@example([b'data: \xff"usage"\n\n'])
def test_stripper_takes_any_bytes(chunks):
    data = b"".join(chunks)
    out = run_tap(chunks)
    assert b"" not in out, "an empty chunk would end a chunked response early"
    if b'"usage"' not in data:
        assert b"".join(out) == data
    # Chunking never changes what the client gets.
    assert b"".join(out) == b"".join(run_tap([data] if data else []))


@FEW
@given(chunked_streams)
def test_passthrough_is_untouched(chunks):
    tap = StreamTap(record(), strip_usage=False)
    for chunk in chunks:
        assert tap(chunk) is chunk


@st.composite
def openai_usage_stream(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(what upstream sends with include_usage, what the client asked for): random text,
    either framing, extra non-usage events and comments mixed in."""
    crlf = draw(st.booleans())
    sep = b"\r\n\r\n" if crlf else b"\n\n"
    texts = draw(st.lists(st.text(st.characters(exclude_categories=("Cs",))), max_size=4))
    asked: list[bytes] = []
    upstream: list[bytes] = []
    for text in texts:
        extra = draw(
            st.dictionaries(st.sampled_from(["id", "model", "x"]), json_values, max_size=2)
        )
        obj = {**extra, "choices": [{"index": 0, "delta": {"content": text}}]}
        usage_first = draw(st.booleans())
        ascii_only = draw(st.booleans())
        with_usage = {"usage": None, **obj} if usage_first else {**obj, "usage": None}
        # Compact JSON, as OpenAI sends it.
        plain, full = (
            json.dumps(o, ensure_ascii=ascii_only, separators=(",", ":")).encode(
                "utf-8", "surrogatepass"
            )
            for o in (obj, with_usage)
        )
        if b'"usage"' in plain:  # a nested `"usage":null` would go too
            continue
        asked.append(b"data: " + plain + sep)
        upstream.append(b"data: " + full + sep)
        if draw(st.integers(0, 4)) == 0:  # an event with no usage at all is kept as is
            other = draw(sse_event())
            if b'"usage"' not in other and other.endswith(sep):
                asked.append(other)
                upstream.append(other)
    usage = draw(mutated(usage_for({"messages": "[cached]"})) | json_dicts)
    if usage:
        upstream.append(b"data: " + dump({"choices": [], "usage": usage}) + sep)
    asked.append(b"data: [DONE]" + sep)
    upstream.append(b"data: [DONE]" + sep)
    return b"".join(upstream), b"".join(asked)


@FUZZ
@given(openai_usage_stream().flatmap(lambda s: st.tuples(st.just(s), chunked(s[0]))))
@example(  # a stray blank line before the usage chunk stays, as the client would see it
    (
        (
            b'id: 1\n\n\ndata: {"choices":[],"usage":true}\n\ndata: [DONE]\n\n',
            b"id: 1\n\n\ndata: [DONE]\n\n",
        ),
        [b'id: 1\n\n\ndata: {"choices":[],"usage":true}\n\ndata: [DONE]\n\n'],
    )
)
def test_stripper_gives_exactly_the_stream_asked_for(case):
    (_upstream, asked), chunks = case
    assert b"".join(run_tap(chunks)) == asked


# --- writer-thread helpers --------------------------------------------------------------------


@FUZZ
@given(request_bodies)
@example({"messages": "\ud800"})
@example({"system": {"\udfff": ["\ud83d"]}, "tools": [math.nan, 10**40]})
def test_prompt_hash(body):
    digest = prompt_hash(body)
    assert digest is None or (isinstance(digest, str) and len(digest) == 20)
    assert prompt_hash(json.loads(json.dumps(body))) == digest if digest else True


@FEW
@given(request_bodies)
@example({"messages": [{"role": [], "content": {"x": 1}}, 3]})
@example({"input": [["a"], "b", 3, {"c": 1}]})
def test_token_estimate(body):
    assert type(tokencount.count_request("gpt-4o-mini", body)) is int
