"""The gateway end to end: the official OpenAI SDK -> a real `flowgate start` -> fake provider.

Every test checks both what the client saw and the row FlowGate logged.
"""

from __future__ import annotations

import json
import os
import threading
import uuid

import httpx
import openai
import pytest
import yaml
from fake_provider import (
    CACHED_PROMPT_TOKENS,
    CACHED_TOKENS,
    COMPLETION_TOKENS,
    EMBEDDING_TOKENS,
    PROMPT_TOKENS,
    chat_stream_events,
)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="module")
def price_map() -> dict:
    import litellm

    return litellm.model_cost


def tag() -> str:
    """A unique session id, so each test finds exactly its own rows."""
    return f"t-{uuid.uuid4().hex[:12]}"


def test_chat_json(openai_client, flowgate, price_map):
    session = tag()
    reply = openai_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Say hello"}],
        extra_headers={"x-flowgate-session": session},
    )
    assert reply.choices[0].message.content == "Hello from gpt-4o-mini!"
    assert reply.usage.prompt_tokens == PROMPT_TOKENS

    [row] = flowgate.wait_rows("session = ?", (session,))
    price = price_map["gpt-4o-mini"]
    assert row["endpoint"] == "chat.completions"
    assert row["mode"] == "gateway"
    assert (row["requested_model"], row["routed_model"], row["provider"]) == (
        "gpt-4o-mini",
        "gpt-4o-mini",
        "openai",
    )
    assert row["status"] == 200 and row["error"] is None and row["stream"] == 0
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (
        PROMPT_TOKENS,
        COMPLETION_TOKENS,
        PROMPT_TOKENS + COMPLETION_TOKENS,
    )
    assert row["cached_tokens"] == 0
    assert row["usage_source"] == "provider"
    assert row["cost_usd"] == pytest.approx(
        PROMPT_TOKENS * price["input_cost_per_token"]
        + COMPLETION_TOKENS * price["output_cost_per_token"]
    )
    assert 0 < row["ttft_ms"] <= row["latency_ms"]
    assert row["prompt"] == "user: Say hello"
    assert row["response"] == "Hello from gpt-4o-mini!"
    assert row["ts"].endswith("Z") and row["client_ip"] == "127.0.0.1"


def test_cached_tokens_are_priced_at_the_cached_rate(openai_client, flowgate, price_map):
    session = tag()
    openai_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "[cached] long shared prefix"}],
        extra_headers={"x-flowgate-session": session},
    )
    [row] = flowgate.wait_rows("session = ?", (session,))
    price = price_map["gpt-4o-mini"]
    assert row["cached_tokens"] == CACHED_TOKENS
    assert row["cost_usd"] == pytest.approx(
        (CACHED_PROMPT_TOKENS - CACHED_TOKENS) * price["input_cost_per_token"]
        + CACHED_TOKENS * price["cache_read_input_token_cost"]
        + COMPLETION_TOKENS * price["output_cost_per_token"]
    )


def raw_stream(flowgate, body: dict, session: str) -> bytes:
    with httpx.stream(
        "POST",
        f"{flowgate.base_url}/chat/completions",
        json=body,
        timeout=30,
        headers={"authorization": "Bearer sk-client-key", "x-flowgate-session": session},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return b"".join(response.iter_raw())


def test_stream_without_include_usage_is_unchanged_but_logged(flowgate, fake_provider, price_map):
    session = tag()
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "Say hello"}],
    }
    received = raw_stream(flowgate, body, session)

    # The client gets exactly what upstream sends when not asked for usage ...
    assert received == b"".join(chat_stream_events(body))
    assert b'"usage"' not in received
    # ... although FlowGate asked upstream for it ...
    sent = fake_provider.last("/v1/chat/completions").body
    assert sent["stream_options"] == {"include_usage": True}
    # ... and logged the provider's numbers.
    [row] = flowgate.wait_rows("session = ?", (session,))
    assert row["stream"] == 1 and row["status"] == 200
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert row["usage_source"] == "provider"
    assert row["cost_usd"] == pytest.approx(
        PROMPT_TOKENS * price_map["gpt-4o-mini"]["input_cost_per_token"]
        + COMPLETION_TOKENS * price_map["gpt-4o-mini"]["output_cost_per_token"]
    )
    assert row["response"] == "Hello from gpt-4o-mini!"
    assert 0 < row["ttft_ms"] <= row["latency_ms"]


