"""The Runtime resolves its device and dtype on first need; building and describing one imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from evalsuite.errors import ConfigError, ModelUnavailableError
from evalsuite.runtime import Runtime

REPO_ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "transformers", "sklearn")


def _heavy_modules_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has imported after running ``code``."""
    script = textwrap.dedent(code) + (
        f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, check=True, timeout=120
    )
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_building_and_describing_a_runtime_imports_no_torch() -> None:
    heavy = _heavy_modules_after(
        """
        from evalsuite.runtime import Runtime
        rt = Runtime()
        assert rt.describe()["resolved"] is False, rt.describe()
        assert rt.describe_model("minilm")["weights_sha256"]
        assert Runtime.default_layer("roberta-large") == 17
        assert Runtime.classifier_labels("minilm") == (["LABEL_0", "LABEL_1"], None)
        """
    )
    assert heavy == []


@pytest.mark.slow
def test_building_the_metrics_that_ask_the_runtime_imports_no_torch() -> None:
    heavy = _heavy_modules_after(
        """
        from metrics.bertscore import BERTScore, baseline_file
        from metrics.toxicity import Toxicity
        assert BERTScore(model="roberta-large").config["num_layers"] == 17
        assert baseline_file("minilm") is not None
        assert Toxicity(model="minilm").labels == ["LABEL_0", "LABEL_1"]
        """
    )
    assert heavy == []


def test_describe_reports_the_settings_until_resolved_then_what_is_used() -> None:
    rt = Runtime(device="auto", dtype="auto", batch_size=8, token_budget=512)
    assert rt.describe() == {
        "device": "auto",
        "dtype": "auto",
        "batch_size": 8,
        "token_budget": 512,
        "resolved": False,
    }
    device = rt.device  # resolving once fixes both
    described = rt.describe()
    assert described["resolved"] is True
    assert described["device"] == str(device)
    assert described["dtype"] == str(rt.dtype).removeprefix("torch.")


def test_an_explicit_cpu_resolves_to_float32() -> None:
    rt = Runtime(device="cpu")
    assert rt.device == torch.device("cpu")
    assert rt.dtype is torch.float32
    assert rt.describe()["dtype"] == "float32"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device": "tpu"}, "device must be one of auto, cpu, cuda, mps"),
        ({"dtype": "float8"}, "dtype must be one of auto, float32, float16, bfloat16"),
    ],
)
def test_unknown_device_or_dtype_names_fail_at_construction(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Runtime(**options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_an_unavailable_device_fails_when_first_needed() -> None:
    rt = Runtime(device="cuda")  # a valid name: whether the hardware is there is asked on first use
    assert rt.describe()["device"] == "cuda"
    with pytest.raises(ConfigError, match="CUDA is not available"):
        _ = rt.device


def test_seeded_generators_repeat_their_stream() -> None:
    rt = Runtime(device="cpu")
    first, second = rt.seeded_generator(7), rt.seeded_generator(7)
    expected = torch.Generator(device="cpu")
    expected.manual_seed(7)
    draws = [torch.rand(4, generator=random) for random in (first, second, expected)]
    assert torch.equal(draws[0], draws[1])
    assert torch.equal(draws[0], draws[2])


def test_batched_restores_order_within_the_budgets_and_counts_passes() -> None:
    rt = Runtime(device="cpu", batch_size=2)
    items = [[1] * length for length in (3, 1, 4, 2, 5)]
    seen: list[int] = []

    def compute(batch: list[list[int]]) -> list[object]:
        seen.append(len(batch))
        return [len(item) for item in batch]

    assert rt.batched(items, compute) == [3, 1, 4, 2, 5]
    assert seen == [2, 2, 1]
    assert rt.stats.forward_passes == 3
    assert rt.batched(items, compute, max_batch_size=5) == [3, 1, 4, 2, 5]
    assert seen[-1] == 5


def test_model_aliases_add_a_presets_hub_id() -> None:
    assert Runtime.model_aliases("minilm") == ["minilm", "sentence-transformers/all-MiniLM-L6-v2"]
    assert Runtime.model_aliases("nli-minilm") == ["nli-minilm"]  # packaged only: no hub id
    assert Runtime.model_aliases("/some/dir") == ["/some/dir"]


def _model_dir(path: Path, config: object) -> str:
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "bert"},
        {"model_type": "bert", "num_labels": 4},
        {"model_type": "bert", "id2label": {"1": "toxic", "0": "neutral"}},
        {
            "model_type": "bert",
            "id2label": {"0": "a", "1": "b", "2": "c"},
            "problem_type": "multi_label_classification",
        },
    ],
)
def test_classifier_labels_read_the_config_as_transformers_does(
    tmp_path: Path, config: dict[str, object]
) -> None:
    from transformers import AutoConfig

    model = _model_dir(tmp_path / "model", config)
    expected = AutoConfig.from_pretrained(model)
    labels = [expected.id2label[index] for index in sorted(expected.id2label)]
    assert Runtime.classifier_labels(model) == (labels, expected.problem_type)


@pytest.mark.parametrize("content", ["not json", "[1, 2]"])
def test_an_unreadable_config_makes_the_model_unavailable(tmp_path: Path, content: str) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(content, encoding="utf-8")
    with pytest.raises(ModelUnavailableError, match="has no readable config"):
        Runtime.classifier_labels(str(model))


def test_a_directory_without_a_config_makes_the_model_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="has no readable config"):
        Runtime.classifier_labels(str(tmp_path))
