"""Who changed what, and when: every management action, from the console or the CLI.

One row per action in `audit.db` in FlowGate's data folder (mode 0600, never served
by Datasette). Rows name the actor, the action and its target — a provider, a token's
name — and never a secret value: no key, no token, no password.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowgate_addon.paths import data_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT,
    client_ip TEXT
)
"""


def default_audit_path() -> Path:
    return data_dir() / "audit.db"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """Append-only list of management actions; safe to share between threads."""

    def __init__(self, path: Path | None = None):
        self.path = path or default_audit_path()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))  # owner-only from birth
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
        self._lock = threading.Lock()
        with self._lock, self._conn:
            self._conn.execute(SCHEMA)

    def record(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        detail: str | None = None,
        client_ip: str | None = None,
    ) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO audit (ts, actor, action, target, detail, client_ip) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_now(), actor, action, target, detail, client_ip),
            )

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._conn.execute(
                "SELECT id, ts, actor, action, target, detail, client_ip FROM audit "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]

    def close(self) -> None:
        self._conn.close()


def cli_actor() -> str:
    """How a CLI action is attributed: the operating-system user."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid {os.getuid()}"


def record_cli(action: str, target: str | None = None, detail: str | None = None) -> str | None:
    """Record a CLI action; returns why it could not be recorded (the action stands)."""
    try:
        log = AuditLog()
        try:
            log.record(cli_actor(), action, target, detail)
        finally:
            log.close()
    except (OSError, sqlite3.Error) as exc:
        return f"could not record this in the audit log ({exc})"
    return None
