"""Datasette plugin: FlowGate's own pages beside the dashboards and the log browser.

- /-/flowgate/request/{id}: one call, readable — the conversation by role, the
  (reassembled) response, the routing decision and its per-dimension scores, usage
  and cost. Long texts are collapsed.
- /-/flowgate/router: the smart-router settings (read-only) and recent decisions.
- /-/flowgate/connect: copy-paste snippets to point apps and agents at FlowGate.
- /-/flowgate/models: the models of every provider FlowGate knows, with prices per 1M
  tokens, context windows and the smart router's tiers; the synced catalog where there
  is one, else LiteLLM's price map.

What the pages know about FlowGate's settings comes from the `flowgate` plugin
config that `flowgate ui` writes into Datasette's metadata; never a secret.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any, NamedTuple
from urllib.parse import quote

from datasette import hookimpl
from datasette.utils.asgi import NotFound, Response

from datasette_plugins.flowgate_cells import dollars
from flowgate_addon.config import PriceSettings
from flowgate_addon.pricing import PriceBook

PREFIX = "/-/flowgate"
ROLE_LINE = re.compile(r"^(system|developer|user|assistant|tool|function)(?: \(([^)]*)\))?: ", re.M)

PAGE = """{% extends "base.html" %}
{% block title %}{{ title }}{% endblock %}
{% block extra_head %}<style>
.fg-msg { border-left: 4px solid #ccc; padding: .3em .8em; margin: .6em 0; }
.fg-msg h4 { margin: 0 0 .3em 0; text-transform: capitalize; }
.fg-user { border-color: #2a7ae2; } .fg-assistant { border-color: #3c9a5f; }
.fg-system, .fg-developer { border-color: #888; } .fg-tool { border-color: #c77d10; }
.fg-msg pre, pre.fg-snippet { white-space: pre-wrap; margin: 0; }
pre.fg-snippet { background: #f4f4f4; padding: .6em; }
table.fg-kv th { text-align: left; padding-right: 1.5em; }
.fg-bar { display: inline-block; background: #2a7ae2; height: .7em; }
form.fg-filter label { margin-right: 1em; }
table.fg-models td.fg-usd, table.fg-models td.fg-ctx { text-align: right; }
table.fg-models tr.fg-routed { background: #eef5fd; }
</style>{% endblock %}
{% block crumbs %}<p class="crumbs"><a href="{{ urls.instance() }}">home</a> /
<a href="{{ urls.instance() }}-/dashboards">dashboards</a></p>{% endblock %}
{% block content %}<h1>{{ title }}</h1>{{ body }}{% endblock %}
"""


def _settings(datasette) -> dict[str, Any]:
    return datasette.plugin_config("flowgate") or {}


def _log_db(datasette):
    name = _settings(datasette).get("database") or next(iter(datasette.databases))
    return datasette.get_database(name), name


async def _page(datasette, request, title: str, body: str) -> Response:
    from markupsafe import Markup

    template = datasette.jinja_env.from_string(PAGE)
    html = await datasette.render_template(
        template, {"title": title, "body": Markup(body)}, request=request
    )
    return Response.html(html)


def _e(value: Any) -> str:
    from markupsafe import escape

    return str(escape("" if value is None else value))


def _text_block(text: str | None, limit: int = 4000) -> str:
    """Text as a <pre>; longer than `limit`, collapsed behind its first lines."""
    if not text:
        return "<p><em>(none stored)</em></p>"
    if len(text) <= limit:
        return f"<pre>{_e(text)}</pre>"
    return (
        f"<details><summary><pre>{_e(text[:600])}…</pre> show all {len(text):,} "
        f"characters</summary><pre>{_e(text)}</pre></details>"
    )


def conversation(prompt: str | None) -> list[tuple[str, str]]:
    """The stored prompt text ('role: content' per message) as (role, content) pairs."""
    if not prompt:
        return []
    starts = [
        m for m in ROLE_LINE.finditer(prompt) if m.start() == 0 or prompt[m.start() - 1] == "\n"
    ]
    if not starts:
        return [("user", prompt)]
    messages = []
    for match, following in zip(starts, [*starts[1:], None], strict=True):
        end = following.start() if following else len(prompt)
        role = match.group(1) + (f" ({match.group(2)})" if match.group(2) else "")
        messages.append((role, prompt[match.end() : end].rstrip("\n")))
    return messages


def _count(value: int | None) -> str | None:
    return None if value is None else f"{value:,}"


def _money(value: float | None) -> str:
    return "—" if value is None else dollars(value)


async def request_page(datasette, request) -> Response:
    db, name = _log_db(datasette)
    try:
        row_id = int(request.url_vars["id"])
    except ValueError:
        raise NotFound("no such request") from None
    rows = (await db.execute("SELECT * FROM requests WHERE id = ?", [row_id])).rows
    if not rows:
        raise NotFound(f"no request {row_id} in the log")
    row = dict(rows[0])
    facts = [
        ("When (UTC)", row["ts"]),
        ("Endpoint", f"{row['method'] or ''} {row['path'] or ''} ({row['endpoint'] or ''})"),
        ("Way in", row["mode"]),
        ("Model asked for", row["requested_model"]),
        ("Model used", row["routed_model"]),
        ("Provider", (row["provider"] or "") + (f" ({row['host']})" if row["host"] else "")),
        ("Status", row["status"]),
        ("Error", row["error"]),
        ("Stream", "yes" if row["stream"] else "no"),
        ("Latency", f"{row['latency_ms']:,.0f} ms" if row["latency_ms"] is not None else None),
        ("First token", f"{row['ttft_ms']:,.0f} ms" if row["ttft_ms"] is not None else None),
        (
            "Caller / session / agent",
            " / ".join(str(row[k] or "—") for k in ("caller", "session", "agent")),
        ),
    ]
    usage = [
        ("Prompt tokens", _count(row["prompt_tokens"])),
        (
            "of which cached / written to cache",
            f"{row['cached_tokens'] or 0} / {row['cache_write_tokens'] or 0}",
        ),
        ("Completion tokens", _count(row["completion_tokens"])),
        ("Usage from", row["usage_source"]),
        ("Cost", _money(row["cost_usd"])),
        ("Saved by routing", _money(row["saved_usd"])),
    ]
    body = [_kv(facts), "<h2>Usage and cost</h2>", _kv(usage)]
    if row["tier"] or row["strategy"]:
        body.append("<h2>Routing decision</h2>")
        body.append(
            _kv(
                [
                    ("Strategy", row["strategy"]),
                    ("Tier", row["tier"]),
                    ("Score", row["score"]),
                    ("Fallback", row["route_fallback"]),
                ]
            )
        )
        dims = (json.loads(row["route"]) if row["route"] else {}).get("dimensions", {})
        if dims:
            body.append("<table class='fg-kv'>")
            for dim, value in dims.items():
                width = max(1, round(float(value) * 200))
                body.append(
                    f"<tr><th>{_e(dim)}</th><td>{float(value):.3f}</td>"
                    f"<td><span class='fg-bar' style='width:{width}px'></span></td></tr>"
                )
            body.append("</table>")
    body.append("<h2>Conversation</h2>")
    messages = conversation(row["prompt"])
    if not messages:
        body.append("<p><em>No prompt stored (logging.store_prompts, or not a chat call).</em></p>")
    for role, content in messages:
        kind = role.split(" ")[0]
        body.append(
            f"<div class='fg-msg fg-{_e(kind)}'><h4>{_e(role)}</h4>{_text_block(content)}</div>"
        )
    body.append("<h2>Response</h2>")
    body.append(f"<div class='fg-msg fg-assistant'>{_text_block(row['response'])}</div>")
    body.append(f"<p><a href='/{_e(name)}/requests/{row_id}'>The raw row</a></p>")
    return await _page(datasette, request, f"Request {row_id}", "\n".join(body))


def _kv(pairs: list[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs if v not in (None, "")
    )
    return f"<table class='fg-kv'>{cells}</table>"


async def router_page(datasette, request) -> Response:
    router = _settings(datasette).get("router") or {}
    db, _ = _log_db(datasette)
    active = router.get("enabled") and router.get("strategy") not in (None, "off")
    body = [
        "<p>Read-only: change <code>smart_router</code> in FlowGate's config. Try a prompt "
        'with <code>flowgate route "…"</code>.</p>',
        _kv(
            [
                ("Routing", "on" if active else "off"),
                ("Strategy", router.get("strategy")),
                ("Routed model names", ", ".join(["auto", *router.get("route_models", [])])),
                ("Savings measured against (for auto)", router.get("baseline_model")),
            ]
        ),
        "<h2>Tiers</h2>",
        _kv([(tier, model) for tier, model in (router.get("tiers") or {}).items()]),
        "<h2>Thresholds (score at which a tier starts)</h2>",
        _kv([(tier, value) for tier, value in (router.get("thresholds") or {}).items()]),
    ]
    if router.get("weights"):
        body += ["<h2>Dimension weights</h2>", _kv(list(router["weights"].items()))]
    recent = await db.execute(
        "SELECT id, ts, requested_model, routed_model, provider, tier, score, strategy, "
        "route_fallback, saved_usd FROM requests WHERE tier IS NOT NULL "
        "ORDER BY id DESC LIMIT 30"
    )
    body.append("<h2>Recent decisions</h2>")
    if not recent.rows:
        body.append("<p><em>No routed requests yet.</em></p>")
    else:
        head = "".join(f"<th>{_e(c)}</th>" for c in recent.columns)
        lines = [f"<table class='rows-and-columns'><thead><tr>{head}</tr></thead><tbody>"]
        for r in recent.rows:
            cells = [f"<td><a href='{PREFIX}/request/{r['id']}'>{r['id']}</a></td>"]
            cells += [f"<td>{_e(r[c])}</td>" for c in recent.columns[1:]]
            lines.append("<tr>" + "".join(cells) + "</tr>")
        lines.append("</tbody></table>")
        body.append("".join(lines))
    return await _page(datasette, request, "Smart router", "\n".join(body))


async def connect_page(datasette, request) -> Response:
    settings = _settings(datasette)
    gateway = settings.get("gateway_url", "http://127.0.0.1:7798/v1")
    proxy = settings.get("proxy_url", "http://127.0.0.1:7799")
    snippets = [
        (
            "Python (openai SDK): change the base URL",
            f'from openai import OpenAI\n\nclient = OpenAI(base_url="{gateway}", '
            'api_key="fgt_… or your provider key")\nclient.chat.completions.create(\n'
            '    model="auto",  # or any model name\n'
            '    messages=[{"role": "user", "content": "Hello"}],\n'
            '    extra_headers={"x-flowgate-session": "my-session"},\n)',
        ),
        (
            "Node (openai SDK)",
            f'import OpenAI from "openai";\n\nconst client = new OpenAI({{ baseURL: "{gateway}", '
            "apiKey: process.env.FLOWGATE_TOKEN }});\nawait client.chat.completions.create({ "
            'model: "auto", messages: [{ role: "user", content: "Hello" }] });',
        ),
        (
            "curl",
            f'curl {gateway}/chat/completions -H "Authorization: Bearer $FLOWGATE_TOKEN" \\\n'
            "  -H 'content-type: application/json' \\\n"
            '  -d \'{"model": "auto", "messages": [{"role": "user", "content": "Hello"}]}\'',
        ),
        (
            "Agents and tools that honour HTTPS_PROXY (no code change)",
            'eval "$(flowgate env)"   # HTTPS_PROXY, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS …\n'
            f"# or by hand:\nexport HTTPS_PROXY={proxy}\n"
            'export SSL_CERT_FILE="$(flowgate ca --path)"   # see `flowgate ca` for bundles',
        ),
        (
            "Caller tokens (required when FlowGate listens beyond this machine)",
            "flowgate tokens create my-app        # shown once; use it as the API key\n"
            "flowgate tokens list\nflowgate tokens revoke my-app",
        ),
        (
            "Provider keys, kept encrypted by FlowGate",
            "flowgate add-key openai\nflowgate keys list\nflowgate catalog sync",
        ),
    ]
    body = [f"<p>Gateway: <code>{_e(gateway)}</code> · forward proxy: <code>{_e(proxy)}</code></p>"]
    for title, code in snippets:
        body.append(f"<h2>{_e(title)}</h2><pre class='fg-snippet'>{_e(code)}</pre>")
    return await _page(datasette, request, "Connect an app to FlowGate", "\n".join(body))


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


def _per_million(value: float | None) -> float | None:
    return None if value is None else round(value * 1e6, 6)


def _priced(prices: PriceBook, model: str, price_provider: str, configured: bool) -> ModelRow:
    price = prices.price(model, price_provider)
    context = prices.info(model, price_provider).get("max_input_tokens")
    return ModelRow(
        model,
        _per_million(price.input) if price else None,
        _per_million(price.cached_input) if price else None,
        _per_million(price.output) if price else None,
        context if isinstance(context, int) and not isinstance(context, bool) else None,
        configured,
    )


@cache
def _price_map_models(price_provider: str, pricing: str) -> tuple[ModelRow, ...]:
    """The price map's chat models for one provider, priced: built once per process."""
    prices = _price_book(pricing)
    return tuple(
        _priced(prices, model, price_provider, configured=False)
        for model in prices.models_for(price_provider)
        if prices.info(model, price_provider).get("mode") in CHAT_MODES
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
        f"<table class='rows-and-columns fg-models' data-provider='{_e(provider)}'><thead><tr>"
        "<th>Model</th><th>Input</th><th>Cached input</th><th>Output</th>"
        "<th>Context window</th><th>Router tier</th></tr></thead><tbody>"
    ]
    for row in rows:
        tier = tiers.get(row.model, []) + tiers.get(f"{provider}/{row.model}", [])
        note = ""
        if row.configured:
            pattern = any(ch in row.model for ch in "*?[")
            note = f" <small>({'a name pattern ' if pattern else ''}from your config)</small>"
        prices = "".join(
            f"<td class='fg-usd' title='{v!r}'>{_e(_usd(v))}</td>"
            if v is not None
            else "<td class='fg-usd'>—</td>"
            for v in (row.input, row.cached_input, row.output)
        )
        context = "—" if row.context_window is None else f"{row.context_window:,}"
        routed = " class='fg-routed'" if tier else ""
        lines.append(
            f"<tr{routed}><td><code>{_e(row.model)}</code>{note}</td>"
            f"{prices}<td class='fg-ctx'>{_e(context)}</td>"
            f"<td>{''.join(f'<strong>{_e(t)}</strong> ' for t in tier).strip()}</td></tr>"
        )
    lines.append("</tbody></table>")
    return "".join(lines)


async def models_page(datasette, request) -> Response:
    settings = _settings(datasette)
    providers = settings.get("providers") or []
    wanted = request.args.get("provider") or None
    query = (request.args.get("q") or "").strip()
    db, _ = _log_db(datasette)
    synced = await _synced(db, wanted)
    pricing = json.dumps(settings.get("pricing") or {}, sort_keys=True)
    tiers: dict[str, list[str]] = {}
    for tier, model in ((settings.get("router") or {}).get("tiers") or {}).items():
        tiers.setdefault(model, []).append(tier)

    options = "".join(
        f"<option value='{_e(p['name'])}'{' selected' if p['name'] == wanted else ''}>"
        f"{_e(p['name'])}</option>"
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
        f"value='{_e(query)}'></label><input type='submit' value='Filter'></form>",
    ]
    shown = [p for p in providers if wanted is None or p["name"] == wanted]
    if not shown:
        known = ", ".join(p["name"] for p in providers) or "none"
        body.append(
            f"<p><strong>No provider named “{_e(wanted)}”.</strong> FlowGate knows: "
            f"{_e(known)}.</p>"
            if wanted
            else "<p><em>No providers in this Datasette's FlowGate settings: start it with "
            "<code>flowgate ui</code>.</em></p>"
        )
        return await _page(datasette, request, "Model catalog", "\n".join(body))

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
            source = f"synced {_e(listed[0])}" + (
                f"; {len(extra)} more from your config" if extra else ""
            )
        else:
            origins = [o for o, n in (("LiteLLM's price map", rows), ("your config", extra)) if n]
            source = (
                (f"from {' and '.join(origins)}" if origins else "no models known yet")
                + f" — run <code>flowgate catalog sync {_e(name)}</code> to list what your "
                "key can use"
            )
        rows += extra
        hits = [r for r in rows if query.casefold() in r.model.casefold()]
        total += len(rows)
        matching += len(hits)
        count = f"{len(hits)} of {len(rows)}" if query else f"{len(rows)}"
        summary.append(
            f"<a href='{PREFIX}/models?provider={_e(quote(name, safe=''))}'>{_e(name)}</a> "
            f"({_e(count)})"
        )
        facts = " · ".join(
            _e(v) for v in (p.get("kind"), p.get("host"), f"price map name: {price_provider}") if v
        )
        section = [
            f"<h2>{_e(name)} <small>{_e(count)} model{'' if len(rows) == 1 else 's'}</small></h2>",
            f"<p class='fg-source'>{facts} · {source}</p>",
        ]
        if hits:
            sections += [*section, _model_table(name, hits, tiers)]
        elif not query:
            sections += section
    found = f"{matching} of {total}" if query else f"{total}"
    body.append(
        f"<p class='fg-counts'><strong>{_e(found)} model{'' if total == 1 else 's'}</strong> "
        f"from {len(shown)} "
        f"provider{'s' if len(shown) != 1 else ''}"
        + (f" matching “{_e(query)}”" if query else "")
        + ": "
        + " · ".join(summary)
        + "</p>"
    )
    if query and not matching:
        body.append(f"<p><strong>No model name contains “{_e(query)}”.</strong></p>")
    body += sections
    return await _page(datasette, request, "Model catalog", "\n".join(body))


@hookimpl
def register_routes():
    return [
        (rf"^{PREFIX}/request/(?P<id>[^/]+)$", request_page),
        (rf"^{PREFIX}/router$", router_page),
        (rf"^{PREFIX}/connect$", connect_page),
        (rf"^{PREFIX}/models$", models_page),
    ]


@hookimpl
def menu_links(datasette, actor):
    return [
        {"href": f"{PREFIX}/router", "label": "Smart router"},
        {"href": f"{PREFIX}/connect", "label": "Connect an app"},
        {"href": f"{PREFIX}/models", "label": "Model catalog"},
    ]
