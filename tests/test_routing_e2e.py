"""Smart routing through a running FlowGate: tiers, providers, credentials, savings, catalog."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from conftest import FLOWGATE, RunningFlowGate, start_flowgate, write_config
from fake_provider import FakeProvider

from flowgate_addon.pricing import PriceBook

TIERS = {
    "SIMPLE": "deepseek-chat",
    "MEDIUM": "gemini-2.0-flash",
    "COMPLEX": "claude-sonnet-4-5",
    "REASONING": "o1",
}
KEYS = {
    "openai": "sk-openai-flowgate",
    "anthropic": "sk-ant-flowgate",
    "gemini": "gemini-flowgate",
    "deepseek": "sk-deepseek-flowgate",
}
# Where each tier's request must arrive on the fake provider, and with which credential.
EXPECTED = {
    "SIMPLE": ("deepseek", "/deepseek/v1/chat/completions"),
    "MEDIUM": ("gemini", "/gemini/v1beta/openai/chat/completions"),
    "COMPLEX": ("anthropic", "/anthropic/v1/chat/completions"),
    "REASONING": ("openai", "/v1/chat/completions"),
}
PROMPTS = {
    "SIMPLE": "What is the capital of France?",
    "MEDIUM": "Write a Python function that reverses a singly linked list.",
    "COMPLEX": (
        "Our Kubernetes service leaks memory under load. First, review this handler:\n"
        "```python\nasync def handle(req):\n    cache[req.id] = await db.fetch(req.id)\n"
        "    return json.dumps(cache[req.id])\n```\n"
        "Then design a fix that keeps p99 latency under 50 ms, explain the trade-offs of "
        "an LRU cache versus a TTL cache for this distributed system, and finally return "
        "the answer as JSON with exactly three keys: diagnosis, fix, risks."
    ),
    "REASONING": (
        "Prove, step by step and formally, that there are infinitely many primes. "
        "Derive every lemma you use and justify each inference."
    ),
}


def routing_config(fake: FakeProvider, strategy: str = "complexity") -> dict:
    return {
        "providers": {
            "openai": {
                "base_url": f"{fake.base_url}/v1",
                "api_key": KEYS["openai"],
                "models": ["fail-400", "fail-500", "no-usage", "echo"],
            },
            "anthropic": {
                "base_url": f"{fake.base_url}/anthropic/v1",
                "api_key": KEYS["anthropic"],
            },
            "gemini": {"base_url": f"{fake.base_url}/gemini/v1beta", "api_key": KEYS["gemini"]},
            "deepseek": {"base_url": f"{fake.base_url}/deepseek/v1", "api_key": KEYS["deepseek"]},
        },
        "smart_router": {
            "enabled": True,
            "strategy": strategy,
            "tiers": dict(TIERS),
            "route_models": ["gpt-4o"],
        },
    }


@pytest.fixture(scope="module")
def routed(fake_provider: FakeProvider, tmp_path_factory) -> Iterator[RunningFlowGate]:
    directory = tmp_path_factory.mktemp("routing")
    config = write_config(directory, fake_provider, routing_config(fake_provider))
    running = start_flowgate(directory, config)
    yield running
    running.stop_cleanly()


@pytest.fixture
def client(routed: RunningFlowGate) -> openai.OpenAI:
    return openai.OpenAI(base_url=routed.base_url, api_key="sk-client-own-key", max_retries=0)


def flowgate_cli(routed: RunningFlowGate, *args: str) -> subprocess.CompletedProcess[str]:
    """A `flowgate` command with the running FlowGate's config and environment."""
    return subprocess.run(
        [FLOWGATE, *args, "--config", str(routed.config_path)],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "FLOWGATE_HOME": str(routed.config_path.parent / "home"),
            "FAKE_LOCAL_KEY": "sk-local-secret",
        },
        timeout=60,
    )


def route_fields(header: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in header.split("; "))


