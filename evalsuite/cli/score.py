"""``evalsuite score``: score a file with one or more metrics, resumably, and print the summary."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

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
    print_warning,
    progress_bar,
)
from evalsuite.errors import ConfigError, EvalsuiteError

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
    mlflow: Annotated[
        bool,
        typer.Option(
            "--mlflow",
            help="Log the run to MLflow: summary as metrics, configs and model hashes as params/tags, the "
            "result file, manifest and an HTML report as artifacts (the mlflow extra). Tracking URI: "
            "$MLFLOW_TRACKING_URI, else ./mlruns.",
        ),
    ] = False,
    mlflow_experiment: Annotated[
        str | None,
        typer.Option(help="MLflow experiment to log the run to (default: evalsuite); implies --mlflow."),
    ] = None,
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
        use_mlflow = mlflow or mlflow_experiment is not None
        if use_mlflow:  # before scoring: a missing extra should not cost a whole run first
            from evalsuite.integrations.mlflow import require_mlflow

            require_mlflow("--mlflow")
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
    if use_mlflow:  # before the thresholds, so a run that fails them is logged too
        log_run_to_mlflow(run.output, mlflow_experiment)
    failures = run.results.check_thresholds(thresholds) if thresholds else []
    if failures:
        err_console.print("[bold red]thresholds not met:[/]\n" + "\n".join(failures), highlight=False)
        raise typer.Exit(THRESHOLD_FAILED)


def log_run_to_mlflow(output: Path, experiment: str | None) -> None:
    """Log a scored run to MLflow with an HTML report beside it; a failure is a warning, never the run's."""
    from evalsuite.integrations.mlflow import DEFAULT_EXPERIMENT, log_to_mlflow, resolve_tracking_uri

    experiment = experiment or DEFAULT_EXPERIMENT
    report = _render_report(output)
    uri = resolve_tracking_uri()
    try:
        with err_console.status(f"logging the run to MLflow at {escape(uri)}", spinner="dots"):
            run_id = log_to_mlflow(output, experiment=experiment, report=report)
    except EvalsuiteError as error:  # MlflowLoggingError: the message names the call that logs it again
        print_warning(f"the run was not logged to MLflow: {error}")
        return
    console.print(
        (f"report: {report}\n" if report else "")
        + f"mlflow: run {run_id} in experiment {experiment!r} at {uri}",
        highlight=False,
        soft_wrap=True,  # the URI stays whole, to copy
    )


def _render_report(output: Path) -> Path | None:
    """The HTML report of ``output`` written beside it (``answers.scores.report.html``); None when it cannot be."""
    from evalsuite.manifest import sibling_path

    try:
        from evalsuite.report import write_report

        report: Path = write_report(output, sibling_path(output, ".report.html"))
    except (ImportError, EvalsuiteError, OSError) as error:  # MissingDependencyError is an ImportError too
        print_warning(
            f"no HTML report to log to MLflow ({type(error).__name__}: {error}); logging the run without it"
        )
        return None
    return report


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
