"""Fact checkers: P(supported) of a claim given a document chunk, from four kinds of model.

Which kind a model is comes from its ``config.json``; a preset may state the kind and the name of
its "supported" label, and a config that disagrees is an error, never a guess:

- ``nli``: a 3-class (or entailment/not_entailment) cross-encoder: P(entailment), through
  :meth:`Runtime.nli <evalsuite.runtime.Runtime.nli>` and its memo;
- ``binary``: a 2-label sequence classifier (MiniCheck-RoBERTa/DeBERTa): the softmax probability
  of the label that means "supported";
- ``seq2seq``: MiniCheck-Flan-T5: one decoder step from the decoder start token, a softmax over the
  logits of the first tokens of the answers "0" and "1" (``minicheck/inference.py``: ids 3 and 209
  of the T5 vocabulary, i.e. "▁" — "0" has no "▁0" piece — and "▁1");
- ``hhem``: Vectara's HHEM-2.1-Open, rebuilt as transformers' ``T5ForTokenClassification`` (its hub
  code is never run): a softmax over the logits of the first token, output 1 "consistent".

Pure functions over a model config, a tokenizer or a loaded model and one batch; batching, memo and
device policy are the :class:`~evalsuite.runtime.Runtime`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.errors import ConfigError, ModelUnavailableError
from evalsuite.runtime.classification import config_labels
from evalsuite.runtime.models import (
    Head,
    LoadedModel,
    ResolvedModel,
    hub_snapshot,
    model_max_length,
    read_config,
)
from evalsuite.runtime.nli import NLI_LABELS, calibrated_temperature, label_columns, normalise_label
from evalsuite.runtime.presets import MINICHECK_SEQ2SEQ_PROMPT, PRESETS, CheckerKind, ModelPreset
from evalsuite.runtime.tokens import PairRow, pair_rows

if TYPE_CHECKING:
    import torch

# HHEM-2.1-Open's defaults when its config.json does not carry them (its configuration_hhem_v2.py).
HHEM_FOUNDATION = "google/flan-t5-base"
HHEM_PROMPT = "<pad> Determine if the hypothesis is true given the premise?\n\nPremise: {premise}\n\nHypothesis: {claim}"
HHEM_CONSISTENT_OUTPUT = 1  # modeling_hhem_v2.py's predict(): softmax(logits[:, 0, :])[:, 1]
HHEM_WEIGHTS = "model.safetensors"
_HHEM_PREFIX = "t5."  # HHEMv2ForSequenceClassification keeps its T5ForTokenClassification as ``t5``
# Only the foundation's config and tokenizer are needed: its weights are HHEM's own.
_FOUNDATION_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "spiece.model",
)

SEQ2SEQ_ANSWERS = ("0", "1")  # MiniCheck-Flan-T5's answers: not supported, supported

_HEADS: dict[CheckerKind, Head] = {
    "nli": "sequence-classification",
    "binary": "sequence-classification",
    "seq2seq": "language-model",
    "hhem": "hhem",
}
# Two-label heads whose names say which side is "supported" (normalised names), written out.
_SELF_DESCRIBING: dict[frozenset[str], str] = {
    frozenset({"supported", "unsupported"}): "supported",
    frozenset({"supported", "not_supported"}): "supported",
    frozenset({"consistent", "inconsistent"}): "consistent",
    frozenset({"consistent", "hallucinated"}): "consistent",
    frozenset({"faithful", "unfaithful"}): "faithful",
    frozenset({"faithful", "hallucinated"}): "faithful",
    frozenset({"entailment", "not_entailment"}): "entailment",
    frozenset({"entailment", "non_entailment"}): "entailment",
}
# What a caller's label_map may say of a binary checker's label.
_LABEL_MAP_SIDES = {"supported": True, "unsupported": False, "not_supported": False}
_PROMPT_FIELD = re.compile(r"\{(premise|claim|eos)\}")


@dataclass(frozen=True)
class Checker:
    """How one model's outputs become P(supported), decided from its config (and preset) alone.

    ``prompt`` (``{premise}``, ``{claim}``, ``{eos}``) writes a pair as one text; without one, a
    binary checker reads the pair as its tokenizer's sentence pair. Local copies of MiniCheck's
    classifiers are read that way unless named by their preset, which states MiniCheck's own format.
    """

    model: str
    kind: CheckerKind
    supported_output: int  # the label (binary, hhem), NLI column (nli) or answer (seq2seq) read
    prompt: str | None = None
    max_length: int | None = None  # overrides the loaded model's limit

    @property
    def head(self) -> Head:
        return _HEADS[self.kind]

    def input_limit(self, loaded: LoadedModel) -> int:
        """The longest input in tokens the checker is run on."""
        return self.max_length or loaded.max_length

    def encode(self, loaded: LoadedModel, pairs: Sequence[tuple[str, str]]) -> tuple[list[Any], int]:
        """Each pair's model input (premises cut to fit, never claims when avoidable); how many were cut."""
        limit = self.input_limit(loaded)
        if self.prompt is None:
            return pair_rows(loaded.tokenizer, pairs, limit)
        rows, too_long = prompt_rows(loaded.tokenizer, self.prompt, pairs, limit)
        if self.kind == "binary":  # one text: every token in the first segment
            return [[(token, 0) for token in ids] for ids in rows], too_long
        return rows, too_long

    def scorer(self, loaded: LoadedModel) -> Callable[[Sequence[Any]], list[torch.Tensor]]:
        """``batch of inputs -> list of P(supported)`` (0-d float32 CPU tensors) for this model."""
        temperature = calibrated_temperature(loaded)
        output = self.supported_output
        if self.kind == "binary":
            return lambda batch: classifier_support(loaded, output, temperature, batch)
        if self.kind == "hhem":
            return lambda batch: first_token_support(loaded, output, temperature, batch)
        if self.kind == "seq2seq":
            answers = answer_token_ids(loaded.tokenizer)
            start = decoder_start_token(loaded)
            return lambda batch: first_step_support(loaded, answers, start, temperature, batch)
        raise ConfigError(f"NLI checkers are scored by Runtime.nli, not here (model {self.model!r})")


