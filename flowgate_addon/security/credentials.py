"""Which credential goes upstream: FlowGate's key for the provider, or the client's own.

Order: a key in the config (`providers.X.api_key`), then the vault's key for the
provider; either replaces whatever the client sent. Without one, the client's own
provider key goes through if `security.allow_client_keys` allows it. A FlowGate
caller token (`fgt_…`) is never forwarded.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable
from pathlib import Path

from mitmproxy import http

from flowgate_addon.providers import Provider
from flowgate_addon.security.tokens import KEY_HEADERS, is_caller_token
from flowgate_addon.security.vault import Vault, VaultError, write_private

log = logging.getLogger("flowgate")

PASSWORD_ENV = "FLOWGATE_MASTER_PASSWORD"
# Headers that carry a provider credential (or a caller token) in some wire format.
_SCANNED = frozenset(n.encode() for n in (*KEY_HEADERS, "proxy-authorization"))


def credential_fields(headers: http.Headers) -> dict[str, str]:
    """The credential headers a request carries (lower-case names), in one pass.

    Cheaper than a case-insensitive lookup per header name, on every request.
    """
    return {
        name.lower().decode(): value.decode("latin-1")
        for name, value in headers.fields
        if name.lower() in _SCANNED
    }


# Set by `flowgate start` after asking for the password on its terminal, for the
# addon running in the same process.
preset_master_key: bytes | None = None


def read_master_key(path: Path) -> bytes:
    try:
        return base64.b64decode(path.read_text().strip(), validate=True)
    except ValueError:
        raise VaultError(f"{path} is not a FlowGate master-key file") from None
    except OSError as exc:
        raise VaultError(f"cannot read the master-key file {path}: {exc.strerror}") from None


def write_master_key(path: Path, vault: Vault) -> None:
    """Save the unlocked vault's derived key (base64, mode 0600) for unattended starts."""
    write_private(path, base64.b64encode(vault.master_key()) + b"\n")


def init_vault(vault: Vault, password: str, master_key_path: Path | None) -> None:
    """Create the vault (and the master-key file, when one is configured)."""
    vault.init(password)
    if master_key_path:
        write_master_key(master_key_path, vault)


def change_master_password(vault: Vault, old: str, new: str, master_key_path: Path | None) -> None:
    """Re-encrypt every key under a new password (and rewrite a configured master-key file)."""
    vault.change_password(old, new)
    if master_key_path:
        write_master_key(master_key_path, vault)


class NoCredential(Exception):
    """The request needs a provider key that FlowGate cannot supply; the message says why."""


def unlock_vault(vault: Vault, master_key_path: Path | None) -> str | None:
    """Unlock from the environment, a master-key file or a preset key; the reason if not."""
    if not vault.exists:
        return None
    try:
        if password := os.environ.get(PASSWORD_ENV):
            vault.unlock(password)
        elif master_key_path is not None and master_key_path.exists():
            vault.unlock_with_key(read_master_key(master_key_path))
        elif preset_master_key is not None:
            vault.unlock_with_key(preset_master_key)
        else:
            return (
                f"the vault ({vault.path}) is locked: start FlowGate with {PASSWORD_ENV} set, "
                "set security.master_key_path, or run `flowgate start` in a terminal to be "
                "asked for the master password"
            )
    except VaultError as exc:
        log.warning("FlowGate vault: %s", exc)  # an error here would stop mitmdump
        return f"the vault ({vault.path}) could not be unlocked: {exc}"
    log.info("FlowGate vault unlocked (%s)", vault.path)
    return None


class Credentials:
    def __init__(
        self,
        vault: Vault,
        allow_client_keys: bool,
        locked_reason: str | None,
        learn_secret: Callable[[str], None] = lambda _: None,
    ):
        self.vault = vault
        self.allow_client_keys = allow_client_keys
        self.locked_reason = locked_reason
        self._learn_secret = learn_secret  # so the log redacts every key FlowGate used
        self._learned: set[str] = set()

    def apply(self, request: http.Request, provider: Provider, client_key_ok: bool = True) -> None:
        """Put the right credential on an upstream request, or raise NoCredential.

        `client_key_ok` is False when routing chose the provider: a key the client
        meant for one provider must never reach another.
        """
        headers = request.headers
        found = credential_fields(headers)
        secret = provider.api_key or self._vault_key(provider)
        query_key = provider.auth_query is not None and provider.auth_query in request.query
        if secret:
            for name in found:
                if name != "proxy-authorization":
                    del headers[name]
            if query_key:
                del request.query[provider.auth_query]
            headers[provider.auth_header] = provider.auth_prefix + secret
            return
        presented = bool(query_key)
        for name in found:
            if name == "proxy-authorization":
                continue
            # Every value: a header sent twice must not smuggle a caller token through.
            values = headers.get_all(name)
            kept = [v for v in values if client_key_ok and not is_caller_token(name, v)]
            if len(kept) != len(values):
                headers.set_all(name, kept)
            presented = presented or bool(kept)
        if presented and self.allow_client_keys:
            return
        if not client_key_ok:
            raise NoCredential(
                f"smart routing chose provider {provider.name}, and FlowGate holds no key for "
                f"it (your own key is only sent to the provider you asked for): add one with "
                f"`flowgate add-key {provider.name}`"
            )
        raise NoCredential(self._why(provider, presented))

    def key_for(self, provider: Provider) -> str | None:
        """FlowGate's own key for a provider (config, then vault), for its own calls."""
        try:
            return provider.api_key or self._vault_key(provider)
        except NoCredential:
            return None

    def _vault_key(self, provider: Provider) -> str | None:
        if not self.vault.unlocked:
            return None
        try:
            secret = self.vault.get(provider.name)
        except VaultError as exc:
            raise NoCredential(str(exc)) from None
        if secret and secret not in self._learned:  # also a key replaced while running
            self._learn_secret(secret)
            self._learned.add(secret)
        return secret

    def _why(self, provider: Provider, presented: bool) -> str:
        if self.locked_reason and self.vault.has_key(provider.name):
            return self.locked_reason
        if presented:  # allow_client_keys is off
            return (
                f"FlowGate holds no key for provider {provider.name} and does not forward "
                f"clients' own keys (security.allow_client_keys is false): add one with "
                f"`flowgate add-key {provider.name}`"
            )
        return (
            f"FlowGate holds no key for provider {provider.name}: add one with "
            f"`flowgate add-key {provider.name}`, or send your own provider key"
        )
