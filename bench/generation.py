"""Side-by-side benchmark: evalsuite's speculative generator against transformers' own decoding.

Run::

    python bench/generation.py --data /path/to/shared/data            # or set EVALSUITE_DATA
    python bench/generation.py --data DIR --prompts 2 --max-new-tokens 16 --repeats 1   # smoke run
    python bench/generation.py --data DIR --target HuggingFaceTB/SmolLM2-1.7B-Instruct \\
        --draft-model HuggingFaceTB/SmolLM2-135M-Instruct                 # online users

In one run, on the same prompts and ``max_new_tokens``, greedy decoding with:

* ``hf generate``: the target alone, ``model.generate(do_sample=False)``, one prompt at a time (the
  baseline every ratio refers to), and batched with left padding (``--batch-size`` prompts);
* ``hf assisted``: transformers' assisted generation, one prompt at a time (it does not batch):
  ``assistant_model=`` the layer-skip draft (the target's first ``--draft-layers`` layers; a real
  draft model with ``--draft-model``), and ``prompt_lookup_num_tokens=10``;
* ``evalsuite``: this generator with each drafter (none, ngram, layer-skip, and the draft model
  when given), one prompt at a time, and batched (``--batch-size`` prompts per batch).

Two prompt sets: *grounded* (summarise, or answer from, a CNN/DailyMail article of SummEval,
``summarization/bartscore_SummEval_data.json``; the article is cut to ``--passage-chars`` at a
sentence end) and *open-ended* (questions and writing tasks with nothing to copy from).
Every run is checked token for token against the target-alone greedy output of each prompt
(``identical`` column). Reported: tokens/s (generated tokens, stop tokens included, over wall
time, best of ``--repeats`` runs that alternate between the methods, model loading and a warm-up
excluded), ratio to ``hf generate``, acceptance rate
(accepted / judged draft tokens) and tokens per row per target forward pass (the speculative
gain itself: 1.00 for the target alone).

Targets checked (CPU, float32, packaged SmolLM2-135M-Instruct): on the grounded set evalsuite
reaches >= 1.5x the tokens/s of ``hf generate`` with identical greedy output; on each set it is
not slower than transformers' assisted generation with the same kind of drafter; a batch of
``--batch-size`` prompts decodes faster per token than the same prompts one at a time. This is a
benchmark, not a test: the exit status does not depend on the targets being met.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evalsuite.datasets import resolve_data_dir
from evalsuite.errors import EvalsuiteError
from evalsuite.generation.drafters import Drafter, ModelDrafter, NgramDrafter, NoDrafter
from evalsuite.generation.generator import TextGenerator
from evalsuite.generation.speculative import GenerationOptions, SpeculativeDecoder

SUMMEVAL = Path("summarization") / "bartscore_SummEval_data.json"
GROUNDED_TEMPLATES = (
    "Summarise the following article in three sentences.\n\n{passage}",
    "Answer from the passage only: who is it about, and what happened?\n\nPassage: {passage}",
)
OPEN_PROMPTS = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain why the sky is blue to a ten-year-old.",
    "Give me three ideas for a rainy Sunday afternoon.",
    "What are the pros and cons of working from home?",
    "Write a haiku about autumn, then explain it.",
    "How do I make a good cup of tea?",
    "Describe your ideal city of the future.",
    "Why do people enjoy music?",
    "Write a polite email asking a neighbour to turn down their music.",
    "What should I consider when adopting a dog?",
    "Invent a new board game and explain its rules.",
    "What is the difference between weather and climate?",
    "Tell me a fun fact about octopuses and why it matters.",
    "Write a motivational message for someone starting a new job.",
    "Plan a three-day trip to a city you like.",
    "How does a bicycle stay upright?",
)
TARGET_SPEEDUP = 1.5
PROMPT_LOOKUP_TOKENS = 10


@dataclass
class Run:
    """One decoding method over one prompt set: outputs, time and counters."""

    name: str
    batch: int
    outputs: list[list[int]] = field(default_factory=list)
    seconds: float = 0.0
    accepted: int = 0
    judged: int = 0
    passes: int = 0

    @property
    def tokens(self) -> int:
        return sum(len(tokens) for tokens in self.outputs)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def acceptance(self) -> str:
        return f"{self.accepted / self.judged:.3f}" if self.judged else "–"


def passage(text: str, chars: int) -> str:
    """The article's start, cut at the last sentence end before ``chars`` characters."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= chars:
        return text
    cut = text[:chars]
    end = cut.rfind(" . ")
    return cut[: end + 2] if end > chars // 2 else cut


def grounded_prompts(data_dir: Path, count: int, chars: int) -> list[str]:
    documents = json.loads((data_dir / SUMMEVAL).read_text(encoding="utf-8"))
    sources = [entry["src"] for entry in documents.values()][:count]
    return [
        GROUNDED_TEMPLATES[index % len(GROUNDED_TEMPLATES)].format(passage=passage(source, chars))
        for index, source in enumerate(sources)
    ]


def until_stop(tokens: Sequence[int], stop: int) -> list[int]:
    tokens = list(tokens)
    return tokens[: tokens.index(stop) + 1] if stop in tokens else tokens


