"""``evalsuite compare``: run B against run A, record by record, with paired statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from evalsuite.cli.render import comparison_table
from evalsuite.cli_common import THRESHOLD_FAILED, console, err_console, exit_on_error, print_warning
from evalsuite.report.format import difference, number


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

    from evalsuite.results import compare, scan_results

    with exit_on_error():
        comparison = compare(
            scan_results(run_a).scores(),
            scan_results(run_b).scores(),
            score_columns=score or None,
            confidence=confidence,
            n_resamples=resamples,
            seed=seed,
        )

    for line in comparison.warnings:
        print_warning(line)
    # The table is wider than the 80 columns rich assumes off a terminal (CI logs): never squeeze it.
    out = console if console.is_terminal else Console(width=max(console.width, 160))
    out.print(comparison_table(comparison, run_a, run_b))
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
                    column, str(row["id"]), number(row["a"]), number(row["b"]), difference(row["diff"])
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
