"""Who may use FlowGate: caller tokens, and open mode on loopback only.

With no caller tokens, FlowGate is open — but only while every listener is bound
to a loopback address; a wider bind with no tokens refuses to start (and, should
the last token be revoked while running, refuses requests). Once a token exists,
every request needs one: `Authorization: Bearer fgt_…` or `x-api-key` at the
gateway, proxy authentication at the forward proxy (checked on CONNECT for HTTPS,
then remembered for that client connection).
"""

from __future__ import annotations

import ipaddress

from mitmproxy import http

from flowgate_addon.errors import error_response
from flowgate_addon.security.credentials import credential_fields
from flowgate_addon.security.tokens import Caller, TokenState, TokenStore, extract_token

_REFUSALS = {
    TokenState.UNKNOWN: ("invalid FlowGate caller token", "invalid_token"),
    TokenState.EXPIRED: ("this FlowGate caller token has expired", "token_expired"),
    TokenState.REVOKED: ("this FlowGate caller token has been revoked", "token_revoked"),
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" (every interface) or a name: not loopback


class Refused(Exception):
    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.code = status, code

    def response(self, proxy: bool) -> http.Response:
        if proxy:  # a forward-proxy client must be asked for proxy credentials
            response = error_response(407, str(self), self.code)
            response.headers["proxy-authenticate"] = 'Basic realm="FlowGate"'
            return response
        return error_response(self.status, str(self), self.code)


class Access:
    def __init__(self, tokens: TokenStore, public_bind: bool):
        self.tokens = tokens
        self.public_bind = public_bind
        # Tokens presented on CONNECT, re-checked on every request of that connection so
        # that a revocation takes effect at once even on long-lived tunnels.
        self._connections: dict[str, str] = {}

    def open_mode_problem(self, listen_hosts: list[str]) -> str | None:
        """Why FlowGate must not start as configured, if it must not."""
        if self.public_bind and not self.tokens.has_tokens():
            hosts = ", ".join(h or "every interface" for h in listen_hosts)
            return (
                f"FlowGate would listen on {hosts} with no caller tokens, open to anyone who "
                "can reach it. Create a token first (`flowgate tokens create NAME`) or bind to "
                "127.0.0.1 (server.host)."
            )
        return None

    def caller(self, headers: http.Headers, connection_id: str | None = None) -> Caller | None:
        """The caller a request (or CONNECT) is from; None in open mode; Refused otherwise."""
        found = credential_fields(headers)
        token = extract_token(found)
        if "proxy-authorization" in found:
            del headers["proxy-authorization"]  # never forwarded upstream
        if token is None and connection_id is not None:
            token = self._connections.get(connection_id)
        if token is None:
            if self.tokens.has_tokens() or self.public_bind:
                raise Refused(
                    401,
                    "a FlowGate caller token is required (Authorization: Bearer fgt_…)",
                    "missing_token",
                )
            return None
        result = self.tokens.check(token)
        if not result.ok:
            message, code = _REFUSALS.get(result.state, _REFUSALS[TokenState.UNKNOWN])
            raise Refused(401, message, code)
        if connection_id is not None:
            self._connections[connection_id] = token
        return result.caller

    def forget(self, connection_id: str) -> None:
        self._connections.pop(connection_id, None)
