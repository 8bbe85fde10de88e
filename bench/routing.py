"""Microseconds smart routing spends per request: the complexity scorer's time per decision.

Times ComplexityScorer.decide in-process on short prompts and on ~10K- and ~100K-token
conversations (many turns, mixed prose and code). Prints markdown tables, one per
section; run it before and after touching the scorer.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Any

from flowgate_addon.routing.complexity import MAX_TEXT_CHARS, ComplexityScorer

SHORT_PROMPTS = {
    "one-liner: hi": "hi",
    "one-liner: capital of France": "what is the capital of France?",
    "code question": "write a python function that reverses a linked list",
    "reasoning question": "prove that there are infinitely many primes, step by step, formally",
}

PROSE = (
    "We moved the billing service to the new queue last week; latency looks fine but the "
    "retry logic still double-charges some customers when the worker restarts. "
)
CODE = (
    "```python\n"
    "def charge(customer_id: str, amount: int) -> None:\n"
    "    if ledger.seen(customer_id, amount):\n"
    "        return\n"
    "    gateway.charge(customer_id, amount)\n"
    "    ledger.record(customer_id, amount)\n"
    "```\n"
)


def chat(text: str) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}


def conversation(tokens: int) -> dict[str, Any]:
    """A chat of alternating turns, mixed prose and code, of about `tokens` tokens (chars/4)."""
    turn = PROSE * 8 + CODE
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a careful reviewer of payment code. " * 20}
    ]
    chars = len(messages[0]["content"])
    while chars < tokens * 4:
        role = "user" if len(messages) % 2 else "assistant"
        messages.append({"role": role, "content": turn})
        chars += len(turn)
    # A last turn longer than MAX_TEXT_CHARS, so the scorer's text work is at its bound.
    question = "Find the bug, fix it, and add a test."
    messages.append(
        {"role": "user", "content": turn * (MAX_TEXT_CHARS // len(turn) + 2) + question}
    )
    return {"model": "gpt-4o", "messages": messages}


def body_chars(body: dict[str, Any]) -> int:
    return sum(len(m["content"]) for m in body["messages"])


def time_decisions(scorer: ComplexityScorer, body: dict[str, Any], runs: int, warmup: int):
    """(median µs, p99 µs, decision) over `runs` timed calls after `warmup` untimed ones."""
    for _ in range(warmup):
        scorer.decide(body)
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        decision = scorer.decide(body)
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    return statistics.median(samples) / 1e3, p99 / 1e3, decision


def scorer_table(runs: int, warmup: int) -> None:
    """µs per decision for short prompts and for 10K- and 100K-token conversations."""
    scorer = ComplexityScorer()
    cases = [(name, chat(text)) for name, text in SHORT_PROMPTS.items()]
    cases += [
        ("conversation ~10K tokens", conversation(10_000)),
        ("conversation ~100K tokens", conversation(100_000)),
    ]
    print(
        f"\n## Complexity scorer: µs per decision (median and p99 of {runs:,} runs after"
        f" {warmup:,} warm-up, Python {platform.python_version()})\n"
    )
    print("| input | turns | chars | tier | score | median µs | p99 µs |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for name, body in cases:
        median, p99, decision = time_decisions(scorer, body, runs, warmup)
        print(
            f"| {name} | {len(body['messages'])} | {body_chars(body):,} | {decision.tier}"
            f" | {decision.score:.3f} | {median:.1f} | {p99:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="timed decisions per input (2000)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed decisions first (200)")
    args = parser.parse_args()
    scorer_table(args.runs, args.warmup)


if __name__ == "__main__":
    main()
