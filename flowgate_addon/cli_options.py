"""What every `flowgate` command shares: the --config option and friendly config errors."""

from __future__ import annotations

from pathlib import Path

import click

from flowgate_addon.config import CONFIG_ENV, ConfigError, Settings, load_settings
from flowgate_addon.security.audit import record_cli

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"YAML config file (default: ${CONFIG_ENV}; without one, defaults apply).",
)


def load(config_file: Path | None) -> Settings:
    """Settings, or a one-line error naming the file, line and key (never a traceback)."""
    try:
        return load_settings(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def audited(action: str, target: str | None = None, detail: str | None = None) -> None:
    """Record a management action in the audit log; a failure to record is only a warning."""
    if problem := record_cli(action, target, detail):
        click.echo(f"Warning: {problem}", err=True)