def test_stream_with_include_usage_passes_usage_through(flowgate, openai_client):
    session = tag()
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Say hello"}],
    }
    assert raw_stream(flowgate, body, session) == b"".join(chat_stream_events(body))

    chunks = list(
        openai_client.chat.completions.create(
            model="gpt-4o-mini",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Say hello"}],
            extra_headers={"x-flowgate-session": session},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == (
        PROMPT_TOKENS + COMPLETION_TOKENS
    )
    rows = flowgate.wait_rows("session = ?", (session,), count=2)
    assert all(
        r["usage_source"] == "provider" and r["prompt_tokens"] == PROMPT_TOKENS for r in rows
    )


def sdk_stream(client, model: str, content: str, session: str) -> list:
    return list(
        client.chat.completions.create(
            model=model,
            stream=True,
            messages=[{"role": "user", "content": content}],
            extra_headers={"x-flowgate-session": session},
        )
    )


def test_sdk_stream_sees_no_extra_usage_chunk(openai_client, flowgate):
    session = tag()
    chunks = sdk_stream(openai_client, "gpt-4o-mini", "Say hello", session)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from gpt-4o-mini!"
    assert all(c.usage is None and c.choices for c in chunks)
    [row] = flowgate.wait_rows("session = ?", (session,))
    assert row["total_tokens"] == PROMPT_TOKENS + COMPLETION_TOKENS


def test_stream_is_not_buffered(flowgate, fake_provider):
    """Upstream holds the rest of its stream until the client has the first token."""
    gate = threading.Event()
    fake_provider.gate, fake_provider.gate_released = gate, None
    try:
        with httpx.stream(
            "POST",
            f"{flowgate.base_url}/chat/completions",
            timeout=30,
            headers={"authorization": "Bearer sk-client-key"},
            json={
                "model": "gpt-4o-mini",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
        ) as response:
            seen = b""
            for piece in response.iter_raw():
                seen += piece
                if b'"content":"Hello"' in seen:
                    gate.set()
            assert gate.is_set()
    finally:
        fake_provider.gate = None
    assert fake_provider.gate_released is True, "the first token only arrived after the stream"


def test_embeddings(openai_client, flowgate, price_map):
    session = tag()
    result = openai_client.embeddings.create(
        model="text-embedding-3-small",
        input=["one", "two"],
        extra_headers={"x-flowgate-session": session},
    )
    assert len(result.data) == 2 and result.usage.prompt_tokens == EMBEDDING_TOKENS
    [row] = flowgate.wait_rows("session = ?", (session,))
    assert row["endpoint"] == "embeddings" and row["status"] == 200
    assert row["prompt_tokens"] == EMBEDDING_TOKENS and row["completion_tokens"] is None
    assert row["cost_usd"] == pytest.approx(
        EMBEDDING_TOKENS * price_map["text-embedding-3-small"]["input_cost_per_token"]
    )


def test_models_are_answered_by_flowgate(openai_client, fake_provider, flowgate):
    before = len(fake_provider.received)
    ids = [m.id for m in openai_client.models.list()]
    assert "gpt-4o-mini" in ids and "text-embedding-3-small" in ids
    assert "local-model" in ids  # from the config's custom provider
    assert len(ids) == len(set(ids)) > 50
    assert openai_client.models.retrieve("local-model").owned_by == "local"
    with pytest.raises(openai.NotFoundError) as info:
        openai_client.models.retrieve("no-such-model")
    assert info.value.body["code"] == "model_not_found"
    assert len(fake_provider.received) == before, "models must not be fetched upstream"
    rows = flowgate.wait_rows("endpoint = 'models'", count=3)
    assert {r["provider"] for r in rows} == {"flowgate"}


@pytest.mark.parametrize(
    ("model", "error_cls", "status"),
    [
        ("fail-400", openai.BadRequestError, 400),
        ("fail-500", openai.InternalServerError, 500),
    ],
)
def test_upstream_errors_reach_the_client_unchanged(
    openai_client, flowgate, model, error_cls, status
):
    session = tag()
    with pytest.raises(error_cls) as info:
        openai_client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-flowgate-session": session},
        )
    assert info.value.status_code == status
    upstream_message = {
        400: "Invalid value for 'temperature': must be <= 2.",
        500: "The server had an error while processing your request.",
    }[status]
    assert info.value.body["message"] == upstream_message
    [row] = flowgate.wait_rows("session = ?", (session,))
    assert row["status"] == status and row["error"] == upstream_message
    assert row["prompt_tokens"] is None and row["cost_usd"] is None


def test_custom_provider_gets_its_own_key_and_path(openai_client, fake_provider, flowgate):
    session = tag()
    reply = openai_client.chat.completions.create(
        model="local-model",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-flowgate-session": session, "x-flowgate-agent": "tester"},
        user="end-user-7",
    )
    assert reply.choices[0].message.content == "Hello from local-model!"
    upstream = fake_provider.last("/custom/v1/chat/completions")
    assert upstream.headers["authorization"] == "Bearer sk-local-secret"
    assert "x-flowgate-session" not in upstream.headers
    assert "x-flowgate-agent" not in upstream.headers
    [row] = flowgate.wait_rows("session = ?", (session,))
    assert row["provider"] == "local" and row["agent"] == "tester"
    assert row["end_user"] == "end-user-7"
    assert row["cost_usd"] is None, "no price is known for local-model: cost must be NULL"


def test_client_key_is_forwarded_when_flowgate_holds_none(openai_client, fake_provider):
    openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert fake_provider.last("/v1/chat/completions").headers["authorization"] == (
        "Bearer sk-client-key"
    )


def test_skill_pins_an_agent_to_its_model(openai_client, fake_provider, flowgate):
    session = tag()
    openai_client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "summarise"}],
        extra_headers={"x-flowgate-session": session, "x-flowgate-agent": "summarizer"},
    )
    assert fake_provider.last("/custom/v1/chat/completions").body["model"] == "local-model"
    [row] = flowgate.wait_rows("session = ?", (session,))
    assert (row["requested_model"], row["routed_model"], row["provider"], row["strategy"]) == (
        "gpt-4o",
        "local-model",
        "local",
        "skill",
    )


