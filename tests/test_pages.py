"""FlowGate's own pages in a real Datasette: one request readable, the router, connecting."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from datasette.app import Datasette

from flowgate_addon.cli import plugins_dir
from flowgate_addon.config import load_settings
from flowgate_addon.store import LogWriter
from flowgate_addon.ui_metadata import metadata

PROMPT = (
    "system: You are terse.\n"
    "user: Compare <b>these</b> two plans.\n"
    'assistant (tool call): lookup({"q": "plans"})\n'
    "tool: plan A costs less\n"
    "user: " + "And now in detail. " * 400
)
ROUTED = {
    "ts": "2026-11-24T05:00:00.000Z",
    "mode": "gateway",
    "method": "POST",
    "path": "/v1/chat/completions",
    "endpoint": "chat.completions",
    "requested_model": "auto",
    "routed_model": "deepseek-chat",
    "provider": "deepseek",
    "host": "api.deepseek.com",
    "status": 200,
    "prompt_tokens": 1200,
    "completion_tokens": 80,
    "cost_usd": 0.000369,
    "saved_usd": 0.0042,
    "latency_ms": 812.4,
    "tier": "SIMPLE",
    "score": 0.041,
    "strategy": "classifier",
    "route": json.dumps({"dimensions": {"strong_win_rate": 0.041}}),
    "route_fallback": None,
    "session": "s-42",
    "prompt": PROMPT,
    "response": "Plan A, because <script>alert(1)</script> it is cheaper.",
}


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    config = folder / "flowgate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"host": "127.0.0.1", "port": 9123, "proxy_port": 9124},
                "database": {"path": "log.db"},
                "smart_router": {
                    "enabled": True,
                    "strategy": "complexity",
                    "tiers": {"SIMPLE": "deepseek-chat", "MEDIUM": "gpt-4o-mini",
                              "COMPLEX": "gpt-4o", "REASONING": "o3"},
                    "complexity": {"thresholds": {"MEDIUM": 0.2}},
                },
            }
        )
    )  # fmt: skip
    settings = load_settings(config)
    writer = LogWriter(settings.database.path, lambda r: r, flush_interval=0.01)
    writer.start()
    writer.submit(ROUTED)
    writer.submit({**ROUTED, "tier": None, "strategy": None, "route": None, "prompt": None})
    writer.stop()
    path = settings.database.path
    return Datasette([str(path)], plugins_dir=str(plugins_dir()), metadata=metadata(path, settings))


def get(ds, path: str):
    return asyncio.run(ds.client.get(path))


def test_a_request_reads_as_a_conversation(ds):
    response = get(ds, "/-/flowgate/request/1")
    assert response.status_code == 200
    html = response.text
    for role in ("system", "user", "assistant (tool call)", "tool"):
        assert f"<h4>{role}</h4>" in html
    assert "Compare &lt;b&gt;these&lt;/b&gt; two plans." in html  # text, never markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "show all 7,600 characters" in html  # the long turn is collapsed
    assert "Routing decision" in html and "strong_win_rate" in html and "SIMPLE" in html
    assert "$0.000369" in html and "$0.0042" in html and "812 ms" in html


def test_a_request_without_routing_or_prompt(ds):
    html = get(ds, "/-/flowgate/request/2").text
    assert "Routing decision" not in html and "No prompt stored" in html


@pytest.mark.parametrize("ident", ["3", "x"])
def test_a_missing_request_is_a_404(ds, ident):
    assert get(ds, f"/-/flowgate/request/{ident}").status_code == 404


def test_the_log_links_each_row_to_its_page(ds):
    html = get(ds, "/log/requests").text
    assert '<a href="/-/flowgate/request/1">2026-11-24T05:00:00.000Z</a>' in html


def test_router_page_shows_settings_and_recent_decisions(ds):
    html = get(ds, "/-/flowgate/router").text
    assert "complexity" in html and "deepseek-chat" in html and "o3" in html
    assert "<th>MEDIUM</th><td>0.2</td>" in html  # the configured threshold
    assert "<th>REASONING</th><td>0.7</td>" in html  # a default one
    assert "<a href='/-/flowgate/request/1'>1</a>" in html


def test_connect_page_uses_the_configured_addresses(ds):
    html = get(ds, "/-/flowgate/connect").text
    assert "base_url=&#34;http://127.0.0.1:9123/v1&#34;" in html
    assert "export HTTPS_PROXY=http://127.0.0.1:9124" in html
    assert "flowgate tokens create" in html
