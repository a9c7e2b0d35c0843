"""Validity benchmark: evalsuite's ``factuality`` metric against human consistency labels.

Run::

    python bench/validity_factuality.py --data /path/to/shared/data      # or set EVALSUITE_DATA
    python bench/validity_factuality.py --granularity window --scoring summac --aggregate min
    python bench/validity_factuality.py --limit 20                       # a quick smoke run

Two checks, on files read from the data directory (never copied into the repository):

* SummaC benchmark (``factuality/summac_pr15_{factcc,summeval,xsumfaith,polytope}.json``, each
  ``{id: {document, claim, label}}`` with label 1 = consistent): ROC AUC of the factuality score of
  the claim against its document, per subset. The texts are scored exactly as the files hold them.
* XSumFaith (``factuality/xsumfaith_*.csv``): Spearman correlation of the factuality score with the
  human Faithful score of each (BBC id, system) summary. The scores CSV names summaries by
  ``<system>_<bbcid>`` and holds no text; the summary text comes from the hallucination annotations
  CSV (whose system names differ, see ``factuality_data.XSUMFAITH_SYSTEMS``) and the BBC document
  from the SummaC XSumFaith file, joined by its ``bbcid`` field. Summaries whose document is not
  there are left out and counted. The CSV's own Entailment and BERTScore columns are correlated on
  the same summaries, beside the published figures over all 1992 (Maynez et al., ACL 2020).

Each subset is scored by a fresh Scorer (score cache off), so its NLI pair count and wall time are
its own; the model is loaded and warmed up once beforehand, outside the timings. A benchmark, not a
test: the exit status does not depend on the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from factuality_data import (
    SUMMAC_SUBSETS,
    XSUMFAITH_SCORES,
    XSUMFAITH_SUMMARIES,
    join_xsumfaith,
    read_summac,
    summac_path,
)
from factuality_runs import config_of, number, parse_args, roc_auc, setting, timed_run, warm_up
from scipy.stats import spearmanr

PUBLISHED_SPEARMAN = {"Entailment": 0.431, "BERTScore": 0.190}  # over all 1992 summaries


@dataclass
class SubsetAUC:
    subset: str
    n: int
    consistent: int
    roc_auc: float | None  # None when the (limited) subset holds one class only
    seconds: float
    nli_pairs: int


@dataclass
class FaithfulCorrelation:
    summaries: int  # scored (the first --limit of the matched ones)
    summaries_matched: int  # with a summary text and a document
    summaries_total: int  # in the scores CSV
    bbcids_with_document: int
    bbcids_total: int
    spearman: float
    spearman_csv: dict[str, float]  # the CSV's own metric columns on the same summaries
    seconds: float
    nli_pairs: int


def summac_auc(args: argparse.Namespace, subset: str) -> SubsetAUC:
    items = list(read_summac(args.data / summac_path(subset)).items())[: args.limit]
    records = [{"id": key, "source": item["document"], "prediction": item["claim"]} for key, item in items]
    labels = [int(item["label"]) for _, item in items]
    run = timed_run(args, subset, records)
    return SubsetAUC(subset, len(items), sum(labels), roc_auc(labels, run.scores), run.seconds, run.nli_pairs)


def faithful_correlation(args: argparse.Namespace) -> FaithfulCorrelation:
    join = join_xsumfaith(args.data)
    scored = join.matched[: args.limit]
    run = timed_run(args, "xsumfaith Faithful", [record for _, record in scored])
    faithful = [float(row["Faithful"]) for row, _ in scored]
    return FaithfulCorrelation(
        summaries=len(scored),
        summaries_matched=len(join.matched),
        summaries_total=join.summaries_total,
        bbcids_with_document=join.bbcids_with_document,
        bbcids_total=join.bbcids_total,
        spearman=float(spearmanr(run.scores, faithful).statistic),
        spearman_csv={
            column: float(spearmanr([float(row[column]) for row, _ in scored], faithful).statistic)
            for column in PUBLISHED_SPEARMAN
        },
        seconds=run.seconds,
        nli_pairs=run.nli_pairs,
    )


def report(args: argparse.Namespace, aucs: Sequence[SubsetAUC], faithful: FaithfulCorrelation) -> None:
    print(f"factuality validity: {setting(args)}")
    print("\nSummaC benchmark, ROC AUC of the score against the consistent label")
    print(f"{'subset':<12}{'n':>6}{'consistent':>12}{'ROC AUC':>10}{'seconds':>10}{'NLI pairs':>11}")
    for row in aucs:
        print(
            f"{row.subset:<12}{row.n:>6}{row.consistent:>12}{number(row.roc_auc):>10}"
            f"{row.seconds:>10.1f}{row.nli_pairs:>11}"
        )
    print("\nXSumFaith, Spearman with the human Faithful score")
    print(
        f"{faithful.summaries_matched} of {faithful.summaries_total} summaries matched to a text and a document "
        f"(documents for {faithful.bbcids_with_document} of {faithful.bbcids_total} BBC ids); "
        f"{faithful.summaries} scored in {faithful.seconds:.1f} s, {faithful.nli_pairs} NLI pairs"
    )
    print(f"{'scorer':<42}{'Spearman':>10}{'published (all 1992)':>22}")
    print(f"{'evalsuite factuality':<42}{number(faithful.spearman):>10}{'':>22}")
    for column, published in PUBLISHED_SPEARMAN.items():
        label = f"CSV {column} column, same summaries"
        print(f"{label:<42}{number(faithful.spearman_csv[column]):>10}{published:>22.3f}")
    print("(published: entailment = BERT-large fine-tuned on MNLI; BERTScore as in Maynez et al., 2020)")


def main(argv: Sequence[str] | None = None) -> int:
    needed = [*map(summac_path, SUMMAC_SUBSETS), XSUMFAITH_SCORES, XSUMFAITH_SUMMARIES]
    args = parse_args(__doc__, argv, needs=needed, limit_help="use only the first N items of each subset")
    warm_up(args)
    aucs = [summac_auc(args, subset) for subset in SUMMAC_SUBSETS]
    faithful = faithful_correlation(args)
    report(args, aucs, faithful)
    if args.json is not None:
        figures = {
            "config": config_of(args),
            "summac_roc_auc": [asdict(row) for row in aucs],
            "xsumfaith_faithful_spearman": asdict(faithful),
            "published_spearman": PUBLISHED_SPEARMAN,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
