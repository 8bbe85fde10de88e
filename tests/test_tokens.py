"""Caller tokens: the store, the header parsing and the `flowgate tokens` commands."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from mitmproxy.http import Headers

from flowgate_addon.cli_tokens import parse_ttl, tokens
from flowgate_addon.security import tokens as tokens_module
from flowgate_addon.security.audit import AuditLog
from flowgate_addon.security.tokens import (
    TOKEN_RE,
    Caller,
    TokenState,
    TokenStore,
    extract_token,
    hash_token,
    new_token,
)

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


class Clock:
    def __init__(self, moment: datetime = T0) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "tokens.db"


@pytest.fixture
def store(db_path: Path, clock: Clock):
    with TokenStore(db_path, now=clock) as store:
        yield store


def _disk_bytes(path: Path) -> bytes:
    """The database file and whatever SQLite keeps beside it (-wal, -shm, -journal)."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


# -- tokens themselves -----------------------------------------------------------


def test_token_format_and_entropy():
    made = [new_token() for _ in range(1000)]
    assert len(set(made)) == 1000
    for token in made:
        assert token.startswith("fgt_")
        assert len(token) == 47
        assert TOKEN_RE.fullmatch(token)
        assert len(base64.urlsafe_b64decode(token[4:] + "=")) == 32
    # 256 random bits each: across 1000 tokens every base64url character shows up,
    # and no 8-character display prefix repeats.
    assert len({c for t in made for c in t[4:]}) == 64
    assert len({t[4:12] for t in made}) == 1000


def test_create_returns_a_token_that_checks(store):
    token = store.create("ci")
    assert TOKEN_RE.fullmatch(token)
    result = store.check(token)
    assert result.ok
    assert result.state is TokenState.OK
    assert result.caller == Caller(id=1, name="ci")
    second = store.create("laptop")
    assert store.check(second).caller == Caller(id=2, name="laptop")
    assert store.check(token).caller == Caller(id=1, name="ci")


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "fgt_",
        "sk-not-a-caller-token",
        "fgt_" + "A" * 43,  # well formed, never issued
        "fgt_" + "A" * 44,
        "fgt_" + "é" * 43,
        "Bearer fgt_" + "A" * 43,
    ],
)
def test_unknown_tokens(store, presented):
    store.create("ci")
    result = store.check(presented)
    assert not result.ok
    assert result.state is TokenState.UNKNOWN
    assert result.caller is None


def test_a_token_differing_in_one_character_is_unknown(store):
    token = store.create("ci")
    last = "A" if token[-1] != "A" else "B"
    assert store.check(token[:-1] + last).state is TokenState.UNKNOWN
    assert store.check(token.upper()).state is TokenState.UNKNOWN


def test_list_shows_metadata_never_secrets(store, clock):
    token = store.create("ci", ttl=timedelta(hours=12))
    store.create("laptop")
    rows = store.list()
    assert rows == [
        {
            "id": 1,
            "name": "ci",
            "prefix": token[4:12],
            "created": "2030-01-02T03:04:05Z",
            "expires": "2030-01-02T15:04:05Z",
            "revoked": None,
            "status": "active",
        },
        {
            "id": 2,
            "name": "laptop",
            "prefix": rows[1]["prefix"],
            "created": "2030-01-02T03:04:05Z",
            "expires": None,
            "revoked": None,
            "status": "active",
        },
    ]
    assert token not in repr(rows)
    assert hash_token(token) not in repr(rows)


def test_revoke_by_name_and_by_id(store, clock):
    ci = store.create("ci")
    laptop = store.create("laptop")
    clock.moment = T0 + timedelta(minutes=5)
    assert store.revoke("ci") is True
    result = store.check(ci)
    assert result.state is TokenState.REVOKED
    assert result.caller is None
    assert result.name == "ci"
    assert store.check(laptop).ok
    assert store.revoke("2") is True
    assert store.check(laptop).state is TokenState.REVOKED
    statuses = {row["name"]: (row["status"], row["revoked"]) for row in store.list()}
    assert statuses["ci"] == ("revoked", "2030-01-02T03:09:05Z")
    assert statuses["laptop"][0] == "revoked"
    # Revoking again keeps the first time.
    clock.moment = T0 + timedelta(days=1)
    assert store.revoke("ci") is True
    assert store.list()[0]["revoked"] == "2030-01-02T03:09:05Z"


def test_revoke_nothing_matched(store):
    store.create("ci")
    assert store.revoke("nope") is False
    assert store.revoke("7") is False
    assert store.revoke("") is False
    assert store.list()[0]["status"] == "active"


