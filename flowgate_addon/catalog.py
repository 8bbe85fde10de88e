"""The model catalog: which models each provider serves, read from its own `/models`.

`flowgate catalog sync` fills the `models` table of the log database, prices
joined from the price map, so model resolution knows names newer than the
bundled map and the UI can list them. A running FlowGate notices a new sync
without a restart (`Catalog.changed`).
"""

from __future__ import annotations

import sqlite3
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from flowgate_addon.apis.common import as_int
from flowgate_addon.config import Settings
from flowgate_addon.pricing import PriceBook
from flowgate_addon.providers import BUILTIN_PROVIDERS, Provider, ProviderRegistry
from flowgate_addon.security.redact import Redactor
from flowgate_addon.store import open_db

MAX_PAGES = 50  # a provider that keeps paging forever is cut off, not followed
ANTHROPIC_VERSION = "2023-06-01"


class SyncError(Exception):
    """A provider's model list could not be read; the message is safe to show."""


@dataclass(frozen=True)
class ListedModel:
    model: str
    owned_by: str | None = None
    created: int | None = None
    context_window: int | None = None


def fetch_models(
    provider: Provider,
    key: str | None,
    verify: ssl.SSLContext | bool = True,
    timeout: float = 20.0,
) -> list[ListedModel]:
    """Every model the provider lists, following its pagination."""
    headers = {"accept": "application/json"}
    if key:
        headers[provider.auth_header] = provider.auth_prefix + key
    if provider.api == "anthropic":
        headers["anthropic-version"] = ANTHROPIC_VERSION
    pages = _PAGERS.get(provider.api, _openai_pages)
    try:
        with httpx.Client(verify=verify, timeout=timeout, trust_env=False) as client:
            return list(pages(lambda params: _get(client, provider, headers, params)))
    except httpx.HTTPError as exc:
        raise SyncError(f"could not reach {provider.base_url}: {type(exc).__name__}") from None


def _get(
    client: httpx.Client, provider: Provider, headers: dict[str, str], params: dict[str, Any]
) -> dict[str, Any]:
    response = client.get(provider.base_url + "/models", headers=headers, params=params)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        detail = ""
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            detail = f": {body['error'].get('message', '')}"
        raise SyncError(f"{provider.base_url}/models answered {response.status_code}{detail}")
    if not isinstance(body, dict):
        raise SyncError(f"{provider.base_url}/models did not answer with a JSON object")
    return body


Fetch = Callable[[dict[str, Any]], dict[str, Any]]


def _openai_pages(fetch: Fetch) -> Iterator[ListedModel]:
    for item in _items(fetch({}), "data"):
        if isinstance(item.get("id"), str):
            created = item.get("created")
            yield ListedModel(
                item["id"],
                item.get("owned_by") if isinstance(item.get("owned_by"), str) else None,
                created if isinstance(created, int) else None,
                as_int(item.get("context_length") or item.get("context_window")),
            )


def _anthropic_pages(fetch: Fetch) -> Iterator[ListedModel]:
    params: dict[str, Any] = {"limit": 1000}
    for _ in range(MAX_PAGES):
        body = fetch(params)
        items = _items(body, "data")
        for item in items:
            if isinstance(item.get("id"), str):
                yield ListedModel(item["id"], "anthropic", _epoch(item.get("created_at")))
        if not body.get("has_more") or not items:
            return
        params = {"limit": 1000, "after_id": body.get("last_id") or items[-1].get("id")}


def _gemini_pages(fetch: Fetch) -> Iterator[ListedModel]:
    params: dict[str, Any] = {"pageSize": 1000}
    for _ in range(MAX_PAGES):
        body = fetch(params)
        for item in _items(body, "models"):
            name = item.get("name")
            if isinstance(name, str):
                yield ListedModel(
                    name.removeprefix("models/"),
                    "google",
                    None,
                    as_int(item.get("inputTokenLimit")),
                )
        token = body.get("nextPageToken")
        if not token:
            return
        params = {"pageSize": 1000, "pageToken": token}


_PAGERS = {"openai": _openai_pages, "anthropic": _anthropic_pages, "gemini": _gemini_pages}


