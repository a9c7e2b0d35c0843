"""Benchmark: a re-run of an unchanged file is served from the score cache.

Runs ``Scorer.score_file`` on the bundled example (or ``--input``) twice with a fresh cache, in
fresh Scorer objects and with the process model cache cleared in between, and prints both times,
the ratio and the model forward passes of each run (the second should make none).

    .venv/bin/python bench/cache.py [--input examples/answers.jsonl] [--metric bertscore ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from evalsuite.api import Scorer
from evalsuite.runtime import clear_model_cache

EXAMPLE = Path(__file__).parents[1] / "examples" / "answers.jsonl"


def timed_run(source: Path, out: Path, metrics: list[str], cache: Path) -> tuple[float, int]:
    clear_model_cache()
    started = time.perf_counter()
    with Scorer(metrics, device="cpu", cache=cache) as scorer:
        scorer.score_file(source, out, overwrite=True)
        passes = scorer.runtime.stats.forward_passes
    return time.perf_counter() - started, passes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", type=Path, default=EXAMPLE)
    parser.add_argument("--metric", action="append", dest="metrics", help="metric name (repeatable)")
    args = parser.parse_args()
    metrics = args.metrics or ["bertscore", "embedding_similarity"]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache.sqlite"
        cold, cold_passes = timed_run(args.input, Path(tmp) / "cold.jsonl", metrics, cache)
        warm, warm_passes = timed_run(args.input, Path(tmp) / "warm.jsonl", metrics, cache)
    print(f"input: {args.input}  metrics: {', '.join(metrics)}")
    print(f"first run (model load + scoring): {cold:8.3f} s  forward passes: {cold_passes}")
    print(f"cached re-run:                    {warm:8.3f} s  forward passes: {warm_passes}")
    print(f"speed-up: {cold / warm:.1f}x")


if __name__ == "__main__":
    main()
