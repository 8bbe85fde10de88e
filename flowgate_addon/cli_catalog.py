"""`flowgate catalog …`: the model catalog, read from each provider's /models."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click

from flowgate_addon import catalog
from flowgate_addon.cli_options import config_option, load
from flowgate_addon.cli_vault import open_vault, reported
from flowgate_addon.providers import ProviderRegistry
from flowgate_addon.security.credentials import Credentials
from flowgate_addon.security.vault import Vault


@click.group("catalog")
def catalog_group() -> None:
    """Sync and list the models each provider serves."""


@catalog_group.command("sync")
@click.argument("providers", nargs=-1)
@config_option
def catalog_sync(providers: tuple[str, ...], config_file: Path | None) -> None:
    """Read PROVIDERS' model lists (default: every provider) into the catalog.

    Uses each provider's key from the config or the vault. A running FlowGate
    picks the new catalog up within a second.
    """
    settings = load(config_file)
    registry = ProviderRegistry.from_config(settings.providers)
    unknown = [name for name in providers if name not in registry.providers]
    if unknown:
        raise click.ClickException(
            f"unknown provider {unknown[0]!r}; known: {', '.join(registry.providers)}"
        )
    names = list(providers or registry.providers)
    vault = Vault(settings.security.vault_path)
    wanted = [registry.providers[n] for n in names]
    if vault.exists and any(not p.api_key and vault.has_key(p.name) for p in wanted):
        vault = open_vault(settings)  # asks for the master password if it must
    credentials = Credentials(vault, settings.security.allow_client_keys, None)
    with reported():
        results = catalog.sync_catalog(settings, registry, names, credentials.key_for)
    failed = False
    for result in results:
        if result.count is not None:
            click.echo(f"{result.provider:<12} {result.count} models")
        else:
            click.echo(f"{result.provider:<12} skipped: {result.problem}", err=True)
            failed = failed or bool(providers)  # a provider asked for by name must sync
    if failed or not any(r.count is not None for r in results):
        raise click.ClickException("no catalog was synced" if not failed else "sync failed")


@catalog_group.command("list")
@click.argument("provider", required=False)
@config_option
def catalog_list(provider: str | None, config_file: Path | None) -> None:
    """Show the synced catalog (model, provider, USD per 1M tokens in/out)."""
    settings = load(config_file)
    path = settings.database.path
    if not path.exists():
        raise click.ClickException(f"no log database at {path}: run `flowgate catalog sync`")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT provider, model, input_usd_per_1m, output_usd_per_1m, synced_at FROM models "
            "WHERE ? IS NULL OR provider = ? ORDER BY provider, model",
            (provider, provider),
        ).fetchall()
    except sqlite3.OperationalError:
        rows = []
    finally:
        conn.close()
    if not rows:
        click.echo("The catalog is empty: run `flowgate catalog sync`.")
        return
    for name, model, price_in, price_out, synced in rows:
        prices = f"{_usd(price_in):>9} {_usd(price_out):>9}"
        click.echo(f"{name:<12} {model:<48} {prices}  {synced}")


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:g}"