def hf_single(
    model: Any, prompts: Sequence[list[int]], max_new: int, eos: int, **extra: Any
) -> list[list[int]]:
    outputs = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        result = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new, do_sample=False,
            eos_token_id=eos, pad_token_id=eos, **extra,
        )  # fmt: skip
        outputs.append(until_stop(result[0, len(prompt) :].tolist(), eos))
    return outputs


def hf_batched(
    model: Any, prompts: Sequence[list[int]], max_new: int, eos: int, batch: int
) -> list[list[int]]:
    outputs: list[list[int]] = []
    for start in range(0, len(prompts), batch):
        group = prompts[start : start + batch]
        width = max(len(prompt) for prompt in group)
        ids = torch.tensor([[eos] * (width - len(p)) + p for p in group])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in group])
        result = model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos,
        )
        outputs.extend(until_stop(row[width:].tolist(), eos) for row in result)
    return outputs


@dataclass
class Case:
    """A decoding method to time: ``work(prompts, max_new)`` returns the outputs and the draft counters."""

    name: str
    batch: int
    work: Callable[[Sequence[list[int]], int], tuple[list[list[int]], tuple[int, int, int]]]


def hf_case(name: str, batch: int, run: Callable[[Sequence[list[int]], int], list[list[int]]]) -> Case:
    return Case(name, batch, lambda prompts, max_new: (run(prompts, max_new), (0, 0, 0)))


def ours_case(model: Any, drafter: Drafter, eos: int, batch: int, name: str) -> Case:
    decoder = SpeculativeDecoder(model, drafter)

    def work(prompts: Sequence[list[int]], max_new: int) -> tuple[list[list[int]], tuple[int, int, int]]:
        options = GenerationOptions(max_new_tokens=max_new, stop_token_ids=(eos,), batch_size=batch)
        outputs, stats = decoder.decode(prompts, options)
        counters = (stats.draft_accepted, stats.draft_judged, stats.row_passes)
        return [rows[0].token_ids for rows in outputs], counters

    return Case(name, batch, work)


def bench_set(
    label: str,
    texts: Sequence[str],
    generator: TextGenerator,
    drafters: dict[str, Drafter],
    args: argparse.Namespace,
) -> list[Run]:
    model = generator.target.model
    eos = int(generator.target.tokenizer.eos_token_id)
    prompts = [generator.encode_prompt(text) for text in texts]
    batch = args.batch_size
    layer_view = drafters["layer-skip"].model  # type: ignore[attr-defined]
    assistant = drafters["draft-model"].model if "draft-model" in drafters else layer_view  # type: ignore[attr-defined]
    assistant_name = "draft model" if "draft-model" in drafters else f"layer-skip {args.draft_layers}"
    cases = [
        hf_case("hf generate (target alone)", 1, lambda p, n: hf_single(model, p, n, eos)),
        hf_case(
            f"hf assisted: assistant_model={assistant_name}",
            1,
            lambda p, n: hf_single(model, p, n, eos, assistant_model=assistant),
        ),
        hf_case(
            f"hf assisted: prompt_lookup_num_tokens={PROMPT_LOOKUP_TOKENS}",
            1,
            lambda p, n: hf_single(model, p, n, eos, prompt_lookup_num_tokens=PROMPT_LOOKUP_TOKENS),
        ),
        *(ours_case(model, drafter, eos, 1, f"evalsuite {name}") for name, drafter in drafters.items()),
    ]
    if batch > 1:
        cases.append(
            hf_case(
                "hf generate (target alone), left-padded batch",
                batch,
                lambda p, n: hf_batched(model, p, n, eos, batch),
            )
        )
        cases.extend(
            ours_case(model, drafters[name], eos, batch, f"evalsuite {name}") for name in ("none", "ngram")
        )

    runs = [Run(case.name, case.batch) for case in cases]
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # assisted generation warns about its own generation_config on every call
        for case in cases:
            case.work(prompts[:1], 4)  # warm-up
        # Repeats alternate between the methods (machine load drifts); the best time of each counts.
        for _ in range(args.repeats):
            for case, run in zip(cases, runs, strict=True):
                started = time.perf_counter()
                outputs, (accepted, judged, passes) = case.work(prompts, args.max_new_tokens)
                seconds = time.perf_counter() - started
                if not run.seconds or seconds < run.seconds:
                    run.seconds = seconds
                run.outputs, run.accepted, run.judged, run.passes = outputs, accepted, judged, passes
    report(label, runs, len(prompts), args.max_new_tokens)
    return runs


def report(label: str, runs: list[Run], prompts: int, max_new: int) -> None:
    baseline = runs[0]
    print(
        f"\n## {label}: {prompts} prompts, max_new_tokens={max_new}, greedy, threads={torch.get_num_threads()}"
    )
    header = (
        "run",
        "batch",
        "tokens",
        "seconds",
        "tokens/s",
        "vs hf generate",
        "acceptance",
        "tokens/row-pass",
        "identical",
    )
    rows = []
    for run in runs:
        identical = sum(a == b for a, b in zip(run.outputs, baseline.outputs, strict=True))
        rows.append((
            run.name, str(run.batch), str(run.tokens), f"{run.seconds:.2f}", f"{run.tokens_per_second:.2f}",
            f"{run.tokens_per_second / baseline.tokens_per_second:.2f}x", run.acceptance,
            f"{run.tokens / run.passes:.2f}" if run.passes else "–", f"{identical}/{len(run.outputs)}",
        ))  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def find(runs: list[Run], name: str, batch: int = 1) -> Run | None:
    return next((run for run in runs if run.name == name and run.batch == batch), None)


