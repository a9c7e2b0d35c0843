"""Fine-tune a 3-class NLI cross-encoder on the packaged all-MiniLM-L6-v2, reproducibly, on a CPU.

    python -m evalsuite.training.nli --data DIR --out runs/nli-minilm [--epochs 4] [--seed 0]
    python -m evalsuite.training.nli --data DIR --out runs/lora --lora-rank 16 --learning-rate 5e-4

Reads ``DIR/nli/train/*.jsonl`` (``{"premise", "hypothesis", "label", "source"}``), holds out a
stratified slice of each training file to choose the epoch, and never reads ``nli/eval/``: the
MultiNLI dev-matched file is the held-out test set of the model card. Writes the fine-tuned model
(fp16 safetensors + tokenizer), ``training.json`` (hyper-parameters, sha256 of every data file,
versions, per-epoch metrics, duration) and ``train_log.jsonl`` (loss every ``--log-every`` steps).
With ``--lora-rank`` > 0 only a LoRA adapter of the encoder and the classification head are trained
(peft), and the output is the adapter (``adapter_config.json`` names its base by preset).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from evalsuite.datasets import resolve_data_dir
from evalsuite.errors import ConfigError, InputError, MissingDependencyError
from evalsuite.records.formats import file_sha256
from evalsuite.runtime import Runtime
from evalsuite.runtime.encoding import pair_inputs
from evalsuite.runtime.nli import NLI_LABELS

TRAIN_DIR = Path("nli") / "train"
EVALUATION_BATCH_SIZE = 128


@dataclass(frozen=True)
class Example:
    premise: str
    hypothesis: str
    label: int
    source: str


@dataclass
class TrainingConfig:
    """Every knob of a run; logged with the run so it can be repeated exactly."""

    base: str = "minilm"
    epochs: int = 3
    learning_rate: float = 6e-5
    batch_size: int = 32
    max_length: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    holdout_ratio: float = 0.05
    seed: int = 0
    limit: int | None = None  # examples per training file, for smoke runs
    # ConjNLI's labels are heuristic and its pairs the longest (the costliest per step): left out by
    # default, like the binary FEVER-NLI files (entailment / not_entailment: see training.factcheck).
    exclude: str = "conjnli_adversarial_train,fever_nli_binary_dev,fever_nli_binary_test"
    log_every: int = 50
    # LoRA adapter instead of a full fine-tune when > 0: rank of the update on every linear layer of the
    # encoder (query, key, value, dense); the classification head is trained in full.
    lora_rank: int = 0
    lora_alpha: int = 32
    lora_dropout: float = 0.1


def read_examples(path: Path, limit: int | None = None) -> list[Example]:
    """One JSON object per line; labels must be entailment, neutral or contradiction."""
    examples: list[Example] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if limit is not None and len(examples) >= limit:
                break
            try:
                row = json.loads(line)
                label = row["label"]
                premise, hypothesis = row["premise"], row["hypothesis"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise InputError(f"not an NLI record ({error})", location=f"{path}:{line_number}") from None
            if label not in NLI_LABELS:
                raise InputError(
                    f"label must be one of {', '.join(NLI_LABELS)}, got {label!r}"
                    " (binary files are for evalsuite.training.factcheck; leave them out with --exclude)",
                    location=f"{path}:{line_number}",
                    field="label",
                )
            examples.append(
                Example(premise, hypothesis, NLI_LABELS.index(label), row.get("source", path.stem))
            )
    return examples


def split_holdout(
    examples: Sequence[Example], ratio: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Stratified by source and label, so the holdout looks like the training mix."""
    groups: dict[tuple[str, int], list[Example]] = defaultdict(list)
    for example in examples:
        groups[(example.source, example.label)].append(example)
    rng = random.Random(seed)
    train, holdout = [], []
    for key in sorted(groups):
        group = groups[key][:]
        rng.shuffle(group)
        cut = round(len(group) * ratio)
        holdout.extend(group[:cut])
        train.extend(group[cut:])
    return train, holdout


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (less padding), in shuffled order; every index once."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


Row = list[tuple[int, int]]  # (token id, segment id) per token


def encode(tokenizer: Any, examples: Sequence[Example], max_length: int) -> list[Row]:
    encoded = tokenizer(
        [e.premise for e in examples],
        [e.hypothesis for e in examples],
        truncation="longest_first",
        max_length=max_length,
    )
    pairs = zip(encoded["input_ids"], encoded["token_type_ids"], strict=True)
    return [list(zip(ids, types, strict=True)) for ids, types in pairs]


