"""The NLI training script: the holdout split and batching as units, then a short real run.

The smoke runs fine-tune the packaged all-MiniLM-L6-v2 for a few steps on generated pairs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from evalsuite.runtime.nli import NLI_LABELS
from evalsuite.training.nli import (
    Example,
    TrainingConfig,
    length_grouped_batches,
    split_holdout,
    train,
)


# -- split_holdout --------------------------------------------------------------------------------
def make_examples(per_group: int, sources: tuple[str, ...] = ("a", "b")) -> list[Example]:
    return [
        Example(f"premise {source} {label} {i}", f"hypothesis {i}", label, source)
        for source in sources
        for label in range(len(NLI_LABELS))
        for i in range(per_group)
    ]


def test_split_holdout_is_stratified_by_source_and_label() -> None:
    examples = make_examples(10)
    train_set, holdout = split_holdout(examples, 0.2, seed=0)
    assert Counter((e.source, e.label) for e in holdout) == {
        (source, label): 2 for source in ("a", "b") for label in range(3)
    }
    assert Counter((e.source, e.label) for e in train_set) == {
        (source, label): 8 for source in ("a", "b") for label in range(3)
    }
    assert sorted(train_set + holdout, key=repr) == sorted(examples, key=repr)  # every example once


def test_split_holdout_is_deterministic_for_a_seed() -> None:
    examples = make_examples(10)
    assert split_holdout(examples, 0.2, seed=3) == split_holdout(examples, 0.2, seed=3)
    assert split_holdout(examples, 0.2, seed=3)[1] != split_holdout(examples, 0.2, seed=4)[1]
    assert split_holdout(list(reversed(examples)), 0.2, seed=3)[1] != []
    train_set, holdout = split_holdout(examples, 0.0, seed=0)
    assert holdout == []
    assert len(train_set) == len(examples)


# -- length_grouped_batches -----------------------------------------------------------------------
@pytest.mark.parametrize(("count", "batch_size"), [(237, 8), (1000, 4), (1, 8), (0, 8)])
def test_length_grouped_batches_cover_every_index_once(count: int, batch_size: int) -> None:
    lengths = [random.Random(i).randint(3, 120) for i in range(count)]
    batches = length_grouped_batches(lengths, batch_size, random.Random(0))
    assert sorted(i for batch in batches for i in batch) == list(range(count))
    assert all(1 <= len(batch) <= batch_size for batch in batches)


def test_length_grouped_batches_group_similar_lengths_and_are_seeded() -> None:
    lengths = [random.Random(i).randint(3, 120) for i in range(237)]
    batches = length_grouped_batches(lengths, 8, random.Random(7))
    assert batches == length_grouped_batches(lengths, 8, random.Random(7))
    assert batches != length_grouped_batches(lengths, 8, random.Random(8))
    # One pool (237 < 8 * 50): batches are consecutive slices of the length-sorted order.
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    assert all(high <= next_low for (_, high), (next_low, _) in itertools.pairwise(spans))
    assert sum(len(batch) < 8 for batch in batches) == 1


# -- train(): a short real run --------------------------------------------------------------------
SUBJECTS = ["A man", "A woman", "The child", "An old dog", "Two players", "The chef", "A pilot"]
ACTIONS = ["is cooking dinner", "is reading a book", "is running outside", "is playing chess"]


def write_training_file(path: Path, count: int, offset: int) -> None:
    rows = []
    for i in range(count):
        subject = SUBJECTS[(i + offset) % len(SUBJECTS)]
        action = ACTIONS[(i // 3 + offset) % len(ACTIONS)]
        label = NLI_LABELS[i % 3]
        hypothesis = {
            "entailment": f"{subject} is doing something.",
            "neutral": f"{subject} is happy today.",
            "contradiction": f"{subject} is asleep.",
        }[label]
        rows.append({"premise": f"{subject} {action} at the park.", "hypothesis": hypothesis, "label": label})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    train_dir = data / "nli" / "train"
    train_dir.mkdir(parents=True)
    write_training_file(train_dir / "a.jsonl", 42, offset=0)
    write_training_file(train_dir / "b.jsonl", 39, offset=2)
    # The test set is never read: a broken file there must not matter.
    (data / "nli" / "eval").mkdir()
    (data / "nli" / "eval" / "multinli_dev.jsonl").write_text("not json\n", encoding="utf-8")
    return data


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def without_timings(epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in epoch.items() if k != "elapsed_s"} for epoch in epochs]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Batches of 4-8 short pairs gain nothing from intra-op threads, and on a busy machine
    oversubscribed threads made these runs several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.usefixtures("one_thread")
def test_train_writes_an_fp16_model_and_a_complete_log(data_dir: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    out = tmp_path / "run"
    config = TrainingConfig(epochs=1, batch_size=8, limit=None, holdout_ratio=0.2, log_every=1, exclude="")
    report = train(data_dir, out, config)

    model_config = json.loads((out / "config.json").read_text())
    assert {int(k): v for k, v in model_config["id2label"].items()} == dict(enumerate(NLI_LABELS))
    assert model_config["label2id"] == {label: i for i, label in enumerate(NLI_LABELS)}
    with safe_open(str(out / "model.safetensors"), framework="pt") as weights:
        dtypes = {weights.get_tensor(name).dtype for name in weights.keys()}  # noqa: SIM118 - not a dict
    assert dtypes == {torch.float16}
    assert (out / "tokenizer.json").is_file()

    written = json.loads((out / "training.json").read_text())
    assert written == json.loads(json.dumps(report))
    assert written["data_files"] == {
        "nli/train/a.jsonl": sha256(data_dir / "nli" / "train" / "a.jsonl"),
        "nli/train/b.jsonl": sha256(data_dir / "nli" / "train" / "b.jsonl"),
    }
    # 81 examples in 6 (source, label) groups of 13-14: round(0.2 * 14) = 3, round(0.2 * 13) = 3.
    assert written["examples"] == {"train": 63, "holdout": 18}
    assert written["config"]["epochs"] == 1
    assert written["chosen_epoch"] == 1
    assert len(written["epochs"]) == 1
    holdout = written["epochs"][0]
    assert 0.0 <= holdout["accuracy"] <= 1.0
    assert holdout["loss"] > 0
    assert written["holdout_accuracy"] == holdout["accuracy"]
    assert written["base_model"]["name"] == "minilm"

    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [entry for entry in log if "step" in entry]
    assert [entry["step"] for entry in steps] == list(range(1, 9))  # ceil(63 / 8) steps, logged each
    assert all(entry["loss"] > 0 and entry["epoch"] == 1 for entry in steps)
    assert log[-1]["holdout"]["accuracy"] == holdout["accuracy"]


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.usefixtures("one_thread")
def test_train_is_deterministic_for_a_seed(data_dir: Path, tmp_path: Path) -> None:
    config = TrainingConfig(epochs=2, batch_size=4, limit=9, holdout_ratio=0.34, log_every=1, exclude="b")
    first = train(data_dir, tmp_path / "first", config)
    second = train(data_dir, tmp_path / "second", config)
    assert list(first["data_files"]) == ["nli/train/a.jsonl"]  # "b" excluded
    assert first["examples"] == {"train": 6, "holdout": 3}
    assert without_timings(first["epochs"]) == without_timings(second["epochs"])
    assert first["chosen_epoch"] == second["chosen_epoch"]
    assert sha256(tmp_path / "first" / "model.safetensors") == sha256(
        tmp_path / "second" / "model.safetensors"
    )


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.usefixtures("one_thread")
def test_lora_trains_only_the_adapter_and_the_head(data_dir: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    out = tmp_path / "lora"
    config = TrainingConfig(epochs=1, batch_size=8, holdout_ratio=0.2, exclude="", lora_rank=4, lora_alpha=8)
    report = train(data_dir, out, config)
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "minilm"  # the preset, not this machine's path
    assert adapter["r"] == 4
    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as weights:
        names = list(weights.keys())
    assert any("lora_A" in name for name in names)
    assert any("classifier" in name for name in names)
    assert not any("word_embeddings" in name for name in names)  # the frozen encoder is not saved
    # 6 layers x (query, key, value, 3 dense) + pooler of rank-4 pairs, plus the 3-class head.
    assert report["trainable_parameters"] < 200_000
