"""Caller tokens and open mode, through a running FlowGate with real SDK clients."""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import timedelta

import httpx
import openai
import pytest
from conftest import FLOWGATE, free_port, start_flowgate, write_config

from flowgate_addon.security.tokens import TokenStore


def held_key(fake_provider) -> dict:
    """FlowGate holds the OpenAI key, so callers need only their caller token."""
    return {
        "providers": {
            "openai": {"base_url": f"{fake_provider.base_url}/v1", "api_key": "sk-held-by-flowgate"}
        }
    }


@pytest.fixture
def gate(tmp_path, fake_provider):
    """A FlowGate whose data folder (and so token file) the test controls."""
    config = write_config(tmp_path, fake_provider, held_key(fake_provider))
    running = start_flowgate(tmp_path, config)
    running.tokens = TokenStore(tmp_path / "home" / "tokens.db")  # type: ignore[attr-defined]
    yield running
    running.tokens.close()
    running.stop_cleanly()


def client(gate, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gate.base_url, api_key=key, max_retries=0)


def ask(gate, key: str, session: str | None = None):
    headers = {"x-flowgate-session": session} if session else {}
    return client(gate, key).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers=headers,
    )


def refused(gate, key: str) -> dict:
    with pytest.raises(openai.AuthenticationError) as info:
        ask(gate, key)
    assert info.value.status_code == 401
    return info.value.body


def test_open_mode_on_loopback_without_tokens(gate):
    assert ask(gate, "sk-anything").choices


def test_tokens_take_effect_at_once(gate, fake_provider):
    token = gate.tokens.create("billing-bot")
    # The first token closes open mode immediately, without a restart.
    assert refused(gate, "sk-anything")["code"] == "missing_token"
    session = f"a-{uuid.uuid4().hex[:8]}"
    assert ask(gate, token, session).choices
    [row] = gate.wait_rows("session = ?", (session,))
    assert row["caller"] == "billing-bot"
    # The caller token never reaches the provider; FlowGate's key does.
    upstream = fake_provider.last("/v1/chat/completions")
    assert token not in str(upstream.headers)
    assert upstream.headers["authorization"] == "Bearer sk-held-by-flowgate"
    assert refused(gate, token[:-2] + "xx")["code"] == "invalid_token"

    assert gate.tokens.revoke("billing-bot")
    assert refused(gate, token)["code"] == "token_revoked"


def test_token_in_x_api_key_header(gate):
    token = gate.tokens.create("header-user")
    response = httpx.post(
        f"{gate.base_url}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": token, "authorization": "Bearer sk-provider-own"},
    )
    assert response.status_code == 200, response.text


def test_expired_token(gate):
    # Only the refusal after expiry is checked: a first call "in time" would race the clock
    # on a busy machine (tokens with a long life are accepted in every other test).
    token = gate.tokens.create("short-lived", ttl=timedelta(seconds=1))
    time.sleep(1.2)
    assert refused(gate, token)["code"] == "token_expired"


def test_cli_created_token_works_on_a_running_gate(gate, tmp_path):
    out = subprocess.run(
        [FLOWGATE, "tokens", "create", "from-cli"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "FLOWGATE_HOME": str(tmp_path / "home")},
    )
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("fgt_") and len(token) >= 4 + 43  # 256 bits, base64url
    assert ask(gate, token).choices


def test_forward_proxy_asks_for_proxy_authentication(gate, fake_provider):
    token = gate.tokens.create("proxy-user")
    url = f"{fake_provider.base_url}/v1/chat/completions"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "via proxy"}]}
    with httpx.Client(proxy=gate.proxy_url) as plain:
        response = plain.post(url, json=body, headers={"authorization": "Bearer sk-own"})
    assert response.status_code == 407
    assert "proxy-authenticate" in response.headers
    authed = gate.proxy_url.replace("http://", f"http://caller:{token}@")
    with httpx.Client(proxy=authed) as client_:
        response = client_.post(url, json=body, headers={"authorization": "Bearer sk-own"})
    assert response.status_code == 200, response.text
    upstream = fake_provider.last("/v1/chat/completions")
    assert "proxy-authorization" not in upstream.headers
    assert upstream.headers["authorization"] == "Bearer sk-held-by-flowgate"


def test_public_bind_without_tokens_refuses_to_start(tmp_path, fake_provider):
    config = write_config(tmp_path, fake_provider, {"server": {"host": "0.0.0.0"}})
    out = subprocess.run(
        [FLOWGATE, "start", "--config", str(config), "--no-ui"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "FLOWGATE_HOME": str(tmp_path / "home"),
            "FAKE_LOCAL_KEY": "x",
        },
    )
    assert out.returncode != 0
    assert "no caller tokens" in out.stderr and "flowgate tokens create" in out.stderr
    assert "Traceback" not in out.stderr


def test_public_bind_with_a_token_starts_and_requires_it(tmp_path, fake_provider):
    home = tmp_path / "home"
    store = TokenStore(home / "tokens.db")
    token = store.create("lan-client")
    store.close()
    config = write_config(
        tmp_path,
        fake_provider,
        {
            "server": {"host": "0.0.0.0", "port": free_port(), "proxy_port": free_port()},
            **held_key(fake_provider),
        },
    )
    running = start_flowgate(tmp_path, config)
    try:
        assert refused(running, "sk-anything")["code"] == "missing_token"
        assert ask(running, token).choices
    finally:
        assert running.stop() == 0


@pytest.mark.parametrize(
    ("allowlist", "allowed"), [(["127.0.0.0/8"], True), (["10.0.0.0/8"], False)]
)
def test_ip_allowlist_hit_and_miss(tmp_path, fake_provider, allowlist, allowed):
    config = write_config(tmp_path, fake_provider, {"security": {"ip_allowlist": allowlist}})
    running = start_flowgate(tmp_path, config)
    try:
        if allowed:
            assert ask(running, "sk-own").choices
        else:
            with pytest.raises(openai.PermissionDeniedError) as info:
                ask(running, "sk-own")
            assert info.value.body["code"] == "ip_not_allowed"
    finally:
        assert running.stop() == 0
