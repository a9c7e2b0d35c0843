"""The speculative decoding loop, written once for every drafter, batched with ragged acceptance.

Each step: the drafter proposes up to γ tokens per row; the target scores ``[pending token,
drafts]`` for every row in one forward pass over its KV cache; each row keeps its own accepted
prefix plus one target token (greedy: the longest prefix equal to the target's argmax; sampling:
the accept/reject rule of :mod:`evalsuite.generation.sampling`); rejected columns are rolled back
(masked, cropped where no row needs them). Rows leave the batch at a stop token or at
``max_new_tokens``. K samples of a prompt are K rows sharing one prefill.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from evalsuite.errors import ConfigError
from evalsuite.generation.drafters import DraftContext, Drafter, NoDrafter, Proposal
from evalsuite.generation.ragged_cache import RaggedCache
from evalsuite.generation.sampling import (
    SamplingParams,
    greedy_verify,
    sample,
    speculative_verify,
    token_probabilities,
)
from evalsuite.generation.schedule import MAX_DRAFT_TOKENS, DraftLengthController, PassCosts
from evalsuite.runtime.batching import run_batched
from evalsuite.runtime.device import is_out_of_memory, release_cached_memory

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class GenerationOptions:
    """How to decode: lengths, sampling, samples per prompt, draft length and seed.

    ``temperature`` 0 is greedy decoding (then ``num_samples`` must be 1: every sample would be
    the same). ``max_draft_tokens`` caps γ; with ``adaptive`` γ follows the acceptance rate,
    otherwise it is always the cap.
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    num_samples: int = 1
    max_draft_tokens: int = 8
    adaptive: bool = True
    stop_token_ids: tuple[int, ...] = ()
    seed: int = 0
    batch_size: int = 8  # prompts decoded together (each with its num_samples rows)

    def __post_init__(self) -> None:
        self.sampling  # noqa: B018 - validates temperature and top_p
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_samples < 1:
            raise ConfigError(f"the number of samples per prompt must be >= 1, got {self.num_samples}")
        if self.num_samples > 1 and self.temperature == 0:
            raise ConfigError(
                f"{self.num_samples} samples per prompt need sampling: set a temperature > 0 "
                "(temperature 0 is greedy decoding, which gives one answer)"
            )
        if not 0 <= self.max_draft_tokens <= MAX_DRAFT_TOKENS:
            raise ConfigError(
                f"the number of draft tokens (γ) must be between 0 and {MAX_DRAFT_TOKENS}, "
                f"got {self.max_draft_tokens}"
            )
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def sampling(self) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, top_p=self.top_p)


@dataclass
class Generated:
    """One generated sequence: its tokens, each token's log-probability under the target, and why it ended.

    ``token_logprobs`` are ``log p(token | prefix)`` under the target's own distribution
    (temperature 1, no top-p): what sequence likelihoods and semantic entropy use, whatever
    temperature sampled the tokens. A final stop token is included in both.
    """

    token_ids: list[int] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    finish_reason: FinishReason = "length"
    draft_judged: int = 0
    draft_accepted: int = 0

    @property
    def mean_logprob(self) -> float:
        """Mean token log-probability (Farquhar et al.'s sequence score for semantic entropy)."""
        return sum(self.token_logprobs) / len(self.token_logprobs) if self.token_logprobs else 0.0


