"""What the factuality validity benchmarks share: options, a timed scoring run, ROC AUC, number formatting."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.metrics import roc_auc_score

from evalsuite.api import Scorer
from evalsuite.datasets import resolve_data_dir
from evalsuite.errors import ConfigError

BATCH_SIZE = 64
PROGRESS_CHUNK = 32  # records per Scorer chunk: small enough for a live bar, large enough to batch well
CONFIG_OPTIONS = ("model", "granularity", "scoring", "aggregate", "limit")
WARM_UP_RECORDS = ({"id": "0", "source": "The cat sat on the mat.", "prediction": "A cat sat."},)


@dataclass
class Run:
    """The scores of some records, with what producing them cost."""

    scores: list[float]
    seconds: float
    nli_pairs: int  # pairs that reached the model: NLI pairs, and a non-NLI checker's support pairs


def parse_args(
    doc: str | None, argv: Sequence[str] | None, *, needs: Sequence[Path], limit_help: str
) -> argparse.Namespace:
    """The options every factuality benchmark takes; ``--data`` must hold the files in ``needs``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: $EVALSUITE_DATA)")
    parser.add_argument("--model", default="nli-minilm", help="NLI preset, local path or hub id")
    parser.add_argument("--granularity", choices=("sentence", "window"), default="sentence")
    parser.add_argument("--scoring", choices=("best_chunk", "summac"), default="best_chunk")
    parser.add_argument(
        "--aggregate",
        choices=("mean", "min"),
        default="mean",
        help="over the claim sentences of a prediction",
    )
    parser.add_argument("--limit", type=int, default=None, help=limit_help)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the figures here")
    args = parser.parse_args(argv)
    args.data = data_dir_or_exit(parser, args.data, needs)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be a positive integer, got {args.limit}")
    return args


def data_dir_or_exit(parser: argparse.ArgumentParser, data: Path | None, needs: Sequence[Path]) -> Path:
    """The data directory (``--data`` or ``$EVALSUITE_DATA``) holding ``needs``; else a usage error (exit 2)."""
    try:
        return resolve_data_dir(data, needs=[str(path) for path in needs])
    except ConfigError as error:
        parser.error(str(error))


def setting(args: argparse.Namespace) -> str:
    return f"model {args.model}, granularity {args.granularity}, scoring {args.scoring}, {args.aggregate} over claims"


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in CONFIG_OPTIONS}


def number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """ROC AUC of ``scores`` for label 1; None when the labels hold one class only."""
    if len(set(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def warm_up(args: argparse.Namespace) -> None:
    """Load the model outside the timings; models stay in a per-process cache for later Scorers."""
    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    score_factuality(args, "warm-up", WARM_UP_RECORDS)


def score_factuality(args: argparse.Namespace, name: str, records: Sequence[Mapping[str, Any]]) -> Run:
    """Score (source, prediction) records with the options in ``args``."""
    config = {"model": args.model, "granularity": args.granularity, "scoring": args.scoring}
    return score_with(config, name, records, device=args.device, column=f"factuality_{args.aggregate}")


def score_with(
    config: Mapping[str, Any], name: str, records: Sequence[Mapping[str, Any]], *, device: str, column: str
) -> Run:
    """The ``column`` of the ``factuality`` metric configured by ``config``, from a fresh Scorer
    (score cache off, so the runtime's NLI pair count and the wall time are this run's own), with a
    live bar on a terminal."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    with (
        Scorer(
            {"factuality": config},
            device=device,
            cache=False,
            batch_size=BATCH_SIZE,
            chunk_size=PROGRESS_CHUNK,
        ) as scorer,
        progress,
    ):
        task = progress.add_task(name, total=len(records))
        started = time.perf_counter()
        results = scorer.score(records, progress=lambda n: progress.advance(task, n))
        seconds = time.perf_counter() - started
    stats = scorer.runtime.stats
    return Run(results[column].to_list(), seconds, stats.nli_pairs_scored + stats.support_pairs_scored)


def timed_run(args: argparse.Namespace, name: str, records: Sequence[Mapping[str, Any]]) -> Run:
    """:func:`score_factuality` with a line before and after, for logs where no bar shows."""
    return logged(name, len(records), lambda: score_factuality(args, name, records))


def logged(name: str, items: int, run: Callable[[], Run]) -> Run:
    """``run()`` with a line before and after on stderr, for logs where no bar shows."""
    print(f"{name}: {items} items ...", file=sys.stderr, flush=True)
    result = run()
    print(
        f"{name}: done in {result.seconds:.1f} s, {result.nli_pairs} pairs scored",
        file=sys.stderr,
        flush=True,
    )
    return result