def test_usage_is_estimated_when_the_provider_reports_none(openai_client, flowgate):
    session = tag()
    chunks = sdk_stream(
        openai_client, "no-usage", "Count the tokens of this prompt please", session
    )
    assert chunks
    [row] = flowgate.wait_rows("session = ?", (session,))
    assert row["usage_source"] == "estimated"
    # "Count the tokens of this prompt please" is 7 tokens, plus chat framing.
    assert 7 < row["prompt_tokens"] < 20
    # "Hello from no-usage!" is a handful of tokens.
    assert 3 <= row["completion_tokens"] <= 8


def test_flowgate_errors_use_the_openai_shape(flowgate):
    cases = [
        ("/chat/completions", b"{not json", 400, "invalid_json"),
        ("/chat/completions", b"\xff\xfe not utf-8", 400, "invalid_json"),
        ("/chat/completions", b'{"model": ' + b"[" * 50_000, 400, "invalid_json"),
        ("/chat/completions", json.dumps({"messages": []}).encode(), 400, "missing_model"),
        ("/chat/completions", json.dumps({"model": ["x"]}).encode(), 400, "missing_model"),
    ]
    # The body is read as JSON whatever its content type says: a form post is not JSON.
    form = ("/chat/completions", b"model=gpt-4o-mini&messages=hi", 400, "invalid_json")
    for path, content, status, code in [*cases, form]:
        content_type = "application/x-www-form-urlencoded" if content == form[1] else "json"
        response = httpx.post(
            f"{flowgate.base_url}{path}",
            content=content,
            headers={"content-type": content_type.replace("json", "application/json")},
        )
        assert response.status_code == status
        error = response.json()["error"]
        assert error["code"] == code and error["type"] == "invalid_request_error"
        assert error["message"]
    response = httpx.get(flowgate.base_url.removesuffix("/v1") + "/nowhere")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_wrong_typed_messages_go_to_the_provider_to_judge(flowgate, fake_provider):
    """FlowGate checks what it needs (a model); the rest is the provider's to refuse, and
    the call is logged either way (no traceback: the fixture checks FlowGate's output)."""
    session = tag()
    odd = [{"role": "user", "content": {"nested": [1, None, {"x": "y"}]}}, 7, None]
    for messages in ("just a string", 42, odd):
        response = httpx.post(
            f"{flowgate.base_url}/chat/completions",
            json={"model": "gpt-4o-mini", "messages": messages},
            headers={"x-flowgate-session": session, "authorization": "Bearer sk-client-key"},
        )
        assert "x-flowgate-error" not in response.headers  # the provider's answer
        assert fake_provider.last("/v1/chat/completions").body["messages"] == messages
    rows = flowgate.wait_rows("session = ?", (session,), count=3)
    assert [r["requested_model"] for r in rows] == ["gpt-4o-mini"] * 3


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_compressed_upstream_json_is_passed_on_and_parsed(flowgate, fake_provider, encoding):
    session = tag()
    response = httpx.post(
        f"{flowgate.base_url}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "zip"}]},
        headers={
            "accept-encoding": encoding,
            "x-flowgate-session": session,
            "authorization": "Bearer sk-client-key",
        },
    )
    assert response.headers["content-encoding"] == encoding  # the bytes upstream sent
    assert response.json()["usage"]["prompt_tokens"] == PROMPT_TOKENS
    [row] = flowgate.wait_rows("session = ?", (session,))
    assert row["prompt_tokens"] == PROMPT_TOKENS and row["response"] == "Hello from gpt-4o-mini!"


