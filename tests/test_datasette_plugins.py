"""FlowGate's Datasette plugins, in a real Datasette over a real log database."""

from __future__ import annotations

import asyncio

import pytest
from datasette.app import Datasette

from flowgate_addon.cli import plugins_dir
from flowgate_addon.store import open_db


@pytest.fixture
def ds(tmp_path):
    path = tmp_path / "flowgate.db"
    db = open_db(path)
    db["requests"].insert(
        {
            "ts": "2026-11-24T04:08:54.286Z",
            "endpoint": "chat.completions",
            "prompt_tokens": 12345,
            "completion_tokens": 7,
            "cost_usd": 0.000123456,
            "saved_usd": -2.5,
            "latency_ms": 1234.56,
            "ttft_ms": None,
            "prompt": "user: <b>hello</b>\n" + "lorem ipsum " * 500,
            "response": "assistant: short",
        }
    )
    db.conn.close()
    return Datasette([str(path)], plugins_dir=str(plugins_dir()))


def get(ds, path):
    return asyncio.run(ds.client.get(path))


def test_cells_are_shown_as_people_read_them(ds):
    html = get(ds, "/flowgate/requests").text
    assert '<span title="0.000123456">$0.000123</span>' in html
    assert '<span title="-2.5">-$2.50</span>' in html
    assert ">12,345</span>" in html
    assert ">1,234.6 ms</span>" in html


def test_exports_keep_raw_numbers(ds):
    [row] = get(ds, "/flowgate/requests.json?_shape=array").json()
    assert row["cost_usd"] == 0.000123456 and row["prompt_tokens"] == 12345


def test_plugin_is_loaded(ds):
    names = [p["name"] for p in get(ds, "/-/plugins.json").json()]
    assert "flowgate_cells.py" in names


def test_long_texts_are_collapsed_and_escaped(ds):
    html = get(ds, "/flowgate/requests").text
    assert '<details class="flowgate-text"><summary>user: &lt;b&gt;hello&lt;/b&gt; lorem' in html
    assert "(6,019 characters)" in html
    assert "<b>hello</b>" not in html  # markup in a prompt stays text
    assert '<td class="col-response type-str">assistant: short</td>' in html  # short: as is
    [row] = get(ds, "/flowgate/requests.json?_shape=array").json()
    assert len(row["prompt"]) == 6019  # exports keep the whole text
