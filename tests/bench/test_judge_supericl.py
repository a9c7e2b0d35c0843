"""bench/judge_supericl.py end to end on a tiny MultiNLI file, against a canned OpenAI-compatible judge."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from evalsuite.testing import FakeChatServer, chat_completion

BENCH = Path(__file__).resolve().parents[2] / "bench"
PAIRS = [
    ("A man is playing a guitar on stage.", "A man is playing music.", "entailment"),
    ("A man is playing a guitar on stage.", "A woman is sleeping at home.", "contradiction"),
    ("Two dogs run across a snowy field.", "Animals are outside.", "entailment"),
    ("Two dogs run across a snowy field.", "The dogs are chasing a ball.", "neutral"),
    ("The children are eating lunch at school.", "Kids are having a meal.", "entailment"),
    ("The children are eating lunch at school.", "The children are asleep.", "contradiction"),
]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("judge_supericl")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "nli" / "eval" / "mnli_dev_matched.jsonl"
    path.parent.mkdir(parents=True)
    rows = [
        {"premise": premise, "hypothesis": hypothesis, "label": label, "id": f"p{i}-{j}"}
        for i in range(4)
        for j, (premise, hypothesis, label) in enumerate(PAIRS)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return tmp_path / "data"


def entailment_judge(body: dict[str, Any]) -> Any:
    """'yes' when the hypothesis shares a content word with the premise (a crude but fixed judge)."""
    prompt = body["messages"][-1]["content"]
    claim = prompt.rsplit("Claim:\n", 1)[1].split("\n")[0].lower()
    source = prompt.rsplit("Source:\n", 1)[1].split("\n")[0].lower()
    answer = "yes" if {w for w in claim.split() if len(w) > 4} & set(source.split()) else "no"
    other = "no" if answer == "yes" else "yes"
    return chat_completion(answer, [{answer: math.log(0.75), other: math.log(0.25)}], prompt_tokens=30)


def test_the_benchmark_reports_every_row_against_any_openai_compatible_judge(
    bench: ModuleType, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "figures.json"
    with FakeChatServer(entailment_judge) as server:
        bench.main(
            ["--data", str(data), "--dataset", "mnli", "--limit", "10", "--pool", "12", "--k", "4",
             "--base-url", server.base_url, "--model", "canned", "--calls", "8", "--latency-ms", "1",
             "--json", str(out), "--markdown"]
        )  # fmt: skip
    figures = json.loads(out.read_text())
    task = figures["tasks"]["mnli"]
    assert task["records"] == 10
    for row in ("plugin", "judge", "supericl", "cascade_judge_10", "cascade_supericl_50"):
        assert set(task[row]) == {"accuracy", "balanced_accuracy", "roc_auc"}
        assert 0.0 <= task[row]["accuracy"] <= 1.0
    # The judge alone is the canned rule: its accuracy is recomputed here from the file's labels.
    assert task["judge"]["accuracy"] == pytest.approx(_rule_accuracy(bench, data, figures["seed"]))
    assert set(figures["throughput"]) == {"concurrency_1", "concurrency_16"}
    printed = capsys.readouterr().out
    assert "| mnli (10, " in printed
    assert "(c) SuperICL judge" in printed
    assert "Judge calls/s against the local test server" in printed


def _rule_accuracy(bench: ModuleType, data: Path, seed: int) -> float:
    scored, _ = bench.split(bench.TASKS["mnli"].load(data), 10, 12, seed)
    right = 0
    for record, gold in scored:
        claim, source = record["prediction"].lower(), record["source"].lower()
        said_yes = bool({w for w in claim.split() if len(w) > 4} & set(source.split()))
        right += int(said_yes == bool(gold))
    return right / len(scored)
