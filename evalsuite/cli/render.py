"""What the commands print: the scoring progress rate, the summary table, the comparison table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.progress import ProgressColumn, Task
from rich.table import Table
from rich.text import Text

from evalsuite.report.format import difference, interval, number, p_value


class RateColumn(ProgressColumn):
    """Records per second (rich's own speed column is for bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f} rec/s")


def summary_table(summary: Any) -> Table:
    """One row per score column of a run's summary: mean, std, confidence interval, n, errors."""
    table = Table(title="summary", title_justify="left")
    for name in ("score", "mean", "std", "95% CI", "n", "errors"):
        table.add_column(name, justify="left" if name == "score" else "right")

    for row in summary.iter_rows(named=True):
        table.add_row(
            row["score"],
            number(row["mean"]),
            number(row["std"]),
            interval(row["ci_low"], row["ci_high"]),
            str(row["n"]),
            str(row["errors"]),
        )
    return table


def comparison_table(comparison: Any, run_a: Path, run_b: Path) -> Table:
    """One row per score column of a comparison of run B with run A."""
    table = Table(title=f"B = {run_b.name} vs A = {run_a.name}", title_justify="left")
    for name in ("score", "better", "n", "mean A", "mean B", "B − A", "95% CI", "p", "W/T/L", "verdict"):
        table.add_column(name, justify="left" if name in ("score", "verdict") else "right", no_wrap=True)
    if comparison.confidence != 0.95:
        table.columns[6].header = f"{comparison.confidence * 100:g}% CI"
    colors = {"better": "green", "worse": "red"}
    for row in comparison.table.iter_rows(named=True):
        verdict = row["verdict"]
        table.add_row(
            row["score"],
            "↑" if row["higher_is_better"] else "↓",
            str(row["n"]),
            number(row["mean_a"]),
            number(row["mean_b"]),
            difference(row["diff"]),
            interval(row["ci_low"], row["ci_high"], signed=True),
            p_value(row["p_value"]),
            f"{row['wins']}/{row['ties']}/{row['losses']}",
            f"[{colors[verdict]}]{verdict}[/]" if verdict in colors else verdict,
        )
    return table
