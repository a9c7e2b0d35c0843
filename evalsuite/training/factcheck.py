"""Train evalsuite's grounded-claim checker: "is this claim supported by this document?", on a CPU.

    python -m evalsuite.training.factcheck --data DIR --out runs/factcheck-minilm
    python -m evalsuite.training.factcheck --data DIR --out runs/factcheck-minilm --resume

Starts from the shipped ``nli-minilm`` cross-encoder and keeps its 3-class head, so the result is
both an NLI model and a checker whose P(supported) is its entailment column. One objective serves
both kinds of labels (MiniCheck's lesson: the data decides):

- 3-class rows (SNLI, MultiNLI mismatched, counterfactual SNLI, and the synthesised documents)
  take cross-entropy over (entailment, neutral, contradiction);
- binary rows (FEVER-NLI ``not_entailment``, FactCG ``label 0``) only say "not supported": they take
  ``-log(1 - P(entailment))``, which leaves neutral vs contradiction free; their supported rows are
  plain entailment.

Document-level examples are synthesised from the NLI pairs of the same split (never across the
holdout boundary): a premise hidden among unrelated sentences, a claim that joins two premises'
facts (supported only when both are), and a contradiction planted in a long window.

Reads ``DIR/nli/train/*.jsonl`` and ``DIR/factuality/train/*.jsonl``; never reads ``nli/eval/`` or
the factuality benchmark files. Writes the model (fp16 safetensors + tokenizer), ``training.json``
(config, sha256 of every data file, per-epoch holdout metrics, duration), ``train_log.jsonl``,
``holdout.jsonl`` (the holdout rows with the chosen epoch's logits, for calibration) and a
``checkpoint.pt`` after every epoch, from which ``--resume`` continues an interrupted run.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from evalsuite.errors import ConfigError, InputError
from evalsuite.records.formats import file_sha256
from evalsuite.runtime import Runtime
from evalsuite.runtime.encoding import pair_inputs
from evalsuite.runtime.nli import NLI_LABELS
from evalsuite.training.nli import (
    Example,
    Row,
    adamw_with_warmup,
    descend,
    encode,
    environment,
    length_grouped_batches,
    parse_training_args,
    split_holdout,
    training_runtime,
)

NLI_DIR = Path("nli") / "train"
FACTUALITY_DIR = Path("factuality") / "train"
NOT_SUPPORTED = len(NLI_LABELS)  # label index of a binary "not supported" row: neutral or contradiction
ENTAILMENT = NLI_LABELS.index("entailment")


@dataclass
class CheckerConfig:
    """Every knob of a run; logged with the run so it can be repeated exactly."""

    base: str = "nli-minilm"
    epochs: int = 1  # one pass with a linear decay: the base is already a trained NLI model
    learning_rate: float = 3e-5
    batch_size: int = 32
    max_length: int = 256
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    holdout_ratio: float = 0.04
    seed: int = 0
    # The budget of one run on a 2-core CPU (about 400 tokens/s of training here): at most ``limit``
    # rows of each data file, ``nli_per_epoch`` of the 3-class rows (the base already saw them all;
    # these keep it an NLI model) and ``synthetic`` synthesised documents.
    limit: int | None = 2500
    nli_per_epoch: int = 2500
    synthetic: int = 2000
    exclude: str = "conjnli_adversarial_train"  # comma-separated file stems left out (heuristic labels)
    log_every: int = 50


def read_rows(path: Path, limit: int | None = None) -> list[Example]:
    """NLI rows (``premise``/``hypothesis``/``label``) or document rows (``document``/``claim``/``label``).

    Labels: entailment/neutral/contradiction, ``not_entailment`` (binary negative), or 1/0
    (supported / not). A list-valued claim is joined into one text.
    """
    rows: list[Example] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if limit is not None and len(rows) >= limit:
                break
            location = f"{path}:{line_number}"
            try:
                record = json.loads(line)
                premise = record["premise"] if "premise" in record else record["document"]
                hypothesis = record["hypothesis"] if "hypothesis" in record else record["claim"]
                label = record["label"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise InputError(f"not a training record ({error})", location=location) from None
            if isinstance(hypothesis, list):
                hypothesis = " ".join(str(part) for part in hypothesis)
            if not isinstance(premise, str) or not isinstance(hypothesis, str):
                raise InputError("premise/document and hypothesis/claim must be text", location=location)
            rows.append(Example(premise, hypothesis, label_index(label, location), path.stem))
    return rows


def label_index(label: object, location: str) -> int:
    if label in NLI_LABELS:
        return NLI_LABELS.index(str(label))
    if label in ("not_entailment", "non_entailment", 0, False):
        return NOT_SUPPORTED
    if label in (1, True):
        return ENTAILMENT
    raise InputError(
        f"label must be one of {', '.join(NLI_LABELS)}, not_entailment, 1 or 0; got {label!r}",
        location=location,
        field="label",
    )


def synthesise(pairs: Sequence[Example], count: int, rng: random.Random) -> list[Example]:
    """``count`` document-level examples built from sentence-level ``pairs`` (see the module doc).

    Documents are 3 to 7 sentences of unrelated premises with the evidence at a random place;
    the label is the evidence's own (3-class where known), so a planted contradiction stays one.
    """
    premises = [p.premise for p in pairs]
    by_label: dict[int, list[Example]] = {}
    for pair in pairs:
        by_label.setdefault(pair.label, []).append(pair)
    entailed = by_label.get(ENTAILMENT, [])
    others = [p for label, group in by_label.items() if label != ENTAILMENT for p in group]
    if not entailed or not others or len(premises) < 16:
        return []

    def document(evidence: Sequence[str]) -> str:
        sentences = [rng.choice(premises) for _ in range(rng.randint(2, 5))]
        for sentence in evidence:
            sentences.insert(rng.randint(0, len(sentences)), sentence)
        return " ".join(sentences)

    examples = []
    for index in range(count):
        kind = index % 4
        if kind < 2:  # hidden premise: half supported, half not (neutral, contradiction or binary)
            pair = rng.choice(entailed if kind == 0 else others)
            examples.append(
                Example(document([pair.premise]), pair.hypothesis, pair.label, "synthetic_hidden")
            )
        else:  # two facts in one claim: supported only when both are
            first = rng.choice(entailed)
            second = rng.choice(entailed if kind == 2 else others)
            claim = f"{first.hypothesis.rstrip()} {second.hypothesis.strip()}"
            examples.append(
                Example(document([first.premise, second.premise]), claim, second.label, "synthetic_compose")
            )
    return examples


def checker_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for 3-class rows, ``-log(1 - P(entailment))`` for "not supported" rows; mean."""
    log_probabilities = logits.log_softmax(dim=-1)
    binary = labels == NOT_SUPPORTED
    three_class = torch.where(binary, torch.zeros_like(labels), labels)
    loss = -log_probabilities.gather(1, three_class[:, None]).squeeze(1)
    not_entailed = torch.logsumexp(log_probabilities[:, 1:], dim=-1)  # log P(neutral or contradiction)
    return torch.where(binary, -not_entailed, loss).mean()


