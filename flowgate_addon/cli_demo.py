"""`flowgate demo`: fill the log with realistic traffic sent through a real FlowGate."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import yaml

from flowgate_addon import demo as demo_traffic
from flowgate_addon.cli_options import config_option, load


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@click.command()
@config_option
@click.option(
    "--requests",
    "count",
    type=click.IntRange(1, 100_000),
    default=300,
    show_default=True,
    help="How many requests to send.",
)
def demo(config_file: Path | None, count: int) -> None:
    """Send realistic traffic through a real FlowGate into the configured log database.

    A local stand-in plays every provider (no network, no keys); smart routing is on.
    Run `flowgate ui` afterwards to see the dashboards. Rows are marked mode=gateway
    and sessions demo-N, like any other traffic.
    """
    settings = load(config_file)
    stand_in = demo_traffic.StandIn().start()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flowgate-demo-") as tmp:
        config = demo_traffic.demo_config(stand_in.url)
        port = _free_port()
        config["server"] = {
            "host": "127.0.0.1",
            "port": port,
            "proxy_port": _free_port(),
            "ui_port": _free_port(),
        }
        config["database"] = {"path": str(settings.database.path)}
        path = Path(tmp) / "flowgate.yaml"
        path.write_text(yaml.safe_dump(config))
        # Its own data folder: the demo needs no caller token and touches no vault.
        env = {**os.environ, "FLOWGATE_HOME": str(Path(tmp) / "home")}
        env.pop("FLOWGATE_CONFIG", None)
        command = [sys.executable, "-m", "flowgate_addon.cli", "start", "--config", str(path)]
        log = Path(tmp) / "flowgate.log"
        with log.open("w") as output:
            gate = subprocess.Popen(
                [*command, "--no-ui"], stdout=output, stderr=subprocess.STDOUT, env=env
            )
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            _wait_until_up(gate, port, log)
            click.echo(f"Sending {count} requests through FlowGate to a local stand-in …", err=True)
            statuses = demo_traffic.send_traffic(base_url, count)
        finally:
            gate.send_signal(signal.SIGINT)  # a clean stop writes every queued row
            try:
                gate.wait(30)
            except subprocess.TimeoutExpired:
                gate.kill()
    stand_in.stop()
    summary = ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))
    server = settings.server
    click.echo(
        f"Logged {sum(statuses.values())} requests ({summary}) in "
        f"{time.monotonic() - started:.0f} s to {settings.database.path}\n"
        f"See them: flowgate ui, then http://{server.host}:{server.ui_port}/-/dashboards/overview"
    )


def _wait_until_up(gate: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Until the gateway port accepts connections (a request would be logged)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if gate.poll() is not None:
            raise click.ClickException(f"FlowGate did not start:\n{log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise click.ClickException(f"FlowGate did not listen on port {port}")
