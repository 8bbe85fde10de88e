"""The operator console in a real Datasette: sign-in, the guard on every management
route (anonymous, forged CSRF token, expired session), and caller tokens managed from
the console and enforced by a running FlowGate at once."""

from __future__ import annotations

import asyncio
import html
import os
import re
import time
from pathlib import Path

import httpx
import openai
import pytest
from conftest import start_flowgate, write_config
from datasette.app import Datasette
from datasette.utils import baseconv

from datasette_plugins import flowgate_console
from flowgate_addon.cli import plugins_dir
from flowgate_addon.config import console_file, load_settings
from flowgate_addon.security import admin
from flowgate_addon.security.audit import AuditLog
from flowgate_addon.security.tokens import TokenStore, hash_token
from flowgate_addon.security.vault import Vault
from flowgate_addon.store import open_db
from flowgate_addon.ui_metadata import metadata

PASSWORD = "correct horse battery staple"
MANAGEMENT = [
    "/-/flowgate/admin",
    "/-/flowgate/admin/tokens",
    "/-/flowgate/admin/keys",
    "/-/flowgate/admin/router",
]
KEYS, ROUTER = MANAGEMENT[2], MANAGEMENT[3]
TIERS = {
    "SIMPLE": "gpt-4o-mini",
    "MEDIUM": "gpt-4o",
    "COMPLEX": "claude-sonnet-4-5",
    "REASONING": "o3",
}
TOKEN_RE = re.compile(r"fgt_[A-Za-z0-9_-]{20,}")


def make_console(folder: Path, home: Path | None = None, config: Path | None = None) -> Datasette:
    """A Datasette as `flowgate ui` configures it, over the log in `folder` (or `config`'s)."""
    if config is None:
        config = folder / "console.yaml"
        config.write_text("database: {path: flowgate.db}\n")
    settings = load_settings(config)
    open_db(settings.database.path).conn.close()
    meta = metadata(settings.database.path, settings)
    if home is not None:  # the data folder of a running FlowGate
        meta["plugins"]["flowgate"]["console"]["tokens_path"] = str(home / "tokens.db")
        meta["plugins"]["flowgate"]["console"]["vault_path"] = str(home / "vault.json")
    return Datasette([str(settings.database.path)], plugins_dir=str(plugins_dir()), metadata=meta)


@pytest.fixture(autouse=True)
def fake_local_key(monkeypatch):
    """The test configs read it (write_config), in the console as in FlowGate."""
    monkeypatch.setenv("FAKE_LOCAL_KEY", "sk-local-secret")


@pytest.fixture
def ds(tmp_path) -> Datasette:
    Vault(load_settings(None).security.vault_path).init(PASSWORD)
    flowgate_console.THROTTLE = admin.LoginThrottle()  # each test starts with no failures
    return make_console(tmp_path)


def run(coro):
    return asyncio.run(coro)


def admin_cookie(ds: Datasette, expires_in: float = 3600) -> str:
    expiry = baseconv.base62.encode(int(time.time() + expires_in))
    return ds.sign({"a": {"id": admin.ADMIN_ID, "via": "test"}, "e": expiry}, "actor")


