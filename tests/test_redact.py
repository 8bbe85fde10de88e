"""Log redaction: secrets go, their kind is named, everything around them stays."""

from __future__ import annotations

import random
import re
import secrets as random_secrets
import string
import threading

import pytest

from flowgate_addon.security.redact import KINDS, MIN_SECRET_CHARS, Redactor

# Fake secrets are put together at run time, from pieces, so that this file holds
# nothing a secret scanner would take for a real credential.
_rng = random.Random(20260101)
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"


def fake(prefix: str, length: int, alphabet: str = ALNUM) -> str:
    return prefix + "".join(_rng.choice(alphabet) for _ in range(length))


OPENAI_LEGACY = fake("sk" + "-", 48)
OPENAI_PROJECT = fake("sk" + "-proj-", 156, URLSAFE) + "A1"
OPENAI_SERVICE = fake("sk" + "-svcacct-", 120, URLSAFE) + "B2"
ANTHROPIC = fake("sk" + "-ant-api03-", 93, URLSAFE) + "AA"
OPENROUTER = fake("sk" + "-or-v1-", 64, HEX)
DEEPSEEK = fake("sk" + "-", 32, HEX)
GOOGLE = fake("AI" + "za", 35, URLSAFE)
GROQ = fake("gs" + "k_", 52)
XAI = fake("xa" + "i-", 80)
HUGGINGFACE = fake("h" + "f_", 34, string.ascii_letters)
FLOWGATE = "fg" + "t_" + random_secrets.token_urlsafe(32)
AWS_KEY_ID = fake("AK" + "IA", 16, string.ascii_uppercase + string.digits)
AWS_SECRET = fake("", 38, ALNUM + "/+") + "x9"
GITHUB_CLASSIC = fake("gh" + "p_", 36)
GITHUB_APP = fake("gh" + "s_", 36)
GITHUB_FINE = fake("github" + "_pat_", 22) + "_" + fake("", 59)
SLACK = "xo" + "xb-" + fake("", 12, string.digits) + "-" + fake("", 13, string.digits) + "-"
SLACK += fake("", 24)
STRIPE_LIVE = fake("sk" + "_live_", 24)
STRIPE_RESTRICTED = fake("rk" + "_live_", 24)
JWT = ".".join(
    [
        "eyJ" + "hbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
        "eyJ" + fake("", 60, URLSAFE),
        fake("", 43, URLSAFE),
    ]
)

SHAPED = [
    (OPENAI_LEGACY, "openai-key"),
    (OPENAI_PROJECT, "openai-key"),
    (OPENAI_SERVICE, "openai-key"),
    (ANTHROPIC, "anthropic-key"),
    (OPENROUTER, "openrouter-key"),
    (DEEPSEEK, "deepseek-key"),
    (GOOGLE, "google-api-key"),
    (GROQ, "groq-key"),
    (XAI, "xai-key"),
    (HUGGINGFACE, "huggingface-token"),
    (FLOWGATE, "flowgate-token"),
    (AWS_KEY_ID, "aws-access-key-id"),
    (GITHUB_CLASSIC, "github-token"),
    (GITHUB_APP, "github-token"),
    (GITHUB_FINE, "github-token"),
    (SLACK, "slack-token"),
    (STRIPE_LIVE, "stripe-key"),
    (STRIPE_RESTRICTED, "stripe-key"),
    (JWT, "jwt"),
]


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def assert_redacted(redactor: Redactor, text: str, expected: str, *gone: str) -> None:
    out = redactor.redact(text)
    assert out == expected
    for secret in gone:
        assert secret not in out
    # Stable: a second pass finds nothing more.
    assert redactor.redact(out) == out


@pytest.mark.parametrize(("secret", "kind"), SHAPED, ids=[kind for _, kind in SHAPED])
def test_a_key_with_a_known_shape_is_replaced_by_its_kind(redactor, secret, kind):
    text = f"Here is my key {secret} - please keep it safe.\nNext line."
    expected = f"Here is my key {marker(kind)} - please keep it safe.\nNext line."
    assert_redacted(redactor, text, expected, secret)


