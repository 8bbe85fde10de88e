"""Chat completions for providers with no OpenAI-compatible API, translated by LiteLLM.

The gateway speaks the OpenAI format. For a provider that does not (a native
Anthropic or Gemini relay), the gateway points the flow at this bridge: a small
HTTP server inside FlowGate's own process, on loopback, that only FlowGate's
flows can use (each carries a per-process secret). It calls the provider through
`litellm.acompletion` and answers in the OpenAI format, JSON or SSE. The flow
itself goes through mitmproxy like any other, so logging, usage and cost work
unchanged. LiteLLM is imported once, off the event loop, when first needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from dataclasses import replace
from typing import Any

from flowgate_addon.errors import error_body
from flowgate_addon.providers import Provider

log = logging.getLogger("flowgate")

TOKEN_HEADER = "x-flowgate-bridge"
# Wire formats the bridge translates; each is also LiteLLM's name for the provider.
LITELLM_FORMATS = frozenset({"anthropic", "gemini"})


class Bridge:
    def __init__(self, providers: dict[str, Provider], ca_file: str | None = None):
        self.providers = {n: p for n, p in providers.items() if p.api in LITELLM_FORMATS}
        self.ca_file = ca_file
        self.token = secrets.token_urlsafe(32)
        self.port: int | None = None
        self._runner: Any = None
        self._litellm: Any = None
        self._lock = asyncio.Lock()

    def endpoint(self, provider: Provider) -> Provider | None:
        """The bridge as an OpenAI-format endpoint for this provider (its own auth header)."""
        if provider.name not in self.providers or self.port is None:
            return None
        return replace(
            provider, api="openai", base_url=f"http://127.0.0.1:{self.port}/{provider.name}"
        )

    async def start(self) -> None:
        """Listen on a free loopback port (idempotent)."""
        from aiohttp import web

        async with self._lock:
            if self._runner is not None:
                return
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_post("/{provider}/chat/completions", self._chat)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.port = None

    async def _import_litellm(self) -> Any:
        if self._litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices
            self._litellm = await asyncio.to_thread(_load_litellm, self.ca_file)
        return self._litellm

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, ""), self.token):
            return _error(web, 403, "not a FlowGate flow", "forbidden")
        provider = self.providers.get(request.match_info["provider"])
        if provider is None:
            return _error(web, 404, "unknown provider", "not_found")
        try:
            body = await request.json()
        except ValueError:
            return _error(web, 400, "the request body is not valid JSON", "invalid_json")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _error(web, 400, "you must provide a model parameter", "missing_model")
        key = request.headers.get(provider.auth_header, "").removeprefix(provider.auth_prefix)
        litellm = await self._import_litellm()
        stream = body.pop("stream", False) is True
        model = f"{provider.api}/{body.pop('model')}"
        try:
            result = await litellm.acompletion(
                model=model,
                api_base=_api_base(provider),
                api_key=key or None,
                stream=stream,
                drop_params=True,
                **body,
            )
            if not stream:
                return web.Response(body=result.model_dump_json(), content_type="application/json")
        except Exception as exc:  # LiteLLM maps provider errors to OpenAI-style exceptions
            status, message = _describe(exc, provider, key)
            return _error(web, status, message, "provider_error")
        return await _stream(web, request, result, provider, key)

    def close(self) -> None:
        """Stop listening (from sync code, e.g. on shutdown or a config reload)."""
        if self._runner is None:
            return
        with contextlib.suppress(RuntimeError):  # no loop any more: the process is ending
            asyncio.get_running_loop().create_task(self.stop())


def _describe(exc: Exception, provider: Provider, key: str) -> tuple[int, str]:
    """An HTTP status and a one-line message for a LiteLLM error, without the key."""
    status = getattr(exc, "status_code", None)
    message = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).splitlines()[0]
    if key:
        message = message.replace(key, "[key]")
    ok = isinstance(status, int) and 400 <= status < 600
    return (status if ok else 502), f"{provider.name}: {message[:500]}"


def _load_litellm(ca_file: str | None) -> Any:
    # Under mitmproxy the root logger is at DEBUG, which LiteLLM's loggers would inherit:
    # debug lines with request details in FlowGate's output, from import on. Warnings only.
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import litellm

    litellm.telemetry = False
    if ca_file:
        litellm.ssl_verify = ca_file
    return litellm


def _api_base(provider: Provider) -> str:
    """LiteLLM adds /v1/messages to Anthropic's base; Gemini's is used as it is."""
    if provider.api == "anthropic":
        return provider.base_url.removesuffix("/v1")
    return provider.base_url


async def _stream(web: Any, request: Any, chunks: Any, provider: Provider, key: str) -> Any:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    try:
        async for chunk in chunks:
            for event in _openai_events(chunk.model_dump(mode="json", exclude_none=True)):
                await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
    except Exception as exc:  # headers are sent: report it as the stream's last event
        status, message = _describe(exc, provider, key)
        error = {"error": {"message": message, "type": "provider_error", "code": status}}
        await response.write(b"data: " + json.dumps(error).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _openai_events(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """A LiteLLM chunk as OpenAI sends it: usage only ever in its own, choice-less chunk."""
    usage = chunk.pop("usage", None)
    events = [chunk] if chunk.get("choices") else []
    if usage:
        events.append({**chunk, "choices": [], "usage": usage})
    return events


def _error(web: Any, status: int, message: str, code: str) -> Any:
    body = error_body(status, message, code)
    return web.Response(status=status, body=body, content_type="application/json")