def targets(results: dict[str, list[Run]], batch: int) -> list[str]:
    lines = []
    grounded = results.get("grounded")
    if grounded:
        base, best = grounded[0], find(grounded, "evalsuite ngram")
        if best:
            ratio = best.tokens_per_second / base.tokens_per_second
            same = all(a == b for a, b in zip(best.outputs, base.outputs, strict=True))
            met = ratio >= TARGET_SPEEDUP and same
            lines.append(
                f"grounded, evalsuite ngram (batch 1) vs hf generate: {ratio:.2f}x, identical={same} "
                f"(target >= {TARGET_SPEEDUP}x, identical) -> {'MET' if met else 'MISSED'}"
            )
        batched = find(grounded, "evalsuite ngram", batch)
        if batched and batch > 1:
            ratio = batched.tokens_per_second / base.tokens_per_second
            same = all(a == b for a, b in zip(batched.outputs, base.outputs, strict=True))
            lines.append(
                f"grounded, evalsuite ngram (batch {batch}) vs hf generate one at a time: {ratio:.2f}x, "
                f"identical={same} -> {'MET' if ratio >= TARGET_SPEEDUP and same else 'MISSED'}"
            )
    for label, runs in results.items():
        pairs = [
            ("evalsuite ngram", f"hf assisted: prompt_lookup_num_tokens={PROMPT_LOOKUP_TOKENS}"),
            (
                "evalsuite layer-skip",
                next(r.name for r in runs if r.name.startswith("hf assisted: assistant_model")),
            ),
        ]
        if find(runs, "evalsuite draft-model"):
            pairs[1] = ("evalsuite draft-model", pairs[1][1])
        for mine, peer in pairs:
            a, b = find(runs, mine), find(runs, peer)
            if a and b:
                ratio = a.tokens_per_second / b.tokens_per_second
                lines.append(
                    f"{label}, {mine} vs {peer}: {ratio:.2f}x (target >= 1.0x) -> {'MET' if ratio >= 1 else 'MISSED'}"
                )
        if batch > 1:
            for name in ("evalsuite none", "evalsuite ngram"):
                single, together = find(runs, name), find(runs, name, batch)
                if single and together:
                    ratio = together.tokens_per_second / single.tokens_per_second
                    lines.append(
                        f"{label}, {name}: batch of {batch} vs one at a time: {ratio:.2f}x tokens/s "
                        f"(target > 1.0x) -> {'MET' if ratio > 1 else 'MISSED'}"
                    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", help="shared data directory (default: $EVALSUITE_DATA)")
    parser.add_argument("--target", default="smollm2", help="target model: preset, path or hub id")
    parser.add_argument("--draft-model", help="a smaller model with the target's tokenizer (online pairs)")
    parser.add_argument("--draft-layers", type=int, default=20, help="layer-skip draft depth")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per set")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--passage-chars", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (best counts)")
    parser.add_argument("--sets", default="grounded,open", help="comma-separated: grounded, open")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    from transformers.utils import logging as transformers_logging

    # Assisted generation logs a deprecation notice about its own generation_config on every call.
    transformers_logging.set_verbosity_error()

    try:
        data_dir = resolve_data_dir(args.data, needs=[str(SUMMEVAL)])
        generator = TextGenerator(args.target, draft="none", device=args.device, dtype=args.dtype)
        model = generator.target.model
        layer_skip = TextGenerator(
            args.target, draft_layers=args.draft_layers, device=args.device, dtype=args.dtype
        )
        drafters: dict[str, Drafter] = {
            "none": NoDrafter(),
            "ngram": NgramDrafter(),
            "layer-skip": layer_skip.drafter,
        }
        if args.draft_model:
            drafters["draft-model"] = TextGenerator(
                args.target, draft=args.draft_model, device=args.device, dtype=args.dtype
            ).drafter
    except EvalsuiteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    assert isinstance(drafters["layer-skip"], ModelDrafter)
    print(
        f"target {args.target} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params) on "
        f"{args.device}/{args.dtype}; layer-skip draft = first {args.draft_layers} of "
        f"{model.config.num_hidden_layers} layers; torch {torch.__version__}"
    )
    prompt_sets = {
        "grounded": lambda: grounded_prompts(data_dir, args.prompts, args.passage_chars),
        "open": lambda: list(OPEN_PROMPTS[: args.prompts]),
    }
    results = {}
    for label in [name.strip() for name in args.sets.split(",") if name.strip()]:
        results[label] = bench_set(label, prompt_sets[label](), generator, drafters, args)
    print("\n## targets")
    for line in targets(results, args.batch_size):
        print(f"- {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