def _items(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = body.get(key)
    if not isinstance(items, list):
        raise SyncError(f"the model list has no {key!r} array")
    return [item for item in items if isinstance(item, dict)]


def _epoch(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def store_models(
    db_path: Path, provider: Provider, models: list[ListedModel], prices: PriceBook
) -> None:
    """Replace one provider's rows of the `models` table, in one transaction."""
    synced_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = []
    for listed in models:
        known = priced(prices, listed.model, provider.price_key)
        rows.append(
            (
                provider.name,
                listed.model,
                listed.owned_by,
                listed.created,
                listed.context_window or known.context_window,
                known.input,
                known.output,
                known.cached_input,
                synced_at,
            )
        )
    db = open_db(db_path)
    try:
        with db.conn:
            db.conn.execute("DELETE FROM models WHERE provider = ?", (provider.name,))
            db.conn.executemany(
                "INSERT OR REPLACE INTO models (provider, model, owned_by, created, "
                "context_window, input_usd_per_1m, output_usd_per_1m, "
                "cached_input_usd_per_1m, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    finally:
        db.conn.close()


class ModelPrice(NamedTuple):
    """What the price map says of a model: USD per 1M tokens, and its context window."""

    input: float | None
    cached_input: float | None
    output: float | None
    context_window: int | None


def priced(prices: PriceBook, model: str, price_key: str | None) -> ModelPrice:
    """A model's prices per 1M tokens and context window (None where unknown)."""
    price = prices.price(model, price_key)
    context = as_int(prices.info(model, price_key).get("max_input_tokens"))
    if price is None:
        return ModelPrice(None, None, None, context)
    return ModelPrice(
        _per_million(price.input),
        _per_million(price.cached_input),
        _per_million(price.output),
        context,
    )


def _per_million(value: float | None) -> float | None:
    return None if value is None else round(value * 1e6, 6)


class Catalog:
    """The synced catalog as the running proxy sees it: read once, re-read after a sync.

    No connection is kept between looks. SQLite shares a database's WAL index among
    all connections of a process: one held open from a time the database was
    read-only would keep the log writer's new connections read-only too.
    """

    CHECK_EVERY = 1.0  # seconds between looks at the database, at most

    def __init__(self, db_path: Path):
        self._path = db_path
        self._stamp: tuple[Any, ...] | None = None
        self._next_check = 0.0
        self.entries: list[tuple[str, str]] = []  # (provider, model), by provider then model
        self.changed()

    def changed(self) -> bool:
        """Whether a sync happened since the last look (checked at most once a second)."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.CHECK_EVERY
        try:
            conn = sqlite3.connect(self._path, timeout=0.1)
        except sqlite3.Error:
            return False
        try:
            stamp = conn.execute("SELECT count(*), max(synced_at) FROM models").fetchone()
            if stamp == self._stamp:
                return False
            self.entries = conn.execute(
                "SELECT provider, model FROM models ORDER BY provider, model"
            ).fetchall()
        except sqlite3.Error:
            return False  # a busy or missing table: keep what we have, look again later
        finally:
            conn.close()
        self._stamp = stamp
        return True


@dataclass(frozen=True)
class SyncResult:
    provider: str
    count: int | None = None  # models stored; None when skipped or failed
    problem: str | None = None


def sync_catalog(
    settings: Settings,
    registry: ProviderRegistry,
    names: list[str],
    key_for: Callable[[Provider], str | None],
) -> list[SyncResult]:
    """Read each named provider's model list into the catalog; one result per provider.

    Built-in providers without a key are skipped (their /models needs one); custom
    providers are asked without a key, as local servers often need none.
    """
    prices = PriceBook(settings.pricing)
    verify: ssl.SSLContext | bool = True
    if settings.security.upstream_ca_file:
        verify = ssl.create_default_context(cafile=str(settings.security.upstream_ca_file))
    redactor = Redactor(secrets=[])
    results = []
    for name in names:
        provider = registry.providers[name]
        key = key_for(provider)
        if key is None and name in BUILTIN_PROVIDERS:
            results.append(SyncResult(name, problem=f"no key: run `flowgate add-key {name}`"))
            continue
        if key:
            redactor.add_secret(key)
        try:
            models = fetch_models(provider, key, verify)
        except SyncError as exc:
            results.append(SyncResult(name, problem=redactor.redact(str(exc))))
            continue
        store_models(settings.database.path, provider, models, prices)
        results.append(SyncResult(name, len(models)))
    return results
