"""Settings saved from the operator console: checked as the proxy will use them, then kept.

They live in `console-settings.yaml` in the data folder (config.console_file), merged
over the config file by `load_settings` in every FlowGate process; a running proxy
notices the file within a second and switches over without a restart
(settings_watch.py). A change that could not work is refused here, so the file only
ever holds settings that load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flowgate_addon.config import Settings, console_file, load_settings, read_console_settings
from flowgate_addon.routing.router import build_router
from flowgate_addon.security.vault import write_private


def save_section(section: str, value: Any, config: Path | None) -> Settings:
    """Save the router section, or providers to add, replace or (None) remove.

    Returns the settings as every FlowGate process now loads them.

    Raises ConfigError (a value that does not validate) or ValueError (a tier's model
    that no provider serves) with a message naming the key; nothing is saved then.
    """
    saved = read_console_settings()
    if section == "smart_router":
        saved["smart_router"] = value
    elif section == "providers":
        providers = {**saved.get("providers", {}), **value}
        saved["providers"] = {name: p for name, p in providers.items() if p is not None}
        if not saved["providers"]:
            del saved["providers"]
    else:
        raise ValueError(f"the console does not change {section}")
    settings = load_settings(config, console=saved)
    if settings.smart_router.active:
        build_router(settings)  # a tier's model that nobody serves raises ValueError
    text = "# Saved by FlowGate's operator console; merged over the config file.\n"
    text += yaml.safe_dump(saved, sort_keys=False)
    write_private(console_file(), text.encode())  # whole or not at all (temp file, rename)
    return settings


def console_providers() -> set[str]:
    """The providers the console added (the only ones it may change or remove)."""
    return set(read_console_settings().get("providers") or {})
