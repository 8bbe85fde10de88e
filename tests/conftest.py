"""Shared fixtures: a fake provider, and real FlowGate processes in front of it."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, str(Path(__file__).parent))

from browser import browser  # noqa: F401 (one Chromium per session, for every module)
from fake_provider import FakeProvider

FLOWGATE = str(Path(sys.executable).with_name("flowgate"))
MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningFlowGate:
    process: subprocess.Popen[str]
    base_url: str
    proxy_url: str
    db_path: Path
    config_path: Path
    log_path: Path

    def rows(self, where: str = "1", params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return self.query(f"SELECT * FROM requests WHERE {where} ORDER BY id", params)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of any query on the log (none while the database is not there yet)."""
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(self.db_path)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql, params)]
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    def wait_rows(
        self, where: str, params: tuple[Any, ...] = (), count: int = 1, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """Rows are written by a background thread: poll until they are there."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows(where, params)
            if len(rows) >= count or time.monotonic() > deadline:
                assert len(rows) >= count, f"expected {count} rows where {where}, got {rows}"
                return rows
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop_cleanly(self) -> None:
        """Stop; it must exit 0 and never have printed a traceback (bad input, faults, exit)."""
        code = self.stop()
        assert code == 0, f"FlowGate did not shut down cleanly ({code}):\n{self.output()}"
        assert "Traceback" not in self.output(), self.output()


@dataclass
class TestCA:
    """A CA of the tests' own, for fake HTTPS providers FlowGate must verify."""

    ca_file: Path
    server: ssl.SSLContext  # presents a cert for 127.0.0.1 and localhost


def make_test_ca(directory: Path) -> TestCA:
    from mitmproxy import certs

    store = certs.CertStore.from_store(directory, "fake-provider", 2048)
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    entry = store.get_cert("localhost", sans)
    pem = directory / "fake-provider-server.pem"
    pem.write_bytes(
        entry.cert.to_pem()
        + entry.privatekey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    return TestCA(directory / "fake-provider-ca-cert.pem", context)


def write_config(directory: Path, fake: FakeProvider, extra: dict[str, Any] | None = None) -> Path:
    config: dict[str, Any] = {
        "server": {
            "host": "127.0.0.1",
            "port": free_port(),
            "proxy_port": free_port(),
            "ui_port": free_port(),
        },
        "database": {"path": "flowgate.db", "flush_interval_ms": 20},
        "providers": {
            # The fake provider's behaviour-picking model names (see fake_provider.py).
            "openai": {
                "base_url": f"{fake.base_url}/v1",
                "models": ["fail-400", "fail-500", "no-usage", "echo", "sized-stream"],
            },
            "local": {
                "base_url": f"{fake.base_url}/custom/v1",
                "models": ["local-model"],
                "api_key": "${FAKE_LOCAL_KEY}",
            },
        },
        "skills": {"summarizer": {"model": "local-model", "description": "cheap summaries"}},
    }
    for section, values in (extra or {}).items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    path = directory / "flowgate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_flowgate(
    directory: Path,
    config_path: Path,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    preexec_fn: Any = None,
) -> RunningFlowGate:
    """Start FlowGate and wait until it answers.

    With `preexec_fn` (say, a file-size limit for the process), its output reaches the
    log file through a pipe, so the limit does not apply to the log itself.
    """
    config = yaml.safe_load(config_path.read_text())
    server = config["server"]
    log_path = directory / "flowgate.log"
    full_env = {
        **os.environ,
        "FLOWGATE_HOME": str(directory / "home"),
        "FAKE_LOCAL_KEY": "sk-local-secret",
        **(env or {}),
    }
    log_file = log_path.open("w")
    process = subprocess.Popen(
        command or [FLOWGATE, "start", "--config", str(config_path), "--no-ui"],
        stdout=subprocess.PIPE if preexec_fn else log_file,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
        cwd=cwd or directory,
        preexec_fn=preexec_fn,
    )
    if preexec_fn:
        threading.Thread(target=_copy, args=(process.stdout, log_file), daemon=True).start()
    running = RunningFlowGate(
        process,
        f"http://127.0.0.1:{server['port']}/v1",
        f"http://127.0.0.1:{server['proxy_port']}",
        (config_path.parent / config["database"]["path"]).resolve(),
        config_path,
        log_path,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"FlowGate exited early:\n{running.output()}")
        try:
            # 401 and 403: up, and asking for a caller token / refusing this address.
            if httpx.get(f"{running.base_url}/models", timeout=1).status_code in (200, 401, 403):
                return running
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    running.stop()
    raise AssertionError(f"FlowGate did not start:\n{running.output()}")


def _copy(source: Any, target: Any) -> None:
    for line in source:
        target.write(line)
        target.flush()


@pytest.fixture(autouse=True)
def private_data_folder(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's real FlowGate folder (vault, tokens, CA)."""
    monkeypatch.setenv("FLOWGATE_HOME", str(tmp_path_factory.mktemp("flowgate-home")))
    monkeypatch.delenv("FLOWGATE_MASTER_PASSWORD", raising=False)
    monkeypatch.delenv("FLOWGATE_CONFIG", raising=False)


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[FakeProvider]:
    fake = FakeProvider().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def flowgate(
    fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFlowGate]:
    """One `flowgate start` for the whole session, in front of the fake provider."""
    directory = tmp_path_factory.mktemp("flowgate")
    running = start_flowgate(directory, write_config(directory, fake_provider))
    yield running
    running.stop_cleanly()


@pytest.fixture
def openai_client(flowgate: RunningFlowGate):
    import openai

    return openai.OpenAI(base_url=flowgate.base_url, api_key="sk-client-key", max_retries=0)
