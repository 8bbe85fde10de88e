"""Nothing secret is reachable from the UI: not the vault, not token hashes, not even by SQL."""

from __future__ import annotations

import asyncio
import hashlib
from urllib.parse import urlencode

import pytest
from datasette.app import Datasette

from flowgate_addon.cli import plugins_dir
from flowgate_addon.security.tokens import TokenStore
from flowgate_addon.security.vault import Vault
from flowgate_addon.store import LogWriter
from flowgate_addon.ui_metadata import SETTINGS, metadata


@pytest.fixture
def setup(tmp_path):
    """A data folder as FlowGate leaves it: log, vault with a key, token store with a token."""
    log = tmp_path / "flowgate.db"
    writer = LogWriter(log, lambda r: r, flush_interval=0.01)
    writer.start()
    writer.submit({"ts": "2026-11-24T00:00:00.000Z", "endpoint": "chat.completions"})
    writer.stop()
    vault = Vault(tmp_path / "vault.json")
    vault.init("master password")
    vault.add("openai", "sk-live-secret-key-123456")
    tokens = TokenStore(tmp_path / "tokens.db")
    token = tokens.create("ci")
    tokens.close()
    ds = Datasette(
        [str(log)], plugins_dir=str(plugins_dir()), metadata=metadata(log), settings=SETTINGS
    )
    return ds, tmp_path, token


def sql(ds, query: str):
    return asyncio.run(ds.client.get("/flowgate.json?" + urlencode({"sql": query})))


def test_only_the_log_database_is_served(setup):
    ds, _, _ = setup
    names = [db["name"] for db in asyncio.run(ds.client.get("/-/databases.json")).json()]
    assert names == ["flowgate"]


@pytest.mark.parametrize(
    "statement",
    [
        "ATTACH DATABASE '{folder}/tokens.db' AS stolen",
        "select * from pragma_database_list",  # allowed, but shows only the log itself
        "select load_extension('x')",
        "select readfile('{folder}/vault.json')",
    ],
)
def test_the_sql_box_cannot_reach_other_files(setup, statement):
    ds, folder, _ = setup
    response = sql(ds, statement.format(folder=folder))
    if response.status_code == 200:
        rows = response.json()["rows"]
        assert all("tokens.db" not in str(row) and "vault" not in str(row) for row in rows)
    else:
        assert response.status_code == 400


def test_no_table_holds_a_secret(setup):
    ds, _, token = setup
    secrets = [token, hashlib.sha256(token.encode()).hexdigest(), "sk-live-secret-key-123456"]
    tables = [
        r[0] for r in sql(ds, "select name from sqlite_master where type='table'").json()["rows"]
    ]
    assert "requests" in tables and not any("token" in t or "vault" in t for t in tables)
    for table in tables:
        dump = sql(ds, f"select * from [{table}]").text
        assert not any(secret in dump for secret in secrets), table
