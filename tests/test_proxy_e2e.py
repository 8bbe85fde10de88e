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
from fake_openai import COMPLETION_TOKENS, EMBEDDING_TOKENS, PROMPT_TOKENS, FakeOpenAI
from fake_openai import chat_stream_events as openai_stream_events


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("test-ca"))


@pytest.fixture(scope="module")
def https_provider(test_ca):
    fake = FakeOpenAI(tls=test_ca.server).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def proxy_gate(tmp_path_factory, https_provider, test_ca):
    directory = tmp_path_factory.mktemp("proxy")
    config = write_config(
        directory,
        https_provider,
        {
            "providers": {"openai": {"base_url": f"{https_provider.base_url}/v1"}},
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
    assert running.stop() == 0, running.output()


@pytest.fixture
def proxied(proxy_gate, monkeypatch):
    """This process's HTTP clients see the variables `flowgate env` prints."""
    for name, value in proxy_gate.env.items():
        monkeypatch.setenv(name, value)
    return proxy_gate


def tag() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


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
            "https://api.openai.com/v1/files?purpose=batch", headers={"x-flowgate-session": session}
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
        f'eval "$({FLOWGATE} env --config {proxy_gate.config_path})" && '
        'curl -sS --fail-with-body --cacert "$NODE_EXTRA_CA_CERTS" '
        "https://api.openai.com/v1/chat/completions -H 'content-type: application/json' "
        f"-H 'x-flowgate-session: {session}' "
        """-d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "curl"}]}'"""
    )
    out = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "FLOWGATE_HOME": str(proxy_gate.config_path.parent / "home"),
            "FAKE_LOCAL_KEY": "sk-local-secret",
        },
    )
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
