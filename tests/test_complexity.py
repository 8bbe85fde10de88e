"""The rule-based complexity scorer: dimensions, tiers, body shapes and config checks."""

from __future__ import annotations

from typing import Any

import pytest

from flowgate_addon.routing import Decision
from flowgate_addon.routing.complexity import (
    DEFAULT_THRESHOLDS,
    DEFAULT_WEIGHTS,
    DIMENSIONS,
    MAX_TEXT_CHARS,
    ComplexityScorer,
    prompt_text,
)

SCORER = ComplexityScorer()
PLAIN = "tell me a joke about cats"

DEBUGGING = """I'm designing a distributed job scheduler in Python.
Our scheduler.py deadlocks under load:

```python
import threading
lock_a = threading.Lock()
lock_b = threading.Lock()

def worker(job):
    with lock_a:
        with lock_b:
            job.run()

def reaper():
    with lock_b:
        with lock_a:
            cleanup()
```

1. Find the root cause of the deadlock.
2. Propose a redesign that supports exactly-once execution across 3 replicas using Raft.
3. Provide the fixed code with unit tests.

Constraints: it must stay compatible with Python 3.9, do not add dependencies, and respond
in JSON with the keys `cause`, `design` and `code`."""


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def dims(body: dict[str, Any]) -> dict[str, float]:
    return SCORER.decide(body).dimensions


def long_conversation(target_chars: int) -> dict[str, Any]:
    """Many turns of mixed prose and code, about `target_chars` characters in all."""
    prose = "Here is the next part of the service; please keep the same style as before. "
    code = "```python\ndef handler(event):\n    return {'ok': True, 'id': event['id']}\n```\n"
    turn = prose * 6 + code
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You review code. " * 50}]
    while sum(len(m["content"]) for m in messages) < target_chars:
        role = "user" if len(messages) % 2 else "assistant"
        messages.append({"role": role, "content": turn})
    messages.append({"role": "user", "content": "Now list the bugs you found."})
    return {"model": "gpt-4o", "messages": messages}


@pytest.mark.parametrize(
    ("text", "tier"),
    [
        ("hi", "SIMPLE"),
        ("what is the capital of France?", "SIMPLE"),
        ("write a python function that reverses a linked list", "MEDIUM"),
        (DEBUGGING, "COMPLEX"),
        (
            "Design a globally distributed rate limiter for 1M req/s. Discuss consistency"
            " trade-offs and failover, and give a sequence diagram and pseudo-code.",
            "COMPLEX",
        ),
        ("prove that there are infinitely many primes, step by step, formally", "REASONING"),
    ],
)
def test_obvious_examples_land_in_sensible_tiers(text, tier):
    decision = SCORER.decide(chat(text))
    assert decision.tier == tier, decision
    assert decision.strategy == "complexity" and decision.fallback is None


def test_plain_request_scores_zero_on_every_dimension():
    decision = SCORER.decide(chat(PLAIN))
    assert decision.dimensions == dict.fromkeys(DIMENSIONS, 0.0)
    assert (decision.tier, decision.score) == ("SIMPLE", 0.0)


@pytest.mark.parametrize(
    ("dimension", "text"),
    [
        ("code", "Why does this fail?\n```js\nconst x = await fetch(url);\n```"),
        ("code", 'Traceback (most recent call last):\n  File "app.py", line 3, in <module>'),
        ("code", "rename the helpers in utils.py and main.rs to snake_case names"),
        ("code", "what does this do?\n    for i in range(3):\n        print(i)\n"),
        ("reasoning", "Prove that the square root of 2 is irrational."),
        ("reasoning", r"Derive $\frac{d}{dx} x^2 = 2x$ from the definition of the derivative"),
        ("steps", "1. Read the report\n2. List the risks\n3. Draft a reply\n4. Send it to Ann"),
        ("steps", "First summarize the notes. Then translate them. Finally, write a title."),
        ("constraints", "Answer in JSON with exactly 3 items; do not add any commentary."),
        ("constraints", "Describe the city in under 50 words, as a markdown table."),
        ("domain", "Does the statute of limitations for negligence depend on jurisdiction?"),
        ("domain", "Compare Raft and Paxos consensus under network partitions and failover."),
    ],
)
def test_each_text_dimension_responds_to_its_signal(dimension, text):
    assert dims(chat(text))[dimension] >= 0.5
    assert dims(chat(PLAIN))[dimension] == 0.0