def test_unreachable_provider_is_a_logged_502(tmp_path, fake_provider):
    from conftest import free_port, start_flowgate, write_config

    config = write_config(
        tmp_path,
        fake_provider,
        {
            "providers": {
                "down": {
                    "base_url": f"http://127.0.0.1:{free_port()}/v1",
                    "models": ["down-model"],
                },
            }
        },
    )
    running = start_flowgate(tmp_path, config)
    try:
        client = openai.OpenAI(base_url=running.base_url, api_key="sk-x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(
                model="down-model", messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.status_code == 502
        [row] = running.wait_rows("provider = 'down'")
        assert row["status"] == 502
        assert row["error"].startswith("could not reach down: ")
        assert "connect call failed" in row["error"].lower()
        # FlowGate keeps serving other providers.
        assert client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        ).choices
    finally:
        assert running.stop() == 0


def test_forward_proxy_listener_observes_provider_traffic(flowgate, fake_provider):
    """Plain-HTTP forward proxying to a configured provider host is logged in proxy mode."""
    session = tag()
    with httpx.Client(proxy=flowgate.proxy_url) as client:
        response = client.post(
            f"{fake_provider.base_url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "via proxy"}]},
            headers={"x-flowgate-session": session, "authorization": "Bearer sk-client-key"},
        )
    assert response.json()["choices"][0]["message"]["content"] == "Hello from gpt-4o-mini!"
    [row] = flowgate.wait_rows("session = ?", (session,))
    assert (row["mode"], row["endpoint"], row["provider"]) == (
        "proxy",
        "chat.completions",
        "openai",
    )
    assert row["prompt_tokens"] == PROMPT_TOKENS and row["prompt"] == "user: via proxy"


