"""Drafters behind one interface: n-gram lookup, a draft model, the target's own first layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from evalsuite.errors import ConfigError
from evalsuite.generation.drafters import (
    DraftContext,
    ModelDrafter,
    NgramDrafter,
    check_same_vocabulary,
    decoding_cost,
    layer_skip_model,
)
from evalsuite.generation.sampling import SamplingParams

CPU = torch.device("cpu")


def context(sequences: list[list[int]], gamma: int, *, rows: list[int] | None = None) -> DraftContext:
    return DraftContext(
        sequences, rows or list(range(len(sequences))), gamma, SamplingParams(), None, 64, CPU
    )


def test_ngram_copies_what_followed_the_longest_matching_suffix() -> None:
    drafter = NgramDrafter(max_ngram=3, min_ngram=1)
    # Suffix [2, 3] occurred before, followed by 9 9; the 1-gram [3] alone would point at 4.
    proposal = drafter.propose(context([[3, 4, 1, 2, 3, 9, 9, 7, 2, 3], [5, 6]], 4))
    assert proposal.tokens[0].tolist() == [9, 9, 7, 2]
    assert proposal.lengths.tolist() == [4, 0]  # row 1: no earlier occurrence, no draft
    # The continuation stops where the sequence does; the most recent occurrence wins.
    proposal = drafter.propose(context([[1, 8, 1, 5, 6, 1]], 4))
    assert proposal.tokens[0, : proposal.lengths[0]].tolist() == [5, 6, 1]


def test_ngram_index_follows_each_row_as_it_grows() -> None:
    drafter = NgramDrafter(max_ngram=2, min_ngram=2)
    assert drafter.propose(context([[1, 2, 3, 4]], 3)).lengths.tolist() == [0]
    assert drafter.propose(context([[1, 2, 3, 4, 1, 2]], 3)).tokens.tolist() == [[3, 4, 1]]
    drafter.start()  # a new batch: row ids mean other sequences now
    assert drafter.propose(context([[7, 7]], 3)).lengths.tolist() == [0]


def test_bad_ngram_sizes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="min_ngram"):
        NgramDrafter(max_ngram=1, min_ngram=2)


def test_model_drafter_proposes_the_draft_models_greedy_continuation(
    tiny_llama: Callable[..., Any], hf_greedy: Callable[..., list[int]]
) -> None:
    draft = tiny_llama(seed=1)
    drafter = ModelDrafter(draft, name="draft", relative_cost=0.5)
    sequences = [[5, 6, 7, 8], [9]]
    proposal = drafter.propose(context(sequences, 5))
    for row, sequence in enumerate(sequences):
        assert proposal.tokens[row].tolist() == hf_greedy(draft, sequence, 5, None)
    # The target kept 2 drafts of row 0 and added a token; row 1 left the batch.
    grown = [*sequences[0], *proposal.tokens[0, :2].tolist(), 11]
    proposal = drafter.propose(context([grown], 3, rows=[0]))
    assert proposal.tokens[0].tolist() == hf_greedy(draft, grown, 3, None)


def test_layer_skip_draft_is_the_targets_first_layers_sharing_weights(
    tiny_llama: Callable[..., Any], reference_logits: Callable[..., torch.Tensor]
) -> None:
    target = tiny_llama(seed=0, layers=3)
    view = layer_skip_model(target, 1)
    assert len(target.model.layers) == 3
    assert target.config.num_hidden_layers == 3
    assert len(view.model.layers) == 1
    assert view.model.layers[0] is target.model.layers[0]
    assert view.lm_head is target.lm_head
    assert view.model.norm is target.model.norm
    tokens = [4, 5, 6]
    with torch.inference_mode():
        hidden = target(input_ids=torch.tensor([tokens]), output_hidden_states=True).hidden_states[1]
        expected = target.lm_head(target.model.norm(hidden))[0]
    torch.testing.assert_close(reference_logits(view, tokens), expected)
    assert decoding_cost(view) < decoding_cost(target)


@pytest.mark.parametrize("layers", [0, 3, -1])
def test_layer_skip_depth_out_of_range_is_a_config_error(tiny_llama: Callable[..., Any], layers: int) -> None:
    with pytest.raises(ConfigError, match="between 1 and 2"):
        layer_skip_model(tiny_llama(seed=0, layers=3), layers)


def test_layer_skip_needs_a_llama_style_decoder() -> None:
    with pytest.raises(ConfigError, match=r"\.model\.layers"):
        layer_skip_model(torch.nn.Linear(2, 2), 1)


def test_vocabularies_must_match_string_for_string() -> None:
    target: dict[str, Any] = {"a": 0, "b": 1, "c": 2}
    check_same_vocabulary(target, dict(target), target="t", draft="d")
    with pytest.raises(ConfigError, match=r"1 tokens only in the target's.*1 tokens only in the draft's"):
        check_same_vocabulary(target, {"a": 0, "b": 1, "z": 2}, target="t", draft="d")  # same size
    with pytest.raises(ConfigError, match="2 tokens with other ids"):
        check_same_vocabulary(target, {"a": 0, "b": 2, "c": 1}, target="t", draft="d")
