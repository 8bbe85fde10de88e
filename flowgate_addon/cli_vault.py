"""`flowgate add-key`, `flowgate keys …` and `flowgate vault …`: the encrypted key store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from flowgate_addon.cli_options import audited, config_option, load
from flowgate_addon.config import Settings
from flowgate_addon.providers import ProviderRegistry
from flowgate_addon.security.credentials import (
    PASSWORD_ENV,
    change_master_password,
    init_vault,
    read_master_key,
)
from flowgate_addon.security.vault import Vault, VaultError


@contextmanager
def reported() -> Iterator[None]:
    """Vault problems become one-line command errors, never tracebacks."""
    try:
        yield
    except VaultError as exc:
        raise click.ClickException(str(exc)) from None


def _password(prompt: str, confirm: bool = False) -> str:
    if password := os.environ.get(PASSWORD_ENV):
        return password
    return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)


def open_vault(settings: Settings) -> Vault:
    """The vault, unlocked: from a master-key file, $FLOWGATE_MASTER_PASSWORD or a prompt."""
    vault = Vault(settings.security.vault_path)
    if not vault.exists:
        raise click.ClickException(
            f"no vault at {vault.path}: create one with `flowgate vault init`"
        )
    key_file = settings.security.master_key_path
    with reported():
        if key_file is not None and key_file.exists() and not os.environ.get(PASSWORD_ENV):
            vault.unlock_with_key(read_master_key(key_file))
        else:
            vault.unlock(_password("Master password"))
    return vault


def _init(settings: Settings) -> Vault:
    vault = Vault(settings.security.vault_path)
    with reported():
        init_vault(
            vault, _password("New master password", confirm=True), settings.security.master_key_path
        )
    audited("set up the vault")
    click.echo(f"Created the vault {vault.path}", err=True)
    return vault


@click.command("add-key")
@click.argument("provider")
@click.option(
    "--from-env",
    "env_var",
    metavar="VAR",
    help="Read the key from this environment variable instead of asking.",
)
@config_option
def add_key(provider: str, env_var: str | None, config_file: Path | None) -> None:
    """Store PROVIDER's API key in the vault (created if missing), encrypted."""
    settings = load(config_file)
    known = ProviderRegistry.from_config(settings.providers).providers
    if provider not in known:
        raise click.ClickException(
            f"unknown provider {provider!r}; known: {', '.join(sorted(known))} "
            "(add custom ones under `providers:` in the config)"
        )
    if env_var:
        secret = os.environ.get(env_var, "")
        if not secret.strip():
            raise click.ClickException(f"environment variable {env_var} is not set or empty")
    else:
        secret = click.prompt(f"API key for {provider}", hide_input=True)
    vault = open_vault(settings) if Vault(settings.security.vault_path).exists else _init(settings)
    with reported():
        info = vault.add(provider, secret)
    audited("add provider key", provider, info.fingerprint)
    click.echo(f"Stored the key for {provider} ({info.fingerprint}) in {vault.path}")


@click.group()
def keys() -> None:
    """List or remove provider keys in the vault."""


@keys.command("list")
@config_option
def keys_list(config_file: Path | None) -> None:
    """Providers with a stored key: fingerprint and date, never the key."""
    vault = Vault(load(config_file).security.vault_path)
    if not vault.exists:
        click.echo("No vault yet: add a key with `flowgate add-key PROVIDER`.")
        return
    with reported():
        entries = vault.list()
    if not entries:
        click.echo("The vault holds no keys.")
    for entry in entries:
        click.echo(f"{entry.provider:<16} {entry.fingerprint}  {entry.created}")


@keys.command("remove")
@click.argument("provider")
@config_option
def keys_remove(provider: str, config_file: Path | None) -> None:
    """Delete PROVIDER's key from the vault."""
    vault = Vault(load(config_file).security.vault_path)
    with reported():
        removed = vault.exists and vault.remove(provider)
    if not removed:
        raise click.ClickException(f"the vault holds no key for {provider}")
    audited("remove provider key", provider)
    click.echo(f"Removed the key for {provider}")


@click.group()
def vault() -> None:
    """Create the vault or change its master password."""


@vault.command("init")
@config_option
def vault_init(config_file: Path | None) -> None:
    """Create an empty vault sealed with a new master password."""
    _init(load(config_file))


@vault.command("change-password")
@config_option
def vault_change_password(config_file: Path | None) -> None:
    """Re-encrypt every key under a new master password."""
    settings = load(config_file)
    store = Vault(settings.security.vault_path)
    old = _password("Current master password")
    new = os.environ.get("FLOWGATE_NEW_MASTER_PASSWORD") or click.prompt(
        "New master password", hide_input=True, confirmation_prompt=True
    )
    with reported():
        change_master_password(store, old, new, settings.security.master_key_path)
    audited("change master password")
    click.echo(f"Re-encrypted {len(store.list())} keys in {store.path} under the new password")
