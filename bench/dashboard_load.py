"""Time to open and filter a 100,000-record run in the dashboard's data layer (and through the real page).

Generates a run with realistic columns (texts, references, samples, metadata, 11 score columns, the
evidence columns of SelfCheck, factuality, semantic entropy and PII) into a temporary directory,
writes it as the spine does (Parquet by default, JSONL with ``--format jsonl``: table + manifest),
then times what the dashboard does:

- open: find the run, scan it, read its manifest summary, count records, category values and score
  bounds (what the first page needs);
- filter: a metadata filter (model, task) plus a score range, counted;
- first page: 50 rows of the filtered table, sorted by a score;
- histograms: one per score column over the filtered records (the Distributions page);
- export: the filtered table as CSV and as Parquet bytes;
- page: the Records page end to end through Streamlit's AppTest (no browser), unfiltered and filtered.

The peer is loading everything: reading the whole file eagerly and filtering in memory (what a
dashboard without lazy frames does before it can show anything). Timings are the best of
``--repeat`` runs, in seconds. Not a test: nothing here fails on a number.

    .venv/bin/python bench/dashboard_load.py            # 100,000 records, Parquet
    .venv/bin/python bench/dashboard_load.py --records 20000 --format jsonl
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dashboards import APP, data
from evalsuite.results import Results, histogram

SENTENCES = [
    "Water boils at 100 degrees Celsius at sea level.",
    "The capital of Australia is Canberra, not Sydney.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "Neil Armstrong walked on the Moon in July 1969.",
    "A spider has eight legs, while insects have six.",
    "Rayleigh scattering makes the daytime sky look blue.",
    "The train's average speed is 72 km/h.",
    "Use list.reverse() to reverse a list in place.",
]
SCORES = {
    "bertscore": (["precision", "recall", "f1"], True),
    "selfcheck_nli": (["mean", "max"], False),
    "factuality": (["mean", "min"], True),
    "semantic_entropy": (["entropy", "clusters"], False),
    "pii": (["total"], False),
    "toxicity": (["profanity"], False),
}


def generate(n: int, seed: int = 0) -> tuple[pl.DataFrame, list[str], dict[str, bool], dict[str, Any]]:
    """``n`` records with texts, metadata, scores and evidence columns."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(SENTENCES), size=(n, 3))
    predictions = [" ".join(SENTENCES[j] for j in row[:2]) for row in pick]
    sources = [
        " ".join(SENTENCES[(j + k) % len(SENTENCES)] for k in range(5) for j in row[:1]) for row in pick
    ]
    f1 = np.clip(rng.normal(0.75, 0.12, n), 0, 1)
    sentence_scores = rng.uniform(0, 1, (n, 2))
    claim_scores = rng.uniform(-1, 1, (n, 2))
    has_pii = rng.random(n) < 0.03
    table = pl.DataFrame(
        {
            "id": [f"rec-{i:06d}" for i in range(n)],
            "prompt": [
                f"Question {i}: tell me about {SENTENCES[row[2]].split()[1]}." for i, row in enumerate(pick)
            ],
            "source": sources,
            "prediction": predictions,
            "references": [[SENTENCES[row[0]], SENTENCES[row[2]]] for row in pick],
            "samples": [[SENTENCES[(row[0] + k) % len(SENTENCES)] for k in range(5)] for row in pick],
            "model": rng.choice(["model-a", "model-b", "model-c"], n).tolist(),
            "task": rng.choice(["qa", "rag", "summary", "code"], n).tolist(),
            "tags": [
                ["hard"] if r < 0.2 else (["short", "numeric"] if r < 0.4 else []) for r in rng.random(n)
            ],
            "bertscore_precision": np.clip(f1 + rng.normal(0, 0.03, n), 0, 1),
            "bertscore_recall": np.clip(f1 + rng.normal(0, 0.03, n), 0, 1),
            "bertscore_f1": f1,
            "selfcheck_nli_mean": sentence_scores.mean(axis=1),
            "selfcheck_nli_max": sentence_scores.max(axis=1),
            "factuality_mean": claim_scores.mean(axis=1),
            "factuality_min": claim_scores.min(axis=1),
            "semantic_entropy_entropy": rng.uniform(0, 1.6, n),
            "semantic_entropy_clusters": rng.integers(1, 6, n).astype(float),
            "pii_total": has_pii.astype(float),
            "toxicity_profanity": rng.beta(0.5, 20, n),
            "selfcheck_nli_sentences": [
                [{"sentence": SENTENCES[row[k]], "score": float(sentence_scores[i, k])} for k in range(2)]
                for i, row in enumerate(pick)
            ],
            "factuality_claims": [
                [
                    {
                        "claim": SENTENCES[row[k]],
                        "score": float(claim_scores[i, k]),
                        "support": SENTENCES[row[0]],
                        "entailment": 0.8,
                        "contradicting": SENTENCES[row[2]],
                        "contradiction": 0.1,
                    }
                    for k in range(2)
                ]
                for i, row in enumerate(pick)
            ],
            "semantic_entropy_cluster_ids": [[0, 0, 1, 2, 1]] * n,
            "pii_spans": [
                [{"type": "email", "start": 0, "end": 5, "text": "a@b.c"}] if flag else [] for flag in has_pii
            ],
        }
    )
    columns = [f"{name}_{score}" for name, (scores, _) in SCORES.items() for score in scores]
    directions = {f"{name}_{score}": higher for name, (scores, higher) in SCORES.items() for score in scores}
    details = {
        "selfcheck_nli": ["sentences"],
        "factuality": ["claims"],
        "semantic_entropy": ["cluster_ids"],
        "pii": ["spans"],
    }
    manifest = {
        "evalsuite_version": "0.1.0",
        "runtime": {"device": "cpu", "dtype": "float32"},
        "metrics": [
            {
                "name": name,
                "config": {},
                "config_hash": f"{name}-bench",
                "columns": [f"{name}_{score}" for score in scores],
                "detail_columns": [f"{name}_{detail}" for detail in details.get(name, [])],
                "higher_is_better": higher,
            }
            for name, (scores, higher) in SCORES.items()
        ],
        "input": {"path": "bench.jsonl", "records": n, "errors": 0},
    }
    return table, columns, directions, manifest


