"""Scrubbing secrets out of text before FlowGate logs it.

Prompts, responses and error messages go to the SQLite log, which Datasette
serves, so API keys, tokens, passwords and private keys that pass through them
are replaced with a marker naming what was there: `[REDACTED:openai-key]`,
`api_key=[REDACTED:api-key]`, `postgres://app:[REDACTED:url-password]@db`. The
marker never holds any part of the secret. Where a secret follows a key name
(`"api_key": "..."`, `Authorization: Bearer ...`, `user:password@` in a URL),
only the value goes and the name stays.

A `Redactor` applies, in this order:

1. the exact secrets it was given or has learnt (provider keys from the vault,
   caller tokens), longest first, whatever they look like;
2. the patterns from `logging.redact_patterns` (the whole match goes, as `custom`);
3. the built-in rules below.

Built-in rules aim at secrets with a recognisable shape and leave ordinary prose
and code alone: "task-force", UUIDs, commit hashes, short ids, `api_key = api_key`
or `password: str` stay as they are. A value after a key name only counts when
it is quoted or looks like a credential (it holds a digit or punctuation such as
`-/+=`), not when it is a bare identifier or attribute.

Speed: redaction runs on every logged prompt and response, which can be 100 KB.
Python's `re` looks for a pattern that starts with a literal about as fast as
`str.find` does, but tries an alternation of many patterns (or one that starts
with a lookbehind or `\b`) at nearly every position, ten to a hundred times
slower. So every built-in rule is a regex of its own that starts with a literal
(`sk-`, `AIza`, `://`, `bearer`, `api`...), one pass each; the case-insensitive
ones run over a lower-cased copy of the text. Their matches are then merged
(leftmost first, overlaps joined) and the text is rebuilt once. The exact
secrets are one combined regex, run only when one of them occurs in the text.

`redact` may run on a writer thread while `add_secret` runs on the event loop:
the exact-secret state is an immutable tuple replaced as a whole under a lock,
so `redact` reads it without locking.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

MARKER = "[REDACTED:{kind}]"
# Exact secrets shorter than this are ignored: replacing every "admin" or "1234"
# would mangle the log, and could hit the markers themselves.
MIN_SECRET_CHARS = 8

_NOT_REDACTED = r"(?!\[(?i:redacted):)"
# `name = `, `"name": `, `name: `, `name => `, `\"name\": ` (JSON inside JSON).
_SEPARATOR = r"""\\?["']?[ \t]*(?::=|=>|[:=])[ \t]*"""
# A quoted value: anything up to the closing quote (or an escaped one).
_QUOTED = r"""[^"'\\\r\n]+"""
# An unquoted value must look like a credential, not a word, an identifier or an
# attribute (`api_key = api_key`, `password=self.s3_password`, `password: str`,
# `api_key: my-key-name`): eight or more characters, starting with a letter or a
# digit, holding a digit or one of ~+/=!@#%*^, and not a dotted or snake_case name.
_VALUE_CHAR = r"[A-Za-z0-9_.~+/=!@#%*^-]"
_UNQUOTED = (
    rf"(?![A-Za-z_][A-Za-z0-9]*(?:[._][A-Za-z0-9]*)+(?!{_VALUE_CHAR}))"
    rf"(?={_VALUE_CHAR}*[0-9~+/=!@#%*^])[A-Za-z0-9]{_VALUE_CHAR}{{7,}}"
)
# A whole value that is a placeholder, not a secret: `%s`, `{password}`,
# `${PASSWORD}`, `$PASSWORD`, `<token>`.
_PLACEHOLDER = r"""(?!(?:%\w|\{\{?[\w.]*\}\}?|\$\{?\w+\}?|<[\w .-]+>)(?:[\\"'\s,;)}\]@]|$))"""
# After a key name: the separator, an optional quote, then the value.
_VALUE = (
    rf"{_SEPARATOR}(?P<quote>\\?[\"'])?){_NOT_REDACTED}{_PLACEHOLDER}"
    rf"(?(quote){_QUOTED}|{_UNQUOTED})"
)


def _prefixed(prefix: str, tail: str) -> str:
    """`prefix` then `tail`, where `prefix` does not continue a longer token.

    ("sk-..." but not "task-force-...", "AKIA..." but not "XAKIA...".) The check
    comes after the literal so that the regex still starts with it.
    """
    literal = re.escape(prefix)
    return rf"{literal}(?<![A-Za-z0-9_-]{literal}){tail}"


def _key_value_kind(keep: str) -> str:
    name = keep.lower().replace("-", "_")
    if "secret_access" in name:
        return "aws-secret-key"
    if "passw" in name:
        return "password"
    if "token" in name:
        return "token"
    if "secret" in name:
        return "secret"
    return "api-key"


def _authorization_kind(keep: str) -> str:
    scheme = re.search(r"(\w*)\W*$", keep).group(1).lower()  # type: ignore[union-attr]
    return {"bearer": "bearer-token", "basic": "basic-auth"}.get(scheme, "authorization")


@dataclass(frozen=True)
class _Rule:
    # The kind to name; None: the name of the last named group that took part,
    # with "-" for "_" (for rules that tell several kinds apart).
    kind: str | None
    # Must start with a literal, so that `re` can look for it as fast as `str.find`
    # does (a lookbehind, a group of alternatives or `\b` in front of it would make
    # `re` try the whole pattern at every position, ten times slower). A group
    # named `keep` at the start, if any, is the part of the match that stays (a
    # key name and separator); the rest goes.
    pattern: str
    # Matched against the text with letters lower-cased: write it in lower case.
    nocase: bool = False
    # A context rule finds a secret by what stands before it; the kind is then
    # that of the value's own shape if it has one, else this function of the kept
    # text (or `kind`).
    context: bool = False
    kind_of: Callable[[str], str] | None = None
    regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))


