"""Provider registry: which upstream serves a model, and how to talk to it.

The gateway, the forward proxy and routing all ask this one registry, so host,
base URL, wire format and credential style live in one place.

A provider has two addresses. `public_url` is where programs think they are
talking to (`https://api.openai.com/v1`): the forward proxy recognises and
intercepts traffic by it. `base_url` is where FlowGate actually sends the call;
it is the public URL unless the config overrides it (a regional endpoint, a
corporate relay, a local test server).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

# Built-in providers. `price_provider` names the provider in LiteLLM's price map.
BUILTIN_PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {"base_url": "https://api.openai.com/v1", "price_provider": "openai"},
    "anthropic": {
        "base_url": "https://api.anthropic.com/v1",
        "api": "anthropic",
        "auth_header": "x-api-key",
        "auth_prefix": "",
        "price_provider": "anthropic",
    },
    "gemini": {
        "base_url": "https://generativelanguage.googleapis.com/v1beta",
        "api": "gemini",
        "auth_header": "x-goog-api-key",
        "auth_prefix": "",
        "auth_query": "key",
        "price_provider": "gemini",
    },
}
DEFAULT_PROVIDER = "openai"


@dataclass(frozen=True)
class Address:
    """The parts of a base URL FlowGate needs per request, parsed once."""

    url: str

    @cached_property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @cached_property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @cached_property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @cached_property
    def path(self) -> str:
        return urlsplit(self.url).path.rstrip("/")

    def below(self, path: str) -> str | None:
        """`path` relative to this address's base path, or None if it is not under it."""
        if not self.path:
            return path
        if path == self.path or path.startswith(self.path + "/"):
            return path[len(self.path) :]
        return None


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str
    api: str = "openai"
    public_url: str = ""
    models: tuple[str, ...] = ()
    api_key: str | None = field(default=None, repr=False)
    stream_usage: bool = True
    price_provider: str | None = None
    auth_header: str = "authorization"
    auth_prefix: str = "Bearer "
    auth_query: str | None = None  # a URL parameter that may also carry the key (Gemini's ?key=)

    @cached_property
    def upstream(self) -> Address:
        return Address(self.base_url)

    @cached_property
    def public(self) -> Address:
        return Address(self.public_url or self.base_url)


class ProviderRegistry:
    """Model -> provider, address -> provider, and which hosts the proxy intercepts."""

    def __init__(self, providers: dict[str, Provider], default: str = DEFAULT_PROVIDER):
        self.providers = providers
        self.default = providers[default]
        self._by_model = {m: p for p in providers.values() for m in p.models}
        self._by_host: dict[tuple[str, int], list[tuple[Address, Provider]]] = {}
        for p in providers.values():
            for address in {p.public, p.upstream}:
                self._by_host.setdefault((address.host, address.port), []).append((address, p))
        for candidates in self._by_host.values():  # longest base path first
            candidates.sort(key=lambda item: len(item[0].path), reverse=True)
        self.hosts = frozenset(host for host, _ in self._by_host)

    @classmethod
    def from_config(cls, configured: dict[str, Any]) -> ProviderRegistry:
        """Build from `providers:` settings (built-ins overridable, custom ones added)."""
        providers: dict[str, Provider] = {}
        for name in [*BUILTIN_PROVIDERS, *(n for n in configured if n not in BUILTIN_PROVIDERS)]:
            spec = dict(BUILTIN_PROVIDERS.get(name, {}))
            spec["public_url"] = spec.get("base_url", "")
            if name in configured:
                override = configured[name].model_dump(exclude_unset=True)
                override["models"] = tuple(override.get("models", ()))
                spec.update({k: v for k, v in override.items() if v is not None})
            providers[name] = Provider(name=name, **spec)
        return cls(providers)

    def for_model(self, model: str) -> tuple[Provider, str]:
        """The provider for a requested model and the model name to send it.

        Config `models:` lists win; `provider/model` names a provider explicitly;
        anything else goes to the default provider, which answers for itself.
        """
        if provider := self._by_model.get(model):
            return provider, model
        prefix, _, rest = model.partition("/")
        if rest and prefix in self.providers:
            return self.providers[prefix], rest
        return self.default, model

    def for_address(self, host: str, port: int, path: str) -> tuple[Provider, str] | None:
        """The provider a proxied request is for, and its path below the provider's base."""
        for address, provider in self._by_host.get((host, port), ()):
            api_path = address.below(path)
            if api_path is not None:
                return provider, api_path
        return None

    def intercepts(self, host: str) -> bool:
        """Whether the forward proxy should open TLS to this host (LLM APIs only)."""
        return host in self.hosts
