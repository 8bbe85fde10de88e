"""The addon's hooks, driven by mitmproxy's own test harness (taddons/tflow)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from mitmproxy import exceptions
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from flowgate_addon.addon import METADATA_KEY, FlowGate


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "flowgate.yaml"
    path.write_text(
        "database: {path: ./log.db, flush_interval_ms: 10}\n"
        "providers:\n"
        "  openai: {base_url: 'http://127.0.0.1:9/v1'}\n"
        "  local: {base_url: 'https://llm.internal:8443/api/v1', models: [mine],"
        " api_key: sk-internal}\n"
        "security: {ip_allowlist: ['127.0.0.0/8', '10.1.0.0/16']}\n"
    )
    return path


@contextmanager
def running_addon(config) -> Iterator[FlowGate]:
    """The addon configured from a config file in mitmproxy's test harness; done() after."""
    gate = FlowGate()
    with taddons.context(gate) as tctx:
        tctx.configure(gate, flowgate_config=str(config), listen_host="127.0.0.1")
        yield gate
    gate.done()


@pytest.fixture
def addon(config):
    with running_addon(config) as gate:
        yield gate


def gateway_flow(
    body: dict | bytes, path: str = "/v1/chat/completions", peer: str = "127.0.0.1", **headers: str
):
    flow = tflow.tflow()
    flow.client_conn.proxy_mode = ProxyMode.parse("reverse:http://127.0.0.1:9")
    flow.client_conn.peername = (peer, 50000)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers.setdefault("authorization", "Bearer sk-client-own-key")
    flow.request = tutils.treq(
        method=b"POST",
        path=path.encode(),
        host="127.0.0.1",
        port=7798,
        content=content,
        headers=(
            (b"content-type", b"application/json"),
            *((k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()),
        ),
    )
    flow.request.timestamp_start = time.time()
    return flow


def logged_row(addon: FlowGate, config, columns: str) -> tuple:
    """Stop the addon (flushing its writer) and read back the one logged row."""
    addon.done()
    with sqlite3.connect(config.parent / "log.db") as conn:
        return conn.execute(f"SELECT {columns} FROM requests").fetchone()


def test_rewrites_to_the_provider_of_the_model(addon):
    flow = gateway_flow(
        {"model": "mine", "messages": []}, authorization="Bearer client", x_flowgate_session="s1"
    )
    addon.request(flow)
    request = flow.request
    assert flow.response is None
    assert (request.scheme, request.host, request.port) == ("https", "llm.internal", 8443)
    assert request.path == "/api/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-internal"
    assert "x-flowgate-session" not in request.headers
    record = flow.metadata[METADATA_KEY]
    assert (record.provider, record.session, record.requested_model) == ("local", "s1", "mine")


def test_a_caller_token_never_goes_upstream_even_in_a_repeated_header(addon):
    flow = gateway_flow({"model": "gpt-4o-mini", "messages": []})
    flow.request.headers.set_all("authorization", ["Bearer fgt_smuggled", "Bearer sk-client"])
    addon.request(flow)
    assert flow.response is None
    assert flow.request.headers.get_all("authorization") == ["Bearer sk-client"]


def test_stream_request_asks_upstream_for_usage(addon):
    flow = gateway_flow({"model": "gpt-4o-mini", "stream": True, "messages": []})
    addon.request(flow)
    sent = json.loads(flow.request.content)
    assert sent["stream_options"] == {"include_usage": True}
    assert flow.request.headers["accept-encoding"] == "identity"
    assert flow.metadata[METADATA_KEY].strip_usage is True


def test_stream_request_that_asked_for_usage_is_untouched(addon):
    body = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True}}
    flow = gateway_flow(body)
    original = flow.request.content
    addon.request(flow)
    assert flow.request.content == original
    assert flow.metadata[METADATA_KEY].strip_usage is False