def test_a_browser_at_the_gateway_address_lands_on_the_dashboard(flowgate):
    ui_port = yaml.safe_load(flowgate.config_path.read_text())["server"]["ui_port"]
    response = httpx.get(flowgate.base_url.removesuffix("/v1") + "/", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == f"http://127.0.0.1:{ui_port}/-/dashboards/overview"


def test_a_prompt_sent_again_is_counted_as_a_repeat(openai_client, flowgate):
    """Same conversation, other model and settings: the same prompt, spent again."""
    session, question = tag(), f"Classify ticket {uuid.uuid4().hex}"
    for model, temperature in [("gpt-4o-mini", 0), ("gpt-4o", 1), ("gpt-4o-mini", 0.5)]:
        openai_client.chat.completions.create(
            model=model,
            temperature=temperature,
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": question},
            ],
            extra_headers={"x-flowgate-session": session, "x-flowgate-agent": "triage"},
        )
    openai_client.chat.completions.create(  # another question: another prompt
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Other"}],
        extra_headers={"x-flowgate-session": session},
    )
    rows = flowgate.wait_rows("session = ?", (session,), count=4)
    hashes = [row["prompt_hash"] for row in sorted(rows, key=lambda r: r["id"])]
    assert hashes[0] == hashes[1] == hashes[2] != hashes[3]
    assert all(h and len(h) == 20 for h in hashes)

    prompt = flowgate.query("SELECT * FROM prompts WHERE prompt_hash = ?", (hashes[0],))[0]
    costs = [row["cost_usd"] for row in sorted(rows, key=lambda r: r["id"])]
    assert prompt["requests"] == 3 and prompt["model"] == "gpt-4o-mini"
    assert prompt["repeat_cost_usd"] == pytest.approx(costs[1] + costs[2])
    [summary] = flowgate.query("SELECT * FROM sessions WHERE session = ?", (session,))
    assert summary["requests"] == 4 and summary["agent"] == "triage"
    assert summary["cost_usd"] == pytest.approx(sum(costs))


def test_a_stream_with_a_content_length_still_ends(flowgate):
    """The usage chunk FlowGate removes must not leave the client waiting for its bytes."""
    session = tag()
    body = {
        "model": "sized-stream",
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    with httpx.stream(
        "POST",
        f"{flowgate.base_url}/chat/completions",
        json=body,
        timeout=5,  # a client reading to the declared length would wait until this
        headers={"authorization": "Bearer sk-client-key", "x-flowgate-session": session},
    ) as response:
        received = response.read()
    assert received.endswith(b"data: [DONE]\n\n") and b'"usage"' not in received
    [row] = flowgate.wait_rows("session = ?", (session,))
    assert row["status"] == 200 and row["completion_tokens"] and row["error"] is None


def test_a_50_mb_request_goes_through_and_is_logged_clipped(flowgate, fake_provider):
    """A huge prompt is forwarded whole; the log keeps a clipped copy, not 50 MB."""
    session = tag()
    text = "lorem ipsum " * (50 * 1024 * 1024 // 12)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    reply = httpx.post(
        f"{flowgate.base_url}/chat/completions",
        json=body,
        headers={"authorization": "Bearer sk-client-key", "x-flowgate-session": session},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text[:300]
    [row] = flowgate.wait_rows("session = ?", (session,), timeout=60)
    assert row["status"] == 200 and row["prompt_hash"]
    assert len(row["prompt"]) < 300_000 and "more characters not stored" in row["prompt"]
    assert httpx.get(f"{flowgate.base_url}/models").status_code == 200  # still serving
