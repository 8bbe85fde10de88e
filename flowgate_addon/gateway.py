"""Request side of a call: read it once, decide where it goes, rewrite it.

Gateway (reverse-mode) requests arrive at FlowGate's own `/v1` base URL and
are sent to the provider that serves the model. Forward-proxy (regular-mode)
requests already name a provider host; they keep it and are observed.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mitmproxy import http

from flowgate_addon.apis import openai, wire_format
from flowgate_addon.config import Settings
from flowgate_addon.errors import error_response
from flowgate_addon.pricing import PriceBook
from flowgate_addon.providers import Provider, ProviderRegistry
from flowgate_addon.record import CallRecord
from flowgate_addon.security.credentials import Credentials, NoCredential

SESSION_HEADER = "x-flowgate-session"
AGENT_HEADER = "x-flowgate-agent"
FLOWGATE_HEADER_PREFIX = b"x-flowgate-"
API_PREFIX = "/v1"
# Endpoints whose request body must be a JSON object naming a model.
MODEL_ENDPOINTS = {"chat.completions", "embeddings", "completions", "responses"}


class Gateway:
    def __init__(
        self,
        settings: Settings,
        registry: ProviderRegistry,
        prices: PriceBook,
        credentials: Credentials,
    ):
        self.settings = settings
        self.registry = registry
        self.credentials = credentials
        self.models = model_list(settings, registry, prices)
        self._models_body = json.dumps({"object": "list", "data": self.models}).encode()
        self._models_by_id = {m["id"]: m for m in self.models}

    # --- gateway (reverse mode) ----------------------------------------------------------

    def gateway_request(self, flow: http.HTTPFlow) -> CallRecord | None:
        request = flow.request
        path, _, query = request.path.partition("?")
        if path != API_PREFIX and not path.startswith(API_PREFIX + "/"):
            flow.response = error_response(
                404,
                f"FlowGate serves the OpenAI API under {API_PREFIX}/ "
                f"(for example POST {API_PREFIX}/chat/completions); {path} is not part of it.",
                "not_found",
            )
            return None
        api_path = path[len(API_PREFIX) :]
        if api_path == "/models" or api_path.startswith("/models/"):
            record = self._new_record(flow, "gateway", "models")
            self._answer_models(flow, record, api_path)
            return record
        endpoint = openai.endpoint(api_path) or api_path.lstrip("/")
        record = self._new_record(flow, "gateway", endpoint)
        body = self._read_body(flow, record)
        if flow.response:
            return record
        model = record.requested_model = openai.request_model(api_path, body)
        if endpoint in MODEL_ENDPOINTS and request.method == "POST" and not model:
            self._fail(flow, record, 400, "you must provide a model parameter", "missing_model")
            return record
        routed = self._skill_model(record) or model
        provider, upstream_model = (
            self.registry.for_model(routed) if routed else (self.registry.default, None)
        )
        record.routed_model = upstream_model
        if body is not None and upstream_model and upstream_model != model:
            body["model"] = upstream_model
            record.body_changed = True
        self._prepare(flow, record, provider, body, api_path, query)
        self._send_to(flow, record, provider, api_path, query)
        return record

    def _answer_models(self, flow: http.HTTPFlow, record: CallRecord, api_path: str) -> None:
        record.local = True
        record.provider = "flowgate"
        record.host = None
        if flow.request.method != "GET":
            self._fail(flow, record, 405, f"use GET for {API_PREFIX}/models", "method_not_allowed")
            return
        if api_path == "/models":
            flow.response = http.Response.make(
                200, self._models_body, {"content-type": "application/json"}
            )
            return
        model_id = api_path[len("/models/") :]
        record.requested_model = model_id
        if model := self._models_by_id.get(model_id):
            flow.response = http.Response.make(
                200, json.dumps(model).encode(), {"content-type": "application/json"}
            )
        else:
            self._fail(
                flow, record, 404, f"The model '{model_id}' does not exist", "model_not_found"
            )

    def _skill_model(self, record: CallRecord) -> str | None:
        skill = self.settings.skills.get(record.agent or "")
        if skill is None:
            return None
        record.strategy = "skill"
        return skill.model

    # --- forward proxy (regular mode) ----------------------------------------------------

    def proxy_request(self, flow: http.HTTPFlow) -> CallRecord | None:
        """Observe a call to a known provider address; anything else is not ours.

        The call keeps its provider; if the config moved that provider's base URL,
        it is sent there.
        """
        request = flow.request
        path, _, query = request.path.partition("?")
        found = self.registry.for_address(request.pretty_host, request.port, path)
        if found is None:
            return None
        provider, api_path = found
        fmt = wire_format(provider.api)
        endpoint = fmt.endpoint(api_path) or api_path.lstrip("/")
        record = self._new_record(flow, "proxy", endpoint)
        body = self._read_body(flow, record)
        if flow.response:
            return record
        record.requested_model = record.routed_model = fmt.request_model(api_path, body)
        self._prepare(flow, record, provider, body, api_path, query)
        self._send_to(flow, record, provider, api_path, query)
        return record

    # --- shared --------------------------------------------------------------------------

    def _send_to(
        self,
        flow: http.HTTPFlow,
        record: CallRecord,
        provider: Provider,
        api_path: str,
        query: str,
    ) -> None:
        """Point the request at the provider's upstream, with the right credential."""
        request, upstream = flow.request, provider.upstream
        # Setting host or port rewrites the Host header: skip it when nothing changes.
        if request.scheme != upstream.scheme:
            request.scheme = upstream.scheme
        if request.host != upstream.host:
            request.host = upstream.host
        if request.port != upstream.port:
            request.port = upstream.port
        record.host = upstream.host
        path = upstream.path + api_path + (f"?{query}" if query else "")
        if request.path != path:
            request.path = path
        try:  # last: it may also edit the query (Gemini's ?key=)
            self.credentials.apply(request, provider)
        except NoCredential as exc:
            self._fail(flow, record, 503, str(exc), "no_provider_key")

    def _new_record(self, flow: http.HTTPFlow, mode: str, endpoint: str) -> CallRecord:
        request = flow.request
        meta = _pop_flowgate_headers(request.headers)
        peer = flow.client_conn.peername
        return CallRecord(
            t_start=request.timestamp_start or time.time(),
            mode=mode,
            client_ip=peer[0] if peer else None,
            method=request.method,
            path=request.path.partition("?")[0],
            endpoint=endpoint,
            host=request.host,
            session=meta.get(SESSION_HEADER),
            agent=meta.get(AGENT_HEADER),
        )

    def _read_body(self, flow: http.HTTPFlow, record: CallRecord) -> dict[str, Any] | None:
        """Parse the JSON body once; a body that must be JSON and is not gets a 400."""
        raw = flow.request.raw_content
        if not raw or flow.request.method != "POST":
            return None
        record.request_body = raw
        if flow.request.headers.get("content-encoding"):
            raw = flow.request.get_content(strict=False) or b""
            record.request_body = raw
        try:
            body = json.loads(raw)
        except ValueError as exc:
            if record.endpoint in MODEL_ENDPOINTS:
                self._fail(
                    flow, record, 400, f"the request body is not valid JSON: {exc}", "invalid_json"
                )
            return None
        if not isinstance(body, dict):
            if record.endpoint in MODEL_ENDPOINTS:
                self._fail(
                    flow, record, 400, "the request body must be a JSON object", "invalid_json"
                )
            return None
        user = body.get("user")
        record.end_user = user if isinstance(user, str) else None
        return body

    def _prepare(
        self,
        flow: http.HTTPFlow,
        record: CallRecord,
        provider: Provider,
        body: dict[str, Any] | None,
        api_path: str,
        query: str,
    ) -> None:
        """Streams: uncompressed, with usage asked for where needed; write back a changed body."""
        record.provider = provider.name
        record.api = provider.api
        if wire_format(provider.api).is_stream(api_path, query, body):
            record.stream = True
            # Chunks must be readable as they pass; compression would hide them.
            flow.request.headers["accept-encoding"] = "identity"
        if record.stream and body is not None and provider.api == "openai":
            options = body.get("stream_options")
            wants_usage = isinstance(options, dict) and options.get("include_usage") is True
            if (
                record.endpoint == "chat.completions"
                and provider.stream_usage
                and not wants_usage
                and (options is None or isinstance(options, dict))
            ):
                body["stream_options"] = {**(options or {}), "include_usage": True}
                record.strip_usage = True
                record.body_changed = True
        if record.body_changed and body is not None:
            flow.request.content = json.dumps(body, ensure_ascii=False).encode()

    @staticmethod
    def _fail(
        flow: http.HTTPFlow, record: CallRecord, status: int, message: str, code: str
    ) -> None:
        record.local = True
        record.error = message
        flow.response = error_response(status, message, code)


def _pop_flowgate_headers(headers: http.Headers) -> dict[str, str]:
    """Remove `x-flowgate-*` headers, returning them; one pass over the raw fields."""
    found = {
        name.decode("latin-1").lower(): value.decode("utf-8", "replace")
        for name, value in headers.fields
        if name[:11].lower() == FLOWGATE_HEADER_PREFIX
    }
    for name in found:
        del headers[name]
    return found


def model_list(
    settings: Settings, registry: ProviderRegistry, prices: PriceBook
) -> list[dict[str, Any]]:
    """Every model FlowGate can route to: configured ones, then the price map's."""
    seen: dict[str, dict[str, Any]] = {}

    def add(model_id: str, owner: str) -> None:
        seen.setdefault(
            model_id, {"id": model_id, "object": "model", "created": 0, "owned_by": owner}
        )

    for provider in registry.providers.values():
        for model in provider.models:
            add(model, provider.name)
    for provider in registry.providers.values():
        # Only providers the gateway can forward chat-completions traffic to (for now,
        # OpenAI-format ones) offer their price-map models here.
        if provider.price_provider and provider.api == "openai":
            for model in prices.models_for(provider.price_provider):
                add(model, provider.name)
    return list(seen.values())
