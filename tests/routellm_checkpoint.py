"""Tiny real RouteLLM checkpoints, written by the tests themselves (nothing is downloaded).

`write_mf_checkpoint` saves RouteLLM's own `MFModel` with `save_pretrained`, so
`MFModel.from_pretrained(folder)` loads it exactly as it loads the released one.
Its weights are set by hand so that the strong model's win rate is a known
function of the prompt's embedding:

    logit(model) = classifier . (normalize(P[model]) * text_proj(embedding))

With P[strong] = e0, P[weak] = -e0 and classifier = e0, the difference of the
two logits is 2 * text_proj(embedding)[0]; text_proj's first row is DIRECTION / 2,
so the win rate is sigmoid(DIRECTION . embedding): see `expected_win_rate`.
With fake_embeddings' vectors, whose first component grows with the prompt's
length, short prompts get a low win rate and long ones a high one.

`write_bert_checkpoint` saves a one-layer BERT classifier with a small word-piece
vocabulary, in the layout `BERTRouter` loads with transformers' Auto classes.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

from fake_embeddings import DIM

HIDDEN = 4
STRONG = "gpt-4-1106-preview"  # the pair MatrixFactorizationRouter scores by default
WEAK = "mixtral-8x7b-instruct-v0.1"
DIRECTION = [6.0] + [0.5 if i % 2 else -0.5 for i in range(1, DIM)]


def expected_win_rate(embedding: list[float]) -> float:
    """The strong model's win rate the mf checkpoint gives for this embedding."""
    return 1 / (1 + math.exp(-sum(w * x for w, x in zip(DIRECTION, embedding, strict=True))))


@contextlib.contextmanager
def _openai_key_for_import() -> Iterator[None]:
    """RouteLLM creates an OpenAI client when imported, which needs some key."""
    if os.environ.get("OPENAI_API_KEY"):
        yield
        return
    os.environ["OPENAI_API_KEY"] = "placeholder-for-routellm-import"
    try:
        yield
    finally:
        os.environ.pop("OPENAI_API_KEY", None)


def write_mf_checkpoint(folder: Path, text_dim: int = DIM, hidden: int = HIDDEN) -> Path:
    import torch

    with _openai_key_for_import():
        from routellm.routers.matrix_factorization.model import MODEL_IDS, MFModel

    assert len(DIRECTION) == text_dim
    model = MFModel(
        dim=hidden, num_models=len(MODEL_IDS), text_dim=text_dim, num_classes=1, use_proj=True
    )
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        model.P.weight.copy_(torch.randn(len(MODEL_IDS), hidden, generator=generator))
        model.P.weight[MODEL_IDS[STRONG]] = torch.eye(hidden)[0]
        model.P.weight[MODEL_IDS[WEAK]] = -torch.eye(hidden)[0]
        projection = torch.randn(hidden, text_dim, generator=generator)
        projection[0] = torch.tensor(DIRECTION) / 2
        model.text_proj[0].weight.copy_(projection)
        model.classifier[0].weight.copy_(torch.eye(hidden)[:1])
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    return folder


BERT_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "hi", "hello", "thanks", "what", "is", "the", "a", "of", "to", "and", "in",
    "prove", "theorem", "derive", "optimize", "algorithm", "complexity", "kernel",
    "distributed", "consensus", "proof", "integral", "step", "by", "explain", "why",
    ",", ".", "?", "!",
]  # fmt: skip


def write_bert_checkpoint(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(BERT_VOCAB) + "\n")
    config = BertConfig(
        vocab_size=len(BERT_VOCAB),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=64,
        num_labels=3,  # as RouteLLM's: the strong win rate is P(label 0), 1 - P(tie or weak wins)
    )
    torch.manual_seed(1234)
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # larger than BERT's initial 0.02 spread, so prompts differ visibly
        model.classifier.weight.normal_(0, 3.0)
    model.save_pretrained(folder)
    BertTokenizer(str(vocab), do_lower_case=True, model_max_length=64).save_pretrained(folder)
    return folder
