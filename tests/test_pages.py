"""FlowGate's own pages in a real Datasette: one request readable, the router, connecting,
the model catalog."""

from __future__ import annotations

import asyncio
import html as htmllib
import json
import re
import sqlite3

import pytest
import yaml
from datasette.app import Datasette

from flowgate_addon.cli import plugins_dir
from flowgate_addon.config import load_settings
from flowgate_addon.pricing import PriceBook
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
SYNCED_AT = "2026-11-20T10:00:00Z"
# deepseek's synced catalog: prices unlike the price map's, so the page must read the table.
CATALOG = [
    ("deepseek", "deepseek-chat", 64000, 0.111, 0.0333, 0.222, SYNCED_AT),
    ("deepseek", "deepseek-reasoner", None, None, None, None, SYNCED_AT),
    ("deepseek", "<img src=x onerror=alert(1)>", None, 1.0, None, 2.0, SYNCED_AT),
]
LOCAL_KEY = "sk-local-secret-123"


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    config = folder / "flowgate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"host": "127.0.0.1", "port": 9123, "proxy_port": 9124},
                "database": {"path": "flow.log.db"},  # a dot: Datasette encodes it in URLs
                "smart_router": {
                    "enabled": True,
                    "strategy": "complexity",
                    "tiers": {"SIMPLE": "deepseek-chat", "MEDIUM": "gpt-4o-mini",
                              "COMPLEX": "gpt-4o", "REASONING": "o3"},
                    "complexity": {"thresholds": {"MEDIUM": 0.2}},
                },
                "providers": {
                    "local": {"base_url": "http://127.0.0.1:8000/v1", "api_key": LOCAL_KEY,
                              "models": ["llama-3-8b", "<b>bold</b>-model", "mixtral-*"]},
                },
                "pricing": {"llama-3-8b": {"input": 0.05, "output": 0.08}},
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
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO models (provider, model, context_window, input_usd_per_1m, "
            "cached_input_usd_per_1m, output_usd_per_1m, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            CATALOG,
        )
    conn.close()
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


def test_the_request_page_links_to_its_raw_row(ds):
    [link] = re.findall(r"href='([^']+)'>The raw row", get(ds, "/-/flowgate/request/1").text)
    assert get(ds, link).status_code == 200


def test_the_log_links_each_row_to_its_page(ds):
    html = get(ds, "/flow~2Elog/requests").text
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


def model_tables(html: str) -> dict[str, dict[str, list[tuple[str | None, str]]]]:
    """provider -> model -> its other cells as (title, text), from the catalog page."""
    tables: dict[str, dict[str, list[tuple[str | None, str]]]] = {}
    for provider, body in re.findall(r"data-provider='([^']*)'>(.*?)</table>", html, re.S):
        rows = tables.setdefault(htmllib.unescape(provider), {})
        for row in re.findall(r"<tr(?: class='fg-routed')?><td><code>(.*?)</tr>", body, re.S):
            name, _, rest = row.partition("</code>")
            cells = re.findall(r"<td[^>]*?(?: title='([^']*)')?>(.*?)</td>", rest, re.S)
            rows[htmllib.unescape(name)] = [
                (title or None, htmllib.unescape(re.sub("<[^>]+>", "", text)).strip())
                for title, text in cells
            ]
    return tables


def expected_cells(prices: PriceBook, model: str, provider: str) -> list[str | None]:
    """What PriceBook says the input, cached input and output prices per 1M tokens are."""
    price = prices.price(model, provider)
    if price is None:
        return [None, None, None]
    return [
        None if v is None else repr(round(v * 1e6, 6))
        for v in (price.input, price.cached_input, price.output)
    ]


def test_catalog_lists_a_synced_providers_rows_with_their_prices(ds):
    html = get(ds, "/-/flowgate/models").text
    deepseek = model_tables(html)["deepseek"]
    assert set(deepseek) == {model for _, model, *_ in CATALOG}  # the sync, not the price map
    assert deepseek["deepseek-chat"] == [
        ("0.111", "$0.111"),
        ("0.0333", "$0.0333"),
        ("0.222", "$0.222"),
        (None, "64,000"),
        (None, "SIMPLE"),
    ]
    assert deepseek["deepseek-reasoner"] == [(None, "—")] * 4 + [(None, "")]
    assert f"synced {SYNCED_AT}" in html
    assert "<h2>deepseek <small>3 models</small></h2>" in html