def find_preset(model: str) -> ModelPreset | None:
    """The preset named ``model``, or whose hub id it is (so hub ids keep the preset's statements)."""
    preset = PRESETS.get(model)
    if preset is not None:
        return preset
    return next((preset for preset in PRESETS.values() if preset.hub_id and preset.hub_id == model), None)


def checker_head(config: Mapping[str, Any]) -> Head:
    """The head a checker model loads with, from its config (no label semantics needed)."""
    if is_hhem(config):
        return "hhem"
    return "language-model" if is_seq2seq_lm(config) else "sequence-classification"


def describe_checker(
    model: str, config: Mapping[str, Any], label_map: Mapping[str, str] | None = None
) -> Checker:
    """How ``model`` (with this ``config.json``) is read as a fact checker; ConfigError when it cannot be."""
    preset = find_preset(model)
    kind = checker_kind(model, config, label_map, preset.checker if preset else None)
    prompt, max_length = checker_prompt(config, preset), preset.max_length if preset else None
    if kind == "nli":
        return Checker(model, kind, NLI_LABELS.index("entailment"), prompt, max_length)
    if kind == "seq2seq":
        if label_map:
            raise ConfigError(
                f"label_map applies to classifier heads; model {model!r} is a seq2seq checker answering "
                f"{SEQ2SEQ_ANSWERS[1]!r} (supported) or {SEQ2SEQ_ANSWERS[0]!r}"
            )
        return Checker(model, kind, SEQ2SEQ_ANSWERS.index("1"), prompt, max_length)
    labels, problem_type = config_labels(config)
    if problem_type == "multi_label_classification":
        raise ConfigError(
            f"model {model!r} is a multi-label classifier; a binary checker's two labels exclude each other"
        )
    output = supported_output(
        model,
        labels,
        label_map=label_map,
        stated=preset.supported_label if preset else None,
        default=HHEM_CONSISTENT_OUTPUT if kind == "hhem" else None,
    )
    return Checker(model, kind, output, prompt, max_length)