def holdout_metrics(logits: torch.Tensor, labels: Sequence[int], sources: Sequence[str]) -> dict[str, Any]:
    """3-class accuracy on NLI rows; ROC AUC and balanced accuracy (at 0.5) of P(supported) on all rows."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    target = torch.tensor(labels)
    three_class = target < NOT_SUPPORTED
    probability = logits.softmax(dim=-1)[:, ENTAILMENT].numpy()
    supported = (target == ENTAILMENT).numpy()
    metrics: dict[str, Any] = {
        "nli_accuracy": float((logits.argmax(dim=-1) == target)[three_class].float().mean()),
        "supported_auc": float(roc_auc_score(supported, probability)),
        "supported_balanced_accuracy": float(balanced_accuracy_score(supported, probability > 0.5)),
    }
    documents = torch.tensor([not source.startswith(("snli", "mnli", "cad")) for source in sources])
    if documents.any() and len(set(supported[documents.numpy()])) == 2:
        mask = documents.numpy()
        metrics["document_auc"] = float(roc_auc_score(supported[mask], probability[mask]))
    metrics["selection"] = metrics["nli_accuracy"] + metrics["supported_auc"]
    return metrics


def predict(model: Any, rows: Sequence[Row], pad_id: int, runtime: Runtime) -> torch.Tensor:
    """Logits of every row, in the runtime's length-sorted batches, in input order."""

    def logits_of(batch: list[Row]) -> list[object]:
        return list(model(**pair_inputs(batch, pad_id, runtime.device)).logits)

    model.eval()
    try:
        with torch.no_grad():
            return torch.stack(runtime.batched(list(rows), logits_of))  # type: ignore[arg-type]
    finally:
        model.train()