def form_token(ds: Datasette, path: str, cookies: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The CSRF token of a form page, and the cookies to send back with it."""
    response = run(ds.client.get(path, cookies=cookies))
    assert response.status_code == 200, response.text
    token = re.search(r'name="csrftoken" value="([^"]+)"', response.text).group(1)
    return token, {**cookies, "ds_csrftoken": response.cookies.get("ds_csrftoken", "")}


def post(ds: Datasette, path: str, data: dict[str, str], cookies: dict[str, str]):
    return run(ds.client.post(path, data=data, cookies=cookies))


def console_post(ds: Datasette, path: str, data: dict[str, str]):
    """A management form posted as a signed-in admin would, CSRF token and all."""
    token, cookies = form_token(ds, path, {"ds_actor": admin_cookie(ds)})
    return post(ds, path, {**data, "csrftoken": token}, cookies)


# One change per management form, each of which would show (see nothing_changed).
CHANGES = [
    ("/-/flowgate/admin/tokens", {"action": "create", "name": "sneaky"}),
    (
        "/-/flowgate/admin/keys",
        {"action": "add_provider", "name": "sneaky", "base_url": "http://127.0.0.1:9/v1"},
    ),
    ("/-/flowgate/admin/keys", {"action": "init", "password": "x" * 10, "confirm": "x" * 10}),
    ("/-/flowgate/admin/router", {"action": "save", "strategy": "off"}),
]


def nothing_changed() -> None:
    assert TokenStore(tokens_path()).list() == []
    assert not console_file().exists()
    assert Vault(load_settings(None).security.vault_path).exists  # the fixture's, unchanged
    vault().unlock(PASSWORD)


def test_management_routes_refuse_anonymous_visitors(ds):
    for path in MANAGEMENT:
        response = run(ds.client.get(path))
        assert response.status_code == 302
        assert response.headers["location"] == f"/-/flowgate/login?next={path}"
    # A form post without any session, CSRF token and all: refused.
    token, cookies = form_token(ds, "/-/flowgate/login", {})
    for path, change in CHANGES:
        response = post(ds, path, {**change, "csrftoken": token}, cookies)
        assert response.status_code == 403, path
    nothing_changed()


def test_a_forged_csrf_token_is_refused(ds):
    _, cookies = form_token(ds, MANAGEMENT[1], {"ds_actor": admin_cookie(ds)})
    for path, change in CHANGES:
        for forged in ("", "forged-token", admin_cookie(ds)):
            response = post(ds, path, {**change, "csrftoken": forged}, cookies)
            assert response.status_code == 403, (path, forged)
    nothing_changed()


def test_an_expired_or_tampered_session_is_refused(ds):
    for cookie in (admin_cookie(ds, expires_in=-1), admin_cookie(ds)[:-2] + "xx"):
        for path in MANAGEMENT:
            response = run(ds.client.get(path, cookies={"ds_actor": cookie}))
            assert response.status_code == 302, path
            assert "/-/flowgate/login" in response.headers["location"]
        token, cookies = form_token(ds, "/-/flowgate/login", {"ds_actor": cookie})
        for path, change in CHANGES:
            response = post(ds, path, {**change, "csrftoken": token}, cookies)
            assert response.status_code == 403, path
    nothing_changed()


def tokens_path() -> Path:
    return load_settings(None).security.vault_path.parent / "tokens.db"


def test_sign_in_with_the_master_password(ds):
    token, cookies = form_token(ds, "/-/flowgate/login", {})
    wrong = post(ds, "/-/flowgate/login", {"password": "nope", "csrftoken": token}, cookies)
    assert wrong.status_code == 401 and "not the master password" in wrong.text
    assert "ds_actor" not in wrong.cookies

    right = post(ds, "/-/flowgate/login", {"password": PASSWORD, "csrftoken": token}, cookies)
    assert right.status_code == 302 and right.headers["location"] == "/-/flowgate/admin"
    session = right.cookies["ds_actor"]
    assert "httponly" in right.headers["set-cookie"].lower()
    home = run(ds.client.get("/-/flowgate/admin", cookies={"ds_actor": session}))
    assert home.status_code == 200 and "Audit log" in home.text
    assert "sign in" in home.text
    [entry] = AuditLog().recent()
    assert (entry["action"], entry["detail"]) == ("sign in", "with the master password")


def test_wrong_passwords_are_throttled(ds):
    token, cookies = form_token(ds, "/-/flowgate/login", {})
    statuses = [
        post(
            ds, "/-/flowgate/login", {"password": f"guess{i}", "csrftoken": token}, cookies
        ).status_code
        for i in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    # Even the right password waits now.
    right = post(ds, "/-/flowgate/login", {"password": PASSWORD, "csrftoken": token}, cookies)
    assert right.status_code == 429 and "try again in" in right.text


def test_the_one_time_sign_in_link(ds):
    link = admin.issue_signin_link("http://127.0.0.1:8001")
    path = link.removeprefix("http://127.0.0.1:8001")
    first = run(ds.client.get(path))
    assert first.status_code == 302 and "ds_actor" in first.cookies
    again = run(ds.client.get(path))
    assert again.status_code == 403 and "not valid" in again.text
    # A wrong token leaves the real link working; a stale one is refused.
    link = admin.issue_signin_link("http://x")
    assert run(ds.client.get("/-/flowgate/signin?token=guess")).status_code == 403
    assert run(ds.client.get(link.removeprefix("http://x"))).status_code == 302
    link = admin.issue_signin_link("http://x")
    record = admin.signin_file()
    record.write_text(record.read_text().replace('"expires": ', '"expires": -1 + 0 * '))
    assert run(ds.client.get(link.removeprefix("http://x"))).status_code == 403


def test_tokens_are_created_shown_once_listed_and_revoked(ds):
    created = console_post(ds, MANAGEMENT[1], {"action": "create", "name": "ci-bot", "ttl": "30d"})
    assert created.status_code == 200
    [token] = TOKEN_RE.findall(created.text)
    assert TokenStore(tokens_path()).check(token).ok

    listing = run(ds.client.get(MANAGEMENT[1], cookies={"ds_actor": admin_cookie(ds)})).text
    assert token not in listing and hash_token(token) not in listing
    assert f"fgt_{token[4:12]}…" in listing and "ci-bot" in listing and "active" in listing

    for bad, why in (
        ({"name": "ci-bot"}, "already exists"),
        ({"name": "x", "ttl": "soon"}, "invalid lifetime"),
        ({"name": ""}, "name"),
    ):
        refused = console_post(ds, MANAGEMENT[1], {"action": "create", **bad})
        assert refused.status_code == 400 and why in refused.text

    revoked = console_post(ds, MANAGEMENT[1], {"action": "revoke", "name": "ci-bot"})
    assert revoked.status_code == 200 and "Revoked ci-bot" in revoked.text
    assert not TokenStore(tokens_path()).check(token).ok
    assert [e["action"] for e in AuditLog().recent()] == [
        "revoke caller token",
        "create caller token",
    ]
    # The audit log names the token, never its value or hash.
    raw = AuditLog().path.read_bytes()
    assert token.encode() not in raw and hash_token(token).encode() not in raw


def test_no_console_page_shows_a_key_or_a_token_hash(ds):
    vault = Vault(load_settings(None).security.vault_path)
    vault.unlock(PASSWORD)
    vault.add("openai", "sk-proj-never-shown-0123456789")
    token = TokenStore(tokens_path()).create("viewer")
    cookies = {"ds_actor": admin_cookie(ds)}
    for path in [*MANAGEMENT, "/-/flowgate/login", "/-/metadata.json", "/-/flowgate/health"]:
        text = run(ds.client.get(path, cookies=cookies)).text
        assert "sk-proj-never-shown" not in text and hash_token(token) not in text, path


def test_a_running_flowgate_enforces_console_tokens_at_once(fake_provider, tmp_path):
    config = write_config(tmp_path, fake_provider)
    gate = start_flowgate(tmp_path, config)
    try:
        ds = make_console(tmp_path, home=tmp_path / "home")  # the gate's log and data folder
        created = console_post(ds, MANAGEMENT[1], {"action": "create", "name": "app-1"})
        [token] = TOKEN_RE.findall(created.text)

        def ask(key: str) -> int:
            response = httpx.post(
                f"{gate.base_url}/chat/completions",
                json={"model": "local-model", "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {key}"},
            )
            return response.status_code

        assert ask("sk-anything") == 401  # the first token closed open mode
        client = openai.OpenAI(base_url=gate.base_url, api_key=token, max_retries=0)
        assert client.chat.completions.create(
            model="local-model", messages=[{"role": "user", "content": "hi"}]
        ).choices
        [row] = gate.wait_rows("caller = ?", ("app-1",))
        assert row["status"] == 200
        listing = run(ds.client.get(MANAGEMENT[1], cookies={"ds_actor": admin_cookie(ds)})).text
        assert f"<td>{row['ts']}</td>" in listing  # last used, read from the log

        console_post(ds, MANAGEMENT[1], {"action": "revoke", "name": "app-1"})
        assert ask(token) == 401
    finally:
        gate.stop_cleanly()


def vault() -> Vault:
    return Vault(load_settings(None).security.vault_path)


def test_provider_keys_are_added_replaced_and_removed(ds):
    page = run(ds.client.get(KEYS, cookies={"ds_actor": admin_cookie(ds)})).text
    assert "<td>openai</td>" in page and "<td>anthropic</td>" in page and "missing" in page

    wrong = console_post(
        ds,
        KEYS,
        {"action": "add", "provider": "openai", "key": "sk-proj-first-0001", "password": "nope"},
    )
    assert wrong.status_code == 400 and "not the master password" in wrong.text
    assert not vault().has_key("openai")

    for secret in ("sk-proj-first-0001", "sk-proj-second-0002"):  # add, then replace
        stored = console_post(
            ds, KEYS, {"action": "add", "provider": "openai", "key": secret, "password": PASSWORD}
        )
        assert stored.status_code == 200 and "Stored the key for openai" in stored.text
        assert secret not in stored.text
        opened = vault()
        opened.unlock(PASSWORD)
        assert opened.get("openai") == secret
        [info] = opened.list()
        assert info.fingerprint in stored.text

    for bad, why in (
        ({"action": "add", "provider": "nobody", "key": "k", "password": PASSWORD}, "unknown"),
        ({"action": "add", "provider": "openai", "key": "  ", "password": PASSWORD}, "empty"),
        ({"action": "remove", "provider": "groq"}, "holds no key for groq"),
    ):
        refused = console_post(ds, KEYS, bad)
        assert refused.status_code == 400 and why in refused.text

    removed = console_post(ds, KEYS, {"action": "remove", "provider": "openai"})
    assert removed.status_code == 200 and not vault().has_key("openai")
    actions = [(e["action"], e["target"]) for e in AuditLog().recent()]
    assert actions[:3] == [
        ("remove provider key", "openai"),
        ("add provider key", "openai"),
        ("add provider key", "openai"),
    ]
    assert b"sk-proj-" not in AuditLog().path.read_bytes()


def test_the_vault_is_set_up_from_the_console(tmp_path):
    ds = make_console(tmp_path)
    page = run(ds.client.get(KEYS, cookies={"ds_actor": admin_cookie(ds)})).text
    assert "Set up the vault" in page and "Store key" not in page
    short = console_post(ds, KEYS, {"action": "init", "password": "short", "confirm": "short"})
    assert short.status_code == 400 and not vault().exists
    done = console_post(ds, KEYS, {"action": "init", "password": PASSWORD, "confirm": PASSWORD})
    assert done.status_code == 200 and "Store key" in done.text
    vault().unlock(PASSWORD)  # the password the console was given
    again = console_post(ds, KEYS, {"action": "init", "password": "x" * 9, "confirm": "x" * 9})
    assert again.status_code == 400 and "set up already" in again.text


def test_a_running_flowgate_uses_a_console_key_from_its_next_request(fake_provider, tmp_path):
    home = tmp_path / "home"
    Vault(home / "vault.json").init(PASSWORD)
    gate = start_flowgate(
        tmp_path, write_config(tmp_path, fake_provider), env={"FLOWGATE_MASTER_PASSWORD": PASSWORD}
    )
    try:
        ds = make_console(tmp_path, home=home)
        client = openai.OpenAI(base_url=gate.base_url, api_key="sk-client-own", max_retries=0)

        def upstream_key() -> str:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "which key?"}]
            )
            return fake_provider.last("/v1/chat/completions").headers["authorization"]

        assert upstream_key() == "Bearer sk-client-own"  # no key held: the client's own
        console_post(
            ds,
            KEYS,
            {"action": "add", "provider": "openai", "key": "sk-from-console", "password": PASSWORD},
        )
        assert upstream_key() == "Bearer sk-from-console"
        console_post(ds, KEYS, {"action": "remove", "provider": "openai"})
        assert upstream_key() == "Bearer sk-client-own"
    finally:
        gate.stop_cleanly()


def plain(page: str) -> str:
    """A page's text as a reader sees it (tags gone, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def router_form(tiers: dict[str, str], **extra: str) -> dict[str, str]:
    form = {"action": "save", "enabled": "on", "strategy": "complexity", **extra}
    form.update({f"tier_{tier}": model for tier, model in tiers.items()})
    return form


def test_router_settings_are_checked_then_saved_for_every_process(ds):
    page = run(ds.client.get(ROUTER, cookies={"ds_actor": admin_cookie(ds)})).text
    assert "Save router settings" in page and "<option value='gpt-4o-mini'>" in page

    saved = console_post(
        ds, ROUTER, router_form(TIERS, route_models="gpt-4.1, gpt-4o", threshold_MEDIUM="0.25")
    )
    assert saved.status_code == 200 and "Saved" in saved.text
    router = load_settings(None).smart_router  # what every FlowGate process now loads
    assert router.active and router.strategy == "complexity" and dict(router.tiers) == TIERS
    assert router.route_models == ["gpt-4.1", "gpt-4o"]
    assert router.complexity.thresholds["MEDIUM"] == 0.25
    before = console_file().read_text()

    for form, why in (
        (router_form({**TIERS, "SIMPLE": "no-such-model-xyz"}), "no-such-model-xyz"),
        (router_form({"SIMPLE": "gpt-4o-mini"}), "needs a model for every tier"),
        (router_form(TIERS, threshold_COMPLEX="lots"), "must be a number"),
        (router_form(TIERS, strategy="psychic"), "strategy"),
        # The classifier's mf router needs a local checkpoint: none is configured here.
        (router_form(TIERS, strategy="classifier", threshold_MEDIUM="0.4"), "checkpoint"),
    ):
        refused = console_post(ds, ROUTER, form)
        assert refused.status_code == 400 and "Not saved" in refused.text
        assert why in html.unescape(refused.text), why
        assert console_file().read_text() == before  # the old settings keep working

    off = console_post(
        ds,
        ROUTER,
        {"action": "save", "strategy": "complexity", **{f"tier_{t}": m for t, m in TIERS.items()}},
    )
    assert off.status_code == 200 and not load_settings(None).smart_router.enabled
    [entry, *_] = AuditLog().recent()
    assert entry["action"] == "change router settings" and entry["detail"].startswith("off")


def test_try_a_prompt_shows_the_decision_and_why(ds):
    console_post(ds, ROUTER, router_form(TIERS))
    prompt = "Prove that there are infinitely many primes"
    tried = console_post(ds, ROUTER, {"action": "try", "prompt": prompt})
    assert tried.status_code == 200
    text = plain(tried.text)
    assert "Tier REASONING" in text and "sent to o3" in text and "reasoning" in text
    simple = plain(console_post(ds, ROUTER, {"action": "try", "prompt": "hi"}).text)
    assert "Tier SIMPLE" in simple and "sent to gpt-4o-mini" in simple
    assert "below every threshold" in simple


def test_a_running_flowgate_follows_a_new_tier_mapping_without_a_restart(fake_provider, tmp_path):
    router = {"enabled": True, "strategy": "complexity", "tiers": {t: "gpt-4o-mini" for t in TIERS}}
    openai_key = {"base_url": f"{fake_provider.base_url}/v1", "api_key": "sk-openai-cfg"}
    config = write_config(
        tmp_path, fake_provider, {"smart_router": router, "providers": {"openai": openai_key}}
    )
    # One data folder for FlowGate and its console, as `flowgate start` has.
    gate = start_flowgate(tmp_path, config, env={"FLOWGATE_HOME": os.environ["FLOWGATE_HOME"]})
    try:
        ds = make_console(tmp_path, config=config)

        def routed_to() -> str:
            response = httpx.post(  # the gateway of whichever `gate` runs now
                f"{gate.base_url}/chat/completions",
                json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": "Bearer sk-client-key"},
            )
            assert response.status_code == 200, response.text
            return response.headers["x-flowgate-route"].split("model=")[1].split(";")[0]

        assert routed_to() == "gpt-4o-mini"
        saved = console_post(ds, ROUTER, router_form({**TIERS, "SIMPLE": "local-model"}))
        assert saved.status_code == 200, saved.text
        deadline = time.monotonic() + 10
        while (model := routed_to()) != "local-model":
            assert time.monotonic() < deadline, gate.output()
            time.sleep(0.2)
        assert "applied the settings saved from the console" in gate.output()

        # A change that cannot work is refused, and routing goes on as it was.
        refused = console_post(ds, ROUTER, router_form({**TIERS, "SIMPLE": "no-such-model"}))
        assert refused.status_code == 400
        time.sleep(1.5)
        assert routed_to() == model
    finally:
        gate.stop_cleanly()
    # Saved, not only applied: a restarted FlowGate routes the same way.
    gate = start_flowgate(tmp_path, config, env={"FLOWGATE_HOME": os.environ["FLOWGATE_HOME"]})
    try:
        assert routed_to() == "local-model"
    finally:
        gate.stop_cleanly()


def test_custom_providers_are_added_checked_and_removed(ds, fake_provider):
    added = console_post(
        ds,
        KEYS,
        {
            "action": "add_provider",
            "name": "team-llm",
            "base_url": f"{fake_provider.base_url}/v1",
            "api": "openai",
            "models": "team-*, house-model",
        },
    )
    assert added.status_code == 200 and "Added provider team-llm" in added.text
    provider = load_settings(None).providers["team-llm"]
    assert provider.models == ["team-*", "house-model"] and provider.api_key is None
    assert "<td>team-llm</td><td>custom</td>" in added.text  # listed at once

    for form, why in (
        ({"name": "openai", "base_url": "http://x/v1"}, "defined elsewhere"),
        ({"name": "Bad Name", "base_url": "http://x/v1"}, "not a provider name"),
        ({"name": "ftp-llm", "base_url": "ftp://x/v1"}, "http:// or https:// URL"),
    ):
        refused = console_post(ds, KEYS, {"action": "add_provider", **form})
        assert refused.status_code == 400 and why in plain(refused.text), why
    assert set(load_settings(None).providers) == {"team-llm"}

    synced = console_post(ds, KEYS, {"action": "sync", "provider": "team-llm"})
    assert "team-llm 1 models" in plain(synced.text)
    log_db = open_db(Path(next(d.path for d in ds.databases.values() if d.path)))
    assert [r[0] for r in log_db.conn.execute("SELECT model FROM models")] == ["gpt-4o-mini"]

    assert (
        console_post(ds, KEYS, {"action": "remove_provider", "provider": "openai"}).status_code
        == 400
    )
    removed = console_post(ds, KEYS, {"action": "remove_provider", "provider": "team-llm"})
    assert removed.status_code == 200 and "team-llm" not in load_settings(None).providers
    actions = [e["action"] for e in AuditLog().recent()]
    assert actions[:3] == ["remove custom provider", "sync models", "add custom provider"]


def test_a_running_flowgate_serves_a_console_provider_at_once(fake_provider, tmp_path):
    config = write_config(tmp_path, fake_provider)
    gate = start_flowgate(tmp_path, config, env={"FLOWGATE_HOME": os.environ["FLOWGATE_HOME"]})
    try:
        client = openai.OpenAI(base_url=gate.base_url, api_key="sk-client-key", max_retries=0)
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model="house-model", messages=[{"role": "user", "content": "hi"}]
            )
        ds = make_console(tmp_path, config=config)
        console_post(
            ds,
            KEYS,
            {
                "action": "add_provider",
                "name": "house",
                "base_url": f"{fake_provider.base_url}/house/v1",
                "models": "house-model",
            },
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                reply = client.chat.completions.create(
                    model="house-model", messages=[{"role": "user", "content": "hi"}]
                )
                break
            except openai.BadRequestError:
                assert time.monotonic() < deadline, gate.output()
                time.sleep(0.2)
        assert reply.choices[0].message.content == "Hello from house-model!"
        assert fake_provider.last("/house/v1/chat/completions").body["model"] == "house-model"
    finally:
        gate.stop_cleanly()


def test_a_locked_running_flowgate_is_unlocked_from_the_console(fake_provider, tmp_path):
    """FlowGate started without its password; the console unlocks it, then changes the
    password — and the running proxy keeps using the vault's key throughout."""
    home = Path(os.environ["FLOWGATE_HOME"])
    store = Vault(home / "vault.json")
    store.init(PASSWORD)
    store.add("openai", "sk-from-the-vault")
    config = write_config(tmp_path, fake_provider)
    gate = start_flowgate(tmp_path, config, env={"FLOWGATE_HOME": str(home)})
    try:
        vault_url = gate.base_url.removesuffix("/v1") + "/-/flowgate/vault"
        assert httpx.get(vault_url).json() == {
            "exists": True,
            "unlocked": False,
            "problem": httpx.get(vault_url).json()["problem"],
        }
        client = openai.OpenAI(base_url=gate.base_url, api_key="sk-client-own", max_retries=0)

        def upstream_key() -> str:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "key?"}]
            )
            return fake_provider.last("/v1/chat/completions").headers["authorization"]

        assert upstream_key() == "Bearer sk-client-own"  # locked: the vault's key is unusable
        ds = make_console(tmp_path, config=config)
        page = plain(run(ds.client.get(KEYS, cookies={"ds_actor": admin_cookie(ds)})).text)
        assert "The running FlowGate's vault is locked" in page

        wrong = console_post(ds, KEYS, {"action": "unlock", "password": "nope"})
        assert wrong.status_code == 400 and "not the master password" in plain(wrong.text)
        unlocked = console_post(ds, KEYS, {"action": "unlock", "password": PASSWORD})
        assert unlocked.status_code == 200 and "vault is unlocked" in plain(unlocked.text)
        assert upstream_key() == "Bearer sk-from-the-vault"

        new = "a much longer new password"
        changed = console_post(
            ds,
            KEYS,
            {"action": "change_password", "password": PASSWORD, "new": new, "confirm": new},
        )
        assert changed.status_code == 200, plain(changed.text)
        assert "the running FlowGate is unlocked with it" in plain(changed.text)
        assert upstream_key() == "Bearer sk-from-the-vault"  # still: no restart
        with pytest.raises(Exception, match="master password"):
            Vault(home / "vault.json").unlock(PASSWORD)
        Vault(home / "vault.json").unlock(new)
        actions = [e["action"] for e in AuditLog().recent()][:3]
        assert actions == [
            "change master password",
            "unlock the running FlowGate's vault",
            "unlock the running FlowGate's vault",
        ]

        # Guessing through the gateway is throttled like the console's sign-in.
        statuses = [
            httpx.post(vault_url, json={"password": f"guess{i}"}).status_code for i in range(6)
        ]
        assert statuses == [401] * 5 + [429]
    finally:
        gate.stop_cleanly()


