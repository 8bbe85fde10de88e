"""Which requests are routed, and to which model.

A request is routed when smart routing is on and it asks for the alias model
`auto` or for a name listed in `smart_router.route_models`, unless it opts out
with the `x-flowgate-routing: off` header. The strategy gives a tier; the tier
names the model (`smart_router.tiers`), which resolves to a provider like any
other model name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from flowgate_addon.catalog import Catalog
from flowgate_addon.config import Settings, SmartRouterSettings
from flowgate_addon.pricing import PriceBook
from flowgate_addon.providers import Provider, ProviderRegistry
from flowgate_addon.resolve import ModelResolver
from flowgate_addon.routing import TIERS, Decision
from flowgate_addon.routing.complexity import ComplexityScorer, prompt_text

if TYPE_CHECKING:
    from flowgate_addon.routing.classifier import Classifier

ALIAS = "auto"
OPT_OUT_HEADER = "x-flowgate-routing"
OPT_OUT_VALUES = frozenset({"off", "0", "false", "no", "none"})
ROUTE_HEADER = "x-flowgate-route"
# Endpoints whose bodies carry a conversation a strategy can judge.
ROUTABLE_ENDPOINTS = frozenset({"chat.completions", "responses", "completions"})


def scorer_for(settings: SmartRouterSettings) -> ComplexityScorer:
    """The complexity scorer with the config's weights and thresholds over the defaults."""
    options = settings.complexity
    return ComplexityScorer(options.weights, options.thresholds or None)


def make_classifier(
    settings: SmartRouterSettings,
    registry: ProviderRegistry,
    key_for: Callable[[Provider], str | None],
) -> Classifier | None:
    """The RouteLLM classifier, loading in the background, if the strategy wants it.

    Its mf embeddings go to `embeddings_provider`'s OpenAI-compatible API with
    FlowGate's own key for that provider (`key_for`: config, then vault).
    """
    if not settings.active or settings.strategy != "classifier":
        return None
    from flowgate_addon.routing.classifier import Classifier

    options = settings.classifier
    provider = registry.providers.get(options.embeddings_provider)
    compatible = provider.openai_compatible if provider else None
    if provider is None or compatible is None:
        raise ValueError(
            "smart_router.classifier.embeddings_provider: "
            f"{options.embeddings_provider!r} is not an OpenAI-compatible provider"
        )
    classifier = Classifier(
        options.router,
        options.checkpoint,
        options.thresholds,
        options.timeout_ms,
        embeddings_base_url=compatible.base_url,
        embeddings_api_key=key_for(provider),
        embedding_model=options.embedding_model,
    )
    classifier.start()
    return classifier


def build_router(
    settings: Settings, key_for: Callable[[Provider], str | None] | None = None
) -> Router:
    """The router from settings, as every part of FlowGate builds it.

    With `key_for` (FlowGate's own provider keys) the classifier strategy gets its
    RouteLLM classifier, loading in the background; without it, the complexity scorer
    decides. ValueError names a setting that cannot work (a tier's model nobody serves).
    """
    registry = ProviderRegistry.from_config(settings.providers)
    catalog = Catalog(settings.database.path) if settings.database.path.exists() else None
    resolver = ModelResolver(registry, PriceBook(settings.pricing), catalog)
    classifier = make_classifier(settings.smart_router, registry, key_for) if key_for else None
    return Router(settings.smart_router, resolver, classifier)


class Router:
    def __init__(
        self,
        settings: SmartRouterSettings,
        resolver: ModelResolver,
        classifier: Classifier | None = None,
    ):
        self.settings = settings
        self.active = settings.active
        self.names = frozenset({ALIAS, *settings.route_models}) if self.active else frozenset()
        self.resolver = resolver
        self.scorer = scorer_for(settings)
        self.classifier = classifier
        self.baseline = settings.baseline
        if self.active:
            for tier in TIERS:
                self._check_model(f"smart_router.tiers.{tier}", settings.tiers[tier])
            if settings.baseline_model:
                self._check_model("smart_router.baseline_model", settings.baseline_model)

    def _check_model(self, key: str, model: str) -> None:
        if self.resolver.resolve(model) is None:
            raise ValueError(f"{key}: {unknown_model_message(model)}")

    def routes(self, model: str) -> bool:
        """Whether a request for this model is one the router decides."""
        return model in self.names

    def decide(self, body: dict[str, Any]) -> Decision | Awaitable[Decision]:
        """The tier for a request: at once with the scorer, awaitable with the classifier."""
        if self.classifier is None:
            return self.scorer.decide(body)
        return self._classify(body)

    async def _classify(self, body: dict[str, Any]) -> Decision:
        assert self.classifier is not None
        result = await self.classifier.decide(prompt_text(body))
        if isinstance(result, Decision):
            return result
        return replace(self.scorer.decide(body), fallback=result)

    def decide_now(self, body: dict[str, Any]) -> Decision:
        """The tier for a request, blocking (for `flowgate route`)."""
        if self.classifier is None:
            return self.scorer.decide(body)
        result = self.classifier.decide_sync(prompt_text(body))
        if isinstance(result, Decision):
            return result
        return replace(self.scorer.decide(body), fallback=result)

    def target(self, decision: Decision) -> tuple[str, Provider, str]:
        """The tier's model, its provider and the name the provider knows it by."""
        model = self.settings.tiers[decision.tier]
        found = self.resolver.resolve(model)
        if found is None:  # checked at start; only a catalog re-sync could drop it
            raise LookupError(f"smart_router.tiers.{decision.tier}: {unknown_model_message(model)}")
        return (model, *found)


def route_header(decision: Decision, model: str, provider: str) -> str:
    """The `x-flowgate-route` response header: the decision in one readable line."""
    dims = ",".join(f"{name}:{value:.2f}" for name, value in decision.dimensions.items())
    parts = [
        f"tier={decision.tier}",
        f"score={decision.score:.3f}",
        f"strategy={decision.strategy}",
        f"model={model}",
        f"provider={provider}",
        f"dims={dims}",
    ]
    if decision.fallback:  # "; " separates the fields
        parts.append(f"fallback={decision.fallback.replace(';', ',')}")
    return "; ".join(parts).encode("ascii", "replace").decode("ascii")


def unknown_model_message(model: str) -> str:
    return (
        f"FlowGate does not know which provider serves the model {model!r}: list it under "
        "providers.<name>.models in the config, run `flowgate catalog sync`, or name the "
        f"provider in the request (for example 'openai/{model}')"
    )
