"""``evalsuite score``: score a file with one or more metrics, resumably, and print the summary."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from evalsuite._validation import check_choice
from evalsuite.cli.render import RateColumn, summary_table
from evalsuite.cli_common import (
    THRESHOLD_FAILED,
    CachePathOption,
    DeviceOption,
    DtypeOption,
    OverwriteOption,
    console,
    default_output,
    err_console,
    exit_on_error,
    progress_bar,
)
from evalsuite.errors import ConfigError

if TYPE_CHECKING:
    from evalsuite.api import Engine


def parse_metric_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"bertscore:idf=true,num_layers=4"`` → ``("bertscore", {"idf": True, "num_layers": 4})``."""
    name, _, options = spec.partition(":")
    config: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in options.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"metric option must look like key=value, got {item!r} in {spec!r}")
        try:
            config[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            config[key.strip()] = raw  # a bare string such as a model name or path
    return name.strip(), config


def parse_thresholds(items: list[str]) -> dict[str, float]:
    """``["bertscore_f1=0.85"]`` → ``{"bertscore_f1": 0.85}``."""
    thresholds: dict[str, float] = {}
    for item in items:
        column, sep, value = item.partition("=")
        try:
            thresholds[column.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"--fail-under expects COLUMN=NUMBER, e.g. bertscore_f1=0.85, got {item!r}")
    return thresholds


def score_command(
    source: Annotated[Path, typer.Argument(help="Input file: .jsonl, .jsonl.gz, .parquet or .csv.")],
    metric: Annotated[
        list[str],
        typer.Option(
            "--metric", "-m", help="Metric to compute, with options: -m bertscore:idf=true. Repeatable."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Output file (.jsonl, .parquet, .csv). Default: IN.scores.jsonl."
        ),
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option("--field", help="Map a canonical field to a column: prediction=output."),
    ] = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    batch_size: Annotated[int, typer.Option(help="Most texts per model forward pass.")] = 64,
    chunk_size: Annotated[
        int, typer.Option(help="Records per checkpointed chunk (--engine ray: most records per worker call).")
    ] = 1000,
    fail_under: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-under", help="Exit 1 when a score's mean misses it: bertscore_f1=0.85. Repeatable."
        ),
    ] = None,
    on_error: Annotated[
        str, typer.Option(help="fail: stop at the first bad record; skip: log it and go on.")
    ] = "fail",
    overwrite: OverwriteOption = False,
    cache: Annotated[bool, typer.Option(help="Reuse scores cached from earlier runs.")] = True,
    cache_path: CachePathOption = None,
    engine: Annotated[
        str, typer.Option(help="local: score in this process; ray: on a Ray cluster (the ray extra).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="--engine ray: the cluster to join: auto (this machine's: `ray start --head`, a KubeRay "
            "pod) or ray://HOST:10001. Default: $RAY_ADDRESS, else a local Ray started for this run."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="--engine ray: scoring workers (default: one per --gpus-per-worker GPUs, else per CPU)."
        ),
    ] = None,
    gpus_per_worker: Annotated[
        float,
        typer.Option(help="--engine ray: GPUs each worker gets from Ray (0: CPU only; 0.5: two per GPU)."),
    ] = 0.0,
) -> None:
    """Score a file with one or more metrics, resumably, and print the summary.

    With --engine ray the records are scored by a pool of Ray workers, each with its models loaded
    once; the output, resume, manifest and summary are the local engine's.
    """
    from evalsuite.api import Scorer
    from evalsuite.records import parse_field_mapping
    from evalsuite.registry import load_metric

    with exit_on_error():
        thresholds = parse_thresholds(fail_under or [])
        fields = parse_field_mapping(field or [])
        check_choice("--on-error", on_error, ("fail", "skip"))
        run_engine = _score_engine(engine, ray_address, workers, gpus_per_worker)
        metrics = [load_metric(name, **config) for name, config in map(parse_metric_spec, metric)]
        out = output or default_output(source, "scores")
        scorer = Scorer(
            metrics,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            chunk_size=chunk_size,
            cache=(cache_path or True) if cache else False,
        )
        unknown = sorted(set(thresholds) - set(scorer.score_columns))
        if unknown:
            raise ConfigError(
                f"--fail-under names unknown score column(s) {unknown}; this run has {scorer.score_columns}"
            )
        started = time.perf_counter()
        with progress_bar(RateColumn()) as progress:
            # The total is known after the run's first pass over the input (hash, count, validation).
            task = progress.add_task("scoring", total=None)
            run = scorer.score_file(
                source,
                out,
                fields=fields,
                on_error=on_error,  # type: ignore[arg-type]
                overwrite=overwrite,
                progress=lambda n: progress.advance(task, n),
                on_count=lambda total: progress.update(task, total=total),
                engine=run_engine,
            )
        scorer.close()

    elapsed = time.perf_counter() - started
    console.print(summary_table(run.summary))
    console.print(
        f"{run.records} records scored, {run.errors} bad records"
        + (f" (see {run.errors_file})" if run.errors_file else "")
        + f", {scorer.cache_hits} of {scorer.cache_hits + scorer.cache_misses} metric scores from cache,"
        f" in {elapsed:.1f}s.\n"
        f"results: {run.output}\nmanifest: {run.manifest_file}",
        highlight=False,
    )
    truncated = sum(run.run_manifest.truncated_texts.values())
    if truncated:
        console.print(f"[yellow]{truncated} texts were truncated to the model's limit.[/]")
    failures = run.results.check_thresholds(thresholds) if thresholds else []
    if failures:
        err_console.print("[bold red]thresholds not met:[/]\n" + "\n".join(failures), highlight=False)
        raise typer.Exit(THRESHOLD_FAILED)


def _score_engine(
    engine: str, ray_address: str | None, workers: int | None, gpus_per_worker: float
) -> Engine | None:
    """The engine `score` runs on (None: the local one); Ray options without --engine ray are refused."""
    check_choice("--engine", engine, ("local", "ray"))
    if engine == "local":
        given = [
            name
            for name, value in (
                ("--ray-address", ray_address),
                ("--workers", workers),
                ("--gpus-per-worker", gpus_per_worker),
            )
            if value
        ]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply to --engine ray")
        return None
    from evalsuite.distributed import RayEngine

    # Ray's own convention: a KubeRay RayJob or `ray job submit` sets RAY_ADDRESS for its entrypoint.
    address = ray_address or os.environ.get("RAY_ADDRESS") or None
    return RayEngine(address=address, workers=workers, gpus_per_worker=gpus_per_worker)
