"""Datasette plugin: the model catalog with prices, at /-/flowgate/models.

Every provider FlowGate knows, with USD per 1M tokens, context windows and the
smart router's tiers: the synced catalog (`flowgate catalog sync`) where there is
one, else the chat models LiteLLM's price map knows for that provider, plus the
models the config names.
"""

from __future__ import annotations

import json
from functools import cache
from typing import NamedTuple
from urllib.parse import quote

from datasette import hookimpl
from datasette.utils.asgi import Response

from datasette_plugins.flowgate_cells import dollars
from datasette_plugins.flowgate_pages import PREFIX, esc, flowgate_settings, log_db, render_page
from flowgate_addon.catalog import priced
from flowgate_addon.config import PriceSettings
from flowgate_addon.pricing import PriceBook
from flowgate_addon.providers import is_pattern

CHAT_MODES = ("chat", "responses")


class ModelRow(NamedTuple):
    """One model as the catalog page lists it; prices in USD per 1M tokens."""

    model: str
    input: float | None = None
    cached_input: float | None = None
    output: float | None = None
    context_window: int | None = None
    configured: bool = False


@cache
def _price_book(pricing: str) -> PriceBook:
    """FlowGate's prices (the price map and the config's overrides), one per process."""
    overrides = {m: PriceSettings.model_validate(p) for m, p in json.loads(pricing).items()}
    return PriceBook(overrides)


def _priced(prices: PriceBook, model: str, price_provider: str, configured: bool) -> ModelRow:
    return ModelRow(model, *priced(prices, model, price_provider), configured)


@cache
def _price_map_models(price_provider: str, pricing: str) -> tuple[ModelRow, ...]:
    """The price map's chat models for one provider, priced: built once per process."""
    prices = _price_book(pricing)
    return tuple(
        _priced(prices, model, price_provider, configured=False)
        for model in prices.models_for(price_provider, CHAT_MODES)
    )


async def _synced(db, provider: str | None) -> dict[str, tuple[str, list[ModelRow]]]:
    """provider -> (last sync time, its catalog rows), from the `models` table."""
    if not await db.table_exists("models"):
        return {}
    result = await db.execute(
        "SELECT provider, model, context_window, input_usd_per_1m, cached_input_usd_per_1m, "
        "output_usd_per_1m, synced_at FROM models WHERE :provider IS NULL "
        "OR provider = :provider ORDER BY provider, model",
        {"provider": provider},
    )
    synced: dict[str, tuple[str, list[ModelRow]]] = {}
    for r in result.rows:
        when, rows = synced.get(r["provider"], ("", []))
        rows.append(
            ModelRow(
                r["model"],
                r["input_usd_per_1m"],
                r["cached_input_usd_per_1m"],
                r["output_usd_per_1m"],
                r["context_window"],
            )
        )
        synced[r["provider"]] = (max(when, r["synced_at"] or ""), rows)
    return synced


def _usd(value: float | None) -> str:
    """A price per 1M tokens like the other pages' dollars, never rounded away ($0.075)."""
    if value is None:
        return "—"
    if value >= 0.01 and round(value, 2) != value:
        return f"${value:,.6f}".rstrip("0")
    return dollars(value)


def _model_table(provider: str, rows: list[ModelRow], tiers: dict[str, list[str]]) -> str:
    lines = [
        f"<table class='rows-and-columns fg-models' data-provider='{esc(provider)}'><thead><tr>"
        "<th>Model</th><th>Input</th><th>Cached input</th><th>Output</th>"
        "<th>Context window</th><th>Router tier</th></tr></thead><tbody>"
    ]
    for row in rows:
        tier = tiers.get(row.model, []) + tiers.get(f"{provider}/{row.model}", [])
        note = ""
        if row.configured:
            pattern = is_pattern(row.model)
            note = f" <small>({'a name pattern ' if pattern else ''}from your config)</small>"
        prices = "".join(
            f"<td class='fg-usd' title='{v!r}'>{esc(_usd(v))}</td>"
            if v is not None
            else "<td class='fg-usd'>—</td>"
            for v in (row.input, row.cached_input, row.output)
        )
        context = "—" if row.context_window is None else f"{row.context_window:,}"
        routed = " class='fg-routed'" if tier else ""
        lines.append(
            f"<tr{routed}><td><code>{esc(row.model)}</code>{note}</td>"
            f"{prices}<td class='fg-ctx'>{esc(context)}</td>"
            f"<td>{''.join(f'<strong>{esc(t)}</strong> ' for t in tier).strip()}</td></tr>"
        )
    lines.append("</tbody></table>")
    return "".join(lines)


