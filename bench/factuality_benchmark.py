"""The factuality yardstick: grounded-claim checkers side by side, balanced accuracy and ROC AUC per dataset.

Run::

    python bench/factuality_benchmark.py --data /path/to/shared/data     # or set EVALSUITE_DATA
    python bench/factuality_benchmark.py --limit 20                      # a quick smoke run
    python bench/factuality_benchmark.py --checker minicheck --model minicheck-roberta-large --model org/hub-id
    python bench/factuality_benchmark.py --dataset wice --dataset begin --markdown --json figures.json

A checker is a model (``--model``: a preset, local directory or hub id of an NLI model or of a
fact checker such as MiniCheck; repeatable) scored by a recipe of the ``factuality`` metric
(``--checker``: summac-zs, minicheck, or summac-conv with ``--aggregator PATH``; repeatable).
Every model runs with every recipe; by default nli-minilm and factcheck-minilm with summac-zs and
minicheck (nli-minilm + summac-zs is the "before"). A checker that cannot run here (a preset
without weights, a hub id offline, summac-zs on a model that is no NLI model) is skipped with a
printed note. Each checker is scored through the public API: per dataset a fresh Scorer (score
cache off), after a warm-up that loads the model outside the timings.

Datasets, read from ``DIR/factuality/`` (never copied into the repository), and what counts as
supported (positive):

- WiCE (``wice_claim_{dev,test}.jsonl``, evidence ``document``, ``claim``): only ``supported``;
  ``partially_supported`` and ``not_supported`` are negative (LLM-AggreFact's convention).
  The threshold is chosen on dev and scored on test.
- Factcheck-GPT (``factcheck_gpt_claim_evidence_stance.jsonl``): ``completely-support``; negative:
  ``refute`` and ``partially-support``. ``irrelevant`` evidence neither supports nor refutes, so the
  main row leaves it out; the row ``factcheck-gpt +irrelevant`` counts it as unsupported (a checker
  must not call irrelevant evidence supporting) and is not in the mean.
- BEGIN (``begin_dev_{wow,cmu,tc}.tsv``; document = ``knowledge``, claim = ``response``): ``Fully
  attributable``; negative: ``Not fully attributable``. ``Generic`` responses are left out (they
  state nothing to attribute; BEGIN labels them as a class of their own). The three sources are
  pooled into one set, one row.
- SummaC benchmark (``summac_pr15_{factcc,summeval,xsumfaith,polytope}.json``): label 1
  (consistent); one row per subset.
- XSumFaith: Spearman with the human Faithful score (joined as ``bench/validity_factuality.py``
  does), in its own column; not binarised, not in the mean.

WiCE, Factcheck-GPT and BEGIN claims are single claims: minicheck scores them whole
(``claims="whole"``); SummaC and XSumFaith summaries, and every prediction under summac-zs and
summac-conv, are split into claim sentences.

Figures per checker and dataset, from P(supported) = the record's mean score column mapped
linearly onto [0, 1] (summac-zs scores lie in [-1, 1]: (score + 1) / 2):

- BAcc: balanced accuracy at a threshold chosen by ``evalsuite.calibration.choose_threshold`` on
  held-out data, never on the scored records: WiCE dev for WiCE test; elsewhere the records are
  shuffled (``--seed``) into two halves stratified by label, each half's threshold scores the other
  half, and the two balanced accuracies are averaged.
- BAcc fixed: at the checker's own threshold, with no per-dataset tuning: the calibrated threshold
  of the model's calibration.json (``Runtime.calibration``), else 0.5 (said so); for a score that
  is not a probability (summac-zs), the middle of its range (entailment = contradiction).
- ROC AUC, and ECE (15 bins; correct = supported) of P(supported), on the scored records.
- mean: over the binary sets (not ``factcheck-gpt +irrelevant``, not XSumFaith).
- records/s and pairs/s per checker: records scored and (NLI or support) pairs that reached the
  model, over the scoring wall time of every dataset (model load excluded), measured in this run.

Published context, not measured here: LLM-AggreFact averages of balanced accuracy over its own
datasets (WiCE is one of them), not per-dataset numbers on these files.

A benchmark, not a test: the exit status does not depend on the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from factuality_data import BINARISATION, DATASETS, Benchmark, BinaryTask, Dataset
from factuality_runs import WARM_UP_RECORDS, Run, data_dir_or_exit, logged, number, roc_auc, score_with
from scipy.stats import spearmanr

from evalsuite.calibration import balanced_accuracy, choose_threshold, expected_calibration_error
from evalsuite.errors import ConfigError, ModelUnavailableError
from evalsuite.runtime import Runtime

# Mean balanced accuracy (%) over LLM-AggreFact's datasets, from the data README: context, not a peer.
PUBLISHED_LLM_AGGREFACT = {
    "SummaC-ZS": 67.7,
    "AlignScore": 70.5,
    "MiniCheck-RoBERTa-L": 73.5,
    "MiniCheck-Flan-T5-L": 75.0,
    "GPT-4o": 75.9,
}
DEFAULT_MODELS = ("nli-minilm", "factcheck-minilm")
DEFAULT_RECIPES = ("summac-zs", "minicheck")
UNCALIBRATED_THRESHOLD = 0.5
ECE_BINS = 15


@dataclass(frozen=True)
class Recipe:
    """A way of scoring with the ``factuality`` metric: its options and what its score column holds."""

    name: str
    options: Mapping[str, Any]
    low: float = 0.0  # the range of the score column, mapped linearly onto P(supported) in [0, 1]
    high: float = 1.0
    column: str = "factuality_mean"
    # Added where each prediction is one claim (WiCE, Factcheck-GPT, BEGIN): score it whole.
    single_claim_options: Mapping[str, Any] = field(default_factory=dict)
    needs_aggregator: bool = False

    @property
    def is_probability(self) -> bool:
        return (self.low, self.high) == (0.0, 1.0)


RECIPES = {
    "summac-zs": Recipe("summac-zs", {"checker": "summac-zs"}, low=-1.0),
    "minicheck": Recipe("minicheck", {"checker": "minicheck"}, single_claim_options={"claims": "whole"}),
    "summac-conv": Recipe("summac-conv", {"checker": "summac-conv"}, needs_aggregator=True),
}


@dataclass(frozen=True)
class Checker:
    """A model scored by a recipe."""

    model: str
    recipe: Recipe
    aggregator: Path | None = None

    @property
    def name(self) -> str:
        path_like = self.model.startswith((".", "/", "~")) or Path(self.model).expanduser().is_dir()
        return f"{Path(self.model).name if path_like else self.model} + {self.recipe.name}"


class CheckerUnavailableError(Exception):
    """A checker that cannot run here; the message says why."""


@dataclass
class Scored:
    """One benchmark scored by one checker."""

    benchmark: str
    options: dict[str, Any]
    probabilities: list[float]  # P(supported) per record
    records: int
    seconds: float
    pairs: int  # NLI or support pairs that reached the model


@dataclass
class TaskFigures:
    """One table row: a binary task's figures for one checker."""

    dataset: str
    benchmark: str
    n: int
    supported: int
    balanced_accuracy: float | None  # at thresholds chosen on held-out data
    thresholds: list[float]  # those thresholds, on P(supported)
    balanced_accuracy_fixed: float | None  # at the checker's own threshold
    roc_auc: float | None
    ece: float | None
    in_mean: bool


