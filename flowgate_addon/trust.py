"""FlowGate's certificate authority and the shell settings that make programs use the proxy.

The forward proxy opens TLS to LLM API hosts with certificates signed by a CA
of its own (mitmproxy's, kept in FlowGate's data folder). Programs trust it
through SSL_CERT_FILE / REQUESTS_CA_BUNDLE (a bundle of the usual public CAs
plus FlowGate's, so tunnelled hosts still verify) or NODE_EXTRA_CA_CERTS.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import certifi
from mitmproxy import certs

from flowgate_addon.config import Settings
from flowgate_addon.paths import data_dir

CA_BASENAME = "mitmproxy"
NO_PROXY = "localhost,127.0.0.1,::1"


def ca_dir() -> Path:
    """mitmproxy's `confdir` for FlowGate: where the CA lives."""
    return data_dir() / "mitmproxy"


def ensure_ca() -> Path:
    """The CA certificate (PEM), created on first use."""
    folder = ca_dir()
    if not (folder / f"{CA_BASENAME}-ca.pem").exists():
        certs.CertStore.create_store(folder, CA_BASENAME, 2048)
    return folder / f"{CA_BASENAME}-ca-cert.pem"


def ca_bundle() -> Path:
    """Public CAs plus FlowGate's, for clients whose setting replaces the trust store."""
    cert = ensure_ca()
    bundle = data_dir() / "ca-bundle.pem"
    text = Path(certifi.where()).read_text() + "\n# FlowGate\n" + cert.read_text()
    if not bundle.exists() or bundle.read_text() != text:
        bundle.write_text(text)
    return bundle


def env_lines(settings: Settings) -> list[str]:
    """`export` lines that send a shell's programs through FlowGate's forward proxy."""
    proxy = f"http://{settings.server.host}:{settings.server.proxy_port}"
    bundle, cert = ca_bundle(), ensure_ca()
    values = {
        "HTTPS_PROXY": proxy,
        "HTTP_PROXY": proxy,
        "NO_PROXY": NO_PROXY,
        "SSL_CERT_FILE": str(bundle),
        "REQUESTS_CA_BUNDLE": str(bundle),
        "NODE_EXTRA_CA_CERTS": str(cert),
    }
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
