"""Validity benchmark: judge proxies (``proxies``) against the GPT-4 judge of AlpacaEval and SummEval's humans.

Run::

    python bench/validity_proxy.py --data /path/to/shared/data      # or set EVALSUITE_DATA
    python bench/validity_proxy.py --limit 200                      # a quick smoke run
    python bench/validity_proxy.py --no-embeddings                  # text statistics only (no encoder)
    python bench/validity_proxy.py --lm-likelihood                  # + SmolLM2 log-likelihoods (slow on CPU)

Data (read from the data directory, never copied): ``judgments/alpaca_eval_gpt4_annotations_{alpaca-7b,gpt4}.json``,
805 instructions each; ``output_1`` is text-davinci-003's answer (A, the baseline), ``output_2`` the
model's (B); ``preference`` is the GPT-4 judge's verdict: 1 A better, 2 B better, 0 draw. And
``summarization/bartscore_SummEval_data.json`` (100 documents x 16 systems, expert relevance 1-5).

AlpacaEval: the proxy sees small-model features only: text statistics of both answers and of the
instruction, their differences (B − A), and (default) MiniLM sentence embeddings of the instruction
and both answers, PCA-reduced inside the model, with their cosines; ``--lm-likelihood`` adds each
answer's mean token log-probability given the instruction under the packaged SmolLM2-135M-Instruct.
The proxy is a ``JudgePredictor(kind="pairwise")`` trained with draws left out (``draw_label=0``).

- Within alpaca-7b: 5-fold stratified cross-validation; every record gets an out-of-fold prediction.
  ROC AUC of P(B better) over non-draw records (draws are counted, not scored). Cascade: the pooled
  out-of-fold confidences are planned with ``plan_cascade`` (least confident to the judge first);
  the realised agreement counts a draw the proxy keeps as a disagreement (the proxy never says "draw").
- Across models: train on one file, test on the other (the baseline answers are the same; the
  model, and so the share of wins, differs: alpaca-7b wins 26%, GPT-4 95%).
- Anchors measured in the same run: a logistic model on the two answers' log lengths, and the
  "longest answer wins" heuristic (agreement with the GPT-4 judge over non-draws).

SummEval: a ``JudgePredictor(kind="continuous")`` predicts expert relevance from metric features:
BERTScore (MiniLM) and embedding similarity against the original highlights, plus the summary's
text statistics; 5-fold cross-validation grouped by document. Figures: summary-level Spearman
(per document over its 16 summaries, averaged over documents, as in the G-Eval/UniEval tables) and
pooled Spearman, for the proxy and for each single metric column.

A benchmark, not a test: the exit status does not depend on the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, StratifiedKFold

from evalsuite.datasets import resolve_data_dir
from evalsuite.errors import ConfigError
from evalsuite.runtime import Runtime, TruncationWarning
from proxies import FeatureConfig, FeatureTable, JudgePredictor, pairwise_table, plan_cascade, table_features

ALPACA = {name: Path(f"judgments/alpaca_eval_gpt4_annotations_{name}.json") for name in ("alpaca-7b", "gpt4")}
SUMMEVAL = Path("summarization/bartscore_SummEval_data.json")
LM = "smollm2"
TARGET_AUC = 0.85
TARGET_AGREEMENT, TARGET_BUDGET = 0.90, 0.30
# Published anchors (data README, AlpacaEval leaderboard): agreement with human annotators.
PUBLISHED = {"longest answer vs humans": 0.622, "GPT-4 judge vs humans": 0.692}


@dataclass
class Judgments:
    name: str
    a: pl.DataFrame  # id, prompt, prediction (+ lm column): the baseline's answers
    b: pl.DataFrame  # the model's answers
    preference: np.ndarray  # 0 draw, 1 A better, 2 B better

    @property
    def ids(self) -> list[str]:
        return self.a["id"].to_list()


@dataclass
class ProxyFigures:
    setting: str
    features: str
    records: int
    draws: int
    roc_auc: float
    accuracy: float  # over non-draws
    set_coverage: float  # conformal sets holding the judge's label (non-draws), nominal 0.9
    proxy_alone_agreement: float  # every record, draws count as disagreements
    budget_expected: float
    budget_realised: float
    target_share: float  # share of records sent to the judge for an expected agreement of 0.9
    target_realised: float
    curve: dict[str, float] = field(default_factory=dict)  # share to judge -> realised agreement
    seconds: float = 0.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: $EVALSUITE_DATA)")
    parser.add_argument(
        "--limit", type=int, default=None, help="first N instructions per file, first N/8 documents"
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=TARGET_BUDGET)
    parser.add_argument(
        "--no-embeddings", dest="embeddings", action="store_false", help="text statistics only"
    )
    parser.add_argument(
        "--lm-likelihood", action="store_true", help=f"add {LM} log-likelihoods (slow on CPU)"
    )
    parser.add_argument("--skip-summeval", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the figures here")
    args = parser.parse_args(argv)
    try:
        args.data = resolve_data_dir(args.data, needs=[str(path) for path in (*ALPACA.values(), SUMMEVAL)])
    except ConfigError as error:
        parser.error(str(error))
    if args.limit is not None and args.limit < 40:
        parser.error(f"--limit must be at least 40 (enough judge wins per fold), got {args.limit}")
    return args


# -- AlpacaEval ---------------------------------------------------------------------------------------


def read_judgments(path: Path, name: str, limit: int | None) -> Judgments:
    rows = json.loads(path.read_text(encoding="utf-8"))[:limit]
    ids = [f"{i}" for i in range(len(rows))]
    prompts = [row["instruction"] for row in rows]
    a = pl.DataFrame({"id": ids, "prompt": prompts, "prediction": [row["output_1"] for row in rows]})
    b = pl.DataFrame({"id": ids, "prompt": prompts, "prediction": [row["output_2"] for row in rows]})
    preference = np.array([int(row["preference"]) for row in rows])
    return Judgments(name, a, b, preference)


def lm_log_likelihoods(runtime: Runtime, table: pl.DataFrame) -> list[float]:
    """Mean token log-probability of each answer given its instruction, in a chat turn."""
    tokenizer = runtime.language_model(LM).tokenizer
    contexts = [
        str(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        )
        for prompt in table["prompt"].to_list()
    ]
    scored = runtime.target_log_probs(LM, list(zip(contexts, table["prediction"].to_list(), strict=True)))
    return [float(item.log_probs.mean()) if len(item.log_probs) else 0.0 for item in scored]


class MemoEmbeddings:
    """The runtime's sentence embeddings, each distinct text encoded once across calls: both files
    share their instructions and baseline answers."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.memo: dict[tuple[str, str], np.ndarray] = {}

    def sentence_embeddings(self, model: str, texts: Sequence[str]) -> np.ndarray:
        todo = list(dict.fromkeys(text for text in texts if (model, text) not in self.memo))
        if todo:
            encoded = self.runtime.sentence_embeddings(model, todo).numpy()
            self.memo.update({(model, text): row for text, row in zip(todo, encoded, strict=True)})
        return np.stack([self.memo[(model, text)] for text in texts])


