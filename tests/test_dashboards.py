"""The dashboards in a real Datasette: every chart's query gives the right figures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from datasette.app import Datasette

from flowgate_addon.cli import plugins_dir
from flowgate_addon.rollup import bucket, bucket_ms
from flowgate_addon.store import LogWriter
from flowgate_addon.ui_metadata import metadata

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def at(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# Two calls in the last day, one three days ago, one 20 days ago (outside 7d). The first
# and third send the same prompt (h1); the first two are one session.
ROWS = [
    {"ts": at(1), "provider": "openai", "routed_model": "gpt-4o-mini", "status": 200,
     "prompt_tokens": 100, "completion_tokens": 10, "cost_usd": 0.25, "saved_usd": 1.0,
     "latency_ms": 100.0, "ttft_ms": 40.0, "tier": "SIMPLE",
     "session": "s-a", "agent": "coder", "prompt_hash": "h1", "prompt": "user: Fix it"},
    {"ts": at(2), "provider": "anthropic", "routed_model": "claude-sonnet-4-5", "status": 500,
     "error": "overloaded", "prompt_tokens": 200, "completion_tokens": 0, "cost_usd": 0.0,
     "latency_ms": 1000.0, "ttft_ms": None, "tier": None,
     "session": "s-a", "agent": "coder", "prompt_hash": "h2"},
    {"ts": at(72), "provider": "openai", "routed_model": "gpt-4o", "status": 200,
     "requested_model": "gpt-4o-mini", "prompt_tokens": 300, "completion_tokens": 30,
     "cost_usd": 1.5, "saved_usd": -0.5, "latency_ms": 400.0, "ttft_ms": 90.0,
     "tier": "COMPLEX", "caller": "ci",
     "session": "s-b", "agent": "triage", "prompt_hash": "h1", "prompt": "user: Fix it!"},
    {"ts": at(480), "provider": "openai", "routed_model": "gpt-4o", "status": 200,
     "prompt_tokens": 5000, "completion_tokens": 500, "cost_usd": 9.0,
     "latency_ms": 50.0, "ttft_ms": 20.0, "prompt_hash": "h3"},
]  # fmt: skip


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    path = tmp_path_factory.mktemp("dash") / "logs.db"  # any file name: {db} follows it
    writer = LogWriter(path, lambda r: {"endpoint": "chat.completions", **r}, flush_interval=0.01)
    writer.start()
    for row in ROWS:
        writer.submit(row)
    writer.stop()
    return Datasette([str(path)], plugins_dir=str(plugins_dir()), metadata=metadata(path))


def get(ds, path: str):
    return asyncio.run(ds.client.get(path))


def chart_rows(ds, chart: str, dashboard: str = "overview", **filters: str) -> list[dict]:
    config = ds.plugin_config("datasette-dashboards")[dashboard]["charts"][chart]
    params = {"sql": config["query"], "_shape": "objects", **filters}
    response = get(ds, f"/{config['db']}.json?{urlencode(params)}")
    assert response.status_code == 200, response.text
    return response.json()["rows"]


def metric(ds, chart: str, **filters: str):
    [row] = chart_rows(ds, chart, **filters)
    return row["value"]


@pytest.mark.parametrize(
    ("slug", "title"), [("overview", "FlowGate overview"), ("breakdowns", "Where the tokens")]
)
def test_the_dashboard_pages_load(ds, slug, title):
    response = get(ds, f"/-/dashboards/{slug}?period=7d")
    assert response.status_code == 200
    assert title in response.text
    assert "vega-lite.min.js" in response.text  # served by the plugin, not a CDN


@pytest.mark.parametrize(
    ("period", "requests", "tokens_in", "tokens_out", "cost", "saved", "errors"),
    [
        ("24h", "2", "300", "10", "0.25", "1.00", "50.0"),
        ("7d", "3", "600", "40", "1.75", "0.50", "33.3"),
        ("30d", "4", "5,600", "540", "10.75", "0.50", "25.0"),
    ],
)
def test_overview_figures_per_period(
    ds, period, requests, tokens_in, tokens_out, cost, saved, errors
):
    assert metric(ds, "requests", period=period) == requests
    assert metric(ds, "prompt-tokens", period=period) == tokens_in
    assert metric(ds, "completion-tokens", period=period) == tokens_out
    assert metric(ds, "cost", period=period) == cost
    assert metric(ds, "saved", period=period) == saved
    assert metric(ds, "error-rate", period=period) == errors


def test_a_date_range_overrides_the_period(ds):
    day = (NOW - timedelta(hours=72)).strftime("%Y-%m-%d")
    assert metric(ds, "requests", period="24h", date_start=day, date_end=day) == "1"
    assert metric(ds, "cost", period="24h", date_start=day, date_end=day) == "1.50"


def test_percentiles_come_from_the_histogram(ds):
    # 7 days: latencies 100, 1000, 400 -> p50 is 400's bucket, p95 1000's.
    assert metric(ds, "latency-p50", period="7d") == round(bucket_ms(bucket(400.0)))
    assert metric(ds, "latency-p95", period="7d") == round(bucket_ms(bucket(1000.0)))
    assert metric(ds, "ttft-p50", period="24h") == round(bucket_ms(bucket(40.0)))
    assert metric(ds, "ttft-p95", period="7d") == round(bucket_ms(bucket(90.0)))
    assert metric(ds, "latency-p50", period="24h", date_start="2000-01-01",
                  date_end="2000-01-02") == "-"  # fmt: skip


def test_timelines(ds):
    by_model = chart_rows(ds, "cost-by-model", period="30d")
    assert {(r["model"], r["cost_usd"]) for r in by_model} >= {("gpt-4o-mini", 0.25)}
    assert sum(r["cost_usd"] for r in by_model) == pytest.approx(10.75)
    tokens = chart_rows(ds, "tokens-by-provider", period="7d")
    assert sum(r["tokens"] for r in tokens if r["provider"] == "openai") == 440
    tiers = chart_rows(ds, "tiers-over-time", period="7d")
    assert {r["tier"] for r in tiers} == {"SIMPLE", "COMPLEX", "not routed"}


def breakdown(ds, chart: str, period: str = "7d") -> list[dict]:
    return chart_rows(ds, chart, "breakdowns", period=period)


def test_breakdowns_by_provider_model_caller_and_tier(ds):
    assert breakdown(ds, "by-provider") == [
        {"provider": "openai", "requests": "2", "tokens": "440", "spend": "$1.75",
         "errors": "0.0 %", "avg_latency": "250 ms"},
        {"provider": "anthropic", "requests": "1", "tokens": "200", "spend": "$0.00",
         "errors": "100.0 %", "avg_latency": "1000 ms"},
    ]  # fmt: skip
    models = {r["model"]: r["spend"] for r in breakdown(ds, "by-model", "30d")}
    assert models == {"gpt-4o": "$10.50", "gpt-4o-mini": "$0.25", "claude-sonnet-4-5": "$0.00"}
    callers = {r["caller"]: r["requests"] for r in breakdown(ds, "by-caller")}
    assert callers == {"ci": "1", "(no token)": "2"}
    tiers = {r["tier"]: (r["requests"], r["saved"]) for r in breakdown(ds, "by-tier")}
    assert tiers == {
        "SIMPLE": ("1", "$1.00"),
        "COMPLEX": ("1", "$-0.50"),
        "(not routed)": ("1", "$0.00"),
    }


def test_the_top_lists(ds):
    assert [r["cost"] for r in breakdown(ds, "most-expensive", "30d")] == [
        "$9.0000", "$1.5000", "$0.2500", "$0.0000"
    ]  # fmt: skip
    assert [r["prompt_tokens"] for r in breakdown(ds, "largest-prompts")] == [300, 200, 100]
    assert [r["latency"] for r in breakdown(ds, "slowest", "24h")] == ["1000 ms", "100 ms"]
    [failing] = breakdown(ds, "failing", "30d")
    assert (failing["status"], failing["error"]) == (500, "overloaded")
    [over] = breakdown(ds, "over-routed")
    assert (over["requested_model"], over["routed_model"], over["extra_cost"]) == (
        "gpt-4o-mini", "gpt-4o", "$0.5000"
    )  # fmt: skip


def test_breakdowns_by_agent_and_session(ds):
    assert breakdown(ds, "by-agent") == [
        {"agent": "triage", "requests": "1", "tokens": "330", "spend": "$1.50"},
        {"agent": "coder", "requests": "2", "tokens": "310", "spend": "$0.25"},
    ]
    assert breakdown(ds, "by-agent", "30d")[0] == {
        "agent": "(no agent)", "requests": "1", "tokens": "5,500", "spend": "$9.00"
    }  # fmt: skip
    sessions = breakdown(ds, "sessions")
    assert [
        (r["session"], r["agent"], r["requests"], r["tokens"], r["spend"]) for r in sessions
    ] == [
        ("s-b", "triage", "1", "330", "$1.5000"),
        ("s-a", "coder", "2", "310", "$0.2500"),
    ]
    assert (sessions[1]["started"], sessions[1]["last_seen"]) == (at(2), at(1))
    assert [r["session"] for r in breakdown(ds, "sessions", "24h")] == ["s-a"]


def test_prompts_sent_again(ds):
    [repeated] = breakdown(ds, "repeated-prompts")
    assert repeated == {
        "prompt_hash": "h1", "times_sent": "2", "spent_on_repeats": "$1.5000",
        "last_model": "gpt-4o", "tokens_each": "200", "prompt": "user: Fix it!",
        "last_sent": at(1),
    }  # fmt: skip
    # A period the prompt was not sent in.
    day = (NOW - timedelta(hours=480)).strftime("%Y-%m-%d")
    assert chart_rows(ds, "repeated-prompts", "breakdowns", period="7d", date_start=day,
                      date_end=day) == []  # fmt: skip


def test_every_chart_is_checked_here():
    """A chart added to the dashboards without a test of its figures fails this."""
    import pathlib
    import re

    source = pathlib.Path(__file__).read_text()
    config = metadata(pathlib.Path("logs.db"))["plugins"]["datasette-dashboards"]
    charts = {name for dashboard in config.values() for name in dashboard["charts"]}
    checked = set(re.findall(r'(?:metric|chart_rows|breakdown)\(ds, "([a-z0-9-]+)"', source))
    assert charts - checked == set()
