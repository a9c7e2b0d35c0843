"""Fit a model's ``calibration.json`` on its training holdout (a split no benchmark scores).

    python -m evalsuite.training.calibrate runs/factcheck-minilm            # reads its holdout.jsonl
    python -m evalsuite.training.calibrate evalsuite/models/nli-minilm --data DIR

The holdout is ``MODEL_DIR/holdout.jsonl`` (rows ``{"label", "fresh", "logits"}`` written by
:mod:`evalsuite.training.factcheck`; only ``fresh`` rows, which neither the model nor its base
trained on, are used), or, for a model trained by :mod:`evalsuite.training.nli`, rebuilt from its
``training.json`` (same files, ratio and seed) and scored here. The temperature maximises the
likelihood of every row (a "not supported" row's is P(neutral) + P(contradiction)); Platt scaling
and the verdict threshold (best balanced accuracy) are fitted on P(supported) = P(entailment),
supported meaning gold entailment.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.calibration import (
    Calibration,
    choose_threshold,
    expected_calibration_error,
    fit_platt,
    fit_temperature,
    softmax,
)
from evalsuite.datasets import resolve_data_dir
from evalsuite.errors import ConfigError
from evalsuite.runtime.nli import NLI_LABELS

ENTAILMENT = NLI_LABELS.index("entailment")
LABELS = (*NLI_LABELS, "not_supported")


def fit(logits: np.ndarray, labels: Sequence[int], fitted_on: str) -> tuple[Calibration, dict[str, Any]]:
    """The calibration of these holdout logits (label 3 = binary "not supported"), and its figures."""
    logits = np.asarray(logits, dtype=np.float64)
    target = np.asarray(labels)
    three_class = target < len(NLI_LABELS)
    allowed = np.vstack([np.eye(len(NLI_LABELS), dtype=bool), [False, True, True]])[target]
    temperature = fit_temperature(logits, allowed)
    supported = target == ENTAILMENT
    raw = softmax(logits, temperature)[:, ENTAILMENT]
    slope, intercept = fit_platt(raw, supported)
    partial = Calibration(temperature=temperature, slope=slope, intercept=intercept)
    calibrated = partial.supported(raw)
    threshold = choose_threshold(calibrated, supported)
    calibration = Calibration(temperature, slope, intercept, threshold, fitted_on)
    figures = {
        "rows": len(target),
        "supported_ece_before": expected_calibration_error(softmax(logits)[:, ENTAILMENT], supported),
        "supported_ece_after": expected_calibration_error(calibrated, supported),
    }
    gold = target[three_class]
    if len(set(gold.tolist())) > 1:  # a top-label ECE says little about one class alone
        for name, probabilities in (("before", softmax(logits)), ("after", softmax(logits, temperature))):
            nli = probabilities[three_class]
            figures[f"nli_ece_{name}"] = expected_calibration_error(
                nli.max(axis=1), nli.argmax(axis=1) == gold
            )
    return calibration, figures


def holdout_logits(model_dir: Path, data: Path | None) -> tuple[np.ndarray, list[int], str]:
    """The holdout's logits and labels: from ``holdout.jsonl``, or rebuilt from ``training.json``."""
    saved = model_dir / "holdout.jsonl"
    if saved.is_file():
        rows = [json.loads(line) for line in saved.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = [row for row in rows if row.get("fresh", True)]
        labels = [LABELS.index(row["label"]) for row in rows]
        sources = ", ".join(sorted({row["source"] for row in rows}))
        return (
            np.array([row["logits"] for row in rows]),
            labels,
            f"training holdout: {len(rows)} rows of {sources}",
        )
    return _rescored_nli_holdout(model_dir, data)


def _rescored_nli_holdout(model_dir: Path, data: Path | None) -> tuple[np.ndarray, list[int], str]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from evalsuite.training.nli import read_examples, split_holdout

    report_path = model_dir / "training.json"
    if not report_path.is_file():
        raise ConfigError(f"{model_dir} has neither holdout.jsonl nor training.json to rebuild its holdout")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    data = resolve_data_dir(data)
    examples = [e for name in sorted(report["data_files"]) for e in read_examples(data / name)]
    config = report["config"]
    _, holdout = split_holdout(examples, config["holdout_ratio"], config["seed"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    logits = []
    with torch.no_grad():
        for start in range(0, len(holdout), 64):
            batch = holdout[start : start + 64]
            inputs = tokenizer(
                [e.premise for e in batch],
                [e.hypothesis for e in batch],
                truncation=True,
                max_length=config["max_length"],
                padding=True,
                return_tensors="pt",
            )
            logits.append(model(**inputs).logits.float())
    return torch.cat(logits).numpy(), [e.label for e in holdout], f"training holdout ({len(holdout)} pairs)"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path, help="model folder; calibration.json is written there")
    parser.add_argument(
        "--data", type=Path, default=None, help="shared data directory (default: $EVALSUITE_DATA)"
    )
    args = parser.parse_args(argv)
    logits, labels, fitted_on = holdout_logits(args.model_dir, args.data)
    calibration, figures = fit(logits, labels, fitted_on)
    path = calibration.write(args.model_dir)
    print(json.dumps({"written": str(path), **calibration.__dict__, **figures}, indent=2))


if __name__ == "__main__":
    main()
