"""The Runtime: one object that runs every model call of every metric, batched the same way.

Constructing one, describing it or its models imports no torch: the device and dtype are resolved
on first need (the first model load, or reading :attr:`Runtime.device`).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evalsuite.errors import ConfigError
from evalsuite.runtime.batching import run_batched
from evalsuite.runtime.checkers import Checker, checker_head, describe_checker, pair_budget
from evalsuite.runtime.classification import config_labels
from evalsuite.runtime.device import (
    check_device,
    check_dtype,
    dtype_name,
    is_out_of_memory,
    release_cached_memory,
    resolve_device,
    resolve_dtype,
)
from evalsuite.runtime.models import Head, LoadedModel, load_model, model_config, resolve_model
from evalsuite.runtime.nli import PairMemo
from evalsuite.runtime.presets import PRESETS
from evalsuite.runtime.tokens import pair_rows, truncated_ids

if TYPE_CHECKING:
    import torch

    from evalsuite.calibration import Calibration
    from evalsuite.runtime.guards import GuardSpec


class TruncationWarning(UserWarning):
    """Some texts were longer than a model's limit and were truncated (reported once per model)."""


@dataclass(frozen=True)
class TargetLogProbs:
    """A target text's tokens and the log-probability of each given its context (float32, CPU)."""

    tokens: list[str]
    log_probs: torch.Tensor


@dataclass
class RuntimeStats:
    """Counters a caller (or a test) can read: how much model work a run really did."""

    forward_passes: int = 0
    texts_encoded: int = 0
    nli_pairs_requested: int = 0  # pairs asked for by metrics, repeats included
    nli_pairs_scored: int = 0  # pairs that reached the model (each distinct pair once per run)
    support_pairs_requested: int = 0  # fact-checker pairs asked for (NLI checkers count as NLI pairs)
    support_pairs_scored: int = 0
    truncated_texts: dict[str, int] = field(default_factory=dict)


