"""Candidate generation with speculative decoding: answers and samples for evaluation.

A drafter proposes tokens, the target verifies several in one pass; greedy output is the
target's own greedy output and samples follow the target's distribution exactly. Imported
lazily, so ``import evalsuite.generation`` (and the CLI) does not import torch::

    from evalsuite.generation import TextGenerator, GenerationOptions
    generator = TextGenerator("smollm2", draft="ngram")
    completions, stats = generator.generate(["Summarise: ..."], GenerationOptions(max_new_tokens=64))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from evalsuite._lazy import lazy_exports

_EXPORTS = {
    "generate": "evalsuite.generation.generator",
    "TextGenerator": "evalsuite.generation.generator",
    "Completion": "evalsuite.generation.generator",
    "GenerationOptions": "evalsuite.generation.speculative",
    "GenerationStats": "evalsuite.generation.speculative",
    "Generated": "evalsuite.generation.speculative",
    "SpeculativeDecoder": "evalsuite.generation.speculative",
    "SamplingParams": "evalsuite.generation.sampling",
    "Drafter": "evalsuite.generation.drafters",
    "DraftContext": "evalsuite.generation.drafters",
    "Proposal": "evalsuite.generation.drafters",
    "NoDrafter": "evalsuite.generation.drafters",
    "NgramDrafter": "evalsuite.generation.drafters",
    "ModelDrafter": "evalsuite.generation.drafters",
    "layer_skip_model": "evalsuite.generation.drafters",
    "generate_file": "evalsuite.generation.records",
}

__all__ = [
    "Completion",
    "DraftContext",
    "Drafter",
    "Generated",
    "GenerationOptions",
    "GenerationStats",
    "ModelDrafter",
    "NgramDrafter",
    "NoDrafter",
    "Proposal",
    "SamplingParams",
    "SpeculativeDecoder",
    "TextGenerator",
    "generate",
    "generate_file",
    "layer_skip_model",
]

if TYPE_CHECKING:
    from evalsuite.generation.drafters import (
        DraftContext,
        Drafter,
        ModelDrafter,
        NgramDrafter,
        NoDrafter,
        Proposal,
        layer_skip_model,
    )
    from evalsuite.generation.generator import Completion, TextGenerator, generate
    from evalsuite.generation.records import generate_file
    from evalsuite.generation.sampling import SamplingParams
    from evalsuite.generation.speculative import (
        Generated,
        GenerationOptions,
        GenerationStats,
        SpeculativeDecoder,
    )


__getattr__ = lazy_exports(globals(), _EXPORTS)
