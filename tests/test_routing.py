"""Model resolution and routing rules, through the addon's hooks (taddons/tflow)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from mitmproxy.test import tutils
from test_addon import gateway_flow, running_addon

from flowgate_addon.addon import METADATA_KEY, FlowGate
from flowgate_addon.catalog import Catalog, ListedModel, store_models
from flowgate_addon.config import load_settings
from flowgate_addon.pricing import PriceBook
from flowgate_addon.providers import ProviderRegistry
from flowgate_addon.resolve import ModelResolver
from flowgate_addon.routing.router import route_header

TIERS = (
    "{SIMPLE: deepseek-chat, MEDIUM: gemini-2.0-flash, COMPLEX: claude-sonnet-4-5, REASONING: o1}"
)


def write(tmp_path, providers: str = "", tiers: str = TIERS) -> str:
    path = tmp_path / "flowgate.yaml"
    path.write_text(
        "database: {path: ./log.db, flush_interval_ms: 10}\n"
        "providers:\n"
        "  openai: {base_url: 'http://127.0.0.1:9/v1'}\n"
        "  anthropic: {base_url: 'http://127.0.0.1:9/anthropic/v1', api_key: sk-ant-fg}\n"
        "  local: {base_url: 'http://127.0.0.1:9/local/v1', models: [mine, 'team-*']}\n"
        + providers
        + "smart_router:\n"
        f"  enabled: true\n  strategy: complexity\n  tiers: {tiers}\n  route_models: [gpt-4o]\n"
    )
    return str(path)


@pytest.fixture
def routing(tmp_path):
    with running_addon(write(tmp_path)) as gate:
        yield gate


def resolver_for(tmp_path, providers: str = "") -> ModelResolver:
    settings = load_settings(write(tmp_path, providers=providers))
    registry = ProviderRegistry.from_config(settings.providers)
    return ModelResolver(registry, PriceBook())


@pytest.mark.parametrize(
    ("model", "provider", "sent_as", "source"),
    [
        ("mine", "local", "mine", "config"),
        ("team-alpha", "local", "team-alpha", "config"),  # a glob in providers.X.models
        ("local/anything", "local", "anything", "prefix"),
        ("groq/llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant", "prefix"),
        ("llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant", "price map"),
        ("claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5", "price map"),
        ("gemini-2.0-flash", "gemini", "gemini-2.0-flash", "price map"),
        ("qwen-plus", "qwen", "qwen-plus", "price map"),
        ("grok-3", "xai", "grok-3", "price map"),
        ("gpt-9-preview", "openai", "gpt-9-preview", "model family"),
        ("claude-opus-9", "anthropic", "claude-opus-9", "model family"),
    ],
)
def test_models_resolve_in_the_documented_order(tmp_path, model, provider, sent_as, source):
    resolver = resolver_for(tmp_path)
    found = resolver.resolve(model)
    assert found is not None and (found[0].name, found[1]) == (provider, sent_as)
    assert resolver.source(model) == source


def test_config_beats_the_price_map_and_unknown_names_resolve_to_nothing(tmp_path):
    resolver = resolver_for(tmp_path, "  mirror: {base_url: 'http://m:1/v1', models: [gpt-4o]}\n")
    assert resolver.resolve("gpt-4o")[0].name == "mirror"
    assert resolver.resolve("made-up-model") is None
    assert resolver.source("made-up-model") is None


def test_the_catalog_comes_before_prefixes_and_the_price_map(tmp_path):
    settings = load_settings(write(tmp_path))
    registry = ProviderRegistry.from_config(settings.providers)
    db = tmp_path / "log.db"
    openrouter = registry.providers["openrouter"]
    store_models(db, openrouter, [ListedModel("anthropic/claude-x")], PriceBook())
    resolver = ModelResolver(registry, PriceBook(), Catalog(db))
    provider, sent_as = resolver.resolve("anthropic/claude-x")
    assert (provider.name, sent_as) == ("openrouter", "anthropic/claude-x")
    assert resolver.source("anthropic/claude-x") == "catalog"


def test_anthropic_and_gemini_are_reached_through_their_openai_apis(tmp_path):
    registry = ProviderRegistry.from_config(load_settings(write(tmp_path)).providers)
    anthropic = registry.providers["anthropic"].openai_compatible
    gemini = registry.providers["gemini"].openai_compatible
    assert (anthropic.base_url, anthropic.auth_header) == (
        "http://127.0.0.1:9/anthropic/v1",
        "authorization",
    )
    assert gemini.base_url == "https://generativelanguage.googleapis.com/v1beta/openai"
    assert gemini.auth_query is None and gemini.auth_prefix == "Bearer "


def test_a_client_key_never_follows_routing_to_another_provider(routing):
    # Routed to deepseek (SIMPLE), for which FlowGate holds no key: the client's key,
    # meant for whoever serves gpt-4o, must not go there.
    flow = gateway_flow(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        authorization="Bearer sk-client-openai",
    )
    routing.request(flow)
    assert flow.response.status_code == 503
    error = json.loads(flow.response.content)["error"]
    assert error["code"] == "no_provider_key"
    assert "deepseek" in error["message"] and "sk-client-openai" not in error["message"]
    assert "sk-client-openai" not in str(flow.request.headers)


def test_a_client_key_still_reaches_the_provider_it_asked_for(tmp_path):
    path = write(
        tmp_path, tiers="{SIMPLE: gpt-4o-mini, MEDIUM: gpt-4o, COMPLEX: o1, REASONING: o1}"
    )
    with running_addon(path) as gate:
        flow = gateway_flow(
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            authorization="Bearer sk-client-openai",
        )
        gate.request(flow)
        assert flow.response is None
        assert flow.request.headers["authorization"] == "Bearer sk-client-openai"
        assert json.loads(flow.request.content)["model"] == "gpt-4o-mini"


def test_routed_to_a_provider_with_a_key(routing):
    prompt = (
        "Review this code, then design a fix and return JSON with exactly three keys:\n"
        "```python\ndef f(x):\n    return x\n```\n"
        "Explain the trade-offs for the distributed system's latency and consistency."
    )
    flow = gateway_flow({"model": "auto", "messages": [{"role": "user", "content": prompt}]})
    routing.request(flow)
    record = flow.metadata[METADATA_KEY]
    assert record.decision.tier == "COMPLEX", record.decision
    assert flow.request.path == "/anthropic/v1/chat/completions"
    assert flow.request.headers["authorization"] == "Bearer sk-ant-fg"
    assert json.loads(flow.request.content)["model"] == "claude-sonnet-4-5"
    assert record.baseline_model == "claude-sonnet-4-5"


def test_routing_only_judges_conversations(routing):
    embed = gateway_flow({"model": "gpt-4o", "input": "x"}, path="/v1/embeddings")
    routing.request(embed)
    assert flow_model(embed) == "gpt-4o" and embed.metadata[METADATA_KEY].decision is None
    auto = gateway_flow({"model": "auto", "input": "x"}, path="/v1/embeddings")
    routing.request(auto)
    assert auto.response.status_code == 400
    assert json.loads(auto.response.content)["error"]["code"] == "model_not_routable"


def flow_model(flow) -> str:
    return json.loads(flow.request.content)["model"]


def test_route_header_is_one_ascii_line():
    from flowgate_addon.routing import Decision

    decision = Decision("MEDIUM", 0.25, "complexity", {"length": 0.1, "code": 0.5}, "slow → x")
    header = route_header(decision, "gpt-4o", "openai")
    assert header == (
        "tier=MEDIUM; score=0.250; strategy=complexity; model=gpt-4o; provider=openai; "
        "dims=length:0.10,code:0.50; fallback=slow ? x"
    )


def test_saved_usd_is_logged_against_the_baseline(tmp_path):
    path = write(tmp_path, "  deepseek: {base_url: 'http://127.0.0.1:9/ds/v1', api_key: sk-ds}\n")
    with running_addon(path) as routing:
        flow = gateway_flow({"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
        routing.request(flow)
        respond(routing, flow)
    with sqlite3.connect(tmp_path / "log.db") as conn:
        cost, saved, route = conn.execute(
            "SELECT cost_usd, saved_usd, route FROM requests"
        ).fetchone()
    prices = PriceBook()
    assert cost == pytest.approx(prices.cost("deepseek-chat", 1000, 500, 0, "deepseek"))
    assert saved == pytest.approx(prices.cost("claude-sonnet-4-5", 1000, 500, 0) - cost)
    assert len(json.loads(route)["dimensions"]) == 7


def respond(routing: FlowGate, flow) -> None:
    """Answer a routed flow as its provider would, and let the addon log it."""
    assert flow.metadata[METADATA_KEY].decision.tier == "SIMPLE"
    flow.response = tutils.tresp(
        content=json.dumps(
            {"choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 500}}
        ).encode()
    )
    routing.responseheaders(flow)
    assert flow.response.headers["x-flowgate-route"].startswith("tier=SIMPLE; ")
    routing.response(flow)
    routing.done()