def best_of(repeat: int, action: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return min(times), result


FILTERS = data.Filters(
    categories={"model": ["model-a"], "task": ["qa", "rag"]}, ranges={"bertscore_f1": (0.5, 0.8)}
)


def open_run(path: Path) -> data.Run:
    runs, problems = data.load_runs([path])
    assert not problems, problems
    run = runs[0]
    run.results.summary()
    data.count(run.table)
    data.category_values(run)
    data.score_bounds(run)
    return run


def eager_peer(path: Path) -> int:
    """Loading everything: the whole file read eagerly, then filtered in memory."""
    table = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_ndjson(path)
    return table.filter(FILTERS.expression(table.schema)).height


def page_through_apptest(path: Path, filtered: bool) -> None:
    from streamlit.testing.v1 import AppTest

    os.environ[data.PATHS_ENV] = str(path)
    at = AppTest.from_file(APP, default_timeout=600).run()
    at.switch_page("views/records.py").run()
    if filtered:
        next(w for w in at.sidebar.multiselect if w.label == "model").select("model-a").run()
    if at.exception:
        raise RuntimeError(at.exception[0].value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--format", choices=["parquet", "jsonl"], default="parquet")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-apptest", action="store_true", help="Skip the end-to-end page timing.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        table, columns, directions, manifest = generate(args.records)
        path = Path(folder) / f"run.{args.format}"
        Results(table, score_columns=columns, higher_is_better=directions, manifest=manifest).write(path)
        made = time.perf_counter() - started
        size = path.stat().st_size / 1e6
        print(
            f"{args.records:,} records, {len(table.columns)} columns, {args.format} {size:.1f} MB (made in {made:.1f} s)"
        )
        del table

        rows: list[tuple[str, float]] = []
        seconds, run = best_of(args.repeat, lambda: open_run(path))
        rows.append(("open (scan, manifest summary, count, categories, bounds)", seconds))
        filtered = data.filtered(run, FILTERS)
        seconds, matching = best_of(args.repeat, lambda: data.count(data.filtered(run, FILTERS)))
        rows.append((f"filter: model, task and a score range -> {matching:,} records", seconds))
        shown = data.display_columns(run)
        seconds, _ = best_of(
            args.repeat,
            lambda: data.page(
                filtered, page_number=1, page_size=50, sort_by="bertscore_f1", descending=True, columns=shown
            ),
        )
        rows.append(("first page: 50 rows, sorted by bertscore_f1", seconds))
        seconds, _ = best_of(
            args.repeat, lambda: [histogram(filtered, column, bins=30) for column in run.score_columns]
        )
        rows.append((f"histograms: {len(run.score_columns)} score columns, filtered", seconds))
        seconds, csv = best_of(args.repeat, lambda: data.export_bytes(filtered, "csv"))
        rows.append((f"export CSV ({len(csv) / 1e6:.1f} MB)", seconds))
        seconds, parquet = best_of(args.repeat, lambda: data.export_bytes(filtered, "parquet"))
        rows.append((f"export Parquet ({len(parquet) / 1e6:.1f} MB)", seconds))
        lazy_total = rows[0][1] + rows[1][1] + rows[2][1]
        seconds, peer_matching = best_of(args.repeat, lambda: eager_peer(path))
        assert peer_matching == matching
        if not args.no_apptest:
            seconds_page, _ = best_of(1, lambda: page_through_apptest(path, filtered=False))
            rows.append(("Records page through AppTest, first open (cold cache)", seconds_page))
            seconds_page, _ = best_of(args.repeat, lambda: page_through_apptest(path, filtered=True))
            rows.append(("Records page through AppTest, open + model filter (warm cache)", seconds_page))

        width = max(len(name) for name, _ in rows)
        print(f"{'step':<{width}}  seconds")
        for name, value in rows:
            print(f"{name:<{width}}  {value:7.3f}")
        print(
            f"open + filter + first page: {lazy_total:.3f} s; loading everything first (eager read + filter): "
            f"{seconds:.3f} s before any widget, ratio {seconds / lazy_total:.2f}x (best of {args.repeat})"
        )


if __name__ == "__main__":
    main()
