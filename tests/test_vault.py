"""The vault: encryption at rest, wrong passwords, tampering, and keys put on real requests."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import time

import openai
import pytest
from conftest import FLOWGATE, start_flowgate, write_config

from flowgate_addon.security.credentials import PASSWORD_ENV, unlock_vault
from flowgate_addon.security.vault import TamperedVault, Vault, VaultError, WrongPassword

SECRET = "sk-proj-VAULTTESTKEY0123456789abcdefghijklmnopqrstuv"


@pytest.fixture
def vault(tmp_path):
    v = Vault(tmp_path / "vault.json")
    v.init("correct horse")
    v.add("openai", SECRET)
    return v


def test_keys_are_encrypted_at_rest_in_a_private_file(vault):
    raw = vault.path.read_bytes()
    assert SECRET.encode() not in raw and b"VAULTTESTKEY" not in raw
    assert stat.S_IMODE(vault.path.stat().st_mode) == 0o600
    [info] = vault.list()
    assert info.provider == "openai" and info.fingerprint.startswith("sha256:")
    assert SECRET not in json.dumps(info.__dict__)


def test_unlock_and_open(vault):
    again = Vault(vault.path)
    assert not again.unlocked
    with pytest.raises(VaultError, match="locked"):
        again.get("openai")
    again.unlock("correct horse")
    assert again.get("openai") == SECRET
    assert again.get("anthropic") is None


def test_key_derivation_costs_at_least_50ms_per_guess(vault):
    """scrypt parameters are stored in the file; a guess must be slow for an attacker."""
    kdf = json.loads(vault.path.read_text())["kdf"]
    assert kdf["name"] == "scrypt" and kdf["n"] >= 2**15 and kdf["r"] >= 8
    other = Vault(vault.path)
    start = time.perf_counter()
    with pytest.raises(WrongPassword):
        other.unlock("guess")
    assert time.perf_counter() - start > 0.05


def test_wrong_password_is_reported_as_such(vault):
    with pytest.raises(WrongPassword, match="wrong master password"):
        Vault(vault.path).unlock("Correct horse")


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data.pop("kdf"),
        lambda data: data["kdf"].update(n=3),  # not a power of two
        lambda data: data["kdf"].update(salt="!!not base64"),
        lambda data: data["kdf"].update(salt=7),
    ],
)
def test_a_damaged_vault_file_is_reported_not_raised(vault, damage, monkeypatch):
    data = json.loads(vault.path.read_text())
    damage(data)
    vault.path.write_text(json.dumps(data))
    with pytest.raises(TamperedVault, match="is damaged"):
        Vault(vault.path).unlock("correct horse")
    # What FlowGate does at start: a reason to show, never an exception.
    monkeypatch.setenv(PASSWORD_ENV, "correct horse")
    assert "is damaged" in unlock_vault(Vault(vault.path), None)


def test_an_unusable_master_key_file_is_reported(vault, tmp_path):
    short = tmp_path / "short.key"
    short.write_text("AAAA\n")
    assert "master key is 32 bytes" in unlock_vault(Vault(vault.path), short)
    folder = tmp_path / "a-folder.key"
    folder.mkdir()
    assert "cannot read the master-key file" in unlock_vault(Vault(vault.path), folder)


def test_tampered_entries_are_detected(vault):
    data = json.loads(vault.path.read_text())
    sealed = bytearray(base64.b64decode(data["keys"]["openai"]["sealed"]))
    sealed[20] ^= 0x01
    data["keys"]["openai"]["sealed"] = base64.b64encode(bytes(sealed)).decode()
    vault.path.write_text(json.dumps(data))
    reopened = Vault(vault.path)
    reopened.unlock("correct horse")  # the password is still right ...
    with pytest.raises(TamperedVault, match="tampered"):
        reopened.get("openai")  # ... but the entry fails its integrity check


def test_an_entry_moved_to_another_provider_does_not_open(vault):
    data = json.loads(vault.path.read_text())
    data["keys"]["anthropic"] = data["keys"]["openai"]
    vault.path.write_text(json.dumps(data))
    reopened = Vault(vault.path)
    reopened.unlock("correct horse")
    with pytest.raises(TamperedVault):
        reopened.get("anthropic")


def test_change_password_reencrypts_every_key(vault):
    vault.add("anthropic", "sk-ant-second-key-0123456789")
    before = json.loads(vault.path.read_text())
    vault.change_password("correct horse", "battery staple")
    after = json.loads(vault.path.read_text())
    assert before["kdf"]["salt"] != after["kdf"]["salt"]
    assert before["keys"]["openai"]["sealed"] != after["keys"]["openai"]["sealed"]
    with pytest.raises(WrongPassword):
        Vault(vault.path).unlock("correct horse")
    fresh = Vault(vault.path)
    fresh.unlock("battery staple")
    assert fresh.get("openai") == SECRET
    assert fresh.get("anthropic") == "sk-ant-second-key-0123456789"


def run_cli(args: list[str], home, env: dict[str, str] | None = None, stdin: str | None = None):
    return subprocess.run(
        [FLOWGATE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "FLOWGATE_HOME": str(home), **(env or {})},
    )


def test_cli_add_list_remove_change_password(tmp_path):
    home = tmp_path / "home"
    pw = {"FLOWGATE_MASTER_PASSWORD": "pw-one"}
    out = run_cli(["add-key", "openai", "--from-env", "MY_KEY"], home, {**pw, "MY_KEY": SECRET})
    assert out.returncode == 0, out.stderr
    assert "Created the vault" in out.stderr and "sha256:" in out.stdout
    assert SECRET not in out.stdout + out.stderr
    listed = run_cli(["keys", "list"], home)
    assert listed.returncode == 0 and listed.stdout.startswith("openai")
    assert SECRET not in listed.stdout

    # Interactive, hidden input: the key arrives on stdin.
    out = run_cli(["add-key", "anthropic"], home, pw, stdin="sk-ant-typed-in-key-0001\n")
    assert out.returncode == 0, out.stderr

    bad = run_cli(["add-key", "nosuch", "--from-env", "MY_KEY"], home, {**pw, "MY_KEY": "x"})
    assert bad.returncode != 0 and "unknown provider 'nosuch'" in bad.stderr
    wrong = run_cli(
        ["add-key", "gemini", "--from-env", "K"],
        home,
        {"FLOWGATE_MASTER_PASSWORD": "nope", "K": "AIza-x"},
    )
    assert wrong.returncode != 0 and "wrong master password" in wrong.stderr

    changed = run_cli(
        ["vault", "change-password"], home, {**pw, "FLOWGATE_NEW_MASTER_PASSWORD": "pw-two"}
    )
    assert changed.returncode == 0 and "Re-encrypted 2 keys" in changed.stdout
    v = Vault(home / "vault.json")
    v.unlock("pw-two")
    assert v.get("openai") == SECRET and v.get("anthropic") == "sk-ant-typed-in-key-0001"

    assert run_cli(["keys", "remove", "anthropic"], home).returncode == 0
    gone = run_cli(["keys", "remove", "anthropic"], home)
    assert gone.returncode != 0 and "holds no key for anthropic" in gone.stderr
    assert "Traceback" not in gone.stderr


def test_master_key_file_unlocks_without_a_password(tmp_path):
    home = tmp_path / "home"
    config = tmp_path / "c.yaml"
    config.write_text("security: {master_key_path: ./master.key}\n")
    out = run_cli(
        ["vault", "init", "--config", str(config)], home, {"FLOWGATE_MASTER_PASSWORD": "pw"}
    )
    assert out.returncode == 0, out.stderr
    key_file = tmp_path / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    out = run_cli(
        ["add-key", "openai", "--from-env", "K", "--config", str(config)], home, {"K": SECRET}
    )  # no password given: the key file opens the vault
    assert out.returncode == 0, out.stderr


# --- through a running FlowGate, with the OpenAI SDK ------------------------------------


def gate_with_vault(tmp_path, fake_provider, env: dict[str, str], extra: dict | None = None):
    config = write_config(
        tmp_path,
        fake_provider,
        {
            "security": {"vault_path": "vault.json", **((extra or {}).get("security", {}))},
        },
    )
    return start_flowgate(tmp_path, config, env=env)


def make_vault(tmp_path, password: str = "s3cret") -> Vault:
    v = Vault(tmp_path / "vault.json")
    v.init(password)
    v.add("openai", SECRET)
    return v


def chat(gate, api_key: str = "fgt-or-dummy"):
    client = openai.OpenAI(base_url=gate.base_url, api_key=api_key, max_retries=0)
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )


def test_unlocked_vault_key_replaces_the_client_credential(tmp_path, fake_provider):
    make_vault(tmp_path)
    gate = gate_with_vault(tmp_path, fake_provider, {"FLOWGATE_MASTER_PASSWORD": "s3cret"})
    try:
        assert chat(gate, api_key="dummy").choices
        assert fake_provider.last("/v1/chat/completions").headers["authorization"] == (
            f"Bearer {SECRET}"
        )
    finally:
        assert gate.stop() == 0
    assert SECRET not in gate.output()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "is locked: start FlowGate with FLOWGATE_MASTER_PASSWORD set"),
        ({"FLOWGATE_MASTER_PASSWORD": "not it"}, "could not be unlocked: wrong master password"),
    ],
)
def test_locked_vault_gives_503_saying_how_to_unlock(tmp_path, fake_provider, env, expected):
    make_vault(tmp_path)
    config = write_config(
        tmp_path,
        fake_provider,
        {
            "security": {"vault_path": "vault.json", "allow_client_keys": False},
        },
    )
    gate = start_flowgate(tmp_path, config, env=env)
    try:
        with pytest.raises(openai.APIStatusError) as info:
            chat(gate, api_key="sk-client-own")
        assert info.value.status_code == 503
        assert info.value.body["code"] == "no_provider_key"
        assert expected in info.value.body["message"]
        assert gate.process.poll() is None, "a locked vault must not stop FlowGate"
    finally:
        assert gate.stop() == 0


def test_tampered_vault_is_reported_on_the_request(tmp_path, fake_provider):
    v = make_vault(tmp_path)
    data = json.loads(v.path.read_text())
    data["keys"]["openai"]["sealed"] = data["keys"]["openai"]["sealed"][:-8] + "AAAAAAA="
    v.path.write_text(json.dumps(data))
    gate = gate_with_vault(tmp_path, fake_provider, {"FLOWGATE_MASTER_PASSWORD": "s3cret"})
    try:
        with pytest.raises(openai.APIStatusError) as info:
            chat(gate)
        assert info.value.status_code == 503 and "tampered" in info.value.body["message"]
    finally:
        assert gate.stop() == 0


def test_client_keys_are_refused_when_not_allowed(tmp_path, fake_provider):
    config = write_config(tmp_path, fake_provider, {"security": {"allow_client_keys": False}})
    gate = start_flowgate(tmp_path, config)
    before = len(fake_provider.received)
    try:
        with pytest.raises(openai.APIStatusError) as info:
            chat(gate, api_key="sk-client-real-key")
        assert info.value.status_code == 503
        assert "allow_client_keys is false" in info.value.body["message"]
        assert len(fake_provider.received) == before, "nothing may reach the provider"
    finally:
        assert gate.stop() == 0


def test_vault_file_is_outside_the_database_datasette_serves(tmp_path):
    from flowgate_addon.config import load_settings

    os.environ.pop("FLOWGATE_CONFIG", None)
    settings = load_settings()
    assert settings.security.vault_path.parent == settings.database.path.parent
    assert settings.security.vault_path != settings.database.path


def test_start_asks_for_the_master_password_on_a_terminal(tmp_path, fake_provider):
    """`flowgate start` in a terminal, with nothing else to unlock the vault, asks for it."""
    import pty

    import httpx
    import yaml

    make_vault(tmp_path)
    config = write_config(tmp_path, fake_provider, {"security": {"vault_path": "vault.json"}})
    port = yaml.safe_load(config.read_text())["server"]["port"]
    controller, terminal = pty.openpty()
    log = (tmp_path / "start.log").open("w")
    process = subprocess.Popen(
        [FLOWGATE, "start", "--config", str(config), "--no-ui"],
        stdin=terminal,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={
            "PATH": "/usr/bin:/bin",
            "FLOWGATE_HOME": str(tmp_path / "home"),
            "FAKE_LOCAL_KEY": "x",
        },
    )
    os.close(terminal)
    try:
        deadline = time.monotonic() + 30
        while "master password" not in (tmp_path / "start.log").read_text():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        os.write(controller, b"s3cret\n")
        while True:
            assert process.poll() is None, (tmp_path / "start.log").read_text()
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        gate = type("Gate", (), {"base_url": f"http://127.0.0.1:{port}/v1"})
        assert chat(gate, api_key="dummy").choices
        assert fake_provider.last("/v1/chat/completions").headers["authorization"] == (
            f"Bearer {SECRET}"
        )
    finally:
        process.terminate()
        process.wait(30)
        os.close(controller)
        log.close()
    assert "s3cret" not in (tmp_path / "start.log").read_text()


def test_the_gateway_vault_endpoint_answers_only_this_machine(tmp_path):
    from mitmproxy.test import tflow

    from flowgate_addon.security.credentials import Credentials
    from flowgate_addon.security.unlock import VAULT_PATH, VaultUnlock

    store = Vault(tmp_path / "vault.json")
    store.init("a good password")
    endpoint = VaultUnlock(Credentials(Vault(store.path), True, "locked"))
    for peer, status in ((("10.1.2.3", 5000), 403), (("127.0.0.1", 5000), 200)):
        flow = tflow.tflow()
        flow.request.method, flow.request.path = "GET", VAULT_PATH
        flow.client_conn.peername = peer
        assert endpoint.handle(flow) is None
        assert flow.response.status_code == status
    assert json.loads(flow.response.content) == {
        "exists": True,
        "unlocked": False,
        "problem": "locked",
    }
    assert b"password" not in flow.response.content
