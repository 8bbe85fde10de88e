#!/usr/bin/env python3
"""Benchmark FlowGate against a direct upstream call and a bare mitmdump reverse proxy.

One run drives the same small chat-completions POST through three paths:

* ``direct``   -- straight to a local nginx that returns a canned completion,
* ``mitmdump`` -- a bare ``mitmdump`` reverse proxy in front of that nginx,
* ``flowgate`` -- ``flowgate start --no-ui`` with the nginx as its OpenAI upstream,

at 1 and 16 concurrent connections (``wrk``), and prints a markdown table of the
median run per cell. A second phase measures FlowGate's RSS growth over a fixed
number of requests and checks that every request was logged to SQLite.

Needs ``nginx`` and ``wrk`` on PATH (``apt-get install -y nginx wrk``). Standalone:
not part of the test suite. Only talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
API_PATH = "/v1/chat/completions"
REQUEST_BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]},
    separators=(",", ":"),
)
UPSTREAM_RESPONSE = json.dumps(
    {
        "id": "chatcmpl-bench0000000000000000000001",
        "object": "chat.completion",
        "created": 1732406400,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I assist you today?",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
        "system_fingerprint": "fp_0ba0d124f1",
    },
    separators=(",", ":"),
)
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-test"}
PATHS = ("direct", "mitmdump", "flowgate")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
LOG_WAIT_S = 10.0
TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class Tools:
    """Executables the benchmark drives."""

    nginx: str
    wrk: str
    mitmdump: str
    flowgate: str


@dataclass(frozen=True)
class WrkResult:
    """The numbers parsed from one wrk run."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int


@dataclass(frozen=True)
class Service:
    """A started server process and the port it serves on."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        """The chat-completions URL of this service."""
        return f"http://{HOST}:{self.port}{API_PATH}"


# --------------------------------------------------------------------------- tools


def find_tools() -> Tools:
    """Locate nginx, wrk, mitmdump and flowgate, or exit with a clear message."""
    return Tools(**locate(("nginx", "wrk"), ("mitmdump", "flowgate")))


def locate(system: tuple[str, ...], python: tuple[str, ...]) -> dict[str, str]:
    """Find the SYSTEM tools (Debian packages of the same name) and the PYTHON ones
    (installed with FlowGate), or exit naming what to install."""
    missing = [name for name in system if find_executable(name) is None]
    if missing:
        sys.exit(
            f"error: {' and '.join(missing)} not found on PATH; "
            f"install with: apt-get install -y {' '.join(system)}"
        )
    tools = {name: find_executable(name) for name in (*system, *python)}
    for name in python:
        if tools[name] is None:
            sys.exit(
                f"error: {name} not found next to {sys.executable} or on PATH; "
                "run this script with the Python of the environment FlowGate is installed in"
            )
    return {name: str(path) for name, path in tools.items()}


def find_executable(name: str) -> str | None:
    """Find NAME next to the running interpreter first, then on PATH (and sbin for nginx)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    extra = os.pathsep.join(["/usr/sbin", "/usr/local/sbin"])
    return shutil.which(name) or shutil.which(name, path=extra)


