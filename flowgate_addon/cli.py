"""The `flowgate` command."""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import click

from flowgate_addon import (
    __version__,
    cli_catalog,
    cli_demo,
    cli_route,
    cli_tokens,
    cli_vault,
    trust,
    ui_metadata,
)
from flowgate_addon.cli_options import config_option, load
from flowgate_addon.config import Settings
from flowgate_addon.paths import data_dir
from flowgate_addon.providers import ProviderRegistry
from flowgate_addon.routing.router import build_router
from flowgate_addon.security import admin, credentials
from flowgate_addon.security.access import Access, is_loopback
from flowgate_addon.security.tokens import TokenStore, default_tokens_path
from flowgate_addon.security.vault import Vault, VaultError, WrongPassword
from flowgate_addon.store import open_db

ADDON_SCRIPT = Path(__file__).with_name("addon.py")


@click.group()
@click.version_option(__version__, prog_name="FlowGate")
def cli() -> None:
    """FlowGate: a local-first LLM gateway with token analytics."""


@cli.command()
def version() -> None:
    """Print FlowGate's version and the versions it runs on."""
    from mitmproxy.version import VERSION as MITMPROXY_VERSION

    click.echo(
        f"FlowGate {__version__} (mitmproxy {MITMPROXY_VERSION}, "
        f"Python {platform.python_version()})"
    )


@cli.command()
@config_option
@click.option("--host", help="Address every listener binds to (server.host).")
@click.option("--port", type=click.IntRange(1, 65535), help="Gateway port (server.port).")
@click.option(
    "--proxy-port", type=click.IntRange(1, 65535), help="Forward-proxy port (server.proxy_port)."
)
@click.option("--ui-port", type=click.IntRange(1, 65535), help="UI port (server.ui_port).")
@click.option("--no-ui", is_flag=True, help="Run only the proxy listeners, not the Datasette UI.")
def start(config_file: Path | None, no_ui: bool, **server: str | int | None) -> None:
    """Run the gateway and forward-proxy listeners (and the UI) until Ctrl-C."""
    settings = load(config_file)
    for key, value in server.items():
        if value is not None:
            setattr(settings.server, key, value)
    host = settings.server.host
    tokens = TokenStore(default_tokens_path())
    if problem := Access(tokens, not is_loopback(host)).open_mode_problem([host]):
        raise click.ClickException(problem)
    tokens.close()
    _unlock_on_terminal(settings)
    _ensure_db(settings)
    _check_routing(settings)
    ui = None if no_ui else _start_ui(settings)
    server = settings.server
    click.echo(
        f"FlowGate {__version__}\n"
        f"  gateway:  http://{server.host}:{server.port}/v1   (OpenAI base URL)\n"
        f"  proxy:    http://{server.host}:{server.proxy_port}  (HTTPS_PROXY)\n"
        + (f"  ui:       http://{server.host}:{server.ui_port}/\n" if ui else "")
        + (f"  console:  {_signin_link(settings)}  (sign-in link: one use)\n" if ui else "")
        + f"  log db:   {settings.database.path}\n"
        f"  config:   {settings.source or 'built-in defaults'}",
        err=True,
    )
    from mitmproxy.tools.main import mitmdump

    # One line per client connection drowns FlowGate's own messages; keep warnings.
    logging.getLogger("mitmproxy.proxy.server").setLevel(logging.WARNING)
    try:
        mitmdump(mitmdump_args(settings))
    finally:
        if ui is not None:
            ui.terminate()
            try:
                ui.wait(10)
            except subprocess.TimeoutExpired:
                ui.kill()


@cli.command()
@config_option
def env(config_file: Path | None) -> None:
    """Print shell lines that route a terminal's programs through FlowGate.

    Use: eval "$(flowgate env)"
    """
    settings = load(config_file)
    click.echo(f"# FlowGate forward proxy; CA certificate: {trust.ensure_ca()}")
    for line in trust.env_lines(settings):
        click.echo(line)


@cli.command()
@click.option("--path", "path_only", is_flag=True, help="Print only the certificate's path.")
def ca(path_only: bool) -> None:
    """Show FlowGate's CA certificate and how to trust it."""
    cert = trust.ensure_ca()
    if path_only:
        click.echo(str(cert))
        return
    click.echo(
        f"FlowGate's CA certificate: {cert}\n"
        "\n"
        "The forward proxy presents certificates signed by it for LLM API hosts only\n"
        "(every other host is tunnelled untouched). Trust it in one of these ways:\n"
        "\n"
        '  This shell only (Python, curl, Node):   eval "$(flowgate env)"\n'
        f"  Python (requests/httpx/openai):          SSL_CERT_FILE={trust.ca_bundle()}\n"
        f"  Node:                                    NODE_EXTRA_CA_CERTS={cert}\n"
        f"  curl:                                    curl --cacert {cert} ...\n"
        "  Debian/Ubuntu, system-wide:\n"
        f"    sudo cp {cert} /usr/local/share/ca-certificates/flowgate.crt\n"
        "    sudo update-ca-certificates\n"
        "  macOS, system-wide:\n"
        "    sudo security add-trusted-cert -d -r trustRoot \\\n"
        f"      -k /Library/Keychains/System.keychain {cert}\n"
        "\n"
        "Keep its private key (next to it, mitmproxy-ca.pem) secret: whoever has it can\n"
        "impersonate any site to programs that trust this CA."
    )