@pytest.mark.parametrize("tier", list(TIERS))
def test_each_tier_reaches_its_model_provider_and_credential(
    tier: str, client: openai.OpenAI, routed: RunningFlowGate, fake_provider: FakeProvider
) -> None:
    session = f"tier-{tier}"
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": PROMPTS[tier]}],
        extra_headers={"x-flowgate-session": session},
    )
    completion = raw.parse()
    provider, path = EXPECTED[tier]
    assert completion.model == TIERS[tier]
    route = route_fields(raw.headers["x-flowgate-route"])
    assert route["tier"] == tier
    assert (route["model"], route["provider"], route["strategy"]) == (
        TIERS[tier],
        provider,
        "complexity",
    )
    assert len(route["dims"].split(",")) == 7

    upstream = fake_provider.last(path)
    assert upstream.path == path
    assert upstream.body["model"] == TIERS[tier]
    assert upstream.headers["authorization"] == f"Bearer {KEYS[provider]}"
    assert "sk-client-own-key" not in json.dumps(upstream.headers)

    [row] = routed.wait_rows("session = ?", (session,))
    assert row["requested_model"] == "auto"
    assert (row["routed_model"], row["provider"], row["tier"]) == (TIERS[tier], provider, tier)
    assert row["strategy"] == "complexity" and row["route_fallback"] is None
    assert row["score"] == pytest.approx(float(route["score"]), abs=1e-3)
    dims = json.loads(row["route"])["dimensions"]
    assert set(dims) == {
        "length", "code", "reasoning", "steps", "constraints", "domain", "context"
    }  # fmt: skip
    # Savings: what the baseline (the COMPLEX tier's model, for `auto`) would have cost.
    prices = PriceBook()
    cost = prices.cost(
        TIERS[tier],
        row["prompt_tokens"],
        row["completion_tokens"],
        row["cached_tokens"],
        {"deepseek": "deepseek", "gemini": "gemini", "anthropic": "anthropic"}.get(
            provider, "openai"
        ),
    )
    baseline = prices.cost(
        "claude-sonnet-4-5",
        row["prompt_tokens"],
        row["completion_tokens"],
        row["cached_tokens"],
        "anthropic",
    )
    assert row["cost_usd"] == pytest.approx(cost)
    assert row["saved_usd"] == pytest.approx(baseline - cost)
    if tier == "COMPLEX":
        assert row["saved_usd"] == 0
    if tier == "REASONING":
        assert row["saved_usd"] < 0  # o1 costs more than the baseline here: shown, not hidden


def test_a_routed_stream_carries_the_decision(
    client: openai.OpenAI, routed: RunningFlowGate, fake_provider: FakeProvider
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="auto",
        messages=[{"role": "user", "content": PROMPTS["SIMPLE"]}],
        stream=True,
        extra_headers={"x-flowgate-session": "routed-stream"},
    ) as response:
        assert route_fields(response.headers["x-flowgate-route"])["tier"] == "SIMPLE"
        text = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in response.parse()
            if chunk.choices  # the usage chunk FlowGate asked for is not passed on
        )
    assert text
    [row] = routed.wait_rows("session = 'routed-stream'")
    assert (row["provider"], row["stream"], row["usage_source"]) == ("deepseek", 1, "provider")
    assert row["saved_usd"] > 0


def test_a_listed_model_is_routed_and_savings_are_against_it(
    client: openai.OpenAI, routed: RunningFlowGate
) -> None:
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": PROMPTS["SIMPLE"]}],
        extra_headers={"x-flowgate-session": "route-listed"},
    )
    [row] = routed.wait_rows("session = 'route-listed'")
    assert (row["requested_model"], row["routed_model"]) == ("gpt-4o", "deepseek-chat")
    prices = PriceBook()
    tokens = (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"])
    expected = prices.cost("gpt-4o", *tokens, "openai") - prices.cost(
        "deepseek-chat", *tokens, "deepseek"
    )
    assert row["saved_usd"] == pytest.approx(expected) and row["saved_usd"] > 0


def test_opting_out_keeps_the_requested_model(
    client: openai.OpenAI, routed: RunningFlowGate, fake_provider: FakeProvider
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": PROMPTS["SIMPLE"]}],
        extra_headers={"x-flowgate-session": "opt-out", "x-flowgate-routing": "off"},
    )
    assert raw.parse().model == "gpt-4o"
    assert "x-flowgate-route" not in raw.headers
    upstream = fake_provider.last("/chat/completions")
    assert "x-flowgate-routing" not in upstream.headers
    [row] = routed.wait_rows("session = 'opt-out'")
    assert (row["routed_model"], row["provider"], row["strategy"]) == (
        "gpt-4o",
        "openai",
        "opt-out",
    )
    assert row["tier"] is None and row["saved_usd"] is None

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-flowgate-routing": "off"},
        )
    assert refused.value.code == "model_not_routable"
    assert "opted out" in refused.value.message


def test_an_unknown_model_is_a_clear_400(client: openai.OpenAI, routed: RunningFlowGate) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="nobody-serves-this",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-flowgate-session": "unknown-model"},
        )
    assert refused.value.code == "model_not_found"
    assert "nobody-serves-this" in refused.value.message
    assert "flowgate catalog sync" in refused.value.message
    [row] = routed.wait_rows("session = 'unknown-model'")
    assert row["status"] == 400 and "nobody-serves-this" in row["error"]