# ----------------------------------------------------------------------- processes


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def spawn(
    name: str, cmd: list[str], workdir: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start CMD with stdout and stderr going to a log file in WORKDIR."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    return proc, log


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Terminate PROC cleanly, killing it if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


Probe = Callable[[], tuple[int, str]]


@contextmanager
def running(service: Service, probe: Probe | None = None) -> Iterator[Service]:
    """Yield SERVICE once it answers a test POST with 200; always stop it afterwards.

    PROBE sends that POST and returns (status, description); by default it goes to
    ``service.url``."""
    try:
        wait_until_ready(service, probe)
        yield service
    finally:
        stop_process(service.proc)


def wait_until_ready(service: Service, probe: Probe | None = None) -> None:
    """Poll until SERVICE accepts TCP and answers a test POST with 200, or fail."""
    probe = probe or partial(post_once, service.url)
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error = "no attempt made"
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            fail_service(service, f"exited with code {service.proc.returncode}")
        if port_open(service.port):
            status, last_error = probe()
            if status == 200:
                return
        time.sleep(0.25)
    fail_service(service, f"not ready after {START_TIMEOUT_S:.0f} s ({last_error})")


def fail_service(service: Service, why: str) -> None:
    """Print the tail of SERVICE's log and exit."""
    tail = service.log.read_text(errors="replace")[-4000:] if service.log.exists() else ""
    stop_process(service.proc)
    sys.exit(f"error: {service.name} {why}\n--- {service.name} output ---\n{tail}")


def port_open(port: int) -> bool:
    """Return whether 127.0.0.1:PORT accepts a TCP connection."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def post_once(url: str, opener: urllib.request.OpenerDirector | None = None) -> tuple[int, str]:
    """Send the benchmark POST once (through OPENER if given); return (status, description)."""
    request = urllib.request.Request(url, data=REQUEST_BODY.encode(), headers=HEADERS)
    open_url = opener.open if opener is not None else urllib.request.urlopen
    try:
        with open_url(request, timeout=10) as response:
            response.read()
            return response.status, f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}: {exc.read()[:200]!r}"
    except (OSError, ValueError) as exc:
        return 0, f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------ services


def nginx_conf(
    workdir: Path, port: int, tls: tuple[Path, Path] | None = None, extra: str = ""
) -> Path:
    """Write an nginx config that answers the chat-completions path with a canned reply.

    With TLS (certificate PEM, key PEM) it serves HTTPS instead of plain HTTP; EXTRA is
    added to the server block (e.g. more locations)."""
    body = UPSTREAM_RESPONSE.replace("\\", "\\\\").replace("'", "\\'")
    listen = f"{HOST}:{port}"
    if tls is not None:
        listen += f" ssl;\n        ssl_certificate {tls[0]};\n        ssl_certificate_key {tls[1]}"
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/nginx-body;
    proxy_temp_path {workdir}/nginx-proxy;
    fastcgi_temp_path {workdir}/nginx-fastcgi;
    uwsgi_temp_path {workdir}/nginx-uwsgi;
    scgi_temp_path {workdir}/nginx-scgi;
    keepalive_requests 1000000;
    server {{
        listen {listen};
        location {API_PATH} {{
            default_type application/json;
            return 200 '{body}';
        }}{extra}
    }}
}}
"""
    )
    return conf


def start_nginx(
    nginx: str, workdir: Path, tls: tuple[Path, Path] | None = None, extra: str = ""
) -> Service:
    """Start the canned-reply nginx upstream (for TLS and EXTRA see nginx_conf)."""
    port = free_port()
    conf = nginx_conf(workdir, port, tls, extra)
    cmd = [nginx, "-c", str(conf), "-p", str(workdir), "-g", "daemon off;"]
    proc, log = spawn("nginx", cmd, workdir)
    return Service("nginx", proc, port, log)


def start_mitmdump(tools: Tools, workdir: Path, upstream_port: int) -> Service:
    """Start a bare mitmdump reverse proxy in front of the upstream."""
    port = free_port()
    confdir = workdir / "mitmproxy"
    cmd = [
        tools.mitmdump,
        "--mode",
        f"reverse:http://{HOST}:{upstream_port}@{HOST}:{port}",
        "--set",
        "connection_strategy=lazy",
        "--set",
        "flow_detail=0",
        "--set",
        f"confdir={confdir}",
    ]
    proc, log = spawn("mitmdump", cmd, workdir)
    return Service("mitmdump", proc, port, log)


def start_flowgate(tools: Tools, workdir: Path, upstream_port: int, name: str) -> Service:
    """Start FlowGate (no UI) with the upstream as its OpenAI provider, in WORKDIR/NAME."""
    providers = f"""providers:
  openai:
    base_url: "http://{HOST}:{upstream_port}/v1"
"""
    return start_flowgate_with(tools.flowgate, workdir, name, providers)


def start_flowgate_with(
    flowgate: str, workdir: Path, name: str, extra_config: str, forward_proxy: bool = False
) -> Service:
    """Start FlowGate (no UI) in WORKDIR/NAME, EXTRA_CONFIG after its server and database.

    The returned service is on FlowGate's gateway port, or with FORWARD_PROXY on its
    forward-proxy port. FLOWGATE_HOME (where its CA lives) is WORKDIR/NAME/home."""
    home = workdir / name
    home.mkdir()
    port, proxy_port, ui_port = free_port(), free_port(), free_port()
    config = home / "flowgate.yaml"
    config.write_text(
        f"""server:
  host: {HOST}
  port: {port}
  proxy_port: {proxy_port}
  ui_port: {ui_port}
database:
  path: {home / "flowgate.db"}
{extra_config}"""
    )
    env = {**os.environ, "FLOWGATE_HOME": str(home / "home")}
    cmd = [flowgate, "start", "--config", str(config), "--no-ui"]
    proc, log = spawn(name, cmd, home, env)
    return Service(name, proc, proxy_port if forward_proxy else port, log)