def test_expiry_follows_the_clock(store, clock):
    token = store.create("ci", ttl=timedelta(hours=1))
    clock.moment = T0 + timedelta(minutes=59, seconds=59)
    assert store.check(token).ok
    assert store.has_tokens()
    clock.moment = T0 + timedelta(hours=1)
    result = store.check(token)
    assert result.state is TokenState.EXPIRED
    assert result.caller is None
    assert result.name == "ci"
    assert store.list()[0]["status"] == "expired"
    assert not store.has_tokens()


def test_revoked_wins_over_expired(store, clock):
    token = store.create("ci", ttl=timedelta(seconds=30))
    store.revoke("ci")
    clock.moment = T0 + timedelta(days=1)
    assert store.check(token).state is TokenState.REVOKED
    assert store.list()[0]["status"] == "revoked"


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1)])
def test_lifetime_must_be_positive(store, ttl):
    with pytest.raises(ValueError, match="positive"):
        store.create("ci", ttl=ttl)
    assert store.list() == []


def test_has_tokens_means_an_active_one(store):
    assert not store.has_tokens()
    store.create("ci")
    assert store.has_tokens()
    store.revoke("ci")
    assert not store.has_tokens()
    store.create("other")
    assert store.has_tokens()


def test_duplicate_name_is_refused(store):
    token = store.create("ci")
    with pytest.raises(ValueError, match="already exists"):
        store.create("ci")
    store.revoke("ci")
    with pytest.raises(ValueError, match="already exists"):
        store.create("ci")
    assert [row["name"] for row in store.list()] == ["ci"]
    assert store.check(token).state is TokenState.REVOKED


@pytest.mark.parametrize(
    "name",
    ["", " ", "has space", "a/b", "a:b", "x" * 65, "ünïcode", "line\nbreak", "42", "0"],
)
def test_bad_names_are_refused(store, name):
    with pytest.raises(ValueError, match="invalid token name"):
        store.create(name)
    assert store.list() == []


@pytest.mark.parametrize("name", ["a", "ci", "my-app.prod_2", "x" * 64, "2fa", "-.-"])
def test_good_names(store, name):
    store.create(name)
    assert store.list()[0]["name"] == name


# -- the file ----------------------------------------------------------------------


def test_file_is_private(store, db_path):
    store.create("ci")
    files = list(db_path.parent.glob("tokens.db*"))
    assert db_path in files
    for path in files:  # the -wal and -shm files too, while the store is open
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_existing_loose_file_is_made_private(db_path):
    with TokenStore(db_path):
        pass
    db_path.chmod(0o644)
    with TokenStore(db_path):
        pass
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_only_hashes_on_disk(db_path):
    with TokenStore(db_path) as store:
        token = store.create("ci")
        store.create("other")
        store.revoke("other")
        open_bytes = _disk_bytes(db_path)
    closed_bytes = _disk_bytes(db_path)
    for raw in (open_bytes, closed_bytes):
        assert hash_token(token).encode() in raw
        assert token.encode() not in raw
        assert token[4:].encode() not in raw
        assert token[12:].encode() not in raw  # beyond the display prefix


def test_schema_uses_its_own_migration_set(db_path):
    import sqlite3

    with TokenStore(db_path):
        pass
    with TokenStore(db_path):  # re-opening applies nothing twice
        pass
    conn = sqlite3.connect(db_path)
    applied = conn.execute("SELECT migration_set, name FROM _sqlite_migrations").fetchall()
    columns = [row[1] for row in conn.execute("PRAGMA table_info(tokens)")]
    conn.close()
    assert applied == [("flowgate-tokens", "m001_tokens")]
    assert columns == ["id", "name", "hash", "prefix", "created", "expires", "revoked"]


# -- changes made elsewhere count at once -----------------------------------------------


def test_check_sees_another_stores_changes_at_once(db_path, clock):
    with TokenStore(db_path, now=clock) as gateway, TokenStore(db_path, now=clock) as cli:
        assert not gateway.has_tokens()
        token = cli.create("ci")
        assert gateway.has_tokens()
        assert gateway.check(token).caller == Caller(id=1, name="ci")
        assert cli.revoke("ci")
        assert gateway.check(token).state is TokenState.REVOKED
        assert not gateway.has_tokens()
        later = cli.create("later", ttl=timedelta(minutes=1))
        assert gateway.check(later).ok