def test_an_unsynced_provider_lists_the_price_maps_chat_models(ds):
    html = get(ds, "/-/flowgate/models").text
    openai = model_tables(html)["openai"]
    prices = PriceBook()
    chat = [m for m in prices.models_for("openai") if prices.info(m, "openai")["mode"] == "chat"]
    assert "gpt-4o-mini" in openai and set(chat) <= set(openai)
    assert "text-embedding-3-small" not in openai  # chat models only
    for model, cells in openai.items():
        assert [title for title, _ in cells[:3]] == expected_cells(prices, model, "openai"), model
    context = prices.info("gpt-4o-mini", "openai")["max_input_tokens"]
    assert openai["gpt-4o-mini"][3:] == [(None, f"{context:,}"), (None, "MEDIUM")]
    assert openai["gpt-4o"][4] == (None, "COMPLEX") and openai["o3"][4] == (None, "REASONING")
    assert openai["gpt-4.1"][4] == (None, "")
    assert (
        "from LiteLLM's price map — run <code>flowgate catalog sync openai</code> to list what "
        "your key can use" in html
    )
    assert "built-in · api.openai.com · price map name: openai" in html
    assert (
        "<h2>anthropic <small>" in html and "claude-sonnet-4-5" in model_tables(html)["anthropic"]
    )


def test_a_custom_provider_shows_its_configured_models_and_no_key(ds):
    html = get(ds, "/-/flowgate/models").text
    local = model_tables(html)["local"]
    assert set(local) == {"llama-3-8b", "<b>bold</b>-model", "mixtral-*"}
    assert local["llama-3-8b"][:3] == [("0.05", "$0.05"), (None, "—"), ("0.08", "$0.08")]
    assert "custom · 127.0.0.1:8000 · price map name: local" in html
    assert "from your config — run <code>flowgate catalog sync local</code>" in html
    assert "<code>mixtral-*</code> <small>(a name pattern from your config)</small>" in html
    assert LOCAL_KEY not in html and LOCAL_KEY not in json.dumps(ds.plugin_config("flowgate"))


def test_catalog_page_escapes_model_names_and_the_query(ds):
    html = get(ds, "/-/flowgate/models?q=%3C").text
    assert "<code>&lt;img src=x onerror=alert(1)&gt;</code>" in html
    assert "<code>&lt;b&gt;bold&lt;/b&gt;-model</code>" in html
    assert "<img src=x" not in html and "<b>bold" not in html
    assert "value='&lt;'" in html


def test_catalog_filters_by_provider_and_name(ds):
    html = get(ds, "/-/flowgate/models?provider=deepseek").text
    assert list(model_tables(html)) == ["deepseek"]
    assert "<strong>3 models</strong> from 1 provider:" in html
    assert "<option value='deepseek' selected>" in html

    html = get(ds, "/-/flowgate/models?q=MINI").text
    tables = model_tables(html)
    assert "gpt-4o-mini" in tables["openai"] and "deepseek" not in tables
    assert all("mini" in model.lower() for models in tables.values() for model in models)
    shown = sum(len(models) for models in tables.values())
    assert re.search(rf"<strong>{shown} of \d+ models</strong> from \d+ providers matching", html)

    html = get(ds, "/-/flowgate/models?provider=openai&q=4o-mini").text
    assert set(model_tables(html)) == {"openai"}
    assert "No model name contains" not in html

    html = get(ds, "/-/flowgate/models?q=no-such-model").text
    assert model_tables(html) == {}
    assert "No model name contains “no-such-model”." in html


def test_an_unknown_provider_filter_says_so(ds):
    response = get(ds, "/-/flowgate/models?provider=%3Cnope%3E")
    assert response.status_code == 200
    assert "No provider named “&lt;nope&gt;”." in response.text
    assert "FlowGate knows: openai, anthropic," in response.text and ", local." in response.text


def test_catalog_page_is_in_the_menu(ds):
    assert "/-/flowgate/models" in get(ds, "/").text  # the "Model catalog" menu link