def test_length_follows_the_whole_conversation_on_a_log_scale():
    assert dims(chat("hi"))["length"] == 0.0
    sizes = [dims(long_conversation(n))["length"] for n in (4_000, 40_000, 400_000)]
    assert 0.3 < sizes[0] < sizes[1] < sizes[2] == 1.0


def test_context_counts_turns_system_prompt_tools_and_tool_results():
    assert dims(chat("hi"))["context"] == 0.0
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    body = {
        "messages": [
            {"role": "system", "content": "You are a support agent for ACME. " * 100},
            {"role": "user", "content": "Where is my order 123?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "function": {"name": "lookup", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"status": "shipped"}'},
            {"role": "assistant", "content": "It has shipped."},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [tool] * 6,
    }
    assert dims(body)["context"] >= 0.6
    without_tool_results = {**body, "messages": body["messages"][:2]}
    assert dims(without_tool_results)["context"] < dims(body)["context"]


def test_strict_schemas_in_the_body_are_constraints():
    schema = {"name": "answer", "schema": {"type": "object"}, "strict": True}
    strict = chat(PLAIN, response_format={"type": "json_schema", "json_schema": schema})
    assert dims(strict)["constraints"] >= 0.8
    assert dims(chat(PLAIN, response_format={"type": "text"}))["constraints"] == 0.0
    responses = {"input": PLAIN, "text": {"format": {"type": "json_schema", **schema}}}
    assert dims(responses)["constraints"] == dims(strict)["constraints"]
    tools = [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {}}}]
    assert dims(chat(PLAIN, tools=tools, tool_choice="required"))["constraints"] >= 0.7
    assert dims(chat(PLAIN, tool_choice="auto"))["constraints"] == 0.0


def test_code_in_fences_counts_only_as_code():
    fenced = "```\nresult = compute(x) + 1  # must return json, then stop\n```"
    scores = dims(chat(fenced))
    assert scores["code"] > 0.5
    assert scores["reasoning"] == scores["constraints"] == scores["steps"] == 0.0


def test_repeating_a_word_does_not_make_a_request_harder():
    assert (
        dims(chat("prove it"))["reasoning"]
        == dims(chat("prove it, prove prove prove"))["reasoning"]
    )


def test_same_body_gives_the_same_decision():
    body = chat(DEBUGGING)
    first = SCORER.decide(body)
    assert SCORER.decide(body) == first
    assert ComplexityScorer().decide(body) == first
    reordered = ComplexityScorer(weights=dict(reversed(DEFAULT_WEIGHTS.items())))
    assert reordered.decide(body) == first


def test_decision_carries_all_seven_dimensions_in_range():
    for body in (chat("hi"), chat(DEBUGGING), long_conversation(400_000), {}):
        decision = SCORER.decide(body)
        assert isinstance(decision, Decision)
        assert tuple(decision.dimensions) == DIMENSIONS
        for value in (*decision.dimensions.values(), decision.score):
            assert 0.0 <= value <= 1.0 and value == round(value, 3)


def test_score_is_the_weighted_mean_of_the_logged_dimensions():
    decision = SCORER.decide(chat(DEBUGGING))
    mean = sum(DEFAULT_WEIGHTS[n] * decision.dimensions[n] for n in DIMENSIONS)
    assert decision.score == round(mean / sum(DEFAULT_WEIGHTS.values()), 3)


