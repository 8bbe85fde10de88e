"""Offline token estimates with tiktoken, for providers that report no usage.

tiktoken normally downloads its encodings; LiteLLM ships cl100k_base and
o200k_base, so TIKTOKEN_CACHE_DIR points there unless the user set it.
Called only from the writer thread: counting is too slow for the event loop.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path
from typing import Any

from flowgate_addon.apis.openai import content_text

# Per-message framing tokens of the chat format (OpenAI's published rule of thumb).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


def _use_bundled_encodings() -> None:
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    spec = importlib.util.find_spec("litellm")
    if spec and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        os.environ["TIKTOKEN_CACHE_DIR"] = str(root / "litellm_core_utils" / "tokenizers")


@cache
def _encoding(model: str):
    _use_bundled_encodings()
    import tiktoken

    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        name = "o200k_base"
    if name not in ("cl100k_base", "o200k_base"):
        name = "o200k_base"
    return tiktoken.get_encoding(name)


def count_text(model: str, text: str) -> int:
    if not text:
        return 0
    return len(_encoding(model).encode(text, disallowed_special=()))


def count_request(model: str, body: dict[str, Any]) -> int:
    """Prompt tokens of a chat, completion or embedding request."""
    messages = body.get("messages")
    if isinstance(messages, list):
        total = TOKENS_PER_REPLY
        for message in messages:
            if isinstance(message, dict):
                total += TOKENS_PER_MESSAGE + count_text(model, str(message.get("role", "")))
                total += count_text(model, content_text(message.get("content")))
        return total
    value = body.get("input", body.get("prompt", ""))
    items = value if isinstance(value, list) else [value]
    return sum(
        count_text(model, v) if isinstance(v, str) else len(v)
        for v in items
        if isinstance(v, str | list)
    )
