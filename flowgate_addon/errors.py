"""Errors FlowGate itself answers with, in the OpenAI error shape."""

from __future__ import annotations

import json

from mitmproxy import http

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_error",
}


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    error = {"message": message, "type": _TYPES.get(status, "api_error"), "code": code}
    return json.dumps({"error": error}).encode()


def error_response(status: int, message: str, code: str | None = None) -> http.Response:
    """`{"error": {"message", "type", "code"}}` with a fitting status."""
    return http.Response.make(
        status,
        error_body(status, message, code),
        {"content-type": "application/json", "x-flowgate-error": "1"},
    )