def checker_prompt(config: Mapping[str, Any], preset: ModelPreset | None) -> str | None:
    """The one-text template a checker reads pairs in: its preset's, else its kind's (None: a
    tokenizer sentence pair). Needs no label semantics."""
    if preset is not None and preset.prompt:
        return check_prompt(preset.prompt)
    if is_hhem(config):
        return check_prompt(hhem_prompt(config))
    return MINICHECK_SEQ2SEQ_PROMPT if is_seq2seq_lm(config) else None


def pair_budget(model: str, config: Mapping[str, Any], loaded: LoadedModel) -> int:
    """The most tokens ``tokenizer(premise, claim)`` may count for a checker's input to fit its limit:
    the limit, less what its prompt adds beyond a sentence pair's special tokens."""
    preset = find_preset(model)
    limit = (preset.max_length if preset else None) or loaded.max_length
    prompt = checker_prompt(config, preset)
    if prompt is None:
        return limit
    tokenizer = loaded.tokenizer
    template_tokens = len(tokenizer(render(prompt, "", "", tokenizer.eos_token)[0])["input_ids"])
    return limit - max(0, template_tokens - tokenizer.num_special_tokens_to_add(pair=True))


def checker_kind(
    model: str,
    config: Mapping[str, Any],
    label_map: Mapping[str, str] | None = None,
    stated: CheckerKind | None = None,
) -> CheckerKind:
    """The checker kind ``config`` reads as: ``stated`` (a preset's) when the config allows it.

    >>> checker_kind("m", {"id2label": {"0": "entailment", "1": "neutral", "2": "contradiction"}})
    'nli'
    >>> checker_kind("m", {"architectures": ["T5ForConditionalGeneration"], "is_encoder_decoder": True})
    'seq2seq'
    """
    kinds = possible_kinds(config, label_map)
    if stated is not None and stated not in kinds:
        readable = f"a {' or '.join(kinds)} checker" if kinds else "no checker evalsuite can read"
        raise ConfigError(
            f"model {model!r} should be a {stated!r} checker, but its config reads as {readable} "
            f"({config_summary(config)})"
        )
    if stated is not None:
        return stated
    if not kinds:
        raise ConfigError(
            f"model {model!r} is no fact checker evalsuite can read ({config_summary(config)}): it needs "
            "NLI labels, two labels, a seq2seq LM or HHEM's config. Unnamed labels need "
            "label_map={<label>: 'entailment'|'neutral'|'contradiction'} or {<label>: 'supported'|'unsupported'}"
        )
    return kinds[0]


def possible_kinds(
    config: Mapping[str, Any], label_map: Mapping[str, str] | None = None
) -> list[CheckerKind]:
    """Every checker kind ``config`` allows, the likeliest first."""
    if is_hhem(config):
        return ["hhem"]
    if is_seq2seq_lm(config):
        return ["seq2seq"]
    labels, _ = config_labels(config)
    kinds: list[CheckerKind] = []
    try:
        label_columns(dict(enumerate(labels)), label_map)
        kinds.append("nli")
    except ConfigError:
        pass
    if len(labels) == 2:
        kinds.append("binary")
    return kinds


def is_hhem(config: Mapping[str, Any]) -> bool:
    """An HHEM-2.x config (``HHEMv2Config``: a T5 token classifier behind Vectara's own hub code)."""
    architectures = config.get("architectures") or []
    return (
        config.get("model_type") in ("HHEMv2", "HHEMv2Config")
        or "HHEMv2ForSequenceClassification" in architectures
    )


def is_seq2seq_lm(config: Mapping[str, Any]) -> bool:
    """An encoder-decoder LM (T5, BART) rather than an encoder-decoder classifier (BART-MNLI)."""
    architectures = [str(name) for name in config.get("architectures") or []]
    if any(name.endswith("ForConditionalGeneration") for name in architectures):
        return True
    classifier = any(name.endswith("ForSequenceClassification") for name in architectures)
    return bool(config.get("is_encoder_decoder")) and not classifier


def config_summary(config: Mapping[str, Any]) -> str:
    labels, _ = config_labels(config)
    return f"architectures {list(config.get('architectures') or [])}, labels {labels}"


