"""Faults end to end: the official OpenAI SDK / httpx -> a real `flowgate start` -> a
misbehaving upstream (fault_upstream.py), unreachable hosts and impatient clients.

Each test checks what the client saw, the row FlowGate logged for the failed call,
and that FlowGate still serves the next request.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ssl
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import openai
import pytest
import yaml
from conftest import RunningFlowGate, make_test_ca, start_flowgate, write_config
from fault_upstream import (
    HUGE_EVENTS,
    LONG_EVENTS,
    OVERLOADED_BODY,
    PARTIAL_EVENTS,
    PROMPT_TOKENS,
    RATE_LIMIT_BODY,
    RETRY_AFTER,
    FaultUpstream,
    closed_port,
    piece,
)

UPSTREAM_TIMEOUT = 1.5  # seconds; server.upstream_timeout_s of this module's FlowGate
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultUpstream]:
    upstream = FaultUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultUpstream]:
    """An HTTPS upstream whose certificate FlowGate has no reason to trust."""
    ca = make_test_ca(tmp_path_factory.mktemp("untrusted-ca"))
    upstream = FaultUpstream(tls=ca.server).start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def gate(
    faults: FaultUpstream, self_signed: FaultUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFlowGate]:
    directory = tmp_path_factory.mktemp("flowgate-faults")
    providers = {
        "faulty": {"base_url": f"{faults.base_url}/v1", "models": ["fault-*"]},
        "refused": {
            "base_url": f"http://127.0.0.1:{closed_port()}/v1",
            "models": ["refused-model"],
        },
        "nodns": {"base_url": "http://no-such-host.invalid/v1", "models": ["nodns-model"]},
        "tlsnodns": {"base_url": "https://tls.no-such-host.invalid/v1", "models": ["nodns-tls"]},
        "tlsplain": {
            "base_url": f"https://127.0.0.1:{faults.port}/v1",
            "models": ["tls-plain-model"],
        },
        "selfsigned": {"base_url": f"{self_signed.base_url}/v1", "models": ["tls-self-model"]},
    }
    # The config's own providers (see conftest) point at the fault upstream too.
    config = write_config(
        directory,
        SimpleNamespace(base_url=faults.base_url),
        {"providers": providers, "server": {"upstream_timeout_s": UPSTREAM_TIMEOUT}},
    )
    running = start_flowgate(directory, config)
    yield running
    running.stop_cleanly()


@pytest.fixture
def client(gate: RunningFlowGate) -> openai.OpenAI:
    return openai.OpenAI(base_url=gate.base_url, api_key="sk-client-key", max_retries=0)


def tag() -> str:
    return f"f-{uuid.uuid4().hex[:12]}"


def session_headers(session: str) -> dict[str, str]:
    return {"x-flowgate-session": session}


def one_row(gate: RunningFlowGate, session: str) -> dict:
    [row] = gate.wait_rows("session = ?", (session,))
    return row


def assert_still_serving(client: openai.OpenAI, gate: RunningFlowGate) -> None:
    """The next call after a fault goes through and is logged as a success."""
    session = tag()
    stream = client.chat.completions.create(
        model="fault-ok",
        messages=MESSAGES,
        stream=True,
        extra_headers=session_headers(session),
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "".join(piece(i) for i in range(PARTIAL_EVENTS))
    row = one_row(gate, session)
    assert (row["status"], row["error"]) == (200, None)


def flowgate_error(exc: openai.APIStatusError, status: int, code: str) -> str:
    """FlowGate's own OpenAI-shape error; returns its message."""
    assert exc.status_code == status
    assert exc.response.headers["content-type"] == "application/json"
    assert exc.response.headers.get("x-flowgate-error") == "1"
    error = exc.response.json()["error"]
    assert set(error) == {"message", "type", "code"}
    assert error["code"] == code
    assert error["message"]
    return error["message"]


@pytest.mark.parametrize(
    ("model", "provider", "expected"),
    [
        ("refused-model", "refused", "refused"),
        ("nodns-model", "nodns", "no-such-host.invalid"),
        ("tls-plain-model", "tlsplain", "tls"),
        ("tls-self-model", "selfsigned", "certificate"),
    ],
    ids=["connection-refused", "dns-failure", "tls-plain-http", "tls-self-signed"],
)
def test_unreachable_upstream(client, gate, model, provider, expected):
    session = tag()
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model=model, messages=MESSAGES, extra_headers=session_headers(session)
        )
    assert time.monotonic() - started < 10
    message = flowgate_error(caught.value, 502, "upstream_unreachable")
    assert provider in message and expected in message.lower()

    row = one_row(gate, session)
    assert row["status"] == 502 and row["provider"] == provider
    assert row["error"] == message
    assert row["completion_tokens"] is None and row["cost_usd"] in (None, 0)
    assert_still_serving(client, gate)


