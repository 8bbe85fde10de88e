"""Provider registry: which upstream serves a model, and how to talk to it.

The gateway, the forward proxy and (later) routing all ask this one registry,
so host, base URL, wire format and credential style live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

# Built-in providers. `price_provider` names the provider in LiteLLM's price map,
# whose chat/embedding models FlowGate offers on GET /v1/models.
BUILTIN_PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {"base_url": "https://api.openai.com/v1", "price_provider": "openai"},
}
DEFAULT_PROVIDER = "openai"


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str
    api: str = "openai"
    models: tuple[str, ...] = ()
    api_key: str | None = field(default=None, repr=False)
    stream_usage: bool = True
    price_provider: str | None = None
    auth_header: str = "authorization"
    auth_prefix: str = "Bearer "

    @cached_property
    def scheme(self) -> str:
        return urlsplit(self.base_url).scheme

    @cached_property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    @cached_property
    def port(self) -> int:
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @cached_property
    def base_path(self) -> str:
        return urlsplit(self.base_url).path.rstrip("/")

    def upstream_path(self, api_path: str) -> str:
        """`/chat/completions` -> the provider's full path, e.g. `/v1/chat/completions`."""
        return self.base_path + api_path

    def credential(self) -> tuple[str, str] | None:
        """The header that carries this provider's own key, if FlowGate holds one."""
        if not self.api_key:
            return None
        return self.auth_header, self.auth_prefix + self.api_key


class ProviderRegistry:
    """Model -> provider, host -> provider, and the list of models FlowGate can serve."""

    def __init__(self, providers: dict[str, Provider], default: str = DEFAULT_PROVIDER):
        self.providers = providers
        self.default = providers[default]
        self._by_model = {m: p for p in providers.values() for m in p.models}
        self._by_host: dict[tuple[str, int], list[Provider]] = {}
        for p in providers.values():
            self._by_host.setdefault((p.host, p.port), []).append(p)
        for candidates in self._by_host.values():  # longest base path first
            candidates.sort(key=lambda p: len(p.base_path), reverse=True)

    @classmethod
    def from_config(cls, configured: dict[str, Any]) -> ProviderRegistry:
        """Build from `providers:` settings (built-ins overridable, custom ones added)."""
        providers: dict[str, Provider] = {}
        for name in [*BUILTIN_PROVIDERS, *(n for n in configured if n not in BUILTIN_PROVIDERS)]:
            spec = dict(BUILTIN_PROVIDERS.get(name, {}))
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

    def for_host(self, host: str, port: int, path: str = "/") -> Provider | None:
        """The provider at this address whose base path the request path is under."""
        for provider in self._by_host.get((host, port), ()):
            base = provider.base_path
            if not base or path == base or path.startswith(base + "/"):
                return provider
        return None
