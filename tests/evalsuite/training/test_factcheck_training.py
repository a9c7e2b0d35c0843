"""The grounded-claim checker's training: rows, loss, synthesis and calibration as units, then a short
real run (a few steps from the shipped nli-minilm on generated rows), interrupted and resumed."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from evalsuite.calibration import Calibration, softmax
from evalsuite.errors import InputError
from evalsuite.runtime.nli import NLI_LABELS
from evalsuite.training.factcheck import (
    NOT_SUPPORTED,
    CheckerConfig,
    checker_loss,
    read_rows,
    synthesise,
    train,
)
from evalsuite.training.nli import Example

E, N, C = (NLI_LABELS.index(label) for label in ("entailment", "neutral", "contradiction"))


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# -- read_rows ------------------------------------------------------------------------------------
def test_read_rows_takes_nli_binary_and_document_rows(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"premise": "A dog runs.", "hypothesis": "An animal runs.", "label": "entailment"},
            {"premise": "A dog runs.", "hypothesis": "A cat sleeps.", "label": "not_entailment"},
            {"document": "Doc one. Doc two.", "claim": ["Claim a.", "Claim b."], "label": 1},
            {"document": "Doc three.", "claim": "Claim c.", "label": 0},
            {"premise": "P.", "hypothesis": "H.", "label": "contradiction"},
        ],
    )
    rows = read_rows(path)
    assert [row.label for row in rows] == [E, NOT_SUPPORTED, E, NOT_SUPPORTED, C]
    assert rows[2] == Example("Doc one. Doc two.", "Claim a. Claim b.", E, "mixed")
    assert [row.premise for row in read_rows(path, limit=2)] == ["A dog runs.", "A dog runs."]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"premise": "P.", "hypothesis": "H.", "label": "maybe"}, "label must be one of"),
        ({"premise": "P.", "label": "entailment"}, "not a training record"),
        ({"document": 3, "claim": "H.", "label": 1}, "must be text"),
    ],
)
def test_read_rows_names_the_line_of_a_bad_row(tmp_path: Path, row: dict[str, object], message: str) -> None:
    path = write_jsonl(
        tmp_path / "bad.jsonl", [{"premise": "P.", "hypothesis": "H.", "label": "neutral"}, row]
    )
    with pytest.raises(InputError, match=message) as error:
        read_rows(path)
    assert f"{path}:2" in str(error.value)


# -- checker_loss ---------------------------------------------------------------------------------
def test_checker_loss_is_cross_entropy_or_the_not_entailed_log_likelihood() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.5, -0.5, 0.25]], dtype=torch.float64)
    labels = torch.tensor([N, NOT_SUPPORTED, E])
    p = [[math.exp(v) / sum(math.exp(w) for w in row) for v in row] for row in logits.tolist()]
    expected = (-math.log(p[0][N]) - math.log(p[1][N] + p[1][C]) - math.log(p[2][E])) / 3
    tolerance = 10 * torch.finfo(torch.float64).eps
    assert float(checker_loss(logits, labels)) == pytest.approx(expected, rel=tolerance)


def test_a_supported_binary_row_costs_what_an_entailment_row_costs() -> None:
    logits = torch.tensor([[0.3, -0.2, 1.1]])
    assert float(checker_loss(logits, torch.tensor([E]))) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, torch.tensor([E]))), rel=1e-6
    )


# -- synthesise -----------------------------------------------------------------------------------
def sentence_pairs(count: int) -> list[Example]:
    labels = [E, N, C, NOT_SUPPORTED]
    return [Example(f"Premise number {i}.", f"Hypothesis {i}.", labels[i % 4], "pairs") for i in range(count)]


def test_synthesised_documents_hide_their_evidence_among_other_premises() -> None:
    pairs = sentence_pairs(40)
    by_hypothesis = {p.hypothesis: p for p in pairs}
    examples = synthesise(pairs, 40, random.Random(0))
    assert len(examples) == 40
    for example in examples:
        if example.source == "synthetic_hidden":
            evidence = by_hypothesis[example.hypothesis]
            assert evidence.premise in example.premise
            assert example.label == evidence.label
        else:
            assert example.source == "synthetic_compose"
            first, second = (by_hypothesis[h] for h in pairs_in(example.hypothesis, by_hypothesis))
            assert first.label == E
            assert first.premise in example.premise
            assert second.premise in example.premise
            assert example.label == second.label  # supported only when both facts are
        assert 3 <= example.premise.count("Premise number") <= 10
    labels = [e.label for e in examples]
    assert labels.count(E) == 20  # half supported


def pairs_in(claim: str, by_hypothesis: dict[str, Example]) -> list[str]:
    parts = claim.split(". ")
    return [parts[0] + ".", parts[1]] if parts[1] in by_hypothesis else []


def test_synthesis_is_seeded_and_needs_enough_pairs() -> None:
    pairs = sentence_pairs(40)
    assert synthesise(pairs, 12, random.Random(5)) == synthesise(pairs, 12, random.Random(5))
    assert synthesise(pairs[:8], 12, random.Random(5)) == []


# -- a short real run -----------------------------------------------------------------------------
@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    rng = random.Random(1)
    nli_rows = [
        {"premise": f"A person {i} walks in the park.", "hypothesis": h, "label": label}
        for i in range(12)
        for h, label in (
            ("Someone is outside.", "entailment"),
            ("The person is late.", "neutral"),
            ("Nobody walks.", "contradiction"),
        )
    ]
    rng.shuffle(nli_rows)
    write_jsonl(root / "nli" / "train" / "pairs.jsonl", nli_rows)
    write_jsonl(
        root / "nli" / "train" / "binary.jsonl",
        [
            {"premise": f"Town {i} has a river.", "hypothesis": h, "label": label}
            for i in range(10)
            for h, label in (("A river runs there.", "entailment"), ("It has a port.", "not_entailment"))
        ],
    )
    write_jsonl(
        root / "factuality" / "train" / "docs.jsonl",
        [
            {"document": f"Line {i}. The bridge opened in 19{i}0. It is red.", "claim": [c], "label": y}
            for i in range(6)
            for c, y in ((f"The bridge opened in 19{i}0.", 1), ("The bridge is blue.", 0))
        ],
    )
    return root


@pytest.fixture
def one_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMOKE = CheckerConfig(
    epochs=2, batch_size=16, max_length=64, holdout_ratio=0.2, nli_per_epoch=12, synthetic=16, log_every=1
)


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.usefixtures("one_thread")
def test_train_writes_a_checker_its_log_and_a_holdout_for_calibration(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    report = train(data_dir, out, SMOKE)

    config = json.loads((out / "config.json").read_text())
    assert {int(k): v for k, v in config["id2label"].items()} == dict(enumerate(NLI_LABELS))
    written = json.loads((out / "training.json").read_text())
    assert written == json.loads(json.dumps(report))
    assert sorted(written["data_files"]) == [
        "factuality/train/docs.jsonl",
        "nli/train/binary.jsonl",
        "nli/train/pairs.jsonl",
    ]
    sources = written["examples"]["by_source"]
    assert sources["synthetic_hidden"] + sources["synthetic_compose"] == 16
    assert written["base_model"]["name"] == "nli-minilm"
    assert [e["epoch"] for e in written["epochs"]] == [1, 2]
    assert not (out / "checkpoint.pt").exists()  # removed once the run is complete

    holdout = [json.loads(line) for line in (out / "holdout.jsonl").read_text().splitlines()]
    assert len(holdout) == written["examples"]["holdout"]
    assert {row["label"] for row in holdout} >= {"entailment", "not_supported"}
    assert all(len(row["logits"]) == 3 and all(map(math.isfinite, row["logits"])) for row in holdout)
    # nli-minilm never trained on these generated files; synthesised documents may reuse its pairs.
    assert all(row["fresh"] == (not row["source"].startswith("synthetic")) for row in holdout)


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.usefixtures("one_thread")
def test_an_interrupted_run_resumes_to_the_same_model(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = train(data_dir, tmp_path / "whole", SMOKE)
    resumed_dir = tmp_path / "resumed"
    assert len(train_one_epoch_then_stop(data_dir, resumed_dir, monkeypatch)) == 1
    resumed = train(data_dir, resumed_dir, SMOKE, resume=True)
    strip = lambda epochs: [{k: v for k, v in e.items() if k != "elapsed_s"} for e in epochs]  # noqa: E731
    assert strip(resumed["epochs"]) == strip(whole["epochs"])
    assert (resumed_dir / "model.safetensors").read_bytes() == (
        tmp_path / "whole" / "model.safetensors"
    ).read_bytes()


def train_one_epoch_then_stop(data_dir: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Run SMOKE but stop right after epoch 1's checkpoint, as an interruption would."""

    class StoppedError(Exception):
        pass

    save = torch.save

    def save_then_stop(state: object, path: Path) -> None:
        save(state, path)
        raise StoppedError

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", save_then_stop)
        with pytest.raises(StoppedError):
            train(data_dir, out, SMOKE)
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    return list(state["epochs"])


# -- calibration of the holdout -------------------------------------------------------------------
def test_calibration_fit_lowers_the_error_of_an_overconfident_model() -> None:
    from evalsuite.training.calibrate import fit

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=600)
    clean = rng.normal(size=(600, 3)) + 1.5 * np.eye(3)[labels]
    logits = 4.0 * clean  # the right ranking, far too sure of itself
    calibration, figures = fit(logits, labels.tolist(), "synthetic")
    assert calibration.temperature > 2.0
    assert figures["nli_ece_after"] < figures["nli_ece_before"] / 2
    scaled = softmax(logits, calibration.temperature)
    assert np.array_equal(scaled.argmax(axis=1), logits.argmax(axis=1))  # the argmax never moves
    assert 0.0 < calibration.threshold < 1.0
    assert Calibration(**{**calibration.__dict__}) == calibration
