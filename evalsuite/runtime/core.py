"""The Runtime: one object that runs every model call of every metric, batched the same way."""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evalsuite.errors import ConfigError
from evalsuite.runtime.batching import run_batched
from evalsuite.runtime.device import is_out_of_memory, release_cached_memory, resolve_device, resolve_dtype
from evalsuite.runtime.models import PRESETS, LoadedModel, load_encoder, load_model, resolve_model

if TYPE_CHECKING:
    import torch


class TruncationWarning(UserWarning):
    """Some texts were longer than a model's limit and were truncated (reported once per model)."""


@dataclass(frozen=True)
class TargetLogProbs:
    """A target text's tokens and the log-probability of each given its context (float32, CPU)."""

    tokens: list[str]
    log_probs: torch.Tensor


# Logits are [tokens, vocabulary] floats: a language model's batch is capped at this many logits
# (512 MiB of float32), whatever the token budget, so a 50k-word vocabulary cannot exhaust memory.
LOGIT_BUDGET = 1 << 27


@dataclass
class RuntimeStats:
    """Counters a caller (or a test) can read: how much model work a run really did."""

    forward_passes: int = 0
    texts_encoded: int = 0
    nli_pairs_requested: int = 0  # pairs asked for by metrics, repeats included
    nli_pairs_scored: int = 0  # pairs that reached the model (each distinct pair once per run)
    truncated_texts: dict[str, int] = field(default_factory=dict)


def _start_token(tokenizer: Any) -> int:
    """A token to predict the first target token from when a causal LM gets no context."""
    for token in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token is not None:
            return int(token)
    raise ConfigError("a causal LM with neither a BOS nor an EOS token needs a non-empty context")