@dataclass
class CheckerResult:
    checker: str
    model: str
    recipe: str
    fixed_threshold: float
    fixed_threshold_source: str
    tasks: list[TaskFigures]
    spearman: dict[str, float | None]  # benchmark -> Spearman with its human scores
    runs: list[dict[str, Any]]  # per benchmark: options, records, seconds, pairs

    @property
    def seconds(self) -> float:
        return sum(run["seconds"] for run in self.runs)

    def rate(self, count: str) -> float | None:
        """``records`` or ``pairs`` per second of scoring, over every benchmark."""
        return sum(run[count] for run in self.runs) / self.seconds if self.seconds > 0 else None

    def mean(self, figure: str) -> float | None:
        return mean_of([getattr(task, figure) for task in self.tasks if task.in_mean])

    def summary(self) -> dict[str, Any]:
        return {
            "mean_balanced_accuracy": self.mean("balanced_accuracy"),
            "mean_balanced_accuracy_fixed": self.mean("balanced_accuracy_fixed"),
            "mean_roc_auc": self.mean("roc_auc"),
            "mean_ece": self.mean("ece"),
            "mean_over": [
                task.dataset for task in self.tasks if task.in_mean and task.balanced_accuracy is not None
            ],
            "records_per_second": self.rate("records"),
            "pairs_per_second": self.rate("pairs"),
        }


# -- the figures (pure functions) ------------------------------------------------------------------