def alpaca_features(
    judgments: Judgments, config: FeatureConfig, runtime: MemoEmbeddings | None
) -> FeatureTable:
    a = table_features(judgments.a, config, runtime=runtime)
    b = table_features(judgments.b, config, runtime=runtime)
    return pairwise_table(a, b, config)


def evaluate_oof(
    judgments: Judgments, table: FeatureTable, features: str, args: argparse.Namespace
) -> ProxyFigures:
    """Out-of-fold pairwise proxy predictions for every record (stratified folds, draws included)."""
    started = time.perf_counter()
    n = len(table)
    probability_b = np.zeros(n)
    confidence = np.zeros(n)
    predicted = np.zeros(n, dtype=np.int64)
    covered = np.zeros(n, dtype=bool)
    folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    # Stratified on "B wins": the few draws fall where they may.
    for train, test in folds.split(np.zeros(n), judgments.preference == 2):
        proxy = JudgePredictor(kind="pairwise", seed=args.seed)
        proxy.fit_table(table.subset(train), judgments.preference[train].tolist(), draw_label=0)
        fold = proxy.predict_table(table.subset(test))
        _collect(fold, test, judgments.preference, probability_b, confidence, predicted, covered)
    return _figures(
        judgments,
        f"within {judgments.name} ({args.folds}-fold CV)",
        features,
        probability_b,
        confidence,
        predicted,
        covered,
        args,
        time.perf_counter() - started,
    )


