"""Caller tokens: how applications prove to FlowGate who they are.

A caller token is `fgt_` followed by the unpadded base64url form of 32 random
bytes (256 bits). FlowGate stores only the token's SHA-256 and its first eight
characters after `fgt_` (for display), in `tokens.db` in FlowGate's data folder:
a SQLite file of its own, mode 0600, apart from the log database (which Datasette
serves).

`TokenStore.check` runs for every request on the event loop. It looks the token's
hash up in an in-memory table and, before that, asks SQLite whether any other
connection has committed since the last look (`PRAGMA data_version`, a couple of
microseconds in WAL mode). So a token created or revoked with `flowgate tokens`
counts at once, without restarting the gateway.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils import Migrations

from flowgate_addon.paths import data_dir

log = logging.getLogger("flowgate.tokens")

TOKEN_PREFIX = "fgt_"
TOKEN_BYTES = 32
DISPLAY_CHARS = 8
# 32 bytes are 43 base64url characters once the "=" padding is dropped.
TOKEN_RE = re.compile(r"fgt_[A-Za-z0-9_-]{43}")
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# How often `check` looks whether tokens.db was deleted or replaced (seconds).
FILE_CHECK_INTERVAL = 1.0

migrations = Migrations("flowgate-tokens")


@migrations()
def m001_tokens(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE tokens (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
            hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            created TEXT NOT NULL,
            expires TEXT,
            revoked TEXT
        )
        """
    )


def default_tokens_path() -> Path:
    return data_dir() / "tokens.db"


def hash_token(token: str) -> str:
    # A plain, unsalted SHA-256 is enough here: a token carries 256 random bits, so
    # nobody can guess one from its hash, and salting or stretching would only slow
    # down the per-request check (and rule out looking the hash up directly).
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def new_token() -> str:
    body = base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=")
    return TOKEN_PREFIX + body.decode("ascii")


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _use_wal(conn: sqlite3.Connection, attempts: int = 50) -> None:
    """Put the file in WAL mode (once: the mode sticks to the file).

    Switching needs the file to itself and SQLite reports "database is locked" at
    once, without waiting, if another process has it open just then (two processes
    opening a new file together), so retry for a few seconds.
    """
    for attempt in range(attempts):
        try:
            if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal":
                return
            error: Exception = sqlite3.OperationalError("cannot switch to WAL mode")
        except sqlite3.OperationalError as exc:
            error = exc
        if attempt == attempts - 1:
            raise error
        time.sleep(0.1)


