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

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

# How each wire format carries its key (built-ins and custom providers of that format).
API_AUTH: dict[str, dict[str, Any]] = {
    "anthropic": {"auth_header": "x-api-key", "auth_prefix": ""},
    "gemini": {"auth_header": "x-goog-api-key", "auth_prefix": "", "auth_query": "key"},
}

# Built-in providers. `price_provider` names the provider in LiteLLM's price map;
# `model_patterns` are the model-name families a provider is known by, the last
# resort of model resolution (after config, the synced catalog and the price map);
# `openai_path` is where, below `base_url`, a provider of another wire format
# serves an OpenAI-compatible API (for chat-completions requests routed to it).
BUILTIN_PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {
        "base_url": "https://api.openai.com/v1",
        "price_provider": "openai",
        "model_patterns": (
            "gpt-*",
            "chatgpt-*",
            "o1*",
            "o3*",
            "o4*",
            "text-embedding-*",
            "omni-moderation-*",
            "davinci-*",
            "babbage-*",
        ),
    },
    "anthropic": {
        "base_url": "https://api.anthropic.com/v1",
        "api": "anthropic",
        **API_AUTH["anthropic"],
        "price_provider": "anthropic",
        "model_patterns": ("claude-*",),
        "openai_path": "",
    },
    "gemini": {
        "base_url": "https://generativelanguage.googleapis.com/v1beta",
        "api": "gemini",
        **API_AUTH["gemini"],
        "price_provider": "gemini",
        "model_patterns": ("gemini-*", "gemma-*", "text-embedding-004", "gemini-embedding-*"),
        "openai_path": "/openai",
    },
    "deepseek": {
        "base_url": "https://api.deepseek.com/v1",
        "price_provider": "deepseek",
        "model_patterns": ("deepseek-*",),
    },
    "qwen": {  # Alibaba Cloud Model Studio (DashScope), OpenAI-compatible mode
        "base_url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        "price_provider": "dashscope",
        "model_patterns": ("qwen*", "qwq-*"),
    },
    "groq": {"base_url": "https://api.groq.com/openai/v1", "price_provider": "groq"},
    "mistral": {
        "base_url": "https://api.mistral.ai/v1",
        "price_provider": "mistral",
        "model_patterns": (
            "mistral-*",
            "open-mistral-*",
            "open-mixtral-*",
            "codestral-*",
            "ministral-*",
            "magistral-*",
            "devstral-*",
            "pixtral-*",
        ),
    },
    "openrouter": {"base_url": "https://openrouter.ai/api/v1", "price_provider": "openrouter"},
    "xai": {
        "base_url": "https://api.x.ai/v1",
        "price_provider": "xai",
        "model_patterns": ("grok-*",),
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
    model_patterns: tuple[str, ...] = ()
    openai_path: str | None = None  # OpenAI-compatible API below base_url (other wire formats)

    @cached_property
    def upstream(self) -> Address:
        return Address(self.base_url)

    @cached_property
    def public(self) -> Address:
        return Address(self.public_url or self.base_url)

    @property
    def price_key(self) -> str:
        """The provider's name in the price map."""
        return self.price_provider or self.name

    @cached_property
    def openai_compatible(self) -> Provider | None:
        """This provider as an OpenAI-format endpoint, for chat completions routed to it.

        Itself for OpenAI-format providers; for others, their OpenAI-compatible API
        (bearer auth); None when they have none.
        """
        if self.api == "openai":
            return self
        if self.openai_path is None:
            return None
        return replace(
            self,
            api="openai",
            base_url=self.base_url + self.openai_path,
            auth_header="authorization",
            auth_prefix="Bearer ",
            auth_query=None,
        )


class ProviderRegistry:
    """Providers by name, address -> provider, and which hosts the proxy intercepts."""

    def __init__(self, providers: dict[str, Provider], default: str = DEFAULT_PROVIDER):
        self.providers = providers
        self.default = providers[default]
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
                if "models" in override:
                    override["models"] = tuple(override["models"])
                if override.pop("openai_compatible", True) is False:
                    override["openai_path"] = None  # chat completions go through LiteLLM
                if name not in BUILTIN_PROVIDERS:  # a custom provider: its format's auth
                    spec.update(API_AUTH.get(override.get("api", "openai"), {}))
                spec.update(
                    {k: v for k, v in override.items() if k == "openai_path" or v is not None}
                )
            providers[name] = Provider(name=name, **spec)
        return cls(providers)

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


def is_pattern(model: str) -> bool:
    """Whether a configured model name is a glob pattern (`mixtral-*`), not a name."""
    return any(ch in model for ch in "*?[")
