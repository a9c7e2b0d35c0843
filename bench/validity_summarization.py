"""Validity benchmark: evalsuite's likelihood metrics (BARTScore) against SummEval human judgements.

Run::

    python bench/validity_summarization.py --data /path/to/shared/data   # or set EVALSUITE_DATA
    python bench/validity_summarization.py --references single          # 11x fewer bartscore LM pairs
    python bench/validity_summarization.py --metrics bartscore_faithfulness --model smollm2-360m
    python bench/validity_summarization.py --limit 2                     # a quick smoke run

Data: ``summarization/bartscore_SummEval_data.json`` (BARTScore's ``SUM/SummEval/data.pkl`` as JSON),
read from the data directory, never copied into the repository. It maps each of 100 CNN/DailyMail
document ids to ``src`` (the article), ``ref_summ`` (the original CNN/DM highlights), ``ref_summs``
(11 references: the highlights first, then 10 crowd-written ones) and ``sys_summs`` (16 systems, each
``{sys_summ, scores}``, the scores being the mean of 3 expert ratings of coherence, consistency,
fluency and relevance, 1-5). The texts are PTB-tokenized (``team 's``, ``n't``, quotes as `` and '')
and scored as the file holds them (BARTScore's own scoring script detokenizes them first).

Metrics (``--metrics``, default all): ``bartscore_faithfulness`` = log p(summary | article);
``bartscore`` = precision log p(summary | reference), recall log p(reference | summary) and F,
their mean; both with the LM of ``--model`` (default the packaged SmolLM2-135M-Instruct, offline);
``bertscore`` (default config, MiniLM) as the in-run comparison. ``--references all`` (the default)
scores against the 11 references, as BARTScore's paper did for SummEval (its ``--multi_ref`` run,
averaging over references: ``--reference-aggregate mean``); ``single`` against ``ref_summ`` only.
BERTScore always takes its best reference.

Figures: summary-level Spearman and Kendall correlation, as in the G-Eval and UniEval tables: for each
document, the correlation of the metric with the human score over that document's system summaries,
averaged over documents; documents where either side is constant are left out and counted. Each
metric is scored by its own Scorer (score cache off) after a warm-up that loads its model, so its wall
time is its own. A benchmark, not a test: the exit status does not depend on the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from scipy.stats import kendalltau, spearmanr

from evalsuite.api import Scorer
from evalsuite.datasets import resolve_data_dir
from evalsuite.errors import ConfigError, MissingDependencyError, ModelUnavailableError
from evalsuite.runtime import TruncationWarning

DATASET = Path("summarization/bartscore_SummEval_data.json")
ASPECTS = ("coherence", "consistency", "fluency", "relevance")
METRICS = ("bartscore_faithfulness", "bartscore", "bertscore")
COLUMNS = {  # the columns each metric is correlated by, in the report's order
    "bartscore_faithfulness": ("bartscore_faithfulness_score",),
    "bartscore": ("bartscore_f", "bartscore_precision", "bartscore_recall"),
    "bertscore": ("bertscore_f1",),
}
BATCH_SIZE = 32
PROGRESS_CHUNK = 16  # records per Scorer chunk: one document's summaries, for a live bar
# Summary-level (Spearman, Kendall) per aspect: G-Eval's Table 1, taken from UniEval (data README).
PUBLISHED: dict[str, dict[str, tuple[float, float]]] = {
    "BERTScore (roberta-large)": {
        "coherence": (0.284, 0.211),
        "consistency": (0.110, 0.090),
        "fluency": (0.193, 0.158),
        "relevance": (0.312, 0.243),
    },
    "BARTScore": {
        "coherence": (0.448, 0.342),
        "consistency": (0.382, 0.315),
        "fluency": (0.356, 0.292),
        "relevance": (0.356, 0.273),
    },
}
# The target: with the offline default LM, bartscore's Spearman above the published BERTScore here.
TARGET_ASPECTS = ("coherence", "consistency")
TARGET_BASELINE = "BERTScore (roberta-large)"


@dataclass
class Summaries:
    """The scored summaries, in document order, with their document's index and human scores."""

    records: list[dict[str, Any]]  # {id, source, prediction, references}
    document: list[int]  # index of each summary's document
    human: dict[str, list[float]]  # aspect -> one score per summary
    documents: int
    references_per_summary: int


@dataclass
class MetricRun:
    metric: str
    config: dict[str, Any]
    n: int
    seconds: float
    truncated: int  # texts over a model's length limit, cut (see Runtime.target_log_probs)


