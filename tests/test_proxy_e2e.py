"""The forward proxy end to end: clients that only honour HTTPS_PROXY and a trusted CA.

Clients talk to the real provider hostnames (api.openai.com …); FlowGate intercepts
TLS for them with its own CA and, because the test config points the built-in
providers' base URLs at a local fake HTTPS provider, sends the calls there.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import pytest
from conftest import FLOWGATE, make_test_ca, start_flowgate, write_config
from fake_provider import COMPLETION_TOKENS, EMBEDDING_TOKENS, PROMPT_TOKENS, FakeProvider
from fake_provider import chat_stream_events as openai_stream_events


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("test-ca"))


@pytest.fixture(scope="module")
def https_provider(test_ca):
    fake = FakeProvider(tls=test_ca.server).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def proxy_gate(tmp_path_factory, https_provider, test_ca):
    directory = tmp_path_factory.mktemp("proxy")
    config = write_config(
        directory,
        https_provider,
        {
            "providers": {
                "openai": {"base_url": f"{https_provider.base_url}/v1"},
                "anthropic": {"base_url": f"{https_provider.base_url}/anthropic/v1"},
                "gemini": {"base_url": f"{https_provider.base_url}/gemini/v1beta"},
            },
            "security": {"upstream_ca_file": str(test_ca.ca_file)},
        },
    )
    running = start_flowgate(directory, config)
    env = subprocess.run(
        [FLOWGATE, "env", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
        env={
            "PATH": "/usr/bin:/bin",
            "FLOWGATE_HOME": str(directory / "home"),
            "FAKE_LOCAL_KEY": "sk-local-secret",
        },
    ).stdout
    running.env = dict(  # type: ignore[attr-defined]
        line.removeprefix("export ").split("=", 1)
        for line in env.splitlines()
        if line.startswith("export ")
    )
    yield running
    running.stop_cleanly()


@pytest.fixture
def proxied(proxy_gate, monkeypatch):
    """This process's HTTP clients see the variables `flowgate env` prints."""
    for name, value in proxy_gate.env.items():
        monkeypatch.setenv(name, value)
    return proxy_gate


def tag() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


def in_flowgate_env(proxy_gate, script: str) -> subprocess.CompletedProcess[str]:
    """Run a shell script the way a user would: after eval "$(flowgate env)"."""
    setup = f'eval "$({FLOWGATE} env --config {proxy_gate.config_path})" && '
    return subprocess.run(
        ["bash", "-c", setup + script],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "FLOWGATE_HOME": str(proxy_gate.config_path.parent / "home"),
            "FAKE_LOCAL_KEY": "sk-local-secret",
        },
    )


def test_env_prints_what_clients_need(proxy_gate):
    env = proxy_gate.env
    assert env["HTTPS_PROXY"] == env["HTTP_PROXY"] == proxy_gate.proxy_url
    assert env["NODE_EXTRA_CA_CERTS"].endswith("mitmproxy-ca-cert.pem")
    bundle = Path(env["SSL_CERT_FILE"]).read_text()
    assert Path(env["NODE_EXTRA_CA_CERTS"]).read_text().strip() in bundle
    assert bundle.count("BEGIN CERTIFICATE") > 50  # the public CAs are still there


def test_openai_sdk_chat_through_https_proxy(proxied, https_provider):
    session = tag()
    client = openai.OpenAI(api_key="sk-real-looking", max_retries=0)  # default base URL
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "over the proxy"}],
        extra_headers={"x-flowgate-session": session},
    )
    assert reply.choices[0].message.content == "Hello from gpt-4o-mini!"
    upstream = https_provider.last("/v1/chat/completions")
    assert upstream.headers["authorization"] == "Bearer sk-real-looking"
    assert "x-flowgate-session" not in upstream.headers
    [row] = proxied.wait_rows("session = ?", (session,))
    assert (row["mode"], row["provider"], row["endpoint"]) == (
        "proxy",
        "openai",
        "chat.completions",
    )
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert row["cost_usd"] > 0 and row["prompt"] == "user: over the proxy"


def test_openai_sdk_stream_through_https_proxy(proxied):
    session = tag()
    client = openai.OpenAI(api_key="sk-x", max_retries=0)
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "stream it"}],
    }
    with client.chat.completions.with_streaming_response.create(
        **body, extra_headers={"x-flowgate-session": session}
    ) as response:
        received = b"".join(response.iter_bytes())
    assert received == b"".join(openai_stream_events(body))
    [row] = proxied.wait_rows("session = ?", (session,))
    assert row["stream"] == 1 and row["usage_source"] == "provider"
    assert row["total_tokens"] == PROMPT_TOKENS + COMPLETION_TOKENS
    assert row["response"] == "Hello from gpt-4o-mini!"