def evaluate_transfer(
    train: Judgments,
    train_table: FeatureTable,
    test: Judgments,
    test_table: FeatureTable,
    features: str,
    args: argparse.Namespace,
) -> ProxyFigures:
    started = time.perf_counter()
    proxy = JudgePredictor(kind="pairwise", seed=args.seed)
    proxy.fit_table(train_table, train.preference.tolist(), draw_label=0)
    predictions = proxy.predict_table(test_table)
    n = len(test_table)
    probability_b, confidence = np.zeros(n), np.zeros(n)
    predicted, covered = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    _collect(predictions, np.arange(n), test.preference, probability_b, confidence, predicted, covered)
    return _figures(
        test,
        f"train {train.name} → test {test.name}",
        features,
        probability_b,
        confidence,
        predicted,
        covered,
        args,
        time.perf_counter() - started,
    )


def _collect(
    predictions: Any,
    rows: np.ndarray,
    preference: np.ndarray,
    probability_b: np.ndarray,
    confidence: np.ndarray,
    predicted: np.ndarray,
    covered: np.ndarray,
) -> None:
    classes = list(predictions.classes)
    probability_b[rows] = predictions.probabilities[:, classes.index(2)]
    confidence[rows] = predictions.confidence
    predicted[rows] = np.asarray(predictions.label)
    for row, members in zip(rows, predictions.sets, strict=True):
        judged = preference[row]
        covered[row] = judged in classes and bool(members[classes.index(judged)])


def _figures(
    judgments: Judgments,
    setting: str,
    features: str,
    probability_b: np.ndarray,
    confidence: np.ndarray,
    predicted: np.ndarray,
    covered: np.ndarray,
    args: argparse.Namespace,
    seconds: float,
) -> ProxyFigures:
    preference = judgments.preference
    decided = preference != 0
    agrees = predicted == preference  # a draw is never matched by the proxy
    ids = judgments.ids
    budget_plan = plan_cascade(ids, confidence, budget=args.budget)
    target_plan = plan_cascade(ids, confidence, target_agreement=TARGET_AGREEMENT)
    curve = {}
    for share in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5):
        plan = plan_cascade(ids, confidence, budget=share)
        curve[f"{share:.1f}"] = float((plan.needs_judge | agrees).mean())
    return ProxyFigures(
        setting=setting,
        features=features,
        records=len(preference),
        draws=int((~decided).sum()),
        roc_auc=float(roc_auc_score(preference[decided] == 2, probability_b[decided])),
        accuracy=float(agrees[decided].mean()),
        set_coverage=float(covered[decided].mean()),
        proxy_alone_agreement=float(agrees.mean()),
        budget_expected=budget_plan.expected_agreement,
        budget_realised=float((budget_plan.needs_judge | agrees).mean()),
        target_share=target_plan.share_to_judge,
        target_realised=float((target_plan.needs_judge | agrees).mean()),
        curve=curve,
        seconds=seconds,
    )


def anchors(judgments: Judgments, args: argparse.Namespace) -> dict[str, float]:
    """The in-run anchors: logistic on the two log lengths (5-fold AUC), and 'longest wins'."""
    decided = judgments.preference != 0
    lengths = np.c_[
        np.log1p(judgments.a["prediction"].str.len_chars().to_numpy()),
        np.log1p(judgments.b["prediction"].str.len_chars().to_numpy()),
    ][decided]
    wins = judgments.preference[decided] == 2
    oof = np.zeros(wins.size)
    folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    for train, test in folds.split(lengths, wins):
        oof[test] = LogisticRegression().fit(lengths[train], wins[train]).predict_proba(lengths[test])[:, 1]
    longest_b = lengths[:, 1] > lengths[:, 0]
    return {
        "length_logistic_auc": float(roc_auc_score(wins, oof)),
        "longest_wins_agreement": float((longest_b == wins).mean()),
    }


# -- SummEval -----------------------------------------------------------------------------------------


