"""The classifier strategy through a running FlowGate: a real RouteLLM `mf` router from a
checkpoint the tests write, embeddings from a local endpoint, and every fallback path."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from conftest import RunningFlowGate, start_flowgate, write_config
from fake_embeddings import FakeEmbeddings
from fake_provider import FakeProvider
from routellm_checkpoint import write_mf_checkpoint
from test_routing_e2e import TIERS, routing_config

EMBEDDINGS_KEY = "sk-embeddings-flowgate"
SHORT = "hi"
LONG = (
    "Prove, step by step and formally, that there are infinitely many primes, and derive "
    "every lemma you use along the way."
)


@pytest.fixture(scope="module")
def embeddings() -> Iterator[FakeEmbeddings]:
    fake = FakeEmbeddings().start()
    yield fake
    fake.stop()


def classifier_config(fake: FakeProvider, embeddings: FakeEmbeddings, checkpoint: Path) -> dict:
    config = routing_config(fake, strategy="classifier")
    config["providers"]["embedder"] = {"base_url": embeddings.base_url, "api_key": EMBEDDINGS_KEY}
    config["smart_router"]["classifier"] = {
        "router": "mf",
        "checkpoint": str(checkpoint),
        "thresholds": {"MEDIUM": 0.3, "COMPLEX": 0.55, "REASONING": 0.8},
        "timeout_ms": 500,
        "embeddings_provider": "embedder",
        "embedding_model": "tiny-embed",
    }
    return config


@pytest.fixture(scope="module")
def classified(
    fake_provider: FakeProvider, embeddings: FakeEmbeddings, tmp_path_factory
) -> Iterator[RunningFlowGate]:
    directory = tmp_path_factory.mktemp("classifier")
    checkpoint = write_mf_checkpoint(directory / "mf")
    config = write_config(
        directory, fake_provider, classifier_config(fake_provider, embeddings, checkpoint)
    )
    running = start_flowgate(directory, config)
    yield running
    running.stop_cleanly()


def ask(running: RunningFlowGate, prompt: str, session: str) -> dict[str, str]:
    """One routed call; the fields of its x-flowgate-route header."""
    client = openai.OpenAI(base_url=running.base_url, api_key="sk-client", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": prompt}],
        extra_headers={"x-flowgate-session": session},
    )
    assert raw.status_code == 200
    return dict(part.split("=", 1) for part in raw.headers["x-flowgate-route"].split("; "))


def wait_for_classifier(running: RunningFlowGate) -> None:
    """RouteLLM loads in the background; until then the scorer decides (and says so)."""
    deadline = time.monotonic() + 120
    while ask(running, SHORT, "warm-up")["strategy"] != "classifier":
        assert time.monotonic() < deadline, running.output()
        time.sleep(0.2)


def test_the_mf_router_picks_the_tier(
    classified: RunningFlowGate, embeddings: FakeEmbeddings, fake_provider: FakeProvider
) -> None:
    wait_for_classifier(classified)
    loading = classified.rows("session = 'warm-up' AND strategy = 'complexity'")
    assert all(row["route_fallback"] == "classifier is still loading" for row in loading)

    short = ask(classified, SHORT, "mf-short")
    long = ask(classified, LONG, "mf-long")
    assert (short["tier"], short["model"], short["strategy"]) == (
        "SIMPLE",
        TIERS["SIMPLE"],
        "classifier",
    )
    assert (long["tier"], long["model"], long["provider"]) == (
        "REASONING",
        TIERS["REASONING"],
        "openai",
    )
    assert fake_provider.last("/v1/chat/completions").body["model"] == TIERS["REASONING"]

    asked = embeddings.received[-1]
    assert asked.headers["authorization"] == f"Bearer {EMBEDDINGS_KEY}"
    assert asked.body["model"] == "tiny-embed" and asked.body["input"] == [LONG]

    [row] = classified.wait_rows("session = 'mf-long'")
    assert (row["strategy"], row["tier"], row["route_fallback"]) == (
        "classifier",
        "REASONING",
        None,
    )
    win_rate = json.loads(row["route"])["dimensions"]["strong_win_rate"]
    assert row["score"] == pytest.approx(win_rate, abs=1e-3) and win_rate >= 0.8


@pytest.mark.parametrize(
    ("fault", "value", "fallback"),
    [
        ("status", 500, "classifier raised InternalServerError"),  # the router raises
        ("delay", 3, "classifier took longer than 500 ms"),  # past the time budget
    ],
)
def test_a_failing_or_slow_router_falls_back_to_the_scorer(
    classified: RunningFlowGate, embeddings: FakeEmbeddings, fault: str, value: int, fallback: str
) -> None:
    wait_for_classifier(classified)
    healthy = getattr(embeddings, fault)
    setattr(embeddings, fault, value)
    try:
        route = ask(classified, SHORT, f"mf-{fault}")
    finally:
        setattr(embeddings, fault, healthy)
    assert route["strategy"] == "complexity" and route["fallback"].startswith(fallback)
    [row] = classified.wait_rows("session = ?", (f"mf-{fault}",))
    assert (row["status"], row["strategy"], row["tier"]) == (200, "complexity", "SIMPLE")
    assert row["route_fallback"].startswith(fallback)
    assert EMBEDDINGS_KEY not in row["route_fallback"]


def test_without_the_extra_every_request_is_routed_by_the_scorer(
    fake_provider: FakeProvider, embeddings: FakeEmbeddings, tmp_path: Path
) -> None:
    # A routellm that cannot be imported, first on the path: as if the extra were missing.
    shadow = tmp_path / "shadow" / "routellm"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\")\n")
    checkpoint = write_mf_checkpoint(tmp_path / "mf")
    config = write_config(
        tmp_path, fake_provider, classifier_config(fake_provider, embeddings, checkpoint)
    )
    running = start_flowgate(tmp_path, config, env={"PYTHONPATH": str(shadow.parent)})
    try:
        deadline = time.monotonic() + 30
        while (route := ask(running, LONG, "no-extra"))[
            "fallback"
        ] == "classifier is still loading":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert route["strategy"] == "complexity" and route["tier"] == "REASONING"
        assert route["fallback"].startswith("RouteLLM cannot be imported")
        hint = "pip install -e '.[classifier]' in FlowGate's folder"
        assert route["fallback"].endswith(f", {hint}")
        rows = running.wait_rows("session = 'no-extra'")
        assert all(row["status"] == 200 for row in rows)
        assert rows[-1]["route_fallback"].endswith(f"; {hint}")
    finally:
        running.stop_cleanly()