@dataclass
class Correlation:
    spearman: float | None  # mean over the documents used; None when none could be used
    kendall: float | None
    documents: int  # used
    skipped: int  # left out: the metric or the human score is constant over the document


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: $EVALSUITE_DATA)")
    parser.add_argument(
        "--model", default="smollm2", help="LM of the bartscore metrics: preset, local path or hub id"
    )
    parser.add_argument(
        "--metrics", nargs="+", choices=METRICS, default=list(METRICS), help="metrics to run (default: all)"
    )
    parser.add_argument(
        "--references",
        choices=("single", "all"),
        default="all",
        help="'all': the 11 references, as BARTScore's SummEval run (default); 'single': ref_summ only",
    )
    parser.add_argument(
        "--reference-aggregate",
        choices=("mean", "max"),
        default="mean",
        help="how bartscore combines several references (default mean, as BARTScore's SummEval run)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N documents (all their summaries)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the figures here")
    args = parser.parse_args(argv)
    try:
        args.data = resolve_data_dir(args.data, needs=[str(DATASET)])
    except ConfigError as error:
        parser.error(str(error))
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be a positive integer, got {args.limit}")
    args.metrics = list(dict.fromkeys(args.metrics))
    return args


def read_summaries(path: Path, limit: int | None, references: str) -> Summaries:
    """Every system summary of the first ``limit`` documents, as records, with the human scores."""
    data: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    records: list[dict[str, Any]] = []
    document: list[int] = []
    human: dict[str, list[float]] = {aspect: [] for aspect in ASPECTS}
    documents = list(data.items())[:limit]
    for index, (doc_id, item) in enumerate(documents):
        refs = list(item["ref_summs"]) if references == "all" else [item["ref_summ"]]
        for system, summary in item["sys_summs"].items():
            records.append(
                {
                    "id": f"{doc_id}/{system}",
                    "source": item["src"],
                    "prediction": summary["sys_summ"],
                    "references": refs,
                }
            )
            document.append(index)
            for aspect in ASPECTS:
                human[aspect].append(float(summary["scores"][aspect]))
    per_summary = {len(record["references"]) for record in records}
    return Summaries(records, document, human, len(documents), max(per_summary, default=0))


def metric_config(args: argparse.Namespace, metric: str) -> dict[str, Any]:
    if metric == "bartscore_faithfulness":
        return {"model": args.model}
    if metric == "bartscore":
        return {"model": args.model, "references": args.reference_aggregate}
    return {}  # bertscore: its default config (MiniLM)


