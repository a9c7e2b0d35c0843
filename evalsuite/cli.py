"""The ``evalsuite`` command line: score files, list metrics and models.

Exit codes: 0 ok, 1 a threshold failed, 2 a usage or input error, 3 an unexpected failure (see
:mod:`evalsuite.cli_common`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from evalsuite.cli_common import (
    THRESHOLD_FAILED,
    USAGE_ERROR,
    DeviceOption,
    DtypeOption,
    EvalsuiteGroup,
    OverwriteOption,
    err_console,
    exit_on_error,
    print_error,
)
from evalsuite.errors import ConfigError
from evalsuite.generation.command import generate_command
from evalsuite.service.command import serve_app
from proxies.command import proxy_app

if TYPE_CHECKING:
    from evalsuite.api import Engine

app = typer.Typer(
    name="evalsuite",
    help="Evaluate LLM outputs with small models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=EvalsuiteGroup,
)
console = Console()


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


def _default_output(source: Path) -> Path:
    name = source.name
    for suffix in (".jsonl.gz", ".ndjson.gz", ".jsonl", ".ndjson", ".parquet", ".csv"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return source.with_name(f"{name}.scores.jsonl")


@app.command()
def score(
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
    cache_path: Annotated[Path | None, typer.Option(help="SQLite score cache file.")] = None,
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
    from evalsuite.records import count_records, parse_field_mapping
    from evalsuite.registry import load_metric

    with exit_on_error():
        thresholds = parse_thresholds(fail_under or [])
        fields = parse_field_mapping(field or [])
        if on_error not in ("fail", "skip"):
            raise ConfigError(f"--on-error must be 'fail' or 'skip', got {on_error!r}")
        run_engine = _score_engine(engine, ray_address, workers, gpus_per_worker)
        metrics = [load_metric(name, **config) for name, config in map(parse_metric_spec, metric)]
        out = output or _default_output(source)
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
        total = count_records(source)
        started = time.perf_counter()
        with _progress() as progress:
            task = progress.add_task("scoring", total=total)
            run = scorer.score_file(
                source,
                out,
                fields=fields,
                on_error=on_error,  # type: ignore[arg-type]
                overwrite=overwrite,
                progress=lambda n: progress.advance(task, n),
                engine=run_engine,
            )
        scorer.close()

    elapsed = time.perf_counter() - started
    console.print(_summary_table(run.summary))
    console.print(
        f"{run.records} records scored, {run.errors} bad records"
        + (f" (see {run.errors_file})" if run.errors_file else "")
        + f", {scorer.cache_hits} of {scorer.cache_hits + scorer.cache_misses} metric scores from cache,"
        f" in {elapsed:.1f}s.\n"
        f"results: {run.output}\nmanifest: {run.manifest_file}",
        highlight=False,
    )
    truncated = sum(run.manifest.get("truncated_texts", {}).values())
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
    if engine != "ray":
        raise ConfigError(f"--engine must be 'local' or 'ray', got {engine!r}")
    from evalsuite.distributed import RayEngine

    # Ray's own convention: a KubeRay RayJob or `ray job submit` sets RAY_ADDRESS for its entrypoint.
    address = ray_address or os.environ.get("RAY_ADDRESS") or None
    return RayEngine(address=address, workers=workers, gpus_per_worker=gpus_per_worker)


class _RateColumn(ProgressColumn):
    """Records per second (rich's own speed column is for bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f} rec/s")


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not sys.stderr.isatty(),
    )


def _summary_table(summary: Any) -> Table:
    table = Table(title="summary", title_justify="left")
    for name in ("score", "mean", "std", "95% CI", "n", "errors"):
        table.add_column(name, justify="left" if name == "score" else "right")

    def number(value: float | None) -> str:
        return "–" if value is None else f"{value:.4f}"

    for row in summary.iter_rows(named=True):
        interval = "–" if row["ci_low"] is None else f"{row['ci_low']:.4f}–{row['ci_high']:.4f}"
        table.add_row(
            row["score"], number(row["mean"]), number(row["std"]), interval, str(row["n"]), str(row["errors"])
        )
    return table


@app.command("metrics")
def list_metrics_command() -> None:
    """List the registered metrics: fields they need, scores, direction and default config."""
    from evalsuite.registry import get_metric_class, list_metrics

    table = Table(title="metrics", title_justify="left")
    table.add_column("metric", no_wrap=True, style="bold")
    for name in ("needs fields", "scores (column = metric_score)", "evidence columns", "better", "defaults"):
        table.add_column(name)
    descriptions = []
    for name in list_metrics():
        try:
            metric = get_metric_class(name)()
        except Exception as error:  # noqa: BLE001 - a broken plugin must not hide the others
            table.add_row(name, "", "", "", "", f"[red]failed to load: {error}[/]")
            continue
        optional = [f"{field} (optional)" for field in metric.optional_fields]
        table.add_row(
            name,
            ", ".join([*metric.fields, *optional]),
            ", ".join(metric.score_names),
            ", ".join(metric.detail_names),
            "higher" if metric.higher_is_better else "lower",
            ", ".join(f"{key}={value}" for key, value in metric.config.items()),
        )
        descriptions.append(f"[bold]{name}[/]: {metric.description} {metric.citation}")
    console.print(table)
    for line in descriptions:
        console.print(line)


