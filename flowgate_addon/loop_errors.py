"""Keep mitmproxy's shutdown quiet: connections still open at exit are not errors.

When mitmproxy stops with client connections open, asyncio cancels their tasks
after mitmproxy's own exception handler is gone, and Python 3.11's stream
callback reports each cancellation through the `asyncio` logger as an
"Exception in callback … CancelledError" traceback, which would read like a
crash in FlowGate's output. A filter on that logger (not a loop exception
handler: mitmproxy restores its predecessor on the way out) drops just those.
"""

from __future__ import annotations

import asyncio
import logging


class CancelledTaskFilter(logging.Filter):
    """Drops asyncio's reports whose exception is only a cancelled task."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)


def quiet_cancelled_connections() -> None:
    """Install the filter once per process."""
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, CancelledTaskFilter) for f in asyncio_log.filters):
        asyncio_log.addFilter(CancelledTaskFilter())