def load_data(data: Path, config: CheckerConfig) -> tuple[list[Path], list[Example], list[Example]]:
    excluded = {name.strip() for name in config.exclude.split(",") if name.strip()}
    files = sorted(
        path
        for folder in (NLI_DIR, FACTUALITY_DIR)
        for path in (data / folder).glob("*.jsonl")
        if path.stem not in excluded
    )
    if not files:
        raise ConfigError(f"no training files in {data / NLI_DIR} or {data / FACTUALITY_DIR}")
    examples = [example for path in files for example in read_rows(path, config.limit)]
    train_set, holdout = split_holdout(examples, config.holdout_ratio, config.seed)
    # Documents are built within each side of the split, from sentence-level pairs only.
    documents = {path.stem for path in files if path.parent == data / FACTUALITY_DIR}
    rng = random.Random(config.seed + 1)
    holdout_synthetic = round(config.synthetic * config.holdout_ratio / (1 - config.holdout_ratio))
    train_set += synthesise([e for e in train_set if e.source not in documents], config.synthetic, rng)
    holdout += synthesise([e for e in holdout if e.source not in documents], holdout_synthetic, rng)
    return files, train_set, holdout


def is_nli(example: Example) -> bool:
    return example.label < NOT_SUPPORTED and not example.source.startswith(("synthetic", "fever", "factcg"))


