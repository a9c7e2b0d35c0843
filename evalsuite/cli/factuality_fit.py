"""``evalsuite factuality-fit``: fit the learned layer of ``factuality``'s ``summac-conv`` checker.

evalsuite factuality-fit labelled.jsonl --out aggregator.json --model nli-minilm --bins 20
evalsuite score answers.jsonl -m factuality:checker=summac-conv,aggregator=aggregator.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from evalsuite._validation import check_choice
from evalsuite.cli_common import DeviceOption, console, exit_on_error
from evalsuite.errors import InputError

# A label says whether the prediction is consistent with its source; CSV cells arrive as text.
_BINARY_LABELS: dict[Any, int] = {0: 0, 1: 1, "0": 0, "1": 1, "false": 0, "true": 1}


def factuality_fit_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="Labelled records (.jsonl, .jsonl.gz, .parquet, .csv): source, prediction and a 0/1 label "
            "(1: the prediction is consistent with the source)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Aggregator file to write (JSON).")],
    model: Annotated[
        str | None,
        typer.Option(help="NLI model the metric will run with (default: the factuality metric's own)."),
    ] = None,
    bins: Annotated[int, typer.Option(help="Histogram bins over [0, 1].")] = 20,
    label_field: Annotated[str, typer.Option("--label-field", help="Field holding the 0/1 label.")] = "label",
    granularity: Annotated[str, typer.Option(help="Source chunks: sentence or window.")] = "sentence",
    language: Annotated[str, typer.Option(help="Sentence-splitting language (pysbd code).")] = "en",
    field: Annotated[
        list[str] | None,
        typer.Option("--field", help="Map a canonical field to a column: prediction=summary."),
    ] = None,
    device: DeviceOption = "auto",
    batch_size: Annotated[int, typer.Option(help="Most pairs per forward pass.")] = 64,
) -> None:
    """Fit factuality's SummaC-Conv aggregator on labelled records and save it as JSON.

    Use it with: -m factuality:checker=summac-conv,aggregator=OUT (and the same --model).
    """
    from evalsuite.records import file_sha256, parse_field_mapping
    from evalsuite.runtime import Runtime
    from metrics.factuality import DEFAULT_MODEL, fit_summac_conv

    with exit_on_error():
        chunking = check_choice("--granularity", granularity, ("sentence", "window"))
        records, labels = read_labelled_records(source, label_field, parse_field_mapping(field or []))
        aggregator = fit_summac_conv(
            records,
            labels,
            Runtime(device=device, batch_size=batch_size),
            model=model or DEFAULT_MODEL,
            bins=bins,
            granularity=chunking,
            language=language,
            file=source.name,
            sha256=file_sha256(source),
        )
        aggregator.write(out)
    console.print(f"{aggregator.describe()}\naggregator: {out}", highlight=False)


def read_labelled_records(
    path: Path, label_field: str, fields: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], list[int]]:
    """Validated records with ``source`` and ``prediction``, and their 0/1 labels; a bad record raises
    :class:`InputError` naming it, the field and the problem."""
    from evalsuite.records import iter_records, validate_record

    records, labels = [], []
    for raw in iter_records(path, fields=fields):
        record = validate_record(raw, required=("source", "prediction", label_field))
        labels.append(binary_label(record[label_field], raw.location, label_field))
        records.append(record)
    if not records:
        raise InputError(f"{path} holds no records")
    return records, labels


def binary_label(value: Any, location: str, field: str) -> int:
    """``value`` as 0 or 1: a number, a boolean, or its text (CSV)."""
    key = value.strip().lower() if isinstance(value, str) else value
    label = _BINARY_LABELS.get(key) if isinstance(key, str | int | float) else None
    if label is None:
        raise InputError(
            f"field {field!r} must be 0 or 1 (1: consistent with the source), got {value!r}",
            location=location,
            field=field,
        )
    return label