def score_metric(
    args: argparse.Namespace, metric: str, records: Sequence[Mapping[str, Any]]
) -> tuple[MetricRun, dict[str, list[float]]]:
    """One metric's columns over ``records``, with a fresh Scorer, its model loaded outside the timing."""
    config = metric_config(args, metric)
    print(f"{metric}: {len(records)} summaries ...", file=sys.stderr, flush=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    warm = {"id": "warm-up", "source": "The cat sat on the mat.", "prediction": "A cat sat."}
    with warnings.catch_warnings():
        # Long articles are expected here: counted in the report, not warned about mid-run.
        warnings.simplefilter("ignore", TruncationWarning)
        with (
            Scorer(
                {metric: config},
                device=args.device,
                cache=False,
                batch_size=BATCH_SIZE,
                chunk_size=PROGRESS_CHUNK,
            ) as scorer,
            progress,
        ):
            scorer.score([{**warm, "references": ["The cat was on the mat."]}])
            scorer.runtime.stats.truncated_texts.clear()
            task = progress.add_task(metric, total=len(records))
            started = time.perf_counter()
            results = scorer.score(records, progress=lambda n: progress.advance(task, n))
            seconds = time.perf_counter() - started
    truncated = sum(scorer.runtime.stats.truncated_texts.values())
    print(f"{metric}: done in {seconds:.1f} s, {truncated} truncated texts", file=sys.stderr, flush=True)
    columns = {column: [float(value) for value in results[column].to_list()] for column in COLUMNS[metric]}
    return MetricRun(metric, config, len(records), seconds, truncated), columns


def is_constant(values: Sequence[float]) -> bool:
    return max(values) - min(values) == 0


def summary_level(scores: Sequence[float], human: Sequence[float], document: Sequence[int]) -> Correlation:
    """Per-document Spearman and Kendall over the document's summaries, averaged over documents."""
    groups: dict[int, list[int]] = {}
    for position, index in enumerate(document):
        groups.setdefault(index, []).append(position)
    spearman: list[float] = []
    kendall: list[float] = []
    skipped = 0
    for positions in groups.values():
        metric = [scores[i] for i in positions]
        truth = [human[i] for i in positions]
        if len(positions) < 2 or is_constant(metric) or is_constant(truth):
            skipped += 1
            continue
        rho = float(spearmanr(metric, truth).statistic)
        tau = float(kendalltau(metric, truth).statistic)
        if math.isnan(rho) or math.isnan(tau):
            skipped += 1
            continue
        spearman.append(rho)
        kendall.append(tau)
    return Correlation(mean(spearman), mean(kendall), len(spearman), skipped)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def cell(spearman: float | None, kendall: float | None) -> str:
    return f"{number(spearman)} / {number(kendall)}"


def target_lines(correlations: Mapping[str, Mapping[str, Correlation]]) -> list[str]:
    """Whether each bartscore column beats the published BERTScore Spearman on the target aspects."""
    lines = []
    for column, row in correlations.items():
        if not column.startswith("bartscore"):
            continue
        parts = []
        for aspect in TARGET_ASPECTS:
            value, published = row[aspect].spearman, PUBLISHED[TARGET_BASELINE][aspect][0]
            verdict = "n/a" if value is None else ("above" if value > published else "not above")
            parts.append(f"{aspect} {number(value)} vs {published:.3f}: {verdict}")
        lines.append(f"  {column:<30}{'; '.join(parts)}")
    return lines


def report(
    args: argparse.Namespace,
    summaries: Summaries,
    runs: Sequence[MetricRun],
    correlations: Mapping[str, Mapping[str, Correlation]],
) -> None:
    references = (
        f"all {summaries.references_per_summary} references per document, bartscore {args.reference_aggregate} "
        "over them (as BARTScore's SummEval run)"
        if args.references == "all"
        else "the single reference ref_summ (the CNN/DM highlights)"
    )
    print(f"summarization validity: SummEval, model {args.model}, {references}; bertscore: best reference")
    print(f"{len(summaries.records)} summaries of {summaries.documents} documents")
    width = 17
    print("\nSummary-level correlation with the human scores, Spearman / Kendall (mean over documents)")
    print(f"{'metric column':<30}" + "".join(f"{aspect:>{width}}" for aspect in ASPECTS))
    for column, row in correlations.items():
        print(f"{column:<30}" + "".join(f"{cell(c.spearman, c.kendall):>{width}}" for c in row.values()))
    print("published (G-Eval Table 1, from UniEval; all 100 documents):")
    for name, published in PUBLISHED.items():
        print(f"{name:<30}" + "".join(f"{cell(*published[aspect]):>{width}}" for aspect in ASPECTS))
    skipped = [
        f"{column} {aspect}: {c.skipped}"
        for column, row in correlations.items()
        for aspect, c in row.items()
        if c.skipped
    ]
    print(f"documents left out (constant metric or human score): {', '.join(skipped) or 'none'}")
    print(
        f"\ntarget: with the offline default LM, bartscore's Spearman above the published {TARGET_BASELINE} "
        f"on {' and '.join(TARGET_ASPECTS)}"
    )
    for line in target_lines(correlations) or ["  (no bartscore metric run)"]:
        print(line)
    print(f"\n{'metric':<26}{'n':>7}{'seconds':>10}{'/s':>8}{'truncated':>11}  config")
    for run in runs:
        rate = run.n / run.seconds if run.seconds > 0 else float("inf")
        config = json.dumps(run.config) if run.config else "default"
        print(f"{run.metric:<26}{run.n:>7}{run.seconds:>10.1f}{rate:>8.1f}{run.truncated:>11}  {config}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    summaries = read_summaries(args.data / DATASET, args.limit, args.references)
    runs: list[MetricRun] = []
    scores: dict[str, list[float]] = {}
    try:
        for metric in args.metrics:
            run, columns = score_metric(args, metric, summaries.records)
            runs.append(run)
            scores.update(columns)
    except (ModelUnavailableError, MissingDependencyError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    ordered = [column for metric in METRICS for column in COLUMNS[metric] if column in scores]
    correlations = {
        column: {
            aspect: summary_level(scores[column], summaries.human[aspect], summaries.document)
            for aspect in ASPECTS
        }
        for column in ordered
    }
    report(args, summaries, runs, correlations)
    if args.json is not None:
        figures = {
            "config": {
                "model": args.model,
                "metrics": args.metrics,
                "references": args.references,
                "reference_aggregate": args.reference_aggregate,
                "limit": args.limit,
            },
            "dataset": str(DATASET),
            "summaries": len(summaries.records),
            "documents": summaries.documents,
            "references_per_summary": summaries.references_per_summary,
            "runs": [asdict(run) for run in runs],
            "summary_level": {
                column: {aspect: asdict(c) for aspect, c in row.items()}
                for column, row in correlations.items()
            },
            "published_summary_level": {
                name: {aspect: {"spearman": s, "kendall": k} for aspect, (s, k) in row.items()}
                for name, row in PUBLISHED.items()
            },
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
