"""Benchmark: a re-run of an unchanged file through the CLI is served from the score cache.

Run::

    python bench/cache.py --data /path/to/shared/data      # or set EVALSUITE_DATA
    python bench/cache.py --records 500 --metric embedding_similarity --device cuda

Times the whole process ``python -m evalsuite score IN -m METRIC -o OUT --cache-path CACHE``, as a
user (or CI) runs it: interpreter start, imports and model loading included. Runs over the same
records: a cold one with a fresh score cache, then ``--repeats`` re-runs of the same input into new
outputs (the median is reported), each served entirely from that cache (checked from the command's
own "N of M metric scores from cache" line). ``python -m evalsuite --help`` is timed too, as the floor any command pays. The records are
the first ``--records`` STS-B train pairs (``sts/stsbenchmark_sts-train.csv`` in the data directory,
never copied into the repository): prediction = sentence 1, references = [sentence 2].

Prints the seconds of each run, the ratio and the target (the cached re-run >= 20x faster than the
cold run). The cold run's score cache is fresh; models already prepared under the evalsuite cache
directory stay prepared. A benchmark, not a test: the exit status does not depend on the target.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalsuite.datasets import resolve_data_dir
from evalsuite.errors import ConfigError

STS_TRAIN = Path("sts") / "stsbenchmark_sts-train.csv"
TARGET_RATIO = 20.0
FROM_CACHE = re.compile(r"(\d+) of (\d+) metric scores from cache")


@dataclass
class Timing:
    """One whole ``evalsuite`` process: its wall time and what it said about the cache."""

    name: str
    seconds: float
    from_cache: tuple[int, int] | None  # (scores from the cache, scores) as the command printed them


def read_sts_pairs(path: Path, count: int) -> list[tuple[str, str]]:
    """The first ``count`` STS-B pairs: tab-separated, no quoting; fields 5 and 6 are the sentences."""
    pairs: list[tuple[str, str]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) >= 7:
                pairs.append((row[5], row[6]))
                if len(pairs) == count:
                    break
    return pairs


def write_records(pairs: Sequence[tuple[str, str]], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for index, (sentence1, sentence2) in enumerate(pairs):
            record = {"id": f"sts-train-{index}", "prediction": sentence1, "references": [sentence2]}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def timed_cli(name: str, arguments: Sequence[str]) -> Timing:
    """Run ``python -m evalsuite ARGUMENTS`` to its end; exit with its output when it fails."""
    environment = {**os.environ}
    environment.setdefault("HF_HUB_OFFLINE", "1")
    environment.setdefault("TOKENIZERS_PARALLELISM", "false")
    command = [sys.executable, "-m", "evalsuite", *arguments]
    started = time.perf_counter()
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{name}: `{' '.join(command)}` exited {done.returncode}:\n{done.stdout}{done.stderr}")
    found = FROM_CACHE.search(done.stdout)
    return Timing(name, seconds, (int(found[1]), int(found[2])) if found else None)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: $EVALSUITE_DATA)")
    parser.add_argument("--records", type=int, default=3000, help="STS-B train pairs to score")
    parser.add_argument(
        "--metric",
        action="append",
        dest="metrics",
        help="metric spec as `score -m` takes it (repeatable; default: bertscore)",
    )
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--repeats", type=int, default=3, help="cached re-runs timed (the median is kept)")
    args = parser.parse_args(argv)
    try:
        args.data = resolve_data_dir(args.data, needs=[str(STS_TRAIN)])
    except ConfigError as error:
        parser.error(str(error))
    if args.records < 1:
        parser.error(f"--records must be a positive integer, got {args.records}")
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {args.repeats}")
    args.metrics = args.metrics or ["bertscore"]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pairs = read_sts_pairs(args.data / STS_TRAIN, args.records)
    if len(pairs) < args.records:
        print(f"note: {STS_TRAIN} has only {len(pairs)} pairs; scoring those", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="evalsuite-bench-cache-") as folder:
        tmp = Path(folder)
        source = write_records(pairs, tmp / "sts.jsonl")
        metrics = [option for metric in args.metrics for option in ("-m", metric)]
        cache = ["--cache-path", str(tmp / "scores.sqlite"), "--device", args.device]
        print(f"{len(pairs)} records, metric(s) {', '.join(args.metrics)} ...", file=sys.stderr, flush=True)
        floor = timed_cli("`evalsuite --help`", ["--help"])
        cold = timed_cli(
            "cold (fresh cache)", ["score", str(source), *metrics, "-o", str(tmp / "cold.jsonl"), *cache]
        )
        # The re-run is repeated (each one fully cached, into an output of its own) and the median
        # kept: one process of ~1 s is at the mercy of whatever else the machine does.
        reruns = [
            timed_cli(
                "cached re-run", ["score", str(source), *metrics, "-o", str(tmp / f"cached{i}.jsonl"), *cache]
            )
            for i in range(args.repeats)
        ]
        cached = sorted(reruns, key=lambda timing: timing.seconds)[len(reruns) // 2]
        cached.name = f"cached re-run (median of {len(reruns)})"

    print(
        f"{len(pairs)} STS-B train pairs, metric(s) {', '.join(args.metrics)}, device {args.device}; "
        "whole `python -m evalsuite` process (start, imports and model loading included)"
    )
    print(f"{'run':<32}{'seconds':>10}{'records/s':>12}{'scores from cache':>20}")
    for timing in (floor, cold, cached):
        rate = "" if timing is floor else f"{len(pairs) / timing.seconds:,.1f}"
        hits = "" if timing.from_cache is None else f"{timing.from_cache[0]} of {timing.from_cache[1]}"
        print(f"{timing.name:<32}{timing.seconds:>10.2f}{rate:>12}{hits:>20}")
    if any(run.from_cache is None or run.from_cache[0] != run.from_cache[1] for run in reruns):
        print("warning: the re-run was not served entirely from the cache", file=sys.stderr)
    ratio = cold.seconds / cached.seconds
    print(
        f"ratio: the cached re-run is {ratio:.1f}x faster than the cold run "
        f"(target: >= {TARGET_RATIO:g}x: {'met' if ratio >= TARGET_RATIO else 'not met'}); "
        f"startup floor {floor.seconds:.2f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
