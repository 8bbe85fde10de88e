"""FlowGate as a mitmproxy addon: `mitmdump -s flowgate_addon/addon.py`.

Hooks only; the work is done by the modules they delegate to. The request hook
decides and rewrites (gateway.py), responseheaders tees SSE streams
(streaming.py), response/error hand the finished call to the log writer
(store.py), which builds and inserts rows on its own thread (record.py).

An upstream silent for `server.upstream_timeout_s` is cut off, and a failed one
answered with FlowGate's error rather than mitmproxy's page (upstream_faults.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import time
from collections.abc import Awaitable

from mitmproxy import connection, ctx, exceptions, http, tls
from mitmproxy.proxy.mode_specs import ProxyMode, RegularMode, ReverseMode

from flowgate_addon.bridge import Bridge
from flowgate_addon.config import ConfigError, Settings, console_file, load_settings
from flowgate_addon.errors import error_response
from flowgate_addon.gateway import Gateway
from flowgate_addon.loop_errors import quiet_cancelled_connections
from flowgate_addon.pricing import PriceBook
from flowgate_addon.providers import ProviderRegistry
from flowgate_addon.record import CallRecord, to_row
from flowgate_addon.routing.router import ROUTE_HEADER, build_router
from flowgate_addon.security.access import Access, Refused, is_loopback
from flowgate_addon.security.credentials import Credentials, unlock_vault
from flowgate_addon.security.redact import Redactor
from flowgate_addon.security.tokens import Caller, TokenStore, default_tokens_path
from flowgate_addon.security.unlock import VAULT_PATH, VaultUnlock
from flowgate_addon.security.vault import Vault
from flowgate_addon.settings_watch import SettingsWatch
from flowgate_addon.store import LogWriter
from flowgate_addon.streaming import StreamTap
from flowgate_addon.upstream_faults import SilenceWatch, answer_instead, install_error_answers

METADATA_KEY = "flowgate"
# mitmproxy's flow error when the client closed its connection first.
CLIENT_GONE = "Client disconnected."
log = logging.getLogger("flowgate")


class FlowGate:
    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.gateway: Gateway | None = None
        self.writer: LogWriter | None = None
        self.access: Access | None = None
        self.silence = SilenceWatch(0)
        self.console = SettingsWatch(console_file())
        self.unlock: VaultUnlock | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._allowlist: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []

    def load(self, loader) -> None:
        install_error_answers()
        quiet_cancelled_connections()
        loader.add_option(
            "flowgate_config",
            str,
            "",
            "FlowGate YAML config file (default: $FLOWGATE_CONFIG, else built-in defaults).",
        )

    def configure(self, updated: set[str]) -> None:
        if "flowgate_config" not in updated:
            return
        try:
            settings = load_settings(ctx.options.flowgate_config or None)
        except ConfigError as exc:
            raise exceptions.OptionsError(str(exc)) from None
        logging.getLogger("flowgate").setLevel(settings.logging.level.upper())
        prices = PriceBook(settings.pricing)
        registry = ProviderRegistry.from_config(settings.providers)
        redactor = Redactor(
            settings.logging.redact_patterns,
            secrets=[p.api_key for p in registry.providers.values() if p.api_key],
        )
        writer = LogWriter(
            settings.database.path,
            functools.partial(to_row, prices=prices, log=settings.logging, redact=redactor.redact),
            batch_size=settings.database.batch_size,
            flush_interval=settings.database.flush_interval_ms / 1000,
            max_backlog=settings.database.max_backlog,
            retention_days=settings.logging.retention_days,
            max_db_mb=settings.logging.max_db_mb,
        )
        try:
            writer.start()
        except Exception as exc:
            raise exceptions.OptionsError(
                f"cannot open the log database {settings.database.path}: {exc}"
            ) from None
        if self.writer is not None:
            self.writer.stop()
        self.writer = writer
        self.silence.close()
        self.silence = SilenceWatch(settings.server.upstream_timeout_s)
        listen_hosts = [
            ProxyMode.parse(spec).listen_host(ctx.options.listen_host) for spec in ctx.options.mode
        ]
        access = Access(TokenStore(default_tokens_path()), not all(map(is_loopback, listen_hosts)))
        if problem := access.open_mode_problem(listen_hosts):
            raise exceptions.OptionsError(problem)
        self.access = access
        vault = Vault(settings.security.vault_path)
        locked = unlock_vault(vault, settings.security.master_key_path)
        credentials = Credentials(
            vault, settings.security.allow_client_keys, locked, redactor.add_secret
        )
        self.unlock = VaultUnlock(credentials)
        try:
            self._use(settings, self._build(settings, credentials))
        except ValueError as exc:
            raise exceptions.OptionsError(f"invalid config: {exc}") from None
        self.console = SettingsWatch(console_file())
        log.info("FlowGate logging to %s", settings.database.path)

    @staticmethod
    def _build(settings: Settings, credentials: Credentials) -> Gateway:
        """The request side from settings: providers, resolver, router, gateway.

        ValueError names a setting that cannot work (a tier's model nobody serves).
        """
        router = build_router(settings, credentials.key_for)
        resolver, registry = router.resolver, router.resolver.registry
        bridge = None
        if any(p.openai_compatible is None for p in registry.providers.values()):
            ca_file = settings.security.upstream_ca_file
            bridge = Bridge(registry.providers, str(ca_file) if ca_file else None)
        return Gateway(settings, registry, resolver, router, credentials, bridge)

    def _reload(self) -> None:
        """Apply settings the console saved, built off the event loop; bad ones change nothing."""
        if self._reloading is not None:
            return  # the build under way reads the newest file when it starts
        credentials = self.gateway.credentials  # the vault stays unlocked as it was

        async def reload() -> None:
            try:
                settings = await asyncio.to_thread(
                    load_settings, ctx.options.flowgate_config or None
                )
                gateway = await asyncio.to_thread(self._build, settings, credentials)
            except (ConfigError, ValueError) as exc:
                log.error("FlowGate kept its settings; the console's new ones cannot work: %s", exc)
            else:
                self._use(settings, gateway)
                log.info("FlowGate applied the settings saved from the console")
            finally:
                self._reloading = None

        with contextlib.suppress(RuntimeError):  # no event loop: unit tests drive hooks
            self._reloading = asyncio.get_running_loop().create_task(reload())

    def _use(self, settings: Settings, gateway: Gateway) -> None:
        if self.gateway is not None:
            self.gateway.close()
        self.settings, self.gateway = settings, gateway
        self._allowlist = [
            ipaddress.ip_network(n, strict=False) for n in settings.security.ip_allowlist
        ]

    def client_connected(self, client: connection.Client) -> None:
        """Forward proxy: refuse clients outside the allowlist before they can tunnel anywhere."""
        if (
            self._allowlist
            and isinstance(client.proxy_mode, RegularMode)
            and not self._allowed(client.peername)
        ):
            client.error = "client address not in FlowGate's security.ip_allowlist"

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if flow.response or self.gateway is None:
            return
        if self.console.changed():
            self._reload()
        if self._allowlist and not self._allowed(flow.client_conn.peername):
            flow.response = error_response(
                403,
                "this client address is not in FlowGate's security.ip_allowlist",
                "ip_not_allowed",
            )
            return
        gateway = isinstance(flow.client_conn.proxy_mode, ReverseMode)
        if gateway and flow.request.path == VAULT_PATH:  # the console; the password is the key
            return self.unlock.handle(flow)
        try:
            caller = self.access.caller(
                flow.request.headers, None if gateway else flow.client_conn.id
            )
        except Refused as refused:
            # Plain-HTTP proxy clients are asked for proxy credentials; others get a 401.
            flow.response = refused.response(proxy=not gateway and not flow.client_conn.tls)
            return
        handle = self.gateway.gateway_request if gateway else self.gateway.proxy_request
        result = handle(flow)
        if isinstance(result, CallRecord) or result is None:
            self._keep(flow, result, caller)
            return None
        return self._keep_later(flow, result, caller)  # mitmproxy awaits it

    async def _keep_later(
        self, flow: http.HTTPFlow, pending: Awaitable[CallRecord], caller: Caller | None
    ) -> None:
        self._keep(flow, await pending, caller)

    def _keep(self, flow: http.HTTPFlow, record: CallRecord | None, caller: Caller | None) -> None:
        if record is not None:
            record.caller = caller.name if caller else None
            flow.metadata[METADATA_KEY] = record
            if flow.response is None and not record.local:
                self.silence.watch(flow, record)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """Forward proxy: check proxy authentication before opening a tunnel."""
        if self.gateway is None:
            return
        try:
            self.access.caller(flow.request.headers, flow.client_conn.id)
        except Refused as refused:
            flow.response = refused.response(proxy=True)

    def client_disconnected(self, client: connection.Client) -> None:
        if self.gateway is not None:
            self.access.forget(client.id)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        """Forward proxy: open TLS only to LLM API hosts; tunnel everything else untouched."""
        if self.gateway is None or not isinstance(data.context.client.proxy_mode, RegularMode):
            return
        host = data.client_hello.sni
        if not host and data.context.server.address:
            host = data.context.server.address[0]
        if not self.gateway.registry.intercepts(host or ""):
            data.ignore_connection = True

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        record: CallRecord | None = flow.metadata.get(METADATA_KEY)
        if record is None or record.local or flow.response is None:
            return
        if record.route_header:
            flow.response.headers[ROUTE_HEADER] = record.route_header
        record.sse = flow.response.headers.get("content-type", "").startswith("text/event-stream")
        if record.sse or (record.stream and 200 <= flow.response.status_code < 300):
            strip = record.strip_usage and record.sse
            flow.response.stream = StreamTap(record, strip)
            if strip and "content-length" in flow.response.headers:
                # The usage chunk goes, so the length the upstream declared would be wrong and
                # the client would wait for bytes that never come: frame it by chunks instead.
                del flow.response.headers["content-length"]
                if flow.request.http_version == "HTTP/1.1":
                    flow.response.headers["transfer-encoding"] = "chunked"

    def response(self, flow: http.HTTPFlow) -> None:
        record: CallRecord | None = flow.metadata.pop(METADATA_KEY, None)
        if record is None or self.writer is None:
            return
        self.silence.forget(record)
        response = flow.response
        assert response is not None
        record.status = response.status_code
        if not record.chunks:
            record.keep_response(response)
            record.t_first = record.t_first or response.timestamp_start
        record.t_end = record.t_end or response.timestamp_end or time.time()
        self.writer.submit(record)

    def error(self, flow: http.HTTPFlow) -> None:
        record: CallRecord | None = flow.metadata.pop(METADATA_KEY, None)
        if record is None or self.writer is None:
            return
        self.silence.forget(record)
        message = flow.error.msg if flow.error else "connection failed"
        upstream = record.provider or record.host
        if message == CLIENT_GONE:
            record.client_gone = True
            record.status = flow.response.status_code if flow.response else 499
            record.error = (
                "client disconnected before the response was complete (cancelled)"
                if flow.response
                else "client disconnected before the upstream answered (cancelled)"
            )
        elif record.timed_out:  # the silence watch cut it off; record.error says why
            record.status = flow.response.status_code if flow.response else 504
        elif flow.response is None:
            record.status = 502
            record.error = f"could not reach {upstream}: {message}"
            address = f"{flow.request.host}:{flow.request.port}"
            if address not in message:
                record.error += f" (upstream {flow.request.scheme}://{address})"
        else:
            record.status = flow.response.status_code
            record.error = f"upstream {upstream} broke off the response: {message}"
        if flow.response is not None and not record.chunks:
            record.keep_response(flow.response)
        if flow.response is None and message != CLIENT_GONE:
            code = "upstream_timeout" if record.timed_out else "upstream_unreachable"
            answer_instead(flow, error_response(record.status, record.error or message, code))
        record.t_end = time.time()
        self.writer.submit(record)

    def done(self) -> None:
        self.silence.close()
        if self.gateway is not None:
            self.gateway.close()
        if self.writer is not None:
            self.writer.stop()
            self.writer = None

    def _allowed(self, peer: tuple[str, int] | None) -> bool:
        if not peer:
            return False
        address = ipaddress.ip_address(peer[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self._allowlist)


addons = [FlowGate()]
