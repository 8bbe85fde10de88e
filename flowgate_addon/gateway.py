"""Request side of a call: read it once, decide where it goes, rewrite it.

Gateway (reverse-mode) requests arrive at FlowGate's own `/v1` base URL and
are sent to the provider that serves the model. Forward-proxy (regular-mode)
requests already name a provider host; they keep it and are observed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from flowgate_addon.apis import openai, wire_format
from flowgate_addon.bridge import TOKEN_HEADER as BRIDGE_TOKEN_HEADER
from flowgate_addon.bridge import Bridge
from flowgate_addon.config import Settings
from flowgate_addon.errors import error_response
from flowgate_addon.providers import Provider, ProviderRegistry, is_pattern
from flowgate_addon.record import CallRecord
from flowgate_addon.resolve import ModelResolver
from flowgate_addon.routing import Decision
from flowgate_addon.routing.router import (
    ALIAS,
    OPT_OUT_HEADER,
    OPT_OUT_VALUES,
    ROUTABLE_ENDPOINTS,
    Router,
    route_header,
    unknown_model_message,
)
from flowgate_addon.security.credentials import Credentials, NoCredential

SESSION_HEADER = "x-flowgate-session"
AGENT_HEADER = "x-flowgate-agent"
FLOWGATE_HEADER_PREFIX = b"x-flowgate-"
API_PREFIX = "/v1"
# Endpoints whose request body must be a JSON object naming a model.
MODEL_ENDPOINTS = {"chat.completions", "embeddings", "completions", "responses"}


@dataclass(slots=True)
class Call:
    """One gateway request on its way through the decision steps."""

    flow: http.HTTPFlow
    record: CallRecord
    body: dict[str, Any] | None
    api_path: str
    query: str


class Gateway:
    def __init__(
        self,
        settings: Settings,
        registry: ProviderRegistry,
        resolver: ModelResolver,
        router: Router,
        credentials: Credentials,
        bridge: Bridge | None = None,
    ):
        self.settings = settings
        self.bridge = bridge
        self.registry = registry
        self.resolver = resolver
        self.router = router
        self.credentials = credentials
        self._models_version = -1
        self._refresh_models()

    def close(self) -> None:
        """Release what the gateway holds open (classifier thread, LiteLLM bridge)."""
        if self.router.classifier is not None:
            self.router.classifier.close()
        if self.bridge is not None:
            self.bridge.close()

    # --- gateway (reverse mode) ----------------------------------------------------------

    def gateway_request(self, flow: http.HTTPFlow) -> CallRecord | Awaitable[CallRecord] | None:
        """Decide and rewrite a gateway call; awaitable when a classifier must be asked."""
        request = flow.request
        path, _, query = request.path.partition("?")
        if path == "/" and request.method == "GET":  # a browser at the gateway: the dashboard
            flow.response = self._to_dashboard(flow)
            return None
        if path != API_PREFIX and not path.startswith(API_PREFIX + "/"):
            flow.response = error_response(
                404,
                f"FlowGate serves the OpenAI API under {API_PREFIX}/ "
                f"(for example POST {API_PREFIX}/chat/completions); {path} is not part of it.",
                "not_found",
            )
            return None
        api_path = path[len(API_PREFIX) :]
        self.resolver.refresh()  # a catalog sync since the last request?
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
        call = Call(flow, record, body, api_path, query)
        if not model:  # files, batches …: the default provider's business
            self._forward(call, self.registry.default, None)
            return record  # not chat completions: never bridged
        if skill := self._skill_model(record):
            model = skill
        elif self.router.routes(model):
            if record.route_opt_out or body is None or endpoint not in ROUTABLE_ENDPOINTS:
                if model == ALIAS:
                    why = (
                        "it opted out of routing"
                        if record.route_opt_out
                        else f"{endpoint} requests are not routed"
                    )
                    self._fail(
                        flow,
                        record,
                        400,
                        f"the model {ALIAS!r} asks FlowGate to choose a model, but {why}; "
                        "name a model instead",
                        "model_not_routable",
                    )
                    return record
                record.strategy = "opt-out" if record.route_opt_out else None
            else:
                decision = self.router.decide(body)
                if isinstance(decision, Decision):
                    return _then(self._routed(call, decision), record)
                return self._routed_later(call, decision)
        elif model == ALIAS:
            self._fail(
                flow,
                record,
                400,
                f"the model {ALIAS!r} asks FlowGate to choose a model, but smart routing is off "
                "(set smart_router.enabled: true and a strategy)",
                "routing_disabled",
            )
            return record
        found = self.resolver.resolve(model)
        if found is None:
            self._fail(flow, record, 400, unknown_model_message(model), "model_not_found")
            return record
        provider, upstream_model = found
        return _then(self._forward(call, provider, upstream_model), record)

    async def _routed_later(self, call: Call, pending: Awaitable[Decision]) -> CallRecord:
        if bridging := self._routed(call, await pending):
            await bridging
        return call.record

    def _routed(self, call: Call, decision: Decision) -> Awaitable[None] | None:
        record = call.record
        requested = record.requested_model
        try:
            model, provider, upstream_model = self.router.target(decision)
        except LookupError as exc:
            self._fail(call.flow, record, 503, str(exc), "routing_target_unknown")
            return None
        record.decision = decision
        record.strategy = decision.strategy
        record.route_header = route_header(decision, model, provider.name)
        baseline = self.router.baseline if requested == ALIAS else requested
        if baseline and (found := self.resolver.resolve(baseline)):
            record.baseline_model, record.baseline_price_key = found[1], found[0].price_key
        # A client's own key is for the provider it asked for, never for one routing chose.
        own = self.resolver.resolve(requested) if requested and requested != ALIAS else None
        record.client_key_ok = own is not None and own[0].name == provider.name
        return self._forward(call, provider, upstream_model)

    def _forward(
        self, call: Call, provider: Provider, upstream_model: str | None
    ) -> Awaitable[None] | None:
        """Send a gateway call (OpenAI format) to the provider's OpenAI-compatible API.

        Providers without one get chat completions through the LiteLLM bridge, which
        may have to start first (the returned awaitable).
        """
        flow, record, body = call.flow, call.record, call.body
        record.routed_model = upstream_model
        compatible = provider.openai_compatible
        if compatible is None:
            if record.endpoint != "chat.completions" or self.bridge is None:
                self._fail(
                    flow,
                    record,
                    400,
                    f"provider {provider.name} has no OpenAI-compatible API; FlowGate translates "
                    f"only chat completions for it (this was {record.endpoint})",
                    "provider_not_compatible",
                )
                return None
            if self.bridge.port is None:
                return self._bridged_later(call, provider)
            compatible = self.bridge.endpoint(provider)
            flow.request.headers[BRIDGE_TOKEN_HEADER] = self.bridge.token
        if body is not None and upstream_model and upstream_model != body.get("model"):
            body["model"] = upstream_model
            record.body_changed = True
        self._prepare(flow, record, compatible, body, call.api_path, call.query)
        self._send_to(flow, record, compatible, call.api_path, call.query)
        if compatible is not provider.openai_compatible:
            record.host = provider.upstream.host  # the bridge is FlowGate; log where it went
        return None

    async def _bridged_later(self, call: Call, provider: Provider) -> None:
        assert self.bridge is not None
        await self.bridge.start()
        self._forward(call, provider, call.record.routed_model)

    def _refresh_models(self) -> None:
        self.models = model_list(self.resolver, self.router)
        self._models_body = json.dumps({"object": "list", "data": self.models}).encode()
        self._models_by_id = {m["id"]: m for m in self.models}
        self._models_version = self.resolver.version

    def _to_dashboard(self, flow: http.HTTPFlow) -> http.Response:
        """A redirect to the UI's overview, at the address the browser reached FlowGate on.

        That is the listening socket's address: in reverse mode mitmproxy has already
        rewritten the Host header to the upstream's.
        """
        address = flow.client_conn.sockname[0] if flow.client_conn.sockname else ""
        host = address or self.settings.server.host
        if ":" in host:  # IPv6
            host = f"[{host}]"
        url = f"http://{host}:{self.settings.server.ui_port}/-/dashboards/overview"
        return http.Response.make(302, f"FlowGate's dashboard: {url}\n".encode(), {"location": url})

    def _answer_models(self, flow: http.HTTPFlow, record: CallRecord, api_path: str) -> None:
        record.local = True
        record.provider = "flowgate"
        record.host = None
        if flow.request.method != "GET":
            self._fail(flow, record, 405, f"use GET for {API_PREFIX}/models", "method_not_allowed")
            return
        if self.resolver.version != self._models_version:
            self._refresh_models()
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
            self.credentials.apply(request, provider, record.client_key_ok)
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
            route_opt_out=meta.get(OPT_OUT_HEADER, "").strip().lower() in OPT_OUT_VALUES,
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
        except (ValueError, RecursionError) as exc:  # not JSON, or nested past any sense
            if record.endpoint in MODEL_ENDPOINTS:
                why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
                self._fail(
                    flow, record, 400, f"the request body is not valid JSON: {why}", "invalid_json"
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
        record.price_key = provider.price_key
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


def _then(
    pending: Awaitable[None] | None, record: CallRecord
) -> CallRecord | Awaitable[CallRecord]:
    """The record now, or once the pending step (starting the bridge) is done."""
    if pending is None:
        return record

    async def finish() -> CallRecord:
        await pending
        return record

    return finish()


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


def model_list(resolver: ModelResolver, router: Router) -> list[dict[str, Any]]:
    """Every model the gateway can name: aliases, configured models, then the catalog.

    A provider with no synced catalog is represented by the price map's models for it.
    """
    seen: dict[str, dict[str, Any]] = {}

    def add(model_id: str, owner: str) -> None:
        seen.setdefault(
            model_id, {"id": model_id, "object": "model", "created": 0, "owned_by": owner}
        )

    for alias in sorted(router.names):
        add(alias, "flowgate")
    providers = resolver.registry.providers.values()
    for provider in providers:
        for model in provider.models:
            if not is_pattern(model):
                add(model, provider.name)
    synced = set()
    for name, model in resolver.catalog_models():
        add(model, name)
        synced.add(name)
    for provider in providers:
        if provider.name not in synced and provider.openai_compatible is not None:
            for model in resolver.prices.models_for(provider.price_key):
                add(model, provider.name)
    return list(seen.values())
