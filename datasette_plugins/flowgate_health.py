"""Datasette plugin: is every call reaching the log? The log writers' health.

- /-/flowgate/health: each FlowGate process writing this database — rows written,
  waiting in memory, lost, and the last error (flowgate_addon/health.py).
- /-/flowgate/health.json: the same for scripts.
- A banner on every page while a writer is failing or has lost rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasette import hookimpl
from datasette.utils.asgi import Response

from datasette_plugins.flowgate_pages import PREFIX, esc, log_db, render_page
from flowgate_addon import health

LEVELS = ("ok", "warning", "error")


def writers(datasette) -> tuple[str, list[dict[str, Any]]]:
    """(overall level, one dict per writer) for the log database Datasette serves."""
    db, _ = log_db(datasette)
    if not db.path:
        return "ok", []
    found = []
    for status in health.read_all(Path(db.path)):
        level, summary = health.assess(status)
        found.append(
            {
                "level": level,
                "summary": summary,
                "host": status.host,
                "pid": status.pid,
                "running": status.running,
                "started": health.iso(status.started),
                "updated": health.iso(status.updated),
                "written": status.written,
                "waiting": status.waiting,
                "lost": status.lost,
                "dropped": status.dropped,
                "row_errors": status.row_errors,
                "lost_at_exit": status.lost_at_exit,
                "failed_writes": status.failed_writes,
                "pruned": status.pruned,
                "last_error": status.last_error,
                "last_error_at": health.iso(status.last_error_at),
                "last_write_at": health.iso(status.last_write_at),
            }
        )
    overall = max((w["level"] for w in found), key=LEVELS.index, default="ok")
    return overall, found


async def health_json(datasette, request) -> Response:
    level, found = writers(datasette)
    return Response.json({"level": level, "writers": found})


async def health_page(datasette, request) -> Response:
    level, found = writers(datasette)
    db, _ = log_db(datasette)
    body = [
        f"<p>Overall: <strong class='fg-health-{level}'>{esc(level)}</strong>. "
        "Each FlowGate process that logs to this database reports here; rows that cannot "
        "be written wait in its memory and are retried every second.</p>"
    ]
    if not found:
        body.append("<p>No FlowGate is writing to this database now, and none lost rows.</p>")
    columns = [
        ("process", lambda w: f"{w['host']} pid {w['pid']}"),
        ("state", lambda w: "running" if w["running"] else "stopped"),
        ("health", lambda w: w["summary"]),
        ("rows written", lambda w: f"{w['written']:,}"),
        ("waiting", lambda w: f"{w['waiting']:,}"),
        ("lost", lambda w: f"{w['lost']:,}"),
        ("failed writes", lambda w: f"{w['failed_writes']:,}"),
        ("last error", lambda w: w["last_error"] and f"{w['last_error']} ({w['last_error_at']})"),
        ("last write", lambda w: w["last_write_at"]),
        ("reported", lambda w: w["updated"]),
    ]
    if found:
        head = "".join(f"<th>{esc(name)}</th>" for name, _ in columns)
        rows = "".join(
            f"<tr class='fg-health-{esc(w['level'])}'>"
            + "".join(f"<td>{esc(cell(w))}</td>" for _, cell in columns)
            + "</tr>"
            for w in found
        )
        body.append(f"<table class='fg-health'><tr>{head}</tr>{rows}</table>")
    if any(w["lost"] and not w["running"] for w in found):
        folder = health.status_dir(Path(db.path))
        body.append(
            f"<p>A stopped process's report stays until its file in <code>{esc(folder)}</code> "
            "is deleted.</p>"
        )
    return await render_page(datasette, request, "Log health", "\n".join(body))


BANNER = """
(function () {
  var bar = document.createElement("div");
  bar.className = "fg-health-banner fg-health-" + %(level)s;
  bar.setAttribute("role", "alert");
  bar.style.cssText = "padding:.5em 1em;color:#fff;background:" + %(color)s;
  var link = document.createElement("a");
  link.href = %(page)s;
  link.style.color = "#fff";
  link.textContent = %(text)s;
  bar.appendChild(link);
  document.body.insertBefore(bar, document.body.firstChild);
})();
"""


def _js(value: str) -> str:
    """A JavaScript string literal that cannot end the <script> it sits in."""
    return json.dumps(value).replace("<", "\\u003c")


@hookimpl
def extra_body_script(datasette):
    """The banner, decided while the page is rendered (no request of its own)."""

    async def banner() -> str:
        level, found = writers(datasette)
        bad = [w for w in found if w["level"] != "ok"]
        if not bad:
            return ""
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return BANNER % {
            "level": _js(level),
            "color": _js("#b3261e" if level == "error" else "#a15c00"),
            "page": _js(datasette.urls.path(f"{PREFIX}/health")),
            "text": _js(f"Log health: FlowGate {bad[0]['summary']}{more}"),
        }

    return banner


@hookimpl
def register_routes():
    return [
        (rf"^{PREFIX}/health$", health_page),
        (rf"^{PREFIX}/health\.json$", health_json),
    ]


@hookimpl
def menu_links(datasette, actor):
    return [{"href": datasette.urls.path(f"{PREFIX}/health"), "label": "Log health"}]
