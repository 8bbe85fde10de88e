"""The operator console in a real Chromium, against a real `flowgate start` (proxy + UI):
sign in, add a provider key, change the tier mapping, create and revoke a caller token —
and the running FlowGate follows each change from its next request, without a restart."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml
from browser import screenshot, visit
from conftest import FLOWGATE, RunningFlowGate, start_flowgate, write_config

from flowgate_addon.security.vault import Vault

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def gate(fake_provider, tmp_path_factory) -> Iterator[RunningFlowGate]:
    directory = tmp_path_factory.mktemp("console-browser")
    Vault(directory / "home" / "vault.json").init(PASSWORD)
    config = write_config(directory, fake_provider)
    running = start_flowgate(
        directory,
        config,
        command=[FLOWGATE, "start", "--config", str(config)],
        env={"FLOWGATE_MASTER_PASSWORD": PASSWORD},
    )
    port = yaml.safe_load(config.read_text())["server"]["ui_port"]
    running.ui_url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{running.ui_url}/-/versions.json", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, running.output()
        time.sleep(0.1)
    yield running
    running.stop_cleanly()


def chat(gate: RunningFlowGate, key: str, model: str = "gpt-4o-mini") -> int:
    response = httpx.post(
        f"{gate.base_url}/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key}"},
    )
    return response.status_code


def sign_in(page, gate) -> None:
    page.goto(f"{gate.ui_url}/-/flowgate/admin")
    page.wait_for_url("**/-/flowgate/login**")
    page.get_by_label("Master password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/-/flowgate/admin")
    page.get_by_text("Audit log").wait_for()


def test_sign_in_add_a_key_change_the_tiers_create_and_revoke_a_token(browser, gate, fake_provider):
    with visit(browser, f"{gate.ui_url}/") as (page, errors):
        sign_in(page, gate)

        # A provider key: the next call upstream carries it instead of the client's.
        assert chat(gate, "sk-client-own") == 200
        assert fake_provider.last("/v1/chat/completions").headers["authorization"] == (
            "Bearer sk-client-own"
        )
        page.get_by_role("link", name="provider keys").click()
        form = page.locator("form", has=page.get_by_role("button", name="Store key"))
        form.get_by_label("Provider").select_option("openai")
        form.get_by_label("API key").fill("sk-typed-in-the-console")
        form.get_by_label("Master password").fill(PASSWORD)
        form.get_by_role("button", name="Store key").click()
        page.get_by_text("Stored the key for openai").wait_for()
        assert "sk-typed-in-the-console" not in page.content()
        assert chat(gate, "sk-client-own") == 200
        assert fake_provider.last("/v1/chat/completions").headers["authorization"] == (
            "Bearer sk-typed-in-the-console"
        )
        screenshot(page, "console-keys")

        # The tier mapping: routing on, every tier to the config's local model.
        assert chat(gate, "sk-client-own", "auto") == 400  # routing is off: no model to keep
        page.get_by_role("link", name="router").click()
        page.get_by_label("Smart routing on").check()
        page.get_by_label("Strategy").select_option("complexity")
        for tier in ("SIMPLE", "MEDIUM", "COMPLEX", "REASONING"):
            page.get_by_label(tier, exact=True).fill("local-model")
        page.get_by_role("button", name="Save router settings").click()
        page.get_by_text("Saved.").wait_for()
        screenshot(page, "console-router")
        deadline = time.monotonic() + 10
        while chat(gate, "sk-client-own", "auto") != 200:
            assert time.monotonic() < deadline, gate.output()
            time.sleep(0.2)
        assert fake_provider.last("/custom/v1/chat/completions").body["model"] == "local-model"
        page.get_by_label("prompt").fill("Prove that there are infinitely many primes")
        page.get_by_role("button", name="Route it").click()
        page.get_by_text("Tier REASONING").wait_for()

        # A caller token: shown once, enforced at once, and revoked.
        page.get_by_role("link", name="caller tokens").click()
        page.get_by_label("Name").fill("browser-app")
        page.get_by_label("Lifetime").fill("7d")
        page.get_by_role("button", name="Create token").click()
        token = page.locator("#fg-new-token").inner_text()
        assert re.fullmatch(r"fgt_[A-Za-z0-9_-]{20,}", token)
        page.locator("#fg-copy").wait_for()
        screenshot(page, "console-token-created")
        assert chat(gate, "sk-client-own") == 401  # tokens are required from now on
        assert chat(gate, token) == 200
        [row] = gate.wait_rows("caller = ?", ("browser-app",))
        assert row["status"] == 200

        page.goto(f"{gate.ui_url}/-/flowgate/admin/tokens")  # the list never shows it again
        assert token not in page.content()
        page.locator("tr", has_text="browser-app").get_by_role("button", name="Revoke").click()
        page.get_by_text("Revoked browser-app").wait_for()
        assert page.locator("tr.fg-token-revoked", has_text="browser-app").count() == 1
        assert chat(gate, token) == 401

        page.get_by_role("link", name="console").first.click()
        audit = page.locator("table.fg-audit").inner_text()
        for action in (
            "sign in",
            "add provider key",
            "create caller token",
            "revoke caller token",
            "change router settings",
        ):
            assert action in audit
        screenshot(page, "console-audit")

        page.get_by_role("button", name="Sign out").click()
        page.get_by_text("You are now logged out").wait_for()
        page.wait_for_load_state("networkidle")
        page.goto(f"{gate.ui_url}/-/flowgate/admin/tokens")
        page.wait_for_url("**/-/flowgate/login**")
        assert errors == []


def test_the_printed_sign_in_link_opens_the_console_once(browser, gate):
    [link] = re.findall(r"console:\s+(\S+/-/flowgate/signin\?token=\S+)", gate.output())
    with visit(browser, link) as (page, errors):
        page.wait_for_url("**/-/flowgate/admin")
        page.get_by_text("Audit log").wait_for()
        assert errors == []
    with visit(browser, link) as (page, errors):
        assert "not valid" in page.content()
        assert any("HTTP 403" in e for e in errors)
