"""FlowGate: a local-first LLM gateway built as a mitmproxy addon."""

__version__ = "0.1.0"