def test_dashboards_are_open_on_loopback_and_behind_sign_in_when_configured(tmp_path):
    ds = make_console(tmp_path)
    assert run(ds.client.get("/")).status_code == 200  # loopback default: readable
    assert run(ds.client.get("/flowgate/requests")).status_code == 200

    (tmp_path / "console.yaml").write_text(
        "database: {path: flowgate.db}\nsecurity: {dashboard_login: true}\n"
    )
    ds = make_console(tmp_path, config=tmp_path / "console.yaml")
    for path in (
        "/",
        "/flowgate/requests",
        "/-/dashboards/overview",
        "/-/flowgate/health.json",
        "/-/flowgate/request/1",
        "/flowgate.json",
        "/-/metadata.json",
    ):
        response = run(ds.client.get(path))
        assert response.status_code == 302, path
        assert response.headers["location"].startswith("/-/flowgate/login?next=")
    assert run(ds.client.get("/-/flowgate/login")).status_code == 200
    cookies = {"ds_actor": admin_cookie(ds)}
    assert run(ds.client.get("/flowgate/requests", cookies=cookies)).status_code == 200
    expired = {"ds_actor": admin_cookie(ds, expires_in=-1)}
    assert run(ds.client.get("/flowgate/requests", cookies=expired)).status_code == 302