def supported_output(
    model: str,
    labels: Sequence[str],
    *,
    label_map: Mapping[str, str] | None = None,
    stated: str | None = None,
    default: int | None = None,
) -> int:
    """The output of a 2-label head that means "supported": from the caller's ``label_map``, else the
    preset's ``stated`` label, else self-describing names, else ``default``; never guessed.

    >>> supported_output("m", ["hallucinated", "consistent"])
    1
    >>> supported_output("m", ["0", "1"], stated="1")
    1
    """
    names = [normalise_label(label) for label in labels]
    if len(names) != 2:
        raise ConfigError(f"a binary checker has 2 labels; model {model!r} has {len(names)}: {list(labels)}")
    if label_map is not None:
        return _mapped_supported_output(model, labels, label_map)
    if stated is not None:
        if normalise_label(stated) not in names:
            raise ConfigError(
                f"model {model!r} should name its supported label {stated!r}, but its labels are {list(labels)}: "
                "not the checkpoint its preset describes; pass label_map={<label>: 'supported'} to read it anyway"
            )
        return names.index(normalise_label(stated))
    side = _SELF_DESCRIBING.get(frozenset(names))
    if side is not None:
        return names.index(side)
    if default is not None:
        return default
    raise ConfigError(
        f"cannot tell which of model {model!r}'s labels {list(labels)} means supported; "
        "pass label_map={<label>: 'supported', <other label>: 'unsupported'}"
    )


def _mapped_supported_output(model: str, labels: Sequence[str], label_map: Mapping[str, str]) -> int:
    names = [normalise_label(label) for label in labels]
    unknown = [key for key in label_map if normalise_label(key) not in names]
    if unknown:
        raise ConfigError(f"label_map names {unknown}, but model {model!r}'s labels are {list(labels)}")
    sides = {normalise_label(key): normalise_label(value) for key, value in label_map.items()}
    odd = [value for value in label_map.values() if normalise_label(value) not in _LABEL_MAP_SIDES]
    if odd:
        raise ConfigError(
            f"label_map values must be 'supported' or 'unsupported' for a binary checker, got {odd}"
        )
    supported = [name for name, side in sides.items() if _LABEL_MAP_SIDES[side]]
    if len(supported) != 1:
        raise ConfigError(
            f"label_map must call exactly one of {list(labels)} 'supported', got {dict(label_map)}"
        )
    return names.index(supported[0])


# -- prompts ------------------------------------------------------------------------------------
def hhem_prompt(config: Mapping[str, Any]) -> str:
    """HHEM's template (its config's ``prompt`` when it has one), in this module's field names."""
    prompt = str(config.get("prompt") or HHEM_PROMPT)
    return prompt.replace("{text1}", "{premise}").replace("{text2}", "{claim}")


def check_prompt(prompt: str) -> str:
    """``prompt`` when it holds ``{premise}`` then ``{claim}``, once each."""
    fields = _PROMPT_FIELD.findall(prompt)
    if [field for field in fields if field != "eos"] != ["premise", "claim"]:
        raise ConfigError(f"a checker prompt needs {{premise}} then {{claim}}, once each; got {prompt!r}")
    return prompt


def render(prompt: str, premise: str, claim: str, eos: str | None) -> tuple[str, tuple[int, int]]:
    """``prompt`` with its fields filled (values never re-read as fields); the premise's character span.

    >>> render("predict: {premise}{eos}{claim}", "Doc.", "Claim.", "</s>")
    ('predict: Doc.</s>Claim.', (9, 13))
    """
    values = {"premise": premise, "claim": claim, "eos": eos}
    parts: list[str] = []
    span, position, length = (0, 0), 0, 0
    for match in _PROMPT_FIELD.finditer(prompt):
        literal, value = prompt[position : match.start()], values[match.group(1)]
        if value is None:
            raise ConfigError(f"the checker prompt {prompt!r} needs an EOS token, and the tokenizer has none")
        length += len(literal)
        if match.group(1) == "premise":
            span = (length, length + len(value))
        parts += [literal, value]
        length += len(value)
        position = match.end()
    parts.append(prompt[position:])
    return "".join(parts), span