class Runtime:
    """Device, dtype and batching policy, shared by every metric of a run.

    Metrics never touch devices or batches: they hand texts to the runtime and get CPU tensors
    back, in their own order. ``device`` and ``dtype`` are checked at once but resolved (``"auto"``
    to the best device present, which imports torch) only on first need.

    >>> rt = Runtime(device="cpu", batch_size=16)
    >>> rt.describe()["resolved"]
    False
    >>> rt.device.type
    'cpu'
    """

    def __init__(
        self,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 64,
        token_budget: int = 16_384,
        nli_memo_size: int = 500_000,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
        if token_budget < 1:
            raise ConfigError(f"token_budget must be a positive integer, got {token_budget}")
        self.requested_device = check_device(device)
        self.requested_dtype = check_dtype(dtype)
        self._placement: tuple[torch.device, torch.dtype] | None = None
        self._placement_lock = threading.Lock()
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.stats = RuntimeStats()
        # NLI probabilities by (model, label map, premise, hypothesis), each distinct pair scored once;
        # fact checkers' P(supported) by ("support", model, label map, premise, claim) beside them.
        self._nli_memo = PairMemo(nli_memo_size)
        self._checkers: dict[tuple[str, Any], Checker] = {}
        self._lock = threading.Lock()
        self._warned: set[tuple[str, int]] = set()

    # -- device and dtype ---------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """The device models run on (``"auto"``: cuda, else mps, else cpu), resolved on first use."""
        return self._resolved()[0]

    @property
    def dtype(self) -> torch.dtype:
        """The dtype models run in (``"auto"``: float16 on CUDA, else float32), resolved on first use."""
        return self._resolved()[1]

    def _resolved(self) -> tuple[torch.device, torch.dtype]:
        placement = self._placement
        if placement is None:
            with self._placement_lock:
                if self._placement is None:
                    device = resolve_device(self.requested_device)
                    self._placement = (device, resolve_dtype(self.requested_dtype, device))
                placement = self._placement
        return placement

    def describe(self) -> dict[str, Any]:
        """Provenance for the manifest: the device and dtype used, once resolved, and the batching.

        ``resolved`` is False while nothing asked where models run (no model was loaded): the
        device and dtype are then reported as requested (e.g. ``"auto"``), and torch is not imported.
        """
        placement = self._placement
        return {
            "device": str(placement[0]) if placement else self.requested_device,
            "dtype": dtype_name(placement[1]) if placement else self.requested_dtype,
            "batch_size": self.batch_size,
            "token_budget": self.token_budget,
            "resolved": placement is not None,
        }

    def seeded_generator(self, seed: int) -> torch.Generator:
        """A random generator on the runtime's device, seeded (sampling draws from it)."""
        import torch

        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        return generator

    # -- models -------------------------------------------------------------------------------
    def load(self, model: str, head: Head = "encoder") -> LoadedModel:
        """A preset, path or hub id loaded on this runtime's device and dtype (once per process)."""
        return load_model(model, *self._resolved(), head=head)

    def encoder(self, model: str) -> LoadedModel:
        """The loaded encoder for a preset, path or hub id (loaded once per process)."""
        return self.load(model, "encoder")

    @staticmethod
    def describe_model(model: str) -> dict[str, Any]:
        """Source, location and weights hash of a model, without loading it (file hashing only)."""
        return resolve_model(model).describe()

    @staticmethod
    def default_layer(model: str) -> int | None:
        """The layer a preset recommends for token embeddings (None: the last layer).

        A static method: metrics ask it when they are built, before any runtime exists.

        >>> Runtime.default_layer("roberta-large")
        17
        """
        preset = PRESETS.get(model)
        return preset.default_layer if preset else None

    @staticmethod
    def model_aliases(model: str) -> list[str]:
        """The names a model goes by: ``model`` itself and, for a preset, its hub id.

        >>> Runtime.model_aliases("minilm")
        ['minilm', 'sentence-transformers/all-MiniLM-L6-v2']
        """
        preset = PRESETS.get(model)
        return [model] + ([preset.hub_id] if preset and preset.hub_id else [])

    @staticmethod
    def classifier_labels(model: str) -> tuple[list[str], str | None]:
        """A text classifier's label names (output order) and ``problem_type``, from its config alone.

        Reads ``config.json`` (no weights, no transformers): metrics name their columns with it
        when they are built. Raises :class:`~evalsuite.errors.ModelUnavailableError` when absent.
        """
        return config_labels(model_config(model))

    def num_layers(self, model: str) -> int:
        return self.encoder(model).num_layers

    def special_token_ids(self, model: str) -> set[int]:
        """Ids of the sequence-start and separator tokens (weighted zero by BERTScore)."""
        tokenizer = self.encoder(model).tokenizer
        return {i for i in (tokenizer.cls_token_id, tokenizer.sep_token_id) if i is not None}

    # -- tokenisation -------------------------------------------------------------------------
    def tokenize(self, model: str, texts: Sequence[str], *, max_length: int | None = None) -> list[list[int]]:
        """Token ids with special tokens, truncated to the model's limit (counted and warned once)."""
        if not texts:
            return []
        encoder = self.encoder(model)
        limit = min(max_length or encoder.max_length, encoder.max_length)
        return self._truncated_ids(model, encoder.tokenizer, texts, limit)

    def _truncated_ids(self, model: str, tokenizer: Any, texts: Sequence[str], limit: int) -> list[list[int]]:
        ids, truncated = truncated_ids(tokenizer, texts, limit)
        if truncated:
            self.count_truncation(model, truncated, limit)
        return ids

    def count_truncation(self, model: str, count: int, limit: int) -> None:
        """Record that ``count`` texts were cut to ``limit`` tokens for ``model`` (warned once per limit)."""
        with self._lock:
            first = (model, limit) not in self._warned
            self._warned.add((model, limit))
            self.stats.truncated_texts[model] = self.stats.truncated_texts.get(model, 0) + count
        if first:
            warnings.warn(
                f"texts longer than {limit} tokens were truncated for model {model!r}; "
                "the run's manifest counts them (truncated_texts)",
                TruncationWarning,
                stacklevel=3,
            )

    # -- forward passes -----------------------------------------------------------------------
    def token_embeddings(
        self, model: str, token_ids: Sequence[Sequence[int]], *, layer: int | None = None
    ) -> list[torch.Tensor]:
        """Per-text hidden states ``[length, dim]`` (float32, CPU) after ``layer`` layers (default: last)."""
        from evalsuite.runtime.encoding import hidden_states_at

        encoder = self.encoder(model)
        layer = encoder.num_layers if layer is None else layer
        if not 0 <= layer <= encoder.num_layers:
            raise ConfigError(
                f"layer must be between 0 and {encoder.num_layers} for model {model!r}, got {layer}"
            )

        def compute(batch: list[Sequence[int]]) -> list[object]:
            hidden = hidden_states_at(encoder, batch, layer).float().cpu()
            return [hidden[row, : len(ids)] for row, ids in enumerate(batch)]

        return self.batched(token_ids, compute)  # type: ignore[return-value]

    def sentence_embeddings(self, model: str, texts: Sequence[str]) -> torch.Tensor:
        """Pooled sentence embeddings ``[n, dim]`` (float32, CPU), as sentence-transformers computes them."""
        import torch

        from evalsuite.runtime.encoding import pooled_embeddings

        encoder = self.encoder(model)
        token_ids = self.tokenize(model, texts, max_length=encoder.sentence_config.get("max_seq_length"))

        def compute(batch: list[Sequence[int]]) -> list[object]:
            return list(pooled_embeddings(encoder, batch).float().cpu())

        rows = self.batched(token_ids, compute)
        if not rows:
            return torch.empty((0, int(encoder.model.config.hidden_size)))
        return torch.stack(rows)  # type: ignore[arg-type]

    def nli(
        self,
        model: str,
        pairs: Sequence[tuple[str, str]],
        *,
        label_map: Mapping[str, str] | None = None,
    ) -> torch.Tensor:
        """Probabilities ``[n, 3]`` (float32, CPU) of entailment, neutral, contradiction per pair.

        Columns follow the model's ``id2label`` (any order; two-class heads mapped explicitly).
        Only the premise is truncated when a pair is over the model's limit (counted, warned once).
        Each distinct pair reaches the model once per runtime: repeats, within this call or across
        calls (other metrics, other records), are read from a memo of recent pairs.
        """
        import torch

        from evalsuite.runtime.nli import NLI_LABELS, label_columns, nli_probabilities

        classifier = self.load(model, "sequence-classification")
        columns = label_columns(classifier.model.config.id2label, label_map)
        if not pairs:
            return torch.empty((0, len(NLI_LABELS)))
        pairs = [(premise, hypothesis) for premise, hypothesis in pairs]
        scope = (model, tuple(sorted(label_map.items())) if label_map else None)
        found = self._nli_memo.lookup(scope, pairs)
        with self._lock:
            self.stats.nli_pairs_requested += len(pairs)
        missing = [pair for pair in dict.fromkeys(pairs) if pair not in found]
        if missing:
            rows, too_long = pair_rows(classifier.tokenizer, missing, classifier.max_length)
            if too_long:
                self.count_truncation(model, too_long, classifier.max_length)
            fresh = self.batched(rows, lambda batch: nli_probabilities(classifier, columns, batch))
            with self._lock:
                self.stats.nli_pairs_scored += len(missing)
            self._nli_memo.store(scope, missing, fresh)  # type: ignore[arg-type]
            found.update(zip(missing, fresh, strict=True))  # type: ignore[arg-type]
        return torch.stack([found[pair] for pair in pairs])

    def classify_texts(self, model: str, texts: Sequence[str]) -> tuple[torch.Tensor, list[str]]:
        """Class probabilities ``[n, labels]`` (float32, CPU) of single texts, and the label names.

        Any sequence-classification model; columns follow its ``id2label``. Multi-label heads
        (``problem_type="multi_label_classification"``) get a sigmoid per label, others a softmax.
        Each distinct text reaches the model once per call; long texts are truncated (counted, warned once).
        """
        import torch

        from evalsuite.runtime.classification import label_names, label_probabilities
        from evalsuite.runtime.encoding import classify

        classifier = self.load(model, "sequence-classification")
        config = classifier.model.config
        labels = label_names(config.id2label)
        if not texts:
            return torch.empty((0, len(labels))), labels
        unique = list(dict.fromkeys(texts))
        token_ids = self._truncated_ids(model, classifier.tokenizer, unique, classifier.max_length)

        def compute(batch: list[Sequence[int]]) -> list[object]:
            logits = classify(classifier, [[(token, 0) for token in ids] for ids in batch])
            return list(label_probabilities(logits, config.problem_type).cpu())

        rows = dict(zip(unique, self.batched(token_ids, compute), strict=True))
        return torch.stack([rows[text] for text in texts]), labels  # type: ignore[misc]

    def language_model(self, model: str) -> LoadedModel:
        """A seq2seq LM (BART, T5) or a causal LM, with its tokenizer (loaded once per process)."""
        return self.load(model, "language-model")

    def target_log_probs(self, model: str, pairs: Sequence[tuple[str, str]]) -> list[TargetLogProbs]:
        """For each (context, target) pair, the log-probability of every target token given the context.

        Seq2seq models read the context in the encoder and score the target with its special tokens
        (as BARTScore does); causal LMs read context then target as one sequence and score the
        target's tokens only. Over-long texts are cut (counted, warned once): a seq2seq context or
        target at its end; a causal context in its middle, keeping its start (instructions) and its
        end (where the answer begins), and the target only when it alone is over the limit.
        """
        from evalsuite.runtime.likelihood import score_targets

        return score_targets(self, model, pairs)

    def next_token_log_probs(self, model: str, prompts: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """A causal LM's log-probability of every vocabulary token coming next, per prompt (token ids),
        in the runtime's batches; each row is independent of what it is batched with."""
        from evalsuite.runtime.likelihood import next_token_log_probs

        lm = self.language_model(model)

        def compute(batch: list[Any]) -> list[object]:
            return list(next_token_log_probs(lm, batch))

        return self.batched(list(prompts), compute)  # type: ignore[return-value]

    def guard_probabilities(
        self, model: str, spec: GuardSpec, items: Sequence[tuple[str | None, str]]
    ) -> torch.Tensor:
        """A generative guard model's probabilities ``[n, 1 + categories]`` (float32, CPU) for
        (prompt or None, response) items: P(unsafe), then one column per category of ``spec``."""
        from evalsuite.runtime.guards import guard_probabilities

        return guard_probabilities(self, model, spec, items)

    def greedy_continuation(self, model: str, prompt: Sequence[int], max_new_tokens: int) -> list[int]:
        """The token ids a causal LM writes after ``prompt`` by greedy decoding."""
        import torch

        from evalsuite.runtime.likelihood import greedy_continuation

        with torch.inference_mode():
            return greedy_continuation(self.language_model(model), prompt, max_new_tokens)

    def nli_tokenizer(self, model: str) -> tuple[Any, int]:
        """The NLI model's tokenizer and the longest pair (in tokens) it takes."""
        classifier = self.load(model, "sequence-classification")
        return classifier.tokenizer, classifier.max_length

    # -- fact checking ------------------------------------------------------------------------
    def support(
        self,
        model: str,
        pairs: Sequence[tuple[str, str]],
        *,
        label_map: Mapping[str, str] | None = None,
    ) -> torch.Tensor:
        """P(supported) ``[n]`` (float32, CPU) that each premise (a document chunk) supports its claim.

        The model's config decides how (:mod:`evalsuite.runtime.checkers`): an NLI cross-encoder's
        P(entailment) through :meth:`nli`, a binary classifier's "supported" label (named by its
        config, its preset or ``label_map={<label>: 'supported'|'unsupported'}``), MiniCheck-Flan-T5's
        "1" against "0", or HHEM's "consistent". A ``calibration.json`` beside the model divides the
        logits by its temperature, then Platt-scales P(supported). Only the premise is cut when a
        pair is over the model's limit (counted, warned once); each distinct pair is scored once.

        >>> rt = Runtime(device="cpu")
        >>> rt.support("minicheck-flan-t5-large", [("Paris is in France.", "Paris is French.")])  # doctest: +SKIP
        tensor([0.9...])
        """
        import torch

        checker = self._checker(model, label_map)
        pairs = [(premise, claim) for premise, claim in pairs]
        if checker.kind == "nli":
            probabilities = self.nli(model, pairs, label_map=label_map)[:, checker.supported_output]
        else:
            probabilities = self._checker_probabilities(checker, pairs, label_map)
        calibration = self.load(model, checker.head).calibration
        if calibration is None or not len(probabilities):
            return probabilities.contiguous()
        return torch.from_numpy(calibration.supported(probabilities.numpy())).float()

    def support_tokenizer(self, model: str) -> tuple[Any, int]:
        """A checker's tokenizer and the most tokens ``tokenizer(premise, claim)`` may count for the
        pair to fit the checker (its prompt's own tokens taken off), to cut documents into chunks."""
        config = model_config(model)
        loaded = self.load(model, checker_head(config))
        return loaded.tokenizer, pair_budget(model, config, loaded)

    def calibration(self, model: str) -> Calibration | None:
        """The ``calibration.json`` beside a classifier's weights (read once, when it loads), or None."""
        return self.load(model, checker_head(model_config(model))).calibration

    def _checker(self, model: str, label_map: Mapping[str, str] | None) -> Checker:
        """How ``model`` is read as a fact checker, from its config (once per runtime and label map)."""
        key = (model, tuple(sorted(label_map.items())) if label_map else None)
        checker = self._checkers.get(key)
        if checker is None:
            checker = self._checkers[key] = describe_checker(model, model_config(model), label_map)
        return checker

    def _checker_probabilities(
        self, checker: Checker, pairs: list[tuple[str, str]], label_map: Mapping[str, str] | None
    ) -> torch.Tensor:
        """P(supported) of a non-NLI checker, each distinct pair scored once per runtime."""
        import torch

        loaded = self.load(checker.model, checker.head)
        if not pairs:
            return torch.empty((0,))
        scope = ("support", checker.model, tuple(sorted(label_map.items())) if label_map else None)
        found = self._nli_memo.lookup(scope, pairs)
        with self._lock:
            self.stats.support_pairs_requested += len(pairs)
        missing = [pair for pair in dict.fromkeys(pairs) if pair not in found]
        if missing:
            inputs, too_long = checker.encode(loaded, missing)
            if too_long:
                self.count_truncation(checker.model, too_long, checker.input_limit(loaded))
            fresh = self.batched(inputs, checker.scorer(loaded))
            with self._lock:
                self.stats.support_pairs_scored += len(missing)
            self._nli_memo.store(scope, missing, fresh)  # type: ignore[arg-type]
            found.update(zip(missing, fresh, strict=True))  # type: ignore[arg-type]
        return torch.stack([found[pair] for pair in pairs])

    def batched(
        self,
        items: Sequence[Any],
        compute: Any,
        *,
        lengths: Sequence[int] | None = None,
        token_budget: int | None = None,
        max_batch_size: int | None = None,
    ) -> list[object]:
        """``compute`` over length-sorted batches under ``torch.inference_mode()``, counted.

        The one batching entry of every forward pass (metrics', training's evaluation): longest
        items first, within the token budget and batch size (the runtime's unless given), halved
        on out-of-memory errors of this runtime's device; outputs in the caller's order.
        ``lengths`` default to the items' lengths.
        """
        import torch

        def counted(batch: list[Any]) -> list[object]:
            with torch.inference_mode():
                outputs = compute(batch)
            with self._lock:
                self.stats.forward_passes += 1
                self.stats.texts_encoded += len(batch)
            return list(outputs)

        return run_batched(
            list(items),
            [len(item) for item in items] if lengths is None else lengths,
            counted,
            token_budget=self.token_budget if token_budget is None else token_budget,
            max_batch_size=self.batch_size if max_batch_size is None else max_batch_size,
            is_out_of_memory=is_out_of_memory,
            on_out_of_memory=lambda: release_cached_memory(self.device),
        )