def test_provider_prefix_selects_the_provider(addon):
    flow = gateway_flow({"model": "local/other-model", "messages": []})
    addon.request(flow)
    assert flow.request.host == "llm.internal"
    assert json.loads(flow.request.content)["model"] == "other-model"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{oops", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"model": ' + b"[" * 100_000, "invalid_json"),  # nested past the parser's depth
        (b"\xff\xfe{not utf-8", "invalid_json"),
        ({"messages": []}, "missing_model"),
        ({"model": 42, "messages": []}, "missing_model"),
    ],
)
def test_bad_requests_get_openai_errors(addon, body, code):
    flow = gateway_flow(body)
    addon.request(flow)
    assert flow.response.status_code == 400
    assert json.loads(flow.response.content)["error"]["code"] == code


def test_ip_allowlist(addon):
    allowed = gateway_flow({"model": "gpt-4o-mini"}, peer="10.1.2.3")
    addon.request(allowed)
    assert allowed.response is None
    denied = gateway_flow({"model": "gpt-4o-mini"}, peer="192.168.1.5")
    addon.request(denied)
    assert denied.response.status_code == 403
    assert json.loads(denied.response.content)["error"]["code"] == "ip_not_allowed"
    mapped = gateway_flow({"model": "gpt-4o-mini"}, peer="::ffff:10.1.0.9")
    addon.request(mapped)
    assert mapped.response is None


def test_ip_allowlist_refuses_forward_proxy_clients_at_connect(addon):
    outsider = tflow.tclient_conn()
    outsider.proxy_mode = ProxyMode.parse("regular")
    outsider.peername = ("192.168.1.5", 40000)
    addon.client_connected(outsider)
    assert "ip_allowlist" in outsider.error
    insider = tflow.tclient_conn()
    insider.proxy_mode = ProxyMode.parse("regular")
    insider.peername = ("127.0.0.1", 40000)
    addon.client_connected(insider)
    assert insider.error is None


def test_forward_proxy_observes_known_hosts_only(addon):
    flow = tflow.tflow()
    flow.client_conn.proxy_mode = ProxyMode.parse("regular")
    flow.request = tutils.treq(
        method=b"POST",
        host="llm.internal",
        port=8443,
        scheme=b"https",
        path=b"/api/v1/embeddings",
        content=json.dumps({"model": "mine", "input": "x"}).encode(),
    )
    addon.request(flow)
    record = flow.metadata[METADATA_KEY]
    assert (record.mode, record.endpoint, record.provider) == ("proxy", "embeddings", "local")
    assert flow.request.host == "llm.internal"  # observed, not rerouted
    other = tflow.tflow()
    other.client_conn.proxy_mode = ProxyMode.parse("regular")
    addon.request(other)
    assert METADATA_KEY not in other.metadata


def test_bad_config_is_an_options_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: nope\n")
    gate = FlowGate()
    with taddons.context(gate) as tctx:
        tctx.configure(gate, listen_host="127.0.0.1")
        with pytest.raises(exceptions.OptionsError) as info:
            tctx.configure(gate, flowgate_config=str(bad))
    assert "line 2: server.port" in str(info.value)


