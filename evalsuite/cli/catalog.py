"""``evalsuite metrics`` and ``evalsuite models``: what can be scored, and with which models."""

from __future__ import annotations

from rich.table import Table

from evalsuite.cli_common import console


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
