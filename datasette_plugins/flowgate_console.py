"""Datasette plugin: the operator console, behind an admin sign-in.

- /-/flowgate/login: sign in with the vault's master password.
- /-/flowgate/signin?token=…: the one-time link `flowgate ui` / `flowgate start` print.
- /-/flowgate/admin: the console's home — what an admin can manage, and the audit log.
- /-/flowgate/admin/tokens: caller tokens — create (shown once), list, revoke.
- /-/flowgate/admin/router: the smart router — strategy, tier -> model, thresholds,
  routed models — saved for every FlowGate process (console_settings.py) and taken up
  by a running proxy within a second; and "try a prompt".
- /-/flowgate/admin/keys: provider keys in the vault — status and fingerprint per
  provider, add or replace (with the master password), remove; sets the vault up
  on first use.

Every management route needs the admin actor (Datasette's signed `ds_actor` cookie,
with an expiry); every form carries Datasette's CSRF token, which Datasette checks on
every POST. Sign out with Datasette's own /-/logout. The work is done by the same
code the CLI uses (security/tokens.py, security/vault.py), and each action goes to the audit log.
A running FlowGate uses a new or replaced key from its next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from datasette import hookimpl
from datasette.plugins import pm
from datasette.utils import await_me_maybe, baseconv
from datasette.utils.asgi import Forbidden, Request, Response

from datasette_plugins.flowgate_pages import (
    PREFIX,
    esc,
    flowgate_settings,
    log_db,
    render_page,
)
from flowgate_addon import catalog, ui_metadata
from flowgate_addon.cli_tokens import parse_ttl
from flowgate_addon.config import TIERS, ConfigError, load_settings
from flowgate_addon.console_settings import console_providers, save_section
from flowgate_addon.providers import BUILTIN_PROVIDERS, ProviderRegistry, is_pattern
from flowgate_addon.routing.router import scorer_for
from flowgate_addon.security import admin
from flowgate_addon.security.audit import AuditLog
from flowgate_addon.security.credentials import Credentials, change_master_password, init_vault
from flowgate_addon.security.tokens import TokenStore
from flowgate_addon.security.unlock import VAULT_PATH
from flowgate_addon.security.vault import Vault, VaultError, WrongPassword

ADMIN = f"{PREFIX}/admin"
THROTTLE = admin.LoginThrottle()
STYLE = """<style>
form.fg-inline { display: inline; }
.fg-once { background: #fff6d6; border: 1px solid #e0c050; padding: .6em; }
.fg-once code { font-size: 1.1em; user-select: all; }
.fg-flash { background: #eef5fd; border-left: 4px solid #2a7ae2; padding: .4em .8em; }
.fg-problem { background: #fdeeee; border-left: 4px solid #b3261e; padding: .4em .8em; }
table.fg-admin td, table.fg-admin th { padding: .2em .8em .2em 0; text-align: left; }
.fg-console label { width: auto; white-space: nowrap; margin: .2em 1em .2em 0; }
.fg-console nav form { display: inline; margin-left: 1em; }
</style>"""


def console_settings(datasette) -> dict[str, Any]:
    """The console block `flowgate ui` writes into the metadata (else the defaults')."""
    found = flowgate_settings(datasette).get("console") or ui_metadata.console_settings(
        load_settings(None)
    )
    return {
        **found,
        **{k: Path(found[k]) for k in ("vault_path", "tokens_path", "audit_path", "signin_path")},
    }


def client_ip(request) -> str:
    client = request.scope.get("client")
    return client[0] if client else "?"


def audit(datasette, request, action: str, target: str | None = None, detail=None) -> None:
    log = AuditLog(console_settings(datasette)["audit_path"])
    try:
        actor = request.actor or {}
        who = f"console:{actor.get('via', 'unknown')}"
        log.record(who, action, target, detail, client_ip(request))
    finally:
        log.close()


def csrf_field(request) -> str:
    return f'<input type="hidden" name="csrftoken" value="{esc(request.scope["csrftoken"]())}">'


def signed_in(datasette, request, via: str) -> Response:
    """Redirect to the console with the admin actor cookie, valid for the session hours."""
    hours = console_settings(datasette)["session_hours"]
    expires = int(time.time() + hours * 3600)
    response = Response.redirect(datasette.urls.path(ADMIN))
    response.set_cookie(
        "ds_actor",
        datasette.sign(
            {"a": {"id": admin.ADMIN_ID, "via": via}, "e": baseconv.base62.encode(expires)},
            "actor",
        ),
        max_age=int(hours * 3600),
        httponly=True,
        samesite="lax",
    )
    audit(datasette, request, "sign in", detail=f"with the {via}")
    return response


async def page(datasette, request, title: str, body: str) -> Response:
    nav = (
        f'<nav><a href="{datasette.urls.path(ADMIN)}">console</a> · '
        f'<a href="{datasette.urls.path(ADMIN + "/tokens")}">caller tokens</a> · '
        f'<a href="{datasette.urls.path(ADMIN + "/keys")}">provider keys</a> · '
        f'<a href="{datasette.urls.path(ADMIN + "/router")}">router</a>'
        f'<form method="post" action="{datasette.urls.path("/-/logout")}">'
        f'{csrf_field(request)}<button type="submit">Sign out</button></form></nav>'
    )
    content = f"<div class='fg-console'>{nav}{body}</div>"
    return await render_page(datasette, request, title, STYLE + content)


def require_admin(datasette, request) -> Response | None:
    """None for the admin; otherwise where an anonymous or expired visitor goes instead."""
    if admin.is_admin(request.actor):
        return None
    if request.method != "GET":
        raise Forbidden("Sign in to FlowGate's console first.")
    login = datasette.urls.path(f"{PREFIX}/login")
    return Response.redirect(f"{login}?next={request.path}")


# --- signing in ---------------------------------------------------------------------------


async def login_page(datasette, request) -> Response:
    settings = console_settings(datasette)
    problem = ""
    status = 200
    if request.method == "POST":
        address = client_ip(request)
        wait = THROTTLE.retry_after(address)
        if wait:
            problem, status = f"Too many wrong passwords: try again in {wait:.0f} s.", 429
        else:
            password = (await request.post_vars()).get("password", "")
            vault = Vault(settings["vault_path"])
            try:
                if not vault.exists:
                    raise VaultError("no vault yet")
                await asyncio.to_thread(vault.unlock, password)
            except WrongPassword:
                THROTTLE.failed(address)
                problem, status = "That is not the master password.", 401
            except VaultError as exc:
                problem, status = f"Cannot check the password: {exc}.", 503
            else:
                THROTTLE.succeeded(address)
                return signed_in(datasette, request, "master password")
    vault_exists = settings["vault_path"].exists()
    body = [STYLE]
    if problem:
        body.append(f"<p class='fg-problem'>{esc(problem)}</p>")
    if vault_exists:
        body.append(
            f'<form method="post" action="{datasette.urls.path(PREFIX + "/login")}">'
            f"{csrf_field(request)}"
            '<p><label>Master password <input type="password" name="password" '
            'autocomplete="current-password" autofocus required></label> '
            '<button type="submit">Sign in</button></p></form>'
        )
    else:
        body.append("<p>There is no vault yet, so there is no master password to sign in with.</p>")
    body.append(
        "<p>Or open the one-time sign-in link that <code>flowgate ui</code> and "
        f"<code>flowgate start</code> print (valid {admin.SIGNIN_MINUTES} minutes).</p>"
    )
    response = await render_page(datasette, request, "Sign in to FlowGate", "\n".join(body))
    response.status = status
    return response


async def signin_link(datasette, request) -> Response:
    token = request.args.get("token") or ""
    if not admin.redeem_signin(token, console_settings(datasette)["signin_path"]):
        raise Forbidden(
            "This sign-in link is not valid: it was used already, has expired, or a newer "
            "one was printed. Restart `flowgate ui` for a new one, or sign in with the "
            "master password."
        )
    return signed_in(datasette, request, "sign-in link")


# --- the console ---------------------------------------------------------------------------


async def console_home(datasette, request) -> Response:
    if (refused := require_admin(datasette, request)) is not None:
        return refused
    log = AuditLog(console_settings(datasette)["audit_path"])
    try:
        entries = log.recent(200)
    finally:
        log.close()
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{esc(e[c])}</td>" for c in ("ts", "actor", "action", "target", "client_ip"))
        + "</tr>"
        for e in entries
    )
    body = (
        "<h2>Audit log</h2><p>Every management action, newest first (never a secret).</p>"
        "<table class='fg-admin fg-audit'><tr><th>when</th><th>who</th><th>what</th>"
        f"<th>target</th><th>from</th></tr>{rows}</table>"
    )
    return await page(datasette, request, "FlowGate console", body)


async def tokens_page(datasette, request) -> Response:
    if (refused := require_admin(datasette, request)) is not None:
        return refused
    settings = console_settings(datasette)
    flash, problem = "", ""
    store = TokenStore(settings["tokens_path"])
    try:
        if request.method == "POST":
            form = await request.post_vars()
            action = form.get("action")
            name = (form.get("name") or "").strip()
            if action == "create":
                try:
                    ttl_text = (form.get("ttl") or "").strip()
                    ttl: timedelta | None = parse_ttl(ttl_text) if ttl_text else None
                    token = store.create(name, ttl)
                except ValueError as exc:
                    problem = str(exc)
                else:
                    audit(datasette, request, "create caller token", name, ttl_text or None)
                    flash = (
                        f"<div class='fg-once'><p>Token <strong>{esc(name)}</strong> — copy it "
                        "now, it is not shown again:</p><p><code id='fg-new-token'>"
                        f"{esc(token)}</code> <button type='button' id='fg-copy' onclick="
                        "\"navigator.clipboard.writeText(document.getElementById('fg-new-token')"
                        '.textContent)">Copy</button></p></div>'
                    )
            elif action == "revoke":
                if store.revoke(name):
                    audit(datasette, request, "revoke caller token", name)
                    flash = f"<p class='fg-flash'>Revoked {esc(name)}.</p>"
                else:
                    problem = f"There is no token named {name!r}."
            else:
                problem = "Unknown action."
        tokens = store.list()
    finally:
        store.close()
    last_used = await _last_used(datasette, [t["name"] for t in tokens])
    rows = []
    for t in tokens:
        revoke = (
            f'<form class="fg-inline" method="post">{csrf_field(request)}'
            f'<input type="hidden" name="action" value="revoke">'
            f'<input type="hidden" name="name" value="{esc(t["name"])}">'
            f'<button type="submit">Revoke</button></form>'
            if t["status"] == "active"
            else ""
        )
        cells = [
            t["name"],
            f"fgt_{t['prefix']}…",
            t["created"],
            t["expires"] or "never",
            last_used.get(t["name"]) or "never",
            t["status"],
        ]
        rows.append(
            f"<tr class='fg-token-{esc(t['status'])}'>"
            + "".join(f"<td>{esc(c)}</td>" for c in cells)
            + f"<td>{revoke}</td></tr>"
        )
    body = [
        flash,
        f"<p class='fg-problem'>{esc(problem)}</p>" if problem else "",
        "<p>Callers present a token as their API key (gateway) or proxy password. With no "
        "tokens, FlowGate is open to whoever can reach it on loopback; from the first token "
        "on, every request needs one. A running FlowGate honours changes at once.</p>",
        f'<form method="post">{csrf_field(request)}<input type="hidden" name="action" '
        'value="create"><label>Name <input name="name" required maxlength="64"></label> '
        '<label>Lifetime <input name="ttl" placeholder="e.g. 30d (empty: no expiry)">'
        '</label> <button type="submit">Create token</button></form>',
        "<table class='fg-admin fg-tokens'><tr><th>name</th><th>token</th><th>created</th>"
        "<th>expires</th><th>last used</th><th>status</th><th></th></tr>"
        + "".join(rows)
        + "</table>",
    ]
    response = await page(datasette, request, "Caller tokens", "\n".join(body))
    if problem:
        response.status = 400
    return response


async def keys_page(datasette, request) -> Response:
    if (refused := require_admin(datasette, request)) is not None:
        return refused
    settings = console_settings(datasette)
    vault = Vault(settings["vault_path"])
    providers = flowgate_settings(datasette).get("providers") or []
    names = {p["name"] for p in providers}
    flash, problem = "", ""
    if request.method == "POST":
        form = await request.post_vars()
        action, provider = form.get("action"), (form.get("provider") or "").strip()
        password = form.get("password") or ""
        try:
            if action in ("add_provider", "remove_provider", "sync"):
                flash = await _provider_action(datasette, request, settings, action, form)
            elif action in ("unlock", "change_password"):
                flash = await _vault_action(datasette, request, settings, action, form)
            elif action == "init":
                if vault.exists:
                    raise VaultError("the vault is set up already")
                if len(password) < 8 or password != form.get("confirm"):
                    raise VaultError("the passwords differ, or are shorter than 8 characters")
                key_file = load_settings(settings["config_path"]).security.master_key_path
                await asyncio.to_thread(init_vault, vault, password, key_file)
                audit(datasette, request, "set up the vault")
                flash = "The vault is set up. Add provider keys below."
            elif provider not in names:
                raise VaultError(f"unknown provider {provider!r}")
            elif action == "add":
                if not vault.exists:
                    raise VaultError("set up the vault first")
                await asyncio.to_thread(vault.unlock, password)
                info = vault.add(provider, form.get("key") or "")
                audit(datasette, request, "add provider key", provider, info.fingerprint)
                flash = f"Stored the key for {provider} ({info.fingerprint})."
            elif action == "remove":
                if not (vault.exists and vault.remove(provider)):
                    raise VaultError(f"the vault holds no key for {provider}")
                audit(datasette, request, "remove provider key", provider)
                flash = f"Removed the key for {provider}."
            else:
                raise VaultError("unknown action")
        except WrongPassword:
            problem = "That is not the master password; nothing was changed."
        except (VaultError, ConfigError, ValueError) as exc:
            problem = f"Nothing was changed: {exc}"
        providers = flowgate_settings(datasette).get("providers") or []  # a change shows now
    held = {}
    if vault.exists:
        try:
            held = {k.provider: k for k in vault.list()}
        except VaultError as exc:
            problem = problem or f"The vault cannot be read: {exc}."
    body = [
        f"<p class='fg-flash'>{esc(flash)}</p>" if flash else "",
        f"<p class='fg-problem'>{esc(problem)}</p>" if problem else "",
    ]
    if not vault.exists:
        body.append(
            "<h2>Set up the vault</h2><p>Provider keys are kept encrypted under a master "
            "password (scrypt and AES-256-GCM). It cannot be recovered: keep it safe.</p>"
            f'<form method="post">{csrf_field(request)}<input type="hidden" name="action" '
            'value="init"><label>Master password <input type="password" name="password" '
            'autocomplete="new-password" required minlength="8"></label> <label>Again '
            '<input type="password" name="confirm" autocomplete="new-password" required>'
            '</label> <button type="submit">Set up</button></form>'
        )
    rows = []
    for p in providers:
        key = held.get(p["name"])
        status = (
            f"vault: {key.fingerprint}, added {key.created}"
            if key
            else "config (api_key)"
            if p.get("config_key")
            else "missing"
        )
        remove = (
            f'<form class="fg-inline" method="post">{csrf_field(request)}'
            '<input type="hidden" name="action" value="remove">'
            f'<input type="hidden" name="provider" value="{esc(p["name"])}">'
            "<button type='submit'>Remove</button></form>"
            if key
            else ""
        )
        rows.append(
            f"<tr class='fg-key-{'set' if key or p.get('config_key') else 'missing'}'>"
            f"<td>{esc(p['name'])}</td><td>{esc(p['kind'])}</td><td>{esc(p['host'])}</td>"
            f"<td>{esc(status)}</td><td>{remove}</td></tr>"
        )
    options = "".join(f"<option>{esc(p['name'])}</option>" for p in providers)
    body.append(
        "<table class='fg-admin fg-keys'><tr><th>provider</th><th>kind</th><th>host</th>"
        "<th>key</th><th></th></tr>" + "".join(rows) + "</table>"
    )
    if vault.exists:
        body.append(await _vault_forms(datasette, request))
    body.append(_provider_forms(request, providers, console_providers(), vault.exists))
    if vault.exists:
        body.append(
            "<h2>Add or replace a key</h2><p>The key is encrypted at once; it is never shown "
            "again, only its fingerprint. A key in the config (<code>api_key</code>) wins "
            "over the vault's.</p>"
            f'<form method="post">{csrf_field(request)}<input type="hidden" name="action" '
            f'value="add"><label>Provider <select name="provider">{options}</select></label> '
            '<label>API key <input type="password" name="key" autocomplete="off" required>'
            '</label> <label>Master password <input type="password" name="password" '
            'autocomplete="current-password" required></label> '
            '<button type="submit">Store key</button></form>'
        )
    response = await page(datasette, request, "Providers and keys", "\n".join(body))
    if problem:
        response.status = 400
    return response


def _gateway(datasette) -> str:
    """The running proxy's gateway address, reachable from here."""
    url = flowgate_settings(datasette).get("gateway_url") or "http://127.0.0.1:7798/v1"
    url = url.removesuffix("/v1")
    for wildcard in ("//0.0.0.0:", "//[::]:"):
        url = url.replace(wildcard, "//127.0.0.1:")
    return url + VAULT_PATH


async def _proxy_vault(datasette, password: str | None = None) -> tuple[dict | None, str]:
    """The running FlowGate's vault state (after unlocking it, given a password)."""
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            if password is None:
                response = await client.get(_gateway(datasette))
            else:
                response = await client.post(_gateway(datasette), json={"password": password})
    except httpx.HTTPError as exc:
        return None, f"FlowGate's gateway does not answer ({exc.__class__.__name__})"
    if response.status_code != 200:
        try:
            return None, response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            return None, f"the gateway answered HTTP {response.status_code}"
    return response.json(), ""


async def _vault_action(datasette, request, settings, action: str, form) -> str:
    vault = Vault(settings["vault_path"])
    if action == "change_password":
        new = form.get("new") or ""
        if len(new) < 8 or new != form.get("confirm"):
            raise VaultError("the new passwords differ, or are shorter than 8 characters")
        key_file = load_settings(settings["config_path"]).security.master_key_path
        await asyncio.to_thread(
            change_master_password, vault, form.get("password") or "", new, key_file
        )
        audit(datasette, request, "change master password")
        state, problem = await _proxy_vault(datasette, new)  # it holds the old key
        tail = "the running FlowGate is unlocked with it" if state else f"but {problem}"
        return f"The master password is changed ({len(vault.list())} keys re-encrypted); {tail}."
    state, problem = await _proxy_vault(datasette, form.get("password") or "")
    audit(datasette, request, "unlock the running FlowGate's vault", detail=problem or "unlocked")
    if state is None:
        raise VaultError(f"the running FlowGate's vault stays locked: {problem}")
    return "The running FlowGate's vault is unlocked."


async def _vault_forms(datasette, request) -> str:
    state, problem = await _proxy_vault(datasette)
    if state is None:
        status = f"Cannot tell: {esc(problem)}."
    elif state["unlocked"]:
        status = "The running FlowGate's vault is unlocked: it uses the keys below."
    else:
        status = (
            "The running FlowGate's vault is <strong>locked</strong>: requests that need a "
            f"vault key get a 503. {esc(state.get('problem') or '')}"
        )
    unlock = (
        ""
        if state and state["unlocked"]
        else f'<form method="post">{csrf_field(request)}<input type="hidden" name="action" '
        'value="unlock"><label>Master password <input type="password" name="password" '
        'autocomplete="current-password" required></label> <button type="submit">Unlock the '
        "running FlowGate</button></form>"
    )
    return (
        f"<h2>Vault</h2><p class='fg-vault-state'>{status}</p>{unlock}"
        "<details><summary>Change the master password</summary>"
        f'<form method="post">{csrf_field(request)}<input type="hidden" name="action" '
        'value="change_password"><label>Current <input type="password" name="password" '
        'autocomplete="current-password" required></label> <label>New <input type="password" '
        'name="new" autocomplete="new-password" required minlength="8"></label> <label>Again '
        '<input type="password" name="confirm" autocomplete="new-password" required></label> '
        '<button type="submit">Change password</button></form></details>'
    )


PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


async def _provider_action(datasette, request, settings, action: str, form) -> str:
    """Add or remove a custom provider, or sync catalogs; what happened, in a sentence.

    Raises ConfigError, VaultError or ValueError with the reason nothing changed.
    """
    config = settings["config_path"]
    target = Path(config) if config else None
    name = (form.get("provider") or form.get("name") or "").strip()
    if action == "add_provider":
        if not PROVIDER_NAME.match(name):
            raise ValueError(
                f"{name!r} is not a provider name: lowercase letters, digits, - and _, "
                "at most 32 characters"
            )
        current = load_settings(config)
        if name in BUILTIN_PROVIDERS or (
            name in current.providers and name not in console_providers()
        ):
            raise ValueError(f"{name} is defined elsewhere (built in, or in the config file)")
        models = [m.strip() for m in (form.get("models") or "").split(",") if m.strip()]
        entry = {
            "base_url": (form.get("base_url") or "").strip(),
            "api": form.get("api") or "openai",
            "models": models,
        }
        await asyncio.to_thread(save_section, "providers", {name: entry}, target)
        audit(datasette, request, "add custom provider", name, entry["base_url"])
        return f"Added provider {name}: running FlowGates use it within a second."
    if action == "remove_provider":
        if name not in console_providers():
            raise ValueError(f"{name} was not added from the console; it cannot be removed here")
        await asyncio.to_thread(save_section, "providers", {name: None}, target)
        audit(datasette, request, "remove custom provider", name)
        return f"Removed provider {name}."
    # sync: the catalog code `flowgate catalog sync` runs, with the vault's keys if unlocked
    current = load_settings(config)
    registry = ProviderRegistry.from_config(current.providers)
    names = list(registry.providers) if name in ("", "all") else [name]
    if any(n not in registry.providers for n in names):
        raise ValueError(f"unknown provider {name!r}")
    vault = Vault(current.security.vault_path)
    if form.get("password"):
        await asyncio.to_thread(vault.unlock, form["password"])
    key_for = Credentials(vault, current.security.allow_client_keys, None).key_for
    results = await asyncio.to_thread(catalog.sync_catalog, current, registry, names, key_for)
    audit(
        datasette,
        request,
        "sync models",
        name or "all",
        ", ".join(f"{r.provider}: {r.count}" for r in results if r.count is not None),
    )
    return "Synced: " + "; ".join(
        f"{r.provider} {r.count} models"
        if r.count is not None
        else f"{r.provider} skipped ({r.problem})"
        for r in results
    )


def _provider_forms(request, providers, added: set[str], vault_exists: bool) -> str:
    options = "".join(f"<option>{esc(p['name'])}</option>" for p in providers)
    removable = "".join(
        f'<form class="fg-inline" method="post">{csrf_field(request)}'
        f'<input type="hidden" name="action" value="remove_provider">'
        f'<input type="hidden" name="provider" value="{esc(name)}">'
        f"<button type='submit'>Remove {esc(name)}</button></form> "
        for name in sorted(added)
    )
    password = (
        '<label>Master password (for the vault\'s keys) <input type="password" '
        'name="password" autocomplete="current-password"></label> '
        if vault_exists
        else ""
    )
    return (
        "<h2>Sync models</h2><p>Reads each provider's own model list into the catalog "
        "(as <code>flowgate catalog sync</code>); running FlowGates use it within a second.</p>"
        f'<form method="post">{csrf_field(request)}<input type="hidden" name="action" '
        f'value="sync"><label>Provider <select name="provider"><option value="all">all'
        f"</option>{options}</select></label> {password}"
        "<button type='submit'>Sync models</button></form>"
        "<h2>Add a custom provider</h2><p>An OpenAI-compatible endpoint (or a relay of "
        "Anthropic's or Gemini's own API). Its key, if it needs one, goes in the vault below.</p>"
        f'<form method="post">{csrf_field(request)}<input type="hidden" name="action" '
        'value="add_provider"><label>Name <input name="name" required maxlength="32" '
        'pattern="[a-z0-9][a-z0-9_-]*"></label> <label>Base URL <input name="base_url" '
        'type="url" required size="40" placeholder="http://127.0.0.1:9000/v1"></label> '
        '<label>API <select name="api"><option>openai</option><option>anthropic</option>'
        '<option>gemini</option></select></label> <label>Models <input name="models" '
        'size="30" placeholder="my-model, team-*"></label> '
        "<button type='submit'>Add provider</button></form>"
        + (f"<p>Added from the console: {removable}</p>" if removable else "")
    )


async def router_settings_page(datasette, request) -> Response:
    if (refused := require_admin(datasette, request)) is not None:
        return refused
    config = console_settings(datasette)["config_path"]
    flash, problem, tried = "", "", ""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        problem = f"<p class='fg-problem'>The settings cannot be read: {esc(exc)}</p>"
        return await page(datasette, request, "Smart router", problem)
    form: dict[str, str] = {}
    if request.method == "POST":
        form = dict(await request.post_vars())
        if form.get("action") == "try":
            tried = await asyncio.to_thread(_try_prompt, settings, form.get("prompt") or "")
        else:
            try:
                section = _router_section(settings, form)
                target = None if config is None else Path(config)
                settings = await asyncio.to_thread(save_section, "smart_router", section, target)
            except (ConfigError, ValueError) as exc:
                problem = f"Not saved; FlowGate keeps its current settings. {exc}"
            else:
                audit(datasette, request, "change router settings", detail=_summary(section))
                flash = "Saved. Running FlowGates take it up within a second."
                form = {}
    router = settings.smart_router
    # The thresholds of the strategy in use: complexity scores, or the classifier's win rate.
    classifier = router.strategy == "classifier"
    thresholds = dict(router.classifier.thresholds) if classifier else scorer_for(router).thresholds
    models = await _model_choices(datasette, settings)
    values = {
        "enabled": "on" if router.enabled else "",
        "strategy": router.strategy,
        "route_models": ", ".join(router.route_models),
        **{f"tier_{t}": router.tiers.get(t, "") for t in TIERS},
        **{f"threshold_{t}": f"{thresholds.get(t, '')}" for t in THRESHOLDS},
    }
    values.update({k: v for k, v in form.items() if k in values})  # a refused form, as sent
    if form and "enabled" not in form and form.get("action") == "save":
        values["enabled"] = ""
    strategies = "".join(
        f"<option{' selected' if values['strategy'] == s else ''}>{s}</option>"
        for s in ("off", "complexity", "classifier")
    )
    tiers = "".join(
        f"<tr><th><label for='tier_{t}'>{t}</label></th><td><input id='tier_{t}' "
        f"name='tier_{t}' list='fg-models' value='{esc(values[f'tier_{t}'])}' size='40'></td>"
        + (
            f"<td><label>{t} starts at <input name='threshold_{t}' type='number' step='0.01' "
            f"min='0' max='1' value='{esc(values[f'threshold_{t}'])}'></label></td>"
            if t in THRESHOLDS
            else "<td></td>"
        )
        + "</tr>"
        for t in TIERS
    )
    datalist = "".join(f"<option value='{esc(m)}'>" for m in models)
    body = [
        f"<p class='fg-flash'>{esc(flash)}</p>" if flash else "",
        f"<p class='fg-problem'>{esc(problem)}</p>" if problem else "",
        f'<form method="post">{csrf_field(request)}<input type="hidden" name="action" '
        'value="save">'
        f"<p><label><input type='checkbox' name='enabled' {'checked' if values['enabled'] else ''}>"
        " Smart routing on</label> <label>Strategy <select name='strategy'>"
        f"{strategies}</select></label></p>"
        "<table class='fg-admin fg-tiers'><tr><th>tier</th><th>model</th>"
        f"<th>starts at ({'win rate' if classifier else 'complexity score'})</th></tr>"
        f"{tiers}</table><datalist id='fg-models'>"
        f"{datalist}</datalist>"
        "<p><label>Also route requests for these models <input name='route_models' size='50' "
        f"value='{esc(values['route_models'])}' placeholder='e.g. gpt-4o, gpt-4.1'></label> "
        "(requests for <code>auto</code> always are)</p>"
        "<p><button type='submit'>Save router settings</button></p></form>",
        "<h2>Try a prompt</h2><p>What the saved settings decide for it, as "
        "<code>flowgate route</code> does (nothing is sent to a model).</p>"
        f'<form method="post">{csrf_field(request)}<input type="hidden" name="action" '
        "value='try'><label for='fg-prompt'>Prompt</label><br><textarea id='fg-prompt' "
        "name='prompt' rows='4' cols='80' required>"
        f"{esc(form.get('prompt', ''))}</textarea><p><button type='submit'>Route it</button>"
        f"</p></form>{tried}",
    ]
    response = await page(datasette, request, "Smart router", "\n".join(body))
    if problem:
        response.status = 400
    return response


THRESHOLDS = TIERS[1:]  # where each tier above SIMPLE starts


def _router_section(settings, form: dict[str, str]) -> dict[str, Any]:
    """The whole smart_router section, as the form changes it (the rest kept as it was)."""
    section = settings.smart_router.model_dump(mode="json", exclude_none=True)
    section["enabled"] = "enabled" in form
    section["strategy"] = form.get("strategy") or "off"
    section["tiers"] = {
        t: form[f"tier_{t}"].strip() for t in TIERS if (form.get(f"tier_{t}") or "").strip()
    }
    section["route_models"] = [
        m.strip() for m in (form.get("route_models") or "").split(",") if m.strip()
    ]
    thresholds = {}
    for t in THRESHOLDS:
        text = (form.get(f"threshold_{t}") or "").strip()
        if text:
            try:
                thresholds[t] = float(text)
            except ValueError:
                raise ValueError(f"the {t} threshold must be a number, not {text!r}") from None
    strategy = "classifier" if section["strategy"] == "classifier" else "complexity"
    section.setdefault(strategy, {})["thresholds"] = thresholds
    return section


def _summary(section: dict[str, Any]) -> str:
    state = "on" if section["enabled"] else "off"
    tiers = ", ".join(f"{t}={m}" for t, m in section["tiers"].items())
    return f"{state}, {section['strategy']}; {tiers}"


def _try_prompt(settings, prompt: str) -> str:
    """The decision for a prompt, as `flowgate route` makes it (the classifier too)."""
    from flowgate_addon.cli_route import decision_router, explain

    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
    router = settings.smart_router
    scorer = scorer_for(router)
    weights, thresholds = scorer.weights, scorer.thresholds
    if router.active:
        built = decision_router(settings)
        try:
            decision = built.decide_now(body)
        finally:
            if built.classifier is not None:
                built.classifier.close()
        if decision.strategy == "classifier":
            weights, thresholds = {}, dict(router.classifier.thresholds)
        target = f"sent to <strong>{esc(router.tiers[decision.tier])}</strong>"
    else:
        decision = scorer.decide(body)
        target = "routing is off: the request keeps its model"
    bars = "".join(
        f"<tr><td>{esc(name)}</td><td>{value:.2f}</td><td><span class='fg-bar' "
        f"style='width:{value * 200:.0f}px'></span></td></tr>"
        for name, value in decision.dimensions.items()
    )
    fallback = f"<p>({esc(decision.fallback)})</p>" if decision.fallback else ""
    why = explain(decision, weights, thresholds)
    return (
        f"<div class='fg-decision'><p>Tier <strong>{esc(decision.tier)}</strong>, score "
        f"{decision.score:.3f} ({esc(decision.strategy)}): {target}.</p><p>{esc(why)}</p>"
        f"{fallback}<table class='fg-admin'>{bars}</table></div>"
    )


async def _model_choices(datasette, settings) -> list[str]:
    """Models to pick a tier's from: the config's, the synced catalog's, the price map's."""
    from datasette_plugins.flowgate_catalog import _price_map_models

    found: dict[str, None] = {}
    providers = flowgate_settings(datasette).get("providers") or []
    for provider in providers:
        found.update((m, None) for m in provider.get("models") or [] if not is_pattern(m))
    db, _ = log_db(datasette)
    with contextlib.suppress(Exception):  # a log without the catalog table yet
        found.update((row[0], None) for row in await db.execute("SELECT model FROM models"))
    for provider in providers:
        found.update(
            (row.model, None) for row in _price_map_models(provider["price_provider"], "{}")
        )
    return list(found)


async def _last_used(datasette, names: list[str]) -> dict[str, str]:
    """When each token last called, from the log (its caller column is indexed)."""
    if not names:
        return {}
    db, _ = log_db(datasette)
    marks = ", ".join("?" for _ in names)
    try:
        result = await db.execute(
            f"SELECT caller, max(ts) FROM requests WHERE caller IN ({marks}) GROUP BY caller",
            names,
        )
    except Exception:  # a log without the table yet
        return {}
    return {row[0]: row[1] for row in result.rows}


# Reachable without signing in even when every page needs it (security.dashboard_login).
OPEN_PATHS = (f"{PREFIX}/login", f"{PREFIX}/signin", "/-/static/", "/-/static-plugins/")


async def _actor(datasette, request) -> dict | None:
    """The request's actor, resolved by Datasette's own hook (its signed cookie, expiry)."""
    for actor in pm.hook.actor_from_request(datasette=datasette, request=request):
        if actor := await await_me_maybe(actor):
            return actor
    return None


@hookimpl
def asgi_wrapper(datasette):
    """With security.dashboard_login, every page but signing in needs the admin."""

    def wrap(app):
        async def guarded(scope, receive, send):
            if (
                scope["type"] == "http"
                and (flowgate_settings(datasette).get("console") or {}).get("dashboard_login")
                and not scope["path"].startswith(OPEN_PATHS)
                and not admin.is_admin(await _actor(datasette, Request(scope, receive)))
            ):
                login = datasette.urls.path(f"{PREFIX}/login")
                await Response.redirect(f"{login}?next={scope['path']}").asgi_send(send)
                return
            await app(scope, receive, send)

        return guarded

    return wrap


@hookimpl
def register_routes():
    return [
        (rf"^{PREFIX}/login$", login_page),
        (rf"^{PREFIX}/signin$", signin_link),
        (rf"^{ADMIN}$", console_home),
        (rf"^{ADMIN}/tokens$", tokens_page),
        (rf"^{ADMIN}/keys$", keys_page),
        (rf"^{ADMIN}/router$", router_settings_page),
    ]


@hookimpl
def menu_links(datasette, actor):
    if admin.is_admin(actor):
        return [{"href": datasette.urls.path(ADMIN), "label": "Console"}]
    return [{"href": datasette.urls.path(f"{PREFIX}/login"), "label": "Sign in (console)"}]
