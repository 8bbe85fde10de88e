"""`flowgate tokens`: create, list and revoke caller tokens."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from flowgate_addon.cli_options import audited
from flowgate_addon.security.tokens import TokenStore, default_tokens_path

_TTL_RE = re.compile(r"(\d{1,9})([smhd])")
_TTL_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_TTL = timedelta(days=100 * 365)


def parse_ttl(text: str) -> timedelta:
    """'30d', '12h', '90m' or '3600s' -> timedelta; ValueError with a message otherwise."""
    match = _TTL_RE.fullmatch(text.strip().lower())
    if not match:
        raise ValueError(
            f"invalid lifetime {text!r}: use a whole number and a unit, e.g. 30d, 12h, 90m, 3600s"
        )
    ttl = timedelta(**{_TTL_UNITS[match[2]]: int(match[1])})
    if ttl <= timedelta(0):
        raise ValueError(f"invalid lifetime {text!r}: it must be longer than zero")
    if ttl > MAX_TTL:
        raise ValueError(f"invalid lifetime {text!r}: at most 100 years (or leave --ttl out)")
    return ttl


class _TTL(click.ParamType):
    name = "ttl"

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_ttl(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


tokens_file_option = click.option(
    "--tokens-file",
    type=click.Path(dir_okay=False, path_type=Path),
    hidden=True,
    help="Token database (default: tokens.db in FlowGate's data folder).",
)


def _open(tokens_file: Path | None) -> TokenStore:
    path = tokens_file or default_tokens_path()
    try:
        return TokenStore(path)
    except (OSError, sqlite3.Error) as exc:
        raise click.ClickException(f"cannot open the token database {path}: {exc}") from None


def _with_store(tokens_file: Path | None, action: Callable[[TokenStore], Any]) -> Any:
    store = _open(tokens_file)
    try:
        return action(store)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.Error as exc:
        raise click.ClickException(f"token database {store.path}: {exc}") from None
    finally:
        store.close()


@click.group()
def tokens() -> None:
    """Caller tokens: what applications send to be let in (Bearer fgt_...)."""


@tokens.command()
@click.argument("name")
@click.option(
    "--ttl",
    type=_TTL(),
    help="Lifetime, e.g. 30d, 12h, 90m or 3600s (default: until revoked).",
)
@tokens_file_option
def create(name: str, ttl: timedelta | None, tokens_file: Path | None) -> None:
    """Create a token called NAME and print it (only this once).

    Use: TOKEN=$(flowgate tokens create my-app)
    """
    token = _with_store(tokens_file, lambda store: store.create(name, ttl))
    click.echo(token)
    audited("create caller token", name, format_ttl(ttl) if ttl else None)
    until = f", valid for {format_ttl(ttl)}" if ttl else ""
    click.echo(
        f"Created caller token {name!r}{until}. It is shown only this once: store it now "
        "(FlowGate keeps only its hash).",
        err=True,
    )


def format_ttl(ttl: timedelta) -> str:
    """A lifetime as people write it: 30d, 12h, 90m, 3600s (the largest exact unit)."""
    seconds = int(ttl.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@tokens.command(name="list")
@tokens_file_option
def list_(tokens_file: Path | None) -> None:
    """List tokens: id, name, prefix, created, expires and status."""
    rows = _with_store(tokens_file, lambda store: store.list())
    if not rows:
        click.echo("No caller tokens. Create one with: flowgate tokens create NAME", err=True)
        return
    header = ("ID", "NAME", "PREFIX", "CREATED", "EXPIRES", "STATUS")
    table = [
        (
            str(row["id"]),
            row["name"],
            f"fgt_{row['prefix']}…",
            row["created"],
            row["expires"] or "never",
            row["status"],
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


@tokens.command()
@click.argument("name_or_id")
@tokens_file_option
def revoke(name_or_id: str, tokens_file: Path | None) -> None:
    """Revoke the token called NAME_OR_ID (or with that id). It stops working at once."""
    if not _with_store(tokens_file, lambda store: store.revoke(name_or_id)):
        raise click.ClickException(
            f"no token named {name_or_id!r}"
            + (" or with that id" if name_or_id.isdigit() else "")
            + " (see: flowgate tokens list)"
        )
    audited("revoke caller token", name_or_id)
    click.echo(f"Revoked token {name_or_id!r}.", err=True)
