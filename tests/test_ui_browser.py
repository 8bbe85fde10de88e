"""FlowGate's log browser in a real Chromium: a real `flowgate ui` over a log database."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import yaml
from browser import chart_rendered, screenshot, visit
from conftest import FLOWGATE, free_port

from flowgate_addon import health
from flowgate_addon.record import iso
from flowgate_addon.store import LogWriter

ROWS = [
    {
        "ts": "2026-11-24T04:08:54.286Z",
        "mode": "gateway",
        "method": "POST",
        "path": "/v1/chat/completions",
        "endpoint": "chat.completions",
        "requested_model": "gpt-4o-mini",
        "routed_model": "gpt-4o-mini",
        "provider": "openai",
        "status": 200,
        "stream": 0,
        "prompt_tokens": 12345,
        "completion_tokens": 678,
        "total_tokens": 13023,
        "usage_source": "provider",
        "cost_usd": 0.000123456,
        "latency_ms": 1234.56,
        "caller": "alice",
        "session": "checkout-7",
        "agent": "checkout-bot",
        "prompt_hash": "5eed5eed5eed5eed5eed",
        "prompt": "Summarise the quarterly report",
        "response": "Revenue grew.",
    },
    {
        "ts": "2026-11-24T04:09:10.000Z",
        "mode": "proxy",
        "method": "POST",
        "path": "/v1/messages",
        "endpoint": "messages",
        "host": "api.anthropic.com",
        "requested_model": "claude-sonnet-4",
        "routed_model": "claude-sonnet-4",
        "provider": "anthropic",
        "status": 200,
        "stream": 1,
        "prompt_tokens": 2000,
        "completion_tokens": 150,
        "cached_tokens": 1024,
        "total_tokens": 2150,
        "usage_source": "provider",
        "cost_usd": 2.5,
        "latency_ms": 800.0,
        "ttft_ms": 120.5,
        "caller": "bob",
    },
    {
        "ts": "2026-11-24T04:10:00.000Z",
        "mode": "gateway",
        "method": "POST",
        "path": "/v1/chat/completions",
        "endpoint": "chat.completions",
        "requested_model": "auto",
        "routed_model": "local-model",
        "provider": "local",
        "status": 500,
        # Text a client or upstream controls must never become markup in the UI.
        "error": 'upstream exploded <img src=x onerror="window.pwned = 1">',
        "tier": "simple",
        "strategy": "heuristic",
        "latency_ms": 15.0,
        "caller": "alice",
        "session": "checkout-7",
        "agent": "checkout-bot",
        "prompt_hash": "5eed5eed5eed5eed5eed",
    },
]


@dataclass
class RunningUI:
    process: subprocess.Popen[bytes]
    url: str
    db_path: Path
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[RunningUI]:
    """`flowgate ui` serving a log database with ROWS in it."""
    directory = tmp_path_factory.mktemp("ui")
    db_path = directory / "flowgate.db"
    writer = LogWriter(db_path, lambda row: row, flush_interval=0.01)  # rows and rollups
    writer.start()
    for minutes_ago, row in zip((50, 40, 30), ROWS, strict=True):
        writer.submit({**row, "ts": iso(time.time() - minutes_ago * 60)})
    writer.stop()
    port = free_port()
    config_path = directory / "flowgate.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "database": {"path": str(db_path)},
                "server": {"host": "127.0.0.1", "ui_port": port},
            }
        )
    )
    log_path = directory / "ui.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [FLOWGATE, "ui", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "FLOWGATE_HOME": str(directory / "home")},
            cwd=directory,
        )
    running = RunningUI(process, f"http://127.0.0.1:{port}", db_path, log_path)
    try:
        _wait_until_up(running)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(ui: RunningUI, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ui.process.poll() is not None:
            raise AssertionError(f"flowgate ui exited early:\n{ui.output()}")
        try:
            if httpx.get(f"{ui.url}/-/versions.json", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"flowgate ui did not answer on {ui.url}:\n{ui.output()}")


def test_index_page_lists_the_log_database(browser, ui):
    with visit(browser, f"{ui.url}/") as (page, errors):
        # The log database, and its requests table among the tables it lists.
        page.locator('h2 a[href="/flowgate"]').wait_for()
        assert page.locator('a[href="/flowgate/requests"]').inner_text() == "requests"
        screenshot(page, "ui-index")
        assert errors == []


def test_requests_table_shows_the_rows(browser, ui):
    with visit(browser, f"{ui.url}/flowgate/requests") as (page, errors):
        rows = page.locator("table.rows-and-columns tbody tr")
        rows.first.wait_for()
        assert rows.count() == len(ROWS)
        assert page.locator("h3").first.inner_text().startswith("3 rows")

        text = page.locator("table.rows-and-columns").inner_text()
        for model in ("gpt-4o-mini", "claude-sonnet-4", "local-model"):
            assert model in text
        assert "upstream exploded" in text
        # FlowGate's cell plugin: dollars, thousands separators, milliseconds.
        for shown in ("$0.000123", "$2.50", "12,345", "1,234.6 ms"):
            assert shown in text, shown

        screenshot(page, "ui-requests-table")
        assert errors == []


def test_overview_dashboard_draws_its_charts(browser, ui):
    with visit(browser, f"{ui.url}/-/dashboards/overview?period=7d") as (page, errors):
        for chart in ("cost-by-model", "tokens-by-provider", "tiers-over-time"):
            assert chart_rendered(page, f"#chart-{chart}")
        page.locator("#chart-requests", has_text="3").wait_for()
        page.locator("#chart-prompt-tokens", has_text="14,345").wait_for()
        page.locator("#chart-cost", has_text="$2.50").wait_for()
        page.locator("#chart-error-rate", has_text="33.3 %").wait_for()
        screenshot(page, "ui-dashboard-overview")
        assert errors == []


def test_breakdowns_dashboard_lists_where_the_money_goes(browser, ui):
    with visit(browser, f"{ui.url}/-/dashboards/breakdowns?period=7d") as (page, errors):
        page.locator("#chart-by-provider td", has_text="anthropic").wait_for()
        page.locator("#chart-most-expensive td", has_text="$2.5000").wait_for()
        page.locator("#chart-failing td", has_text="upstream exploded").wait_for()
        page.locator("#chart-over-routed", has_text="Nothing in this period.").wait_for()
        cell = page.locator("#chart-failing td", has_text="upstream exploded").inner_text()
        assert '<img src=x onerror="window.pwned = 1">' in cell  # shown as text
        assert page.evaluate("window.pwned") is None  # and never run
        page.locator("#chart-by-agent td", has_text="checkout-bot").wait_for()
        page.locator("#chart-repeated-prompts td", has_text="5eed5eed5eed5eed5eed").wait_for()
        screenshot(page, "ui-dashboard-breakdowns")

        # A session leads to the log filtered to it; a request id to that request's page.
        page.locator("#chart-sessions a", has_text="checkout-7").click()
        page.wait_for_url("**/flowgate/requests?session=checkout-7")
        page.locator("table.rows-and-columns tbody tr").first.wait_for()
        assert page.locator("table.rows-and-columns tbody tr").count() == 2
        page.go_back()
        page.locator("#chart-most-expensive").get_by_role("link", name="2", exact=True).click()
        page.wait_for_url("**/-/flowgate/request/2")
        page.get_by_text("claude-sonnet-4").first.wait_for()
        assert errors == []


@pytest.mark.parametrize(
    ("path", "shows", "name"),
    [
        ("/-/flowgate/request/1", "Summarise the quarterly report", "ui-request-page"),
        ("/-/flowgate/router", "Recent decisions", "ui-router-page"),
        ("/-/flowgate/connect", "HTTPS_PROXY", "ui-connect-page"),
        # Nothing synced in this log: the providers' price-map models, with how to sync.
        ("/-/flowgate/models", "flowgate catalog sync openai", "ui-model-catalog"),
    ],
)
def test_flowgate_pages_render_cleanly(browser, ui, path, shows, name):
    with visit(browser, f"{ui.url}{path}") as (page, errors):
        page.get_by_text(shows).first.wait_for()
        screenshot(page, name)
        assert errors == []


def test_log_loss_shows_a_banner_on_every_page(browser, ui):
    """A FlowGate that lost rows (its status file, as the writer leaves it) is announced
    on every page, and the banner leads to the log-health page."""
    report = health.StatusFile(ui.db_path)
    report.path = report.directory / "elsewhere-4242.json"  # another host's writer
    report.write(
        health.WriterStatus(
            str(ui.db_path), pid=4242, host="elsewhere", running=False, written=90, dropped=7
        )
    )
    try:
        for path in ("/flowgate/requests", "/-/dashboards/overview"):
            with visit(browser, f"{ui.url}{path}") as (page, errors):
                banner = page.locator(".fg-health-banner")
                banner.wait_for()
                assert banner.inner_text() == (
                    "Log health: FlowGate 7 log rows lost (7 pushed out of a full backlog)"
                )
                if path.startswith("/-/dashboards"):
                    banner.get_by_role("link").click()
                    page.wait_for_url("**/-/flowgate/health")
                    row = page.locator("table.fg-health tr.fg-health-error")
                    assert "elsewhere pid 4242" in row.inner_text()
                    assert "stopped" in row.inner_text()
                    screenshot(page, "ui-log-health")
                assert errors == []
    finally:
        report.remove()
    with visit(browser, f"{ui.url}/-/dashboards/overview") as (page, errors):
        page.locator("#chart-requests", has_text="3").wait_for()
        assert page.locator(".fg-health-banner").count() == 0
        assert errors == []


def test_helpers_see_page_errors_and_charts(browser):
    """The helpers themselves: what open_page reports, and what chart_rendered accepts."""
    html = """<!doctype html><title>t</title>
    <div id="svg-chart"><svg width="100" height="50"><rect width="40" height="20"/></svg></div>
    <div id="canvas-chart"><canvas width="60" height="30"></canvas></div>
    <div id="empty-chart"><svg width="100" height="50"></svg></div>
    <img src="http://example.com/outside.png">
    <script>
      const c = document.querySelector("canvas").getContext("2d");
      c.fillRect(0, 0, 10, 10);
      console.error("broken on purpose");
    </script>"""
    with visit(browser, "data:text/html," + quote(html)) as (page, errors):
        assert chart_rendered(page, "#svg-chart")
        assert chart_rendered(page, "#canvas-chart")
        with pytest.raises(AssertionError, match="no chart rendered in '#empty-chart'"):
            chart_rendered(page, "#empty-chart", timeout_ms=300)
        with page.expect_event("pageerror"):
            page.evaluate("setTimeout(() => { throw new Error('uncaught on purpose'); })")
        assert any("broken on purpose" in e for e in errors), errors
        assert any("uncaught on purpose" in e for e in errors), errors
        # Nothing outside this machine is reachable from a page: it fails, and is reported.
        assert any("request failed" in e and "example.com" in e for e in errors), errors