_RULES: tuple[_Rule, ...] = (
    # When two matches start at the same place, the rule listed first wins.
    _Rule(
        "private-key",
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        # The body: base64 lines, headers such as "DEK-Info: AES-128-CBC,...",
        # "\n" escapes when in JSON. Then the END line, unless the text was cut
        # short. Possessive, so that a body is read once, never backtracked into.
        r"(?:[A-Za-z0-9+/=\s:,.\\]|-(?!----END))*+"
        r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----)?",
    ),
    _Rule("jwt", _prefixed("eyJ", r"[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")),
    _Rule(
        None,
        _prefixed(
            "sk-",
            # At least 20 characters after "sk-", whatever the kind.
            r"(?:(?P<anthropic_key>ant-[A-Za-z0-9_-]{16,})"
            r"|(?P<openrouter_key>or-[A-Za-z0-9_-]{17,})"
            r"|(?P<deepseek_key>[0-9a-f]{32}(?![A-Za-z0-9_-]))"
            # sk-..., sk-proj-..., sk-svcacct-..., sk-admin-...: a long tail holding
            # an upper-case letter or a digit, so that "sk-" before hyphenated
            # words stays.
            r"|(?P<openai_key>(?=[a-z_-]*[A-Z0-9])[A-Za-z0-9_-]{20,}))",
        ),
    ),
    _Rule("stripe-key", _prefixed("sk_", r"(?:live|test)_[A-Za-z0-9]{16,}")),
    _Rule("stripe-key", _prefixed("rk_", r"(?:live|test)_[A-Za-z0-9]{16,}")),
    _Rule("google-api-key", r"AIza[0-9A-Za-z_-]{35}"),
    _Rule("groq-key", _prefixed("gsk_", r"[A-Za-z0-9]{20,}")),
    _Rule("xai-key", _prefixed("xai-", r"[A-Za-z0-9]{20,}")),
    _Rule("huggingface-token", _prefixed("hf_", r"[A-Za-z0-9]{30,}")),
    _Rule("flowgate-token", _prefixed("fgt_", r"[A-Za-z0-9_-]{32,}")),
    _Rule("github-token", _prefixed("gh", r"[pousr]_[A-Za-z0-9]{36,}")),
    _Rule("github-token", _prefixed("github_pat_", r"[A-Za-z0-9_]{22,}")),
    _Rule("slack-token", _prefixed("xox", r"[abeprs]-[A-Za-z0-9-]{10,}")),
    _Rule("aws-access-key-id", _prefixed("A", r"(?:KIA|SIA)[0-9A-Z]{16}(?![A-Za-z0-9])")),
    # Context rules.
    _Rule(
        "url-password",
        # scheme://user:password@host: the user and the host stay. The password
        # runs to the last "@" before the path, so an unescaped "@" in it goes too.
        # A template (`{password}`, `${PASS}`, `<password>`) is not a password.
        rf"(?P<keep>://[^\s:/?#@\"'<>\[\]]*:){_NOT_REDACTED}(?![{{<]|\$[{{\w]|%s)"
        r"[^\s/?#\"'<>]+(?=@)",
        context=True,
    ),
    _Rule(
        "aws-secret-key",
        rf"(?P<keep>aws_?secret_?access_?key{_SEPARATOR}\\?[\"']?)"
        r"[a-z0-9/+=]{40}(?![a-z0-9/+=])",
        nocase=True,
        context=True,
    ),
    _Rule(
        "authorization",
        # Authorization / Proxy-Authorization as a header, a JSON or dict key, an
        # env var. After a scheme anything token-like goes; without one the value
        # must look like a credential.
        rf"(?P<keep>authorization{_SEPARATOR}\\?[\"']?"
        r"(?:(?P<scheme>bearer|basic|token|digest|apikey)[ \t]+)?)"
        rf"{_NOT_REDACTED}(?(scheme)[a-z0-9._~+/=-]{{8,}}|{_UNQUOTED})",
        nocase=True,
        context=True,
        kind_of=_authorization_kind,
    ),
    _Rule(
        "bearer-token",
        # "Bearer <token>" anywhere: the token must hold a digit, so that prose
        # ("bearer instruments", "Bearer authentication") stays.
        r"(?P<keep>bearer(?<![a-z0-9_]bearer)[ \t]+)"
        r"(?=[a-z._~+/-]*[0-9])[a-z0-9._~+/-]{8,}=*",
        nocase=True,
        context=True,
    ),
    # Key-value pairs, by the last word of the key name (what comes before it
    # stays anyway). Bare "token" is left out on purpose: OpenAI logprobs
    # responses are full of `"token": "Hello"`. So is "private_key", whose value
    # is a PEM block that the private-key rule takes whole.
    _Rule(
        "api-key",
        rf"(?P<keep>api[_-]?(?:key|secret|token){_VALUE}",  # api_key, x-api-key, apikey
        nocase=True,
        context=True,
        kind_of=_key_value_kind,
    ),
    _Rule(
        "token",
        r"(?P<keep>token(?:"
        + "|".join(
            rf"(?<={name}[_-]token)|(?<={name}token)"
            for name in ("access", "auth", "refresh", "session")
        )
        + rf"){_VALUE}",
        nocase=True,
        context=True,
        kind_of=_key_value_kind,
    ),
    _Rule(
        "secret",
        # secret, client_secret, secret_key, aws_secret_access_key...
        rf"(?P<keep>secret(?:[_-]?(?:access[_-]?)?key)?{_VALUE}",
        nocase=True,
        context=True,
        kind_of=_key_value_kind,
    ),
    _Rule("password", rf"(?P<keep>passw(?:or)?d{_VALUE}", nocase=True, context=True),
)
_SHAPE_RULES = tuple(rule for rule in _RULES if not rule.context)