class Runtime:
    """Device, dtype and batching policy, shared by every metric of a run.

    Metrics never touch devices or batches: they hand texts to the runtime and get CPU tensors
    back, in their own order.

    >>> rt = Runtime(device="cpu", batch_size=16)
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
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.stats = RuntimeStats()
        # NLI probabilities by (model, label map, premise, hypothesis): metrics of one run often need
        # the same pairs (samples against samples, a prediction that is also a sample), scored once.
        self._nli_memo: OrderedDict[tuple[Any, ...], torch.Tensor] = OrderedDict()
        self._nli_memo_size = nli_memo_size
        self._lock = threading.Lock()
        self._warned: set[tuple[str, int]] = set()

    def describe(self) -> dict[str, Any]:
        """Provenance for the manifest."""
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "batch_size": self.batch_size,
            "token_budget": self.token_budget,
        }

    # -- models -------------------------------------------------------------------------------
    def encoder(self, model: str) -> LoadedModel:
        """The loaded encoder for a preset, path or hub id (loaded once per process)."""
        return load_encoder(model, self.device, self.dtype)

    def describe_model(self, model: str) -> dict[str, Any]:
        """Source, location and weights hash of a model, without loading it."""
        return resolve_model(model).describe()

    def default_layer(self, model: str) -> int | None:
        """The layer a preset recommends for token embeddings (None: the last layer)."""
        preset = PRESETS.get(model)
        return preset.default_layer if preset else None

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
        ids: list[list[int]] = tokenizer(
            list(texts), add_special_tokens=True, truncation=True, max_length=limit
        )["input_ids"]
        at_limit = [i for i, row in enumerate(ids) if len(row) >= limit]
        if at_limit:
            full = tokenizer([texts[i] for i in at_limit], add_special_tokens=True, verbose=False)[
                "input_ids"
            ]
            truncated = sum(len(row) > limit for row in full)
            if truncated:
                self._count_truncation(model, truncated, limit)
        return ids

    def _count_truncation(self, model: str, count: int, limit: int) -> None:
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

        return self._run(encoder, token_ids, compute)  # type: ignore[return-value]

    def sentence_embeddings(self, model: str, texts: Sequence[str]) -> torch.Tensor:
        """Pooled sentence embeddings ``[n, dim]`` (float32, CPU), as sentence-transformers computes them."""
        import torch

        from evalsuite.runtime.encoding import pooled_embeddings

        encoder = self.encoder(model)
        token_ids = self.tokenize(model, texts, max_length=encoder.sentence_config.get("max_seq_length"))

        def compute(batch: list[Sequence[int]]) -> list[object]:
            return list(pooled_embeddings(encoder, batch).float().cpu())

        rows = self._run(encoder, token_ids, compute)
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

        from evalsuite.runtime.nli import NLI_LABELS, label_columns

        classifier = load_model(model, self.device, self.dtype, head="sequence-classification")
        columns = label_columns(classifier.model.config.id2label, label_map)
        if not pairs:
            return torch.empty((0, len(NLI_LABELS)))
        pairs = [(premise, hypothesis) for premise, hypothesis in pairs]
        scope = (model, tuple(sorted(label_map.items())) if label_map else None)
        found: dict[tuple[str, str], torch.Tensor] = {}
        with self._lock:
            for pair in dict.fromkeys(pairs):
                row = self._nli_memo.get((*scope, *pair))
                if row is not None:
                    self._nli_memo.move_to_end((*scope, *pair))
                    found[pair] = row
            self.stats.nli_pairs_requested += len(pairs)
        missing = [pair for pair in dict.fromkeys(pairs) if pair not in found]
        if missing:
            fresh = self._score_pairs(model, classifier, columns, missing)
            with self._lock:
                self.stats.nli_pairs_scored += len(missing)
                for pair, row in zip(missing, fresh, strict=True):
                    found[pair] = row
                    self._nli_memo[(*scope, *pair)] = row
                while len(self._nli_memo) > self._nli_memo_size:
                    self._nli_memo.popitem(last=False)
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

        classifier = load_model(model, self.device, self.dtype, head="sequence-classification")
        config = classifier.model.config
        labels = label_names(config.id2label)
        if not texts:
            return torch.empty((0, len(labels))), labels
        unique = list(dict.fromkeys(texts))
        token_ids = self._truncated_ids(model, classifier.tokenizer, unique, classifier.max_length)

        def compute(batch: list[Sequence[int]]) -> list[object]:
            logits = classify(classifier, [[(token, 0) for token in ids] for ids in batch])
            return list(label_probabilities(logits, config.problem_type).cpu())

        rows = dict(zip(unique, self._run(classifier, token_ids, compute), strict=True))
        return torch.stack([rows[text] for text in texts]), labels  # type: ignore[misc]

    def language_model(self, model: str) -> LoadedModel:
        """A seq2seq LM (BART, T5) or a causal LM, with its tokenizer (loaded once per process)."""
        return load_model(model, self.device, self.dtype, head="language-model")

    def target_log_probs(self, model: str, pairs: Sequence[tuple[str, str]]) -> list[TargetLogProbs]:
        """For each (context, target) pair, the log-probability of every target token given the context.

        Seq2seq models read the context in the encoder and score the target with its special tokens
        (as BARTScore does); causal LMs read context then target as one sequence and score the
        target's tokens only. Over-long texts are cut (counted, warned once): a seq2seq context or
        target at its end; a causal context in its middle, keeping its start (instructions) and its
        end (where the answer begins), and the target only when it alone is over the limit.
        """
        from evalsuite.runtime.likelihood import is_seq2seq, shared_context_log_probs, target_log_probs

        lm = self.language_model(model)
        unique = list(dict.fromkeys(pairs))
        examples = [self._likelihood_example(model, lm, context, target) for context, target in unique]
        vocabulary = int(lm.model.config.get_text_config().vocab_size)
        token_budget = max(1, min(self.token_budget, LOGIT_BUDGET // vocabulary))

        def compute(batch: list[Any]) -> list[object]:
            return list(target_log_probs(lm, batch))

        def cost(example: tuple[list[int], list[int]]) -> int:
            # Padded positions that produce logits: the decoder's, or the whole causal sequence.
            context, target = example
            return max(len(context), len(target)) if is_seq2seq(lm) else len(context) + len(target)

        # Causal LMs share a context's pass among its targets (the candidates of one source).
        groups: dict[tuple[int, ...], list[int]] = {}
        if not is_seq2seq(lm):
            for index, (context_ids, _) in enumerate(examples):
                groups.setdefault(tuple(context_ids), []).append(index)
        shared = {prefix: indices for prefix, indices in groups.items() if len(indices) > 1}
        alone = [i for i in range(len(examples)) if tuple(examples[i][0]) not in shared]
        found = dict(
            zip(
                alone,
                self._run(
                    lm,
                    [examples[i] for i in alone],
                    compute,
                    lengths=[cost(examples[i]) for i in alone],
                    token_budget=token_budget,
                ),
                strict=True,
            )
        )
        for prefix, indices in shared.items():

            def after_prefix(batch: list[Any], prefix: tuple[int, ...] = prefix) -> list[object]:
                return list(shared_context_log_probs(lm, prefix, batch))

            targets = [examples[i][1] for i in indices]
            found.update(
                zip(indices, self._run(lm, targets, after_prefix, token_budget=token_budget), strict=True)
            )
        rows = [found[i] for i in range(len(examples))]
        scored = {
            pair: TargetLogProbs(lm.tokenizer.convert_ids_to_tokens(target), row)  # type: ignore[arg-type]
            for pair, (_, target), row in zip(unique, examples, rows, strict=True)
        }
        return [scored[pair] for pair in pairs]

    def _likelihood_example(
        self, model: str, lm: LoadedModel, context: str, target: str
    ) -> tuple[list[int], list[int]]:
        """Token ids of (context, target), cut to the model's limit."""
        from evalsuite.runtime.likelihood import is_seq2seq

        tokenizer, limit = lm.tokenizer, lm.max_length
        if is_seq2seq(lm):
            context_ids = tokenizer(context, verbose=False)["input_ids"]
            target_ids = tokenizer(target, verbose=False)["input_ids"]
            if len(context_ids) > limit or len(target_ids) > limit:
                self._count_truncation(
                    model, int(len(context_ids) > limit) + int(len(target_ids) > limit), limit
                )
            return context_ids[:limit], target_ids[:limit]
        context_ids = tokenizer(context, verbose=False)["input_ids"] or [_start_token(tokenizer)]
        target_ids = tokenizer(target, add_special_tokens=False, verbose=False)["input_ids"]
        if len(context_ids) + len(target_ids) <= limit:
            return context_ids, target_ids
        self._count_truncation(model, 1, limit)
        target_ids = target_ids[: limit - 2]
        room = limit - len(target_ids)
        head = room // 2
        return [*context_ids[:head], *context_ids[len(context_ids) - (room - head) :]], target_ids

    def nli_tokenizer(self, model: str) -> tuple[Any, int]:
        """The NLI model's tokenizer and the longest pair (in tokens) it takes."""
        classifier = load_model(model, self.device, self.dtype, head="sequence-classification")
        return classifier.tokenizer, classifier.max_length

    def _score_pairs(
        self, model: str, classifier: LoadedModel, columns: Sequence[int], pairs: Sequence[tuple[str, str]]
    ) -> list[torch.Tensor]:
        import torch

        from evalsuite.runtime.nli import NLI_LABELS

        encoded = self._encode_pairs(model, classifier, pairs)

        def compute(batch: list[Sequence[tuple[int, int]]]) -> list[object]:
            from evalsuite.runtime.encoding import classify

            probabilities = classify(classifier, batch).float().softmax(dim=-1).cpu()
            mapped = torch.zeros((len(batch), len(NLI_LABELS)))
            for output, column in enumerate(columns):
                mapped[:, column] += probabilities[:, output]
            return list(mapped)

        return self._run(classifier, encoded, compute)  # type: ignore[return-value]

    def _encode_pairs(
        self, model: str, classifier: LoadedModel, pairs: Sequence[tuple[str, str]]
    ) -> list[list[tuple[int, int]]]:
        """Token ids and segment ids of each pair; over-long premises are cut, never hypotheses."""
        tokenizer = classifier.tokenizer
        premises, hypotheses = [p for p, _ in pairs], [h for _, h in pairs]
        full = tokenizer(premises, hypotheses, truncation=False, verbose=False, return_token_type_ids=True)
        too_long = [i for i, ids in enumerate(full["input_ids"]) if len(ids) > classifier.max_length]
        if too_long:
            long_premises = [premises[i] for i in too_long]
            long_hypotheses = [hypotheses[i] for i in too_long]
            options = {"max_length": classifier.max_length, "return_token_type_ids": True}
            try:  # the premise (a source document) is what may be cut...
                cut = tokenizer(long_premises, long_hypotheses, truncation="only_first", **options)
            except Exception:  # noqa: BLE001 - ...unless the hypothesis alone is over the limit
                cut = tokenizer(long_premises, long_hypotheses, truncation="longest_first", **options)
            for row, i in enumerate(too_long):
                full["input_ids"][i] = cut["input_ids"][row]
                full["token_type_ids"][i] = cut["token_type_ids"][row]
            self._count_truncation(model, len(too_long), classifier.max_length)
        types = full.get("token_type_ids") or [[0] * len(ids) for ids in full["input_ids"]]
        return [
            list(zip(ids, kinds, strict=True)) for ids, kinds in zip(full["input_ids"], types, strict=True)
        ]

    def _run(
        self,
        encoder: LoadedModel,
        token_ids: Sequence[Any],
        compute: Any,
        *,
        lengths: Sequence[int] | None = None,
        token_budget: int | None = None,
    ) -> list[object]:
        """``compute`` over length-sorted batches, counted; ``lengths`` default to the items' lengths."""
        import torch

        def counted(batch: list[Sequence[int]]) -> list[object]:
            with torch.inference_mode():
                outputs = compute(batch)
            with self._lock:
                self.stats.forward_passes += 1
                self.stats.texts_encoded += len(batch)
            return list(outputs)

        return run_batched(
            list(token_ids),
            [len(ids) for ids in token_ids] if lengths is None else lengths,
            counted,
            token_budget=self.token_budget if token_budget is None else token_budget,
            max_batch_size=self.batch_size,
            is_out_of_memory=is_out_of_memory,
            on_out_of_memory=lambda: release_cached_memory(encoder.device),
        )
