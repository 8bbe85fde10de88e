"""Starting and stopping FlowGate as users do: `flowgate start`, `mitmdump -s`, bad configs."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import openai
from conftest import FLOWGATE, MITMDUMP, free_port, start_flowgate, write_config


def test_version():
    out = subprocess.run([FLOWGATE, "version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("FlowGate 0.1.0 (mitmproxy 11.")


def test_queue_is_flushed_on_sigterm(tmp_path, fake_provider):
    """With a flush interval longer than the test, rows can only come from the shutdown flush."""
    config = write_config(
        tmp_path,
        fake_provider,
        {
            "database": {"path": "flowgate.db", "flush_interval_ms": 60_000, "batch_size": 10_000},
        },
    )
    running = start_flowgate(tmp_path, config)
    client = openai.OpenAI(base_url=running.base_url, api_key="sk-x", max_retries=0)
    for i in range(25):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"n{i}"}]
        )
    assert running.rows("endpoint = 'chat.completions'") == []
    assert running.stop() == 0
    rows = running.rows("endpoint = 'chat.completions'")
    assert len(rows) == 25
    assert sorted(r["prompt"] for r in rows) == sorted(f"user: n{i}" for i in range(25))


def test_mitmdump_script_from_any_directory(tmp_path, fake_provider):
    """`mitmdump -s flowgate_addon/addon.py` with FLOWGATE_CONFIG, run from elsewhere."""
    import flowgate_addon

    script = Path(flowgate_addon.__file__).with_name("addon.py")
    config = write_config(tmp_path, fake_provider)
    import yaml

    port = yaml.safe_load(config.read_text())["server"]["port"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [
        MITMDUMP,
        "-s",
        str(script),
        "--mode",
        f"reverse:{fake_provider.base_url}@127.0.0.1:{port}",
        "--set",
        "connection_strategy=lazy",
        "--set",
        "flow_detail=0",
    ]
    running = start_flowgate(
        tmp_path, config, command=command, env={"FLOWGATE_CONFIG": str(config)}, cwd=elsewhere
    )
    try:
        client = openai.OpenAI(base_url=running.base_url, api_key="sk-x", max_retries=0)
        reply = client.chat.completions.create(
            model="local-model", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "Hello from local-model!"
        [row] = running.wait_rows("endpoint = 'chat.completions'")
        assert row["provider"] == "local" and row["prompt_tokens"] == 25
    finally:
        assert running.stop() == 0


def test_start_with_no_config_uses_the_data_folder(tmp_path, monkeypatch):
    home = tmp_path / "home"
    port, proxy_port = free_port(), free_port()
    process = subprocess.Popen(
        [FLOWGATE, "start", "--no-ui", "--port", str(port), "--proxy-port", str(proxy_port)],
        env={"PATH": "/usr/bin:/bin", "FLOWGATE_HOME": str(home), "HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert response.status_code == 200 and response.json()["data"]
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    db = home / "flowgate.db"
    assert db.exists()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT endpoint, status FROM requests").fetchall() == [("models", 200)]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def start_with(
    tmp_path: Path, text: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    return subprocess.run(
        [FLOWGATE, "start", "--config", str(config), "--no-ui"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "FLOWGATE_HOME": str(tmp_path), **(env or {})},
    )


def test_bad_config_stops_start_with_key_and_line(tmp_path):
    cases = [
        ("server:\n  port: 7798\n  prot: 1\n", "line 3: server.prot: unknown key"),
        ("server:\n  port: seventy\n", "line 2: server.port: Input should be a valid integer"),
        (
            "providers:\n  local:\n    base_url: ${NOT_SET_ANYWHERE}\n",
            "line 3: providers.local.base_url: environment variable NOT_SET_ANYWHERE is not set",
        ),
        ("server: {port: 1\n", "not valid YAML"),
        ("logging:\n  store_prompts: maybe\n", "line 2: logging.store_prompts"),
        ("providers:\n  mine:\n    models: [m]\n", "providers.mine.base_url: a custom provider"),
        ("security:\n  ip_allowlist: [10.0.0.300]\n", "security.ip_allowlist"),
        ("logging:\n  redact_patterns: ['(unclosed']\n", "line 2: logging.redact_patterns"),
        ("logging:\n  redact_patterns: ['x*']\n", "matches empty text"),
    ]
    for text, expected in cases:
        result = start_with(tmp_path, text)
        assert result.returncode != 0
        assert expected in result.stderr, (text, result.stderr)
        assert str(tmp_path / "bad.yaml") in result.stderr
        assert "Traceback" not in result.stderr + result.stdout


def test_missing_config_file_is_reported(tmp_path):
    result = subprocess.run(
        [FLOWGATE, "start", "--config", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "cannot read config file" in result.stderr
    assert "Traceback" not in result.stderr


def test_ui_serves_the_log_database(tmp_path, fake_provider):
    config = write_config(tmp_path, fake_provider)
    import yaml

    ui_port = yaml.safe_load(config.read_text())["server"]["ui_port"]
    running = start_flowgate(tmp_path, config, command=[FLOWGATE, "start", "--config", str(config)])
    try:
        httpx.post(
            f"{running.base_url}/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": "Bearer sk-client-key"},
        )
        running.wait_rows("endpoint = 'chat.completions'")
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{ui_port}/flowgate/requests.json?_shape=array", timeout=2
                )
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, running.output()
                time.sleep(0.2)
        assert response.status_code == 200
        assert any(r["endpoint"] == "chat.completions" for r in response.json())
        # Only the log database is served: never the vault or the token hashes.
        databases = httpx.get(f"http://127.0.0.1:{ui_port}/-/databases.json").json()
        assert [d["name"] for d in databases] == ["flowgate"]
    finally:
        assert running.stop() == 0


def test_unusable_database_path_is_reported(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = start_with(tmp_path, f"database: {{path: {tmp_path / 'file' / 'x.db'}}}\n")
    assert result.returncode != 0
    assert "cannot open the log database" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_ui_command_serves_the_log_browser_alone(tmp_path, fake_provider):
    import yaml

    config = write_config(tmp_path, fake_provider)
    ui_port = yaml.safe_load(config.read_text())["server"]["ui_port"]
    process = subprocess.Popen(
        [FLOWGATE, "ui", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            "PATH": "/usr/bin:/bin",
            "FLOWGATE_HOME": str(tmp_path / "home"),
            "FAKE_LOCAL_KEY": "x",
        },
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None
            try:
                databases = httpx.get(f"http://127.0.0.1:{ui_port}/-/databases.json").json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert [d["name"] for d in databases] == ["flowgate"]
        plugins = httpx.get(f"http://127.0.0.1:{ui_port}/-/plugins.json").json()
        assert "flowgate_cells.py" in [p["name"] for p in plugins]
        table = httpx.get(f"http://127.0.0.1:{ui_port}/flowgate/requests.json").json()
        assert table["rows"] == []  # created and migrated, nothing logged yet
    finally:
        process.terminate()
        process.wait(30)