def flowgate_db(service: Service) -> Path:
    """Return the SQLite path configured for a FlowGate service."""
    return service.log.parent / "flowgate.db"


# ----------------------------------------------------------------------------- wrk


def write_lua(workdir: Path, fixed_total: int | None = None, threads: int = 1) -> Path:
    """Write the wrk POST script; with FIXED_TOTAL, stop after exactly that many requests."""
    lua = [
        'wrk.method = "POST"',
        f"wrk.body = '{REQUEST_BODY}'",
        *(f'wrk.headers["{key}"] = "{value}"' for key, value in HEADERS.items()),
    ]
    if fixed_total is not None:
        lua.append(FIXED_COUNT_LUA.format(total=fixed_total, threads=threads))
    path = workdir / ("post.lua" if fixed_total is None else f"post-{fixed_total}.lua")
    path.write_text("\n".join(lua) + "\n")
    return path


# Each thread sends exactly its share of TOTAL requests: request() returns an empty
# string once the share is used up (nothing is written), and response() stops the
# thread when the last reply of its share arrived. done() prints the exact counts.
# wrk calls request() once on the first thread to check the script before anything
# is sent, so that thread's counter starts at -1. wrk's main thread sleeps for the
# whole -d duration regardless, so each thread reports THREAD-DONE on stderr and the
# caller ends wrk with SIGINT (which makes it print its summary) once all are done.
FIXED_COUNT_LUA = """
local threads = {{}}
sent, received, limit = 0, 0, 0
local req = nil

function setup(thread)
  local id = #threads
  local share = math.floor({total} / {threads})
  if id < {total} % {threads} then share = share + 1 end
  thread:set("limit", share)
  if id == 0 then thread:set("sent", -1) end
  table.insert(threads, thread)
end

function request()
  if sent >= limit then return "" end
  if req == nil then req = wrk.format() end
  sent = sent + 1
  return req
end

function response(status, headers, body)
  received = received + 1
  if received == limit then
    io.stderr:write("THREAD-DONE\\n")
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local s, r = 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("sent")
    r = r + t:get("received")
  end
  io.write(string.format("FIXED sent=%d received=%d\\n", s, r))
end
"""


def wrk_command(
    tools: Tools, url: str, connections: int, duration_s: float, script: Path
) -> list[str]:
    """Build the wrk command line for one run."""
    threads = min(connections, 2)
    return [
        tools.wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]