def test_weights_change_the_outcome():
    body = chat("write a python function that reverses a linked list")
    default = SCORER.decide(body)
    no_code = ComplexityScorer(weights={"code": 0}).decide(body)
    assert no_code.score < default.score
    assert (default.tier, no_code.tier) == ("MEDIUM", "SIMPLE")
    code_only = ComplexityScorer(weights=dict.fromkeys(DIMENSIONS, 0) | {"code": 1})
    assert code_only.decide(body).score == default.dimensions["code"]


def test_strong_reasoning_lifts_the_score_unless_its_weight_is_zero():
    body = chat("prove that there are infinitely many primes, step by step, formally")
    lifted = SCORER.decide(body)
    assert lifted.tier == "REASONING" and lifted.score >= DEFAULT_THRESHOLDS["REASONING"]
    assert ComplexityScorer(weights={"reasoning": 0}).decide(body).tier == "SIMPLE"
    custom = ComplexityScorer(thresholds={"REASONING": 0.9}).decide(body)
    assert custom.tier == "REASONING" and custom.score >= 0.9


def test_thresholds_set_the_tier_boundaries():
    body = chat("write a python function that reverses a linked list")
    assert ComplexityScorer(thresholds={"MEDIUM": 0.5, "COMPLEX": 0.6}).decide(body).tier == (
        "SIMPLE"
    )
    assert ComplexityScorer(thresholds={"MEDIUM": 0.01, "COMPLEX": 0.05}).decide(body).tier == (
        "COMPLEX"
    )


def test_partial_config_keeps_the_other_defaults():
    scorer = ComplexityScorer(weights={"code": 3}, thresholds={"COMPLEX": 0.4})
    assert scorer.weights == DEFAULT_WEIGHTS | {"code": 3.0}
    assert scorer.thresholds == DEFAULT_THRESHOLDS | {"COMPLEX": 0.4}


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"cod": 1}, r"weights: unknown dimension 'cod'; expected one of length, code"),
        ({"code": -1}, r"weights\.code: must be a number >= 0, got -1"),
        ({"domain": "high"}, r"weights\.domain: must be a number >= 0, got 'high'"),
        ({"steps": True}, r"weights\.steps: must be a number >= 0, got True"),
        ({"length": float("nan")}, r"weights\.length: must be a number >= 0"),
        (dict.fromkeys(DIMENSIONS, 0), r"weights: every dimension .* is 0"),
        (["code"], r"weights must be a mapping"),
    ],
)
def test_bad_weights_are_refused_by_name(weights, message):
    with pytest.raises(ValueError, match=message):
        ComplexityScorer(weights=weights)


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        (
            {"SIMPLE": 0.1},
            r"thresholds: unknown tier 'SIMPLE'; expected MEDIUM, COMPLEX, REASONING",
        ),
        ({"HARD": 0.5}, r"thresholds: unknown tier 'HARD'"),
        ({"REASONING": 1.5}, r"thresholds\.REASONING: must be a number from 0 to 1, got 1\.5"),
        ({"MEDIUM": -0.1}, r"thresholds\.MEDIUM: must be a number from 0 to 1"),
        ({"MEDIUM": "low"}, r"thresholds\.MEDIUM: must be a number from 0 to 1, got 'low'"),
        ({"MEDIUM": 0.5}, r"thresholds\.COMPLEX: 0\.3 must be above MEDIUM \(0\.5\)"),
        ({"COMPLEX": 0.7}, r"thresholds\.REASONING: 0\.7 must be above COMPLEX \(0\.7\)"),
        ({"MEDIUM": 0.2, "COMPLEX": 0.2}, r"thresholds\.COMPLEX: 0\.2 must be above MEDIUM"),
        ("high", r"thresholds must be a mapping"),
    ],
)
def test_bad_thresholds_are_refused_by_name(thresholds, message):
    with pytest.raises(ValueError, match=message):
        ComplexityScorer(thresholds=thresholds)