@dataclass
class GenerationStats:
    """Counters over a run: tokens, target passes, drafts proposed, judged and accepted, time.

    ``row_passes`` counts each row of each target pass, so ``tokens_per_row_pass`` is the
    speculative gain itself: 1.0 for the target alone, more when drafts are accepted.
    """

    sequences: int = 0
    generated_tokens: int = 0
    target_passes: int = 0
    row_passes: int = 0
    draft_proposed: int = 0
    draft_judged: int = 0
    draft_accepted: int = 0
    seconds: float = 0.0

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted / judged draft tokens (judged: accepted ones plus each row's first rejection)."""
        return self.draft_accepted / self.draft_judged if self.draft_judged else None

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_row_pass(self) -> float:
        return self.generated_tokens / self.row_passes if self.row_passes else 0.0

    def add(self, other: GenerationStats) -> None:
        for name in (
            "sequences",
            "generated_tokens",
            "target_passes",
            "row_passes",
            "draft_proposed",
            "draft_judged",
            "draft_accepted",
            "seconds",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, Any]:
        rate = self.acceptance_rate
        return {
            "sequences": self.sequences,
            "generated_tokens": self.generated_tokens,
            "target_passes": self.target_passes,
            "draft_tokens_proposed": self.draft_proposed,
            "draft_tokens_judged": self.draft_judged,
            "draft_tokens_accepted": self.draft_accepted,
            "acceptance_rate": None if rate is None else round(rate, 4),
            "target_row_passes": self.row_passes,
            "tokens_per_row_pass": round(self.tokens_per_row_pass, 4),
            "seconds": round(self.seconds, 3),
            "tokens_per_second": round(self.tokens_per_second, 2),
        }


Progress = Callable[[int, GenerationStats], None]  # (prompts just finished, their batch's stats)


class SpeculativeDecoder:
    """A target causal LM and a drafter; decodes batches of token-id prompts.

    >>> # decoder = SpeculativeDecoder(target_model, NgramDrafter())
    >>> # outputs, stats = decoder.decode([[1, 2, 3], [4, 5]], GenerationOptions(max_new_tokens=16))
    >>> # outputs[0][0].token_ids  # the first prompt's first (only) sample
    """

    def __init__(self, model: Any, drafter: Drafter | None = None) -> None:
        self.model = model
        self.drafter = drafter or NoDrafter()
        self.device = next(model.parameters()).device
        self.vocab_size = int(model.config.get_text_config().vocab_size)
        self._target = RaggedCache(model)
        # What verifying w draft columns really costs on this model and hardware, learnt across batches.
        self.pass_costs = PassCosts()

    def decode(
        self,
        prompts: Sequence[Sequence[int]],
        options: GenerationOptions,
        *,
        generator: torch.Generator | None = None,
        progress: Progress | None = None,
    ) -> tuple[list[list[Generated]], GenerationStats]:
        """``options.num_samples`` sequences per prompt, in the prompts' order.

        Prompts are decoded in batches of up to ``options.batch_size``, longest first, by the
        runtime's batching (halved on an out-of-memory error). All randomness comes from
        ``generator`` (default: one seeded with ``options.seed``), so equal inputs and options give
        equal outputs. ``progress(prompts, stats)`` is called after each batch.
        """
        if generator is None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(options.seed)
        stats = GenerationStats()
        k = options.num_samples

        def compute(batch: list[Sequence[int]]) -> list[object]:
            rows, batch_stats = self.decode_batch(batch, options, generator)
            stats.add(batch_stats)
            if progress is not None:
                progress(len(batch), batch_stats)
            return [rows[i * k : (i + 1) * k] for i in range(len(batch))]

        outputs = run_batched(
            list(prompts),
            [len(prompt) + options.max_new_tokens for prompt in prompts],
            compute,
            token_budget=sys.maxsize,  # the batch size alone bounds a batch
            max_batch_size=options.batch_size,
            is_out_of_memory=is_out_of_memory,
            on_out_of_memory=lambda: release_cached_memory(self.device),
        )
        return outputs, stats  # type: ignore[return-value]

    @torch.inference_mode()
    def decode_batch(
        self, prompts: Sequence[Sequence[int]], options: GenerationOptions, generator: torch.Generator | None
    ) -> tuple[list[Generated], GenerationStats]:
        """One batch: ``len(prompts) × num_samples`` rows (the samples of prompt ``i`` are rows ``i·K … i·K+K-1``)."""
        started = time.perf_counter()
        sampling = options.sampling
        stops = frozenset(options.stop_token_ids)
        repeats = options.num_samples
        target = self._target
        logits = target.prefill(prompts)
        target.repeat_rows(repeats)
        logits = logits.repeat_interleave(repeats, dim=0)
        stats = GenerationStats(sequences=len(prompts) * repeats, target_passes=1, row_passes=target.rows)
        sequences = [list(prompts[row // repeats]) for row in range(target.rows)]
        outputs = [Generated() for _ in sequences]
        first = self._choose(logits, sampling, generator)
        first_logprobs = _token_logprobs(logits[:, None, :], first[:, None])[:, 0]
        active = list(range(target.rows))
        pending = first
        finished = [
            self._commit(outputs[row], sequences[row], [token], [logprob], stops, options.max_new_tokens)
            for row, token, logprob in zip(active, first.tolist(), first_logprobs.tolist(), strict=True)
        ]
        active, pending = self._drop_finished(active, pending, finished)
        self.drafter.start()
        controller = DraftLengthController(
            maximum=options.max_draft_tokens,
            draft_cost=self.drafter.relative_cost,
            # Timed costs make γ depend on the machine's load. Greedy output does not depend on γ, but
            # samples do (through the random draws), so sampling keeps the fixed prior: a seed then
            # gives the same samples on any run.
            costs=self.pass_costs if sampling.greedy else PassCosts(),
            adaptive=options.adaptive,
        )
        while active:
            room = max(options.max_new_tokens - len(outputs[row].token_ids) for row in active)
            gamma = min(controller.next(len(active)), room - 1)
            proposal = Proposal.empty(len(active), self.device)
            if gamma > 0 and not isinstance(self.drafter, NoDrafter):
                proposal = self.drafter.propose(
                    DraftContext(
                        sequences=[sequences[row] for row in active],
                        row_ids=active,
                        max_tokens=gamma,
                        sampling=sampling,
                        generator=generator,
                        vocab_size=self.vocab_size,
                        device=self.device,
                    )
                )
            proposal = _trimmed(proposal, controller.best_width(proposal.lengths.tolist()))
            width = proposal.width
            pass_started = time.perf_counter()
            logits = target.extend(torch.cat([pending[:, None], proposal.tokens], dim=1))
            stats.target_passes += 1
            stats.row_passes += len(active)
            if sampling.greedy:
                accepted, next_token = greedy_verify(proposal.tokens, proposal.lengths, logits)
            else:
                accepted, next_token = speculative_verify(
                    proposal.tokens,
                    proposal.lengths,
                    proposal.probabilities,
                    token_probabilities(logits[..., : self.vocab_size], sampling),
                    generator,
                )
            target.rollback(accepted + 1, width + 1)
            emitted = torch.cat([proposal.tokens, next_token[:, None]], dim=1)
            emitted = emitted.scatter(1, accepted[:, None], next_token[:, None])
            logprobs = _token_logprobs(logits, emitted)
            judged = torch.minimum(accepted + 1, proposal.lengths)
            stats.draft_proposed += int(proposal.lengths.sum())
            stats.draft_judged += int(judged.sum())
            stats.draft_accepted += int(accepted.sum())  # reading it waits for the pass to finish
            self.pass_costs.record(rows=len(active), width=width, seconds=time.perf_counter() - pass_started)
            controller.update(judged=int(judged.sum()), accepted=int(accepted.sum()))
            finished = []
            for row, count, tokens, values, judged_count in zip(
                active, accepted.tolist(), emitted.tolist(), logprobs.tolist(), judged.tolist(), strict=True
            ):
                output = outputs[row]
                output.draft_judged += judged_count
                output.draft_accepted += count
                done = self._commit(
                    output,
                    sequences[row],
                    tokens[: count + 1],
                    values[: count + 1],
                    stops,
                    options.max_new_tokens,
                )
                finished.append(done)
            active, pending = self._drop_finished(active, next_token, finished)
        stats.generated_tokens = sum(len(output.token_ids) for output in outputs)
        stats.seconds = time.perf_counter() - started
        return outputs, stats

    def _choose(
        self, logits: torch.Tensor, sampling: SamplingParams, generator: torch.Generator | None
    ) -> torch.Tensor:
        logits = logits[..., : self.vocab_size]
        if sampling.greedy:
            return logits.argmax(dim=-1)
        return sample(token_probabilities(logits, sampling), generator)

    def _drop_finished(
        self, active: list[int], pending: torch.Tensor, finished: list[bool]
    ) -> tuple[list[int], torch.Tensor]:
        if not any(finished):
            return active, pending
        keep = [position for position, done in enumerate(finished) if not done]
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        if keep:
            self._target.select(index)
        return [active[position] for position in keep], pending[index]

    @staticmethod
    def _commit(
        output: Generated,
        sequence: list[int],
        tokens: Sequence[int],
        logprobs: Sequence[float],
        stops: frozenset[int],
        max_new_tokens: int,
    ) -> bool:
        """Append a row's new tokens up to a stop token or the length limit; True when the row is done."""
        for token, logprob in zip(tokens, logprobs, strict=True):
            output.token_ids.append(token)
            output.token_logprobs.append(logprob)
            sequence.append(token)
            if token in stops:
                output.finish_reason = "stop"
                return True
            if len(output.token_ids) >= max_new_tokens:
                output.finish_reason = "length"
                return True
        return False


def _trimmed(proposal: Proposal, width: int) -> Proposal:
    """The proposal cut to its first ``width`` columns."""
    if width >= proposal.width:
        return proposal
    probabilities = proposal.probabilities
    return Proposal(
        proposal.tokens[:, :width],
        proposal.lengths.clamp(max=width),
        None if probabilities is None else probabilities[:, :width],
    )


def _token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[token]`` at each position (float32): the target's own distribution."""
    logits = logits.float()
    chosen = logits.gather(-1, tokens[..., None]).squeeze(-1)
    return chosen - logits.logsumexp(dim=-1)