def check_name(name: str) -> None:
    """Raise ValueError, with a message for humans, unless `name` can name a token."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid token name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    if name.isdigit():
        raise ValueError(
            f"invalid token name {name!r}: a name of digits only could be mistaken for an id"
        )


@dataclass(frozen=True)
class Caller:
    id: int
    name: str


class TokenState(enum.Enum):
    OK = "ok"
    UNKNOWN = "unknown"  # not a caller token, or not one FlowGate ever issued
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class CheckResult:
    """What `TokenStore.check` found. `caller` is set only when the token is valid.

    `name` is the token's name whenever the token is known (also when it has
    expired or been revoked), for log messages; never treat it as authenticated.
    """

    state: TokenState
    caller: Caller | None = None
    name: str | None = None

    @property
    def ok(self) -> bool:
        return self.state is TokenState.OK


UNKNOWN = CheckResult(TokenState.UNKNOWN)
_FOREVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _Entry:
    hash: str
    caller: Caller
    expires: datetime | None
    revoked: bool


class TokenStore:
    """The caller tokens in one SQLite file.

    One instance keeps one SQLite connection. A lock serialises every use of it, so
    an instance may be shared between threads, but it is meant to be used from one
    thread (the event loop in the gateway; the CLI's own thread otherwise); the lock
    is only ever held for a SQLite statement or two. Any number of instances, in any
    number of processes, may use the same file: `check` sees each one's commits.

    `now` returns the current time as an aware datetime; tests pass their own clock.
    """

    def __init__(self, path: Path, now: Callable[[], datetime] = _utc_now) -> None:
        self.path = Path(path)
        self._now = now
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._by_hash: dict[str, _Entry] = {}
        self._active_until: datetime | None = None
        self._data_version: int | None = None
        self._file_id: tuple[int, int] | None = None
        self._next_file_check = 0.0
        self._open()

    # -- opening -------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Create the file owner-only before SQLite opens it; SQLite then gives its
        # -wal and -shm files the same mode. The umask is left alone: it is
        # per-process and other threads may be creating files.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            info = os.fstat(fd)
            if info.st_mode & 0o077:
                try:
                    os.fchmod(fd, 0o600)
                except OSError as exc:
                    log.warning("FlowGate cannot make %s private (mode 0600): %s", self.path, exc)
        finally:
            os.close(fd)
        # Autocommit: every read is its own snapshot, so a commit by another process
        # is visible to the next statement; writes take BEGIN IMMEDIATE explicitly.
        conn = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0
        )
        try:
            # WAL: readers (the gateway) never wait for a writer (the CLI), and
            # `PRAGMA data_version` costs ~2 µs instead of ~5 µs with a rollback journal.
            _use_wal(conn)
            db = sqlite_utils.Database(conn)
            if migrations.pending(db):
                # BEGIN IMMEDIATE: two processes opening a new file at once must not
                # both create the table; the second waits, then finds nothing pending.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    migrations.apply(db)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except BaseException:
            conn.close()
            raise
        if self._conn is not None:
            self._conn.close()
        self._conn = conn
        info = os.stat(self.path)
        self._file_id = (info.st_dev, info.st_ino)
        self._next_file_check = time.monotonic() + FILE_CHECK_INTERVAL
        self._data_version = None  # reload on next use

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the token store is closed")
        return self._conn

    # -- the per-request check -------------------------------------------------

    def check(self, token: str) -> CheckResult:
        """Is `token` a valid caller token? Cheap enough for every request."""
        if not TOKEN_RE.fullmatch(token):
            return UNKNOWN
        digest = hash_token(token)
        with self._lock:
            self._refresh()
            entry = self._by_hash.get(digest)
        # The dict lookup is keyed by the SHA-256 of what the client sent, which it
        # cannot steer towards a stored hash, so its timing reveals nothing; the
        # constant-time comparison below is a second line of defence.
        if entry is None or not hmac.compare_digest(entry.hash, digest):
            return UNKNOWN
        if entry.revoked:
            return CheckResult(TokenState.REVOKED, name=entry.caller.name)
        if entry.expires is not None and self._now() >= entry.expires:
            return CheckResult(TokenState.EXPIRED, name=entry.caller.name)
        return CheckResult(TokenState.OK, caller=entry.caller, name=entry.caller.name)

    def has_tokens(self) -> bool:
        """Is any token active (neither revoked nor expired)? Without one, FlowGate is open."""
        with self._lock:
            self._refresh()
            active_until = self._active_until
        if active_until is None:
            return False
        return active_until is _FOREVER or self._now() < active_until

    def _refresh(self) -> None:
        """Reload the table if another connection committed since the last look.

        Call with the lock held. On a SQLite error the last table read stays in use
        (and the next call tries again), so a busy disk never stops the gateway.
        """
        if time.monotonic() >= self._next_file_check:
            self._reopen_if_replaced()
        try:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._data_version:
                return
            # Read the version first: a commit landing between the two statements
            # is then picked up by the next call, never missed.
            rows = self._db.execute(
                "SELECT id, name, hash, expires, revoked FROM tokens"
            ).fetchall()
        except sqlite3.Error as exc:
            log.warning("FlowGate could not read caller tokens from %s: %s", self.path, exc)
            return
        self._by_hash = {
            row[2]: _Entry(
                hash=row[2],
                caller=Caller(id=row[0], name=row[1]),
                expires=_parse_time(row[3]),
                revoked=row[4] is not None,
            )
            for row in rows
        }
        # When the last unrevoked token expires, so `has_tokens` need not scan.
        unrevoked = [e.expires or _FOREVER for e in self._by_hash.values() if not e.revoked]
        self._active_until = max(unrevoked, default=None)
        self._data_version = version

    def _reopen_if_replaced(self) -> None:
        """Follow tokens.db if it was deleted or replaced by a new file since we opened it."""
        self._next_file_check = time.monotonic() + FILE_CHECK_INTERVAL
        try:
            info = os.stat(self.path)
            same = (info.st_dev, info.st_ino) == self._file_id
        except FileNotFoundError:
            same = False
        except OSError:
            return
        if same:
            return
        log.warning("FlowGate caller tokens: %s was replaced; reading it afresh", self.path)
        try:
            self._open()
        except (OSError, sqlite3.Error) as exc:
            log.warning("FlowGate could not reopen %s: %s", self.path, exc)

    # -- managing tokens -------------------------------------------------------

    def create(self, name: str, ttl: timedelta | None = None) -> str:
        """Issue a token named `name`; the token itself is returned here and never again.

        Raises ValueError for an invalid or already used name or a ttl that is not
        positive.
        """
        check_name(name)
        now = self._now()
        expires = None
        if ttl is not None:
            if ttl <= timedelta(0):
                raise ValueError("a token's lifetime must be positive")
            try:
                expires = _format_time(now + ttl)
            except OverflowError:
                raise ValueError("a token's lifetime is too long") from None
        token = new_token()
        row = (
            name,
            hash_token(token),
            token[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + DISPLAY_CHARS],
            _format_time(now),
            expires,
        )
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO tokens (name, hash, prefix, created, expires) "
                    "VALUES (?, ?, ?, ?, ?)",
                    row,
                )
            except sqlite3.IntegrityError:
                if self._db.execute("SELECT 1 FROM tokens WHERE name = ?", (name,)).fetchone():
                    raise ValueError(f"a token named {name!r} already exists") from None
                raise
            self._data_version = None  # our own commits do not change data_version
        return token

    def list(self) -> list[dict[str, Any]]:
        """Every token, oldest first: id, name, prefix, created, expires, revoked, status."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, prefix, created, expires, revoked FROM tokens ORDER BY id"
            ).fetchall()
        now = self._now()
        result = []
        for id_, name, prefix, created, expires, revoked in rows:
            if revoked is not None:
                status = "revoked"
            elif expires is not None and now >= datetime.fromisoformat(expires):
                status = "expired"
            else:
                status = "active"
            result.append(
                {
                    "id": id_,
                    "name": name,
                    "prefix": prefix,
                    "created": created,
                    "expires": expires,
                    "revoked": revoked,
                    "status": status,
                }
            )
        return result

    def revoke(self, name_or_id: str) -> bool:
        """Revoke the token with this name (or, for digits, this id); False if none matched.

        Revoking a revoked token keeps its first revocation time and returns True.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT id FROM tokens WHERE name = ?", (name_or_id,)
                ).fetchone()
                if row is None and name_or_id.isdigit():
                    row = self._db.execute(
                        "SELECT id FROM tokens WHERE id = ?", (int(name_or_id),)
                    ).fetchone()
                if row is not None:
                    self._db.execute(
                        "UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL",
                        (_format_time(self._now()), row[0]),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._data_version = None
        return row is not None


# -- finding the token in a request ----------------------------------------------


# Headers an application may put its caller token in, in order of precedence:
# Proxy-Authorization is addressed to FlowGate itself; the others are the places
# SDKs put an API key (OpenAI, Anthropic, Gemini, Azure OpenAI).
KEY_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key")


def extract_token(headers: Mapping[str, str]) -> str | None:
    """The caller token a request presents, or None.

    `headers` must look names up case-insensitively (mitmproxy's `Headers` does).
    Accepted: `Proxy-Authorization: Basic base64(user:TOKEN)` (or the token as the
    user name, with no password), `Proxy-Authorization: Bearer TOKEN`,
    `Authorization: Bearer TOKEN`, and the bare token in `x-api-key`,
    `x-goog-api-key` or `api-key`. Only values starting with `fgt_` count: anything
    else is a provider key (or a dummy) and is none of FlowGate's business here.
    """
    value = headers.get("proxy-authorization")
    if value:
        scheme, _, credentials = value.strip().partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "basic":
            token = _from_basic(credentials)
            if token:
                return token
        elif scheme == "bearer" and credentials.startswith(TOKEN_PREFIX):
            return credentials
    for name in KEY_HEADERS:
        value = headers.get(name)
        token = key_value(name, value) if value else ""
        if token.startswith(TOKEN_PREFIX):
            return token
    return None


def key_value(name: str, value: str) -> str:
    """The key in a credential header: `Authorization: Bearer KEY`, or the bare value."""
    value = value.strip()
    if name == "authorization":
        scheme, _, rest = value.partition(" ")
        return rest.strip() if scheme.lower() == "bearer" else ""
    return value


def is_caller_token(name: str, value: str) -> bool:
    """Whether a credential header holds a FlowGate caller token, however it is written.

    Broader than what `extract_token` accepts: a token sent wrongly is still never
    forwarded upstream.
    """
    return key_value(name, value).startswith(TOKEN_PREFIX) or value.strip().startswith(TOKEN_PREFIX)


def _from_basic(credentials: str) -> str | None:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, _, password = decoded.partition(":")
    if password.startswith(TOKEN_PREFIX):
        return password
    if user.startswith(TOKEN_PREFIX) and not password:
        return user
    return None