def _unlock_on_terminal(settings: Settings) -> None:
    """Ask for the vault's master password when nothing else can unlock it."""
    vault = Vault(settings.security.vault_path)
    key_file = settings.security.master_key_path
    if (
        not vault.exists
        or os.environ.get(credentials.PASSWORD_ENV)
        or (key_file is not None and key_file.exists())
        or not sys.stdin.isatty()
    ):
        return  # the addon unlocks it, or reports it locked
    for _ in range(3):
        password = click.prompt(
            "Vault master password (Enter: start with the vault locked)",
            hide_input=True,
            default="",
            show_default=False,
        )
        if not password:
            return
        try:
            vault.unlock(password)
        except WrongPassword:
            click.echo("Wrong master password.", err=True)
            continue
        except VaultError as exc:
            raise click.ClickException(str(exc)) from None
        credentials.preset_master_key = vault.master_key()
        return
    raise click.ClickException("wrong master password three times")


def mitmdump_args(settings: Settings) -> list[str]:
    """Arguments for one mitmproxy process running both FlowGate listeners."""
    server = settings.server
    registry = ProviderRegistry.from_config(settings.providers)
    upstream = registry.default.upstream
    target = f"{upstream.scheme}://{upstream.host}:{upstream.port}"
    confdir = trust.ca_dir()
    args = [
        "--mode",
        f"reverse:{target}@{server.host}:{server.port}",
        "--mode",
        f"regular@{server.host}:{server.proxy_port}",
        "--set",
        f"confdir={confdir}",
        # Decide the upstream per request, before any connection is made.
        "--set",
        "connection_strategy=lazy",
        "--set",
        "upstream_cert=false",
        "--set",
        "flow_detail=0",
        "-s",
        str(ADDON_SCRIPT),
    ]
    if settings.security.upstream_ca_file:
        args += ["--set", f"ssl_verify_upstream_trusted_ca={settings.security.upstream_ca_file}"]
    if settings.source:
        args += ["--set", f"flowgate_config={settings.source}"]
    return args


def plugins_dir() -> Path:
    """FlowGate's Datasette plugins (the `datasette_plugins` package)."""
    spec = importlib.util.find_spec("datasette_plugins")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def _ensure_db(settings: Settings) -> None:
    """Create or migrate the log database now, so a bad path is reported before start.

    A database that is there but cannot be written now (locked, read-only, full) does not
    stop FlowGate: it proxies and keeps the rows until the database takes them.
    """
    path = settings.database.path
    try:
        open_db(path).conn.close()
    except sqlite3.Error as exc:
        if not path.is_file():
            raise click.ClickException(f"cannot open the log database {path}: {exc}") from None
        click.echo(f"Warning: the log database {path} cannot be written now: {exc}", err=True)
    except OSError as exc:
        raise click.ClickException(f"cannot open the log database {path}: {exc}") from None


def _check_routing(settings: Settings) -> None:
    """Every tier's model must resolve to a provider; say which one does not, before start."""
    if not settings.smart_router.active:
        return
    try:
        build_router(settings)
    except ValueError as exc:
        raise click.ClickException(f"invalid config: {exc}") from None


def ui_command(settings: Settings) -> list[str]:
    """Datasette over the log database only, with FlowGate's plugins."""
    server = settings.server
    return [
        sys.executable,
        "-m",
        "datasette",
        "serve",
        str(settings.database.path),
        "--host",
        server.host,
        "--port",
        str(server.ui_port),
        *(
            arg
            for name, value in ui_metadata.SETTINGS.items()
            for arg in ("--setting", name, str(value).lower() if value is False else str(value))
        ),
        "--plugins-dir",
        str(plugins_dir()),
        "--metadata",
        str(ui_metadata.write_metadata(settings, data_dir() / "ui" / "metadata.json")),
    ]


def _start_ui(settings: Settings) -> subprocess.Popen[bytes]:
    """The UI as a child process of `flowgate start`."""
    return subprocess.Popen(
        ui_command(settings),
        # Ctrl-C reaches the whole process group; FlowGate stops the UI itself.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


@cli.command()
@config_option
@click.option("--host", help="Address to bind (server.host).")
@click.option("--ui-port", type=click.IntRange(1, 65535), help="Port (server.ui_port).")
def ui(config_file: Path | None, host: str | None, ui_port: int | None) -> None:
    """Serve the log browser alone (Datasette over the log database), until Ctrl-C."""
    settings = load(config_file)
    settings.server.host = host or settings.server.host
    settings.server.ui_port = ui_port or settings.server.ui_port
    _ensure_db(settings)
    click.echo(
        f"FlowGate log browser: http://{settings.server.host}:{settings.server.ui_port}/\n"
        f"Operator console sign-in (one use, {admin.SIGNIN_MINUTES} min): "
        f"{_signin_link(settings)}",
        err=True,
    )
    os.execv(sys.executable, ui_command(settings))


def _signin_link(settings: Settings) -> str:
    """A fresh one-time link into the operator console (see security/admin.py)."""
    return admin.issue_signin_link(f"http://{settings.server.host}:{settings.server.ui_port}")


cli.add_command(cli_vault.add_key)
cli.add_command(cli_vault.keys)
cli.add_command(cli_vault.vault)
cli.add_command(cli_tokens.tokens)
cli.add_command(cli_catalog.catalog_group)
cli.add_command(cli_route.route)
cli.add_command(cli_demo.demo)

if __name__ == "__main__":
    cli()