def test_check_sees_another_process_at_once(db_path):
    with TokenStore(db_path) as gateway:
        script = textwrap.dedent(
            f"""
            from pathlib import Path
            from flowgate_addon.security.tokens import TokenStore
            with TokenStore(Path({str(db_path)!r})) as store:
                print(store.create("other-process"))
            """
        )
        token = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert gateway.check(token).caller == Caller(id=1, name="other-process")
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from flowgate_addon.security.tokens import TokenStore; "
                f"TokenStore(__import__('pathlib').Path({str(db_path)!r})).revoke('1')",
            ],
            check=True,
        )
        assert gateway.check(token).state is TokenState.REVOKED


def test_check_follows_a_replaced_file(db_path, monkeypatch):
    monkeypatch.setattr(tokens_module, "FILE_CHECK_INTERVAL", 0.0)
    with TokenStore(db_path) as gateway:
        with TokenStore(db_path) as cli:
            old = cli.create("ci")
        assert gateway.check(old).ok
        for path in db_path.parent.glob("tokens.db*"):
            path.unlink()
        with TokenStore(db_path) as cli:
            new = cli.create("ci")
        assert gateway.check(old).state is TokenState.UNKNOWN
        assert gateway.check(new).ok


def test_repeated_checks_do_not_reload(store, monkeypatch):
    token = store.create("ci")
    assert store.check(token).ok
    loads = []
    original = tokens_module._Entry

    def counting_entry(*args, **kwargs):
        loads.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(tokens_module, "_Entry", counting_entry)
    for _ in range(100):
        assert store.check(token).ok
    assert loads == []
    store.create("other")
    assert store.check(token).ok
    assert len(loads) == 2  # one reload of the two-row table


# -- finding the token in a request ---------------------------------------------------

TOKEN = "fgt_" + "Ab-_" * 10 + "xyz"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"Authorization": f"Bearer {TOKEN}"}, TOKEN),
        ({"authorization": f"bearer   {TOKEN} "}, TOKEN),
        ({"X-Api-Key": TOKEN}, TOKEN),
        ({"x-goog-api-key": TOKEN}, TOKEN),
        ({"api-key": TOKEN}, TOKEN),
        ({"Proxy-Authorization": _basic("flowgate", TOKEN)}, TOKEN),
        ({"Proxy-Authorization": _basic(TOKEN, "")}, TOKEN),
        ({"Proxy-Authorization": f"Bearer {TOKEN}"}, TOKEN),
        # Proxy-Authorization is FlowGate's own; Authorization then carries the provider key.
        (
            {"Proxy-Authorization": _basic("u", TOKEN), "Authorization": "Bearer sk-real"},
            TOKEN,
        ),
        ({"Authorization": "Bearer sk-provider-key"}, None),
        ({"Authorization": f"Basic {TOKEN}"}, None),
        ({"Authorization": TOKEN}, None),
        ({"x-api-key": "sk-ant-key"}, None),
        ({"x-api-key": "dummy"}, None),
        ({"Proxy-Authorization": _basic("user", "secret")}, None),
        ({"Proxy-Authorization": _basic(TOKEN, "secret")}, None),
        ({"Proxy-Authorization": "Basic !!!not base64"}, None),
        ({"Proxy-Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()}, None),
        ({"Proxy-Authorization": "Digest abc"}, None),
        ({"Proxy-Authorization": "Basic"}, None),
        ({"Authorization": "Bearer"}, None),
        ({"Authorization": ""}, None),
        ({"Cookie": TOKEN}, None),
        ({}, None),
    ],
)
def test_extract_token(fields, expected):
    headers = Headers(**{k.replace("-", "_"): v for k, v in fields.items()})
    assert extract_token(headers) == expected


def test_extract_then_check(store):
    token = store.create("ci")
    headers = Headers(authorization=f"Bearer {token}")
    assert store.check(extract_token(headers)).caller.name == "ci"


# -- `flowgate tokens` ------------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FLOWGATE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def run(*args: str):
    return CliRunner().invoke(tokens, list(args))


def test_cli_create_prints_only_the_token(home):
    result = run("create", "ci")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    token = result.stdout.strip()
    assert TOKEN_RE.fullmatch(token)
    assert "only" in result.stderr and "once" in result.stderr
    assert token not in result.stderr
    with TokenStore(home / "tokens.db") as store:
        assert store.check(token).caller.name == "ci"
    assert stat.S_IMODE((home / "tokens.db").stat().st_mode) == 0o600


def test_cli_create_with_ttl(home):
    result = run("create", "ci", "--ttl", "12h")
    assert result.exit_code == 0, result.output
    with TokenStore(home / "tokens.db") as store:
        row = store.list()[0]
    created = datetime.fromisoformat(row["created"])
    assert datetime.fromisoformat(row["expires"]) - created == timedelta(hours=12)


