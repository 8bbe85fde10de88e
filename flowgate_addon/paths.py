"""Where FlowGate keeps its files when the config does not say."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """$FLOWGATE_HOME, else $XDG_DATA_HOME/flowgate, else ~/.local/share/flowgate."""
    if home := os.environ.get("FLOWGATE_HOME"):
        return Path(home).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "flowgate"


def default_db_path() -> Path:
    return data_dir() / "flowgate.db"