def test_openai_sdk_embeddings_through_https_proxy(proxied):
    session = tag()
    client = openai.OpenAI(api_key="sk-x", max_retries=0)
    result = client.embeddings.create(
        model="text-embedding-3-small", input="hi", extra_headers={"x-flowgate-session": session}
    )
    assert result.usage.prompt_tokens == EMBEDDING_TOKENS
    [row] = proxied.wait_rows("session = ?", (session,))
    assert row["endpoint"] == "embeddings" and row["prompt_tokens"] == EMBEDDING_TOKENS


def test_unknown_paths_on_llm_hosts_pass_through_and_are_logged(proxied, https_provider):
    session = tag()
    with httpx.Client() as client:  # proxy and CA from the environment
        response = client.get(
            "https://api.openai.com/v1/files?purpose=batch",
            headers={"x-flowgate-session": session, "authorization": "Bearer sk-x"},
        )
    assert response.status_code == 404  # the provider's own answer, untouched
    assert response.json()["error"]["message"] == "not found"
    assert https_provider.last("/v1/files?purpose=batch").method == "GET"
    [row] = proxied.wait_rows("session = ?", (session,))
    assert (row["endpoint"], row["status"], row["method"]) == ("files", 404, "GET")
    assert row["latency_ms"] > 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_flowgate_env(proxy_gate):
    """What a user types: eval "$(flowgate env)", then an ordinary curl."""
    session = tag()
    script = (
        'curl -sS --fail-with-body --cacert "$NODE_EXTRA_CA_CERTS" '
        "https://api.openai.com/v1/chat/completions -H 'content-type: application/json' "
        f"-H 'x-flowgate-session: {session}' -H 'authorization: Bearer sk-curl-key' "
        """-d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "curl"}]}'"""
    )
    out = in_flowgate_env(proxy_gate, script)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["choices"][0]["message"]["content"] == "Hello from gpt-4o-mini!"
    [row] = proxy_gate.wait_rows("session = ?", (session,))
    assert row["mode"] == "proxy" and row["prompt"] == "user: curl"


def test_other_hosts_are_tunnelled_not_intercepted(proxy_gate, test_ca, tmp_path):
    """A non-LLM HTTPS host: the client sees that server's own certificate."""

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    server.socket = test_ca.server.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        before = len(proxy_gate.rows())
        # Trusting only the server's own CA: an intercepted connection would fail here.
        own_ca = ssl.create_default_context(cafile=test_ca.ca_file)
        with httpx.Client(proxy=proxy_gate.proxy_url, verify=own_ca) as client:
            response = client.get(f"https://localhost:{server.server_address[1]}/")
        assert response.text == "hello"
        with (
            httpx.Client(
                proxy=proxy_gate.proxy_url,
                verify=ssl.create_default_context(cafile=proxy_gate.env["NODE_EXTRA_CA_CERTS"]),
            ) as client,
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            client.get(f"https://localhost:{server.server_address[1]}/")
        assert len(proxy_gate.rows()) == before
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def price_map() -> dict:
    from flowgate_addon.pricing import litellm_price_map

    return litellm_price_map()


def cost(price: dict, prompt: int, completion: int, cached: int = 0, written: int = 0) -> float:
    """Expected dollars, straight from the price map's per-token fields."""
    return (
        (prompt - cached - written) * price["input_cost_per_token"]
        + cached * price["cache_read_input_token_cost"]
        + written * (price.get("cache_creation_input_token_cost") or price["input_cost_per_token"])
        + completion * price["output_cost_per_token"]
    )


@pytest.mark.parametrize("cached", [False, True])
def test_anthropic_sdk_messages_through_https_proxy(proxied, https_provider, price_map, cached):
    import anthropic

    session = tag()
    client = anthropic.Anthropic(api_key="sk-ant-client", max_retries=0)
    text = "[cached] big shared context" if cached else "hello there"
    message = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=50,
        system="Be brief.",
        messages=[{"role": "user", "content": text}],
        extra_headers={"x-flowgate-session": session},
    )
    assert message.content[0].text == "Hello from claude-sonnet-4-5!"
    upstream = https_provider.last("/anthropic/v1/messages")
    assert upstream.headers["x-api-key"] == "sk-ant-client"
    [row] = proxied.wait_rows("session = ?", (session,))
    assert (row["mode"], row["provider"], row["endpoint"]) == ("proxy", "anthropic", "messages")
    assert row["requested_model"] == "claude-sonnet-4-5"
    usage = message.usage
    read = usage.cache_read_input_tokens or 0
    written = usage.cache_creation_input_tokens or 0
    prompt = usage.input_tokens + read + written
    assert (read, written) == ((50, 30) if cached else (0, 0))
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (
        prompt,
        read,
        written,
    )
    assert row["completion_tokens"] == usage.output_tokens
    assert row["cost_usd"] == pytest.approx(
        cost(price_map["claude-sonnet-4-5"], prompt, usage.output_tokens, read, written)
    )
    assert row["prompt"] == f"system: Be brief.\nuser: {text}"


