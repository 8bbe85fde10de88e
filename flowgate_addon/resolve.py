"""Model name -> the provider that serves it, and the name to send it by.

Order: the config's `providers.X.models` (exact names, then glob patterns),
then the synced catalog, then an explicit `provider/model` prefix, then
LiteLLM's knowledge (its price map files each model under a provider), then
the model-name families of the built-in providers. A name none of these know
is refused with a clear error rather than sent somewhere at random.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from flowgate_addon.catalog import Catalog
from flowgate_addon.pricing import PriceBook
from flowgate_addon.providers import Provider, ProviderRegistry, is_pattern

CACHE_LIMIT = 10_000  # distinct model names remembered; a flood of made-up names can't grow it


class ModelResolver:
    def __init__(
        self, registry: ProviderRegistry, prices: PriceBook, catalog: Catalog | None = None
    ):
        self.registry = registry
        self.prices = prices
        self.catalog = catalog
        self.version = 0  # bumped when the catalog changes, so model lists can be rebuilt
        providers = list(registry.providers.values())
        self._exact = {}
        self._globs: list[tuple[str, Provider]] = []
        for provider in providers:
            for name in provider.models:
                if is_pattern(name):
                    self._globs.append((name, provider))
                else:
                    self._exact.setdefault(name, provider)
        self._by_price: dict[str, Provider] = {}
        for provider in providers:
            self._by_price.setdefault(provider.price_key, provider)
        self._families = [(p, provider) for provider in providers for p in provider.model_patterns]
        self._catalog: dict[str, Provider] = {}
        self._load_catalog()
        self._cache: dict[str, tuple[Provider, str] | None] = {}

    def refresh(self) -> None:
        """Take in a new catalog sync, if there was one (looked for at most once a second)."""
        if self.catalog is not None and self.catalog.changed():
            self._load_catalog()
            self._cache.clear()
            self.version += 1

    def resolve(self, model: str) -> tuple[Provider, str] | None:
        """The provider for a model and the model name it knows it by; None if unknown.

        Answers from the catalog as last loaded: the gateway calls `refresh` once per
        request, before resolving.
        """
        try:
            return self._cache[model]
        except KeyError:
            pass
        found = self._lookup(model)
        answer = (found[0], found[1]) if found else None
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[model] = answer
        return answer

    def source(self, model: str) -> str | None:
        """Which step of the resolution order answers for a model (None: none does)."""
        found = self._lookup(model)
        return found[2] if found else None

    def catalog_models(self) -> list[tuple[str, str]]:
        """(provider, model) pairs of the synced catalog."""
        return list(self.catalog.entries) if self.catalog is not None else []

    def _lookup(self, model: str) -> tuple[Provider, str, str] | None:
        """(provider, its name for the model, which step found it), in resolution order."""
        if provider := self._exact.get(model):
            return provider, model, "config"
        for pattern, provider in self._globs:
            if fnmatchcase(model, pattern):
                return provider, model, "config"
        if provider := self._catalog.get(model):
            return provider, model, "catalog"
        prefix, _, rest = model.partition("/")
        if rest and prefix in self.registry.providers:
            return self.registry.providers[prefix], rest, "prefix"
        if price_provider := self.prices.provider_of(model, self._by_price):
            return self._by_price[price_provider], model, "price map"
        for pattern, provider in self._families:
            if fnmatchcase(model, pattern):
                return provider, model, "model family"
        return None

    def _load_catalog(self) -> None:
        order = {name: i for i, name in enumerate(self.registry.providers)}
        entries = sorted(
            (
                (order[name], model, self.registry.providers[name])
                for name, model in self.catalog_models()
                if name in order
            ),
            key=lambda item: item[0],
        )
        self._catalog = {}
        for _, model, provider in entries:
            self._catalog.setdefault(model, provider)