def mean_of(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return float(np.mean(present)) if present else None


def at_threshold(scores: Sequence[float], labels: Sequence[int], threshold: float) -> float | None:
    """Balanced accuracy of the verdicts ``score >= threshold``; None without records."""
    if not labels:
        return None
    return balanced_accuracy(np.asarray(scores) >= threshold, np.asarray(labels, dtype=bool))


def held_out_accuracy(
    tuning_scores: Sequence[float],
    tuning_labels: Sequence[int],
    scores: Sequence[float],
    labels: Sequence[int],
) -> tuple[float | None, float | None]:
    """(balanced accuracy on ``scores``, threshold) with the threshold chosen on the tuning data only;
    (None, None) when the tuning data lacks a class.

    >>> held_out_accuracy([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1], [0.45, 0.55], [1, 0])
    (0.0, 0.5)
    """
    try:
        threshold = choose_threshold(tuning_scores, tuning_labels)
    except ConfigError:
        return None, None
    return at_threshold(scores, labels, threshold), threshold


def halves(labels: Sequence[int], seed: int) -> tuple[list[int], list[int]]:
    """Two halves of the positions of ``labels``, shuffled (seeded) and stratified by label.

    >>> halves([0, 0, 1, 1], seed=0)
    ([0, 2], [1, 3])
    """
    order = list(range(len(labels)))
    random.Random(seed).shuffle(order)
    order.sort(key=lambda index: labels[index])  # stable: still shuffled within each class
    return order[0::2], order[1::2]


def two_fold_accuracy(
    scores: Sequence[float], labels: Sequence[int], seed: int
) -> tuple[float | None, list[float]]:
    """The mean of the balanced accuracies of each half at the threshold chosen on the other half,
    and those two thresholds; None unless both halves hold both classes."""
    accuracies, thresholds = [], []
    first, second = halves(labels, seed)
    for tuning, scored in ((first, second), (second, first)):
        accuracy, threshold = held_out_accuracy(
            [scores[i] for i in tuning],
            [labels[i] for i in tuning],
            [scores[i] for i in scored],
            [labels[i] for i in scored],
        )
        if accuracy is not None and threshold is not None:
            accuracies.append(accuracy)
            thresholds.append(threshold)
    return (float(np.mean(accuracies)) if len(accuracies) == 2 else None), thresholds


def calibration_error(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    if not labels:
        return None
    return expected_calibration_error(scores, [label == 1 for label in labels], bins=ECE_BINS)


def spearman(scores: Sequence[float], human: Sequence[float]) -> float | None:
    """Spearman's rho; None when either side is constant (or there are fewer than 3 values)."""
    if len(scores) < 3 or len(set(scores)) < 2 or len(set(human)) < 2:
        return None
    return float(spearmanr(scores, human).statistic)


def task_figures(
    task: BinaryTask, benchmark: str, probabilities: Sequence[float], fixed: float, seed: int
) -> TaskFigures:
    scores = [probabilities[index] for index in task.scored.indices]
    labels = task.scored.labels
    if task.tuning is None:
        accuracy, thresholds = two_fold_accuracy(scores, labels, seed)
    else:
        tuning_scores = [probabilities[index] for index in task.tuning.indices]
        accuracy, threshold = held_out_accuracy(tuning_scores, task.tuning.labels, scores, labels)
        thresholds = [] if threshold is None else [threshold]
    return TaskFigures(
        dataset=task.name,
        benchmark=benchmark,
        n=len(labels),
        supported=sum(labels),
        balanced_accuracy=accuracy,
        thresholds=thresholds,
        balanced_accuracy_fixed=at_threshold(scores, labels, fixed),
        roc_auc=roc_auc(labels, scores),
        ece=calibration_error(scores, labels),
        in_mean=task.in_mean,
    )


def supported_probability(scores: Sequence[float], recipe: Recipe) -> list[float]:
    """The score column mapped linearly from the recipe's range onto [0, 1]."""
    values = np.asarray(scores, dtype=np.float64)
    tolerance = 1e-6 * (recipe.high - recipe.low)
    if values.size and (values.min() < recipe.low - tolerance or values.max() > recipe.high + tolerance):
        raise ValueError(
            f"{recipe.name} scores span [{values.min():.4f}, {values.max():.4f}], outside the range "
            f"[{recipe.low:g}, {recipe.high:g}] that RECIPES declares for it: correct RECIPES"
        )
    return np.clip((values - recipe.low) / (recipe.high - recipe.low), 0.0, 1.0).tolist()


# -- checkers -----------------------------------------------------------------------------------------


def checker_options(checker: Checker) -> dict[str, Any]:
    """The ``factuality`` options of a checker."""
    recipe = checker.recipe
    if not recipe.needs_aggregator:
        return {"model": checker.model, **recipe.options}
    if checker.aggregator is None:
        raise CheckerUnavailableError(f"{recipe.name} needs --aggregator PATH (a fitted SummaC-Conv layer)")
    return {"model": checker.model, **recipe.options, "aggregator": str(checker.aggregator)}


def benchmark_options(checker: Checker, benchmark: Benchmark) -> dict[str, Any]:
    """The checker's options for this benchmark: single claims scored whole where the recipe can."""
    options = checker_options(checker)
    return {**options, **checker.recipe.single_claim_options} if benchmark.whole_claims else options


def warm_up(checker: Checker, device: str) -> None:
    """Load the model outside the timings (it stays in the per-process model cache); a checker whose
    model or options are not available here is reported unavailable."""
    print(f"loading {checker.model} for {checker.name} ...", file=sys.stderr, flush=True)
    options = checker_options(checker)
    try:
        score_with(options, "warm-up", WARM_UP_RECORDS, device=device, column=checker.recipe.column)
    except (ConfigError, ModelUnavailableError) as error:
        raise CheckerUnavailableError(str(error)) from None


def fixed_threshold(checker: Checker, device: str) -> tuple[float, str]:
    """The checker's own threshold on P(supported), and where it comes from."""
    recipe = checker.recipe
    if not recipe.is_probability:
        middle = (recipe.low + recipe.high) / 2
        return (
            0.5,
            f"score {middle:g}, the middle of its [{recipe.low:g}, {recipe.high:g}] range (not a probability)",
        )
    found = Runtime(device=device).calibration(checker.model)  # the model is loaded: no second load
    if found is None:
        return UNCALIBRATED_THRESHOLD, f"{UNCALIBRATED_THRESHOLD} ({checker.model} has no calibration.json)"
    return float(found.threshold), f"{found.threshold:.3f} from {checker.model}'s calibration.json"


def score_benchmark(checker: Checker, benchmark: Benchmark, device: str) -> Scored:
    config = benchmark_options(checker, benchmark)
    name = f"{checker.name} / {benchmark.name}"
    records = benchmark.records
    if records:
        run = logged(
            name,
            len(records),
            lambda: score_with(config, name, records, device=device, column=checker.recipe.column),
        )
    else:
        run = Run([], 0.0, 0)
    probabilities = supported_probability(run.scores, checker.recipe)
    return Scored(benchmark.name, config, probabilities, len(records), run.seconds, run.nli_pairs)


def evaluate(checker: Checker, benchmarks: Sequence[Benchmark], args: argparse.Namespace) -> CheckerResult:
    warm_up(checker, args.device)
    threshold, source = fixed_threshold(checker, args.device)
    tasks: list[TaskFigures] = []
    correlations: dict[str, float | None] = {}
    runs: list[dict[str, Any]] = []
    for benchmark in benchmarks:
        scored = score_benchmark(checker, benchmark, args.device)
        tasks += [
            task_figures(task, benchmark.name, scored.probabilities, threshold, args.seed)
            for task in benchmark.tasks
        ]
        if benchmark.human_scores is not None:
            correlations[benchmark.name] = spearman(scored.probabilities, benchmark.human_scores)
        runs.append({key: value for key, value in asdict(scored).items() if key != "probabilities"})
    return CheckerResult(
        checker.name, checker.model, checker.recipe.name, threshold, source, tasks, correlations, runs
    )


def run_checkers(
    checkers: Sequence[Checker], benchmarks: Sequence[Benchmark], args: argparse.Namespace
) -> tuple[list[CheckerResult], dict[str, str]]:
    """The results of the checkers that run here, and why each other one was skipped."""
    results: list[CheckerResult] = []
    skipped: dict[str, str] = {}
    for checker in checkers:
        try:
            results.append(evaluate(checker, benchmarks, args))
        except CheckerUnavailableError as reason:
            print(f"skipped {checker.name}: {reason}", file=sys.stderr, flush=True)
            skipped[checker.name] = str(reason)
    return results, skipped


# -- the report ---------------------------------------------------------------------------------------


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def render(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], *, markdown: bool) -> None:
    """A table: rich on a console (columns kept whole when piped), or plain markdown."""
    if markdown:
        print(f"\n**{title}**\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join(["---", *["---:"] * (len(header) - 1)]) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for index, column in enumerate(header):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.width = max(console.width, 132)
    console.print(table)


DETAIL_HEADER = (
    "dataset",
    "n",
    "supported",
    "BAcc %",
    "BAcc % fixed",
    "ROC AUC",
    "ECE",
    "Spearman",
    "records/s",
    "pairs/s",
)


def detail_rows(result: CheckerResult) -> list[list[str]]:
    """Per dataset: the binary tasks, the correlations, then the mean over the binary sets."""
    rates = {run["benchmark"]: run for run in result.runs}

    def speeds(benchmark: str) -> list[str]:
        run = rates[benchmark]
        seconds = run["seconds"]
        if seconds <= 0:
            return ["n/a", "n/a"]
        return [f"{run['records'] / seconds:.1f}", f"{run['pairs'] / seconds:.0f}"]

    rows = [
        [
            task.dataset,
            str(task.n),
            str(task.supported),
            percent(task.balanced_accuracy),
            percent(task.balanced_accuracy_fixed),
            number(task.roc_auc),
            number(task.ece),
            "",
            *speeds(task.benchmark),
        ]
        for task in result.tasks
    ]
    for benchmark, rho in result.spearman.items():
        records = str(rates[benchmark]["records"])
        rows.append([f"{benchmark} (Faithful)", records, "", "", "", "", "", number(rho), *speeds(benchmark)])
    summary = result.summary()
    rows.append(
        [
            f"mean of {len(summary['mean_over'])} binary set{'' if len(summary['mean_over']) == 1 else 's'}",
            "",
            "",
            percent(summary["mean_balanced_accuracy"]),
            percent(summary["mean_balanced_accuracy_fixed"]),
            number(summary["mean_roc_auc"]),
            number(summary["mean_ece"]),
            "",
            number(summary["records_per_second"], 1),
            number(summary["pairs_per_second"], 0),
        ]
    )
    return rows


SUMMARY_HEADER = (
    "checker",
    "BAcc %",
    "BAcc % fixed",
    "ROC AUC",
    "XSumFaith ρ",
    "records/s",
    "pairs/s",
    "speed",
)
SUMMARY_TITLE = "Means over the binary sets (published: LLM-AggreFact averages, not these files)"


def summary_rows(results: Sequence[CheckerResult]) -> list[list[str]]:
    """Each checker's means and speed (records/s relative to the first checker), then the published figures."""
    first = results[0].rate("records") if results else None
    rows = []
    for result in results:
        summary = result.summary()
        speed = summary["records_per_second"]
        ratio = f"{speed / first:.2f}x" if speed is not None and first else "n/a"
        rows.append(
            [
                result.checker,
                percent(summary["mean_balanced_accuracy"]),
                percent(summary["mean_balanced_accuracy_fixed"]),
                number(summary["mean_roc_auc"]),
                number(result.spearman.get("xsumfaith")),
                number(speed, 1),
                number(summary["pairs_per_second"], 0),
                ratio,
            ]
        )
    for name, figure in PUBLISHED_LLM_AGGREFACT.items():
        rows.append([f"published: {name}", f"{figure:.1f}", "", "", "", "", "", ""])
    return rows


def mean_over(results: Sequence[CheckerResult]) -> list[str]:
    """The sets in the means (the same for every checker: it depends on the labels only)."""
    return results[0].summary()["mean_over"] if results else []


def legend(
    args: argparse.Namespace,
    benchmarks: Sequence[Benchmark],
    results: Sequence[CheckerResult],
    skipped: Mapping[str, str],
) -> list[str]:
    names = [dataset.name for dataset in args.datasets]
    lines = [
        "BAcc %: balanced accuracy x100 at a threshold chosen on held-out data, never on the scored records "
        f"(wice: dev -> test; the others: two halves stratified by label, seed {args.seed}, each half's "
        "threshold scores the other, the two averaged).",
        "BAcc % fixed: at the checker's own threshold, no per-dataset tuning (see below). ROC AUC and ECE "
        f"({ECE_BINS} bins, correct = supported) of P(supported) on the scored records. P(supported) = the "
        "mean score column mapped onto [0, 1] (summac-zs: (score + 1) / 2, not a probability: its ECE "
        "only says how far that is from one).",
        f"mean: over {', '.join(mean_over(results)) or 'no set'} (the binary sets with a held-out BAcc; not "
        "'factcheck-gpt +irrelevant', not the XSumFaith Spearman). records/s, "
        "pairs/s: over the scoring wall time of every dataset, model load excluded; pairs = NLI or support pairs that "
        "reached the model (a sentence under summac-zs, a chunk of about 400 words under minicheck: "
        "compare speed by records/s); speed = records/s relative to the first checker.",
        "Published: mean balanced accuracy over LLM-AggreFact's own datasets (WiCE among them), as the data "
        "README quotes them; context, not measured on these files or in this run.",
    ]
    keys = {"summac" if name.startswith("summac-") else name for name in names}
    lines += [BINARISATION[key] for key in BINARISATION if key in keys]
    if args.limit is not None:
        lines.append(f"--limit {args.limit}: a seeded sample of at most {args.limit} records from each file.")
    for benchmark in benchmarks:
        lines += benchmark.notes
    for result in results:
        lines.append(
            f"{result.checker}: fixed threshold {result.fixed_threshold_source}; {options_used(result)}"
        )
    lines += [f"skipped {name}: {reason}" for name, reason in skipped.items()]
    return lines


def options_used(result: CheckerResult) -> str:
    """The metric options of each group of datasets, e.g. ``{...} on wice, begin; {...} on summac-factcc``."""
    groups: dict[str, list[str]] = {}
    for run in result.runs:
        groups.setdefault(json.dumps(run["options"]), []).append(run["benchmark"])
    return "; ".join(f"options {options} on {', '.join(names)}" for options, names in groups.items())


def report(
    args: argparse.Namespace,
    benchmarks: Sequence[Benchmark],
    results: Sequence[CheckerResult],
    skipped: Mapping[str, str],
) -> None:
    for result in results:
        render(result.checker, DETAIL_HEADER, detail_rows(result), markdown=args.markdown)
    render(SUMMARY_TITLE, SUMMARY_HEADER, summary_rows(results), markdown=args.markdown)
    print()
    for line in legend(args, benchmarks, results, skipped):
        print(f"- {line}")


def figures(
    args: argparse.Namespace, results: Sequence[CheckerResult], skipped: Mapping[str, str]
) -> dict[str, Any]:
    """Everything the report shows, for ``--json``."""
    return {
        "setting": {
            "data": str(args.data),
            "datasets": [dataset.name for dataset in args.datasets],
            "limit": args.limit,
            "seed": args.seed,
            "device": args.device,
        },
        "binarisation": BINARISATION,
        "published_llm_aggrefact_mean_balanced_accuracy": PUBLISHED_LLM_AGGREFACT,
        "checkers": [{**asdict(result), **result.summary()} for result in results],
        "skipped": dict(skipped),
    }


# -- command line -----------------------------------------------------------------------------------


def unique(values: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values or default))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    by_name = {dataset.name: dataset for dataset in DATASETS}
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: $EVALSUITE_DATA)")
    parser.add_argument("--dataset", action="append", choices=list(by_name), help="repeatable (default: all)")
    parser.add_argument(
        "--model",
        action="append",
        help=f"preset, local path or hub id; repeatable (default: {', '.join(DEFAULT_MODELS)})",
    )
    parser.add_argument(
        "--checker",
        action="append",
        choices=list(RECIPES),
        help=f"recipe; repeatable (default: {', '.join(DEFAULT_RECIPES)})",
    )
    parser.add_argument(
        "--aggregator",
        type=Path,
        default=None,
        metavar="PATH",
        help="SummaC-Conv aggregator (for --checker summac-conv)",
    )
    parser.add_argument("--limit", type=int, default=None, help="a seeded sample of N records from each file")
    parser.add_argument("--seed", type=int, default=0, help="for --limit samples and the two-fold halves")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--markdown", action="store_true", help="plain markdown tables")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be a positive integer, got {args.limit}")
    args.datasets = [by_name[name] for name in unique(args.dataset, list(by_name))]
    needs = dict.fromkeys(path for dataset in args.datasets for path in dataset.files)
    args.data = data_dir_or_exit(parser, args.data, list(needs))
    args.checkers = [
        Checker(model, RECIPES[recipe], args.aggregator)
        for model in unique(args.model, DEFAULT_MODELS)
        for recipe in unique(args.checker, DEFAULT_RECIPES)
    ]
    return args


def load(datasets: Sequence[Dataset], args: argparse.Namespace) -> list[Benchmark]:
    return [dataset.load(args.data, args.limit, args.seed) for dataset in datasets]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    benchmarks = load(args.datasets, args)
    results, skipped = run_checkers(args.checkers, benchmarks, args)
    report(args, benchmarks, results, skipped)
    if args.json is not None:
        args.json.write_text(json.dumps(figures(args, results, skipped), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
