"""LLM judges with small-model plug-ins: plug-in alone, judge alone, SuperICL judge, and cascades.

Run::

    python bench/judge_supericl.py --data /path/to/shared/data            # or set EVALSUITE_DATA
    python bench/judge_supericl.py --limit 20 --dataset mnli               # a quick smoke run
    python bench/judge_supericl.py --base-url http://127.0.0.1:8000/v1 --model Qwen2.5-7B-Instruct
    python bench/judge_supericl.py --json figures.json --markdown

Three labelled tasks from the shared data (never copied into the repository), each a binary
decision read as P(first label):

- ``summac``: SummaC benchmark (the four ``factuality/summac_pr15_*.json`` subsets pooled); does the
  document support the summary sentence (label 1)? Template ``groundedness``; plug-in ``factuality``
  (SummaC-ZS on the embedded nli-minilm).
- ``mnli``: MultiNLI dev matched (``nli/eval/mnli_dev_matched.jsonl``); does the premise entail the
  hypothesis (entailment vs neutral or contradiction)? Template ``groundedness``; plug-in
  ``factuality`` (nli-minilm, which was trained on MultiNLI *train*).
- ``alpaca``: AlpacaEval's GPT-4 preferences (``judgments/alpaca_eval_gpt4_annotations_alpaca-7b.json``,
  draws left out); is output_1 better? Template ``pairwise`` (both orders); plug-in
  ``bartscore_faithfulness`` on SmolLM2 (log p(output | instruction)), its A − B difference.

Each task samples ``--limit`` records to score and, apart from them, ``--pool`` labelled records
that calibrate the plug-in (Platt, cross-fitted) and provide the ``--k`` in-context examples (by
default 8 for MultiNLI's short pairs, 2 where each example is a long document or two long answers,
so prompts stay within a small judge's reach). Rows:

- (a) the plug-in alone: its calibrated P(first label);
- (b) the judge alone (the built-in template, no plug-in);
- (c) the SuperICL judge: the plug-in's prediction and confidence in the prompt, for the examples
  (out-of-fold) and the record;
- (d) cascades: the plug-in keeps the records it is most confident about, and the judge (b), or the
  SuperICL judge (c), answers the 10 / 30 / 50% it is least confident about.

Accuracy and balanced accuracy at 0.5, ROC AUC of the probability, and the share of records where
the SuperICL judge overrode the plug-in. The judge is the packaged SmolLM2-135M-Instruct unless
``--base-url`` (any OpenAI-compatible server) and ``--model`` name another. Last, judge calls per
second at concurrency 1 and 16 against a local test server that answers after ``--latency-ms``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evalsuite.api import Scorer  # noqa: E402
from evalsuite.datasets import resolve_data_dir  # noqa: E402
from evalsuite.judges import JudgeRequest, OpenAICompatibleBackend  # noqa: E402
from evalsuite.testing import FakeChatServer, chat_completion  # noqa: E402

SUMMAC = tuple(
    Path("factuality") / f"summac_pr15_{subset}.json"
    for subset in ("factcc", "summeval", "xsumfaith", "polytope")
)
MNLI = Path("nli") / "eval" / "mnli_dev_matched.jsonl"
ALPACA = Path("judgments") / "alpaca_eval_gpt4_annotations_alpaca-7b.json"
BUDGETS = (0.1, 0.3, 0.5)
Record = dict[str, Any]


@dataclass(frozen=True)
class Task:
    name: str
    files: tuple[Path, ...]
    kind: str  # binary or pairwise
    template: str
    plugin: str
    load: Callable[[Path], list[tuple[Record, int]]]  # (record, 1 when the first label is right)
    k: int  # in-context examples: fewer where each is a long document or two long answers


def _summac(data: Path) -> list[tuple[Record, int]]:
    rows = []
    for path in SUMMAC:
        for key, item in json.loads((data / path).read_text(encoding="utf-8")).items():
            rows.append(
                (
                    {"id": f"{path.stem}:{key}", "source": item["document"], "prediction": item["claim"]},
                    int(item["label"]),
                )
            )
    return rows


def _mnli(data: Path) -> list[tuple[Record, int]]:
    rows = []
    with (data / MNLI).open(encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            record = {"id": item["id"], "source": item["premise"], "prediction": item["hypothesis"]}
            rows.append((record, int(item["label"] == "entailment")))
    return rows


def _alpaca(data: Path) -> list[tuple[Record, int]]:
    rows = []
    for i, item in enumerate(json.loads((data / ALPACA).read_text(encoding="utf-8"))):
        if item.get("preference") not in (1, 2, 1.0, 2.0):
            continue  # draws and missing preferences
        record = {
            "id": f"alpaca-{i}",
            "prompt": item["instruction"],
            "source": item["instruction"],
            "prediction": item["output_1"],
            "prediction_b": item["output_2"],
        }
        rows.append((record, int(item["preference"] == 1)))
    return rows


TASKS = {
    "summac": Task("summac", SUMMAC, "binary", "groundedness", "factuality", _summac, k=2),
    "mnli": Task("mnli", (MNLI,), "binary", "groundedness", "factuality", _mnli, k=8),
    "alpaca": Task("alpaca", (ALPACA,), "pairwise", "pairwise", "bartscore_faithfulness", _alpaca, k=2),
}


def split(rows: list[tuple[Record, int]], limit: int, pool: int, seed: int) -> tuple[list, list]:
    """Disjoint samples: ``limit`` records to score, ``pool`` labelled ones for the plug-in and examples."""
    order = random.Random(seed).sample(range(len(rows)), min(len(rows), limit + pool))
    return [rows[i] for i in order[:limit]], [rows[i] for i in order[limit:]]


def binary_figures(truth: Sequence[int], probability: Sequence[float]) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    y, p = np.asarray(truth), np.asarray(probability, dtype=np.float64)
    predicted = (p >= 0.5).astype(int)
    return {
        "accuracy": float((predicted == y).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
        "roc_auc": float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan"),
    }


def judge_config(args: argparse.Namespace, task: Task, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"kind": task.kind, "template": task.template, **extra}
    if args.base_url:
        config |= {"base_url": args.base_url, "model": args.model, "api_key_env": args.api_key_env,
                   "concurrency": args.concurrency}  # fmt: skip
    elif args.model:
        config["model"] = args.model
    return config


def run_task(task: Task, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    scored, pool = split(task.load(data), args.limit, args.pool, args.seed)
    records = [record for record, _ in scored]
    truth = [label for _, label in scored]
    labels = ("yes", "no") if task.kind == "binary" else ("A", "B")
    probability = "llm_judge_probability" if task.kind == "binary" else "llm_judge_probability_a"
    with tempfile.TemporaryDirectory() as scratch:
        examples = Path(scratch) / "examples.jsonl"
        examples.write_text(
            "".join(
                json.dumps({**record, "label": labels[0] if gold else labels[1]}) + "\n"
                for record, gold in pool
            )
        )
        timings: dict[str, float] = {}

        def score(name: str, config: dict[str, Any]) -> Any:
            started = time.perf_counter()
            with Scorer({"llm_judge": config}, cache=False, batch_size=args.batch_size) as scorer:
                results = scorer.score(records, on_error="skip")
            timings[name] = time.perf_counter() - started
            print(
                f"  {task.name} {name}: {len(results)} judged, {len(results.errors)} errors, {timings[name]:.0f} s",
                flush=True,
            )
            return results

        alone = score("judge", judge_config(args, task))
        supericl = score(
            "supericl",
            judge_config(
                args, task, plugin=task.plugin, examples=str(examples), k=args.k or task.k, seed=args.seed
            ),
        )
    judged = {row["id"]: row for row in alone.table.to_dicts()}
    superjudged = {row["id"]: row for row in supericl.table.to_dicts()}
    keep = [i for i, record in enumerate(records) if record["id"] in judged and record["id"] in superjudged]
    truth_kept = [truth[i] for i in keep]
    rows_alone = [judged[records[i]["id"]] for i in keep]
    rows_super = [superjudged[records[i]["id"]] for i in keep]
    p_judge = [row[probability] for row in rows_alone]
    p_super = [row[probability] for row in rows_super]
    confidence = np.array([row["llm_judge_plugin_confidence"] for row in rows_super])
    p_plugin = [
        c if row["llm_judge_plugin_verdict"] else 1.0 - c
        for c, row in zip(confidence, rows_super, strict=True)
    ]
    figures: dict[str, Any] = {
        "records": len(keep),
        "errors": {"judge": len(alone.errors), "supericl": len(supericl.errors)},
        "positives": int(sum(truth_kept)),
        "plugin": binary_figures(truth_kept, p_plugin),
        "judge": binary_figures(truth_kept, p_judge),
        "supericl": binary_figures(truth_kept, p_super),
        "supericl_overrides": float(np.mean([row["llm_judge_overrides"] for row in rows_super])),
        "seconds": timings,
    }
    order = np.argsort(confidence, kind="stable")  # least confident first
    for budget in BUDGETS:
        sent = np.zeros(len(keep), dtype=bool)
        sent[order[: math.floor(budget * len(keep) + 1e-9)]] = True
        for name, judge_p in (("cascade_judge", p_judge), ("cascade_supericl", p_super)):
            merged = [j if s else p for s, j, p in zip(sent, judge_p, p_plugin, strict=True)]
            figures[f"{name}_{int(budget * 100)}"] = binary_figures(truth_kept, merged)
    return figures


def throughput(latency_ms: float, calls: int) -> dict[str, float]:
    """Judge calls per second against a local server answering after ``latency_ms``."""
    reply = chat_completion("yes", [{"yes": math.log(0.8), "no": math.log(0.2)}])
    request = JudgeRequest(
        ({"role": "user", "content": "Is it supported? Answer yes or no."},), 1, ("yes", "no")
    )
    rates = {}
    with FakeChatServer(lambda body: reply, delay=latency_ms / 1000) as server:
        for concurrency in (1, 16):
            backend = OpenAICompatibleBackend(server.base_url, "local", concurrency=concurrency)
            started = time.perf_counter()
            backend.complete([request] * calls)
            rates[f"concurrency_{concurrency}"] = calls / (time.perf_counter() - started)
    return rates


def markdown(figures: dict[str, Any]) -> str:
    lines = [
        "| task (n, positives) | row | accuracy | balanced accuracy | ROC AUC |",
        "|---|---|---|---|---|",
    ]
    names = {"plugin": "(a) plug-in alone", "judge": "(b) judge alone", "supericl": "(c) SuperICL judge"}
    for task, result in figures["tasks"].items():
        head = f"{task} ({result['records']}, {result['positives']})"
        rows = [(names[key], result[key]) for key in ("plugin", "judge", "supericl")]
        for budget in BUDGETS:
            share = int(budget * 100)
            rows.append((f"(d) cascade, {share}% to the judge", result[f"cascade_judge_{share}"]))
            rows.append((f"(d) cascade, {share}% to the SuperICL judge", result[f"cascade_supericl_{share}"]))
        for i, (name, row) in enumerate(rows):
            lines.append(
                f"| {head if i == 0 else ''} | {name} | {row['accuracy']:.3f} | {row['balanced_accuracy']:.3f} | {row['roc_auc']:.3f} |"
            )
        lines.append(f"| | SuperICL overrode the plug-in on | {result['supericl_overrides']:.1%} | | |")
    rates = figures["throughput"]
    lines.append("")
    lines.append(
        f"Judge calls/s against the local test server ({figures['latency_ms']:g} ms per reply): "
        f"{rates['concurrency_1']:.1f} at concurrency 1, {rates['concurrency_16']:.1f} at concurrency 16."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: $EVALSUITE_DATA)")
    parser.add_argument("--dataset", action="append", choices=list(TASKS), help="repeatable (default: all)")
    parser.add_argument("--limit", type=int, default=100, help="records scored per task (seeded sample)")
    parser.add_argument(
        "--pool",
        type=int,
        default=64,
        help="labelled records that calibrate the plug-in and give the examples",
    )
    parser.add_argument(
        "--k",
        type=int,
        default=None,
        help="in-context examples per SuperICL prompt (default: summac 2, mnli 8, alpaca 2)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--base-url", default=None, help="an OpenAI-compatible server (default: the local SmolLM2)"
    )
    parser.add_argument(
        "--model", default=None, help="the judge model (the server's name, or a local preset/path)"
    )
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8, help="records per forward pass of a local judge")
    parser.add_argument(
        "--latency-ms", type=float, default=50.0, help="the test server's reply time (throughput)"
    )
    parser.add_argument("--calls", type=int, default=160, help="calls per throughput measurement")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    if args.base_url and not args.model:
        parser.error("--base-url needs --model")
    names = args.dataset or list(TASKS)
    data = resolve_data_dir(args.data, needs=[str(path) for name in names for path in TASKS[name].files])
    figures: dict[str, Any] = {
        "judge": args.model or "smollm2 (local)",
        "base_url": args.base_url,
        "limit": args.limit,
        "pool": args.pool,
        "k": {name: args.k or TASKS[name].k for name in names},
        "seed": args.seed,
        "tasks": {},
    }
    for name in names:
        print(f"{name}: scoring {args.limit} records", flush=True)
        figures["tasks"][name] = run_task(TASKS[name], data, args)
        print(json.dumps(figures["tasks"][name], indent=1), flush=True)
    figures["latency_ms"] = args.latency_ms
    figures["throughput"] = throughput(args.latency_ms, args.calls)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print(markdown(figures) if args.markdown else json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
