"""The vault: provider API keys, encrypted at rest.

One JSON file, mode 0600, separate from the log database (which Datasette
serves). Each key is sealed with AES-256-GCM under a key derived from the master
password with scrypt (N=2**16, r=8: ~120 ms per guess on a current CPU core),
with the provider's name as associated data, so an entry moved to another
provider fails to open. A sealed marker tells a wrong password from a tampered
entry. FlowGate keeps only the derived key in memory and opens a provider key
when a request needs it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

FORMAT = "flowgate-vault/1"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**16, 8, 1
KEY_BYTES = 32  # AES-256-GCM
_MARKER = b"flowgate vault marker"
_MARKER_AAD = b"flowgate:marker"


class VaultError(Exception):
    """A vault problem a person can act on; the message says what and how."""


class WrongPassword(VaultError):
    pass


class TamperedVault(VaultError):
    pass


@dataclass(frozen=True)
class KeyInfo:
    provider: str
    fingerprint: str
    created: str


def fingerprint(secret: str) -> str:
    """A short, non-reversible label for a key (for lists and logs)."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def derive_key(
    password: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(password.encode())


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class Vault:
    """A vault file; `unlock` with the password (or a saved master key) to use it."""

    def __init__(self, path: Path):
        self.path = path
        self._key: bytes | None = None
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int], dict[str, Any]] | None = None

    # --- state ---------------------------------------------------------------------------

    @property
    def exists(self) -> bool:
        return self.path.exists()

    @property
    def unlocked(self) -> bool:
        return self._key is not None

    def _load(self) -> dict[str, Any]:
        """The parsed file; re-read only when it changed (`flowgate add-key` while running)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            stat = None
        if stat is not None and self._cache and self._cache[0] == (stat.st_mtime_ns, stat.st_size):
            return self._cache[1]
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise VaultError(
                f"no vault at {self.path}: create one with `flowgate vault init`"
            ) from None
        except (OSError, ValueError) as exc:
            raise TamperedVault(f"the vault file {self.path} cannot be read: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise TamperedVault(f"{self.path} is not a FlowGate vault ({FORMAT})")
        if stat is not None:
            self._cache = ((stat.st_mtime_ns, stat.st_size), data)
        return data

    def _save(self, data: dict[str, Any]) -> None:
        write_private(self.path, (json.dumps(data, indent=2) + "\n").encode())
        self._cache = None

    # --- create, unlock ------------------------------------------------------------------

    def init(self, password: str) -> None:
        """Create an empty vault sealed with `password`."""
        if self.exists:
            raise VaultError(f"a vault already exists at {self.path}")
        if not password:
            raise VaultError("the master password must not be empty")
        salt = os.urandom(16)
        key = derive_key(password, salt)
        data = {
            "format": FORMAT,
            "kdf": {
                "name": "scrypt",
                "n": SCRYPT_N,
                "r": SCRYPT_R,
                "p": SCRYPT_P,
                "salt": _b64(salt),
            },
            "marker": self._seal(key, _MARKER, _MARKER_AAD),
            "keys": {},
        }
        self._save(data)
        self._key = key

    def unlock(self, password: str) -> None:
        data = self._load()
        try:
            kdf = data["kdf"]
            key = derive_key(password, _unb64(kdf["salt"]), kdf["n"], kdf["r"], kdf["p"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise TamperedVault(f"the vault file {self.path} is damaged") from None
        self._check_marker(data, key, "wrong master password")
        self._key = key

    def unlock_with_key(self, key: bytes) -> None:
        """Unlock with a saved master key (the derived key, see `master_key`)."""
        if len(key) != KEY_BYTES:
            raise VaultError(f"a master key is {KEY_BYTES} bytes; this one is {len(key)}")
        self._check_marker(self._load(), key, "the saved master key does not open this vault")
        self._key = key

    def master_key(self) -> bytes:
        """The derived key, for a master-key file; only while unlocked."""
        return self._require_key()

    # --- keys ----------------------------------------------------------------------------

    def list(self) -> list[KeyInfo]:
        """Providers with keys, without opening any of them."""
        entries = sorted(self._load()["keys"].items())
        return [KeyInfo(name, e["fingerprint"], e["created"]) for name, e in entries]

    def has_key(self, provider: str) -> bool:
        try:
            return provider in self._load()["keys"]
        except VaultError:
            return False

    def add(self, provider: str, secret: str) -> KeyInfo:
        secret = secret.strip()
        if not secret:
            raise VaultError("the key is empty")
        key = self._require_key()
        with self._lock:
            data = self._load()
            entry = {
                "sealed": self._seal(key, secret.encode(), self._aad(provider)),
                "fingerprint": fingerprint(secret),
                "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            data["keys"][provider] = entry
            self._save(data)
        return KeyInfo(provider, entry["fingerprint"], entry["created"])

    def remove(self, provider: str) -> bool:
        with self._lock:
            data = self._load()
            if data["keys"].pop(provider, None) is None:
                return False
            self._save(data)
        return True

    def get(self, provider: str) -> str | None:
        """Open one provider's key (None if the vault holds none for it)."""
        key = self._require_key()
        entry = self._load()["keys"].get(provider)
        if entry is None:
            return None
        return self._open(key, entry["sealed"], self._aad(provider), provider).decode()

    def change_password(self, old: str, new: str) -> None:
        """Re-encrypt every key under a new password (new salt, new derived key)."""
        if not new:
            raise VaultError("the new master password must not be empty")
        self.unlock(old)
        old_key = self._require_key()
        with self._lock:
            data = self._load()
            plain = {
                name: self._open(old_key, e["sealed"], self._aad(name), name)
                for name, e in data["keys"].items()
            }
            salt = os.urandom(16)
            new_key = derive_key(new, salt)
            data["kdf"] = {
                "name": "scrypt",
                "n": SCRYPT_N,
                "r": SCRYPT_R,
                "p": SCRYPT_P,
                "salt": _b64(salt),
            }
            data["marker"] = self._seal(new_key, _MARKER, _MARKER_AAD)
            for name, secret in plain.items():
                data["keys"][name]["sealed"] = self._seal(new_key, secret, self._aad(name))
            self._save(data)
            self._key = new_key

    # --- crypto --------------------------------------------------------------------------

    @staticmethod
    def _aad(provider: str) -> bytes:
        return b"flowgate:key:" + provider.encode()

    @staticmethod
    def _seal(key: bytes, plain: bytes, aad: bytes) -> str:
        nonce = os.urandom(12)
        return _b64(nonce + AESGCM(key).encrypt(nonce, plain, aad))

    @staticmethod
    def _open(key: bytes, sealed: str, aad: bytes, what: str) -> bytes:
        try:
            raw = _unb64(sealed)
            return AESGCM(key).decrypt(raw[:12], raw[12:], aad)
        except (InvalidTag, ValueError):
            raise TamperedVault(
                f"the vault entry for {what} has been tampered with (it fails its integrity "
                "check); remove it with `flowgate keys remove` and add the key again"
            ) from None

    def _check_marker(self, data: dict[str, Any], key: bytes, message: str) -> None:
        try:
            raw = _unb64(data["marker"])
            AESGCM(key).decrypt(raw[:12], raw[12:], _MARKER_AAD)
        except InvalidTag:
            raise WrongPassword(message) from None
        except (KeyError, ValueError, TypeError):
            raise TamperedVault(f"the vault file {self.path} is damaged") from None

    def _require_key(self) -> bytes:
        if self._key is None:
            raise VaultError("the vault is locked")
        return self._key
