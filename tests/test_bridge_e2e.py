"""Providers without an OpenAI-compatible API: LiteLLM translates, FlowGate answers the flow."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from conftest import RunningFlowGate, start_flowgate, write_config
from fake_provider import FakeProvider

RELAY_KEY = "sk-ant-relay-key"
GEMINI_KEY = "gemini-native-key"


@pytest.fixture(scope="module")
def bridged(fake_provider: FakeProvider, tmp_path_factory) -> Iterator[RunningFlowGate]:
    directory = tmp_path_factory.mktemp("bridge")
    extra = {
        "providers": {
            "openai": {"base_url": f"{fake_provider.base_url}/v1"},
            # A relay that speaks only Anthropic's own API.
            "claude-relay": {
                "base_url": f"{fake_provider.base_url}/anthropic/v1",
                "api": "anthropic",
                "models": ["relay-claude"],
                "api_key": RELAY_KEY,
            },
            # Gemini with its OpenAI-compatible endpoint turned off.
            "gemini": {
                "base_url": f"{fake_provider.base_url}/gemini/v1beta",
                "openai_compatible": False,
                "api_key": GEMINI_KEY,
            },
        }
    }
    running = start_flowgate(directory, write_config(directory, fake_provider, extra))
    yield running
    running.stop_cleanly()
    # LiteLLM's loggers would inherit mitmproxy's DEBUG root level: request details per call.
    assert "LiteLLM:DEBUG" not in running.output()


@pytest.fixture
def client(bridged: RunningFlowGate) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridged.base_url, api_key="sk-client", max_retries=0)


@pytest.mark.parametrize(
    ("model", "provider", "upstream_path", "auth"),
    [
        ("relay-claude", "claude-relay", "/anthropic/v1/messages", ("x-api-key", RELAY_KEY)),
        (
            "gemini-2.0-flash",
            "gemini",
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            ("x-goog-api-key", GEMINI_KEY),
        ),
    ],
)
def test_json_calls_are_translated(
    client, bridged, fake_provider, model, provider, upstream_path, auth
) -> None:
    session = f"bridge-json-{provider}"
    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=50,
        extra_headers={"x-flowgate-session": session},
    )
    assert completion.choices[0].message.content == f"Hello from {model}!"
    upstream = fake_provider.last(upstream_path)
    assert upstream.headers[auth[0]] == auth[1]
    assert "sk-client" not in str(upstream.headers)
    [row] = bridged.wait_rows("session = ?", (session,))
    assert (row["provider"], row["routed_model"], row["status"]) == (provider, model, 200)
    assert row["usage_source"] == "provider" and row["prompt_tokens"] > 0
    assert row["response"] == f"Hello from {model}!"


@pytest.mark.parametrize(
    ("model", "provider", "upstream_path"),
    [
        ("relay-claude", "claude-relay", "/anthropic/v1/messages"),
        (
            "gemini-2.0-flash",
            "gemini",
            "/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent",
        ),
    ],
)
def test_streams_are_translated(client, bridged, fake_provider, model, provider, upstream_path):
    session = f"bridge-stream-{provider}"
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_headers={"x-flowgate-session": session},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Hello from {model}!"
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    assert any(r.path.split("?")[0] == upstream_path for r in fake_provider.received)
    [row] = bridged.wait_rows("session = ?", (session,))
    assert (row["provider"], row["stream"], row["status"]) == (provider, 1, 200)
    assert row["usage_source"] == "provider" and row["completion_tokens"] > 0


def test_only_chat_completions_are_translated(client) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="relay-claude", input="x")
    assert refused.value.code == "provider_not_compatible"


def test_provider_errors_keep_their_status_and_hide_the_key(client, bridged) -> None:
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(
            model="claude-relay/fail-500",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-flowgate-session": "bridge-error"},
        )
    assert failed.value.status_code >= 500
    assert RELAY_KEY not in str(failed.value)
    [row] = bridged.wait_rows("session = 'bridge-error'")
    assert row["status"] >= 500 and RELAY_KEY not in (row["error"] or "")
