"""Rule-based complexity scoring: a request body -> a tier, cheaply enough for the event loop.

Seven dimensions, each 0..1 (rounded to 3 decimals):

- length: the whole conversation in estimated tokens (chars / 4) on a log scale,
  0 up to 16 tokens, 1 at 100K tokens.
- code: code fences, indented lines, code syntax, stack traces, file names with code
  extensions, language names and programming words.
- reasoning: maths and formal reasoning (prove, derive, theorem, LaTeX, equations,
  complexity of, step by step, logic puzzles, "why").
- steps: several tasks in one request (list items, first/then/finally, several
  imperative sentences, several questions).
- constraints: demands on the output (JSON, tables, N words, must / do not), and
  strict schemas in the body (`response_format`, `text.format`, strict tools, `tool_choice`).
- domain: specialist vocabulary (law, medicine, finance, science, security,
  distributed systems, machine learning).
- context: turns, system prompt size, tools offered, tool calls and results present.

The text dimensions read one bounded text, `prompt_text`: the last user turn cut to
8,000 characters (head and tail). Code reads all of it; the others read its prose, with
fenced code removed, so `x = 1` in code is not an equation and "must" in a comment is
not a constraint. Words and phrases from a fixed vocabulary add points once each;
structural patterns add points per match, up to a cap. A dimension is
`1 - exp(-points / 10)`: one clear signal gives ~0.6, two give ~0.85. Length and
context only sum `len()` and count items, so a 100K-token body costs little more than
its last turn.

The score is the weighted mean of the rounded dimensions, so it can be recomputed from
what is logged. One rule on top: a mean dilutes a proof request that has no code or
lists, so when reasoning reaches 0.65 (and its weight is not zero) the score is raised
to at least the REASONING threshold, scaled by how far past 0.65 reasoning is. The tier
is `tier_for(score, thresholds)`, with the score rounded to 3 decimals.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice, pairwise
from typing import Any, NamedTuple

from flowgate_addon.routing import TIERS, Decision, tier_for

DIMENSIONS: tuple[str, ...] = (
    "length",
    "code",
    "reasoning",
    "steps",
    "constraints",
    "domain",
    "context",
)
DEFAULT_WEIGHTS: dict[str, float] = {
    "length": 1.0,
    "code": 2.0,
    "reasoning": 2.0,
    "steps": 1.5,
    "constraints": 1.0,
    "domain": 1.5,
    "context": 1.0,
}
DEFAULT_THRESHOLDS: dict[str, float] = {"MEDIUM": 0.1, "COMPLEX": 0.3, "REASONING": 0.7}

MAX_TEXT_CHARS = 8_000  # prompt_text keeps the first and last half of this
REASONING_LIFT = 0.65  # reasoning at or above this lifts the score into REASONING

_POINTS_SCALE = 10  # points at which a dimension reaches 1 - 1/e
_LENGTH_FLOOR_TOKENS = 16
_LENGTH_FULL_TOKENS = 100_000
_CHARS_PER_TOKEN = 4
# Tuples, not sets: membership by ==, so an unhashable "role" or "type" cannot raise.
_TEXT_PARTS = ("text", "input_text")
_SYSTEM_ROLES = ("system", "developer")
_TOOL_ROLES = ("tool", "function")
_TOOL_BLOCKS = ("tool_use", "tool_result")  # Anthropic content blocks

# Punctuation splits words ("step-by-step", "don't", "app.py"); + and # stay for c++ and c#.
_SEPARATORS = str.maketrans(
    dict.fromkeys(string.punctuation.replace("+", "").replace("#", ""), " ")
)
_FENCED = re.compile(r"(```.*?(?:```|\Z))", re.DOTALL)  # split: prose, code, prose, ...


def _worth(points: int, entries: str) -> dict[str, int]:
    """Comma-separated words and phrases, written the way the text is split into words."""
    return {" ".join(entry.translate(_SEPARATORS).split()): points for entry in entries.split(",")}


# Words and phrases -> points, per dimension. Each counts once however often it occurs,
# so repeating one word does not make a request harder.
_VOCABULARY: dict[str, dict[str, int]] = {
    "code": {
        **_worth(
            6,
            "python, javascript, typescript, java, golang, rust, c++, c#, kotlin, swift, ruby,"
            " php, scala, haskell, sql, bash, powershell, html, css, react, django, flask,"
            " fastapi, nodejs, numpy, pandas, regex, dockerfile",
        ),
        **_worth(
            5,
            "linked list, linked lists, hash map, hash maps, hashmap, binary tree, binary search,"
            " unit test, unit tests, pull request, stack trace, data structure, data structures,"
            " regular expression, race condition, memory leak, segmentation fault, core dumped,"
            " pseudo code, pseudocode",
        ),
        **_worth(
            4,
            "function, functions, method, methods, variable, variables, compile, compiler,"
            " compiles, runtime, debug, debugging, refactor, api, endpoint, algorithm, recursion,"
            " recursive, array, integer, boolean, null, nullptr, undefined, exception, traceback,"
            " stacktrace, segfault, def, elif, lambda, struct, enum, const, async, await, printf,"
            " println, console, unittest, pytest, quicksort, deadlock, mutex, thread, threads",
        ),
        **_worth(
            3,
            "code, coding, program, programming, script, bug, bugs, class, implement,"
            " implementation, database, query, library, repository, git, docker",
        ),
    },
    "reasoning": {
        **_worth(8, "prove, proof, proofs, theorem, lemma, corollary, axiom, derive, derivation"),
        **_worth(
            6,
            "step by step, formally, formal, rigorous, rigorously, induction, contradiction, qed,"
            " deduce",
        ),
        **_worth(
            5,
            "time complexity, space complexity, big o, asymptotic, asymptotically",
        ),
        "complexity of": 2,
        **_worth(
            4,
            "prove that, show that, and only if, iff, for all, there exists, there exist,"
            " closed form, loss of generality, think carefully, reason through,"
            " chain of thought, how many ways, puzzle, riddle, paradox, syllogism, knights, knaves",
        ),
        **_worth(
            3,
            "equation, equations, integral, derivative, eigenvalue, eigenvalues, polynomial,"
            " probability, infinitely, infinite, prime, primes, modulo, convergence, converge,"
            " converges, inequality, logarithm, matrix, solve, optimal, optimize, irrational,"
            " divisible, factorial, combinatorics, permutations",
        ),
    },
    "steps": {
        **_worth(
            3,
            "first, then, next, finally, lastly, afterwards, subsequently, second, third,"
            " additionally, after that, and then, once done",
        ),
        "also": 2,
    },
    "constraints": {
        **_worth(5, "json, yaml, xml, csv, table, tables, markdown, schema, bullet, bullets"),
        **_worth(
            4,
            "must, exactly, strictly, never, required, requirement, requirements, constraint,"
            " constraints, format, formatted, do not, don't, must not, should not, no more than,"
            " at most, at least, fewer than, valid json, json schema",
        ),
        **_worth(
            3,
            "avoid, ensure, limit, maximum, minimum, concise, compatible, cite, citations,"
            " headings, respond in, respond with, respond only, reply in, reply with,"
            " answer in, answer with, output as, return as, return only, formatted as",
        ),
        **_worth(2, "always, only, without"),
    },
    "domain": _worth(
        4,
        # law
        "plaintiff, defendant, statute, statute of limitations, jurisdiction, liability, tort,"
        " indemnify, indemnification, litigation, arbitration, fiduciary, gdpr, hipaa,"
        " copyright, trademark, negligence, due diligence, law, clause, clauses, statutory,"
        " regulatory, compliance,"
        # medicine
        " diagnosis, diagnose, differential diagnosis, contraindication, contraindications,"
        " dosage, pathology, oncology, cardiology, prognosis, etiology, clinical,"
        " pharmacokinetics, symptoms, comorbidity, side effects, medication, drug interaction,"
        # finance
        " amortization, ebitda, liquidity, valuation, dcf, arbitrage, portfolio, volatility,"
        " collateral, hedging, ifrs, gaap, derivatives, equity, dividend, net present value,"
        " interest rate, interest rates,"
        # science
        " quantum, entropy, thermodynamics, enzyme, protein, genome, photosynthesis,"
        " relativity, molecular, catalyst, isotope, spectroscopy, hamiltonian,"
        # security
        " vulnerability, vulnerabilities, exploit, xss, csrf, cve, encryption, tls, oauth,"
        " authentication, cryptographic, pentest, malware, threat model, privilege escalation,"
        " sql injection,"
        # distributed systems
        " distributed, consensus, raft, paxos, replication, replicas, sharding, idempotent,"
        " idempotency, kubernetes, microservices, throughput, failover, quorum, kafka,"
        " scalability, eventual consistency, cap theorem, exactly once, two phase commit,"
        " byzantine, load balancer, load balancing, consistency, latency, concurrency,"
        " availability, partition, partitions, rate limiter, rate limiting,"
        # system design
        " system design, architecture, trade offs, tradeoffs, scalable, sequence diagram,"
        # machine learning
        " gradient, backpropagation, transformer, embeddings, overfitting, regularization,"
        " hyperparameter, hyperparameters",
    ),
}


def _index(
    vocabulary: dict[str, dict[str, int]],
) -> tuple[dict[str, tuple[str, int]], dict[str, list[tuple[str, str, int]]]]:
    """Words -> (dimension, points), and first word -> [(" phrase ", dimension, points)].

    Single words are looked up in the set of the text's words; a phrase is searched for
    (as a substring of the words joined by spaces) only when its first word is present.
    """
    words: dict[str, tuple[str, int]] = {}
    phrases: dict[str, list[tuple[str, str, int]]] = {}
    for dimension, entries in vocabulary.items():
        for entry, points in entries.items():
            if " " in entry:
                phrases.setdefault(entry.split()[0], []).append((f" {entry} ", dimension, points))
            else:
                words[entry] = (dimension, points)
    return words, phrases


_WORDS, _PHRASES = _index(_VOCABULARY)


class _Signal(NamedTuple):
    """A pattern worth `points` per match, counting matches `free`+1 .. `cap` only."""

    pattern: re.Pattern[str]
    points: int
    cap: int
    free: int = 0  # leading matches worth nothing: one imperative is just the request


def _signal(pattern: str, points: int, cap: int, free: int = 0) -> _Signal:
    return _Signal(re.compile(pattern, re.MULTILINE), points, cap, free)


_CODE_EXTENSIONS = (
    "py|js|ts|tsx|jsx|go|rs|java|c|cc|cpp|h|hpp|cs|rb|php|swift|kt|scala|sql|sh|ipynb|vue"
)
_IMPERATIVES = (
    "write|create|build|add|implement|explain|list|compare|describe|design|make|generate"
    "|fix|refactor|update|analy[sz]e|summari[sz]e|translate|convert|calculate|compute|find"
    "|give|show|include|provide|use|return|ensure|check|test|deploy|set up|configure|draft"
    "|review|rewrite|outline|identify|evaluate|propose|suggest|estimate|prove|derive|discuss"
    "|justify|sketch|recommend|document|benchmark|migrate|optimi[sz]e|debug|plan"
)

# Structure the words cannot show. Every pattern starts with a literal or a small set of
# characters, so the regex engine skips ahead quickly; the text they run on starts with
# "\n" so that line starts need no `^`. Code signals read the whole lowercased text,
# the others its prose (fenced code removed).
_SIGNALS: dict[str, tuple[_Signal, ...]] = {
    "code": (
        _signal(r"\n```", 6, 4),
        _signal(r"\n(?: {4}|\t)+(?![-*•]|[0-9]{1,2}[.)])\S", 4, 5),  # indented, not a list
        _signal(r"==|!=|->|=>|::|&&|\|\||\+\+|\(\)", 2, 5),
        _signal(r"[;{}][ \t]*$", 2, 5),  # statement and block ends
        _signal(r"_(?<=[a-z0-9]_)[a-z0-9]", 2, 4),  # snake_case
        _signal(r"traceback \(most recent call last\)", 8, 3),
        _signal(r"(?:error|exception):", 8, 3),
        _signal(r"\n[ \t]+at [\w.$<>]+ ?\(", 8, 3),  # Java / JavaScript stack frames
        _signal(r"\", line [0-9]+, in ", 8, 3),  # Python stack frames
        _signal(rf"\.(?<=\w\.)(?:{_CODE_EXTENSIONS})\b", 5, 3),  # file names
    ),
    "reasoning": (
        _signal(r"\\(?:frac|sum|int|forall|exists|sqrt|mathbb|lim|prod|infty|begin|cdot)", 4, 4),
        _signal(r"[∀∃∑∫√≤≥≠∞∈∉⊂⊆⇒⇔∧\u2228¬]", 3, 4),
        # an operator between operands, spaced alike: x = 3, a+b, x^2 (not c++ or <tag>)
        _signal(r"[=<>+*^](?:(?<=[\w)].)=?[\w(]|(?<=[\w)] .)=? [\w(])", 3, 3),
        _signal(r"o\((?<!\wo\()[^)\n]{1,12}\)", 5, 2),  # O(n log n)
        _signal(r"why\b", 3, 3),  # a chain of whys
    ),
    "steps": (
        _signal(r"\n[ \t]*(?:[0-9]{1,2}[.)]|[-*•]|\(?[a-h]\))[ \t]+\S", 4, 6, free=1),  # lists
        # imperatives opening a sentence or a clause: "... trade-offs, and give a diagram"
        _signal(
            rf"[\n.!?;:,][ \t]*(?:(?:and|then|please)[ \t]+)?(?:{_IMPERATIVES})\b", 5, 6, free=1
        ),
        _signal(r"\?", 3, 5, free=1),
    ),
    "constraints": (
        _signal(
            r"[0-9][ \t]*(?:words|sentences|paragraphs|bullets|bullet points|items|characters"
            r"|lines|tokens)\b",
            5,
            3,
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class _Conversation:
    """Whole-body counts, gathered with len() and isinstance only."""

    chars: int = 0
    turns: int = 0
    system_chars: int = 0
    tools: int = 0
    tool_use: bool = False


def prompt_text(body: dict[str, Any]) -> str:
    """The text to judge: the last user turn (plus Responses `instructions`), bounded.

    Cut to MAX_TEXT_CHARS (head and tail) so the regexes' work does not grow with the
    request; a pasted document usually has the instruction at one end or the other.
    """
    if not isinstance(body, dict):
        return ""
    messages = body.get("messages")
    if isinstance(messages, list):
        text = _last_user_text(messages)
    elif "input" in body:
        text = _responses_text(body)
    else:
        prompt = body.get("prompt")
        text = "\n".join(_strings(prompt if isinstance(prompt, list) else [prompt]))
    return _bounded(text)


def _last_user_text(items: list[Any]) -> str:
    """The text of the last user item that has any (tool results in user turns have none)."""
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            text = _content_text(item.get("content"))
            if text:
                return text
    return ""


def _responses_text(body: dict[str, Any]) -> str:
    value = body.get("input")
    text = value if isinstance(value, str) else ""
    if isinstance(value, list):
        text = _last_user_text(value)
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        return f"{instructions}\n\n{text}" if text else instructions
    return text


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") in _TEXT_PARTS
            and isinstance(part.get("text"), str)
        )
    return ""


def _strings(values: Iterable[Any]) -> list[str]:
    return [value for value in values if isinstance(value, str)]


def _bounded(text: str) -> str:
    if len(text) <= MAX_TEXT_CHARS:
        return text
    half = MAX_TEXT_CHARS // 2
    return f"{text[:half]}\n\n{text[-half:]}"


def _content_chars(content: Any) -> tuple[int, bool]:
    """Characters of message content, and whether it holds tool calls or results."""
    if isinstance(content, str):
        return len(content), False
    chars, tool_use = 0, False
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                text = part.get("text", part.get("content"))  # tool_result blocks: content
                chars += len(text) if isinstance(text, str) else 0
                tool_use = tool_use or part.get("type") in _TOOL_BLOCKS
    return chars, tool_use


def _conversation(body: dict[str, Any]) -> _Conversation:
    """Counts over the whole body: the cheap half of the scoring."""
    if not isinstance(body, dict):
        return _Conversation()
    tools = body.get("tools")
    n_tools = len(tools) if isinstance(tools, list) else 0
    items = body.get("messages")
    if not isinstance(items, list):
        items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list):
        prompt = body.get("prompt")
        chars = sum(map(len, _strings(prompt if isinstance(prompt, list) else [prompt])))
        return _Conversation(chars=chars, turns=1 if chars else 0, tools=n_tools)
    system_chars = _content_chars(body.get("system"))[0]  # Anthropic's top-level system
    instructions = body.get("instructions")  # Responses
    system_chars += len(instructions) if isinstance(instructions, str) else 0
    chars, turns, tool_use = system_chars, 0, False
    for item in items:
        if not isinstance(item, dict):
            continue
        turns += 1
        size, blocks = _content_chars(item.get("content"))
        role, kind = item.get("role"), item.get("type")
        if role in _SYSTEM_ROLES:
            system_chars += size
        for key in ("arguments", "output"):  # Responses function calls and their results
            value = item.get(key)
            size += len(value) if isinstance(value, str) else 0
        calls = item.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                arguments = function.get("arguments") if isinstance(function, dict) else None
                size += len(arguments) if isinstance(arguments, str) else 0
        chars += size
        tool_use = (
            tool_use
            or blocks
            or bool(calls)
            or role in _TOOL_ROLES
            or (isinstance(kind, str) and (kind.endswith("_call") or kind.endswith("_call_output")))
        )
    if body.get("previous_response_id"):
        turns += 2  # a Responses conversation stored upstream: earlier turns we cannot see
    return _Conversation(chars, turns, system_chars, n_tools, tool_use)


def _body_constraint_points(body: dict[str, Any]) -> int:
    """Structured-output demands made in the body rather than in words."""
    text = body.get("text")
    formats = (body.get("response_format"), text.get("format") if isinstance(text, dict) else None)
    points = sum(_format_points(fmt) for fmt in formats)
    tools = body.get("tools")
    if isinstance(tools, list) and any(_strict_tool(tool) for tool in tools):
        points += 10
    choice = body.get("tool_choice")
    if isinstance(choice, dict):  # {"type": "function", ...} (OpenAI), {"type": "tool"|"any"}
        choice = choice.get("type")
    if choice not in (None, "auto", "none"):
        points += 5
    return points


def _format_points(fmt: Any) -> int:
    """Chat `response_format` or Responses `text.format`: a strict schema binds the most."""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_object", "json_schema"):
        return 0
    if fmt["type"] == "json_object":
        return 10
    schema = fmt.get("json_schema")  # chat nests the schema; Responses does not
    strict = fmt.get("strict") is True or (
        isinstance(schema, dict) and schema.get("strict") is True
    )
    return 20 if strict else 15


def _strict_tool(tool: Any) -> bool:
    if not isinstance(tool, dict):
        return False
    function = tool.get("function")  # chat nests the function; Responses does not
    return tool.get("strict") is True or (
        isinstance(function, dict) and function.get("strict") is True
    )


class ComplexityScorer:
    """Turns request bodies into Decisions; weights and thresholds are checked once, here.

    Weights and thresholds given override the defaults key by key.
    """

    def __init__(
        self,
        weights: dict[str, float] | None = None,
        thresholds: dict[str, float] | None = None,
    ):
        self.weights = _checked_weights(weights)
        self.thresholds = _checked_thresholds(thresholds)
        self._total_weight = sum(self.weights[name] for name in DIMENSIONS)

    def decide(self, body: dict[str, Any]) -> Decision:
        """The tier for a request body; never raises, whatever the body holds."""
        dimensions = _dimensions(body)
        score = sum(self.weights[name] * dimensions[name] for name in DIMENSIONS)
        score /= self._total_weight
        reasoning = dimensions["reasoning"]
        if self.weights["reasoning"] > 0 and reasoning >= REASONING_LIFT:
            floor = self.thresholds["REASONING"]
            lifted = floor + (1 - floor) * (reasoning - REASONING_LIFT) / (1 - REASONING_LIFT)
            score = max(score, lifted)
        score = round(min(score, 1.0), 3)
        return Decision(
            tier=tier_for(score, self.thresholds),
            score=score,
            strategy="complexity",
            dimensions=dimensions,
        )


def _dimensions(body: dict[str, Any]) -> dict[str, float]:
    body = body if isinstance(body, dict) else {}
    points = _text_points(prompt_text(body))
    points["constraints"] += _body_constraint_points(body)
    conversation = _conversation(body)
    scores = {name: 1 - math.exp(-points[name] / _POINTS_SCALE) for name in DIMENSIONS}
    scores["length"] = _log_scale(
        conversation.chars / _CHARS_PER_TOKEN, _LENGTH_FLOOR_TOKENS, _LENGTH_FULL_TOKENS
    )
    scores["context"] = min(
        1.0,
        0.35 * _log_scale(conversation.turns, 1, 64)
        + 0.25 * _log_scale(conversation.system_chars, 200, 20_000)
        + 0.25 * _log_scale(conversation.tools + 1, 1, 17)
        + (0.25 if conversation.tool_use else 0.0),
    )
    return {name: round(scores[name], 3) for name in DIMENSIONS}


def _text_points(text: str) -> dict[str, int]:
    """Integer points per dimension from the judged text (integers: order cannot matter)."""
    points = dict.fromkeys(DIMENSIONS, 0)
    if not text:
        return points
    low = "\n" + text.lower()
    pieces = _FENCED.split(low) if "```" in low else [low]
    prose = " ".join(pieces[0::2])
    words = prose.translate(_SEPARATORS).split()
    joined = f" {' '.join(words)} "
    present = set(words)
    for word in present & _WORDS.keys():
        dimension, worth = _WORDS[word]
        points[dimension] += worth
    for head in present & _PHRASES.keys():
        for phrase, dimension, worth in _PHRASES[head]:
            points[dimension] += worth if phrase in joined else 0
    code_words = set(" ".join(pieces[1::2]).translate(_SEPARATORS).split()) - present
    for word in code_words & _WORDS.keys():
        dimension, worth = _WORDS[word]
        points[dimension] += worth if dimension == "code" else 0
    for dimension, signals in _SIGNALS.items():
        source = low if dimension == "code" else prose
        for signal in signals:
            hits = sum(1 for _ in islice(signal.pattern.finditer(source), signal.cap))
            points[dimension] += signal.points * max(0, hits - signal.free)
    return points


def _log_scale(value: float, low: float, high: float) -> float:
    """0 at or below `low`, 1 at or above `high`, logarithmic in between."""
    if value <= low:
        return 0.0
    return min(1.0, math.log(value / low) / math.log(high / low))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _checked_weights(weights: dict[str, float] | None) -> dict[str, float]:
    checked = dict(DEFAULT_WEIGHTS)
    if weights is None:
        return checked
    if not isinstance(weights, dict):
        raise ValueError(f"weights must be a mapping of dimension -> weight, got {weights!r}")
    for key in sorted(weights, key=str):
        value = weights[key]
        if key not in checked:
            raise ValueError(
                f"weights: unknown dimension {key!r}; expected one of {', '.join(DIMENSIONS)}"
            )
        if not _is_number(value) or value < 0:
            raise ValueError(f"weights.{key}: must be a number >= 0, got {value!r}")
        checked[key] = float(value)
    if not any(checked.values()):
        raise ValueError(
            f"weights: every dimension ({', '.join(DIMENSIONS)}) is 0; give one a positive weight"
        )
    return checked


def _checked_thresholds(thresholds: dict[str, float] | None) -> dict[str, float]:
    checked = dict(DEFAULT_THRESHOLDS)
    if thresholds is not None and not isinstance(thresholds, dict):
        raise ValueError(f"thresholds must be a mapping of tier -> score, got {thresholds!r}")
    for key in sorted(thresholds or {}, key=str):
        value = thresholds[key]
        if key not in checked:
            raise ValueError(
                f"thresholds: unknown tier {key!r}; expected {', '.join(TIERS[1:])}"
                f" ({TIERS[0]} is every score below {TIERS[1]})"
            )
        if not _is_number(value) or not 0 <= value <= 1:
            raise ValueError(f"thresholds.{key}: must be a number from 0 to 1, got {value!r}")
        checked[key] = float(value)
    for lower, upper in pairwise(TIERS[1:]):
        if checked[upper] <= checked[lower]:
            raise ValueError(
                f"thresholds.{upper}: {checked[upper]} must be above {lower} ({checked[lower]});"
                f" tiers start in the order {' < '.join(TIERS[1:])}"
            )
    return checked
