"""Train evalsuite's safety classifier ``safety-minilm``: hateful and offensive-or-toxic text, on a CPU.

    python -m evalsuite.training.safety --data DIR --out runs/safety-minilm
    python -m evalsuite.training.safety --data DIR --out runs/safety-minilm --resume

Fine-tunes the packaged all-MiniLM-L6-v2 encoder with two independent sigmoid heads (multi-label):

- ``hateful``: hate speech against a group;
- ``offensive``: offensive or toxic language, hate included.

Data, both MIT-licensed and redistributable (``DIR/toxicity/``):

- Davidson et al. (2017) tweets (24,783): soft targets from the annotator counts, P(hateful) =
  hate votes / votes and P(offensive) = (hate + offensive votes) / votes, so disagreement is kept;
- ToxiGen's human-written seed statements (722) about 13 groups: implicit hate without slurs, and
  neutral statements that mention the same groups (so naming a group is not evidence of hate).
  They are few beside the tweets, so each is seen ``toxigen_repeats`` times per epoch.

A stratified holdout of both files (``holdout_ratio``) is never trained on: it picks the epoch,
fits the per-label Platt scaling that is folded into the classifier's weights (calibrated
probabilities with no runtime change), and is written to ``holdout.jsonl`` (ids and labels) for
``bench/validity_safety.py``. Evaluation sets (moderation samples, XSTest, Wikipedia comments) are
never read. Writes the model (fp16 safetensors + tokenizer), ``training.json`` (config, sha256 of
every data file, per-epoch holdout metrics, calibration, duration), ``train_log.jsonl`` and a
``checkpoint.pt`` after every epoch, from which ``--resume`` continues.
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from evalsuite.errors import ConfigError
from evalsuite.records.formats import file_sha256
from evalsuite.runtime.encoding import pad_batch
from evalsuite.training.nli import (
    adamw_with_warmup,
    descend,
    environment,
    labelled_classifier,
    parse_training_args,
    training_runtime,
)

DAVIDSON = Path("toxicity") / "davidson_labeled_data.csv"
TOXIGEN = Path("toxicity") / "toxigen_prompt_statements.jsonl"
LABELS = ("hateful", "offensive")


@dataclass(frozen=True)
class SafetyExample:
    id: str
    text: str
    target: tuple[float, float]  # soft P(hateful), P(offensive)
    source: str  # davidson or toxigen
    group: str | None = None


@dataclass
class SafetyConfig:
    base: str = "minilm"
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_length: int = 96
    holdout_ratio: float = 0.1
    toxigen_repeats: int = 6
    limit: int = 0  # 0: every row (a smoke run takes a few)
    log_every: int = 50
    seed: int = 0


def read_davidson(path: Path) -> list[SafetyExample]:
    examples = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            votes = int(row["count"])
            if votes <= 0:
                continue
            hate, offensive = int(row["hate_speech"]), int(row["offensive_language"])
            target = (hate / votes, (hate + offensive) / votes)
            examples.append(SafetyExample(f"davidson:{row['']}", row["tweet"], target, "davidson"))
    return examples


def read_toxigen(path: Path) -> list[SafetyExample]:
    examples = []
    with path.open(encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            item = json.loads(line)
            hateful = float(item["label"] == "hate")
            examples.append(
                SafetyExample(f"toxigen:{i}", item["text"], (hateful, hateful), "toxigen", item["group"])
            )
    return examples


def split_holdout(examples: list[SafetyExample], ratio: float, seed: int) -> tuple[list, list]:
    """A holdout stratified by source and hard label, seeded."""
    rng = random.Random(seed)
    strata: dict[tuple[str, bool, bool], list[SafetyExample]] = {}
    for example in examples:
        key = (example.source, example.target[0] >= 0.5, example.target[1] >= 0.5)
        strata.setdefault(key, []).append(example)
    train, holdout = [], []
    for key in sorted(strata):
        group = strata[key]
        rng.shuffle(group)
        cut = max(1, round(len(group) * ratio)) if len(group) > 1 else 0
        holdout += group[:cut]
        train += group[cut:]
    return train, holdout


def encode(tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


def batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths (little padding), in a shuffled order.

    Unlike :func:`evalsuite.training.nli.length_grouped_batches` (sorted within pools of 50 batches)
    it sorts the whole set: tweets are short and alike, and the shipped model was trained this way.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(groups)
    return groups


def logits_of(
    model: Any, rows: list[list[int]], pad_id: int, device: Any, batch_size: int = 128
) -> torch.Tensor:
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            ids, mask = pad_batch(chunk, pad_id, device)
            out.append(model(input_ids=ids, attention_mask=mask).logits.float().cpu())
    model.train()
    return torch.cat(out)


def holdout_metrics(logits: torch.Tensor, examples: list[SafetyExample]) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    metrics = {}
    for j, label in enumerate(LABELS):
        truth = [int(e.target[j] >= 0.5) for e in examples]
        if len(set(truth)) == 2:
            metrics[f"{label}_auc"] = float(roc_auc_score(truth, logits[:, j].numpy()))
        toxigen = [i for i, e in enumerate(examples) if e.source == "toxigen"]
        if toxigen and len({truth[i] for i in toxigen}) == 2:
            metrics[f"{label}_toxigen_auc"] = float(
                roc_auc_score([truth[i] for i in toxigen], logits[toxigen, j].numpy())
            )
    metrics["bce"] = float(
        torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.tensor([e.target for e in examples])
        )
    )
    return metrics


def platt(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(slope, intercept) of σ(slope·z + intercept) minimising log loss against soft targets."""
    slope = torch.ones((), requires_grad=True)
    intercept = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([slope, intercept], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(slope * logits + intercept, targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(slope.detach()), float(intercept.detach())


def train(data: Path, out: Path, config: SafetyConfig, *, resume: bool = False) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from evalsuite.runtime.models import resolve_model

    started = time.time()
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    files = [data / DAVIDSON, data / TOXIGEN]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise ConfigError(f"training data not found: {', '.join(missing)}")
    examples = read_davidson(files[0]) + read_toxigen(files[1])
    if config.limit:
        examples = random.Random(config.seed).sample(examples, min(config.limit, len(examples)))
    train_set, holdout = split_holdout(examples, config.holdout_ratio, config.seed)
    repeated = [e for e in train_set for _ in range(config.toxigen_repeats if e.source == "toxigen" else 1)]

    runtime = training_runtime(config.max_length)
    base = resolve_model(config.base)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    model = labelled_classifier(base.path, LABELS, "multi_label_classification")
    model.to(runtime.device).train()
    train_rows = encode(tokenizer, [e.text for e in repeated], config.max_length)
    holdout_rows = encode(tokenizer, [e.text for e in holdout], config.max_length)
    targets = torch.tensor([e.target for e in repeated])
    pad_id = int(tokenizer.pad_token_id)

    steps_per_epoch = math.ceil(len(train_rows) / config.batch_size)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer, scheduler = adamw_with_warmup(
        trainable,
        config.learning_rate,
        config.weight_decay,
        config.warmup_ratio,
        steps_per_epoch * config.epochs,
    )
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"
    epochs: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    first_epoch = 1
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        epochs, best_state, first_epoch = state["epochs"], state["best_state"], state["epoch"] + 1
        torch.set_rng_state(state["torch_rng"])
        print(json.dumps({"resumed_after_epoch": state["epoch"]}), flush=True)
    with (out / "train_log.jsonl").open("a" if resume else "w", encoding="utf-8") as log:
        step = (first_epoch - 1) * steps_per_epoch
        for epoch in range(first_epoch, config.epochs + 1):
            rng = random.Random(config.seed * 1000 + epoch)  # each epoch's order, also after a resume
            running = 0.0
            for batch in batches([len(r) for r in train_rows], config.batch_size, rng):
                chunk = [train_rows[i] for i in batch]
                ids, mask = pad_batch(chunk, pad_id, runtime.device)
                logits = model(input_ids=ids, attention_mask=mask).logits
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, targets[batch].to(runtime.device)
                )
                descend(loss, [p for _, p in trainable], optimizer, scheduler)
                step += 1
                running += loss.item()
                if step % config.log_every == 0:
                    entry = {"step": step, "epoch": epoch, "loss": running / config.log_every,
                             "elapsed_s": round(time.time() - started, 1)}  # fmt: skip
                    log.write(json.dumps(entry) + "\n")
                    log.flush()
                    print(json.dumps(entry), flush=True)
                    running = 0.0
            metrics = {
                "epoch": epoch,
                **holdout_metrics(logits_of(model, holdout_rows, pad_id, runtime.device), holdout),
            }
            metrics["elapsed_s"] = round(time.time() - started, 1)
            print(json.dumps({"holdout": metrics}), flush=True)
            log.write(json.dumps({"holdout": metrics}) + "\n")
            log.flush()
            if not epochs or metrics["bce"] < min(e["bce"] for e in epochs):
                best_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
            epochs.append(metrics)
            torch.save(
                {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "epochs": epochs, "best_state": best_state,
                 "torch_rng": torch.get_rng_state()},
                checkpoint,
            )  # fmt: skip
    if best_state is None:
        raise ConfigError(f"no epoch was trained: epochs must be at least 1, got {config.epochs}")
    model.load_state_dict(best_state)
    best = min(epochs, key=lambda e: e["bce"])

    # Platt scaling per label on the holdout, folded into the head: σ(a·(Wx + c) + b) = σ((aW)x + (ac + b)).
    logits = logits_of(model, holdout_rows, pad_id, runtime.device)
    soft = torch.tensor([e.target for e in holdout])
    calibration = {}
    head = model.classifier
    with torch.no_grad():
        for j, label in enumerate(LABELS):
            slope, intercept = platt(logits[:, j], soft[:, j])
            head.weight[j] *= slope
            head.bias[j] = head.bias[j] * slope + intercept
            calibration[label] = {"slope": slope, "intercept": intercept}
    calibrated = holdout_metrics(logits_of(model, holdout_rows, pad_id, runtime.device), holdout)
    model.half().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    with (out / "holdout.jsonl").open("w", encoding="utf-8") as handle:
        for example in holdout:
            handle.write(json.dumps(asdict(example)) + "\n")

    report = {
        "config": asdict(config),
        "base_model": {key: value for key, value in base.describe().items() if key != "path"},
        "data_files": {str(path.relative_to(data)): file_sha256(path) for path in files},
        "examples": {"train": len(train_set), "train_with_repeats": len(repeated), "holdout": len(holdout)},
        "epochs": epochs,
        "chosen_epoch": best["epoch"],
        "calibration": calibration,
        "holdout_calibrated": calibrated,
        "duration_s": round(time.time() - started, 1),
        **environment(),
    }
    (out / "training.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> None:
    args, data, config = parse_training_args(
        __doc__,
        SafetyConfig(),
        argv,
        lambda parser: parser.add_argument(
            "--resume", action="store_true", help="continue from checkpoint.pt"
        ),
    )
    report = train(data, args.out, config, resume=args.resume)
    print(json.dumps({k: report[k] for k in ("chosen_epoch", "holdout_calibrated", "duration_s")}))


if __name__ == "__main__":
    main()
