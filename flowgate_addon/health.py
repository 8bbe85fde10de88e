"""The log writer's health, kept where the dashboard can read it without the database.

When the log database is locked, read-only, full or broken, the rows cannot say so
themselves. Each FlowGate process's writer keeps a small JSON status file beside the
database (`flowgate.db.status/<host>-<pid>.json`): rows written, waiting, lost, and the
last error. The dashboard reads every file there (several FlowGates may log to one
database) and warns on every page when rows are failing or were lost.

A clean stop with nothing lost removes the file; one that lost rows keeps it, so the
loss stays visible until someone deletes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STALE_AFTER = 30.0  # seconds without an update before a running writer is "not reporting"
HEARTBEAT = 5.0  # how often an idle writer refreshes its file


def status_dir(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".status")


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class WriterStatus:
    """What one writer reports; times are Unix seconds."""

    database: str
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started: float = field(default_factory=time.time)
    updated: float = 0.0
    running: bool = True
    written: int = 0
    waiting: int = 0  # rows kept in memory for the next write
    failed_writes: int = 0
    dropped: int = 0  # rows pushed out of a full backlog
    row_errors: int = 0  # calls whose row could not be built
    lost_at_exit: int = 0  # rows still unwritten when the writer stopped
    pruned: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_write_at: float | None = None

    @property
    def lost(self) -> int:
        return self.dropped + self.row_errors + self.lost_at_exit

    @property
    def failing(self) -> bool:
        """The most recent write attempt failed (rows are waiting or being lost)."""
        return self.last_error_at is not None and (
            self.last_write_at is None or self.last_error_at > self.last_write_at
        )


class StatusFile:
    """One writer's status file: written whole and swapped in, so readers never see half."""

    def __init__(self, db_path: Path):
        self.directory = status_dir(db_path)
        self.path = self.directory / f"{socket.gethostname()}-{os.getpid()}.json"
        self.error: str | None = None  # why the last write failed (a full disk, say)

    def write(self, status: WriterStatus) -> None:
        status.updated = time.time()
        temp = self.path.with_suffix(".tmp")
        try:
            self.directory.mkdir(exist_ok=True)
            temp.write_text(json.dumps(asdict(status)))
            os.replace(temp, self.path)
            self.error = None
        except OSError as exc:
            self.error = str(exc)
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.directory.rmdir()  # only if no other writer's file is there


def _alive(status: WriterStatus) -> bool | None:
    """Whether the writer's process still runs (None: another host, cannot tell)."""
    if status.host != socket.gethostname():
        return None
    try:
        os.kill(status.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def assess(status: WriterStatus, now: float | None = None) -> tuple[str, str]:
    """(level, sentence) for one writer: level is ok, warning or error."""
    now = time.time() if now is None else now
    if status.running and _alive(status) is False:
        return (
            "warning",
            "stopped without a clean shutdown (killed?): calls answered in its last "
            "flush interval may not be in the log",
        )
    if status.lost:
        parts = [
            f"{n:,} {what}"
            for n, what in (
                (status.dropped, "pushed out of a full backlog"),
                (status.row_errors, "that could not be built"),
                (status.lost_at_exit, "unwritten at shutdown"),
            )
            if n
        ]
        rows = "row" if status.lost == 1 else "rows"
        return "error", f"{status.lost:,} log {rows} lost ({', '.join(parts)})"
    if status.running and now - status.updated > STALE_AFTER:
        return "warning", f"has not reported for {now - status.updated:.0f} s (disk full?)"
    if status.failing:
        return (
            "error",
            f"cannot write the log: {status.last_error}; "
            f"{status.waiting:,} rows waiting in memory, retried every second",
        )
    return "ok", "writing normally"


def read_all(db_path: Path) -> list[WriterStatus]:
    """Every writer's status for this database, newest first; unreadable files skipped."""
    found = []
    directory = status_dir(db_path)
    if not directory.is_dir():
        return []
    for path in directory.glob("*.json"):
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            found.append(WriterStatus(**data))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(found, key=lambda s: s.started, reverse=True)
