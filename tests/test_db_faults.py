"""A log database that cannot be written — read-only, or on a full disk — never breaks
proxying: calls keep flowing, their rows wait in memory and land once the database takes
them again, and what is failing or lost is shown in FlowGate's output and on the
dashboard's log-health page and banner.

Real conditions, no privileges needed beyond what the tests already have:
- read-only: the database file is mode 0444, and FlowGate runs without the capability
  that lets root write to it anyway (setpriv), as any other user would;
- full: FlowGate runs under a file-size limit (RLIMIT_FSIZE) smaller than the database,
  so the kernel refuses SQLite's writes as a full disk would (EFBIG rather than ENOSPC,
  so SQLite says "disk I/O error" rather than "database or disk is full"); the limit
  is then raised, as when space is freed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import resource
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
from conftest import FLOWGATE, RunningFlowGate, start_flowgate, write_config
from datasette.app import Datasette

from flowgate_addon import health
from flowgate_addon.cli import plugins_dir
from flowgate_addon.store import open_db

MAX_BACKLOG = 1_000  # the smallest database.max_backlog allowed
FILE_LIMIT = 48 * 1024  # bytes: below the migrated database's size
# Without CAP_DAC_OVERRIDE, root is held to file modes like everybody else.
AS_AN_ORDINARY_USER = (
    ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override", "--"]
    if os.geteuid() == 0
    else []
)


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.05)
    return result


def status_of(gate: RunningFlowGate) -> health.WriterStatus | None:
    found = health.read_all(gate.db_path)
    return found[0] if found else None


def dashboard(db_path: Path, path: str) -> httpx.Response:
    ds = Datasette([str(db_path)], plugins_dir=str(plugins_dir()))
    return asyncio.run(ds.client.get(path))


def new_database(directory: Path) -> Path:
    """A migrated, checkpointed log database, as an earlier FlowGate left it."""
    path = directory / "flowgate.db"
    open_db(path).conn.close()
    return path


def call(gate: RunningFlowGate, session: str, count: int) -> None:
    """`count` chat calls through the gateway; every one must be answered normally."""
    client = openai.OpenAI(base_url=gate.base_url, api_key="sk-client-key", max_retries=0)

    def one(i: int) -> str:
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"call {i}"}],
            extra_headers={"x-flowgate-session": session},
        )
        return reply.choices[0].message.content or ""

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(count)))
    assert all(answers) and len(answers) == count


def test_read_only_database_then_writable_again(fake_provider, tmp_path):
    db_path = new_database(tmp_path)
    db_path.chmod(0o444)
    config = write_config(tmp_path, fake_provider)
    gate = start_flowgate(
        tmp_path,
        config,
        command=[*AS_AN_ORDINARY_USER, FLOWGATE, "start", "--config", str(config), "--no-ui"],
    )
    try:
        session = f"ro-{uuid.uuid4().hex[:8]}"
        call(gate, session, 20)

        # 20 calls, and the start-up probe's /models call: every row is waiting.
        status = wait_for(
            lambda: (s := status_of(gate)) and s.waiting == 21 and s.failing and s,
            what="the writer to report 21 rows waiting",
        )
        assert "readonly" in status.last_error and status.lost == 0 and status.written == 0
        assert gate.rows() == []
        assert "log write failed (attempt to write a readonly database)" in gate.output()

        page = dashboard(db_path, "/-/flowgate/health.json").json()
        assert page["level"] == "error"
        [writer] = page["writers"]
        assert writer["waiting"] == 21 and "readonly" in writer["summary"]
        html = dashboard(db_path, "/-/flowgate/health").text
        assert "attempt to write a readonly database" in html and "21 rows waiting" in html
        # Every page carries the banner that says so.
        home = dashboard(db_path, "/").text
        assert "fg-health-banner" in home and "21 rows waiting in memory" in home

        # Fixed as an operator would (SQLite made its -wal and -shm files read-only too):
        # the same process then writes everything it kept.
        for part in ("", "-wal", "-shm"):
            db_path.with_name(db_path.name + part).chmod(0o644)
        rows = gate.wait_rows("session = ?", (session,), count=20)
        assert len(rows) == 20 and all(r["status"] == 200 for r in rows)
        assert len(gate.rows()) == 21
        wait_for(lambda: "log writes work again: 21 waiting rows written" in gate.output())
        wait_for(lambda: (s := status_of(gate)) and not s.failing and s.waiting == 0)
        assert dashboard(db_path, "/-/flowgate/health.json").json()["level"] == "ok"
        assert "fg-health-banner" not in dashboard(db_path, "/").text
    finally:
        gate.stop_cleanly()
    assert status_of(gate) is None  # a clean stop with nothing lost leaves no report


def limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, resource.RLIM_INFINITY))


def test_full_disk_keeps_proxying_and_counts_what_it_loses(fake_provider, tmp_path):
    db_path = new_database(tmp_path)
    assert db_path.stat().st_size > FILE_LIMIT
    config = write_config(tmp_path, fake_provider, {"database": {"max_backlog": MAX_BACKLOG}})
    gate = start_flowgate(tmp_path, config, preexec_fn=limit_file_size)
    try:
        session = f"full-{uuid.uuid4().hex[:8]}"
        overflow = 30  # rows beyond what memory keeps (the start-up probe's row among them)
        call(gate, session, MAX_BACKLOG + overflow - 1)

        status = wait_for(
            lambda: (s := status_of(gate)) and s.dropped == overflow and s,
            what="the writer to count the rows pushed out",
        )
        assert status.failing and status.last_error == "disk I/O error"
        assert status.waiting == MAX_BACKLOG and status.written == 0  # the newest rows
        output = gate.output()
        assert "log write failed (disk I/O error)" in output
        assert "oldest are being dropped" in output

        page = dashboard(db_path, "/-/flowgate/health.json").json()
        [writer] = page["writers"]
        assert page["level"] == "error" and writer["lost"] == overflow
        assert (
            f"{overflow} log rows lost ({overflow} pushed out of a full backlog)"
            in (writer["summary"])
        )

        # Space again: the rows kept in memory land, the loss stays on record.
        resource.prlimit(
            gate.process.pid,
            resource.RLIMIT_FSIZE,
            (resource.RLIM_INFINITY, resource.RLIM_INFINITY),
        )
        # The probe's row and the oldest calls' were pushed out: the newest 1,000 land.
        rows = gate.wait_rows("session = ?", (session,), count=MAX_BACKLOG)
        assert len(rows) == MAX_BACKLOG == len(gate.rows())
        wait_for(lambda: (s := status_of(gate)) and s.written == MAX_BACKLOG)
    finally:
        gate.stop_cleanly()
    # The report outlives the process, so the loss is seen after a restart too.
    status = status_of(gate)
    assert status is not None and not status.running and status.lost == overflow
    assert dashboard(db_path, "/-/flowgate/health.json").json()["level"] == "error"
    html = dashboard(db_path, "/-/flowgate/health").text
    assert "stopped" in html and str(health.status_dir(db_path)) in html
    assert stat.S_ISREG(os.stat(db_path).st_mode)
