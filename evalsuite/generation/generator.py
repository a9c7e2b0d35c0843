"""Text in, candidates out: models and drafters resolved through the runtime, chat templates applied.

>>> # gen = TextGenerator("smollm2", draft="ngram", device="cpu")  # or runtime=Runtime(device="cpu")
>>> # [completion], stats = gen.generate(["Summarise: ..."], GenerationOptions(max_new_tokens=64))
>>> # completion.prediction, completion.samples, completion.sample_logprobs
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from evalsuite.errors import ConfigError, InputError
from evalsuite.generation.drafters import (
    Drafter,
    ModelDrafter,
    NgramDrafter,
    NoDrafter,
    check_same_vocabulary,
    decoding_cost,
    layer_skip_model,
)
from evalsuite.generation.speculative import (
    Generated,
    GenerationOptions,
    GenerationStats,
    Progress,
    SpeculativeDecoder,
)
from evalsuite.runtime import Runtime
from evalsuite.runtime.models import LoadedModel

if TYPE_CHECKING:
    import torch

DEFAULT_TARGET = "smollm2"
DEFAULT_DRAFT = "ngram"
LOOKUP_DRAFTS = ("ngram", "none")


@dataclass(frozen=True)
class Completion:
    """The generated candidates of one prompt (``samples`` in order; the first is the prediction)."""

    prompt: str
    samples: list[str]
    sequences: list[Generated]

    @property
    def prediction(self) -> str:
        """The greedy answer (temperature 0) or the first sample."""
        return self.samples[0]

    @property
    def sample_logprobs(self) -> list[float]:
        """Mean token log-probability of each sample under the target (temperature 1)."""
        return [sequence.mean_logprob for sequence in self.sequences]

    @property
    def acceptance_rate(self) -> float | None:
        judged = sum(sequence.draft_judged for sequence in self.sequences)
        accepted = sum(sequence.draft_accepted for sequence in self.sequences)
        return accepted / judged if judged else None


class TextGenerator:
    """A target model and a drafter, loaded through the runtime (offline-first presets, device policy).

    ``draft`` is ``"ngram"`` (prompt lookup), ``"none"`` (the target alone), or a causal LM (preset,
    local path or hub id) with the target's tokenizer; ``draft_layers=K`` instead drafts with the
    target's own first K layers. Prompts go through the tokenizer's chat template when it has one
    (``chat_template=False`` feeds them as plain text). Models load on ``runtime`` (default: a new
    :class:`~evalsuite.runtime.Runtime` with ``device`` and ``dtype``), which decides where they run.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        draft: str | None = None,
        draft_layers: int | None = None,
        device: str = "auto",
        dtype: str = "auto",
        runtime: Runtime | None = None,
        chat_template: bool = True,
        max_ngram: int = 4,
        min_ngram: int = 2,
    ) -> None:
        if draft is not None and draft_layers is not None:
            raise ConfigError(
                f"give either a draft (--draft {draft}) or a layer-skip draft (--draft-layers {draft_layers}), not both"
            )
        if runtime is not None and (device, dtype) != ("auto", "auto"):
            raise ConfigError(
                f"give either a runtime or a device and dtype, not both (got device={device!r}, dtype={dtype!r})"
            )
        self.runtime = runtime if runtime is not None else Runtime(device=device, dtype=dtype)
        self.target_name = target
        self.target = self._load_causal(target, role="target")
        self.chat_template = chat_template
        self.draft_name = (
            draft if draft is not None else (None if draft_layers is not None else DEFAULT_DRAFT)
        )
        self.draft_layers = draft_layers
        self.drafter = self._make_drafter(max_ngram=max_ngram, min_ngram=min_ngram)
        self.decoder = SpeculativeDecoder(self.target.model, self.drafter)

    @property
    def device(self) -> torch.device:
        """Where the models run (the runtime's device)."""
        return self.runtime.device

    @property
    def dtype(self) -> torch.dtype:
        return self.runtime.dtype

    def _load_causal(self, spec: str, *, role: str) -> LoadedModel:
        loaded = self.runtime.language_model(spec)
        if getattr(loaded.model.config, "is_encoder_decoder", False):
            raise ConfigError(
                f"the {role} model must be a causal (decoder-only) LM; {spec!r} is encoder-decoder"
            )
        return loaded

    def _make_drafter(self, *, max_ngram: int, min_ngram: int) -> Drafter:
        target_cost = decoding_cost(self.target.model)
        if self.draft_layers is not None:
            view = layer_skip_model(self.target.model, self.draft_layers)
            return ModelDrafter(
                view, name=f"layer-skip:{self.draft_layers}", relative_cost=decoding_cost(view) / target_cost
            )
        if self.draft_name == "none":
            return NoDrafter()
        if self.draft_name == "ngram":
            return NgramDrafter(max_ngram=max_ngram, min_ngram=min_ngram)
        name = self.draft_name or DEFAULT_DRAFT
        draft = self._load_causal(name, role="draft")
        check_same_vocabulary(
            self.target.tokenizer.get_vocab(),
            draft.tokenizer.get_vocab(),
            target=self.target_name,
            draft=name,
        )
        return ModelDrafter(
            draft.model, name=f"model:{name}", relative_cost=decoding_cost(draft.model) / target_cost
        )

    # -- prompts ------------------------------------------------------------------------------
    def stop_token_ids(self, extra: Sequence[str] = ()) -> tuple[int, ...]:
        """EOS of the tokenizer and of the model's generation config, plus ``extra`` single tokens."""
        ids: set[int] = set()
        tokenizer = self.target.tokenizer
        if tokenizer.eos_token_id is not None:
            ids.add(int(tokenizer.eos_token_id))
        configured = getattr(getattr(self.target.model, "generation_config", None), "eos_token_id", None)
        if configured is not None:
            ids.update(int(i) for i in (configured if isinstance(configured, list | tuple) else [configured]))
        vocabulary = tokenizer.get_vocab()
        for token in extra:
            if token not in vocabulary:
                raise ConfigError(
                    f"stop token {token!r} is not a single token of {self.target_name!r}'s vocabulary"
                )
            ids.add(int(vocabulary[token]))
        return tuple(sorted(ids))

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of a prompt, through the chat template when the tokenizer has one."""
        tokenizer = self.target.tokenizer
        if self.chat_template and getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
            )
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(prompt)["input_ids"]
        return list(ids)

    def check_length(self, ids: Sequence[int], max_new_tokens: int, location: str) -> None:
        limit = self.target.max_length
        if len(ids) + max_new_tokens > limit:
            raise InputError(
                f"prompt of {len(ids)} tokens plus max_new_tokens {max_new_tokens} is over "
                f"{self.target_name!r}'s limit of {limit} positions",
                location=location,
                field="prompt",
            )

    def decode_text(self, sequence: Generated) -> str:
        tokens = sequence.token_ids[:-1] if sequence.finish_reason == "stop" else sequence.token_ids
        return str(self.target.tokenizer.decode(tokens, skip_special_tokens=True)).strip()

    # -- generation ---------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str],
        options: GenerationOptions,
        *,
        generator: torch.Generator | None = None,
        locations: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> tuple[list[Completion], GenerationStats]:
        """``options.num_samples`` completions per prompt (stop tokens default to the model's EOS)."""
        if not options.stop_token_ids:
            options = replace(options, stop_token_ids=self.stop_token_ids())
        token_ids = []
        for index, prompt in enumerate(prompts):
            ids = self.encode_prompt(prompt)
            self.check_length(
                ids, options.max_new_tokens, locations[index] if locations else f"record {index}"
            )
            token_ids.append(ids)
        if generator is None:  # randomness on the runtime's device, as a file run's chunks get it
            generator = self.runtime.seeded_generator(options.seed)
        sequences, stats = self.decoder.decode(token_ids, options, generator=generator, progress=progress)
        completions = [
            Completion(prompt, [self.decode_text(sequence) for sequence in rows], rows)
            for prompt, rows in zip(prompts, sequences, strict=True)
        ]
        return completions, stats

    def describe(self) -> dict[str, Any]:
        """Provenance: models (source, weights hash), drafter, device and dtype."""
        models = {"target": self.runtime.describe_model(self.target_name)}
        if self.draft_name not in (None, *LOOKUP_DRAFTS):
            models["draft"] = self.runtime.describe_model(str(self.draft_name))
        runtime = self.runtime.describe()
        return {
            "models": models,
            **self.drafter.describe(),
            "device": runtime["device"],
            "dtype": runtime["dtype"],
            "chat_template": bool(
                self.chat_template and getattr(self.target.tokenizer, "chat_template", None)
            ),
        }


def generate(
    prompts: Sequence[str],
    *,
    target: str = DEFAULT_TARGET,
    draft: str | None = None,
    draft_layers: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    runtime: Runtime | None = None,
    **options: Any,
) -> list[Completion]:
    """Generate candidates for ``prompts`` (options as in :class:`GenerationOptions`).

    >>> # [c] = generate(["What is the capital of France?"], max_new_tokens=16)
    >>> # c.prediction
    """
    generator = TextGenerator(
        target, draft=draft, draft_layers=draft_layers, device=device, dtype=dtype, runtime=runtime
    )
    completions, _ = generator.generate(prompts, GenerationOptions(**options))
    return completions