KINDS: tuple[str, ...] = (
    "private-key",
    "jwt",
    "anthropic-key",
    "openrouter-key",
    "deepseek-key",
    "openai-key",
    "stripe-key",
    "google-api-key",
    "groq-key",
    "xai-key",
    "huggingface-token",
    "flowgate-token",
    "github-token",
    "slack-token",
    "aws-access-key-id",
    "url-password",
    "aws-secret-key",
    "bearer-token",
    "basic-auth",
    "authorization",
    "api-key",
    "token",
    "secret",
    "password",
    "custom",  # a pattern from logging.redact_patterns
)
"""Every kind a marker can name. An exact secret is named by its shape, else `secret`."""


def _kind(rule: _Rule, m: re.Match[str]) -> str:
    return rule.kind or m.lastgroup.replace("_", "-")  # type: ignore[union-attr]


def kind_of(value: str) -> str | None:
    """The kind of secret `value` is by its shape alone (`openai-key`, `jwt`...), or None."""
    for rule in _SHAPE_RULES:
        m = rule.regex.fullmatch(value)
        if m:
            return _kind(rule, m)
    return None


def _lower(text: str) -> str:
    """`text` with letters lower-cased and every character still at its index."""
    low = text.lower()
    if len(low) != len(text):
        # U+0130 (İ) is the only character whose lower case is two characters.
        low = text.replace("\u0130", "I").lower()
    return low


