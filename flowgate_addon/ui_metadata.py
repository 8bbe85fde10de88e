"""The Datasette UI's metadata: FlowGate's dashboards, bound to the log database.

The dashboards live in `config/dashboards.yaml` as readable YAML; here their
placeholders are filled in (the database's name in Datasette, the time-range
filter, percentile queries over the latency histograms) and the result is
written where `datasette --metadata` reads it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from flowgate_addon.config import Settings
from flowgate_addon.providers import BUILTIN_PROVIDERS, Provider, ProviderRegistry
from flowgate_addon.security.admin import signin_file
from flowgate_addon.security.audit import default_audit_path
from flowgate_addon.security.tokens import default_tokens_path
from flowgate_addon.store import FACET_COLUMNS

DASHBOARDS_FILE = Path(__file__).resolve().parent.parent / "config" / "dashboards.yaml"

# Rollup hours in the chosen period: date_start/date_end (YYYY-MM-DD) when given, else
# the last 24 hours, 7 days or 30 days.
RANGE = (
    "(hour >= coalesce(nullif(:date_start, ''), strftime('%Y-%m-%dT%H', 'now', "
    "CASE :period WHEN '24h' THEN '-24 hours' WHEN '30d' THEN '-30 days' "
    "ELSE '-7 days' END)) AND (:date_end = '' OR hour < :date_end || 'T24'))"
)
# The same period on the log's own `ts` column (ISO text sorts like time).
TS_RANGE = RANGE.replace("hour >=", "ts >=").replace("OR hour <", "OR ts <")
# Sessions and prompts seen in the period (first_ts .. last_ts overlaps it).
SPAN_RANGE = RANGE.replace("hour >=", "last_ts >=").replace("OR hour <", "OR first_ts <")
# A percentile from the histogram: the first bucket where the running count reaches it.
PERCENTILE = (
    "WITH h AS (SELECT bucket, sum(n) AS n FROM latency_hourly "
    "WHERE kind = '{kind}' AND {range} GROUP BY bucket), "
    "c AS (SELECT bucket, sum(n) OVER (ORDER BY bucket) AS seen, sum(n) OVER () AS total "
    "FROM h) "
    "SELECT coalesce(CAST(round(bucket_ms(min(bucket))) AS INTEGER), '-') AS value "
    "FROM c WHERE seen >= {fraction} * total"
)
# Datasette settings for the log: facet suggestions scan every column of every row, which
# takes seconds on a big log; the useful facets are configured instead (REQUEST_FACETS).
SETTINGS: dict[str, Any] = {"suggest_facets": False, "sql_time_limit_ms": 3000}
REQUEST_FACETS = list(FACET_COLUMNS)  # each with a covering index (see store.py)
_PERCENTILE_REF = re.compile(r"\{percentile:(latency|ttft):([01]\.\d+)\}")


def dashboards(db_name: str, source: Path = DASHBOARDS_FILE) -> dict[str, Any]:
    """The datasette-dashboards config, placeholders filled in."""
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    for dashboard in config.values():
        for chart in dashboard.get("charts", {}).values():
            chart["db"] = chart.get("db", "{db}").replace("{db}", db_name)
            query = _PERCENTILE_REF.sub(
                lambda m: PERCENTILE.format(kind=m.group(1), fraction=m.group(2), range="{range}"),
                chart.get("query", ""),
            )
            for name, sql in (("ts_range", TS_RANGE), ("span_range", SPAN_RANGE), ("range", RANGE)):
                query = query.replace("{" + name + "}", sql)
            chart["query"] = query
    return config


def metadata(db_path: Path, settings: Settings | None = None) -> dict[str, Any]:
    """Datasette metadata for FlowGate's log database (and its settings, for the pages)."""
    return {
        "title": "FlowGate",
        "description": "Every LLM call through FlowGate: tokens, dollars, latency, routing.",
        "databases": {
            db_path.stem: {
                "tables": {
                    "requests": {"facets": REQUEST_FACETS, "sort_desc": "id"},
                    "models": {
                        "description": "Models each provider serves, from `flowgate catalog "
                        "sync`, with USD per 1M tokens from LiteLLM's price map.",
                        "sort": "provider",
                    },
                }
            }
        },
        "plugins": {
            "datasette-dashboards": dashboards(db_path.stem),
            "flowgate": page_settings(db_path, settings or Settings()),
        },
    }


def page_settings(db_path: Path, settings: Settings) -> dict[str, Any]:
    """What FlowGate's pages show of its settings: addresses, providers, routing, no secrets."""
    from flowgate_addon.routing.router import scorer_for

    server, router = settings.server, settings.smart_router
    scorer = scorer_for(router)
    classifier = router.strategy == "classifier"
    return {
        "database": db_path.stem,
        "gateway_url": f"http://{server.host}:{server.port}/v1",
        "proxy_url": f"http://{server.host}:{server.proxy_port}",
        "router": {
            "enabled": router.enabled,
            "strategy": router.strategy,
            "tiers": dict(router.tiers),
            "route_models": list(router.route_models),
            "baseline_model": router.baseline,
            "active": router.active,
            "thresholds": dict(router.classifier.thresholds) if classifier else scorer.thresholds,
            "weights": {} if classifier else scorer.weights,
        },
        "providers": [
            _provider_summary(p)
            for p in ProviderRegistry.from_config(settings.providers).providers.values()
        ],
        "pricing": {
            model: price.model_dump(exclude_none=True) for model, price in settings.pricing.items()
        },
        "console": console_settings(settings),
    }


def console_settings(settings: Settings) -> dict[str, Any]:
    """What the operator console needs to know: where FlowGate's files are, and its rules."""
    return {
        "config_path": str(settings.source) if settings.source else None,
        "vault_path": str(settings.security.vault_path),
        "tokens_path": str(default_tokens_path()),
        "audit_path": str(default_audit_path()),
        "signin_path": str(signin_file()),
        "session_hours": settings.security.admin_session_hours,
        "dashboard_login": _dashboard_login(settings),
    }


def _dashboard_login(settings: Settings) -> bool:
    """Whether the analytics pages need a sign-in: as configured, else off loopback only."""
    from flowgate_addon.security.access import is_loopback

    configured = settings.security.dashboard_login
    return not is_loopback(settings.server.host) if configured is None else configured


def _provider_summary(provider: Provider) -> dict[str, Any]:
    """A provider as the pages show it: where it is and what it serves, never its key."""
    address = provider.upstream
    default_port = 443 if address.scheme == "https" else 80
    host = address.host if address.port == default_port else f"{address.host}:{address.port}"
    return {
        "name": provider.name,
        "kind": "built-in" if provider.name in BUILTIN_PROVIDERS else "custom",
        "host": host,
        "price_provider": provider.price_key,
        "models": list(provider.models),
        "config_key": bool(provider.api_key),  # whether the config sets one, never which
    }


def write_metadata(settings: Settings, target: Path) -> Path:
    """Write the metadata file `datasette --metadata` reads; returns its path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    data = metadata(settings.database.path, settings)
    target.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return target