def test_response_hook_queues_a_row(addon, config):
    flow = gateway_flow({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "q"}]})
    addon.request(flow)
    flow.response = tutils.tresp(
        content=json.dumps(
            {
                "choices": [{"message": {"role": "assistant", "content": "a"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        ).encode()
    )
    addon.response(flow)
    row = logged_row(addon, config, "prompt_tokens, completion_tokens, prompt, response, status")
    assert row == (3, 1, "user: q", "a", 200)


def test_a_call_broken_off_is_logged_with_its_error_not_estimated(addon, config):
    from mitmproxy import flow as mflow

    flow = gateway_flow({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "q"}]})
    addon.request(flow)
    flow.response = tutils.tresp(content=b'{"partial": ')
    flow.error = mflow.Error("Client disconnected.")  # what mitmproxy says
    addon.error(flow)
    row = logged_row(addon, config, "status, error, usage_source, prompt_tokens")
    assert row == (
        200,
        "client disconnected before the response was complete (cancelled)",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("events", "error"),
    [
        # The SDK read the finish chunk (and [DONE]) and hung up before the stream's end.
        ([b'data: {"choices": [{"delta": {"content": "Hi"}, "finish_reason": null}]}\n\n',
          b'data: {"choices": [{"delta": {}, "finish_reason": "stop"}]}\n\n',
          b"data: [DONE]\n\n"], None),
        # It hung up in the middle: cancelled.
        ([b'data: {"choices": [{"delta": {"content": "Hi"}, "finish_reason": null}]}\n\n'],
         "client disconnected before the response was complete (cancelled)"),
    ],
)  # fmt: skip
def test_a_client_gone_after_the_end_of_a_stream_is_not_a_cancelled_call(
    addon, config, events, error
):
    from mitmproxy import flow as mflow

    flow = gateway_flow({"model": "gpt-4o-mini", "stream": True, "messages": []})
    addon.request(flow)
    flow.response = tutils.tresp(headers=((b"content-type", b"text/event-stream"),), content=b"")
    addon.responseheaders(flow)
    for event in events:
        flow.response.stream(event)
    flow.error = mflow.Error("Client disconnected.")
    addon.error(flow)
    assert logged_row(addon, config, "status, error, response") == (200, error, "Hi")


def test_vault_keys_go_out_in_each_providers_header_style(tmp_path, monkeypatch):
    from flowgate_addon.security.vault import Vault

    vault = Vault(tmp_path / "vault.json")
    vault.init("pw")
    vault.add("anthropic", "sk-ant-vaulted-key-000000")
    vault.add("gemini", "AIza-vaulted-key-0000000000")
    monkeypatch.setenv("FLOWGATE_MASTER_PASSWORD", "pw")
    config = tmp_path / "c.yaml"
    config.write_text(f"security: {{vault_path: {vault.path}}}\n")
    gate = FlowGate()
    with taddons.context(gate) as tctx:
        tctx.configure(gate, listen_host="127.0.0.1")
        tctx.configure(gate, flowgate_config=str(config))
        for host, path, header, value in [
            ("api.anthropic.com", "/v1/messages", "x-api-key", "sk-ant-vaulted-key-000000"),
            (
                "generativelanguage.googleapis.com",
                "/v1beta/models/gemini-2.0-flash:generateContent?key=AIza-client-dummy&alt=sse",
                "x-goog-api-key",
                "AIza-vaulted-key-0000000000",
            ),
        ]:
            flow = tflow.tflow()
            flow.client_conn.proxy_mode = ProxyMode.parse("regular")
            flow.request = tutils.treq(
                method=b"POST",
                host=host,
                port=443,
                scheme=b"https",
                path=path.encode(),
                content=b'{"model": "m", "messages": []}',
                headers=((b"authorization", b"Bearer sk-client-dummy"),),
            )
            gate.request(flow)
            assert flow.response is None
            assert flow.request.headers[header] == value
            assert "authorization" not in flow.request.headers  # the client's dummy is gone
            assert "key" not in flow.request.query  # Gemini's URL key too
    assert flow.request.query["alt"] == "sse"
    gate.done()


def test_a_browser_at_the_gateway_is_sent_to_the_dashboard(addon):
    flow = gateway_flow(b"", path="/")
    flow.request.method = "GET"
    flow.request.headers["host"] = "api.openai.com"  # as reverse mode rewrites it
    flow.client_conn.sockname = ("192.0.2.10", 7798)  # where the browser reached FlowGate
    addon.request(flow)
    assert flow.response.status_code == 302
    assert flow.response.headers["location"] == "http://192.0.2.10:8001/-/dashboards/overview"
    other = gateway_flow(b"", path="/elsewhere")
    other.request.method = "GET"
    addon.request(other)
    assert other.response.status_code == 404  # only / redirects; the rest is explained
