"""Validity benchmark: evalsuite's ``factuality`` metric as a hallucination detector on HaluEval.

Run::

    python bench/validity_hallucination.py --data /path/to/shared/data      # or set EVALSUITE_DATA
    python bench/validity_hallucination.py --granularity window --scoring summac --aggregate min
    python bench/validity_hallucination.py --limit 20                       # a quick smoke run

Data: ``hallucination/halueval_general_data.json`` (HaluEval general, JSON lines), ChatGPT answers to
Alpaca queries, each labelled ``hallucination`` yes / no by human annotators. There is no source
document and there are no samples, so the only evidence is the query: each record is scored with
``source`` = the user query and ``prediction`` = the answer, i.e. how far the query supports the
answer's claim sentences. A query rarely states the facts an answer gives, so this is a weak
signal by construction; the benchmark measures how weak. Reported: ROC AUC of the negated score
for detecting ``hallucination == "yes"`` (the AUC of the score itself for "no"), with n, the positive
count, the mean score of each class, the wall time and the NLI pairs scored. Records with an empty
query or answer are skipped and counted; the file's ``ID`` field is not unique (one is empty, two
read "ID"), so records are named by their line number.

The model is loaded and warmed up first, outside the timing; the score cache is off. A benchmark,
not a test: the exit status does not depend on the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from factuality_runs import config_of, number, parse_args, setting, timed_run, warm_up
from sklearn.metrics import roc_auc_score

HALUEVAL = Path("hallucination") / "halueval_general_data.json"
LABELS = {"yes": 1, "no": 0}  # 1 = the answer hallucinates


@dataclass
class HaluEval:
    records: list[dict[str, str]]  # id (line number), source (query), prediction (answer)
    hallucinated: list[int]  # 1 where the answer is labelled a hallucination
    skipped: int  # empty query or answer


@dataclass
class Detection:
    n: int
    hallucinated: int
    skipped: int
    roc_auc: float | None  # of -score for "yes"; None when the (limited) data holds one class only
    mean_score_hallucinated: float | None
    mean_score_faithful: float | None
    seconds: float
    nli_pairs: int


def read_halueval(path: Path, limit: int | None) -> HaluEval:
    data = HaluEval([], [], 0)
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            query, answer = row.get("user_query") or "", row.get("chatgpt_response") or ""
            if not query.strip() or not answer.strip():
                data.skipped += 1
                continue
            if row.get("hallucination") not in LABELS:
                raise SystemExit(
                    f"{path}:{line_number}: unexpected hallucination label {row.get('hallucination')!r}"
                )
            if limit is not None and len(data.records) == limit:
                continue  # keep counting the skipped ones over the whole file
            data.records.append({"id": str(line_number), "source": query, "prediction": answer})
            data.hallucinated.append(LABELS[row["hallucination"]])
    return data


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def detect(args: argparse.Namespace, data: HaluEval) -> Detection:
    run = timed_run(args, "halueval", data.records)
    scores, labels = run.scores, data.hallucinated
    auc = float(roc_auc_score(labels, [-score for score in scores])) if len(set(labels)) == 2 else None
    return Detection(
        n=len(labels),
        hallucinated=sum(labels),
        skipped=data.skipped,
        roc_auc=auc,
        mean_score_hallucinated=mean([s for s, label in zip(scores, labels, strict=True) if label]),
        mean_score_faithful=mean([s for s, label in zip(scores, labels, strict=True) if not label]),
        seconds=run.seconds,
        nli_pairs=run.nli_pairs,
    )


def report(args: argparse.Namespace, result: Detection) -> None:
    print(f"factuality as a hallucination detector on HaluEval general: {setting(args)}")
    print("source = the user query, prediction = the ChatGPT answer (no other evidence in this data)")
    print(
        f"{result.n} answers scored, {result.hallucinated} labelled hallucination = yes "
        f"({result.n - result.hallucinated} no); {result.skipped} of the file skipped (empty query or answer)"
    )
    print(f"ROC AUC of -score for hallucination = yes: {number(result.roc_auc)}  (0.5 = chance)")
    print(
        f"mean score: hallucination = yes {number(result.mean_score_hallucinated)}, "
        f"no {number(result.mean_score_faithful)}"
    )
    print(f"{result.seconds:.1f} s, {result.nli_pairs} NLI pairs scored")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, argv, needs=[HALUEVAL], limit_help="score only the first N usable records")
    data = read_halueval(args.data / HALUEVAL, args.limit)
    warm_up(args)
    result = detect(args, data)
    report(args, result)
    if args.json is not None:
        figures = {
            "config": config_of(args),
            "halueval_general": asdict(result),
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
