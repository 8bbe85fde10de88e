"""The `classifier` strategy: a RouteLLM router gives the strong model's win rate.

RouteLLM (the `classifier` extra) brings torch, transformers and datasets, so
nothing here imports it at module level: `Classifier.start()` imports it and
builds the router on the classifier's own worker thread, and FlowGate starts
as fast without the extra as with it. Every question to the router runs on that
same single thread; the event loop only awaits a wrapped future with a time
limit. Whatever goes wrong (the extra missing, a checkpoint that does not load,
the router raising, a slow answer, a backlog), `decide` returns a short reason
instead of a `Decision`, and the caller falls back to the rule-based scorer.

Routers: `random` (no weights), `mf` and `bert` (a local checkpoint folder;
nothing is downloaded). `mf` embeds each prompt through RouteLLM's module-level
OpenAI client, `OPENAI_CLIENT`; FlowGate puts a switch in its place that hands
each classifier's worker thread the client that classifier made, with the
configured base URL, key and embedding model, so two classifiers never share
one and no key has to sit in the process environment.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flowgate_addon.routing import TIERS, Decision, tier_for
from flowgate_addon.security.redact import Redactor

log = logging.getLogger("flowgate.classifier")

SETTING = "smart_router.classifier"
ROUTERS = ("mf", "bert", "random")
CHECKPOINT_ROUTERS = frozenset({"mf", "bert"})
DEFAULT_THRESHOLDS: dict[str, float] = {"MEDIUM": 0.3, "COMPLEX": 0.55, "REASONING": 0.8}
# FlowGate is installed from its folder (see the README), so is its extra.
INSTALL_HINT = "pip install -e '.[classifier]' in FlowGate's folder"
NOT_INSTALLED = f"RouteLLM is not installed ({INSTALL_HINT})"
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"

# Questions waiting for or running on the worker thread; past this, "busy".
MAX_PENDING = 8
# The embedding models RouteLLM's mf router expects take ~8k tokens; the end of
# the text (the latest turn) is what matters most for routing.
MAX_PROMPT_CHARS = 16_000
# An embeddings call may outlive the caller's time limit by this much, so a hung
# server holds the worker thread (and makes the classifier "busy") only briefly.
HTTP_GRACE_SECONDS = 1.0
MAX_REASON_CHARS = 200

# Set (unless the user set them) before RouteLLM's imports: checkpoints are local
# folders and nothing may be fetched from the Hugging Face Hub at run time.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
# RouteLLM creates `OpenAI()` when imported, which fails without a key; this one
# is in the environment only for that import, and only if none was set.
IMPORT_PLACEHOLDER_KEY = "flowgate-placeholder-not-a-key"
# Modules of RouteLLM that hold a reference to its module-level OpenAI client.
CLIENT_MODULES = (
    "routellm.routers.similarity_weighted.utils",
    "routellm.routers.matrix_factorization.model",
    "routellm.routers.routers",
)
# mf checkpoint config.json key -> MatrixFactorizationRouter argument. The
# router passes its own defaults (RouteLLM's released checkpoint) explicitly,
# which would override the folder's config.json, so FlowGate reads it.
MF_CONFIG_ARGS = {
    "dim": "hidden_size",
    "num_models": "num_models",
    "text_dim": "text_dim",
    "num_classes": "num_classes",
    "use_proj": "use_proj",
}

_NEW, _LOADING, _READY, _FAILED, _CLOSED = "new", "loading", "ready", "failed", "closed"
_STATE_REASONS = {
    _NEW: "classifier was not started",
    _LOADING: "classifier is still loading",
    _CLOSED: "classifier is closed",
}

_import_lock = threading.Lock()
_bound = threading.local()  # .client: the embeddings client of this worker thread's classifier


def validate(
    router: str, checkpoint: Path | str | None, thresholds: Mapping[str, float] | None
) -> dict[str, float]:
    """Check the classifier settings; the thresholds with defaults for any not given.

    Raises ValueError with a message that names the setting.
    """
    if router not in ROUTERS:
        raise ValueError(
            f"{SETTING}.router: unknown router {router!r}; choose one of {', '.join(ROUTERS)}"
        )
    if router in CHECKPOINT_ROUTERS:
        if checkpoint is None or str(checkpoint).strip() == "":
            raise ValueError(
                f"{SETTING}.checkpoint: the {router} router needs a local checkpoint folder "
                "(RouteLLM's weights saved to disk; nothing is downloaded)"
            )
        path = Path(checkpoint).expanduser()
        if not path.exists():
            raise ValueError(f"{SETTING}.checkpoint: {path} does not exist")
        if not path.is_dir():
            raise ValueError(f"{SETTING}.checkpoint: {path} is not a folder")
    return _thresholds(thresholds)


def _thresholds(thresholds: Mapping[str, float] | None) -> dict[str, float]:
    key = f"{SETTING}.thresholds"
    if thresholds is None:
        thresholds = {}
    if not isinstance(thresholds, Mapping):
        raise ValueError(f"{key}: must map MEDIUM, COMPLEX and REASONING to numbers")
    unknown = sorted(str(name) for name in thresholds if name not in TIERS[1:])
    if unknown:
        raise ValueError(
            f"{key}: unknown tier {', '.join(unknown)}; thresholds are for "
            f"{', '.join(TIERS[1:])} (SIMPLE is everything below MEDIUM)"
        )
    merged: dict[str, float] = {}
    for name in TIERS[1:]:
        value = thresholds.get(name, DEFAULT_THRESHOLDS[name])
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key}.{name}: must be a number between 0 and 1, not {value!r}")
        if not 0.0 <= value <= 1.0:  # also false for NaN
            raise ValueError(f"{key}.{name}: {value} is outside 0..1 (a strong-model win rate)")
        merged[name] = float(value)
    values = [merged[name] for name in TIERS[1:]]
    if not values[0] < values[1] < values[2]:
        shown = ", ".join(f"{name}={merged[name]}" for name in TIERS[1:])
        raise ValueError(f"{key}: must increase from MEDIUM to COMPLEX to REASONING ({shown})")
    return merged


class Classifier:
    """A RouteLLM router, loaded in the background and asked off the event loop.

    It never fails a request: where it has no answer, `decide` says why instead.
    """

    def __init__(
        self,
        router: str,
        checkpoint: Path | None,
        thresholds: dict[str, float],
        timeout_ms: int,
        embeddings_base_url: str | None = None,
        embeddings_api_key: str | None = None,
        embedding_model: str = "text-embedding-3-small",
    ):
        self.thresholds = validate(router, checkpoint, thresholds)
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 1:
            raise ValueError(f"{SETTING}.timeout_ms: must be a whole number of ms, at least 1")
        if not isinstance(embedding_model, str) or not embedding_model.strip():
            raise ValueError(f"{SETTING}.embedding_model: must name an embedding model")
        if embeddings_base_url is not None and not embeddings_base_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError(f"{SETTING}: the embeddings base URL must be an http(s):// URL")
        self.router = router
        self.checkpoint = Path(checkpoint).expanduser() if checkpoint is not None else None
        self.timeout_ms = timeout_ms
        self.embeddings_base_url = embeddings_base_url.rstrip("/") if embeddings_base_url else None
        self.embedding_model = embedding_model
        self._api_key = embeddings_api_key
        self._redactor = Redactor(secrets=[embeddings_api_key] if embeddings_api_key else [])
        self._state = _NEW
        self._error: str | None = None
        self._router: Any = None
        self._client: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._loaded = threading.Event()
        self._lock = threading.Lock()
        self._pending = 0  # submitted questions not finished yet
        self._overdue: set[Future] = set()  # running questions whose caller gave up

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Begin loading (import RouteLLM, build the router) on the worker thread; at once."""
        with self._lock:
            if self._state != _NEW:
                return
            self._state = _LOADING
            self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="flowgate-classifier"
            )
            self._executor.submit(self._load)

    def wait_loaded(self, timeout: float) -> bool:
        """Wait until loading has finished; whether the router is ready to answer."""
        if self._state == _NEW:
            return False
        self._loaded.wait(timeout)
        return self._state == _READY

    @property
    def ready(self) -> bool:
        return self._state == _READY

    @property
    def error(self) -> str | None:
        """Why the router could not be loaded, once that is known."""
        return self._error

    def close(self) -> None:
        """Stop taking questions and let the worker thread go (without waiting for it)."""
        with self._lock:
            if self._state == _CLOSED:
                return
            self._state = _CLOSED
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.submit(self._release)
            executor.shutdown(wait=False)
        self._loaded.set()

    # -- questions ---------------------------------------------------------

    async def decide(self, prompt: str) -> Decision | str:
        """The tier for a prompt, or a short reason why the router gave none."""
        future = self._submit(prompt)
        if isinstance(future, str):
            return future
        try:
            score = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_ms / 1000)
        except TimeoutError:
            # wait_for cancelled the wrapper, which cancels a question still queued.
            return self._timed_out(future)
        except Exception as exc:
            return self._raised(exc)
        return self._decision(score)

    def decide_sync(self, prompt: str) -> Decision | str:
        """Same as `decide`, blocking (for the `flowgate route` command)."""
        future = self._submit(prompt)
        if isinstance(future, str):
            return future
        try:
            score = future.result(timeout=self.timeout_ms / 1000)
        except TimeoutError:
            future.cancel()
            return self._timed_out(future)
        except Exception as exc:
            return self._raised(exc)
        return self._decision(score)

    def _submit(self, prompt: str) -> Future | str:
        state = self._state
        if state == _FAILED:
            return self._error or "classifier could not load"
        if state != _READY:
            return _STATE_REASONS[state]
        if not isinstance(prompt, str) or not prompt.strip():
            return "there is no prompt text to classify"
        with self._lock:
            if self._executor is None:
                return _STATE_REASONS[_CLOSED]
            if self._overdue or self._pending >= MAX_PENDING:
                return "classifier is busy"
            try:
                future = self._executor.submit(self._score, prompt[-MAX_PROMPT_CHARS:])
            except RuntimeError:  # shut down by close() just now
                return _STATE_REASONS[_CLOSED]
            self._pending += 1
        future.add_done_callback(self._finished)
        return future

    def _finished(self, future: Future) -> None:
        with self._lock:
            self._pending -= 1
            self._overdue.discard(future)

    def _timed_out(self, future: Future) -> str:
        with self._lock:
            if not future.done():  # still running: no new question until it ends
                self._overdue.add(future)
        return f"classifier took longer than {self.timeout_ms} ms"

    def _raised(self, exc: BaseException) -> str:
        return f"classifier raised {self._describe(exc)}"

    def _decision(self, score: Any) -> Decision | str:
        try:
            value = float(score)
        except (TypeError, ValueError):
            return f"classifier returned {type(score).__name__}, not a win rate"
        if not math.isfinite(value):
            return f"classifier returned {value}, not a win rate"
        value = min(1.0, max(0.0, value))
        return Decision(
            tier=tier_for(value, self.thresholds),
            score=value,
            strategy="classifier",
            dimensions={"strong_win_rate": value},
        )

    def _describe(self, exc: BaseException) -> str:
        """`ExcType: first line of the message`, short, with no secret in it."""
        text = " ".join(str(exc).split("\n", 1)[0].split())
        if self._api_key:
            text = text.replace(self._api_key, "[REDACTED]")
        text = self._redactor.redact(text) or ""
        if len(text) > MAX_REASON_CHARS:
            text = text[: MAX_REASON_CHARS - 3] + "..."
        name = type(exc).__name__
        return f"{name}: {text}" if text else name

    # -- on the worker thread ----------------------------------------------

    def _load(self) -> None:
        try:
            try:
                routers = _import_routellm()
            except ImportError as exc:
                self._fail(_import_reason(exc, self._describe(exc)))
                return
            import torch

            # Inference is tiny next to the gateway's own work: one core at most.
            torch.set_num_threads(1)
            router = self._build(routers)
        except Exception as exc:
            self._fail(f"classifier could not load: {self._describe(exc)}")
        else:
            with self._lock:
                if self._state == _LOADING:
                    self._router = router
                    self._state = _READY
                    log.info("classifier: RouteLLM's %s router is loaded", self.router)
        finally:
            self._loaded.set()

    def _fail(self, reason: str) -> None:
        self._error = reason
        with self._lock:
            if self._state == _LOADING:
                self._state = _FAILED
        log.warning("%s; routing falls back to the complexity scorer", reason)

    def _build(self, routers: Any) -> Any:
        cls = routers.ROUTER_CLS[self.router]
        if self.router == "random":
            return cls()
        assert self.checkpoint is not None
        if self.router == "bert":
            return cls(checkpoint_path=str(self.checkpoint))
        # mf: the embeddings client first, so a missing key is a load error.
        self._client = self._embeddings_client()
        _bound.client = self._client
        router = cls(checkpoint_path=str(self.checkpoint), **_mf_arguments(self.checkpoint))
        router.model.embedding_model = self.embedding_model
        return router

    def _embeddings_client(self) -> Any:
        import httpx
        import openai

        key = self._api_key or None
        if key is None:
            if self.embeddings_base_url is None:
                key = os.environ.get("OPENAI_API_KEY")
                if not key:
                    raise LookupError(
                        "the mf router embeds prompts and needs an API key: none is "
                        "configured and OPENAI_API_KEY is not set"
                    )
            else:
                key = ""  # a local embeddings server without auth: no Authorization header
        timeout = self.timeout_ms / 1000 + HTTP_GRACE_SECONDS
        return openai.OpenAI(
            api_key=key,
            base_url=self.embeddings_base_url or DEFAULT_OPENAI_BASE_URL,
            max_retries=0,
            timeout=timeout,
            # Not through HTTP(S)_PROXY: a shell set up for FlowGate would loop back into it.
            http_client=httpx.Client(trust_env=False, timeout=timeout),
        )

    def _score(self, prompt: str) -> float:
        router = self._router
        if router is None:
            raise RuntimeError("the router was released")
        return router.calculate_strong_win_rate(prompt)

    def _release(self) -> None:
        self._router = None
        _bound.client = None
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _mf_arguments(checkpoint: Path) -> dict[str, Any]:
    config_file = checkpoint / "config.json"
    if not config_file.is_file():
        return {}  # the router's defaults: RouteLLM's released checkpoint
    config = json.loads(config_file.read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{config_file.name} is not a JSON object")
    return {arg: config[key] for key, arg in MF_CONFIG_ARGS.items() if key in config}


def _import_routellm() -> Any:
    """`routellm.routers.routers`, with RouteLLM's OpenAI client replaced by the switch."""
    with _import_lock:
        import routellm  # noqa: F401  (the bare package: cheap, and tells whether it is there)

        for name, value in OFFLINE_ENV.items():
            os.environ.setdefault(name, value)
        # Its dependencies first, so the placeholder key below is set only briefly.
        import numpy  # noqa: F401
        import openai  # noqa: F401
        import pandas  # noqa: F401
        import sklearn.linear_model  # noqa: F401

        if CLIENT_MODULES[0] not in sys.modules:
            placeholder = not os.environ.get("OPENAI_API_KEY")
            if placeholder:
                os.environ["OPENAI_API_KEY"] = IMPORT_PLACEHOLDER_KEY
            try:
                importlib.import_module(CLIENT_MODULES[0])
            finally:
                if placeholder and os.environ.get("OPENAI_API_KEY") == IMPORT_PLACEHOLDER_KEY:
                    del os.environ["OPENAI_API_KEY"]
        routers = importlib.import_module("routellm.routers.routers")
        for name in CLIENT_MODULES:
            module = sys.modules.get(name)
            current = getattr(module, "OPENAI_CLIENT", None)
            if module is not None and not isinstance(current, _ClientSwitch):
                module.OPENAI_CLIENT = _ClientSwitch(current)
        return routers


def _import_reason(exc: ImportError, described: str) -> str:
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if missing and missing.split(".")[0] == "routellm":
        return NOT_INSTALLED
    return f"RouteLLM cannot be imported ({described}); {INSTALL_HINT}"


class _ClientSwitch:
    """Stands in for RouteLLM's `OPENAI_CLIENT`: the embeddings client of the classifier
    whose worker thread is asking, or RouteLLM's own on any other thread."""

    def __init__(self, default: Any):
        self._default = default

    def __getattr__(self, name: str) -> Any:
        client = getattr(_bound, "client", None)
        return getattr(client if client is not None else self._default, name)