def test_auto_without_routing_is_refused(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.code == "routing_disabled"


def test_models_list_offers_the_alias(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"auto", "gpt-4o", "claude-sonnet-4-5", "deepseek-chat", "gemini-2.0-flash"} <= ids


def test_catalog_sync_teaches_the_running_proxy_new_models(
    routed: RunningFlowGate, client: openai.OpenAI, fake_provider: FakeProvider
) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="r2-preview", messages=[{"role": "user", "content": "hi"}]
        )
    synced = flowgate_cli(routed, "catalog", "sync")
    assert synced.returncode == 0, synced.stderr
    assert "deepseek     2 models" in synced.stdout
    assert "anthropic    3 models" in synced.stdout  # two pages, followed
    assert "gemini       2 models" in synced.stdout  # two pages, followed
    for provider, key in KEYS.items():
        listed = [
            r for r in fake_provider.received if r.method == "GET" and r.path.split("?")[0]
            == {"openai": "/v1", "anthropic": "/anthropic/v1", "gemini": "/gemini/v1beta",
                "deepseek": "/deepseek/v1"}[provider] + "/models"
        ]  # fmt: skip
        assert listed, provider
        header = {"anthropic": "x-api-key", "gemini": "x-goog-api-key"}.get(
            provider, "authorization"
        )
        prefix = "Bearer " if header == "authorization" else ""
        assert listed[-1].headers[header] == prefix + key
    # Providers without a key are skipped, and say why.
    assert "groq         skipped: no key" in synced.stderr

    completion = None
    for _ in range(40):  # the proxy looks at the catalog at most once a second
        try:
            completion = client.chat.completions.create(
                model="r2-preview",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"x-flowgate-session": "catalog-model"},
            )
            break
        except openai.BadRequestError:
            time.sleep(0.1)
    assert completion is not None and completion.model == "r2-preview"
    [row] = routed.wait_rows("session = 'catalog-model' AND status = 200")
    assert row["provider"] == "deepseek"
    assert fake_provider.last("/deepseek/v1/chat/completions").headers["authorization"] == (
        f"Bearer {KEYS['deepseek']}"
    )
    ids = {m.id: m.owned_by for m in client.models.list()}
    assert ids["r2-preview"] == "deepseek" and ids["claude-newest-model"] == "anthropic"

    listing = flowgate_cli(routed, "catalog", "list", "deepseek")
    assert "deepseek-chat" in listing.stdout and "$0.28" in listing.stdout


def test_catalog_sync_uses_the_vault_key(fake_provider: FakeProvider, tmp_path) -> None:
    groq = {"groq": {"base_url": f"{fake_provider.base_url}/groq/openai/v1"}}
    config = write_config(tmp_path, fake_provider, {"providers": groq})
    env = {
        **os.environ,
        "FLOWGATE_HOME": str(tmp_path / "home"),
        "FAKE_LOCAL_KEY": "x",
        "FLOWGATE_MASTER_PASSWORD": "correct horse battery staple",
        "GROQ_KEY": "gsk-from-the-vault",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [FLOWGATE, *args, "--config", str(config)]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

    assert cli("add-key", "groq", "--from-env", "GROQ_KEY").returncode == 0
    synced = cli("catalog", "sync", "groq")
    assert synced.returncode == 0, synced.stderr
    assert "groq         1 models" in synced.stdout
    assert fake_provider.last("/groq/openai/v1/models").headers["authorization"] == (
        "Bearer gsk-from-the-vault"
    )
    assert "gpt-4o-mini" in cli("catalog", "list", "groq").stdout
    env["FLOWGATE_MASTER_PASSWORD"] = "wrong password"
    refused = cli("catalog", "sync", "groq")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "gsk-from-the-vault" not in refused.stdout + refused.stderr


def test_flowgate_route_explains_without_sending(
    routed: RunningFlowGate, fake_provider: FakeProvider
) -> None:
    before = len(fake_provider.received)
    shown = flowgate_cli(routed, "route", PROMPTS["REASONING"])
    assert shown.returncode == 0, shown.stderr
    assert "tier:       REASONING" in shown.stdout
    assert "model:      o1  (provider openai)" in shown.stdout
    assert "why:" in shown.stdout and "lifts the score" in shown.stdout
    as_json = flowgate_cli(routed, "route", "--json", "hi")
    decision = json.loads(as_json.stdout)
    assert (decision["tier"], decision["model"], decision["provider"]) == (
        "SIMPLE",
        "deepseek-chat",
        "deepseek",
    )
    assert len(decision["dimensions"]) == 7
    assert len(fake_provider.received) == before  # nothing was sent


def test_a_tier_model_nobody_serves_stops_start(fake_provider: FakeProvider, tmp_path) -> None:
    config = routing_config(fake_provider)
    config["smart_router"]["tiers"]["SIMPLE"] = "no-such-model"
    path = write_config(tmp_path, fake_provider, config)
    result = subprocess.run(
        [FLOWGATE, "start", "--config", str(path), "--no-ui"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FAKE_LOCAL_KEY": "x"},
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "smart_router.tiers.SIMPLE" in output and "'no-such-model'" in output
    assert "Traceback" not in output


def test_the_alias_is_listed_by_id(routed: RunningFlowGate) -> None:
    response = httpx.get(f"{routed.base_url}/models/auto")
    assert response.json()["owned_by"] == "flowgate"