def test_cli_list(home):
    token = run("create", "ci", "--ttl", "30d").stdout.strip()
    run("create", "laptop")
    run("revoke", "laptop")
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "PREFIX", "CREATED", "EXPIRES", "STATUS"]
    ci = lines[1].split()
    assert ci[:3] == ["1", "ci", f"{token[:12]}…"]
    assert ci[5] == "active"
    assert lines[2].split()[1] == "laptop"
    assert lines[2].split()[4:] == ["never", "revoked"]
    assert token not in result.output
    assert token[12:] not in result.output


def test_cli_list_empty(home):
    result = run("list")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No caller tokens" in result.stderr


def test_cli_revoke(home):
    token = run("create", "ci").stdout.strip()
    result = run("revoke", "ci")
    assert result.exit_code == 0, result.output
    with TokenStore(home / "tokens.db") as store:
        assert store.check(token).state is TokenState.REVOKED
    other = run("create", "other").stdout.strip()
    assert run("revoke", "2").exit_code == 0
    with TokenStore(home / "tokens.db") as store:
        assert store.check(other).state is TokenState.REVOKED
    # The same audit log as the console's: who, what, never the token.
    entries = AuditLog(home / "audit.db").recent()
    assert [(e["action"], e["target"]) for e in reversed(entries)] == [
        ("create caller token", "ci"),
        ("revoke caller token", "ci"),
        ("create caller token", "other"),
        ("revoke caller token", "2"),
    ]
    assert all(e["actor"].startswith("cli:") for e in entries)
    assert token.encode() not in (home / "audit.db").read_bytes()
    assert stat.S_IMODE((home / "audit.db").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["revoke", "nope"], "no token named 'nope'"),
        (["revoke", "9"], "no token named '9' or with that id"),
        (["create", "bad name"], "invalid token name 'bad name'"),
        (["create", "ci"], "a token named 'ci' already exists"),
        (["create", "x", "--ttl", "5y"], "invalid lifetime '5y'"),
        (["create", "x", "--ttl", "0d"], "must be longer than zero"),
        (["create", "x", "--ttl", "-3h"], "invalid lifetime"),
        (["create", "x", "--ttl", "99999999d"], "at most 100 years"),
    ],
)
def test_cli_errors_are_messages_not_tracebacks(home, args, message):
    assert run("create", "ci").exit_code == 0
    result = run(*args)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_cli_unreadable_database_is_a_message(home):
    home.mkdir(parents=True)
    (home / "tokens.db").write_bytes(b"this is not a database" * 100)
    result = run("list")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "cannot open the token database" in result.stderr


def test_cli_tokens_file_option(tmp_path, home):
    path = tmp_path / "elsewhere.db"
    token = run("create", "ci", "--tokens-file", str(path)).stdout.strip()
    assert not (home / "tokens.db").exists()
    with TokenStore(path) as store:
        assert store.check(token).ok
    assert "ci" in run("list", "--tokens-file", str(path)).stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("3600s", timedelta(seconds=3600)),
        (" 1D ", timedelta(days=1)),
    ],
)
def test_parse_ttl(text, expected):
    assert parse_ttl(text) == expected


@pytest.mark.parametrize("text", ["", "d", "30", "1.5h", "1w", "10 d", "1h30m"])
def test_parse_ttl_rejects(text):
    with pytest.raises(ValueError, match="invalid lifetime"):
        parse_ttl(text)


def test_a_real_clock_is_the_default(db_path):
    with TokenStore(db_path) as store:
        store.create("ci")
        created = datetime.fromisoformat(store.list()[0]["created"])
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    assert os.stat(db_path).st_size > 0


def test_many_processes_opening_a_new_file_at_once(tmp_path):
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from flowgate_addon.security.tokens import TokenStore
        start = float(sys.argv[2])
        while time.time() < start:
            pass
        with TokenStore(Path(sys.argv[1])) as store:
            store.create(sys.argv[3])
        """
    )
    path = tmp_path / "tokens.db"
    start = str(time.time() + 2.0)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path), start, f"p{i}"], stderr=subprocess.PIPE
        )
        for i in range(8)
    ]
    errors = [w.communicate(timeout=60)[1].decode() for w in workers]
    assert [w.returncode for w in workers] == [0] * 8, errors
    with TokenStore(path) as store:
        assert sorted(row["name"] for row in store.list()) == [f"p{i}" for i in range(8)]
