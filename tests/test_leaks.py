"""Plant a provider key and a caller token, use them (also inside prompts), then look for
them in every file FlowGate wrote: none may hold either in clear."""

from __future__ import annotations

import sqlite3

import openai
from conftest import start_flowgate, write_config

from flowgate_addon.security.tokens import TokenStore
from flowgate_addon.security.vault import Vault

PLANTED_KEY = "sk-proj-PLANTEDleakCANARY0123456789abcdefABCDEF"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def test_no_secret_reaches_any_file_flowgate_writes(tmp_path, fake_provider):
    home = tmp_path / "home"
    vault = Vault(home / "vault.json")
    vault.init("leak-test-password")
    vault.add("openai", PLANTED_KEY)
    store = TokenStore(home / "tokens.db")
    token = store.create("leaky-app")
    store.close()

    config = write_config(tmp_path, fake_provider)
    gate = start_flowgate(tmp_path, config, env={"FLOWGATE_MASTER_PASSWORD": "leak-test-password"})
    client = openai.OpenAI(base_url=gate.base_url, api_key=token, max_retries=0)
    prompts = [
        f"my key is {PLANTED_KEY}, keep it safe",
        f"Authorization: Bearer {PLANTED_KEY}",
        f"the caller token {token} and aws {AWS_KEY}",
        f'{{"api_key": "{PLANTED_KEY}"}}',
    ]
    try:
        for prompt in prompts:
            # `echo` answers with the prompt: the secret comes back in the response too.
            reply = client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": prompt}]
            )
            assert reply.choices[0].message.content == prompt
        streamed = list(
            client.chat.completions.create(
                model="echo", stream=True, messages=[{"role": "user", "content": prompts[0]}]
            )
        )
        assert streamed
        # The provider did get the key: it is FlowGate's job to send it.
        assert fake_provider.last("/v1/chat/completions").headers["authorization"] == (
            f"Bearer {PLANTED_KEY}"
        )
        rows = gate.wait_rows("end_user IS NULL AND requested_model = 'echo'", count=5)
        assert all(r["caller"] == "leaky-app" for r in rows)
        assert all("[REDACTED" in r["prompt"] for r in rows)
        assert all("[REDACTED" in r["response"] for r in rows)
    finally:
        assert gate.stop() == 0

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert {"flowgate.db", "flowgate.log", "vault.json", "tokens.db"} <= names
    # SQLite keeps deleted pages and the WAL: look at raw bytes, not query results.
    for path in written:
        if path.name == "flowgate.yaml":
            continue  # the test's own input, written before FlowGate ran
        data = path.read_bytes()
        for secret in (PLANTED_KEY, token, AWS_KEY):
            assert secret.encode() not in data, f"{secret[:12]}… found in {path}"
    # And the database really holds the conversation, redacted.
    with sqlite3.connect(tmp_path / "flowgate.db") as conn:
        prompt = conn.execute("SELECT prompt FROM requests WHERE prompt LIKE '%keep it safe%'")
        assert "[REDACTED" in prompt.fetchone()[0]
