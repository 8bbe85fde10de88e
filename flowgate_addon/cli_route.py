"""`flowgate route "PROMPT"`: show the routing decision for a prompt, sending nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from flowgate_addon.cli_options import config_option, load
from flowgate_addon.config import Settings
from flowgate_addon.routing import Decision
from flowgate_addon.routing.complexity import REASONING_LIFT
from flowgate_addon.routing.router import Router, build_router, scorer_for
from flowgate_addon.security.credentials import Credentials, unlock_vault
from flowgate_addon.security.vault import Vault


@click.command()
@click.argument("prompt", required=False)
@click.option(
    "--file",
    "prompt_file",
    type=click.File("r"),
    help="Read the prompt from a file ('-' for stdin), or a whole request body if it is JSON.",
)
@click.option("--system", help="A system prompt to send along.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@config_option
def route(
    prompt: str | None,
    prompt_file,
    system: str | None,
    as_json: bool,
    config_file: Path | None,
) -> None:
    """Show which tier, model and provider PROMPT would be routed to, and why.

    Nothing is sent anywhere: use it to tune smart_router thresholds and weights.
    """
    settings = load(config_file)
    body = _body(prompt, prompt_file, system)
    router = _router(settings)
    if router is None:  # routing off: show what the scorer makes of it
        scorer = scorer_for(settings.smart_router)
        decision, target = scorer.decide(body), None
        weights, thresholds = scorer.weights, scorer.thresholds
    else:
        decision = router.decide_now(body)
        target = router.target(decision)
        weights, thresholds = router.scorer.weights, router.scorer.thresholds
        if decision.strategy == "classifier":
            weights, thresholds = {}, settings.smart_router.classifier.thresholds
    if as_json:
        click.echo(
            json.dumps(
                {
                    "tier": decision.tier,
                    "score": decision.score,
                    "strategy": decision.strategy,
                    "model": target[0] if target else None,
                    "provider": target[1].name if target else None,
                    "dimensions": decision.dimensions,
                    "thresholds": thresholds,
                    "fallback": decision.fallback,
                    "routing": "on" if router else "off",
                },
                indent=2,
            )
        )
        return
    if router is None:
        click.echo(
            "Smart routing is off in this config (smart_router.enabled / strategy): requests "
            "keep their model.\nThe complexity scorer would judge this prompt as:\n"
        )
    click.echo(f"tier:       {decision.tier}")
    if target:
        model, provider, upstream = target
        sent = f", sent as {upstream}" if upstream != model else ""
        click.echo(f"model:      {model}  (provider {provider.name}{sent})")
    click.echo(f"score:      {decision.score:.3f}  (strategy {decision.strategy})")
    if decision.fallback:
        click.echo(f"fallback:   {decision.fallback}")
    click.echo("dimensions:")
    for name, value in decision.dimensions.items():
        weight = f"  weight {weights[name]:g}" if name in weights else ""
        click.echo(f"  {name:<16} {value:5.3f}  {'#' * round(value * 20):<20}{weight}")
    click.echo(f"why:        {explain(decision, weights, thresholds)}")


def explain(decision: Decision, weights: dict[str, float], thresholds: dict[str, float]) -> str:
    """One sentence: what drove the score, and where it sits between the thresholds."""
    bounds = sorted(thresholds.items(), key=lambda item: item[1])
    above = [f"{tier} starts at {value:g}" for tier, value in bounds if value > decision.score]
    reached = [f"{tier} ({value:g})" for tier, value in bounds if value <= decision.score]
    where = (f"it reaches {reached[-1]}" if reached else "it is below every threshold (SIMPLE)") + (
        f"; {above[0]}" if above else ""
    )
    if not weights:
        return f"the classifier's strong-model win rate is {decision.score:.3f}: {where}."
    drivers = sorted(
        ((weights.get(name, 0) * value, name) for name, value in decision.dimensions.items()),
        reverse=True,
    )
    strongest = ", ".join(
        f"{name} {decision.dimensions[name]:.2f}" for share, name in drivers[:3] if share > 0
    )
    total = sum(weights.get(name, 0) for name in decision.dimensions) or 1
    mean = sum(weights.get(n, 0) * v for n, v in decision.dimensions.items()) / total
    how = f"score {decision.score:.3f} is the weighted mean of the dimensions"
    if decision.score > round(mean, 3) + 0.001:  # the scorer's reasoning rule
        how = (
            f"the weighted mean is {mean:.3f}, but reasoning {decision.dimensions['reasoning']:.2f}"
            f" (at least {REASONING_LIFT}) lifts the score to {decision.score:.3f}"
        )
    return (
        how
        + (f" (strongest: {strongest})" if strongest else " (no signal found)")
        + (f": {where}.")
    )


def _body(prompt: str | None, prompt_file, system: str | None) -> dict:
    if prompt_file is not None:
        text = prompt_file.read()
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict):
            return body  # a whole request body, as an application would send it
        prompt = text
    if prompt is None:
        if sys.stdin.isatty():
            raise click.UsageError(
                'give a PROMPT, or --file FILE (for example: flowgate route "hi")'
            )
        prompt = sys.stdin.read()
    messages = [{"role": "system", "content": system}] if system else []
    return {"model": "auto", "messages": [*messages, {"role": "user", "content": prompt}]}


def _router(settings: Settings) -> Router | None:
    """The router as the running proxy would build it, or None when routing is off."""
    if not settings.smart_router.active:
        return None
    try:
        return decision_router(settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def decision_router(settings: Settings) -> Router:
    """The router as `flowgate route` asks it: the classifier loaded and waited for.

    The classifier gets FlowGate's own embeddings key (config, or a vault unlocked
    without a prompt), so its answer is the real one.
    """
    vault = Vault(settings.security.vault_path)
    locked = unlock_vault(vault, settings.security.master_key_path)
    router = build_router(settings, Credentials(vault, True, locked).key_for)
    if router.classifier is not None:
        router.classifier.wait_loaded(300)
    return router