def train(data: Path, out: Path, config: CheckerConfig, *, resume: bool = False) -> dict[str, Any]:
    """Run one seeded training job (or finish an interrupted one) and write the model to ``out``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from evalsuite.runtime.models import resolve_model

    started = time.time()
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    files, train_set, holdout = load_data(data, config)
    runtime = training_runtime(128)  # holdout batches of 128 x 128 tokens, as the shipped run had
    base = resolve_model(config.base)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    model = AutoModelForSequenceClassification.from_pretrained(base.path, dtype=torch.float32)
    if [model.config.id2label[i].lower() for i in range(model.config.num_labels)] != list(NLI_LABELS):
        raise ConfigError(
            f"the base must be a 3-class NLI model labelled {NLI_LABELS}, got {model.config.id2label}"
        )
    model.train()
    train_rows = encode(tokenizer, train_set, config.max_length)
    holdout_rows = encode(tokenizer, holdout, config.max_length)
    pad_id = tokenizer.pad_token_id
    nli_rows = [i for i, e in enumerate(train_set) if is_nli(e)]
    other_rows = [i for i, e in enumerate(train_set) if not is_nli(e)]
    per_epoch = len(other_rows) + min(config.nli_per_epoch, len(nli_rows))
    total_steps = math.ceil(per_epoch / config.batch_size) * config.epochs

    optimizer, scheduler = adamw_with_warmup(
        list(model.named_parameters()),
        config.learning_rate,
        config.weight_decay,
        config.warmup_ratio,
        total_steps,
    )
    rng = random.Random(config.seed)
    epochs: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    step, first_epoch, spent = 0, 1, 0.0
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / "checkpoint.pt"
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)
        if state["config"] != asdict(config):
            raise ConfigError(
                f"{checkpoint_path} was written by another configuration; start afresh without --resume"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        epochs, best_state, step, spent = (
            state["epochs"],
            state["best_state"],
            state["step"],
            state["spent_s"],
        )
        first_epoch = len(epochs) + 1
    with (out / "train_log.jsonl").open("a" if resume else "w", encoding="utf-8") as log:
        labels = torch.tensor([e.label for e in train_set])
        for epoch in range(first_epoch, config.epochs + 1):
            chosen = other_rows + rng.sample(nli_rows, min(config.nli_per_epoch, len(nli_rows)))
            running = 0.0
            for batch in length_grouped_batches([len(train_rows[i]) for i in chosen], config.batch_size, rng):
                indices = [chosen[i] for i in batch]
                inputs = pair_inputs([train_rows[i] for i in indices], pad_id, runtime.device)
                loss = checker_loss(model(**inputs).logits, labels[indices])
                descend(loss, list(model.parameters()), optimizer, scheduler)
                step += 1
                running += loss.item()
                if step % config.log_every == 0:
                    entry = {
                        "step": step,
                        "of": total_steps,
                        "epoch": epoch,
                        "loss": running / config.log_every,
                        "elapsed_s": round(spent + time.time() - started, 1),
                    }
                    log.write(json.dumps(entry) + "\n")
                    log.flush()
                    print(json.dumps(entry), flush=True)
                    running = 0.0
            logits = predict(model, holdout_rows, pad_id, runtime)
            metrics = {
                "epoch": epoch,
                **holdout_metrics(logits, [e.label for e in holdout], [e.source for e in holdout]),
            }
            metrics["elapsed_s"] = round(spent + time.time() - started, 1)
            print(json.dumps({"holdout": metrics}), flush=True)
            log.write(json.dumps({"holdout": metrics}) + "\n")
            log.flush()
            if not epochs or metrics["selection"] > max(e["selection"] for e in epochs):
                best_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
            epochs.append(metrics)
            torch.save(
                {
                    "config": asdict(config),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": rng.getstate(),
                    "torch_rng": torch.get_rng_state(),
                    "epochs": epochs,
                    "best_state": best_state,
                    "step": step,
                    "spent_s": spent + time.time() - started,
                },
                checkpoint_path,
            )

    if best_state is not None:
        model.load_state_dict(best_state)
    best = max(epochs, key=lambda e: e["selection"])
    write_holdout(
        out / "holdout.jsonl",
        holdout,
        predict(model, holdout_rows, pad_id, runtime),
        files_seen_by(base.path),
    )
    model.half().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)

    report = {
        "config": asdict(config),
        "base_model": {key: value for key, value in base.describe().items() if key != "path"},
        "data_files": {str(path.relative_to(data)): file_sha256(path) for path in files},
        "examples": {
            "train": len(train_set),
            "holdout": len(holdout),
            "per_epoch": per_epoch,
            "by_source": _count_by_source(train_set),
        },
        "epochs": epochs,
        "chosen_epoch": best["epoch"],
        "duration_s": round(spent + time.time() - started, 1),
        **environment(),
    }
    (out / "training.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    checkpoint_path.unlink(missing_ok=True)
    return report


def write_holdout(path: Path, holdout: Sequence[Example], logits: torch.Tensor, seen: set[str]) -> None:
    """The holdout rows with their logits: the split calibration is fitted on (never a benchmark's).

    ``fresh`` marks rows that neither this run nor its base trained on: rows of files the base's
    ``training.json`` does not list, not synthesised from sentence pairs the base may have seen.
    Only they show the confidence the model will have on new data.
    """
    with path.open("w", encoding="utf-8") as handle:
        for example, row in zip(holdout, logits.tolist(), strict=True):
            label = "not_supported" if example.label == NOT_SUPPORTED else NLI_LABELS[example.label]
            fresh = example.source not in seen and not example.source.startswith("synthetic")
            handle.write(
                json.dumps({"source": example.source, "label": label, "fresh": fresh, "logits": row}) + "\n"
            )


def files_seen_by(base_dir: Path) -> set[str]:
    """The data file stems a base model was trained on, from its ``training.json`` (none if absent)."""
    report = base_dir / "training.json"
    if not report.is_file():
        return set()
    return {Path(name).stem for name in json.loads(report.read_text(encoding="utf-8")).get("data_files", {})}


def _count_by_source(examples: Sequence[Example]) -> dict[str, int]:
    return dict(sorted(Counter(example.source for example in examples).items()))


def main(argv: Sequence[str] | None = None) -> None:
    def resume_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")

    args, data, config = parse_training_args(__doc__, CheckerConfig(), argv, resume_flag)
    report = train(data, args.out, config, resume=args.resume)
    print(json.dumps({k: report[k] for k in ("chosen_epoch", "duration_s")}))


if __name__ == "__main__":
    main()
