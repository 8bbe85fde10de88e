"""Datasette plugin: FlowGate's own pages beside the dashboards and the log browser.

- /-/flowgate/request/{id}: one call, readable — the conversation by role, the
  (reassembled) response, the routing decision and its per-dimension scores, usage
  and cost. Long texts are collapsed.
- /-/flowgate/router: the smart-router settings (read-only) and recent decisions.
- /-/flowgate/connect: copy-paste snippets to point apps and agents at FlowGate.
- /-/flowgate/models: the model catalog with prices (flowgate_catalog.py).

What the pages know about FlowGate's settings comes from the `flowgate` plugin
config that `flowgate ui` writes into Datasette's metadata; never a secret.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from datasette import hookimpl
from datasette.utils.asgi import NotFound, Response

from datasette_plugins.flowgate_cells import dollars
from flowgate_addon.config import ConfigError, console_file, load_settings
from flowgate_addon.settings_watch import file_stamp
from flowgate_addon.ui_metadata import page_settings

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


def flowgate_settings(datasette) -> dict[str, Any]:
    """FlowGate's settings as the pages show them: live, so console changes show at once.

    `flowgate ui` writes them into Datasette's metadata at start; with the config's
    path there too, they are re-read whenever the config or the console's settings
    file changes.
    """
    static = datasette.plugin_config("flowgate") or {}
    console = static.get("console")
    if not console or "config_path" not in console:
        return static
    config = console["config_path"]
    stamps = tuple(file_stamp(Path(p)) for p in (config, console_file()) if p)
    key = (static.get("database"), config, stamps)
    if _LIVE.get("key") != key:
        try:
            settings = load_settings(config)
        except ConfigError:
            return static  # the proxy keeps its settings too; the console says why
        _LIVE.update(key=key, value=page_settings(Path(static["database"]), settings))
        _LIVE["value"]["database"] = static.get("database")
    return {**static, **_LIVE["value"], "console": console}


_LIVE: dict[str, Any] = {}


def log_db(datasette):
    """The log database: named in FlowGate's plugin config, else the first one served."""
    name = flowgate_settings(datasette).get("database") or next(
        n for n in datasette.databases if n != "_internal"
    )
    return datasette.get_database(name), name


async def render_page(datasette, request, title: str, body: str) -> Response:
    from markupsafe import Markup

    template = datasette.jinja_env.from_string(PAGE)
    html = await datasette.render_template(
        template, {"title": title, "body": Markup(body)}, request=request
    )
    return Response.html(html)


def esc(value: Any) -> str:
    from markupsafe import escape

    return str(escape("" if value is None else value))


def _text_block(text: str | None, limit: int = 4000) -> str:
    """Text as a <pre>; longer than `limit`, collapsed behind its first lines."""
    if not text:
        return "<p><em>(none stored)</em></p>"
    if len(text) <= limit:
        return f"<pre>{esc(text)}</pre>"
    return (
        f"<details><summary><pre>{esc(text[:600])}…</pre> show all {len(text):,} "
        f"characters</summary><pre>{esc(text)}</pre></details>"
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
    db, name = log_db(datasette)
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
                    f"<tr><th>{esc(dim)}</th><td>{float(value):.3f}</td>"
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
            f"<div class='fg-msg fg-{esc(kind)}'><h4>{esc(role)}</h4>{_text_block(content)}</div>"
        )
    body.append("<h2>Response</h2>")
    body.append(f"<div class='fg-msg fg-assistant'>{_text_block(row['response'])}</div>")
    raw_row = datasette.urls.row(name, "requests", row_id)
    body.append(f"<p><a href='{esc(raw_row)}'>The raw row</a></p>")
    return await render_page(datasette, request, f"Request {row_id}", "\n".join(body))


def _kv(pairs: list[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs if v not in (None, "")
    )
    return f"<table class='fg-kv'>{cells}</table>"


async def router_page(datasette, request) -> Response:
    router = flowgate_settings(datasette).get("router") or {}
    db, _ = log_db(datasette)
    body = [
        "<p>Read-only: change <code>smart_router</code> in FlowGate's config. Try a prompt "
        'with <code>flowgate route "…"</code>.</p>',
        _kv(
            [
                ("Routing", "on" if router.get("active") else "off"),
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
        head = "".join(f"<th>{esc(c)}</th>" for c in recent.columns)
        lines = [f"<table class='rows-and-columns'><thead><tr>{head}</tr></thead><tbody>"]
        for r in recent.rows:
            cells = [f"<td><a href='{PREFIX}/request/{r['id']}'>{r['id']}</a></td>"]
            cells += [f"<td>{esc(r[c])}</td>" for c in recent.columns[1:]]
            lines.append("<tr>" + "".join(cells) + "</tr>")
        lines.append("</tbody></table>")
        body.append("".join(lines))
    return await render_page(datasette, request, "Smart router", "\n".join(body))


async def connect_page(datasette, request) -> Response:
    settings = flowgate_settings(datasette)
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
    body = [
        f"<p>Gateway: <code>{esc(gateway)}</code> · forward proxy: <code>{esc(proxy)}</code></p>"
    ]
    for title, code in snippets:
        body.append(f"<h2>{esc(title)}</h2><pre class='fg-snippet'>{esc(code)}</pre>")
    return await render_page(datasette, request, "Connect an app to FlowGate", "\n".join(body))


@hookimpl
def register_routes():
    return [
        (rf"^{PREFIX}/request/(?P<id>[^/]+)$", request_page),
        (rf"^{PREFIX}/router$", router_page),
        (rf"^{PREFIX}/connect$", connect_page),
    ]


@hookimpl
def menu_links(datasette, actor):
    return [
        {"href": f"{PREFIX}/router", "label": "Smart router"},
        {"href": f"{PREFIX}/connect", "label": "Connect an app"},
    ]