def _redact_builtin(text: str) -> str:
    low: str | None = None
    # (start, rule order, end of the kept part, end, rule, match)
    hits: list[tuple[int, int, int, int, _Rule, re.Match[str]]] = []
    for order, rule in enumerate(_RULES):
        if rule.nocase:
            if low is None:
                low = _lower(text)
            subject = low
        else:
            subject = text
        for m in rule.regex.finditer(subject):
            keep_end = m.end("keep") if rule.context else m.start()
            hits.append((m.start(), order, keep_end, m.end(), rule, m))
    if not hits:
        return text
    hits.sort(key=lambda hit: hit[:2])
    # Leftmost first. A match overlapping the one before joins it, so that no part
    # of either secret is left behind, nor kept as a key name or a URL's user.
    merged: list[list] = []
    for start, _, keep_end, end, rule, m in hits:
        if merged and start < merged[-1][2]:
            last = merged[-1]
            last[1] = min(last[1], keep_end)
            last[2] = max(last[2], end)
        else:
            merged.append([start, keep_end, end, rule, m])
    out = []
    done = 0
    for start, keep_end, end, rule, m in merged:
        if not rule.context:
            kind = _kind(rule, m)
        else:
            kind = kind_of(text[keep_end:end]) or (
                rule.kind_of(text[start:keep_end]) if rule.kind_of else rule.kind or "secret"
            )
        out.append(text[done:keep_end])
        out.append(MARKER.format(kind=kind))
        done = end
    out.append(text[done:])
    return "".join(out)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A user redaction pattern, compiled; ValueError if it is bad or matches empty text."""
    if not isinstance(pattern, str):
        raise ValueError(f"redact pattern {pattern!r} is not a string")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid redact pattern {pattern!r}: {exc}") from None
    if regex.fullmatch(""):
        raise ValueError(f"redact pattern {pattern!r} matches empty text")
    return regex


_CUSTOM = MARKER.format(kind="custom")


class Redactor:
    """Replaces secrets in text with `[REDACTED:<kind>]` markers."""

    def __init__(self, extra_patterns: Iterable[str] = (), secrets: Iterable[str] = ()) -> None:
        if isinstance(extra_patterns, str):
            extra_patterns = [extra_patterns]
        self._extra = tuple(compile_pattern(pattern) for pattern in extra_patterns)
        self._lock = threading.Lock()
        # The exact secrets, longest first; their combined regex (None if there
        # are none); the kind to name per secret. Replaced whole, never changed.
        self._state: tuple[tuple[str, ...], re.Pattern[str] | None, dict[str, str]] = (
            (),
            None,
            {},
        )
        if isinstance(secrets, str):
            secrets = [secrets]
        self._learn(secrets)

    @property
    def secret_count(self) -> int:
        """How many exact secrets the redactor knows."""
        return len(self._state[0])

    def add_secret(self, secret: str) -> None:
        """Replace `secret` wherever it occurs from now on.

        Ignored if shorter than MIN_SECRET_CHARS (not counting surrounding blanks).
        """
        self._learn([secret])

    def _learn(self, secrets: Iterable[str]) -> None:
        with self._lock:
            _, _, kinds = self._state
            new = {
                secret: kind_of(secret) or "secret"
                for secret in secrets
                if isinstance(secret, str)
                and len(secret.strip()) >= MIN_SECRET_CHARS
                and secret not in kinds
            }
            if not new:
                return
            kinds = {**kinds, **new}
            # Longest first, so that a secret containing another goes whole.
            ordered = tuple(sorted(kinds, key=len, reverse=True))
            regex = re.compile("|".join(map(re.escape, ordered)))
            self._state = (ordered, regex, kinds)

    def redact(self, text: str | None) -> str | None:
        """`text` with every secret replaced by a marker; None stays None."""
        if not text:
            return text
        ordered, regex, kinds = self._state
        # A substring test per secret is several times faster than the regex, and
        # usually none of them is there.
        if regex is not None and any(map(text.__contains__, ordered)):
            text = regex.sub(lambda m: MARKER.format(kind=kinds[m.group()]), text)
        for extra in self._extra:
            text = extra.sub(_CUSTOM, text)
        return _redact_builtin(text)
