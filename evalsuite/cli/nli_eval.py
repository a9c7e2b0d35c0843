"""``evalsuite nli-eval``: how well an NLI model does on labelled premise/hypothesis pairs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from evalsuite.cli_common import DeviceOption, console, exit_on_error


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
