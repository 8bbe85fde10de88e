"""Tokens -> US dollars, from LiteLLM's bundled price map plus config overrides.

The map is read from the JSON file LiteLLM ships (the same file LiteLLM itself
uses with LITELLM_LOCAL_MODEL_COST_MAP=True), without importing LiteLLM: that
import costs ~2 s and ~200 MB, and nothing is ever fetched from the network.
An unknown model has no price: its cost is None, never a guess.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PRICE_MAP_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True)
class Price:
    """USD per token."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None


@cache
def litellm_price_map() -> dict[str, dict[str, Any]]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / PRICE_MAP_FILE
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)
    data.pop("sample_spec", None)
    return data


class PriceBook:
    """Prices per model; config overrides (USD per 1M tokens) win over the map."""

    def __init__(self, overrides: dict[str, Any] | None = None):
        self._map = litellm_price_map()
        self._overrides = {
            model: Price(
                p.input / 1e6,
                p.output / 1e6,
                None if p.cached_input is None else p.cached_input / 1e6,
                None if p.cache_write is None else p.cache_write / 1e6,
            )
            for model, p in (overrides or {}).items()
        }
        self._cache: dict[str, Price | None] = {}

    def price(self, model: str, provider: str | None = None) -> Price | None:
        key = f"{provider}/{model}" if provider else model
        if key not in self._cache:
            self._cache[key] = self._lookup(model, provider)
        return self._cache[key]

    def _lookup(self, model: str, provider: str | None) -> Price | None:
        for name in (f"{provider}/{model}" if provider else None, model):
            if name and name in self._overrides:
                return self._overrides[name]
        for name in (f"{provider}/{model}" if provider else None, model):
            entry = self._map.get(name) if name else None
            if entry and "input_cost_per_token" in entry:
                return Price(
                    float(entry["input_cost_per_token"]),
                    float(entry.get("output_cost_per_token") or 0.0),
                    entry.get("cache_read_input_token_cost"),
                    entry.get("cache_creation_input_token_cost"),
                )
        return None

    def cost(
        self,
        model: str | None,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        cached_tokens: int | None = 0,
        provider: str | None = None,
        cache_write_tokens: int | None = 0,
    ) -> float | None:
        """Dollars for one call.

        `prompt_tokens` counts every input token; of those, cached ones are billed at the
        cache-read price and cache writes at the cache-write price, where known.
        """
        if not model or prompt_tokens is None:
            return None
        price = self.price(model, provider)
        if price is None:
            return None
        cached = min(cached_tokens or 0, prompt_tokens)
        written = min(cache_write_tokens or 0, prompt_tokens - cached)
        cached_rate = price.input if price.cached_input is None else price.cached_input
        write_rate = price.input if price.cache_write is None else price.cache_write
        return (
            (prompt_tokens - cached - written) * price.input
            + cached * cached_rate
            + written * write_rate
            + (completion_tokens or 0) * price.output
        )

    def models_for(
        self, price_provider: str, modes: tuple[str, ...] = ("chat", "embedding", "responses")
    ) -> list[str]:
        """The map's models of these modes for one provider, as that provider names them."""
        return sorted(
            model for model, mode in _model_index(price_provider).items() if mode in modes
        )

    def provider_of(self, model: str, price_providers: Iterable[str]) -> str | None:
        """The first of these providers the price map files a model under (LiteLLM's knowledge)."""
        for provider in price_providers:
            if model in _model_index(provider):
                return provider
        return None

    def info(self, model: str, provider: str | None = None) -> dict[str, Any]:
        """The price map's entry for a model (empty if unknown)."""
        for name in (f"{provider}/{model}" if provider else None, model):
            if name and name in self._map:
                return self._map[name]
        return {}


@cache
def _model_index(price_provider: str) -> dict[str, str | None]:
    """model -> mode for one provider, its map prefix (`groq/…`) removed."""
    index: dict[str, str | None] = {}
    prefix = price_provider + "/"
    for name, entry in litellm_price_map().items():
        if entry.get("litellm_provider") != price_provider or ":" in name:
            continue
        model = name[len(prefix) :] if name.startswith(prefix) else name
        index.setdefault(model, entry.get("mode"))
    return index