def test_timeout_before_headers(client, gate, faults):
    session = tag()
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="fault-hang", messages=MESSAGES, extra_headers=session_headers(session)
        )
    elapsed = time.monotonic() - started
    assert UPSTREAM_TIMEOUT <= elapsed < UPSTREAM_TIMEOUT + 5
    assert faults.hanging.acquire(timeout=0)  # the upstream really got the call
    message = flowgate_error(caught.value, 504, "upstream_timeout")
    assert "faulty" in message and f"{UPSTREAM_TIMEOUT:g} s" in message

    row = one_row(gate, session)
    assert (row["status"], row["error"]) == (504, message)
    assert_still_serving(client, gate)


@pytest.fixture
def proxy_http(gate: RunningFlowGate) -> Iterator[httpx.Client]:
    """A forward-proxy client: HTTPS_PROXY and FlowGate's CA, as `flowgate env` sets them."""
    ca = gate.config_path.parent / "home" / "mitmproxy" / "mitmproxy-ca-cert.pem"
    verify = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(proxy=gate.proxy_url, verify=verify, timeout=30) as http:
        yield http


@pytest.mark.parametrize(
    ("base_url", "model", "status", "code", "expected"),
    [
        # TLS to FlowGate, then an upstream that cannot be found.
        ("https://tls.no-such-host.invalid/v1", "nodns-tls", 502, "upstream_unreachable", "nodns"),
        # TLS to FlowGate for api.openai.com, sent on to the configured (silent) upstream.
        ("https://api.openai.com/v1", "fault-hang", 504, "upstream_timeout", "did not answer"),
        # Plain HTTP through the proxy to a closed port.
        ("refused", "refused-model", 502, "upstream_unreachable", "refused"),
    ],
    ids=["tls-dns-failure", "tls-timeout", "http-refused"],
)
def test_forward_proxy_clients_get_openai_shape_errors(
    gate, proxy_http, base_url, model, status, code, expected
):
    if base_url == "refused":
        base_url = yaml.safe_load(gate.config_path.read_text())["providers"]["refused"]["base_url"]
    session = tag()
    sdk = openai.OpenAI(
        base_url=base_url, api_key="sk-client-key", max_retries=0, http_client=proxy_http
    )
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(
            model=model, messages=MESSAGES, extra_headers=session_headers(session)
        )
    message = flowgate_error(caught.value, status, code)
    assert expected in message
    row = one_row(gate, session)
    assert (row["mode"], row["status"], row["error"]) == ("proxy", status, message)
    # FlowGate closed that connection after the error; the next call opens a new one.
    reply = sdk.with_options(base_url="https://api.openai.com/v1").chat.completions.create(
        model="fault-ok", messages=MESSAGES
    )
    assert reply.choices[0].message.content


def partial_stream(client: openai.OpenAI, model: str, session: str) -> tuple[str, Exception]:
    """Read a stream that breaks off; what arrived, and how it ended."""
    stream = client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, extra_headers=session_headers(session)
    )
    text = ""
    with pytest.raises((httpx.HTTPError, openai.APIError)) as caught:
        for chunk in stream:
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    return text, caught.value


@pytest.mark.parametrize("model", ["fault-stall", "fault-drop"])
def test_stream_breaks_off_upstream(client, gate, faults, model):
    session = tag()
    started = time.monotonic()
    text, ended = partial_stream(client, model, session)
    assert time.monotonic() - started < UPSTREAM_TIMEOUT + 5
    sent = "".join(piece(i) for i in range(PARTIAL_EVENTS))
    assert text == sent  # every event the upstream sent, then a broken (not a clean) end
    assert isinstance(ended, httpx.RemoteProtocolError), repr(ended)

    row = one_row(gate, session)
    assert row["status"] == 200 and row["stream"] == 1
    if model == "fault-stall":
        assert f"sent nothing for {UPSTREAM_TIMEOUT:g} s" in row["error"]
    else:
        assert "upstream" in row["error"] or "server" in row["error"].lower()
    assert row["response"] == sent
    assert row["completion_tokens"] and row["completion_tokens"] > 0
    assert row["prompt_tokens"] and row["usage_source"] == "estimated"
    assert_still_serving(client, gate)


