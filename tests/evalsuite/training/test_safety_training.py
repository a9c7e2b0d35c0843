"""The safety classifier's training: soft targets, the stratified holdout, Platt folded into the head,
then a short real run (a few steps from the packaged MiniLM on generated rows), interrupted and resumed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import evalsuite.training.safety as safety
from evalsuite.training.safety import SafetyConfig, platt, read_davidson, read_toxigen, split_holdout, train

TWEETS = [
    ("thanks for the lovely afternoon", (0, 0, 3)),
    ("you are a stupid idiot", (0, 3, 0)),
    ("go back to your country you vermin", (3, 0, 0)),
    ("what a nice game tonight", (0, 0, 3)),
    ("shut up you moron", (0, 2, 1)),
    ("they are animals and should be gone", (2, 1, 0)),
]
STATEMENTS = [
    ("immigrants enrich our towns", "neutral", "immigrant"),
    ("immigrants should be kept out of our neighbourhoods", "hate", "immigrant"),
    ("women are great engineers", "neutral", "women"),
    ("women are too emotional to lead", "hate", "women"),
]


def write_data(root: Path, copies: int = 4) -> Path:
    folder = root / "toxicity"
    folder.mkdir(parents=True)
    with (folder / "davidson_labeled_data.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "count", "hate_speech", "offensive_language", "neither", "class", "tweet"])
        for i in range(copies):
            for j, (text, (hate, offensive, neither)) in enumerate(TWEETS):
                votes = hate + offensive + neither
                label = max(range(3), key=[hate, offensive, neither].__getitem__)
                writer.writerow([i * len(TWEETS) + j, votes, hate, offensive, neither, label, f"{text} {i}"])
    with (folder / "toxigen_prompt_statements.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(copies):
            for text, label, group in STATEMENTS:
                handle.write(json.dumps({"text": f"{text} {i}", "label": label, "group": group}) + "\n")
    return root


def test_targets_are_the_annotators_shares(tmp_path: Path) -> None:
    data = write_data(tmp_path, copies=1)
    tweets = read_davidson(data / "toxicity" / "davidson_labeled_data.csv")
    assert tweets[4].target == pytest.approx((0.0, 2 / 3))  # 2 offensive votes of 3, no hate
    assert tweets[5].target == pytest.approx((2 / 3, 1.0))
    statements = read_toxigen(data / "toxicity" / "toxigen_prompt_statements.jsonl")
    assert [s.target for s in statements[:2]] == [(0.0, 0.0), (1.0, 1.0)]
    assert statements[1].group == "immigrant"


def test_the_holdout_is_stratified_and_disjoint(tmp_path: Path) -> None:
    data = write_data(tmp_path, copies=10)
    examples = read_davidson(data / "toxicity" / "davidson_labeled_data.csv") + read_toxigen(
        data / "toxicity" / "toxigen_prompt_statements.jsonl"
    )
    train_set, holdout = split_holdout(examples, 0.2, seed=0)
    assert not {e.id for e in train_set} & {e.id for e in holdout}
    assert len(train_set) + len(holdout) == len(examples)
    assert {e.source for e in holdout} == {"davidson", "toxigen"}
    assert sum(e.target[0] >= 0.5 for e in holdout) >= 2  # hateful rows of both sources held out


def test_platt_fits_a_known_slope_and_intercept() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, generator=generator) * 2
    targets = torch.sigmoid(0.5 * logits - 1.0)  # soft targets from a known calibration
    slope, intercept = platt(logits, targets)
    assert slope == pytest.approx(0.5, abs=1e-3)
    assert intercept == pytest.approx(-1.0, abs=1e-3)


def test_a_short_run_writes_a_calibrated_model_and_resumes_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_data(tmp_path / "data")
    config = SafetyConfig(
        epochs=2, batch_size=8, max_length=24, holdout_ratio=0.25, toxigen_repeats=2, log_every=2
    )
    whole = train(data, tmp_path / "whole", config)
    assert whole["examples"]["holdout"] > 0
    assert set(whole["calibration"]) == {"hateful", "offensive"}
    written = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert written["problem_type"] == "multi_label_classification"
    assert written["id2label"] == {"0": "hateful", "1": "offensive"}
    held = [json.loads(line) for line in (tmp_path / "whole" / "holdout.jsonl").read_text().splitlines()]
    assert len(held) == whole["examples"]["holdout"]

    calls = {"n": 0}
    original = safety.batches

    def crash_in_epoch_two(*args: object, **kwargs: object) -> list[list[int]]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("stopped during epoch 2")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(safety, "batches", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "resumed", config)
    monkeypatch.setattr(safety, "batches", original)
    resumed = train(data, tmp_path / "resumed", config, resume=True)

    def timeless(epochs: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in epoch.items() if k != "elapsed_s"} for epoch in epochs]

    assert timeless(resumed["epochs"]) == timeless(whole["epochs"])
    same = (tmp_path / "whole" / "model.safetensors").read_bytes() == (
        tmp_path / "resumed" / "model.safetensors"
    ).read_bytes()
    assert same