def prompt_rows(
    tokenizer: Any, prompt: str, pairs: Sequence[tuple[str, str]], limit: int
) -> tuple[list[list[int]], int]:
    """Token ids (with special tokens) of each pair written into ``prompt``, over-long premises cut at
    their end; and how many pairs were over ``limit``. A claim is cut only when it alone is over."""
    rendered = [render(prompt, premise, claim, tokenizer.eos_token) for premise, claim in pairs]
    try:
        encoded = tokenizer([text for text, _ in rendered], return_offsets_mapping=True, verbose=False)
    except NotImplementedError as error:  # offsets need a Rust ("fast") tokenizer
        raise ConfigError(f"a checker prompt needs a fast tokenizer to find the premise: {error}") from None
    rows: list[list[int]] = []
    too_long = 0
    for ids, offsets, (_, span) in zip(
        encoded["input_ids"], encoded["offset_mapping"], rendered, strict=True
    ):
        if len(ids) > limit:
            too_long += 1
            ids = cut_premise(ids, offsets, span, limit)
        rows.append(list(ids))
    return rows, too_long


def cut_premise(
    ids: Sequence[int], offsets: Sequence[tuple[int, int]], span: tuple[int, int], limit: int
) -> list[int]:
    """``ids`` cut to ``limit`` by dropping the premise's last tokens (those overlapping the premise's
    character ``span``); past the whole premise, the end, keeping the final (special) token.

    >>> cut_premise([0, 5, 6, 7, 2, 9, 2], [(0, 0), (0, 1), (2, 3), (4, 5), (5, 9), (9, 10), (0, 0)], (0, 5), 5)
    [0, 5, 2, 9, 2]
    """
    premise = [
        index
        for index, (start, end) in enumerate(offsets)
        if end > start and start < span[1] and end > span[0]
    ]
    excess = len(ids) - limit
    kept = list(ids)
    if premise:
        dropped = min(excess, len(premise))
        last = premise[-1] + 1
        kept = kept[: last - dropped] + kept[last:]
        excess -= dropped
    if excess > 0:
        kept = kept[: limit - 1] + kept[-1:]
    return kept


# -- scoring one batch --------------------------------------------------------------------------
def classifier_support(
    classifier: LoadedModel, output: int, temperature: float, batch: Sequence[PairRow]
) -> list[torch.Tensor]:
    """P(supported) of a 2-label sequence classifier: the softmax over its (temperature-scaled) logits."""
    from evalsuite.runtime.encoding import classify

    logits = classify(classifier, batch).float() / temperature
    return list(logits.softmax(dim=-1)[:, output].cpu())


def first_token_support(
    checker: LoadedModel, output: int, temperature: float, batch: Sequence[Sequence[int]]
) -> list[torch.Tensor]:
    """P(supported) of a token classifier read at its first token (HHEM's ``logits[:, 0, :]``)."""
    from evalsuite.runtime.encoding import pad_batch

    input_ids, attention_mask = pad_batch(batch, checker.tokenizer.pad_token_id or 0, checker.device)
    logits = checker.model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0, :]
    return list((logits.float() / temperature).softmax(dim=-1)[:, output].cpu())


def first_step_support(
    lm: LoadedModel, answers: Sequence[int], start: int, temperature: float, batch: Sequence[Sequence[int]]
) -> list[torch.Tensor]:
    """P(supported) of a seq2seq checker: the softmax over the first decoder step's logits of the
    answers' first tokens (``answers``: not supported, supported), as MiniCheck computes it."""
    import torch

    from evalsuite.runtime.encoding import pad_batch

    input_ids, attention_mask = pad_batch(batch, lm.tokenizer.pad_token_id or 0, lm.device)
    decoder_input_ids = torch.full((len(batch), 1), start, dtype=torch.long, device=lm.device)
    outputs = lm.model(
        input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
    )
    logits = outputs.logits[:, 0, list(answers)].float() / temperature
    return list(logits.softmax(dim=-1)[:, 1].cpu())


def answer_token_ids(tokenizer: Any) -> tuple[int, int]:
    """The first token of each answer ("0", "1") as the tokenizer writes it: the token a one-step
    decoder is asked about (T5: 3 "▁" and 209 "▁1", not the pieces named "0" and "1")."""
    first = []
    for answer in SEQ2SEQ_ANSWERS:
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ConfigError(f"the seq2seq checker's tokenizer writes the answer {answer!r} as no token")
        first.append(int(ids[0]))
    if first[0] == first[1]:
        raise ConfigError(
            f"the answers {SEQ2SEQ_ANSWERS} start with the same token ({first[0]}): not a MiniCheck vocabulary"
        )
    return first[0], first[1]


