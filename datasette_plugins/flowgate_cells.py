"""Datasette plugin: FlowGate's log columns shown the way people read them.

Dollars as dollars (small amounts keep their significant digits), token counts with
thousands separators, milliseconds with a unit, and long prompts, responses and
errors collapsed to a preview line that opens on a click. Only the HTML view
changes; JSON and CSV exports keep the raw values.
"""

from __future__ import annotations

from datasette import hookimpl
from markupsafe import Markup, escape

DOLLAR_COLUMNS = {"cost_usd", "saved_usd"}
TOKEN_COLUMNS = {
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "total_tokens",
}
MS_COLUMNS = {"latency_ms", "ttft_ms"}
TEXT_COLUMNS = {"prompt", "response", "error"}
PREVIEW_CHARS = 160  # what a long text shows before it is opened


def collapsed(text: str) -> Markup | None:
    """A long prompt or response as a one-line preview that opens to the whole text."""
    if len(text) <= PREVIEW_CHARS and "\n" not in text:
        return None
    preview = " ".join(text[:PREVIEW_CHARS].split())
    return Markup(
        f'<details class="flowgate-text"><summary>{escape(preview)}… '
        f"<small>({len(text):,} characters)</small></summary>"
        f'<pre style="white-space: pre-wrap">{escape(text)}</pre></details>'
    )


def dollars(value: float) -> str:
    """$1.23 for ordinary amounts, $0.000123 for the per-call fractions of a cent."""
    sign = "-" if value < 0 else ""
    amount = abs(value)
    if amount == 0:
        return "$0"
    if amount >= 0.01:
        return f"{sign}${amount:,.2f}"
    return f"{sign}${amount:.3g}" if amount >= 1e-6 else f"{sign}${amount:.2e}"


@hookimpl
def render_cell(row, value, column, table, database, datasette):
    if table != "requests" or value is None or isinstance(value, bool):
        return None
    # sqlite3.Row: `in` would look at the values, not the column names.
    if column == "ts" and "id" in row.keys():  # noqa: SIM118 (the readable page of one call)
        return Markup(f'<a href="/-/flowgate/request/{int(row["id"])}">{escape(value)}</a>')
    if isinstance(value, str):
        return collapsed(value) if column in TEXT_COLUMNS else None
    if not isinstance(value, int | float):
        return None
    if column in DOLLAR_COLUMNS:
        text = dollars(float(value))
    elif column in TOKEN_COLUMNS:
        text = f"{int(value):,}"
    elif column in MS_COLUMNS:
        text = f"{value:,.1f} ms"
    else:
        return None
    return Markup(f'<span title="{escape(value)}">{escape(text)}</span>')