def run_load(cmd: list[str], duration_s: float, name: str) -> str:
    """Run a load generator for about `duration_s` and return its stdout, exiting on failure."""
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
    except subprocess.TimeoutExpired:
        sys.exit(f"error: {name} did not finish: {' '.join(cmd)}")
    if done.returncode != 0:
        sys.exit(f"error: {name} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def run_wrk(tools: Tools, url: str, connections: int, duration_s: float, script: Path) -> str:
    """Run wrk and return its stdout, exiting on failure."""
    return run_load(wrk_command(tools, url, connections, duration_s, script), duration_s, "wrk")


def run_wrk_until_done(cmd: list[str], threads: int, timeout_s: float) -> str:
    """Run a fixed-count wrk; SIGINT it once all THREADS report done; return its stdout."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(timeout_s, proc.kill)
    watchdog.start()
    finished, other, err = 0, [], ""
    try:
        while proc.stderr is not None and finished < threads:
            line = proc.stderr.readline()
            if not line:
                break
            if line.strip() == "THREAD-DONE":
                finished += 1
            else:
                other.append(line)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        stop_process(proc)
    if proc.returncode != 0 or finished < threads:
        sys.exit(f"error: wrk failed ({proc.returncode}): {''.join(other)}{err}".strip())
    return out


def to_ms(text: str) -> float:
    """Convert a wrk time such as '812.00us' or '1.20ms' to milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        raise ValueError(f"unparsable wrk time: {text!r}")
    return float(match.group(1)) * TIME_UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Parse requests/sec, p50/p99, request count and error counts from wrk output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s*50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s*99%\s+(\S+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    if not (rps and p50 and p99 and total):
        raise ValueError(f"unexpected wrk output:\n{output}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests=int(total.group(1)),
        rps=float(rps.group(1)),
        p50_ms=to_ms(p50.group(1)),
        p99_ms=to_ms(p99.group(1)),
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


def median_run(runs: list[WrkResult]) -> WrkResult:
    """Return the run with the median throughput (the lower middle one for even counts)."""
    ordered = sorted(runs, key=lambda run: run.rps)
    return ordered[(len(ordered) - 1) // 2]


# ----------------------------------------------------------------------- benchmark


def benchmark(
    tools: Tools,
    targets: dict[str, Service],
    script: Path,
    args: argparse.Namespace,
) -> dict[tuple[str, int], WrkResult]:
    """Run every (path, connections) cell REPEATS times, interleaved; return the medians."""

    def measure(name: str, connections: int, duration_s: float) -> WrkResult:
        return parse_wrk(run_wrk(tools, targets[name].url, connections, duration_s, script))

    return interleaved(targets, measure, args)


Measure = Callable[[str, int, float], WrkResult]


def interleaved(
    names: Iterable[str], measure: Measure, args: argparse.Namespace
) -> dict[tuple[str, int], WrkResult]:
    """Warm up each path, then run every (path, connections) cell args.repeats times.

    MEASURE(path, connections, seconds) runs the load once. The runs are interleaved
    (every cell once per round); returns the median run of each cell."""
    names = list(names)
    for name in names:
        print(f"warming up {name} ...", file=sys.stderr)
        measure(name, max(args.connections), args.warmup)
    runs: dict[tuple[str, int], list[WrkResult]] = {}
    for repeat in range(1, args.repeats + 1):
        for name in names:
            for conns in args.connections:
                result = measure(name, conns, args.duration)
                runs.setdefault((name, conns), []).append(result)
                print(
                    f"run {repeat}/{args.repeats} {name:8} c={conns:<3} "
                    f"{result.rps:10.1f} req/s  p50 {result.p50_ms:.3f} ms",
                    file=sys.stderr,
                )
    return {cell: median_run(results) for cell, results in runs.items()}


def ratio(value: float, base: float) -> str:
    """Format VALUE/BASE as a ratio, or '-' when BASE is zero."""
    return f"{value / base:.2f}x" if base else "-"


def results_table(medians: dict[tuple[str, int], WrkResult], connections: list[int]) -> str:
    """Render the median results as a markdown table."""
    lines = [
        "| path | connections | req/s | p50 ms | p99 ms | req/s vs mitmdump "
        "| p50 added vs mitmdump (ms) | req/s vs direct | non-2xx / socket errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for conns in connections:
        bare = medians[("mitmdump", conns)]
        direct = medians[("direct", conns)]
        for path in PATHS:
            run = medians[(path, conns)]
            lines.append(
                f"| {path} | {conns} | {run.rps:,.0f} | {run.p50_ms:.3f} | {run.p99_ms:.3f} "
                f"| {ratio(run.rps, bare.rps)} | {run.p50_ms - bare.p50_ms:+.3f} "
                f"| {ratio(run.rps, direct.rps)} | {run.non2xx} / {run.socket_errors} |"
            )
    return "\n".join(lines)


# -------------------------------------------------------------------------- memory


def rss_kb(pid: int) -> int:
    """Read VmRSS (kB) of PID from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def count_rows(db: Path) -> int | None:
    """Return the row count of the requests table, or None if it cannot be read yet."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])
    except sqlite3.Error:
        return None


def settled_rows(db: Path, expected: int | None = None) -> int | None:
    """Poll the row count up to LOG_WAIT_S: until it reaches EXPECTED, or stops changing."""
    deadline = time.monotonic() + LOG_WAIT_S
    last = count_rows(db)
    while time.monotonic() < deadline:
        if expected is not None and last is not None and last >= expected:
            return last
        time.sleep(1.0)
        current = count_rows(db)
        if expected is None and current is not None and current == last:
            return current
        last = current
    return last


def fixed_load(tools: Tools, url: str, connections: int, total: int, workdir: Path) -> int:
    """Send exactly TOTAL requests with wrk; return the number of replies received."""
    threads = min(connections, 2)
    script = write_lua(workdir, fixed_total=total, threads=threads)
    budget = max(60.0, total / 50)
    cmd = wrk_command(tools, url, connections, budget, script)
    output = run_wrk_until_done(cmd, threads, budget + 60)
    match = re.search(r"FIXED sent=(\d+) received=(\d+)", output)
    if match is None:
        sys.exit(f"error: unexpected wrk output in fixed-count run:\n{output}")
    sent, received = int(match.group(1)), int(match.group(2))
    result = parse_wrk(output)
    if sent != total or received != total or result.non2xx or result.socket_errors:
        print(
            f"warning: fixed-count run sent {sent}, received {received} of {total}; "
            f"non-2xx {result.non2xx}, socket errors {result.socket_errors}",
            file=sys.stderr,
        )
    return sent


def memory_check(tools: Tools, workdir: Path, upstream_port: int, args: argparse.Namespace) -> str:
    """Measure a fresh FlowGate's RSS growth and logging completeness; return the tables."""
    service = start_flowgate(tools, workdir, upstream_port, "flowgate-memory")
    db = flowgate_db(service)
    conns = max(args.connections)
    with running(service):
        rows_before = settled_rows(db) or 0
        print(f"memory: warm-up {args.warmup_requests} requests ...", file=sys.stderr)
        warm_sent = fixed_load(tools, service.url, conns, args.warmup_requests, workdir)
        rss_before = rss_kb(service.proc.pid)
        print(f"memory: {args.memory_requests} requests ...", file=sys.stderr)
        load_sent = fixed_load(tools, service.url, conns, args.memory_requests, workdir)
        rss_after = rss_kb(service.proc.pid)
        sent = warm_sent + load_sent
        rows_after = settled_rows(db, rows_before + sent)
    logged = "unreadable" if rows_after is None else f"{rows_after - rows_before:,}"
    return "\n".join(
        [
            f"| FlowGate RSS | after warm-up ({warm_sent:,} req) "
            f"| after +{load_sent:,} req | growth |",
            "|---|---:|---:|---:|",
            f"| MB | {rss_before / 1024:.1f} | {rss_after / 1024:.1f} "
            f"| {(rss_after - rss_before) / 1024:+.1f} |",
            "",
            "| requests sent (warm-up + load) | rows in `requests` |",
            "|---:|---:|",
            f"| {sent:,} | {logged} |",
        ]
    )


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser)
    parser.add_argument(
        "--warmup-requests", type=int, default=2_000, help="memory phase warm-up (2000)"
    )
    parser.add_argument(
        "--memory-requests", type=int, default=20_000, help="memory phase load (20000)"
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory phase")
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep configs, logs and databases"
    )
    args = parser.parse_args(argv)
    check_run_options(parser, args)
    return args


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add --duration, --repeats, --connections and --warmup (see interleaved)."""
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (5)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell; median shown (3)")
    parser.add_argument(
        "--connections", type=int, nargs="+", default=[1, 16], help="concurrency levels (1 16)"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per path (2)")


def check_run_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject run options below 1."""
    if args.repeats < 1 or args.duration < 1 or min(args.connections) < 1:
        parser.error("--repeats, --duration and --connections must be at least 1")


def run_all(tools: Tools, workdir: Path, args: argparse.Namespace) -> None:
    """Start the upstream, run both phases in WORKDIR and print the tables."""
    with running(start_nginx(tools.nginx, workdir)) as upstream:
        script = write_lua(workdir)
        with ExitStack() as proxies:
            bare = proxies.enter_context(running(start_mitmdump(tools, workdir, upstream.port)))
            gate = proxies.enter_context(
                running(start_flowgate(tools, workdir, upstream.port, "flowgate"))
            )
            targets = {"direct": upstream, "mitmdump": bare, "flowgate": gate}
            medians = benchmark(tools, targets, script, args)
        print(
            f"\n## Throughput and latency (median of {args.repeats} runs x "
            f"{args.duration:g} s, wrk -t min(c,2), {os.cpu_count()} CPUs)\n"
        )
        print(results_table(medians, args.connections))
        if not args.skip_memory:
            tables = memory_check(tools, workdir, upstream.port, args)
            print(f"\n## FlowGate memory and logging ({max(args.connections)} connections)\n")
            print(tables)


def main(argv: list[str] | None = None) -> None:
    """Run the throughput/latency benchmark, then the memory check, and print the tables."""
    args = parse_args(argv)
    tools = find_tools()
    with work_directory(args.keep_workdir) as workdir:
        run_all(tools, workdir, args)


@contextmanager
def work_directory(keep: bool) -> Iterator[Path]:
    """Yield a fresh temporary directory; remove it afterwards unless KEEP."""
    workdir = Path(tempfile.mkdtemp(prefix="flowgate-bench-"))
    try:
        yield workdir
    finally:
        if keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
