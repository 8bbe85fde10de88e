"""Signing in to the operator console: the master password, or a one-time link.

`flowgate ui` and `flowgate start` print a sign-in link that works once, for
SIGNIN_MINUTES, from the machine FlowGate runs on: only the token's SHA-256 is kept,
in a private file of the data folder. The master password signs in too (it is
checked by opening the vault). Either way the browser gets Datasette's signed actor
cookie with an expiry; too many wrong passwords from one address are slowed down.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections import deque
from pathlib import Path

from flowgate_addon.paths import data_dir
from flowgate_addon.security.vault import write_private

ADMIN_ID = "flowgate-admin"
SIGNIN_MINUTES = 15
SIGNIN_PATH = "/-/flowgate/signin"


def signin_file() -> Path:
    return data_dir() / "ui" / "signin.json"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_signin_link(base_url: str, path: Path | None = None) -> str:
    """A new one-time sign-in link (any earlier one stops working)."""
    token = secrets.token_urlsafe(32)
    record = {"sha256": _digest(token), "expires": time.time() + SIGNIN_MINUTES * 60}
    write_private(path or signin_file(), json.dumps(record).encode())
    return f"{base_url.rstrip('/')}{SIGNIN_PATH}?token={token}"


def redeem_signin(token: str, path: Path | None = None) -> bool:
    """Whether `token` is the current link's; a good one is used up."""
    path = path or signin_file()
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or not secrets.compare_digest(
        str(record.get("sha256", "")), _digest(token)
    ):
        return False
    path.unlink(missing_ok=True)  # one use, even when it turns out to be stale
    return time.time() < float(record.get("expires", 0))


def is_admin(actor: dict | None) -> bool:
    return bool(actor) and actor.get("id") == ADMIN_ID


class LoginThrottle:
    """At most `attempts` wrong passwords per address in `window` seconds."""

    def __init__(self, attempts: int = 5, window: float = 300.0):
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float:
        """Seconds until this address may try again (0: now)."""
        with self._lock:
            failures = self._recent(address)
            if len(failures) < self.attempts:
                return 0.0
            return max(0.0, failures[0] + self.window - time.monotonic())

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address).append(time.monotonic())

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.setdefault(address, deque())
        while failures and failures[0] < time.monotonic() - self.window:
            failures.popleft()
        return failures
