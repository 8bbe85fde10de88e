"""Pass an SSE response on chunk by chunk while keeping a copy for the log.

When FlowGate itself asked upstream for `stream_options.include_usage`, it
also undoes that request's visible effects so the client gets exactly the
stream it asked for: the final usage-only chunk is dropped and the
`"usage":null` member OpenAI adds to every other chunk is removed. Only then
must a partial event wait for the rest of its bytes; otherwise every chunk
goes on untouched the moment it arrives.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from flowgate_addon.apis.common import json_object

if TYPE_CHECKING:
    from flowgate_addon.record import CallRecord

_EVENT_SPLIT = re.compile(rb"(\r?\n\r?\n)")
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,')


class StreamTap:
    """A `flow.response.stream` callable."""

    __slots__ = ("_pending", "record", "strip_usage")

    def __init__(self, record: CallRecord, strip_usage: bool):
        self.record = record
        self.strip_usage = strip_usage
        self._pending = b""

    def __call__(self, chunk: bytes) -> bytes | list[bytes]:
        record = self.record
        if not chunk:
            record.t_end = time.time()
            rest, self._pending = self._pending, b""
            return [rest] if rest else []
        if record.t_first is None:
            record.t_first = time.time()
        record.chunks.append(chunk)
        if not self.strip_usage:
            return chunk
        data = self._pending + chunk
        cut = _end_of_last_event(data)
        if not cut:
            self._pending = data
            return []
        complete, self._pending = data[:cut], data[cut:]
        out = _strip_usage(complete)
        return [out] if out else []


def _end_of_last_event(data: bytes) -> int:
    """Offset just past the last complete SSE event in `data` (0: none yet)."""
    lf, crlf = data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def _strip_usage(events: bytes) -> bytes:
    parts = _EVENT_SPLIT.split(events)
    out = []
    for i in range(0, len(parts) - 1, 2):
        event, separator = parts[i], parts[i + 1]
        if b'"usage"' in event:
            if _is_usage_only(event):
                # Blank lines before it belong to no event (each ends an empty one): keep them.
                out.append(event[: len(event) - len(event.lstrip(b"\r\n"))])
                continue
            event = _NULL_USAGE.sub(b"", event)
        out.append(event + separator)
    out.append(parts[-1])
    return b"".join(out)


def _is_usage_only(event: bytes) -> bool:
    """The extra chunk include_usage adds: no choices, a usage object."""
    for line in event.splitlines():
        if line.startswith(b"data:"):
            obj = json_object(line[5:])
            return obj is not None and obj.get("choices") == [] and bool(obj.get("usage"))
    return False