def test_rate_limit_passes_through(client, gate):
    session = tag()
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="fault-429", messages=MESSAGES, extra_headers=session_headers(session)
        )
    response = caught.value.response
    assert response.headers["retry-after"] == RETRY_AFTER
    assert "x-flowgate-error" not in response.headers
    assert response.json() == RATE_LIMIT_BODY

    row = one_row(gate, session)
    assert row["status"] == 429
    assert row["error"] == RATE_LIMIT_BODY["error"]["message"]
    assert_still_serving(client, gate)


def test_server_error_body_passes_through(gate, client):
    session = tag()
    response = httpx.post(
        f"{gate.base_url}/chat/completions",
        json={"model": "fault-503", "messages": MESSAGES},
        headers={"authorization": "Bearer sk-client-key", **session_headers(session)},
    )
    assert response.status_code == 503
    assert response.content == OVERLOADED_BODY
    assert response.headers["content-type"] == "text/plain"

    row = one_row(gate, session)
    assert row["status"] == 503 and row["error"]
    assert_still_serving(client, gate)


@contextlib.contextmanager
def raw_stream(gate: RunningFlowGate, model: str, session: str) -> Iterator[httpx.Response]:
    """A streamed chat completion read as raw bytes, as the client pleases."""
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST",
            f"{gate.base_url}/chat/completions",
            json={"model": model, "messages": MESSAGES, "stream": True},
            headers={"authorization": "Bearer sk-client-key", **session_headers(session)},
        ) as response,
    ):
        yield response


def test_client_disconnects_mid_stream(gate, client, faults):
    session = tag()
    with raw_stream(gate, "fault-stall", session) as response:
        assert response.status_code == 200
        seen = b""
        for data in response.iter_raw():
            seen += data
            if seen.count(b"\n\n") >= PARTIAL_EVENTS + 1:
                break  # every content event is here: hang up
    # The row is written when the client goes, not when the upstream would have ended.
    row = one_row(gate, session)
    assert row["status"] == 200 and row["stream"] == 1
    assert "client disconnected" in row["error"] and "cancelled" in row["error"]
    assert row["response"] == "".join(piece(i) for i in range(PARTIAL_EVENTS))
    assert row["completion_tokens"] and row["completion_tokens"] > 0
    assert_still_serving(client, gate)


def test_slow_reader_gets_everything(gate, client):
    session = tag()
    stream = client.chat.completions.create(
        model="fault-long",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=session_headers(session),
    )
    text, usage = "", None
    for i, chunk in enumerate(stream):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
        if i % 20 == 0:
            time.sleep(0.05)  # a reader slower than the upstream
    assert text == "".join(piece(i) for i in range(LONG_EVENTS))
    assert usage is not None and usage.completion_tokens == LONG_EVENTS

    row = one_row(gate, session)
    assert (row["status"], row["error"]) == (200, None)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_TOKENS, LONG_EVENTS)
    assert row["usage_source"] == "provider"
    assert row["response"] == text


def test_a_client_that_stops_reading_is_not_taken_for_a_silent_upstream(gate):
    """A reader pausing longer than the upstream timeout, mid-way through a stream larger
    than the sockets hold: whatever mitmproxy does with the backpressure, the upstream
    is not cut off as silent and the client gets the whole stream."""
    session = tag()
    with raw_stream(gate, "fault-huge", session) as response:
        chunks = response.iter_raw()
        body = next(chunks)
        time.sleep(UPSTREAM_TIMEOUT * 2.5)  # a stalled reader: nothing is read
        body += b"".join(chunks)
    assert body.endswith(b"data: [DONE]\n\n")
    assert body.count(b"\n\n") == HUGE_EVENTS + 3  # role, content, finish, [DONE]

    row = one_row(gate, session)
    assert (row["status"], row["error"]) == (200, None)
    assert row["completion_tokens"] == HUGE_EVENTS and row["usage_source"] == "provider"


def test_many_concurrent_streams(gate, client):
    session = tag()
    count = 50
    expected = "".join(piece(i) for i in range(PARTIAL_EVENTS))

    def one(_: int) -> str:
        stream = client.chat.completions.create(
            model="fault-ok",
            messages=MESSAGES,
            stream=True,
            extra_headers=session_headers(session),
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        texts = list(pool.map(one, range(count)))
    assert texts == [expected] * count

    rows = gate.wait_rows("session = ?", (session,), count=count)
    assert len(rows) == count
    wrong = [r for r in rows if (r["status"], r["error"], r["response"]) != (200, None, expected)]
    assert not wrong, [(r["status"], r["error"], r["response"]) for r in wrong]
    assert all(r["completion_tokens"] == PARTIAL_EVENTS for r in rows)