@pytest.mark.parametrize(("secret", "kind"), SHAPED, ids=[kind for _, kind in SHAPED])
def test_a_key_alone_or_between_punctuation(redactor, secret, kind):
    assert redactor.redact(secret) == marker(kind)
    assert redactor.redact(f"({secret}),") == f"({marker(kind)}),"
    assert redactor.redact(f"'{secret}'\n") == f"'{marker(kind)}'\n"


def test_no_part_of_a_secret_survives_in_the_marker(redactor):
    for secret, _ in SHAPED:
        out = redactor.redact(f"x {secret} y")
        for found in re.findall(r"\[REDACTED:([^\]]*)\]", out):
            assert found in KINDS
        # Not even a long piece of it.
        assert secret[-12:] not in out
        assert secret[8:20] not in out


CONTEXT = [
    # Headers: the name and the scheme stay.
    (
        "Authorization: Bearer abcdefghijklmnopqrstuvwx",
        f"Authorization: Bearer {marker('bearer-token')}",
    ),
    (
        f"curl -H 'Authorization: Bearer {OPENAI_PROJECT}' https://api.openai.com/v1/models",
        f"curl -H 'Authorization: Bearer {marker('openai-key')}' https://api.openai.com/v1/models",
    ),
    (
        "proxy-authorization: Basic dXNlcjpwYXNzd29yZA==\r\nHost: x",
        f"proxy-authorization: Basic {marker('basic-auth')}\r\nHost: x",
    ),
    (
        '{"headers": {"authorization": "Bearer sk-provider-own"}}',
        f'{{"headers": {{"authorization": "Bearer {marker("bearer-token")}"}}}}',
    ),
    (
        f"Authorization: Bearer {FLOWGATE}",
        f"Authorization: Bearer {marker('flowgate-token')}",
    ),
    (
        "the header was Bearer 9f8e7d6c5b4a39281706 and it failed",
        f"the header was Bearer {marker('bearer-token')} and it failed",
    ),
    ("x-api-key: k3y-abcdef0123456789", f"x-api-key: {marker('api-key')}"),
    (f"x-goog-api-key: {GOOGLE}", f"x-goog-api-key: {marker('google-api-key')}"),
    # Key-value pairs: the key name stays.
    ("api_key=abc123def456ghi789", f"api_key={marker('api-key')}"),
    (
        f"export OPENAI_API_KEY={OPENAI_PROJECT}\nexport FOO=1",
        f"export OPENAI_API_KEY={marker('openai-key')}\nexport FOO=1",
    ),
    (f'{{"api_key": "{OPENAI_LEGACY}"}}', f'{{"api_key": "{marker("openai-key")}"}}'),
    ('{"apiKey":"my-own-key"}', f'{{"apiKey":"{marker("api-key")}"}}'),
    (
        '{"password": "correct horse battery staple", "user": "ann"}',
        f'{{"password": "{marker("password")}", "user": "ann"}}',
    ),
    ("client = OpenAI(api_key='hunter2hunter')", f"client = OpenAI(api_key='{marker('api-key')}')"),
    (
        '{"body": "{\\"api_key\\": \\"abc123xyz789\\"}"}',
        f'{{"body": "{{\\"api_key\\": \\"{marker("api-key")}\\"}}"}}',
    ),
    (
        'client_secret: "GOCSPX-abcdefghijklmnop"',
        f'client_secret: "{marker("secret")}"',
    ),
    ("refresh_token=1//0gAbCdEfGhIjKl", f"refresh_token={marker('token')}"),
    (
        "db:\n  password: s3cr3t-Pa55\n  host: db",
        f"db:\n  password: {marker('password')}\n  host: db",
    ),
    # AWS secret keys.
    (
        f"aws_secret_access_key = {AWS_SECRET}\nregion = eu-west-1",
        f"aws_secret_access_key = {marker('aws-secret-key')}\nregion = eu-west-1",
    ),
    (
        f'AWS_SECRET_ACCESS_KEY="{AWS_SECRET}"',
        f'AWS_SECRET_ACCESS_KEY="{marker("aws-secret-key")}"',
    ),
    # Passwords in URLs: the user and the host stay.
    (
        "connect to postgres://app:s3cr3t@db.internal:5432/orders now",
        f"connect to postgres://app:{marker('url-password')}@db.internal:5432/orders now",
    ),
    ("redis://:pw0rd1234@cache:6379/0", f"redis://:{marker('url-password')}@cache:6379/0"),
    ("https://bob:p@ss@example.com/x", f"https://bob:{marker('url-password')}@example.com/x"),
]