def summeval(args: argparse.Namespace) -> dict[str, Any]:
    from evalsuite.api import Scorer

    data: dict[str, Any] = json.loads((args.data / SUMMEVAL).read_text(encoding="utf-8"))
    documents = list(data.items())[: None if args.limit is None else max(10, args.limit // 8)]
    records, groups, relevance = [], [], []
    for index, (doc_id, item) in enumerate(documents):
        for system, summary in item["sys_summs"].items():
            records.append(
                {
                    "id": f"{doc_id}/{system}",
                    "source": item["src"],
                    "prediction": summary["sys_summ"],
                    "references": [item["ref_summ"]],
                }
            )
            groups.append(index)
            relevance.append(float(summary["scores"]["relevance"]))
    started = time.perf_counter()
    with Scorer(["bertscore", "embedding_similarity"], device=args.device, cache=False) as scorer:
        results = scorer.score(records)
    scoring_seconds = time.perf_counter() - started
    metric_columns = tuple(results.score_columns)
    # Metric scores and the summary's text statistics; the article's own features are the same for
    # all 16 summaries of a document, so they cannot rank them (and embeddings cost minutes here).
    config = FeatureConfig(metric_columns=metric_columns, text_fields=("prediction",))
    table = table_features(results.table, config)
    y, group = np.array(relevance), np.array(groups)
    oof = np.zeros(y.size)
    inside = np.zeros(y.size, dtype=bool)
    started = time.perf_counter()
    for train, test in GroupKFold(n_splits=args.folds).split(table.values, y, group):
        proxy = JudgePredictor(kind="continuous", seed=args.seed, tolerance=0.5)
        proxy.fit_table(table.subset(train), y[train].tolist())
        predictions = proxy.predict_table(table.subset(test))
        oof[test] = predictions.label
        assert predictions.intervals is not None
        inside[test] = (predictions.intervals[:, 0] <= y[test]) & (y[test] <= predictions.intervals[:, 1])
    fit_seconds = time.perf_counter() - started
    columns = {
        "proxy": oof,
        **{column: table.column(column) for column in metric_columns},
        "prediction:log_words": table.column("prediction:log_words"),
    }
    figures = {
        name: {
            "summary_spearman": summary_level_spearman(values, y, group),
            "pooled_spearman": _spearman(values, y),
        }
        for name, values in columns.items()
    }
    best = max(
        (name for name in figures if name != "proxy"), key=lambda name: figures[name]["summary_spearman"]
    )
    return {
        "summaries": int(y.size),
        "documents": len(documents),
        "figures": figures,
        "best_single": best,
        "interval_coverage": float(inside.mean()),
        "scoring_seconds": scoring_seconds,
        "fit_seconds": fit_seconds,
    }


def summary_level_spearman(values: np.ndarray, human: np.ndarray, group: np.ndarray) -> float:
    """Spearman per document over its summaries, averaged over documents (constant ones left out)."""
    per_document = []
    for document in np.unique(group):
        rows = group == document
        if np.ptp(values[rows]) > 0 and np.ptp(human[rows]) > 0:
            per_document.append(_spearman(values[rows], human[rows]))
    return float(np.mean(per_document)) if per_document else float("nan")


def _spearman(first: np.ndarray, second: np.ndarray) -> float:
    return float(spearmanr(first, second).statistic)


# -- report -------------------------------------------------------------------------------------------


def print_report(
    alpaca: list[ProxyFigures],
    anchor: dict[str, float],
    summ: dict[str, Any] | None,
    args: argparse.Namespace,
) -> None:
    print(
        f"\nAlpacaEval, GPT-4 judge (budget {args.budget:g}; agreement counts draws the proxy keeps as misses)"
    )
    header = (
        f"{'setting':<34} {'features':<22} {'n':>4} {'draws':>5} {'AUC':>6} {'acc':>6} {'set cov':>7} "
        f"{'alone':>6} {'exp@b':>6} {'real@b':>6} {'share@.9':>8} {'real@.9':>7}"
    )
    print(header)
    for row in alpaca:
        print(
            f"{row.setting:<34} {row.features:<22} {row.records:>4} {row.draws:>5} {row.roc_auc:>6.3f} "
            f"{row.accuracy:>6.3f} {row.set_coverage:>7.3f} {row.proxy_alone_agreement:>6.3f} "
            f"{row.budget_expected:>6.3f} {row.budget_realised:>6.3f} {row.target_share:>8.3f} {row.target_realised:>7.3f}"
        )
    print(
        f"anchors (same run, within alpaca-7b): logistic on log lengths AUC {anchor['length_logistic_auc']:.3f}; "
        f"'longest wins' agrees with the GPT-4 judge on {anchor['longest_wins_agreement']:.1%} of non-draws. "
        f"Published (vs humans): longest {PUBLISHED['longest answer vs humans']:.1%}, "
        f"GPT-4 judge {PUBLISHED['GPT-4 judge vs humans']:.1%}."
    )
    main_row = alpaca[0]
    print(
        f"targets: AUC ≥ {TARGET_AUC} within alpaca-7b: {main_row.roc_auc:.3f} "
        f"({'met' if main_row.roc_auc >= TARGET_AUC else 'MISSED'}); agreement ≥ {TARGET_AGREEMENT:.0%} with ≤ "
        f"{TARGET_BUDGET:.0%} to the judge: {main_row.curve.get('0.3', float('nan')):.3f} realised at 30% "
        f"({'met' if main_row.curve.get('0.3', 0) >= TARGET_AGREEMENT else 'MISSED'})"
    )
    print(
        "cost/agreement curve (within alpaca-7b, realised): "
        + ", ".join(f"{share} → {value:.3f}" for share, value in main_row.curve.items())
    )
    if summ is not None:
        print(
            f"\nSummEval relevance, {summ['summaries']} summaries of {summ['documents']} documents "
            f"(5-fold CV grouped by document; conformal interval coverage {summ['interval_coverage']:.3f}, nominal 0.9)"
        )
        print(f"{'predictor':<34} {'summary-level ρ':>16} {'pooled ρ':>9}")
        for name, values in summ["figures"].items():
            marker = " (best single metric)" if name == summ["best_single"] else ""
            print(f"{name:<34} {values['summary_spearman']:>16.3f} {values['pooled_spearman']:>9.3f}{marker}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    judgments = {name: read_judgments(args.data / path, name, args.limit) for name, path in ALPACA.items()}
    runtime = Runtime(device=args.device) if (args.embeddings or args.lm_likelihood) else None
    metric_columns: tuple[str, ...] = ()
    if args.lm_likelihood:
        assert runtime is not None
        for item in judgments.values():
            print(f"{LM} log-likelihoods of {item.name} ...", file=sys.stderr, flush=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TruncationWarning)  # long answers: truncation is expected
                item.a = item.a.with_columns(
                    pl.Series("lm_mean_logprob", lm_log_likelihoods(runtime, item.a))
                )
                item.b = item.b.with_columns(
                    pl.Series("lm_mean_logprob", lm_log_likelihoods(runtime, item.b))
                )
        metric_columns = ("lm_mean_logprob",)
    stats_config = FeatureConfig(
        metric_columns=metric_columns, text_fields=("prediction",), context_fields=("prompt",)
    )
    configs = {"text statistics": stats_config}
    if args.embeddings:
        configs["+ MiniLM embeddings"] = FeatureConfig(
            metric_columns=metric_columns,
            text_fields=("prediction",),
            context_fields=("prompt",),
            embedding_fields=("prompt", "prediction"),
        )
    if args.lm_likelihood:
        configs = {f"{name} + {LM}": config for name, config in configs.items()}
    alpaca: list[ProxyFigures] = []
    tables: dict[str, dict[str, FeatureTable]] = {}
    memo = MemoEmbeddings(runtime) if runtime is not None else None
    for features, config in configs.items():
        print(f"features: {features} ...", file=sys.stderr, flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", TruncationWarning
            )  # long answers: MiniLM reads the first 256 tokens
            tables[features] = {name: alpaca_features(item, config, memo) for name, item in judgments.items()}
    print(f"features ready after {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    # The richest feature set first: its within-alpaca-7b row is the headline figure.
    for features in reversed(list(configs)):
        print(f"fitting: {features} ...", file=sys.stderr, flush=True)
        alpaca.append(evaluate_oof(judgments["alpaca-7b"], tables[features]["alpaca-7b"], features, args))
    best = list(configs)[-1]
    for train_name, test_name in (("alpaca-7b", "gpt4"), ("gpt4", "alpaca-7b")):
        try:
            alpaca.append(
                evaluate_transfer(
                    judgments[train_name],
                    tables[best][train_name],
                    judgments[test_name],
                    tables[best][test_name],
                    best,
                    args,
                )
            )
        except ConfigError as error:  # e.g. too few baseline wins in a --limit run of the gpt4 file
            print(f"train {train_name} → test {test_name}: skipped: {error}", file=sys.stderr)
    anchor = anchors(judgments["alpaca-7b"], args)
    print(f"AlpacaEval done after {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    summ = None if args.skip_summeval else summeval(args)
    print_report(alpaca, anchor, summ, args)
    print(f"\ntotal {time.perf_counter() - started:.0f}s (limit {args.limit or 'none'}, seed {args.seed})")
    if args.json is not None:
        payload = {
            "alpaca": [asdict(row) for row in alpaca],
            "anchors": anchor,
            "summeval": summ,
            "limit": args.limit,
            "seed": args.seed,
            "budget": args.budget,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    sys.exit(main())
