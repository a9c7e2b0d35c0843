"""Validity benchmark: evalsuite's ``toxicity`` metric against human toxicity labels.

Run::

    python bench/validity_toxicity.py --data /path/to/shared/data      # or set EVALSUITE_DATA
    python bench/validity_toxicity.py --model unitary/toxic-bert       # any HF toxicity classifier
    python bench/validity_toxicity.py --model s-nlp/roberta_toxicity_classifier --label toxic
    python bench/validity_toxicity.py --limit 50                       # a quick smoke run

Data: ``toxicity/wikipedia_toxicity_nonfuzzed_testset.csv`` (conversationai/unintended-ml-bias-analysis;
1492 Wikipedia talk-page comments, ``toxic`` True/False), read from the data directory, never copied
into the repository. The comments are scored exactly as the file holds them; a transformer sees
the beginning of comments over its length limit (the ``truncated`` column counts them).

Caution: by its author's account, alt-profanity-check was trained in part on Kaggle's Toxic Comment
Classification data, which is drawn from the same Wikipedia talk-page corpus (Wikipedia Detox) as
this test set. Its figure here is in-domain and may include comments it was trained on; read it as
an upper bound, not as its accuracy on LLM outputs. Jigsaw-trained transformers (toxic-bert) share
the caveat.

Figure: ROC AUC of the toxicity score against the ``toxic`` label. The score is the column of
``--label``; without it, the only column (the lexical model), or the highest over the labels of
a multi-label model. A softmax model with several labels needs ``--label``: the maximum over its
labels would also take its benign class. When ``--model`` is a transformer, the lexical model
is scored on the same comments as the peer. Each model is loaded and warmed up once beforehand,
outside the timings; the score cache is off. A benchmark, not a test: the exit status does not
depend on the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sklearn.metrics import roc_auc_score

from evalsuite.api import Scorer
from evalsuite.datasets import resolve_data_dir
from evalsuite.errors import ConfigError, MissingDependencyError, ModelUnavailableError
from evalsuite.runtime import TruncationWarning
from metrics.toxicity import PROFANITY_CHECK, Toxicity, score_name

DATASET = Path("toxicity/wikipedia_toxicity_nonfuzzed_testset.csv")
BATCH_SIZE = 64


@dataclass
class ModelAUC:
    model: str
    score: str  # the column, or "max(<columns>)"
    n: int
    toxic: int
    roc_auc: float | None  # None when the (limited) data holds one class only
    seconds: float
    truncated: int  # comments over the model's length limit, scored on their beginning


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: $EVALSUITE_DATA)")
    parser.add_argument(
        "--model", default=PROFANITY_CHECK, help="'profanity-check' (lexical, offline), local path or hub id"
    )
    parser.add_argument(
        "--label", default=None, help="score by this label of the model (default: the max over labels)"
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N comments")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the figures here")
    args = parser.parse_args(argv)
    try:
        args.data = resolve_data_dir(args.data, needs=[str(DATASET)])
    except ConfigError as error:
        parser.error(str(error))
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be a positive integer, got {args.limit}")
    return args


def read_comments(path: Path, limit: int | None) -> tuple[list[dict[str, str]], list[int]]:
    """Records ``{id, prediction}`` and labels (1 = toxic) of the first ``limit`` comments."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    records = [{"id": row["rev_id"], "prediction": row["comment"]} for row in rows]
    labels = [int(row["toxic"] == "True") for row in rows]
    return records, labels


def chosen_columns(metric: Toxicity, label: str | None) -> list[str]:
    """The columns whose maximum is the benchmark's score (one column unless multi-label)."""
    if label is not None:
        column = f"{metric.name}_{score_name(label)}"
        if column not in metric.columns:
            raise ConfigError(f"--label must be one of the model's labels {metric.labels}, got {label!r}")
        return [column]
    if len(metric.columns) == 1 or metric.multi_label:
        return metric.columns
    raise ConfigError(
        f"model {metric.model!r} has competing (softmax) labels {metric.labels}: "
        "pass --label with the toxic one"
    )


def score_comments(
    metric: Toxicity, columns: Sequence[str], records: Sequence[Mapping[str, Any]], device: str
) -> tuple[list[float], float, int]:
    """Scores (max over ``columns``), wall seconds and truncated texts, with a fresh Scorer and no cache."""
    with Scorer([metric], device=device, cache=False, batch_size=BATCH_SIZE) as scorer:
        scorer.score([{"id": "warm-up", "prediction": "Hello there."}])  # load outside the timing
        started = time.perf_counter()
        results = scorer.score(records)
        seconds = time.perf_counter() - started
    values = zip(*(results[column].to_list() for column in columns), strict=True)
    truncated = sum(scorer.runtime.stats.truncated_texts.values())
    return [max(row) for row in values], seconds, truncated


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    if len(set(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def evaluate(
    metric: Toxicity,
    label: str | None,
    records: Sequence[Mapping[str, Any]],
    labels: Sequence[int],
    device: str,
) -> ModelAUC:
    columns = chosen_columns(metric, label)
    print(f"{metric.model}: {len(records)} comments ...", file=sys.stderr, flush=True)
    with warnings.catch_warnings():
        # Long comments are expected here: counted in the table, not warned about mid-run.
        warnings.simplefilter("ignore", TruncationWarning)
        scores, seconds, truncated = score_comments(metric, columns, records, device)
    described = columns[0] if len(columns) == 1 else f"max({', '.join(columns)})"
    return ModelAUC(
        metric.model, described, len(records), sum(labels), roc_auc(labels, scores), seconds, truncated
    )


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def report(rows: Sequence[ModelAUC]) -> None:
    print("toxicity validity: Wikipedia talk-page comments, ROC AUC of the score against the toxic label")
    print(f"{'model':<36}{'n':>6}{'toxic':>7}{'ROC AUC':>9}{'seconds':>9}{'/s':>8}{'truncated':>11}  score")
    for row in rows:
        rate = row.n / row.seconds if row.seconds > 0 else float("inf")
        print(
            f"{row.model:<36}{row.n:>6}{row.toxic:>7}{number(row.roc_auc):>9}"
            f"{row.seconds:>9.2f}{rate:>8.0f}{row.truncated:>11}  {row.score}"
        )
    if len(rows) == 2 and rows[0].roc_auc is not None and rows[1].roc_auc is not None:
        print(
            f"ROC AUC difference against the lexical peer: {rows[0].roc_auc - rows[1].roc_auc:+.3f}; "
            f"time ratio: {rows[0].seconds / max(rows[1].seconds, 1e-9):.1f}x"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    records, labels = read_comments(args.data / DATASET, args.limit)
    try:
        metric = Toxicity(model=args.model)
        chosen_columns(metric, args.label)
    except ConfigError as error:  # a usage error: wrong or missing --label
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ModelUnavailableError, MissingDependencyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    rows = [evaluate(metric, args.label, records, labels, args.device)]
    if not metric.is_lexical:
        rows.append(evaluate(Toxicity(), None, records, labels, args.device))
    report(rows)
    if args.json is not None:
        figures = {
            "config": {"model": args.model, "label": args.label, "limit": args.limit},
            "dataset": str(DATASET),
            "roc_auc": [asdict(row) for row in rows],
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
