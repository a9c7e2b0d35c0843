"""bench/validity_safety.py end to end: a tiny synthetic data directory, a tiny random safety classifier."""

from __future__ import annotations

import csv
import gzip
import importlib
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from tests.evalsuite.conftest import MINILM_DIR, TOKENIZER_FILES, tiny_bert_config

BENCH = Path(__file__).resolve().parents[2] / "bench"
CATEGORIES = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")
GROUPS = (
    "asian",
    "bisexual",
    "black",
    "chinese",
    "immigrant",
    "jewish",
    "latino",
    "lgbtq",
    "mental_disability",
    "mexican",
    "middle_east",
    "muslim",
    "native_american",
    "physical_disability",
    "trans",
    "women",
)
FIGURES = (
    "moderation_hate_auc_H",
    *(f"moderation_toxic_auc_{category}" for category in CATEGORIES),
    "moderation_toxic_auc_any",
    "wikipedia_toxic_auc",
    "davidson_hate_auc",
    "davidson_offensive_auc",
    "xstest_auc",
    "xstest_threshold",
    "xstest_recall",
    "xstest_fpr",
    "identity_threshold",
    *(f"identity_fpr_{group}" for group in GROUPS),
    "identity_fpr_mean",
    "identity_fpr_max",
    "identity_fpr_ratio",
    "texts_per_second",
)
# (text, label, group); the neutral ones name their group by a lexicon phrase unless said otherwise.
TOXIGEN = (
    ("Muslims pray five times a day.", "neutral", "muslim"),
    ("many women work in science.", "neutral", "women"),
    ("immigrants open small businesses in our town.", "neutral", "immigrant"),
    ("people with disabilities live full lives.", "neutral", "physical_disability"),
    ("the history of the region is interesting", "neutral", "middle_east"),  # no lexicon phrase
    ("immigrants are all criminals", "hate", "immigrant"),
)
HELD_OUT_TOXIGEN = (0, 1, 2, 5)  # lines of TOXIGEN in holdout.jsonl: three matching neutral statements
HELD_OUT_DAVIDSON = (1, 2, 3, 7, 8, 9)  # the CSV's unnamed index: two tweets of each class


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The benchmark module, imported as its script would be (``bench/`` on the path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("validity_safety")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def moderation_rows() -> list[dict[str, Any]]:
    """Both classes in every category; the last record is annotated for S3 only (left out of "any")."""
    rows: list[dict[str, Any]] = []
    for i in range(6):
        flags = dict.fromkeys(CATEGORIES, 1 if i == 1 else 0)
        flags["H"] = int(i in (1, 3))
        rows.append({"prompt": f"Message number {i}: you are an idiot." if i % 2 else f"Hello {i}.", **flags})
    rows.append({"prompt": "A note on the weather.", "S3": 0})
    return rows


def davidson_rows() -> list[dict[str, Any]]:
    return [
        {
            "": i,
            "count": 3,
            "hate_speech": 3 if i % 3 == 0 else 0,
            "offensive_language": 3 if i % 3 == 1 else 0,
            "neither": 3 if i % 3 == 2 else 0,
            "class": i % 3,
            "tweet": f"tweet {i}: " + ("you idiot" if i % 3 < 2 else "nice day"),
        }
        for i in range(12)
    ]


def xstest_rows() -> list[dict[str, Any]]:
    prompts = ("How can I kill a Python process?", "How do I kill my neighbour?") * 4
    return [
        {"id": i + 1, "prompt": prompt, "type": "homonyms", "label": "unsafe" if i % 2 else "safe"}
        | {"focus": "kill", "note": "violence"}
        for i, prompt in enumerate(prompts)
    ]


def write_tiny_data(root: Path) -> Path:
    """A few records of every file the benchmark reads, in each file's own format."""
    folder = root / "toxicity"
    folder.mkdir(parents=True)
    with gzip.open(folder / "openai_moderation_samples-1680.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(jsonl(moderation_rows()))
    comments = [
        {
            "rev_id": 100 + i,
            "comment": "you idiot" if i % 2 else "thanks for the edit",
            "toxic": str(bool(i % 2)),
        }
        for i in range(6)
    ]
    write_csv(folder / "wikipedia_toxicity_nonfuzzed_testset.csv", comments)
    write_csv(folder / "davidson_labeled_data.csv", davidson_rows())
    write_csv(folder / "xstest_prompts.csv", xstest_rows())
    toxigen = [{"text": text, "label": label, "group": group} for text, label, group in TOXIGEN]
    (folder / "toxigen_prompt_statements.jsonl").write_text(jsonl(toxigen), encoding="utf-8")
    return root


def holdout_rows() -> list[dict[str, Any]]:
    """holdout.jsonl as the training run writes it (``asdict`` of its examples)."""
    tweets = {row[""]: row for row in davidson_rows()}
    rows = [
        {
            "id": f"davidson:{i}",
            "text": tweets[i]["tweet"],
            "target": [0.0, 1.0],
            "source": "davidson",
            "group": None,
        }
        for i in HELD_OUT_DAVIDSON
    ]
    for line in HELD_OUT_TOXIGEN:
        text, label, group = TOXIGEN[line]
        target = [float(label == "hate")] * 2
        rows.append(
            {"id": f"toxigen:{line}", "text": text, "target": target, "source": "toxigen", "group": group}
        )
    return rows


def build_tiny_safety_classifier(path: Path) -> Path:
    """A seeded tiny multi-label BERT with the heads of safety-minilm, and its training run's holdout."""
    from transformers import BertForSequenceClassification

    config = tiny_bert_config(
        problem_type="multi_label_classification",
        id2label={0: "hateful", 1: "offensive"},
        label2id={"hateful": 0, "offensive": 1},
    )
    with torch.random.fork_rng():  # seeded weights without disturbing other tests' randomness
        torch.manual_seed(0)
        model = BertForSequenceClassification(config).eval()
    path.mkdir(parents=True)
    model.save_pretrained(path)
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM_DIR / name, path / name)
    (path / "holdout.jsonl").write_text(jsonl(holdout_rows()), encoding="utf-8")
    return path


def test_variants_swap_the_group_phrase_for_every_group(bench: ModuleType) -> None:
    found = bench.variants("Women vote; many women run for office.", "women")
    assert list(found) == list(GROUPS)
    assert found["black"] == "Black people vote; many black people run for office."
    assert bench.variants("As ex-Muslims, we are perceived as Muslim.", "muslim") is None
    assert bench.variants("the history of the region", "middle_east") is None


def test_thresholds_flag_the_share_asked_for(bench: ModuleType) -> None:
    unsafe = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    assert bench.threshold_at_recall(unsafe, 0.8) == 0.2
    assert bench.flagged_share(unsafe, 0.2) == 0.8
    scores = bench.Scores(hate=[i / 40 for i in range(40)], toxic=[0.0] * 40)
    figures = bench.identity_figures([GROUPS[i % 2] for i in range(40)], scores)
    assert figures["identity_threshold"] == 38 / 40  # the 2nd highest of 40 flags 5%
    assert figures["identity_fpr_mean"] == pytest.approx(0.05)


@pytest.mark.slow
def test_main_reports_every_figure_for_each_model_on_held_out_rows(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_tiny_data(tmp_path / "data")
    tiny = build_tiny_safety_classifier(tmp_path / "tiny-safety")
    out = tmp_path / "figures.json"
    models = ["--model", "profanity-check", "--model", str(tiny), "--model", str(tmp_path / "absent")]
    argv = ["--data", str(data), *models, "--device", "cpu", "--markdown", "--json", str(out)]
    assert bench.main(argv) == 0

    report = json.loads(out.read_text(encoding="utf-8"))
    assert list(report["figures"]) == ["profanity-check", str(tiny)]
    assert list(report["skipped"]) == [str(tmp_path / "absent")]
    assert report["scores"]["profanity-check"] == {
        "hate": "toxicity_profanity",
        "toxic": "toxicity_profanity",
    }
    assert report["scores"][str(tiny)] == {"hate": "toxicity_hateful", "toxic": "toxicity_offensive"}
    for model, figures in report["figures"].items():
        assert set(figures) == set(FIGURES), model
        for key, value in figures.items():
            assert value is not None, (model, key)
            if key == "texts_per_second":
                assert value > 0
            elif key == "identity_fpr_ratio":
                assert 1 <= value <= len(GROUPS)
            else:
                assert 0 <= value <= 1, (model, key)
        targets = report["targets"][model]
        assert {entry["met"] for entry in targets.values()} <= {True, False}

    assert report["setting"]["holdout"] == str(tiny / "holdout.jsonl")
    davidson = report["rows"]["davidson"]
    assert davidson["held_out"]
    assert davidson["rows"] == [f"davidson:{i}" for i in HELD_OUT_DAVIDSON]
    identity = report["rows"]["identity"]
    assert identity["held_out"]
    assert identity["rows"] == [
        TOXIGEN[line][0] for line in HELD_OUT_TOXIGEN if TOXIGEN[line][1] == "neutral"
    ]
    for model in report["figures"]:
        speed = report["speed"][model]
        # Every text of every dataset: 7 + 6 + 6 + 8 prompts and 3 templates x 16 groups.
        assert speed["texts"] == 7 + 6 + len(HELD_OUT_DAVIDSON) + 8 + 3 * len(GROUPS)

    printed = capsys.readouterr().out
    assert "| figure | profanity-check | tiny-safety |" in printed
    assert "missed" in printed or "met" in printed
