"""Wire formats FlowGate understands, one module per format.

Each module offers the same functions: `endpoint(api_path)`, `request_model(api_path,
body)`, `is_stream(api_path, query, body)`, `read_json_response(body)`,
`read_sse_response(chunks)` and `prompt_text(body)`.
"""

from __future__ import annotations

from types import ModuleType

from flowgate_addon.apis import anthropic, gemini, openai

FORMATS: dict[str, ModuleType] = {"openai": openai, "anthropic": anthropic, "gemini": gemini}


def wire_format(name: str) -> ModuleType:
    """The module for a provider's `api`; unknown names fall back to OpenAI's."""
    return FORMATS.get(name, openai)