def evaluate(
    model: Any, rows: Sequence[Row], labels: Sequence[int], pad_id: int, runtime: Runtime
) -> dict[str, float]:
    """Accuracy and mean cross-entropy on a labelled set, in the runtime's length-sorted batches."""
    if not rows:
        return {"accuracy": 0.0, "loss": 0.0}

    def logits_of(batch: list[Row]) -> list[object]:
        return list(model(**pair_inputs(batch, pad_id, runtime.device)).logits)

    model.eval()
    try:
        logits = torch.stack(runtime.batched(rows, logits_of))  # type: ignore[arg-type]
    finally:
        model.train()
    target = torch.tensor(labels, device=logits.device)
    loss_sum = float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
    correct = int((logits.argmax(dim=-1) == target).sum())
    return {"accuracy": correct / len(rows), "loss": loss_sum / len(rows)}


def train(data: Path, out: Path, config: TrainingConfig) -> dict[str, Any]:
    """Run one seeded training job and write the model and its log to ``out``."""
    from transformers import AutoTokenizer

    from evalsuite.runtime.models import resolve_model

    started = time.time()
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    excluded = {name.strip() for name in config.exclude.split(",") if name.strip()}
    files = sorted(path for path in (data / TRAIN_DIR).glob("*.jsonl") if path.stem not in excluded)
    if not files:
        raise ConfigError(f"no training files in {data / TRAIN_DIR}")
    examples = [example for path in files for example in read_examples(path, config.limit)]
    train_set, holdout = split_holdout(examples, config.holdout_ratio, config.seed)

    runtime = training_runtime(config.max_length)
    base = resolve_model(config.base)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    model = labelled_classifier(base.path, NLI_LABELS)
    if config.lora_rank > 0:
        model = with_lora(model, config)
    model.to(runtime.device).train()
    train_rows = encode(tokenizer, train_set, config.max_length)
    holdout_rows = encode(tokenizer, holdout, config.max_length)
    pad_id = tokenizer.pad_token_id

    rng = random.Random(config.seed)
    steps_per_epoch = math.ceil(len(train_rows) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer, scheduler = adamw_with_warmup(
        trainable, config.learning_rate, config.weight_decay, config.warmup_ratio, total_steps
    )

    out.mkdir(parents=True, exist_ok=True)
    log = (out / "train_log.jsonl").open("w", encoding="utf-8")
    epochs: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    step = 0
    for epoch in range(1, config.epochs + 1):
        running = 0.0
        for batch in length_grouped_batches([len(r) for r in train_rows], config.batch_size, rng):
            inputs = pair_inputs([train_rows[i] for i in batch], pad_id, runtime.device)
            target = torch.tensor([train_set[i].label for i in batch], device=runtime.device)
            loss = torch.nn.functional.cross_entropy(model(**inputs).logits, target)
            descend(loss, [p for _, p in trainable], optimizer, scheduler)
            step += 1
            running += loss.item()
            if step % config.log_every == 0:
                entry = {
                    "step": step,
                    "epoch": epoch,
                    "loss": running / config.log_every,
                    "elapsed_s": round(time.time() - started, 1),
                }
                log.write(json.dumps(entry) + "\n")
                log.flush()
                print(json.dumps(entry), flush=True)
                running = 0.0
        holdout_labels = [e.label for e in holdout]
        metrics = {"epoch": epoch, **evaluate(model, holdout_rows, holdout_labels, pad_id, runtime)}
        metrics["elapsed_s"] = round(time.time() - started, 1)
        print(json.dumps({"holdout": metrics}), flush=True)
        log.write(json.dumps({"holdout": metrics}) + "\n")
        if not epochs or metrics["accuracy"] > max(e["accuracy"] for e in epochs):
            best_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        epochs.append(metrics)
    log.close()

    if best_state is not None:
        model.load_state_dict(best_state)
    best = max(epochs, key=lambda e: e["accuracy"])
    model.half().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if config.lora_rank > 0:
        # Name the base by its preset, not by this machine's install path, so the adapter travels.
        adapter_config = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
        adapter_config["base_model_name_or_path"] = config.base
        (out / "adapter_config.json").write_text(
            json.dumps(adapter_config, indent=2) + "\n", encoding="utf-8"
        )

    report = {
        "config": asdict(config),
        # Provenance without this machine's install path.
        "base_model": {key: value for key, value in base.describe().items() if key != "path"},
        "data_files": {str(path.relative_to(data)): file_sha256(path) for path in files},
        "examples": {"train": len(train_set), "holdout": len(holdout)},
        "epochs": epochs,
        "chosen_epoch": best["epoch"],
        "holdout_accuracy": best["accuracy"],
        "duration_s": round(time.time() - started, 1),
        **environment(),
        "trainable_parameters": sum(p.numel() for _, p in trainable),
    }
    (out / "training.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return report


def labelled_classifier(base_path: Path, labels: Sequence[str], problem_type: str | None = None) -> Any:
    """A sequence classifier on ``base_path``'s encoder with a fresh head naming ``labels`` in order."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        base_path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type=problem_type,
    )


def environment() -> dict[str, Any]:
    """What a training report records of the machine: library versions and CPU threads."""
    import platform

    import transformers

    return {
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "threads": torch.get_num_threads(),
    }


def training_runtime(max_length: int) -> Runtime:
    """The runtime that scores holdouts during training: CPU and float32, so a run repeats bit for
    bit; its batches are longest first, and rows never exceed ``max_length``."""
    return Runtime(
        device="cpu",
        dtype="float32",
        batch_size=EVALUATION_BATCH_SIZE,
        token_budget=EVALUATION_BATCH_SIZE * max_length,
    )


def adamw_with_warmup(
    parameters: Sequence[tuple[str, torch.nn.Parameter]],
    learning_rate: float,
    weight_decay: float,
    warmup_ratio: float,
    total_steps: int,
) -> tuple[torch.optim.AdamW, Any]:
    """AdamW without decay on biases and LayerNorms, and a linear schedule after a warm-up."""
    from transformers import get_linear_schedule_with_warmup

    no_decay = ("bias", "LayerNorm.weight")
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for n, p in parameters if not n.endswith(no_decay)], "weight_decay": weight_decay},
            {"params": [p for n, p in parameters if n.endswith(no_decay)], "weight_decay": 0.0},
        ],
        lr=learning_rate,
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, round(total_steps * warmup_ratio), total_steps)
    return optimizer, scheduler


def descend(
    loss: torch.Tensor,
    parameters: Sequence[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> None:
    """One optimiser step on ``loss``, gradients clipped to norm 1."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def with_lora(model: Any, config: TrainingConfig) -> Any:
    """Wrap ``model`` so that only low-rank updates of the encoder and the full head are trained."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise MissingDependencyError("LoRA training needs peft: pip install peft") from error
    lora = LoraConfig(
        task_type="SEQ_CLS",
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=["query", "key", "value", "dense"],
        modules_to_save=["classifier"],
    )
    with warnings.catch_warnings():
        # peft reads transformers' renamed `is_gradient_checkpointing`; the deprecation is theirs to fix.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, lora)


ConfigT = TypeVar("ConfigT")


def parse_training_args(
    doc: str | None,
    defaults: ConfigT,
    argv: Sequence[str] | None,
    extra: Callable[[argparse.ArgumentParser], object] = lambda parser: None,
) -> tuple[argparse.Namespace, Path, ConfigT]:
    """A training command's arguments: ``--data``, ``--out``, one flag per field of the dataclass
    ``defaults`` (and what ``extra`` adds); returns them with the data folder and the config."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, default=None, help="shared data directory (default: $EVALSUITE_DATA)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory for the model and logs")
    extra(parser)
    fields = asdict(defaults)  # type: ignore[call-overload]
    for name, value in fields.items():
        kind = type(value) if value is not None else int
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value)
    args = parser.parse_args(argv)
    try:
        data = resolve_data_dir(args.data)
    except ConfigError as error:
        parser.error(str(error))
    return args, data, type(defaults)(**{name: getattr(args, name) for name in fields})


def main(argv: Sequence[str] | None = None) -> None:
    args, data, config = parse_training_args(__doc__, TrainingConfig(), argv)
    report = train(data, args.out, config)
    print(json.dumps({k: report[k] for k in ("holdout_accuracy", "chosen_epoch", "duration_s")}))


if __name__ == "__main__":
    main()
