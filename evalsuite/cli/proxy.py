"""``evalsuite proxy``: fit a judge proxy, predict a judge's verdicts, plan a cascade.

Registered on the CLI app with ``app.add_typer(proxy_app, name="proxy")``.
Exit codes: 0 ok, 1 an unexpected failure, 2 a usage or input error (as ``evalsuite score``).

    evalsuite proxy fit run.parquet --labels judge.jsonl --label-field verdict --kind binary -o judge.proxy
    evalsuite proxy predict run.parquet --model judge.proxy -o verdicts.jsonl
    evalsuite proxy cascade run.parquet --model judge.proxy --budget 0.3 -o for_judge.jsonl
    evalsuite proxy cascade run.parquet --model judge.proxy --budget 0.3 -o verdicts.jsonl \
        --judge "kind=binary,base_url=http://127.0.0.1:8000/v1,model=NAME" --price-per-1k 0.002
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.console import Console

from evalsuite.cli_common import DeviceOption, exit_on_error
from evalsuite.errors import (
    ConfigError,
)
from evalsuite.records import OUTPUT_FORMATS, json_line, write_table

console = Console()

proxy_app = typer.Typer(
    name="proxy",
    help="Judge proxies: predict an expensive judge's verdicts from cheap scores, and pick the records "
    "that still need the judge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ResultsArgument = Annotated[
    Path, typer.Argument(help="evalsuite result file (.parquet, .jsonl, .csv) with its manifest beside it.")
]
VersusOption = Annotated[
    Path | None,
    typer.Option(
        "--versus",
        help="Result file of the other output (B) of each pair: pairwise features (A, B, B − A), joined on id.",
    ),
]


def parse_label_value(text: str) -> Any:
    """A label value from the command line: JSON when it parses (``0``, ``true``), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def write_output(frame: pl.DataFrame, path: Path) -> Path:
    """Write ``frame`` by extension through :func:`evalsuite.records.write_table` (lists and structs
    become JSON text in CSV), creating the parent directory."""
    if path.suffix.lower() not in OUTPUT_FORMATS:
        expected = f"{', '.join(OUTPUT_FORMATS[:-1])} or {OUTPUT_FORMATS[-1]}"
        raise ConfigError(f"output must end in {expected}, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(frame, path)
    return path


def _runtime(device: str) -> Any:
    from evalsuite.runtime import Runtime

    return Runtime(device=device)


@proxy_app.command("fit")
def fit_command(
    results: ResultsArgument,
    labels: Annotated[Path, typer.Option("--labels", help="Judge labels: .jsonl, .json, .csv or .parquet.")],
    label_field: Annotated[
        str, typer.Option("--label-field", help="Field of the label file holding the verdict.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Proxy file to write (e.g. judge.proxy).")],
    kind: Annotated[
        str, typer.Option(help="Label kind: binary, pairwise (needs --versus), ordinal or continuous.")
    ] = "binary",
    versus: VersusOption = None,
    id_field: Annotated[
        str, typer.Option("--id-field", help="Field of the label file holding the record id.")
    ] = "id",
    draw_label: Annotated[
        str | None,
        typer.Option(help="Pairwise label value meaning a draw: left out of training and counted."),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="Score column to use (repeatable). Default: every score column."),
    ] = None,
    text_field: Annotated[
        list[str] | None,
        typer.Option(
            "--text-field", help="Field whose text statistics are features (repeatable). Default: prediction."
        ),
    ] = None,
    context_field: Annotated[
        list[str] | None,
        typer.Option("--context-field", help="Shared context field, e.g. prompt (repeatable)."),
    ] = None,
    embeddings: Annotated[
        bool, typer.Option(help="Add sentence embeddings of the text and context fields (PCA-reduced).")
    ] = False,
    embedding_model: Annotated[str, typer.Option(help="Encoder for --embeddings.")] = "minilm",
    coverage: Annotated[
        float, typer.Option(help="Conformal coverage of prediction sets and intervals.")
    ] = 0.9,
    tolerance: Annotated[
        float | None,
        typer.Option(help="Continuous labels: distance within which the proxy agrees with the judge."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model-family", help="linear and/or gradient_boosting (repeatable). Default: both."),
    ] = None,
    skip_missing_labels: Annotated[
        bool, typer.Option(help="Leave out (and count) records without a label instead of failing.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of every split, fold and model.")] = 0,
    device: DeviceOption = "auto",
) -> None:
    """Fit a proxy of a judge on scored results and the judge's labels, and save it.

    Prints how many records were used (and why any were not), each candidate model's
    cross-validated scores, the model chosen, and its held-out quality.
    """
    from proxies.features import FeatureConfig
    from proxies.labels import read_labels
    from proxies.predictor import MODEL_FAMILIES, JudgePredictor

    with exit_on_error():
        text_fields = tuple(text_field) if text_field else ("prediction",)
        context_fields = tuple(context_field or ())
        config = FeatureConfig(
            metric_columns=tuple(metric) if metric else None,
            text_fields=text_fields,
            context_fields=context_fields,
            embedding_fields=(*context_fields, *text_fields) if embeddings else (),
            embedding_model=embedding_model,
        )
        proxy = JudgePredictor(
            kind=kind,
            features=config,
            coverage=coverage,
            models=tuple(model) if model else MODEL_FAMILIES,
            tolerance=tolerance,
            seed=seed,
        )
        judged = read_labels(labels, label_field=label_field, id_field=id_field)
        report = proxy.fit(
            results,
            judged,
            versus=versus,
            runtime=_runtime(device) if embeddings else None,
            draw_label=None if draw_label is None else parse_label_value(draw_label),
            missing_labels="skip" if skip_missing_labels else "error",
        )
        proxy.save(output)
    console.print("\n".join(report.lines()), highlight=False)
    console.print(f"proxy: {output}", highlight=False)


@proxy_app.command("predict")
def predict_command(
    results: ResultsArgument,
    model: Annotated[Path, typer.Option("--model", help="Proxy file written by 'evalsuite proxy fit'.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Predictions file (.jsonl, .parquet, .csv).")
    ],
    versus: VersusOption = None,
    device: DeviceOption = "auto",
) -> None:
    """Predict the judge's verdict per record: label, confidence, class probabilities and the conformal
    prediction set (or interval)."""
    from proxies.persistence import load_predictor

    with exit_on_error():
        proxy = load_predictor(model)
        runtime = _runtime(device) if proxy.schema and proxy.schema.config.embeddings else None
        predictions = proxy.predict(results, versus=versus, runtime=runtime)
        write_output(predictions.to_frame(), output)
    console.print(
        f"{len(predictions)} predictions (conformal coverage {predictions.coverage:g}) written to {output}",
        highlight=False,
    )


@proxy_app.command("cascade")
def cascade_command(
    results: ResultsArgument,
    model: Annotated[Path, typer.Option("--model", help="Proxy file written by 'evalsuite proxy fit'.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Per record: id, needs_judge, escalation_rank, confidence, prediction."
        ),
    ],
    budget: Annotated[
        float | None,
        typer.Option(help="Share of the records the judge may see (0-1), least confident first."),
    ] = None,
    target_agreement: Annotated[
        float | None,
        typer.Option(help="Fewest judge calls whose expected agreement with the judge reaches this."),
    ] = None,
    versus: VersusOption = None,
    curve: Annotated[
        Path | None, typer.Option(help="Also write the whole cost/agreement curve (.csv, .jsonl, .parquet).")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            help="Call this judge on the records the proxy sends: llm_judge options, e.g. "
            "'kind=binary,base_url=http://127.0.0.1:8000/v1,model=NAME' (no base_url: the local SmolLM2). "
            "The output then holds the merged verdicts, each marked proxy or judge."
        ),
    ] = None,
    judge_examples: Annotated[
        Path | None,
        typer.Option(
            help="SuperICL: labelled result file of in-context examples; the judge reads the proxy's "
            "predictions and its confidence for them and for each record (examples the proxy was fitted on "
            "are refused)."
        ),
    ] = None,
    examples_label_field: Annotated[
        str, typer.Option(help="Column of --judge-examples holding the gold label.")
    ] = "label",
    price_per_1k: Annotated[
        float | None, typer.Option(help="Judge price per 1,000 tokens (prompt, and completion unless given).")
    ] = None,
    price_per_1k_completion: Annotated[
        float | None, typer.Option(help="Judge price per 1,000 completion tokens, when it differs.")
    ] = None,
    cache: Annotated[
        bool, typer.Option(help="Reuse cached judge verdicts (a re-run sends no request).")
    ] = True,
    device: DeviceOption = "auto",
) -> None:
    """Decide which records still need the judge, given a budget or a target agreement; with --judge,
    call it on those records and merge its verdicts with the proxy's."""
    from proxies.persistence import load_predictor

    with exit_on_error():
        if (budget is None) == (target_agreement is None):
            raise ConfigError("give exactly one of --budget or --target-agreement")
        if judge is None and (judge_examples is not None or price_per_1k is not None):
            raise ConfigError("--judge-examples and --price-per-1k need --judge")
        proxy = load_predictor(model)
        runtime = _runtime(device) if proxy.schema and proxy.schema.config.embeddings else None
        predictions = proxy.predict(results, versus=versus, runtime=runtime)
        plan = proxy.cascade_predictions(predictions, budget=budget, target_agreement=target_agreement)
        if judge is None:
            frame = plan.to_frame().with_columns(pl.Series("judge_prediction", predictions.label))
            write_output(frame, output)
        else:
            judged = _judge(
                results,
                predictions,
                plan,
                judge,
                proxy=proxy,
                examples=judge_examples,
                examples_label_field=examples_label_field,
                price_per_1k=price_per_1k,
                price_per_1k_completion=price_per_1k_completion,
                cache=cache,
                device=device,
            )
            write_output(judged.frame, output)
        if curve is not None:
            write_output(plan.curve, curve)
    console.print("\n".join(plan.lines()), highlight=False)
    if judge is not None:
        console.print("\n".join(judged.lines()), highlight=False)
        if judged.errors:
            errors_path = output.with_name(output.name + ".errors.jsonl")
            errors_path.write_bytes(b"".join(json_line(row) for row in judged.errors))
            console.print(f"judge errors (raw replies): {errors_path}", highlight=False)
    console.print(f"plan: {output}" + (f"\ncurve: {curve}" if curve else ""), highlight=False)


def _judge(results: Path, predictions: Any, plan: Any, spec: str, **options: Any) -> Any:
    from evalsuite.cli.score import parse_metric_spec
    from proxies.escalation import judge_escalated

    _, config = parse_metric_spec(f"llm_judge:{spec}")
    return judge_escalated(results, predictions, plan, config, **options)
