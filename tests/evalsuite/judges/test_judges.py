"""Judge kinds, templates and SuperICL: golden prompt text, the out-of-fold rule, pairwise orders."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evalsuite.api import Scorer
from evalsuite.errors import ConfigError, InputError
from evalsuite.judges import (
    ConfidenceCalibrator,
    InContextExample,
    JudgeReply,
    PluginPrediction,
    TokenChoice,
    check_out_of_fold,
    load_template,
    supericl_prompt,
)
from evalsuite.judges.supericl import select_examples
from evalsuite.judges.verdicts import label_distribution
from evalsuite.registry import ScoreFailure
from evalsuite.testing import FakeChatServer, chat_completion, float_tolerance

TOLERANCE = float_tolerance("float64", style="approx")


# -- templates ----------------------------------------------------------------------------------
def test_user_templates_name_record_fields_and_their_hash_follows_the_text(tmp_path: Path) -> None:
    spec = {"input": "Q: {prompt}\nA: {prediction}\nTopic: {topic}", "question": "Good? Answer yes or no."}
    template = load_template(spec, "binary")
    assert template.fields == ("prompt", "prediction", "topic")
    assert template.labels == ("yes", "no")
    path = tmp_path / "judge.json"
    path.write_text(json.dumps(spec))
    assert load_template(str(path), "binary").sha256() == template.sha256()
    changed = load_template({**spec, "question": "Good? Reply yes or no."}, "binary")
    assert changed.sha256() != template.sha256()


@pytest.mark.parametrize(
    ("spec", "kind", "message"),
    [
        ({"input": "{prediction!r}", "question": "?"}, "binary", "plain record field names"),
        ({"input": "{prediction", "question": "?"}, "binary", "malformed"),
        ({"input": "{prediction}"}, "binary", "needs 'input' and 'question'"),
        ({"input": "{prediction}", "question": "?"}, "pairwise", "prediction_b"),
        ({"input": "{prediction}", "question": "?", "labels": ["yes"]}, "binary", "exactly two labels"),
        ("nonexistent-template", "direct", "neither a built-in"),
    ],
)
def test_bad_templates_are_clear_config_errors(spec: Any, kind: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_template(spec, kind)


def test_scale_must_be_one_digit() -> None:
    with pytest.raises(ConfigError, match="from 2 to 9"):
        Scorer({"llm_judge": {"scale": 10}})


# -- verdicts -------------------------------------------------------------------------------------
def test_the_rating_is_read_at_the_first_label_token_not_before() -> None:
    reply = JudgeReply(
        "Rating: 4",
        (
            TokenChoice("Rating", {"Rating": -0.1, "3": -3.0}),
            TokenChoice(":", {":": -0.01}),
            TokenChoice(" 4", {" 4": math.log(0.6), "4": math.log(0.2), " 5": math.log(0.2)}),
        ),
    )
    distribution = label_distribution(reply, ("1", "2", "3", "4", "5"))
    assert distribution == pytest.approx({"1": 0, "2": 0, "3": 0, "4": 0.8, "5": 0.2}, **TOLERANCE)


def test_a_reply_without_any_label_is_a_failure_showing_it() -> None:
    failure = label_distribution(JudgeReply("I'd rather not say."), ("yes", "no"))
    assert isinstance(failure, ScoreFailure)
    assert failure.raw == "I'd rather not say."


# -- SuperICL: the prompt and the out-of-fold rule ---------------------------------------------------
def test_the_supericl_prompt_text_is_exactly_the_papers_shape() -> None:
    template = load_template("groundedness", "binary")
    examples = [
        InContextExample({"source": "Water boils at 100 C.", "prediction": "Water boils at 100 C."}, "yes",
                         PluginPrediction("yes", 0.912)),
        InContextExample({"source": "The cat sat.", "prediction": "The dog sat."}, "no", PluginPrediction("yes", 0.55)),
    ]  # fmt: skip
    record = {"source": "Rome is in Italy.", "prediction": "Rome is in France."}
    prompt = supericl_prompt(template, "factuality", examples, record, PluginPrediction("no", 0.874))
    assert prompt == (
        "Is every statement of the claim supported by the source? Answer yes or no.\n\n"
        "Each input below comes with the prediction of a small model (factuality) and its confidence. "
        "It is often right, but not always: give the correct label.\n\n"
        "Source:\nWater boils at 100 C.\n\nClaim:\nWater boils at 100 C.\n"
        "factuality Prediction: yes (Confidence: 0.91)\nLabel: yes\n\n"
        "Source:\nThe cat sat.\n\nClaim:\nThe dog sat.\n"
        "factuality Prediction: yes (Confidence: 0.55)\nLabel: no\n\n"
        "Source:\nRome is in Italy.\n\nClaim:\nRome is in France.\n"
        "factuality Prediction: no (Confidence: 0.87)\nLabel:"
    )


def test_examples_predictions_are_out_of_fold_cross_fitted() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(0)
    positive = rng.random(40) < 0.5
    scores = positive * 1.0 + rng.normal(0, 0.8, 40)
    calibrator = ConfidenceCalibrator(folds=5, seed=7)
    out_of_fold = calibrator.fit(scores.tolist(), positive.tolist())
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=7)
    expected = cross_val_predict(
        LogisticRegression(), scores.reshape(-1, 1), positive, cv=folds, method="predict_proba"
    )[:, 1]
    assert out_of_fold == pytest.approx(expected, **TOLERANCE)
    in_sample = (
        LogisticRegression().fit(scores.reshape(-1, 1), positive).predict_proba(scores.reshape(-1, 1))[:, 1]
    )
    assert not np.allclose(out_of_fold, in_sample)  # the in-sample fit would show other confidences
    assert calibrator.predict([5.0])[0] > 0.9 > 0.1 > calibrator.predict([-5.0])[0]


def test_examples_a_plugin_was_fitted_on_are_refused() -> None:
    check_out_of_fold(["e1", "e2"], ["t1", "t2"], plugin="proxy")
    with pytest.raises(ConfigError, match="2 in-context examples were in proxy's training data"):
        check_out_of_fold(["e1", "t2", "t1"], ["t1", "t2"], plugin="proxy")


def test_examples_are_balanced_over_labels_and_seeded() -> None:
    labels = ["yes"] * 30 + ["no"] * 5
    chosen = select_examples(labels, 6, seed=1)
    assert sorted(labels[i] for i in chosen) == ["no", "no", "no", "yes", "yes", "yes"]
    assert chosen == select_examples(labels, 6, seed=1) != select_examples(labels, 6, seed=2)
    with pytest.raises(ConfigError, match="has 35"):
        select_examples(labels, 36)


# -- SuperICL through the metric: a lexical plug-in, a canned judge -----------------------------------
PLUGIN_TEMPLATE = {"input": "Text: {prediction}", "question": "Is the text offensive? Answer yes or no."}


def _examples_file(path: Path) -> Path:
    rude = [
        "you are a stupid idiot",
        "shut up you moron",
        "this is damn crap",
        "what a dumb jerk",
        "screw you loser",
    ]
    kind = [
        "have a lovely day",
        "thanks for the help",
        "the weather is nice",
        "I like this book",
        "see you soon",
    ]
    rows = [{"id": f"r{i}", "prediction": t, "label": "yes"} for i, t in enumerate(rude)]
    rows += [{"id": f"k{i}", "prediction": t, "label": False} for i, t in enumerate(kind)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_supericl_metric_shows_calibrated_out_of_fold_plugin_lines_and_flags_overrides(
    tmp_path: Path,
) -> None:
    # The judge says "no" to everything: it overrides the plug-in wherever the plug-in says "yes".
    def judge(body: dict[str, Any]) -> Any:
        return chat_completion("no", [{"no": math.log(0.9), "yes": math.log(0.1)}])

    examples = _examples_file(tmp_path / "examples.jsonl")
    records = [{"id": "x", "prediction": "you idiot, shut up"}, {"id": "y", "prediction": "a lovely book"}]
    config = {
        "kind": "binary",
        "template": PLUGIN_TEMPLATE,
        "plugin": "toxicity",
        "examples": str(examples),
        "k": 4,
        "model": "canned",
        "retries": 0,
    }
    with FakeChatServer(judge) as server:
        results = Scorer({"llm_judge": {**config, "base_url": server.base_url}}, cache=False).score(records)
    prompt = server.requests[0]["messages"][1]["content"]
    assert prompt.count("toxicity Prediction:") == 5
    assert prompt.count("Label: ") == 4
    assert re.search(
        r"Text: you idiot, shut up\ntoxicity Prediction: yes \(Confidence: 0\.\d\d\)\nLabel:$", prompt
    )
    assert results["llm_judge_plugin_verdict"].to_list() == [1.0, 0.0]
    assert results["llm_judge_overrides"].to_list() == [1.0, 0.0]
    assert results["llm_judge_probability"].to_list() == pytest.approx([0.1, 0.1], **TOLERANCE)
    assert all(0.5 <= c <= 1.0 for c in results["llm_judge_plugin_confidence"].to_list())


def test_supericl_with_explain_asks_why_only_where_the_judge_overrides(tmp_path: Path) -> None:
    def judge(body: dict[str, Any]) -> Any:
        if body["messages"][1]["content"].endswith("Explanation for overriding the prediction:"):
            return chat_completion("The words are rude but quoted.", completion_tokens=7)
        return chat_completion("no", [{"no": math.log(0.9), "yes": math.log(0.1)}])

    examples = _examples_file(tmp_path / "examples.jsonl")
    records = [{"id": "x", "prediction": "you idiot, shut up"}, {"id": "y", "prediction": "a lovely book"}]
    config = {"kind": "binary", "template": PLUGIN_TEMPLATE, "plugin": "toxicity", "examples": str(examples),
              "k": 4, "model": "canned", "explain": True, "retries": 0}  # fmt: skip
    with FakeChatServer(judge) as server:
        results = Scorer({"llm_judge": {**config, "base_url": server.base_url}}, cache=False).score(records)
    assert len(server.requests) == 3  # two verdicts, one explanation
    reply = results["llm_judge_reply"].to_list()
    assert reply[0].endswith("Explanation for overriding the prediction: The words are rude but quoted.")
    assert "Explanation" not in reply[1]


def test_bad_examples_name_the_example_and_field(tmp_path: Path) -> None:
    path = _examples_file(tmp_path / "examples.jsonl")
    path.write_text(path.read_text() + json.dumps({"id": "bad", "prediction": "x", "label": "maybe"}) + "\n")
    config = {
        "kind": "binary",
        "template": PLUGIN_TEMPLATE,
        "plugin": "toxicity",
        "examples": str(path),
        "k": 4,
    }
    with pytest.raises(InputError, match=r"examples.jsonl:11: label 'maybe' is none of yes, no"):
        Scorer({"llm_judge": config}, cache=False).score([{"id": "x", "prediction": "hi"}])
    with pytest.raises(ConfigError, match="both plugin=METRIC and examples=FILE"):
        Scorer({"llm_judge": {"kind": "binary", "plugin": "toxicity"}})


# -- pairwise: both orders ---------------------------------------------------------------------------
def _pairwise_records() -> list[dict[str, Any]]:
    return [
        {"id": "p0", "prompt": "2+2?", "prediction": "4 (correct)", "prediction_b": "5"},
        {"id": "p1", "prompt": "3+3?", "prediction": "7", "prediction_b": "6 (correct)"},
    ]


def test_pairwise_judges_both_orders_and_a_position_biased_judge_gives_draws() -> None:
    def always_first(body: dict[str, Any]) -> Any:
        return chat_completion("A", [{"A": math.log(0.8), "B": math.log(0.2)}])

    with FakeChatServer(always_first) as server:
        config = {"kind": "pairwise", "base_url": server.base_url, "model": "m", "retries": 0}
        results = Scorer({"llm_judge": config}, cache=False).score(_pairwise_records())
    assert len(server.requests) == 4
    shown_first = [
        body["messages"][1]["content"].split("Response A:\n")[1].split("\n")[0] for body in server.requests
    ]
    assert sorted(shown_first) == ["4 (correct)", "5", "6 (correct)", "7"]
    assert results["llm_judge_winner"].to_list() == [0.5, 0.5]
    assert results["llm_judge_probability_a"].to_list() == pytest.approx([0.5, 0.5], **TOLERANCE)


def test_pairwise_consistent_judge_picks_the_same_response_in_both_orders() -> None:
    def content_aware(body: dict[str, Any]) -> Any:
        prompt = body["messages"][1]["content"]
        first = prompt.split("Response A:\n")[1].split("\n\nResponse B:")[0]
        good = "A" if "correct" in first else "B"
        bad = "B" if good == "A" else "A"
        return chat_completion(good, [{good: math.log(0.7), bad: math.log(0.3)}])

    with FakeChatServer(content_aware) as server:
        config = {"kind": "pairwise", "base_url": server.base_url, "model": "m", "retries": 0}
        results = Scorer({"llm_judge": config}, cache=False).score(_pairwise_records())
    assert results["llm_judge_winner"].to_list() == [1.0, 0.0]
    assert results["llm_judge_probability_a"].to_list() == pytest.approx([0.7, 0.3], **TOLERANCE)


def test_a_record_without_a_template_field_is_a_record_error() -> None:
    with FakeChatServer(lambda body: chat_completion("A", [{"A": 0.0}])) as server:
        config = {"kind": "pairwise", "base_url": server.base_url, "model": "m", "retries": 0}
        results = Scorer({"llm_judge": config}, cache=False).score(
            [{"id": "lonely", "prompt": "?", "prediction": "x"}], on_error="skip"
        )
    assert "needs field 'prediction_b'" in results.errors[0]["reason"]
    assert not server.requests