def test_anthropic_sdk_stream_through_https_proxy(proxied):
    import anthropic

    session = tag()
    client = anthropic.Anthropic(api_key="sk-ant-client", max_retries=0)
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=50,
        messages=[{"role": "user", "content": "stream please"}],
        extra_headers={"x-flowgate-session": session},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from claude-sonnet-4-5!"
    [row] = proxied.wait_rows("session = ?", (session,))
    assert row["stream"] == 1 and row["response"] == text
    assert row["prompt_tokens"] == final.usage.input_tokens
    assert row["completion_tokens"] == final.usage.output_tokens
    assert row["ttft_ms"] <= row["latency_ms"]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_responses_api_through_https_proxy(proxied, stream):
    session = tag()
    client = openai.OpenAI(api_key="sk-x", max_retries=0)
    kwargs = {
        "model": "gpt-4o-mini",
        "input": "Say hello",
        "extra_headers": {"x-flowgate-session": session},
    }
    if stream:
        events = list(client.responses.create(stream=True, **kwargs))
        completed = events[-1].response
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    else:
        completed = client.responses.create(**kwargs)
        text = completed.output_text
    assert text == "Hello from gpt-4o-mini!"
    [row] = proxied.wait_rows("session = ?", (session,))
    assert (row["endpoint"], row["stream"]) == ("responses", int(stream))
    assert row["prompt_tokens"] == completed.usage.input_tokens
    assert row["completion_tokens"] == completed.usage.output_tokens
    assert row["response"] == text and row["prompt"]


def curl_gemini(proxy_gate, path: str, session: str) -> subprocess.CompletedProcess[str]:
    body = json.dumps(
        {
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": "Hi Gemini"}]}],
        }
    )
    script = (
        'curl -sS -N --fail-with-body --cacert "$NODE_EXTRA_CA_CERTS" '
        f"'https://generativelanguage.googleapis.com/v1beta/models/{path}' "
        f"-H 'content-type: application/json' -H 'x-goog-api-key: goog-client-key' "
        f"-H 'x-flowgate-session: {session}' -d '{body}'"
    )
    return in_flowgate_env(proxy_gate, script)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize(
    ("path", "stream"),
    [
        ("gemini-2.0-flash:generateContent", False),
        ("gemini-2.0-flash:streamGenerateContent?alt=sse", True),
        ("gemini-2.0-flash:streamGenerateContent", True),
    ],
)
def test_gemini_with_curl_through_https_proxy(proxy_gate, https_provider, price_map, path, stream):
    import fake_formats as ff

    session = tag()
    out = curl_gemini(proxy_gate, path, session)
    assert out.returncode == 0, out.stderr
    if stream:
        assert "Hello" in out.stdout  # streamed pieces, passed on as sent
    else:
        assert json.loads(out.stdout)["usageMetadata"]["totalTokenCount"] == ff.GEMINI_TOTAL_TOKENS
    upstream = https_provider.last(path.split("?")[0] + ("?alt=sse" if "alt=sse" in path else ""))
    assert upstream.headers["x-goog-api-key"] == "goog-client-key"
    [row] = proxy_gate.wait_rows("session = ?", (session,))
    assert (row["provider"], row["requested_model"], row["stream"], row["endpoint"]) == (
        "gemini",
        "gemini-2.0-flash",
        int(stream),
        path.split(":")[1].split("?")[0],
    )
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (
        ff.GEMINI_PROMPT_TOKENS,
        ff.GEMINI_COMPLETION_TOKENS,
        ff.GEMINI_TOTAL_TOKENS,
    )
    assert row["response"] == "Hello from gemini-2.0-flash!"
    assert row["prompt"] == "system: Be brief.\nuser: Hi Gemini"
    assert row["cost_usd"] == pytest.approx(
        cost(
            price_map["gemini/gemini-2.0-flash"],
            ff.GEMINI_PROMPT_TOKENS,
            ff.GEMINI_COMPLETION_TOKENS,
        )
    )