@app.command("models")
def list_models_command() -> None:
    """List the model presets and whether each is available offline."""
    from evalsuite.runtime.models import PRESETS, availability

    table = Table(title="model presets", title_justify="left")
    table.add_column("preset", no_wrap=True, style="bold")
    table.add_column("available", no_wrap=True)
    for name in ("where", "description"):
        table.add_column(name)
    for name, preset in sorted(PRESETS.items()):
        status, where = availability(name)
        color = "green" if status in ("packaged", "hub cache") else "yellow"
        table.add_row(name, f"[{color}]{status}[/]", where, preset.description)
    console.print(table)
    console.print("Any hub id or local model directory works too (-m bertscore:model=PATH).")


@app.command("nli-eval")
def nli_eval_command(
    source: Annotated[Path, typer.Argument(help='JSON lines of {"premise", "hypothesis", "label"}.')],
    model: Annotated[str, typer.Option(help="NLI preset, local path or hub id.")] = "nli-minilm",
    device: DeviceOption = "auto",
    batch_size: Annotated[int, typer.Option(help="Most pairs per forward pass.")] = 64,
    limit: Annotated[int | None, typer.Option(help="Only the first N pairs.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON here.")
    ] = None,
) -> None:
    """Evaluate an NLI model: accuracy, per-class precision/recall, confusion matrix, calibration (ECE)."""
    from evalsuite.runtime import Runtime
    from evalsuite.runtime.nli import NLI_LABELS
    from evalsuite.training.nli_eval import nli_report, read_nli_pairs

    with exit_on_error():
        pairs, labels = read_nli_pairs(source, limit)
        runtime = Runtime(device=device, batch_size=batch_size)
        started = time.perf_counter()
        probabilities = runtime.nli(model, pairs).numpy()
        report = nli_report(model, probabilities, labels, time.perf_counter() - started)
    table = Table(title=f"{model} on {source.name}: {report.pairs} pairs", title_justify="left")
    for name in ("gold \\ predicted", *NLI_LABELS, "precision", "recall", "f1"):
        table.add_column(name, justify="left" if name.startswith("gold") else "right")
    for label, row in zip(NLI_LABELS, report.confusion, strict=True):
        scores = report.per_class[label]
        table.add_row(label, *map(str, row), *(f"{scores[k]:.3f}" for k in ("precision", "recall", "f1")))
    console.print(table)
    two_way = report.entailment_vs_contradiction
    console.print(
        f"accuracy {report.accuracy:.4f} · entailment-vs-contradiction accuracy {two_way['accuracy']:.4f} "
        f"({two_way['pairs']} pairs) · ECE {report.expected_calibration_error:.4f} · "
        f"{report.pairs_per_second:.0f} pairs/s",
        highlight=False,
    )
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")


@app.command("compare")
def compare_command(
    run_a: Annotated[Path, typer.Argument(help="Baseline result file (A): .parquet, .jsonl or .csv.")],
    run_b: Annotated[Path, typer.Argument(help="Candidate result file (B), paired with A on record id.")],
    score: Annotated[
        list[str] | None,
        typer.Option("--score", "-s", help="Only this score column (default: every shared one). Repeatable."),
    ] = None,
    confidence: Annotated[float, typer.Option(help="Confidence level of the bootstrap CIs.")] = 0.95,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed (the dashboard uses 0).")] = 0,
    worst: Annotated[
        int, typer.Option(help="List the N records that got worse the most, per score (0: none).")
    ] = 3,
    fail_if_worse: Annotated[
        bool, typer.Option(help="Exit 1 when a score got significantly worse (its CI excludes 0).")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the comparison as JSON here.")
    ] = None,
) -> None:
    """Compare run B with run A record by record: differences, paired CIs and tests.

    Per score: the mean difference (B − A) with a paired bootstrap CI, the Wilcoxon signed-rank
    p-value, wins/ties/losses by the metric's direction, and the records that got worse the most;
    a warning when the runs' metric configs differ. The same numbers as the dashboard's Compare page. Exit codes: 0 ok, 1 with --fail-if-worse when a
    score got significantly worse, 2 a usage error (missing file, corrupt manifest, nothing to pair).
    """
    import polars as pl
    from rich.markup import escape

    from evalsuite.results import compare, scan_results

    try:
        comparison = compare(
            scan_results(run_a).scores(),
            scan_results(run_b).scores(),
            score_columns=score or None,
            confidence=confidence,
            n_resamples=resamples,
            seed=seed,
        )
    except ConfigError as error:
        print_error(error)
        raise typer.Exit(USAGE_ERROR) from None

    for line in comparison.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    # The table is wider than the 80 columns rich assumes off a terminal (CI logs): never squeeze it.
    out = console if console.is_terminal else Console(width=max(console.width, 160))
    out.print(_comparison_table(comparison, run_a, run_b))
    out.print(
        f"{comparison.paired.height} records paired on id. diff = mean of B − A; "
        f"{confidence * 100:g}% CI: paired bootstrap ({resamples} resamples, seed {seed}); "
        "p: two-sided Wilcoxon signed-rank; W/T/L: records where B is better / equal / worse.",
        highlight=False,
    )
    if worst > 0:
        table = Table(title=f"records that got worse the most ({worst} per score)", title_justify="left")
        for name in ("score", "id", "A", "B", "B − A"):
            table.add_column(name, justify="left" if name in ("score", "id") else "right", no_wrap=True)
        for column in comparison.score_columns:
            changes = comparison.changes(column).filter(pl.col("improvement") < 0).head(worst)
            for row in changes.iter_rows(named=True):
                table.add_row(
                    column, str(row["id"]), f"{row['a']:.4f}", f"{row['b']:.4f}", f"{row['diff']:+.4f}"
                )
        if table.row_count:
            out.print(table)
    if json_out is not None:
        report = {
            "a": str(run_a),
            "b": str(run_b),
            "paired": comparison.paired.height,
            "only_in_a": comparison.only_in_a,
            "only_in_b": comparison.only_in_b,
            "warnings": comparison.warnings,
            "scores": comparison.table.to_dicts(),
        }
        json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if fail_if_worse and comparison.any_worse():
        worse = comparison.table.filter(comparison.table["verdict"] == "worse")["score"].to_list()
        err_console.print(f"[bold red]got worse:[/] {', '.join(worse)}", highlight=False)
        raise typer.Exit(THRESHOLD_FAILED)


