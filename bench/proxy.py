#!/usr/bin/env python3
"""Benchmark FlowGate's forward proxy (HTTPS_PROXY, TLS interception) against bare mitmdump.

One run drives the same small chat-completions POST over HTTPS through three paths:

* ``direct``   -- straight to a local nginx that serves HTTPS and returns a canned completion,
* ``mitmdump`` -- a bare ``mitmdump`` in regular (forward-proxy) mode that intercepts TLS,
* ``flowgate`` -- ``flowgate start --no-ui`` with that nginx as a provider, used through its
  forward-proxy port (FlowGate intercepts TLS for provider hosts only),

at 1 and 16 concurrent connections with ``hey`` (wrk cannot use a proxy), and prints a
markdown table of the median run per cell. Afterwards it checks that FlowGate logged every
request it carried, in mode ``proxy``, and how many connections the proxies accepted.

Needs ``nginx`` and ``hey`` on PATH (``apt-get install -y nginx hey``). Reuses the
machinery of ``gateway.py`` next to it. Standalone: not part of the test suite. Only
talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sqlite3
import ssl
import sys
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy import certs

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as gw

TLS_HOST = "localhost"  # a FlowGate provider host, so FlowGate intercepts it
STATUS_PATH = "/nginx-status"
NGINX_STATUS = f"""
        location = {STATUS_PATH} {{
            stub_status;
        }}"""


@dataclass(frozen=True)
class Tools:
    """Executables the benchmark drives."""

    nginx: str
    hey: str
    mitmdump: str
    flowgate: str


@dataclass(frozen=True)
class Target:
    """One benchmarked path: the HTTPS URL the client asks for and the proxy it uses."""

    service: gw.Service
    url: str
    proxy: str | None = None  # "http://host:port" of the forward proxy, None for direct

    def opener(self, cafile: Path) -> urllib.request.OpenerDirector:
        """A urllib opener that goes through the proxy like hey does.

        Direct calls verify nginx against CAFILE; through a proxy the certificate is the
        proxy's own, which (like hey) is not verified."""
        if self.proxy is None:
            context = ssl.create_default_context(cafile=str(cafile))
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        proxies = {} if self.proxy is None else {"https": self.proxy}
        return urllib.request.build_opener(
            urllib.request.ProxyHandler(proxies), urllib.request.HTTPSHandler(context=context)
        )

    def probe(self, cafile: Path) -> gw.Probe:
        """The readiness check for gw.running: one POST to URL along this path."""
        return partial(gw.post_once, self.url, self.opener(cafile))


@dataclass
class Tally:
    """What happened along one path over all its hey runs (warm-up included)."""

    requests: int = 0
    non2xx: int = 0
    errors: int = 0
    hey_connections: int = 0  # sum of -c: connections hey opens if it keeps them alive
    nginx_accepts: int = 0
    nginx_requests: int = 0
    proxy_clients: int | None = None  # client connections in the proxy's log, if it logs them


# --------------------------------------------------------------------------- tools


def find_tools() -> Tools:
    """Locate nginx, hey, mitmdump and flowgate, or exit with a clear message."""
    return Tools(**gw.locate(("nginx", "hey"), ("mitmdump", "flowgate")))


