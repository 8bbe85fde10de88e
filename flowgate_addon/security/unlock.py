"""The running proxy's vault, as the operator console sees and unlocks it.

A FlowGate started without its master password runs with the vault locked; the
console (another process) unlocks it through the gateway listener:

- `GET  /-/flowgate/vault`: `{"exists", "unlocked", "problem"}` — never a key;
- `POST /-/flowgate/vault` with `{"password": …}`: unlock it (also after the password
  was changed, when the proxy still holds the old derived key).

Only loopback clients are answered (the console runs beside the proxy); the password
is the authentication, so wrong ones are throttled as at the console's sign-in.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable

from mitmproxy import http

from flowgate_addon.errors import error_response
from flowgate_addon.security.access import is_loopback
from flowgate_addon.security.admin import LoginThrottle
from flowgate_addon.security.credentials import Credentials
from flowgate_addon.security.vault import VaultError, WrongPassword

VAULT_PATH = "/-/flowgate/vault"


def _json(status: int, body: dict) -> http.Response:
    return http.Response.make(status, json.dumps(body), {"content-type": "application/json"})


class VaultUnlock:
    def __init__(self, credentials: Credentials):
        self.credentials = credentials
        self.throttle = LoginThrottle()

    def state(self) -> dict:
        vault = self.credentials.vault
        return {
            "exists": vault.exists,
            "unlocked": vault.unlocked,
            "problem": self.credentials.locked_reason,
        }

    def handle(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Answer the flow; an awaitable when a password must be checked (off the loop)."""
        peer = flow.client_conn.peername
        if not peer or not is_loopback(peer[0]):
            flow.response = error_response(
                403, "only FlowGate's console, on this machine", "local_only"
            )
        elif flow.request.method == "GET":
            flow.response = _json(200, self.state())
        elif flow.request.method != "POST":
            flow.response = error_response(405, "GET or POST", "method_not_allowed")
        else:
            return self._unlock(flow)
        return None

    async def _unlock(self, flow: http.HTTPFlow) -> None:
        address = flow.client_conn.peername[0]
        if wait := self.throttle.retry_after(address):
            flow.response = error_response(
                429, f"too many wrong passwords: wait {wait:.0f} s", "throttled"
            )
            return
        try:
            password = json.loads(flow.request.get_content() or b"{}").get("password")
        except (ValueError, AttributeError):
            password = None
        if not isinstance(password, str) or not password:
            flow.response = error_response(400, 'send {"password": "…"}', "missing_password")
            return
        vault = self.credentials.vault
        try:
            await asyncio.to_thread(vault.unlock, password)
        except WrongPassword:
            self.throttle.failed(address)
            flow.response = error_response(401, "that is not the master password", "wrong_password")
            return
        except VaultError as exc:
            flow.response = error_response(503, str(exc), "vault_error")
            return
        self.throttle.succeeded(address)
        self.credentials.locked_reason = None
        flow.response = _json(200, self.state())