def _format_difference(value: float | None) -> str:
    """A signed difference as ``compare`` prints it (and the dashboard shows it): ``+0.0123``."""
    return "–" if value is None else f"{value:+.4f}"


def _comparison_table(comparison: Any, run_a: Path, run_b: Path) -> Table:
    table = Table(title=f"B = {run_b.name} vs A = {run_a.name}", title_justify="left")
    for name in ("score", "better", "n", "mean A", "mean B", "B − A", "95% CI", "p", "W/T/L", "verdict"):
        table.add_column(name, justify="left" if name in ("score", "verdict") else "right", no_wrap=True)
    if comparison.confidence != 0.95:
        table.columns[6].header = f"{comparison.confidence * 100:g}% CI"
    colors = {"better": "green", "worse": "red"}
    for row in comparison.table.iter_rows(named=True):
        mean = "–" if row["mean_a"] is None else None
        interval = (
            "–"
            if row["ci_low"] is None
            else f"{_format_difference(row['ci_low'])} – {_format_difference(row['ci_high'])}"
        )
        verdict = row["verdict"]
        table.add_row(
            row["score"],
            "↑" if row["higher_is_better"] else "↓",
            str(row["n"]),
            mean or f"{row['mean_a']:.4f}",
            mean or f"{row['mean_b']:.4f}",
            _format_difference(row["diff"]),
            interval,
            "–" if row["p_value"] is None else f"{row['p_value']:.3g}",
            f"{row['wins']}/{row['ties']}/{row['losses']}",
            f"[{colors[verdict]}]{verdict}[/]" if verdict in colors else verdict,
        )
    return table


@app.command("dashboard")
def dashboard_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Result files, or directories searched for runs (with manifests).")
    ],
    port: Annotated[int, typer.Option(help="Port to serve on (0: any free port).")] = 8501,
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
) -> None:
    """Open result files in the Streamlit dashboard: runs, distributions, comparisons, records.

    Needs the dashboard extra (pip install 'evalsuite\\[dashboard]'). Prints the URL and serves
    until interrupted (Ctrl+C). Exit codes: 0 stopped, 1 the server failed, 2 a usage error.
    """
    from rich.markup import escape

    from dashboards.server import check_dependencies, find_runs, serve
    from evalsuite.errors import MissingDependencyError

    try:
        check_dependencies()
        files, problems = find_runs(paths)
    except (ConfigError, MissingDependencyError) as error:
        print_error(error)
        raise typer.Exit(USAGE_ERROR) from None
    for problem in problems:
        err_console.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    console.print(f"{len(files)} run{'s' if len(files) != 1 else ''} found.", highlight=False)
    try:
        code = serve(
            paths,
            host=host,
            port=port,
            announce=lambda url: console.print(
                f"Dashboard: [bold]{url}[/]  (Ctrl+C to stop)", highlight=False, soft_wrap=True
            ),
        )
    except ConfigError as error:
        print_error(error)
        raise typer.Exit(USAGE_ERROR) from None
    if code:
        err_console.print(f"[bold red]error:[/] the dashboard server stopped with exit code {code}")
        raise typer.Exit(1)


# Commands that live beside their subsystem, registered here so `evalsuite --help` lists them all.
app.command("generate")(generate_command)
app.add_typer(proxy_app, name="proxy")
app.add_typer(serve_app, name="serve")
