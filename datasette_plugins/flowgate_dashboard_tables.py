"""Datasette plugin: safe table charts for datasette-dashboards.

datasette-dashboards 0.8 draws `table` charts by putting each cell into
`innerHTML`, and fails on a query with no rows. FlowGate's tables show values
clients choose (model names, session ids, error messages), so that would let a
crafted request run script in the dashboard. This plugin serves the plugin's
`dashboards.js` with a replacement table renderer appended: cells are set as
text, an empty result says so, and `id`, `session` and `prompt_hash` cells link to
the request's page or the log filtered to them.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from datasette import hookimpl

SCRIPT_PATH = "/-/static-plugins/datasette_dashboards/dashboards.js"

SAFE_TABLE_RENDERER = """
// FlowGate: table cells as text (never HTML), and a message when there are no rows.
renderTableChart = async function (chart_slug, chart, query_string, absolute_url) {
  const results = await fetch(getDataUrl(chart, query_string, absolute_url))
  const data = await results.json()
  const el = document.querySelector(`#chart-${chart_slug}`)
  const wrapper = document.createElement('div')
  wrapper.style.width = '100%'
  wrapper.style.height = '100%'
  wrapper.style.overflow = 'auto'
  if (!data.rows || data.rows.length === 0) {
    const empty = document.createElement('p')
    empty.className = 'flowgate-no-rows'
    empty.textContent = 'Nothing in this period.'
    wrapper.appendChild(empty)
    el.appendChild(wrapper)
    return
  }
  const table = document.createElement('table')
  const head = table.createTHead().insertRow()
  Object.keys(data.rows[0]).forEach(col => {
    const th = document.createElement('th')
    th.textContent = col
    head.appendChild(th)
  })
  // Columns that lead somewhere: one request's page, or the log filtered to a session/prompt.
  // Datasette's tilde encoding of a database name in a path (`my.log` -> `my~2Elog`).
  const db = Array.from(new TextEncoder().encode(chart.db), b =>
    /[A-Za-z0-9_-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b)
      : b === 32 ? '+' : '~' + b.toString(16).toUpperCase().padStart(2, '0')).join('')
  const links = {
    id: v => `${absolute_url}-/flowgate/request/${encodeURIComponent(v)}`,
    session: v => `${absolute_url}${db}/requests?session=${encodeURIComponent(v)}`,
    prompt_hash: v => `${absolute_url}${db}/requests?prompt_hash=${encodeURIComponent(v)}`,
  }
  const body = table.createTBody()
  data.rows.forEach(row => {
    const tr = body.insertRow()
    Object.entries(row).forEach(([col, value]) => {
      const cell = tr.insertCell()
      const text = value === null ? '' : String(value)
      if (links[col] && value !== null && value !== '') {
        const a = document.createElement('a')
        a.href = links[col](text)
        a.textContent = text
        cell.appendChild(a)
      } else {
        cell.textContent = text
      }
    })
  })
  wrapper.appendChild(table)
  el.appendChild(wrapper)
  if (data.truncated) {
    enableChartTooltip(chart_slug)
  }
}
"""


@cache
def patched_script() -> bytes:
    spec = importlib.util.find_spec("datasette_dashboards")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    original = (folder / "static" / "dashboards.js").read_bytes()
    return original + SAFE_TABLE_RENDERER.encode()


@hookimpl
def asgi_wrapper():
    def wrap(app):
        async def serve(scope, receive, send):
            if scope["type"] != "http" or scope.get("path") != SCRIPT_PATH:
                await app(scope, receive, send)
                return
            body = patched_script()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/javascript; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

        return serve

    return wrap