def decoder_start_token(lm: LoadedModel) -> int:
    """The token a seq2seq decoder starts from (T5: the pad token 0, MiniCheck's ``torch.zeros``)."""
    start = getattr(lm.model.config, "decoder_start_token_id", None)
    if start is None:
        raise ConfigError(f"model {lm.resolved.name!r} names no decoder_start_token_id in its config")
    return int(start)


# -- loading HHEM without its hub code ----------------------------------------------------------
def load_hhem(resolved: ResolvedModel, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """HHEM-2.1-Open as transformers' ``T5ForTokenClassification``, from its safetensors alone.

    The hub repository's ``modeling_hhem_v2.py`` is never imported (no ``trust_remote_code``): its
    model is a ``T5ForTokenClassification`` built from the foundation's (flan-t5-base) config, kept
    under ``t5.``, whose encoder embeddings are stored once as ``shared``. Pickled weights are refused.
    """
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, T5Config, T5ForTokenClassification

    config = read_config(resolved)
    foundation = hhem_foundation(resolved.path, config)
    weights = resolved.path / HHEM_WEIGHTS
    if not weights.is_file():
        raise ModelUnavailableError(
            f"HHEM model {resolved.name!r} at {resolved.path} has no {HHEM_WEIGHTS}: evalsuite loads HHEM "
            "from safetensors only (pickled weights and its hub code are never run)"
        )
    t5_config = T5Config.from_pretrained(foundation)
    model = T5ForTokenClassification(t5_config)
    try:
        model.load_state_dict(hhem_state_dict(load_file(weights)), strict=True)
    except RuntimeError as error:
        raise ModelUnavailableError(
            f"HHEM model {resolved.name!r}: its weights do not fit {foundation}'s T5 architecture: {error}"
        ) from None
    place(model, device, dtype)
    tokenizer = AutoTokenizer.from_pretrained(foundation)
    return LoadedModel(resolved, model, tokenizer, device, dtype, model_max_length(model, tokenizer))


def hhem_state_dict(stored: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HHEM's stored tensors as a ``T5ForTokenClassification`` state dict."""
    if not stored or not all(name.startswith(_HHEM_PREFIX) for name in stored):
        example = next(iter(stored), "nothing")
        raise ModelUnavailableError(
            f"these are not HHEM-2.1 weights: every tensor should be under {_HHEM_PREFIX!r}, found {example!r}"
        )
    state = {name.removeprefix(_HHEM_PREFIX): tensor for name, tensor in stored.items()}
    shared = state.get("transformer.shared.weight")
    if shared is not None:  # T5's encoder reads the shared embeddings, saved once
        state.setdefault("transformer.encoder.embed_tokens.weight", shared)
    return state


def hhem_foundation(model_dir: Path, config: Mapping[str, Any]) -> Path:
    """The folder with the config and tokenizer HHEM is built on: a local folder its config names
    (relative to the model or absolute), else the hub repository's config and tokenizer files."""
    foundation = str(config.get("foundation") or HHEM_FOUNDATION)
    for candidate in (model_dir / foundation, Path(foundation).expanduser()):
        if (candidate / "config.json").is_file():
            return candidate
    path = hub_snapshot(foundation, _FOUNDATION_FILES)
    if path is None:
        raise ModelUnavailableError(
            f"the HHEM model at {model_dir} is built on {foundation!r}, whose config and tokenizer are not "
            "here: go online once to download them (not its weights), or set 'foundation' in its "
            "config.json to a local folder holding them"
        )
    return path


def place(model: Any, device: torch.device, dtype: torch.dtype) -> None:
    """Move ``model`` to ``device`` and ``dtype``, keeping the modules the architecture keeps in
    float32 (T5's ``wo``: its activations overflow float16), as ``from_pretrained`` would."""
    import torch

    model.to(device=device, dtype=dtype).eval()
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    if dtype != torch.float16 or not keep:
        return
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in keep:
            module.float()