@pytest.mark.parametrize(("text", "expected"), CONTEXT)
def test_a_value_after_a_key_name_goes_and_the_name_stays(redactor, text, expected):
    assert_redacted(redactor, text, expected)


def test_a_short_anthropic_style_key_is_still_named_anthropic(redactor):
    key = "sk-" + "ant-typed-in-key-0001"
    assert redactor.redact(f'"{key}"') == f'"{marker("anthropic-key")}"'


def test_a_key_used_as_the_user_of_a_url_goes_too(redactor):
    out = redactor.redact(f"https://{OPENAI_LEGACY}:x@api.example.com/")
    assert OPENAI_LEGACY not in out
    assert out.startswith("https://[REDACTED:")
    assert out.endswith("@api.example.com/")


RSA_BODY = "\n".join(fake("", 64, ALNUM + "+/") for _ in range(6)) + "\n" + fake("", 20) + "=="
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{RSA_BODY}\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    "label", ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"]
)
def test_a_multi_line_private_key_goes_whole(redactor, label):
    pem = f"-----BEGIN {label}-----\n{RSA_BODY}\n-----END {label}-----"
    text = f"My deploy key:\n\n{pem}\n\nWhy does ssh refuse it?"
    out = redactor.redact(text)
    assert out == f"My deploy key:\n\n{marker('private-key')}\n\nWhy does ssh refuse it?"
    for line in RSA_BODY.splitlines():
        assert line not in out


