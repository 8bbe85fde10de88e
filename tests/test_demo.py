"""`flowgate demo`: real traffic through a real FlowGate fills the log and the dashboards."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
from urllib.parse import urlencode

import yaml
from conftest import FLOWGATE
from datasette.app import Datasette

from flowgate_addon.cli import plugins_dir
from flowgate_addon.ui_metadata import metadata


def test_demo_fills_the_configured_log(tmp_path):
    config = tmp_path / "flowgate.yaml"
    config.write_text(yaml.safe_dump({"database": {"path": "demo.db"}}))
    done = subprocess.run(
        [FLOWGATE, "demo", "--config", str(config), "--requests", "60"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "FLOWGATE_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Logged 60 requests" in done.stdout
    db = tmp_path / "demo.db"
    conn = sqlite3.connect(db)
    count, providers, streams, routed, failed, measured = conn.execute(
        "SELECT count(*), count(DISTINCT provider), sum(stream), count(tier), "
        "sum(status >= 400), sum(usage_source = 'provider') FROM requests"
    ).fetchone()
    assert count == 60 and providers >= 3 and streams > 0 and routed > 0
    assert measured == count - failed  # every answered call has its usage
    tiers = {row[0] for row in conn.execute("SELECT DISTINCT tier FROM requests")}
    assert {"SIMPLE", "MEDIUM", "COMPLEX", "REASONING"} <= tiers
    # Sessions, agents and prompts sent again: the breakdowns have something to show.
    [(sessions, agents, repeated)] = conn.execute(
        "SELECT (SELECT count(*) FROM sessions), (SELECT count(DISTINCT agent) FROM "
        "callers_hourly WHERE agent != ''), (SELECT count(*) FROM prompts WHERE requests > 1)"
    )
    assert sessions == 10 and agents >= 2 and repeated >= 3
    conn.close()

    # The dashboards see it: the overview's request count for the last 24 hours.
    ds = Datasette([str(db)], plugins_dir=str(plugins_dir()), metadata=metadata(db))
    chart = ds.plugin_config("datasette-dashboards")["overview"]["charts"]["requests"]
    query = urlencode({"sql": chart["query"], "period": "24h", "_shape": "objects"})
    rows = asyncio.run(ds.client.get(f"/demo.json?{query}")).json()["rows"]
    assert rows == [{"value": "60"}]