def test_threshold_edges_are_allowed():
    scorer = ComplexityScorer(thresholds={"MEDIUM": 0, "COMPLEX": 0.5, "REASONING": 1})
    assert scorer.decide(chat("hi")).tier == "MEDIUM"


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "hi",
        {},
        {"messages": None},
        {"messages": "hi"},
        {"messages": [None, 3, "x", {"role": ["user"], "content": [{"type": ["text"]}]}]},
        {"messages": [{"role": "user", "content": None}]},
        {"messages": [{"role": "user", "content": [None, {"type": "text", "text": None}, 5]}]},
        {"messages": [{"role": "user", "content": {"text": "hi"}}]},
        {"messages": [{"role": "assistant", "tool_calls": [None, {"function": "x"}]}]},
        {"input": {"role": "user"}},
        {"input": [None, {"type": 5}, {"role": "user", "content": 7}]},
        {"prompt": [1, 2, 3]},
        {"prompt": None, "instructions": 5},
        {"tools": "all", "tool_choice": ["x"], "response_format": "json", "text": "plain"},
        {"response_format": {"type": "json_schema", "json_schema": "x"}, "tools": [None, 1]},
    ],
)
def test_odd_bodies_do_not_raise(body):
    decision = SCORER.decide(body)
    assert tuple(decision.dimensions) == DIMENSIONS
    assert decision.tier in ("SIMPLE", "MEDIUM")


def test_prompt_text_is_the_last_user_turn():
    body = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "answer"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look at"},
                    {"type": "image_url", "image_url": {"url": "data:..."}},
                    {"type": "text", "text": "this picture"},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "tool", "content": "tool output"},
        ]
    }
    assert prompt_text(body) == "look at\nthis picture"


def test_prompt_text_skips_user_turns_that_only_carry_tool_results():
    body = {
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "check the weather"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "content": "sunny"}]},
        ],
    }
    assert prompt_text(body) == "check the weather"
    assert dims(body)["context"] > 0


def test_responses_bodies():
    assert prompt_text({"input": "hello there"}) == "hello there"
    body = {
        "instructions": "Answer in JSON.",
        "input": [
            {"role": "user", "content": "old question"},
            {"type": "function_call", "name": "f", "arguments": '{"a": 1}', "call_id": "c"},
            {"type": "function_call_output", "call_id": "c", "output": "42"},
            {"role": "user", "content": [{"type": "input_text", "text": "and now?"}]},
        ],
    }
    assert prompt_text(body) == "Answer in JSON.\n\nand now?"
    scores = dims(body)
    assert scores["constraints"] > 0 and scores["context"] > 0
    assert dims({"input": "prove that there are infinitely many primes"})["reasoning"] > 0.6


def test_completions_bodies():
    assert prompt_text({"prompt": "Once upon a time"}) == "Once upon a time"
    assert prompt_text({"prompt": ["def f(x):", "    return x"]}) == "def f(x):\n    return x"
    assert prompt_text({"prompt": [1, 2, 3]}) == ""
    assert dims({"prompt": "```python\nprint(1)\n```"})["code"] > 0.5


def test_prompt_text_is_bounded_head_and_tail():
    text = "START " + "filler text " * 40_000 + " END"
    cut = prompt_text(chat(text))
    assert len(cut) <= MAX_TEXT_CHARS + 2
    assert cut.startswith("START ") and cut.endswith(" END")


def test_a_100k_token_conversation_is_handled():
    body = long_conversation(400_000)
    assert len(body["messages"]) > 100
    decision = SCORER.decide(body)
    assert decision.dimensions["length"] == 1.0
    assert decision.dimensions["context"] > 0.3
    assert decision.tier in ("MEDIUM", "COMPLEX")
    assert prompt_text(body) == "Now list the bugs you found."
