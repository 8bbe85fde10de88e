"""Notice when the operator console saved new settings, cheaply enough for every request."""

from __future__ import annotations

import os
import time
from pathlib import Path


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(modified, size) of a file, None when there is none: changes when it is rewritten."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


class SettingsWatch:
    """Whether a file changed since the last look; looks at most once a second."""

    CHECK_EVERY = 1.0

    def __init__(self, path: Path):
        self.path = path
        self._stamp = file_stamp(path)
        self._next_check = time.monotonic() + self.CHECK_EVERY

    def changed(self) -> bool:
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.CHECK_EVERY
        stamp = file_stamp(self.path)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True