def test_a_private_key_in_json_and_one_cut_short(redactor):
    escaped = PEM.replace("\n", "\\n")
    text = f'{{"type": "service_account", "private_key": "{escaped}\\n", "id": 7}}'
    out = redactor.redact(text)
    redacted = marker("private-key")
    assert out == f'{{"type": "service_account", "private_key": "{redacted}\\n", "id": 7}}'
    # A log clipped in the middle of the key: the rest of the body still goes.
    clipped = PEM[: len(PEM) // 2]
    assert redactor.redact("key: " + clipped) == "key: " + marker("private-key")


def test_an_encrypted_private_key_with_headers(redactor):
    pem = (
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
        f"DEK-Info: AES-128-CBC,{fake('', 32, HEX).upper()}\n\n{RSA_BODY}\n"
        "-----END RSA PRIVATE KEY-----"
    )
    out = redactor.redact(f"{pem}\nthe passphrase is in the vault")
    assert out == f"{marker('private-key')}\nthe passphrase is in the vault"


def test_a_pgp_private_key_block(redactor):
    block = (
        f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{RSA_BODY}\n-----END PGP PRIVATE KEY BLOCK-----"
    )
    assert redactor.redact(f"a\n{block}\nb") == f"a\n{marker('private-key')}\nb"


UNCHANGED = [
    "sk-",
    "The prefix sk- marks a secret key; sk-123 is too short to be one.",
    "The task-force-for-the-whole-organisation-2024 met on Monday.",
    "risk-assessment-and-mitigation-framework-v2 applies",
    "import sklearn; from sk-learn-compat-layer-for-python import x",
    "request id 123e4567-e89b-12d3-a456-426614174000 failed",
    "fixed in commit 4357044c1f0d2e7a9b8c6d5e4f3a2b1c0d9e8f7a (and 2162f1b)",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "hf_hub_download(repo_id='gpt2', filename='config.json')",
    "self.api_key = api_key\nself.password = password",
    'api_key = os.environ["OPENAI_API_KEY"]',
    "password: str = Field(..., min_length=8)",
    "def login(user: str, password: str) -> Token:",
    "api_key: Optional[str] = None",
    '{"token": "Hello", "logprob": -0.31, "top_logprobs": []}',
    '{"usage": {"prompt_tokens": 12, "completion_tokens": 30, "max_tokens": 1024}}',
    "He was the bearer of bad news. Bearer authentication is described in RFC 6750.",
    "Send an Authorization: header with every request.",
    "Authorization: Bearer $OPENAI_API_KEY",
    "Authorization: Bearer <token>",
    "see https://example.com:8443/path?q=1#frag and http://[::1]:8080/",
    "mail bob@example.com or clone git@github.com:org/repo.git",
    "ssh://git@github.com:22/org/repo.git",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUX\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
    "AKIA is the prefix of an AWS access key id; ghp_ of a GitHub token.",
    "Tokens look like eyJhbGciOi... in the docs.",
    "The xai-grok model and the gsk_ prefix.",
    "passwords: [] and secrets: {} are empty",
    # Code: attributes, snake_case names and templates are not secrets, even with digits.
    "aws_secret_access_key=self.s3_aws_secret_access_key,",
    "aws_session_token=config.s3_aws_session_token",
    'url = f"postgresql://{user}:{quote(password)}@{host}:{port}/{name}"',
    'redis_url = f"redis://:{password}@{host}:{port}"',
    "DATABASE_URL=postgres://app:${DB_PASSWORD}@db/app",
    """log.warning("Error reading secret='%s' from the manager", name)""",
    "client_secret: OAuth2 client secret",
    'azure_authorization = "API-Key"',
    "api_key: my-key-name",
    "",
]


@pytest.mark.parametrize("text", UNCHANGED)
def test_ordinary_prose_and_code_stay_as_they_are(redactor, text):
    assert redactor.redact(text) == text


def test_none_stays_none(redactor):
    assert redactor.redact(None) is None
    assert redactor.redact("") == ""


def test_text_before_a_secret_keeps_its_place_whatever_its_characters(redactor):
    # "İ" is the one character whose lower case is two characters long.
    text = "İİİ Grüße, café — API_KEY=abc-1234567 😀 " + OPENAI_LEGACY + " ende"
    assert redactor.redact(text) == (
        f"İİİ Grüße, café — API_KEY={marker('api-key')} 😀 {marker('openai-key')} ende"
    )


def test_redacting_twice_changes_nothing_more():
    secret = "vault-secret-for-acme"
    redactor = Redactor(extra_patterns=[r"ACME-\d{6}"], secrets=[secret])
    text = "\n".join(
        [f"key {s} here" for s, _ in SHAPED]
        + [t for t, _ in CONTEXT]
        + [PEM, f"exact {secret} and ACME-123456"]
    )
    once = redactor.redact(text)
    assert redactor.redact(once) == once
    assert secret not in once
    assert "ACME-123456" not in once
    assert "[REDACTED:custom]" in once


def test_exact_secrets_go_even_without_a_known_shape():
    vault_key = "my-provider-key-without-any-pattern"
    redactor = Redactor(secrets=[vault_key])
    assert redactor.redact(f"the key is {vault_key}!") == f"the key is {marker('secret')}!"
    # Embedded in a longer word too: an exact secret is replaced wherever it occurs.
    assert redactor.redact(f"x{vault_key}y") == f"x{marker('secret')}y"


def test_an_exact_secret_with_a_known_shape_is_named_by_it():
    redactor = Redactor(secrets=[GROQ])
    assert redactor.redact(f"k={GROQ}") == f"k={marker('groq-key')}"


def test_secrets_learnt_at_run_time():
    redactor = Redactor()
    token = "caller token 42 of team blue"
    assert redactor.redact(f"sent {token}") == f"sent {token}"
    redactor.add_secret(token)
    assert redactor.redact(f"sent {token}") == f"sent {marker('secret')}"
    redactor.add_secret(token)  # twice is harmless
    assert redactor.secret_count == 1


def test_the_longest_secret_goes_first_and_metacharacters_are_literal():
    short, long = "abcdefgh12", "abcdefgh12345678"
    regexy = "p@ss.w*rd+(x)[1]"
    redactor = Redactor(secrets=[short, regexy])
    redactor.add_secret(long)
    out = redactor.redact(f"{long} {short} {regexy} pXss.wwrd+x")
    assert out == f"{marker('secret')} {marker('secret')} {marker('secret')} pXss.wwrd+x"


def test_too_short_secrets_are_ignored():
    redactor = Redactor(secrets=["a" * (MIN_SECRET_CHARS - 1), "", "        "])
    assert redactor.secret_count == 0
    assert redactor.redact("aaaaaaa at a party") == "aaaaaaa at a party"


def test_secrets_added_while_another_thread_redacts():
    redactor = Redactor()
    learnt = [f"run-time-secret-{i:04d}-{fake('', 8)}" for i in range(100)]
    text = " ".join(learnt)
    allowed = {*learnt, marker("secret")}
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            while not stop.is_set():
                out = redactor.redact(text)
                # Each secret goes whole or, if not learnt yet, stays whole.
                assert set(out.split()) <= allowed
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for secret in learnt:
            redactor.add_secret(secret)
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert redactor.secret_count == len(learnt)
    assert redactor.redact(text) == " ".join([marker("secret")] * len(learnt))


def test_extra_patterns_from_the_config():
    redactor = Redactor(extra_patterns=[r"ACME-\d{6}", r"(?i)internal_[a-z]{8}"])
    out = redactor.redact("ticket ACME-123456 uses INTERNAL_abcdefgh, ACME-12 stays")
    assert out == "ticket [REDACTED:custom] uses [REDACTED:custom], ACME-12 stays"


@pytest.mark.parametrize("pattern", ["(unclosed", "a{2,1}", "[z-a]", "(?P<x>a)(?P<x>b)"])
def test_a_bad_extra_pattern_is_refused_by_name(pattern):
    with pytest.raises(ValueError) as caught:
        Redactor(extra_patterns=["fine-[0-9]+", pattern])
    assert repr(pattern) in str(caught.value)


def test_an_extra_pattern_that_matches_empty_text_is_refused():
    with pytest.raises(ValueError, match=re.escape("'x*'")):
        Redactor(extra_patterns=["x*"])


def test_a_large_text_with_many_secrets():
    redactor = Redactor()
    filler = "Lorem ipsum dolor sit amet, task-force 4357044 consectetur.\n" * 30
    parts = []
    for i in range(50):
        secret = SHAPED[i % len(SHAPED)][0]
        parts.append(f"{filler}{i}: {secret}\n")
    text = "".join(parts)
    out = redactor.redact(text)
    assert out.count("[REDACTED:") == 50
    for secret, _ in SHAPED:
        assert secret not in out
    assert out.count("task-force 4357044") == text.count("task-force 4357044")


def test_every_built_in_rule_starts_with_a_literal():
    # What keeps redaction fast: `re` finds a literal as fast as str.find, but tries
    # a pattern starting with a group of alternatives, a class or a lookaround at
    # every position of the text.
    from flowgate_addon.security import redact

    for rule in redact._RULES:
        pattern = rule.pattern.removeprefix("(?P<keep>")
        assert re.match(r"[A-Za-z0-9:-]", pattern), rule.pattern
