"""``evalsuite generate``: candidates for evaluation, decoded speculatively.

Registered on the CLI app with ``app.command("generate")(generate_command)``.
Exit codes: 0 ok, 1 an unexpected failure, 2 a usage or input error (as ``evalsuite score``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import TextColumn

from evalsuite._validation import check_positive_int
from evalsuite.cli_common import (
    DeviceOption,
    DtypeOption,
    OverwriteOption,
    default_output,
    exit_on_error,
    progress_bar,
)
from evalsuite.errors import ConfigError

console = Console()


def generate_command(
    source: Annotated[
        Path, typer.Argument(help="Prompts: .jsonl, .jsonl.gz, .parquet or .csv with a 'prompt' field.")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Output file (.jsonl, .parquet, .csv). Default: IN.generated.jsonl."
        ),
    ] = None,
    target: Annotated[
        str, typer.Option("--target", help="Target model: preset, local path or hub id.")
    ] = "smollm2",
    draft: Annotated[
        str | None,
        typer.Option(
            "--draft",
            help="Drafter: 'ngram' (prompt lookup, the default), 'none' (target alone), "
            "or a smaller model with the target's tokenizer (preset, path or hub id).",
        ),
    ] = None,
    draft_layers: Annotated[
        int | None,
        typer.Option("--draft-layers", help="Draft with the target's own first K layers (layer skip)."),
    ] = None,
    num_samples: Annotated[int, typer.Option("--num-samples", "-n", help="Samples per prompt.")] = 1,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens generated per sample.")] = 256,
    temperature: Annotated[
        float | None,
        typer.Option(help="0 = greedy. Default: greedy for one sample, 1.0 for several."),
    ] = None,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass (1 = off).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same output.")] = 0,
    max_draft_tokens: Annotated[
        int, typer.Option(help="Most draft tokens per step (γ); adapted below this to the acceptance rate.")
    ] = 8,
    adaptive: Annotated[
        bool, typer.Option(help="Adapt γ to the acceptance rate (--no-adaptive: always the maximum).")
    ] = True,
    stop: Annotated[
        list[str] | None,
        typer.Option("--stop", help="Extra stop token (a single token, e.g. '<|im_end|>'). Repeatable."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Prompts decoded together (times --num-samples rows).")] = 8,
    chat_template: Annotated[
        bool, typer.Option(help="Wrap prompts in the tokenizer's chat template when it has one.")
    ] = True,
    field: Annotated[
        list[str] | None,
        typer.Option("--field", help="Map the prompt field to a column: prompt=question."),
    ] = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    chunk_size: Annotated[int, typer.Option(help="Records per checkpointed chunk.")] = 256,
    overwrite: OverwriteOption = False,
) -> None:
    """Generate answers and samples for each prompt, with speculative decoding; write records `score` reads."""
    from evalsuite.generation.generator import TextGenerator
    from evalsuite.generation.records import check_prompts, generate_file
    from evalsuite.generation.speculative import GenerationOptions, GenerationStats
    from evalsuite.records import parse_field_mapping

    with exit_on_error():
        fields = parse_field_mapping(field or [])
        if set(fields) - {"prompt"}:
            raise ConfigError(f"--field maps only the prompt here (prompt=COLUMN), got {sorted(fields)}")
        check_positive_int("--chunk-size", chunk_size)
        if temperature is None:
            temperature = 0.0 if num_samples == 1 else 1.0
        options = GenerationOptions(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            num_samples=num_samples,
            max_draft_tokens=max_draft_tokens,
            adaptive=adaptive,
            seed=seed,
            batch_size=batch_size,
        )
        total = check_prompts(source, fields, chunk_size)  # fail on a bad record before loading models
        out = output or default_output(source, "generated")
        generator = TextGenerator(
            target,
            draft=draft,
            draft_layers=draft_layers,
            device=device,
            dtype=dtype,
            chat_template=chat_template,
        )
        if stop:
            options = replace(options, stop_token_ids=generator.stop_token_ids(stop))
        started = time.perf_counter()
        tokens = GenerationStats()
        with progress_bar(TextColumn("{task.fields[rate]}")) as progress:
            task = progress.add_task("generating", total=total, rate="")

            def advance(records: int, stats: GenerationStats) -> None:
                tokens.add(stats)
                progress.update(task, advance=records, rate=f"{tokens.tokens_per_second:,.1f} tok/s")

            run = generate_file(
                generator,
                source,
                out,
                options,
                fields=fields,
                chunk_size=chunk_size,
                overwrite=overwrite,
                progress=advance,
            )

    stats = run.stats
    rate = stats.acceptance_rate
    console.print(
        f"{run.records} records, {stats.sequences} sequences, {stats.generated_tokens} tokens generated in "
        f"{time.perf_counter() - started:.1f}s ({stats.tokens_per_second:,.1f} tokens/s, "
        f"{stats.tokens_per_row_pass:.2f} tokens per sequence per target pass); drafter {generator.drafter.name}, "
        f"acceptance rate {'–' if rate is None else f'{rate:.3f}'}.\n"
        f"results: {run.output}\nmanifest: {run.manifest_file}",
        highlight=False,
    )
    if run.empty_samples:
        console.print(
            f"[yellow]{run.empty_samples} samples are empty (the model stopped at once); "
            "`evalsuite score` reports their records as bad input.[/]"
        )
