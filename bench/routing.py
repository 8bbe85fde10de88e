"""What smart routing costs: the scorer's time per decision, and gateway throughput on vs off.

Times ComplexityScorer.decide in-process on short prompts and on ~10K- and ~100K-token
conversations (many turns, mixed prose and code). Then runs wrk against a bare mitmdump,
FlowGate with routing off (model gpt-4o-mini) and FlowGate with complexity routing on
(model auto), all in front of the same nginx upstream, interleaved, medians shown.
Prints markdown tables, one per section; run it before and after touching the scorer.
Needs nginx and wrk for the gateway section (apt-get install -y nginx wrk).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from flowgate_addon.routing.complexity import MAX_TEXT_CHARS, ComplexityScorer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as gw

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


ROUTING_CONFIG = """smart_router:
  enabled: true
  strategy: complexity
  tiers: {SIMPLE: gpt-4o-mini, MEDIUM: gpt-4o, COMPLEX: gpt-4.1, REASONING: o3}
"""


def wrk_script(workdir: Path, model: str) -> Path:
    """A wrk POST script for one small chat-completions request for MODEL."""
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Say hello"}]},
        separators=(",", ":"),
    )
    lines = ['wrk.method = "POST"', f"wrk.body = '{body}'"]
    lines += [f'wrk.headers["{key}"] = "{value}"' for key, value in gw.HEADERS.items()]
    path = workdir / f"post-{model}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def gateway_table(args: argparse.Namespace) -> None:
    """req/s and p50 through bare mitmdump, FlowGate routing off, FlowGate routing on."""
    tools = gw.find_tools()
    with ExitStack() as stack:
        workdir = stack.enter_context(gw.work_directory(False))
        upstream = stack.enter_context(gw.running(gw.start_nginx(tools.nginx, workdir)))
        providers = f'providers:\n  openai:\n    base_url: "http://{gw.HOST}:{upstream.port}/v1"\n'
        plain, auto = wrk_script(workdir, "gpt-4o-mini"), wrk_script(workdir, "auto")

        def start(name: str, config: str) -> gw.Service:
            service = gw.start_flowgate_with(tools.flowgate, workdir, name, config)
            return stack.enter_context(gw.running(service))

        bare = gw.start_mitmdump(tools, workdir, upstream.port)
        targets = {
            "mitmdump": (stack.enter_context(gw.running(bare)), plain),
            "routing off": (start("routing-off", providers), plain),
            "routing on": (start("routing-on", providers + ROUTING_CONFIG), auto),
        }

        def measure(name: str, connections: int, seconds: float) -> gw.WrkResult:
            service, script = targets[name]
            return gw.parse_wrk(gw.run_wrk(tools, service.url, connections, seconds, script))

        medians = gw.interleaved(targets, measure, args)
    print(
        f"\n## Gateway with routing on vs off (median of {args.repeats} runs x "
        f"{args.duration:g} s, nginx upstream, wrk)\n"
    )
    print("| path | connections | req/s | p50 ms | p99 ms | req/s vs routing off | p50 added |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for conns in args.connections:
        off = medians[("routing off", conns)]
        for name in targets:
            run = medians[(name, conns)]
            print(
                f"| {name} | {conns} | {run.rps:,.0f} | {run.p50_ms:.3f} | {run.p99_ms:.3f} "
                f"| {gw.ratio(run.rps, off.rps)} | {run.p50_ms - off.p50_ms:+.3f} ms |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="timed decisions per input (2000)")
    parser.add_argument("--warmup-runs", type=int, default=200, help="untimed decisions (200)")
    parser.add_argument("--skip-gateway", action="store_true", help="only time the scorer")
    gw.add_run_options(parser)
    args = parser.parse_args()
    gw.check_run_options(parser, args)
    scorer_table(args.runs, args.warmup_runs)
    if not args.skip_gateway:
        gateway_table(args)


if __name__ == "__main__":
    main()
