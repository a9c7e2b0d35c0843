"""Compute a BERTScore rescaling baseline for a model, every layer, in ``bert_score``'s file format.

Run::

    python scripts/bertscore_baseline.py --data /path/to/shared/data --model minilm \\
        --name sentence-transformers/all-MiniLM-L6-v2 [--pairs 10000] [--seed 0]

This writes ``metrics/baselines/<lang>/<name>.tsv`` with the header ``LAYER,P,R,F`` and one row per
layer 0..num_layers, as ``bert_score``'s own ``get_rescale_baseline.py`` does. The baseline b of a
layer is the mean BERTScore (P, R and F separately) of pairs of unrelated sentences; scores are then
rescaled as ``(x - b) / (1 - b)`` so that unrelated text lands near 0.

``bert_score`` paired random lines of a Common Crawl / news sample. We pair unrelated sentences of
the STS-B train split (``sts/stsbenchmark_sts-train.csv``, CC BY-SA 4.0, read from the data
directory): the distinct sentences are shuffled with a fixed seed and paired two by two, a pair is
kept only if its sentences never appear in the same STS pair and it was not drawn before, and
further shuffles follow until ``--pairs`` pairs are drawn. As in ``bert_score``, sentences of 32 or
more words are left out. Scores come from evalsuite's own ``bertscore`` metric (no idf, no
rescaling, score cache off), so the baseline matches how the metric computes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evalsuite.api import Scorer
from evalsuite.datasets import resolve_data_dir
from evalsuite.errors import ConfigError
from metrics.bertscore import BASELINES_DIR

STS_TRAIN = Path("sts") / "stsbenchmark_sts-train.csv"
MAX_WORDS = 32  # bert_score keeps lines with fewer words than this


def read_sts_sentences(path: Path) -> dict[str, set[int]]:
    """Each distinct STS-B sentence with the indices of the STS pairs it appears in."""
    pairs_of: dict[str, set[int]] = defaultdict(set)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = (row for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if len(row) >= 7)
        for index, row in enumerate(rows):
            for sentence in (row[5].strip(), row[6].strip()):
                if 0 < len(sentence.split(" ")) < MAX_WORDS:
                    pairs_of[sentence].add(index)
    return dict(pairs_of)


def unrelated_pairs(pairs_of: dict[str, set[int]], *, count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` distinct pairs of sentences that never share an STS pair, drawn reproducibly.

    >>> sentences = {"a": {0}, "b": {0}, "c": {1}, "d": {1}}
    >>> sorted(tuple(sorted(pair)) for pair in unrelated_pairs(sentences, count=4, seed=0))
    [('a', 'c'), ('a', 'd'), ('b', 'c'), ('b', 'd')]
    """
    rng = random.Random(seed)
    sentences = sorted(pairs_of)  # a fixed order before shuffling, whatever the file order
    drawn: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    stale_rounds = 0
    while len(drawn) < count:
        order = sentences[:]
        rng.shuffle(order)
        before = len(drawn)
        for candidate, reference in zip(order[0::2], order[1::2], strict=False):
            key = (min(candidate, reference), max(candidate, reference))
            if pairs_of[candidate] & pairs_of[reference] or key in seen:
                continue
            seen.add(key)
            drawn.append((candidate, reference))
            if len(drawn) == count:
                break
        stale_rounds = stale_rounds + 1 if len(drawn) == before else 0
        if stale_rounds >= 10:
            raise ValueError(
                f"only {len(drawn)} unrelated pairs can be drawn from these sentences, asked {count}"
            )
    return drawn


def layer_baseline(
    pairs: Sequence[tuple[str, str]], *, model: str, layer: int, device: str, batch_size: int
) -> tuple[float, float, float]:
    """Mean (P, R, F) of evalsuite's BERTScore at one layer over the pairs."""
    config = {"model": model, "num_layers": layer, "idf": False, "rescale_with_baseline": False}
    with Scorer({"bertscore": config}, device=device, batch_size=batch_size, cache=False) as scorer:
        records = [{"prediction": candidate, "references": [reference]} for candidate, reference in pairs]
        table = scorer.score(records).table
    means = [table[f"bertscore_{name}"].mean() for name in ("precision", "recall", "f1")]
    return float(means[0]), float(means[1]), float(means[2])  # type: ignore[arg-type]


def format_value(value: float) -> str:
    """A float32 in its shortest round-trip form, as pandas writes ``bert_score``'s tables."""
    return str(np.float32(value))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: $EVALSUITE_DATA)")
    parser.add_argument("--model", default="minilm", help="preset, local path or hub id to score with")
    parser.add_argument("--name", required=True, help="file name under the language folder, e.g. a hub id")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out-dir", type=Path, default=BASELINES_DIR, help="baselines root folder")
    args = parser.parse_args(argv)
    try:
        args.data = resolve_data_dir(args.data, needs=[str(STS_TRAIN)])
    except ConfigError as error:
        parser.error(str(error))
    if args.pairs < 1:
        parser.error(f"--pairs must be a positive integer, got {args.pairs}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    source = args.data / STS_TRAIN
    pairs_of = read_sts_sentences(source)
    pairs = unrelated_pairs(pairs_of, count=args.pairs, seed=args.seed)
    print(
        f"{source} sha256={sha256_of(source)}: {len(pairs_of)} distinct sentences, "
        f"{len(pairs)} unrelated pairs (seed {args.seed})",
        file=sys.stderr,
    )
    with Scorer({"bertscore": {"model": args.model}}, device=args.device, cache=False) as probe:
        num_layers = probe.runtime.num_layers(args.model)
    rows = []
    for layer in range(num_layers + 1):
        started = time.perf_counter()
        precision, recall, f1 = layer_baseline(
            pairs, model=args.model, layer=layer, device=args.device, batch_size=args.batch_size
        )
        rows.append(f"{layer},{format_value(precision)},{format_value(recall)},{format_value(f1)}")
        print(
            f"layer {layer}: {rows[-1]} ({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True
        )
    out = args.out_dir / args.lang / f"{args.name}.tsv"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("LAYER,P,R,F\n" + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