def test_dashboards_need_sign_in_when_the_ui_listens_beyond_loopback(tmp_path):
    from flowgate_addon.ui_metadata import page_settings

    config = tmp_path / "public.yaml"
    config.write_text("server: {host: 0.0.0.0}\n")
    assert page_settings(tmp_path / "f.db", load_settings(config))["console"]["dashboard_login"]
    config.write_text("server: {host: 0.0.0.0}\nsecurity: {dashboard_login: false}\n")
    assert not page_settings(tmp_path / "f.db", load_settings(config))["console"]["dashboard_login"]


def test_classifier_thresholds_are_the_classifiers(tmp_path):
    config = tmp_path / "classifier.yaml"
    config.write_text(
        "database: {path: flowgate.db}\nsmart_router: {classifier: {router: random}}\n"
    )
    ds = make_console(tmp_path, config=config)
    form = router_form(
        TIERS,
        strategy="classifier",
        threshold_MEDIUM="0.2",
        threshold_COMPLEX="0.5",
        threshold_REASONING="0.9",
    )
    saved = console_post(ds, ROUTER, form)
    assert saved.status_code == 200, plain(saved.text)
    router = load_settings(config).smart_router
    assert router.strategy == "classifier" and router.classifier.router == "random"
    assert dict(router.classifier.thresholds) == {"MEDIUM": 0.2, "COMPLEX": 0.5, "REASONING": 0.9}
    assert "starts at (win rate)" in saved.text
    # Trying a prompt asks the classifier, as `flowgate route` does.
    tried = plain(console_post(ds, ROUTER, {"action": "try", "prompt": "hi"}).text)
    assert re.search(
        r"Tier (SIMPLE|MEDIUM|COMPLEX|REASONING), score [01]\.\d+ \(classifier\)", tried
    )
    assert "win rate" in tried