async def models_page(datasette, request) -> Response:
    settings = flowgate_settings(datasette)
    providers = settings.get("providers") or []
    wanted = request.args.get("provider") or None
    query = (request.args.get("q") or "").strip()
    db, _ = log_db(datasette)
    synced = await _synced(db, wanted)
    pricing = json.dumps(settings.get("pricing") or {}, sort_keys=True)
    tiers: dict[str, list[str]] = {}
    for tier, model in ((settings.get("router") or {}).get("tiers") or {}).items():
        tiers.setdefault(model, []).append(tier)

    options = "".join(
        f"<option value='{esc(p['name'])}'{' selected' if p['name'] == wanted else ''}>"
        f"{esc(p['name'])}</option>"
        for p in providers
    )
    body = [
        "<p>USD per 1M tokens. A provider's list is its own <code>/models</code> once "
        "<code>flowgate catalog sync</code> has read it (priced from LiteLLM's price map and "
        "your config's <code>pricing</code>); until then, the chat models LiteLLM's price map "
        "knows for it. <strong>Router tier</strong> marks the models the smart router sends "
        "to.</p>",
        f"<form class='fg-filter' method='get' action='{PREFIX}/models'>"
        f"<label>Provider <select name='provider'><option value=''>all</option>{options}"
        f"</select></label><label>Model name contains <input type='search' name='q' "
        f"value='{esc(query)}'></label><input type='submit' value='Filter'></form>",
    ]
    shown = [p for p in providers if wanted is None or p["name"] == wanted]
    if not shown:
        known = ", ".join(p["name"] for p in providers) or "none"
        body.append(
            f"<p><strong>No provider named “{esc(wanted)}”.</strong> FlowGate knows: "
            f"{esc(known)}.</p>"
            if wanted
            else "<p><em>No providers in this Datasette's FlowGate settings: start it with "
            "<code>flowgate ui</code>.</em></p>"
        )
        return await render_page(datasette, request, "Model catalog", "\n".join(body))

    sections, total, matching, summary = [], 0, 0, []
    for p in shown:
        name = p["name"]
        price_provider = p.get("price_provider") or name
        listed = synced.get(name)
        rows = list(listed[1] if listed else _price_map_models(price_provider, pricing))
        seen = {row.model for row in rows}
        extra = [
            _priced(_price_book(pricing), model, price_provider, configured=True)
            for model in p.get("models") or []
            if model not in seen
        ]
        if listed:
            source = f"synced {esc(listed[0])}" + (
                f"; {len(extra)} more from your config" if extra else ""
            )
        else:
            origins = [o for o, n in (("LiteLLM's price map", rows), ("your config", extra)) if n]
            source = (
                (f"from {' and '.join(origins)}" if origins else "no models known yet")
                + f" — run <code>flowgate catalog sync {esc(name)}</code> to list what your "
                "key can use"
            )
        rows += extra
        hits = [r for r in rows if query.casefold() in r.model.casefold()]
        total += len(rows)
        matching += len(hits)
        count = f"{len(hits)} of {len(rows)}" if query else f"{len(rows)}"
        summary.append(
            f"<a href='{PREFIX}/models?provider={esc(quote(name, safe=''))}'>{esc(name)}</a> "
            f"({esc(count)})"
        )
        facts = " · ".join(
            esc(v) for v in (p.get("kind"), p.get("host"), f"price map name: {price_provider}") if v
        )
        section = [
            f"<h2>{esc(name)} <small>{esc(count)} model{'' if len(rows) == 1 else 's'}"
            "</small></h2>",
            f"<p class='fg-source'>{facts} · {source}</p>",
        ]
        if hits:
            sections += [*section, _model_table(name, hits, tiers)]
        elif not query:
            sections += section
    found = f"{matching} of {total}" if query else f"{total}"
    body.append(
        f"<p class='fg-counts'><strong>{esc(found)} model{'' if total == 1 else 's'}</strong> "
        f"from {len(shown)} "
        f"provider{'s' if len(shown) != 1 else ''}"
        + (f" matching “{esc(query)}”" if query else "")
        + ": "
        + " · ".join(summary)
        + "</p>"
    )
    if query and not matching:
        body.append(f"<p><strong>No model name contains “{esc(query)}”.</strong></p>")
    body += sections
    return await render_page(datasette, request, "Model catalog", "\n".join(body))


@hookimpl
def register_routes():
    return [(rf"^{PREFIX}/models$", models_page)]


@hookimpl
def menu_links(datasette, actor):
    return [{"href": f"{PREFIX}/models", "label": "Model catalog"}]