def write_tls_files(workdir: Path) -> tuple[Path, Path, Path]:
    """Create a CA and a certificate for localhost / 127.0.0.1 signed by it.

    Returns (CA certificate PEM, server certificate PEM, server key PEM)."""
    folder = workdir / "tls"
    store = certs.CertStore.from_store(folder, "bench", 2048)
    sans = [x509.DNSName(TLS_HOST), x509.IPAddress(ipaddress.ip_address(gw.HOST))]
    entry = store.get_cert(TLS_HOST, sans)
    cert, key = folder / "localhost-cert.pem", folder / "localhost-key.pem"
    cert.write_bytes(entry.cert.to_pem())
    key.write_bytes(
        entry.privatekey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return folder / "bench-ca-cert.pem", cert, key


# ------------------------------------------------------------------------ services


def start_mitmdump(tools: Tools, workdir: Path, upstream_ca: Path) -> gw.Service:
    """Start a bare mitmdump forward proxy that intercepts TLS and trusts the upstream CA."""
    port = gw.free_port()
    cmd = [
        tools.mitmdump,
        "--mode",
        f"regular@{gw.HOST}:{port}",
        "--set",
        "connection_strategy=lazy",
        "--set",
        "flow_detail=0",
        "--set",
        f"confdir={workdir / 'mitm'}",
        "--set",
        f"ssl_verify_upstream_trusted_ca={upstream_ca}",
    ]
    proc, log = gw.spawn("mitmdump", cmd, workdir)
    return gw.Service("mitmdump", proc, port, log)


def start_flowgate(
    tools: Tools, workdir: Path, upstream_port: int, upstream_ca: Path
) -> gw.Service:
    """Start FlowGate (no UI) with the HTTPS nginx as provider; the service is its proxy."""
    config = f"""providers:
  bench:
    base_url: "https://{TLS_HOST}:{upstream_port}/v1"
    models: [gpt-4o-mini]
security:
  upstream_ca_file: {upstream_ca}
"""
    return gw.start_flowgate_with(tools.flowgate, workdir, "flowgate", config, forward_proxy=True)


# ----------------------------------------------------------------------------- hey


def hey_command(tools: Tools, target: Target, connections: int, duration_s: float) -> list[str]:
    """Build the hey command line for one run (HTTP/1.1, keep-alive, no TLS verification).

    hey runs on one CPU: with more, its Go client often returns a connection to the pool
    only after the next request already dialled a new one, and then keeps replacing
    connections (thousands of TLS handshakes a second against nginx at 16 connections)."""
    cmd = [tools.hey, "-cpus", "1", "-z", f"{duration_s:g}s", "-c", str(connections)]
    cmd += ["-t", "10"]
    cmd += ["-m", "POST", "-d", gw.REQUEST_BODY]
    for key, value in gw.HEADERS.items():
        cmd += ["-T", value] if key.lower() == "content-type" else ["-H", f"{key}: {value}"]
    if target.proxy is not None:
        cmd += ["-x", target.proxy]
    return [*cmd, target.url]


def run_hey(cmd: list[str], duration_s: float) -> str:
    """Run hey and return its stdout, exiting on failure."""
    return gw.run_load(cmd, duration_s, "hey")


def parse_hey(output: str) -> gw.WrkResult:
    """Parse requests/sec, p50/p99 and status/error counts from hey's summary."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s*50%+ in ([\d.]+) secs", output, re.MULTILINE)
    p99 = re.search(r"^\s*99%+ in ([\d.]+) secs", output, re.MULTILINE)
    if not (rps and p50 and p99):
        raise ValueError(f"unexpected hey output (no successful request?):\n{output}")
    statuses = section_counts(output, "Status code distribution")
    errors = section_counts(output, "Error distribution")
    non2xx = sum(count for code, count in statuses.items() if not code.startswith("2"))
    return gw.WrkResult(
        requests=sum(statuses.values()) + sum(errors.values()),
        rps=float(rps.group(1)),
        p50_ms=float(p50.group(1)) * 1000,
        p99_ms=float(p99.group(1)) * 1000,
        non2xx=non2xx,
        socket_errors=sum(errors.values()),
    )


def section_counts(output: str, title: str) -> dict[str, int]:
    """Parse hey's '  [KEY]\\tCOUNT ...' lines under TITLE into {KEY: COUNT}."""
    _, found, rest = output.partition(f"{title}:\n")
    counts: dict[str, int] = {}
    if not found:
        return counts
    for line in rest.splitlines():
        match = re.match(r"\s+\[([^\]]*)\]\s+(\d+)", line)
        if match is None:
            break
        counts[match.group(1)] = counts.get(match.group(1), 0) + int(match.group(2))
    return counts


# -------------------------------------------------------------------- connections


def nginx_counters(status_url: str, opener: urllib.request.OpenerDirector) -> tuple[int, int]:
    """Read nginx's stub_status: (connections accepted, requests served) so far.

    The read itself is one more connection and request, counted in the values."""
    with opener.open(status_url, timeout=10) as response:
        text = response.read().decode()
    match = re.search(r"requests\s+(\d+)\s+\d+\s+(\d+)", text)
    if match is None:
        raise ValueError(f"unexpected nginx stub_status output:\n{text}")
    return int(match.group(1)), int(match.group(2))


def logged_clients(log: Path) -> int:
    """Count the client connections a mitmproxy process logged (mitmdump does, FlowGate not)."""
    return log.read_text(errors="replace").count("] client connect\n")


# ----------------------------------------------------------------------- reporting


def query(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Run a read-only query on FlowGate's log database."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


def last_row_id(db: Path) -> int:
    """The id of the newest row in FlowGate's requests table (0 when empty)."""
    return int(query(db, "SELECT coalesce(max(id), 0) FROM requests")[0][0])


def connections_table(tallies: dict[str, Tally]) -> str:
    """Requests and connections per path over all runs, to show whether they are reused."""
    lines = [
        "| path | requests (hey) | non-2xx / errors | requests at nginx | connections if "
        "kept alive (sum of -c) | TLS connections accepted by nginx | client connections "
        "in proxy log |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in tallies.items():
        clients = "-" if t.proxy_clients is None else f"{t.proxy_clients:,}"
        lines.append(
            f"| {name} | {t.requests:,} | {t.non2xx} / {t.errors} | {t.nginx_requests:,} "
            f"| {t.hey_connections:,} | {t.nginx_accepts:,} | {clients} |"
        )
    return "\n".join(lines)


def logging_table(tally: Tally, db: Path, rows_before: int, after_id: int) -> tuple[str, bool]:
    """FlowGate's rows (id > AFTER_ID) against the requests hey sent it; True if all match."""
    gw.settled_rows(db, rows_before + tally.requests)
    groups = query(
        db, "SELECT mode, status, count(*) FROM requests WHERE id > ? GROUP BY 1, 2", after_id
    )
    logged = sum(count for _, _, count in groups)
    as_proxy = sum(count for mode, _, count in groups if mode == "proxy")
    ok = logged == tally.requests and as_proxy == logged
    by_group = ", ".join(f"{mode} / {status}: {count:,}" for mode, status, count in groups)
    return (
        "\n".join(
            [
                "| requests sent (hey, warm-up included) | rows logged | rows with mode "
                "`proxy` | all logged as proxy |",
                "|---:|---:|---:|---|",
                f"| {tally.requests:,} | {logged:,} | {as_proxy:,} | {'yes' if ok else 'NO'} |",
                "",
                f"Rows by mode / status: {by_group or 'none'}.",
            ]
        ),
        ok,
    )


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    gw.add_run_options(parser)
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep certificates, configs, logs and database"
    )
    args = parser.parse_args(argv)
    gw.check_run_options(parser, args)
    return args


def run_all(tools: Tools, workdir: Path, args: argparse.Namespace) -> bool:
    """Start nginx and both proxies, run the benchmark, print the tables; True if all logged."""
    ca, cert, key = write_tls_files(workdir)
    with ExitStack() as stack:

        def launch(service: gw.Service, url: str, proxied: bool) -> Target:
            proxy = f"http://{gw.HOST}:{service.port}" if proxied else None
            target = Target(service, url, proxy)
            stack.enter_context(gw.running(service, target.probe(ca)))
            return target

        nginx = gw.start_nginx(tools.nginx, workdir, (cert, key), NGINX_STATUS)
        url = f"https://{TLS_HOST}:{nginx.port}{gw.API_PATH}"
        targets = {"direct": launch(nginx, url, proxied=False)}
        bare = start_mitmdump(tools, workdir, ca)
        targets["mitmdump"] = launch(bare, url, proxied=True)
        gate = start_flowgate(tools, workdir, nginx.port, ca)
        targets["flowgate"] = launch(gate, url, proxied=True)
        db = gw.flowgate_db(gate)
        rows_before = gw.settled_rows(db) or 0  # the readiness probe's
        after_id = last_row_id(db)
        tallies = {name: Tally() for name in targets}
        tallies["mitmdump"].proxy_clients = 0
        status = partial(
            nginx_counters,
            f"https://{TLS_HOST}:{nginx.port}{STATUS_PATH}",
            targets["direct"].opener(ca),
        )

        def measure(name: str, connections: int, duration_s: float) -> gw.WrkResult:
            tally = tallies[name]
            clients = logged_clients(bare.log)
            accepts, requests = status()
            cmd = hey_command(tools, targets[name], connections, duration_s)
            result = parse_hey(run_hey(cmd, duration_s))
            accepts_after, requests_after = status()
            # minus the status read after the run (one connection, one request)
            tally.nginx_accepts += accepts_after - accepts - 1
            tally.nginx_requests += requests_after - requests - 1
            if tally.proxy_clients is not None:
                tally.proxy_clients += logged_clients(bare.log) - clients
            tally.requests += result.requests
            tally.non2xx += result.non2xx
            tally.errors += result.socket_errors
            tally.hey_connections += connections
            return result

        medians = gw.interleaved(targets, measure, args)
        logging, all_logged = logging_table(tallies["flowgate"], db, rows_before, after_id)
        print(
            f"\n## Forward proxy with TLS interception (median of {args.repeats} runs x "
            f"{args.duration:g} s, hey, {os.cpu_count()} CPUs)\n"
        )
        print(gw.results_table(medians, args.connections))
        print("\n## Requests and connections over all runs (warm-up included)\n")
        print(connections_table(tallies))
        print("\n## FlowGate logging\n")
        print(logging)
    return all_logged


def main(argv: list[str] | None = None) -> None:
    """Run the forward-proxy benchmark and print the tables."""
    args = parse_args(argv)
    tools = find_tools()
    with gw.work_directory(args.keep_workdir) as workdir:
        all_logged = run_all(tools, workdir, args)
    if not all_logged:
        sys.exit(
            "error: FlowGate did not log every request as mode 'proxy' "
            "(run with --keep-workdir and see flowgate/flowgate.log)"
        )


if __name__ == "__main__":
    main()
