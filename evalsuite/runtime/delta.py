"""Ship a fine-tuned model as a low-rank delta on weights evalsuite already ships.

    python -m evalsuite.runtime.delta extract --base nli-minilm --tuned runs/factcheck-minilm \\
        --out evalsuite/models/factcheck-minilm --rank 64

A fine-tune of a shipped model moves each weight matrix by a ΔW that is close to low rank (the
premise of LoRA). ``extract`` keeps the best rank-``r`` approximation of every matrix's ΔW (a
truncated SVD, stored as two fp16 factors) and, in full, the tensors too small to be worth it
(biases, LayerNorms, a classification head of a few rows). :func:`materialised` adds them back onto the base
and writes an ordinary model folder once, into the converted-models cache, as the GGUF models are.
The folder holding the delta also holds the tuned model's config and calibration (its tokenizer
is the base's, checked at extraction);
``delta.json`` names the base and the sha256 of its weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from evalsuite.errors import ConfigError
from evalsuite.records.formats import file_sha256

DELTA_WEIGHTS = "delta.safetensors"
DELTA_INFO = "delta.json"
_COPIED = ("config.json", "calibration.json")  # the tuned model's own; its tokenizer is the base's
_TOKENIZER = ("tokenizer.json", "tokenizer_config.json")


def extract(base_dir: Path, tuned_dir: Path, out: Path, rank: int, base_name: str) -> dict[str, object]:
    """Write the rank-``rank`` delta of ``tuned_dir`` over ``base_dir`` (plus its config) to ``out``."""
    from safetensors.torch import save_file

    base, tuned = _state(base_dir), _state(tuned_dir)
    if set(base) != set(tuned):
        raise ConfigError(f"{tuned_dir} and {base_dir} do not have the same tensors")
    tensors: dict[str, torch.Tensor] = {}
    for name, weight in tuned.items():
        if weight.shape != base[name].shape:  # a head with other labels: kept whole
            tensors[f"{name}.full"] = weight.half().contiguous()
            continue
        delta = weight - base[name]
        # Factor only matrices well wider than the rank on both sides (where it saves the most and
        # loses the least); a head with a few rows, the token types, biases stay exact.
        if delta.dim() == 2 and min(delta.shape) > 4 * rank:
            u, s, vh = torch.linalg.svd(delta, full_matrices=False)
            tensors[f"{name}.up"] = (u[:, :rank] * s[:rank]).half().contiguous()
            tensors[f"{name}.down"] = vh[:rank].half().contiguous()
        else:
            tensors[f"{name}.full"] = weight.half().contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / DELTA_WEIGHTS))
    for name in _COPIED:
        if (tuned_dir / name).is_file():
            shutil.copyfile(tuned_dir / name, out / name)
    if _vocabulary(tuned_dir) != _vocabulary(base_dir):
        raise ConfigError(f"{tuned_dir} has another vocabulary than its base {base_dir}: ship the full model")
    info = {
        "base": base_name,
        "base_weights_sha256": file_sha256(base_dir / "model.safetensors"),
        "rank": rank,
    }
    (out / DELTA_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def materialised(base_dir: Path, delta_dir: Path, name: str) -> Path:
    """The tuned model as an ordinary folder, written once per delta and base (keyed by their files)."""
    from evalsuite.runtime.gguf import built_once, converted_models_dir

    identity = "|".join(
        f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
        for path in (base_dir / "model.safetensors", *sorted(delta_dir.iterdir()))
        if path.is_file()
    )
    key = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return built_once(
        converted_models_dir() / f"{name}-{key}", lambda staging: materialise(base_dir, delta_dir, staging)
    )


def materialise(base_dir: Path, delta_dir: Path, out: Path) -> Path:
    """Write into ``out`` an ordinary model folder: the base's weights plus the delta, in fp16."""
    from safetensors.torch import load_file, save_file

    info = json.loads((delta_dir / DELTA_INFO).read_text(encoding="utf-8"))
    if file_sha256(base_dir / "model.safetensors") != info["base_weights_sha256"]:
        raise ConfigError(
            f"the delta in {delta_dir} was made for {info['base']} weights with sha256 "
            f"{info['base_weights_sha256'][:16]}…, not those at {base_dir}"
        )
    base, delta = _state(base_dir), load_file(str(delta_dir / DELTA_WEIGHTS))
    weights = {}
    for name, weight in base.items():
        if f"{name}.full" in delta:
            weights[name] = delta[f"{name}.full"].float()
        else:
            weights[name] = weight + delta[f"{name}.up"].float() @ delta[f"{name}.down"].float()
    out.mkdir(parents=True, exist_ok=True)
    save_file({name: w.half().contiguous() for name, w in weights.items()}, str(out / "model.safetensors"))
    for name in _COPIED:
        if (delta_dir / name).is_file():
            shutil.copyfile(delta_dir / name, out / name)
    for name in _TOKENIZER:
        shutil.copyfile(base_dir / name, out / name)
    return out


def _vocabulary(model_dir: Path) -> object:
    """The tokenizer's model (vocabulary and algorithm), without saved truncation settings."""
    return json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]


def _state(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = model_dir / "model.safetensors"
    if not path.is_file():
        raise ConfigError(f"no model.safetensors in {model_dir}")
    return {name: tensor.float() for name, tensor in load_file(str(path)).items()}


def main(argv: Sequence[str] | None = None) -> None:
    from evalsuite.runtime.models import resolve_model

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    extract_command = commands.add_parser("extract", help="write a low-rank delta of a tuned model")
    extract_command.add_argument("--base", required=True, help="preset or folder the model was tuned from")
    extract_command.add_argument("--tuned", type=Path, required=True)
    extract_command.add_argument("--out", type=Path, required=True)
    extract_command.add_argument("--rank", type=int, default=64)
    args = parser.parse_args(argv)
    base = resolve_model(args.base)
    print(json.dumps(extract(base.path, args.tuned, args.out, args.rank, args.base)))


if __name__ == "__main__":
    main()
