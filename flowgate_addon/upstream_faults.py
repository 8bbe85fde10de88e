"""When an upstream fails: cut off one gone silent, answer with FlowGate's error instead.

mitmproxy only ends an idle connection after 10 minutes and answers a failed
upstream with an HTML page. FlowGate does better, through two pieces of mitmproxy's
connection handling it has no public API for (pinned: mitmproxy 11.0):

- `SilenceWatch`: one sweep every few seconds over the calls in flight (not a timer
  per request, which would double FlowGate's own time per call). A call whose
  upstream has sent nothing — no headers yet, or no new stream piece — for
  `server.upstream_timeout_s` is cut off; mitmproxy then ends the flow through the
  error hook. A client that stops reading holds the upstream back too (mitmproxy
  stops reading it): while bytes wait for the client, the upstream is not silent.
- `answer_instead`: the error hook hands mitmproxy FlowGate's OpenAI-shape error,
  which its HTTP/1 layer sends instead of its page (`install_error_answers` wraps
  that layer's send once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.connection import ConnectionState
from mitmproxy.net.http.http1 import assemble_response
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.http import ResponseProtocolError
from mitmproxy.proxy.layers.http._http1 import Http1Server

from flowgate_addon.record import CallRecord


def _handler(flow: http.HTTPFlow) -> Any:
    """mitmproxy's handler of the flow's client connection (None once it is gone)."""
    proxyserver = ctx.master.addons.get("proxyserver")
    return getattr(proxyserver, "connections", {}).get(flow.client_conn.id)


def _client_backlogged(flow: http.HTTPFlow) -> bool:
    """Whether bytes for the client are still waiting to be sent (it stopped reading)."""
    handler = _handler(flow)
    io = handler.transports.get(flow.client_conn) if handler else None
    writer = io.writer if io is not None else None
    return writer is not None and writer.transport.get_write_buffer_size() > 0


class SilenceWatch:
    """Cuts off upstreams silent for longer than `timeout` seconds (0: never)."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        # record id -> [flow, record, progress seen, when it last changed]
        self._calls: dict[int, list[Any]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def watch(self, flow: http.HTTPFlow, record: CallRecord) -> None:
        if self.timeout <= 0:
            return
        self._calls[id(record)] = [flow, record, -1, time.monotonic()]
        if self._sweeper is None:
            with contextlib.suppress(RuntimeError):  # no event loop: unit tests drive hooks
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def forget(self, record: CallRecord) -> None:
        self._calls.pop(id(record), None)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._calls.clear()

    async def _sweep(self) -> None:
        interval = min(self.timeout / 4, 5.0)  # cut off within a quarter of the timeout
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for key, call in list(self._calls.items()):
                flow, record, seen, since = call
                if flow.response is not None and not flow.response.stream:
                    del self._calls[key]  # headers in; a buffered body is mitmproxy's to read
                    continue
                progress = -1 if flow.response is None else len(record.chunks)
                if progress != seen or _client_backlogged(flow):
                    # New data, or a client not reading what it was sent: mitmproxy then
                    # stops reading upstream, which is not the upstream's silence.
                    call[2], call[3] = progress, now
                elif now - since >= self.timeout:
                    del self._calls[key]
                    self._cut_off(flow, record)

    def _cut_off(self, flow: http.HTTPFlow, record: CallRecord) -> None:
        upstream = record.provider or record.host
        record.timed_out = True
        record.error = (
            f"upstream {upstream} did not answer within {self.timeout:g} s"
            if flow.response is None
            else f"upstream {upstream} sent nothing for {self.timeout:g} s; "
            "the response was cut off"
        )
        handler = _handler(flow)
        io = handler.transports.get(flow.server_conn) if handler else None
        if io is not None and io.handler is not None:
            io.handler.cancel("upstream timeout")  # mitmproxy then ends the flow: error hook


def answer_instead(flow: http.HTTPFlow, response: http.Response) -> None:
    """Have mitmproxy send `response` to an HTTP/1 client instead of its HTML error page.

    Called from the error hook, before mitmproxy answers the client. The answer goes
    out through mitmproxy's own layers, so a forward-proxy client inside a TLS
    tunnel gets it encrypted like any response. (HTTP/2 clients get their stream
    reset, as mitmproxy does: there is no page to replace.)
    """
    if not flow.request.http_version.startswith("HTTP/1"):
        return
    response.http_version = flow.request.http_version
    response.headers["connection"] = "close"
    _answers[flow.request] = assemble_response(response)


# request -> the bytes to send instead of mitmproxy's error page for it.
_answers: weakref.WeakKeyDictionary[http.Request, bytes] = weakref.WeakKeyDictionary()


def install_error_answers() -> None:
    """Let `answer_instead` replace mitmproxy's error page (idempotent)."""
    if getattr(Http1Server.send, "flowgate", False):
        return
    page_sender = Http1Server.send

    def send(self: Http1Server, event: Any) -> Any:
        answer = (
            _answers.pop(self.request, None)
            if isinstance(event, ResponseProtocolError) and self.request is not None
            else None
        )
        if answer is None or self.response is not None:
            return (yield from page_sender(self, event))
        if self.conn.state & ConnectionState.CAN_WRITE:
            yield commands.SendData(self.conn, answer)
            yield commands.CloseConnection(self.conn)

    send.flowgate = True  # type: ignore[attr-defined]
    Http1Server.send = send  # type: ignore[method-assign]
