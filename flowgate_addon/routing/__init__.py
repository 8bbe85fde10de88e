"""Smart routing: pick a tier (and so a model) for a request.

Strategies live in their own modules behind one small shape: something that
turns a request body into a `Decision`. `complexity` is a rule-based scorer;
`classifier` asks a RouteLLM router and falls back to the scorer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from flowgate_addon.config import TIERS

__all__ = ["TIERS", "Decision", "route_json", "tier_for"]


@dataclass(frozen=True, slots=True)
class Decision:
    """Why a request was given its tier: what is logged and sent back in `x-flowgate-route`."""

    tier: str
    score: float  # 0..1; higher means the request needs a stronger model
    strategy: str  # "complexity" or "classifier"
    dimensions: dict[str, float] = field(default_factory=dict)  # per-dimension scores, 0..1
    fallback: str | None = None  # why the classifier was not used, when it was not


def tier_for(score: float, thresholds: dict[str, float]) -> str:
    """The highest tier whose threshold the score reaches (SIMPLE has none)."""
    tier = TIERS[0]
    for name in TIERS[1:]:
        if score >= thresholds[name]:
            tier = name
    return tier


def route_json(decision: Decision) -> str:
    """The `route` log column: the per-dimension scores behind a decision."""
    return json.dumps({"dimensions": decision.dimensions}, separators=(",", ":"))
