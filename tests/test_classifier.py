"""The classifier strategy: real RouteLLM routers from checkpoints the tests write.

Needs the `classifier` extra (RouteLLM, torch). The mf router's prompt
embeddings come from fake_embeddings' server; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from fake_embeddings import FakeEmbeddings, embed
from routellm_checkpoint import expected_win_rate, write_bert_checkpoint, write_mf_checkpoint

from flowgate_addon.routing import Decision, tier_for
from flowgate_addon.routing import classifier as classifier_module
from flowgate_addon.routing.classifier import (
    DEFAULT_THRESHOLDS,
    MAX_PENDING,
    NOT_INSTALLED,
    Classifier,
    validate,
)

# RouteLLM's prompt_format.py uses pydantic v1-style validators.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:routellm")

THRESHOLDS = {"MEDIUM": 0.3, "COMPLEX": 0.55, "REASONING": 0.8}
KEY = "sk-test-embeddings-0123456789abcdef"
EMBEDDING_MODEL = "fake-embedding-small"
SHORT = "hi"
LONG = (
    "Prove that every continuous function on a closed interval is uniformly continuous, "
    "then derive a bound on the modulus of continuity and explain each step of the proof."
)
LOAD_SECONDS = 120  # the first load imports torch, transformers and datasets

# Addresses this process connects to while `recording` is on (see the `mf` fixture).
_connects: list[object] = []
_recording = False


def _audit(event: str, args: tuple) -> None:
    if _recording and event == "socket.connect":
        _connects.append(args[1])


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def embeddings() -> Iterator[FakeEmbeddings]:
    fake = FakeEmbeddings().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def mf_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mf_checkpoint(tmp_path_factory.mktemp("routellm") / "mf")


def mf_classifier(checkpoint: Path, base_url: str, timeout_ms: int = 5000, **kwargs) -> Classifier:
    options = {"embeddings_api_key": KEY, "embedding_model": EMBEDDING_MODEL, **kwargs}
    classifier = Classifier("mf", checkpoint, THRESHOLDS, timeout_ms, base_url, **options)
    classifier.start()
    assert classifier.wait_loaded(LOAD_SECONDS), classifier.error
    return classifier


@pytest.fixture(scope="module")
def mf(mf_checkpoint: Path, embeddings: FakeEmbeddings) -> Iterator[Classifier]:
    """The mf router, loaded and asked once while every socket connect is recorded."""
    global _recording
    _connects.clear()
    _recording = True
    try:
        classifier = mf_classifier(mf_checkpoint, embeddings.base_url)
        assert isinstance(classifier.decide_sync("warm up"), Decision)
    finally:
        _recording = False
    yield classifier
    classifier.close()


def run(coro):
    return asyncio.run(coro)


# -- the mf router -----------------------------------------------------------


def test_mf_scores_with_the_configured_embeddings(mf: Classifier, embeddings: FakeEmbeddings):
    before = len(embeddings.received)
    short, long = run(mf.decide(SHORT)), run(mf.decide(LONG))
    for prompt, decision in ((SHORT, short), (LONG, long)):
        assert isinstance(decision, Decision), decision
        assert decision.strategy == "classifier"
        assert decision.fallback is None
        assert 0.0 <= decision.score <= 1.0
        assert decision.dimensions == {"strong_win_rate": decision.score}
        # The checkpoint's win rate, computed from the fake server's vector by hand.
        assert decision.score == pytest.approx(expected_win_rate(embed(prompt)), rel=1e-5)
        assert decision.tier == tier_for(decision.score, THRESHOLDS)
    assert (short.tier, long.tier) == ("SIMPLE", "REASONING")

    asked = embeddings.received[before:]
    assert [item.path for item in asked] == ["/v1/embeddings"] * 2
    assert {item.headers["authorization"] for item in asked} == {f"Bearer {KEY}"}
    assert [item.body["input"] for item in asked] == [[SHORT], [LONG]]
    assert {item.body["model"] for item in asked} == {EMBEDDING_MODEL}


def test_mf_same_prompt_same_score_sync_and_async(mf: Classifier):
    first = run(mf.decide(LONG))
    again = run(mf.decide(LONG))
    blocking = mf.decide_sync(LONG)
    assert isinstance(first, Decision)
    assert first == again == blocking


def test_loading_and_asking_connect_only_to_the_embeddings_server(
    mf: Classifier, embeddings: FakeEmbeddings
):
    assert _connects, "the audit hook saw no connection at all"
    assert {tuple(address) for address in _connects} == {("127.0.0.1", embeddings.port)}


def test_two_classifiers_keep_their_own_embeddings_clients(
    mf: Classifier, mf_checkpoint: Path, embeddings: FakeEmbeddings
):
    other = FakeEmbeddings().start()
    second = mf_classifier(
        mf_checkpoint, other.base_url, embeddings_api_key="sk-other-key-abcdefghijklmnop"
    )
    try:
        before = len(embeddings.received)
        assert isinstance(run(second.decide(SHORT)), Decision)
        assert isinstance(run(mf.decide(SHORT)), Decision)
        assert [r.headers["authorization"] for r in other.received] == [
            "Bearer sk-other-key-abcdefghijklmnop"
        ]
        assert [r.headers["authorization"] for r in embeddings.received[before:]] == [
            f"Bearer {KEY}"
        ]
    finally:
        second.close()
        other.stop()
    # RouteLLM's client is not left holding a key in the environment.
    assert os.environ.get("OPENAI_API_KEY") != classifier_module.IMPORT_PLACEHOLDER_KEY


def test_the_event_loop_keeps_running_while_the_router_works(mf_checkpoint: Path):
    slow = FakeEmbeddings(delay=0.3).start()
    classifier = mf_classifier(mf_checkpoint, slow.base_url)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def main() -> Decision | str:
        task = asyncio.create_task(ticker())
        try:
            return await classifier.decide(SHORT)
        finally:
            task.cancel()

    try:
        assert isinstance(run(main()), Decision)
        assert ticks >= 10  # ~30 while the embeddings call waited 0.3 s
    finally:
        classifier.close()
        slow.stop()


# -- other routers -------------------------------------------------------------


def test_random_router():
    classifier = Classifier("random", None, THRESHOLDS, 1000)
    classifier.start()
    try:
        assert classifier.wait_loaded(LOAD_SECONDS), classifier.error
        scores = set()
        for _ in range(5):
            decision = run(classifier.decide("anything at all"))
            assert isinstance(decision, Decision)
            assert 0.0 <= decision.score <= 1.0
            assert decision.tier == tier_for(decision.score, THRESHOLDS)
            scores.add(decision.score)
        assert len(scores) > 1
    finally:
        classifier.close()


def test_bert_router_from_a_local_checkpoint(tmp_path: Path):
    checkpoint = write_bert_checkpoint(tmp_path / "bert")
    classifier = Classifier("bert", checkpoint, THRESHOLDS, 5000)
    classifier.start()
    try:
        assert classifier.wait_loaded(LOAD_SECONDS), classifier.error
        easy, hard = run(classifier.decide("hi")), run(classifier.decide("prove the theorem"))
        assert isinstance(easy, Decision) and isinstance(hard, Decision)
        assert 0.0 <= easy.score <= 1.0 and 0.0 <= hard.score <= 1.0
        assert easy.score != hard.score
        assert classifier.decide_sync("hi") == easy
    finally:
        classifier.close()


# -- fallbacks ---------------------------------------------------------------

NO_EXTRA = textwrap.dedent(
    """
    import json, sys
    if sys.argv[1] == "blocked":
        sys.modules["routellm"] = None  # Python's own way to make an import fail
    from flowgate_addon.routing.classifier import Classifier
    heavy = ("torch", "routellm", "transformers", "datasets")
    imported = [name for name in heavy if sys.modules.get(name)]
    classifier = Classifier("random", None, {}, 1000)
    classifier.start()
    loaded = classifier.wait_loaded(60)
    print(json.dumps({
        "imported_by_flowgate": imported,
        "loaded": loaded,
        "result": classifier.decide_sync("hello"),
        "torch_after": "torch" in sys.modules,
    }))
    """
)


def test_without_the_extra_decide_says_how_to_install_it(tmp_path: Path):
    # A routellm package that cannot be imported, first on the path.
    shadow = tmp_path / "shadow"
    (shadow / "routellm").mkdir(parents=True)
    (shadow / "routellm" / "__init__.py").write_text(
        "raise ImportError('routellm needs torch, which is not installed here')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(shadow)}
    runs = {
        mode: subprocess.Popen(
            [sys.executable, "-c", NO_EXTRA, mode],
            env=env if mode == "shadowed" else dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in ("blocked", "shadowed")
    }
    results = {}
    for mode, process in runs.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results[mode] = json.loads(out.strip().splitlines()[-1])
    for result in results.values():
        assert result["imported_by_flowgate"] == []
        assert result["loaded"] is False
        assert result["torch_after"] is False
    assert results["blocked"]["result"] == NOT_INSTALLED
    shadowed = results["shadowed"]["result"]
    assert shadowed.startswith("RouteLLM cannot be imported (ImportError: routellm needs torch")
    assert shadowed.endswith("pip install -e '.[classifier]' in FlowGate's folder")


def test_router_raising_is_a_reason_without_the_key(mf_checkpoint: Path):
    failing = FakeEmbeddings(status=401, error_message=f"Incorrect API key provided: {KEY}")
    failing.start()
    classifier = mf_classifier(mf_checkpoint, failing.base_url)
    try:
        result = run(classifier.decide(SHORT))
        assert isinstance(result, str)
        assert result.startswith("classifier raised AuthenticationError: Error code: 401")
        assert KEY not in result and KEY[:12] not in result
        failing.status = 500
        result = classifier.decide_sync(SHORT)
        assert result.startswith("classifier raised InternalServerError: Error code: 500")
        assert len(result) <= 250
        failing.status = 200
        assert isinstance(classifier.decide_sync(SHORT), Decision)  # and it recovers
    finally:
        classifier.close()
        failing.stop()


def test_unreachable_embeddings_server(mf_checkpoint: Path):
    classifier = mf_classifier(mf_checkpoint, f"http://127.0.0.1:{free_port()}/v1")
    try:
        assert (
            run(classifier.decide(SHORT))
            == "classifier raised APIConnectionError: Connection error."
        )
    finally:
        classifier.close()


def test_timeout_then_busy_then_recovers(mf_checkpoint: Path):
    slow = FakeEmbeddings(delay=5).start()
    classifier = mf_classifier(mf_checkpoint, slow.base_url, timeout_ms=200)
    try:

        async def burst() -> list[Decision | str]:
            return await asyncio.gather(*(classifier.decide(SHORT) for _ in range(MAX_PENDING + 2)))

        results = run(burst())
        # One question runs; the rest wait behind it, up to the bound; all give up at 200 ms.
        assert results.count("classifier took longer than 200 ms") == MAX_PENDING
        assert results.count("classifier is busy") == 2
        assert len(slow.received) == 1  # the queued questions were cancelled, never asked
        # The timed-out call still holds the worker thread: no new work is queued.
        assert classifier.decide_sync(SHORT) == "classifier is busy"
        assert run(classifier.decide(SHORT)) == "classifier is busy"
        assert len(slow.received) == 1
        # The stuck embeddings call gives up at 200 ms + 1 s; then the router answers again.
        slow.delay = 0
        deadline = time.monotonic() + 5
        result = classifier.decide_sync(SHORT)
        while result == "classifier is busy" and time.monotonic() < deadline:
            time.sleep(0.05)
            result = classifier.decide_sync(SHORT)
        assert isinstance(result, Decision), result
    finally:
        classifier.close()
        slow.stop()


def test_load_failures_are_reasons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    classifier = Classifier("mf", empty, THRESHOLDS, 1000, "http://127.0.0.1:9/v1", KEY)
    classifier.start()
    assert classifier.wait_loaded(LOAD_SECONDS) is False
    result = run(classifier.decide(SHORT))
    assert result == classifier.error
    assert result.startswith("classifier could not load: ")
    classifier.close()

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    keyless = Classifier("mf", empty, THRESHOLDS, 1000)  # api.openai.com, no key anywhere
    keyless.start()
    assert keyless.wait_loaded(LOAD_SECONDS) is False
    assert keyless.decide_sync(SHORT) == (
        "classifier could not load: LookupError: the mf router embeds prompts and needs an "
        "API key: none is configured and OPENAI_API_KEY is not set"
    )
    keyless.close()


def test_lifecycle_reasons():
    classifier = Classifier("random", None, THRESHOLDS, 1000)
    assert classifier.decide_sync("x") == "classifier was not started"
    # Hold the import lock so that loading cannot finish yet.
    with classifier_module._import_lock:
        classifier.start()
        classifier.start()  # a second start is a no-op
        assert run(classifier.decide("x")) == "classifier is still loading"
        assert classifier.wait_loaded(0.05) is False
    assert classifier.wait_loaded(LOAD_SECONDS)
    assert classifier.decide_sync("   ") == "there is no prompt text to classify"
    assert isinstance(classifier.decide_sync("x"), Decision)
    classifier.close()
    classifier.close()
    assert run(classifier.decide("x")) == "classifier is closed"
    assert classifier.decide_sync("x") == "classifier is closed"


# -- validation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("router", "checkpoint", "thresholds", "message"),
    [
        ("knn", None, THRESHOLDS, "smart_router.classifier.router: unknown router 'knn'"),
        ("causal_llm", None, THRESHOLDS, "choose one of mf, bert, random"),
        ("mf", None, THRESHOLDS, "smart_router.classifier.checkpoint: the mf router needs"),
        ("bert", "MISSING", THRESHOLDS, "smart_router.classifier.checkpoint: "),
        ("mf", "FILE", THRESHOLDS, "is not a folder"),
        (
            "random",
            None,
            {"MEDIUM": 0.6, "COMPLEX": 0.5, "REASONING": 0.8},
            "smart_router.classifier.thresholds: must increase from MEDIUM to COMPLEX",
        ),
        ("random", None, {"REASONING": 1.5}, "smart_router.classifier.thresholds.REASONING: 1.5"),
        ("random", None, {"MEDIUM": True}, "smart_router.classifier.thresholds.MEDIUM: must be"),
        ("random", None, {"MEDIUM": float("nan")}, "thresholds.MEDIUM: nan is outside 0..1"),
        ("random", None, {"SIMPLE": 0.1}, "smart_router.classifier.thresholds: unknown tier"),
    ],
)
def test_validation_names_the_setting(tmp_path, router, checkpoint, thresholds, message):
    if checkpoint == "MISSING":
        checkpoint = tmp_path / "nowhere"
        message += f"{checkpoint} does not exist"
    elif checkpoint == "FILE":
        checkpoint = tmp_path / "weights.bin"
        checkpoint.write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        validate(router, checkpoint, thresholds)
    assert str(raised.value).startswith("smart_router.classifier.")
    with pytest.raises(ValueError, match=re.escape(message)):
        Classifier(router, checkpoint, thresholds, 1000)


def test_validation_fills_in_default_thresholds_and_checks_the_rest(tmp_path: Path):
    assert validate("random", None, {}) == DEFAULT_THRESHOLDS
    assert validate("bert", tmp_path, {"REASONING": 0.9}) == {
        **DEFAULT_THRESHOLDS,
        "REASONING": 0.9,
    }
    with pytest.raises(ValueError, match=r"^smart_router\.classifier\.timeout_ms: "):
        Classifier("random", None, THRESHOLDS, 0)
    with pytest.raises(ValueError, match="embeddings base URL"):
        Classifier("random", None, THRESHOLDS, 100, embeddings_base_url="localhost:8080")
