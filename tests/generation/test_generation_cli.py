"""``evalsuite generate`` end to end on tiny local models: records that ``score`` reads, and clear errors.

The command is registered on a fresh typer app here, as the CLI registers it
(``app.command("generate")(generate_command)``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from evalsuite.cli.generate import generate_command
from evalsuite.errors import ConfigError
from evalsuite.generation.generator import TextGenerator
from evalsuite.records import RawRecord, validate_record
from evalsuite.runtime import Runtime

runner = CliRunner()
PROMPTS = [
    {"id": "a", "prompt": "the river flows to the sea and the sea", "source": "kept as metadata"},
    {"id": "b", "prompt": "one two three"},
    {"id": "c", "prompt": "a much longer prompt about rivers seas mountains and valleys of the north"},
]


def make_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """evalsuite (test app)."""

    app.command("generate")(generate_command)
    return app


def invoke(*args: Any) -> Any:
    return runner.invoke(make_app(), ["generate", *map(str, args)])


def write_prompts(path: Path, records: list[dict[str, Any]] = PROMPTS) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_samples_and_logprobs_are_written_as_score_reads_them(tmp_path: Path, tiny_llama_dir: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    out = tmp_path / "out.jsonl"
    result = invoke(
        prompts, "--target", tiny_llama_dir, "--draft", "ngram", "-n", 3, "--temperature", 1.0,
        "--max-new-tokens", 8, "--seed", 3, "-o", out, "--batch-size", 2,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "tokens/s" in result.output
    assert "acceptance rate" in result.output
    records = read_jsonl(out)
    assert [record["id"] for record in records] == ["a", "b", "c"]
    assert records[0]["source"] == "kept as metadata"
    for index, record in enumerate(records):
        assert len(record["samples"]) == len(record["sample_logprobs"]) == 3
        assert record["prediction"] == record["samples"][0]
        assert all(value <= 0 for value in record["sample_logprobs"])
        assert all(1 <= count <= 8 for count in record["generation_tokens"])
        assert set(record["generation_finish"]) <= {"stop", "length"}
        # Every canonical field passes the validation `evalsuite score` applies.
        validate_record(RawRecord(index, f"out.jsonl:{index + 1}", record), ("prediction", "samples"))
    manifest = json.loads((tmp_path / "out.manifest.json").read_text())
    assert manifest["command"] == "generate"
    assert manifest["stats"]["sequences"] == 9
    assert manifest["generator"]["drafter"] == "ngram"
    assert manifest["options"]["num_samples"] == 3


def test_scorer_reads_the_output_directly(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from evalsuite.api import Scorer

    out = tmp_path / "out.jsonl"
    result = invoke(
        write_prompts(tmp_path / "p.jsonl"), "--target", tiny_llama_dir, "--max-new-tokens", 6, "-o", out
    )
    assert result.exit_code == 0, result.output
    with Scorer(["pii"], device="cpu", cache=False) as scorer:
        run = scorer.score_file(out, tmp_path / "scores.jsonl")
    assert (run.records, run.errors) == (3, 0)


def test_every_drafter_gives_the_same_greedy_answers(
    tmp_path: Path, tiny_llama_dir: Path, tiny_draft_dir: Path
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    predictions = {}
    runs: dict[str, list[Any]] = {
        "none": ["--draft", "none"],
        "ngram": ["--draft", "ngram"],
        "model": ["--draft", tiny_draft_dir],
        "layer-skip": ["--draft-layers", 1],
    }
    for name, options in runs.items():
        out = tmp_path / f"{name}.jsonl"
        result = invoke(prompts, "--target", tiny_llama_dir, *options, "--max-new-tokens", 12, "-o", out)
        assert result.exit_code == 0, result.output
        predictions[name] = [
            (record["prediction"], record["generation_tokens"]) for record in read_jsonl(out)
        ]
    assert predictions["ngram"] == predictions["none"]
    assert predictions["model"] == predictions["none"]
    assert predictions["layer-skip"] == predictions["none"]


def test_same_seed_same_file_and_a_resumed_run_matches_an_uninterrupted_one(
    tmp_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    options = [
        "--target",
        tiny_llama_dir,
        "-n",
        2,
        "--temperature",
        1.0,
        "--max-new-tokens",
        6,
        "--chunk-size",
        1,
    ]
    assert invoke(prompts, *options, "-o", tmp_path / "first.jsonl").exit_code == 0
    assert invoke(prompts, *options, "-o", tmp_path / "again.jsonl").exit_code == 0
    first = read_jsonl(tmp_path / "first.jsonl")
    assert read_jsonl(tmp_path / "again.jsonl") == first

    calls = {"n": 0}
    original = TextGenerator.generate

    def dies_on_second_chunk(self: TextGenerator, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TextGenerator, "generate", dies_on_second_chunk)
    assert invoke(prompts, *options, "-o", tmp_path / "resumed.jsonl").exit_code != 0
    assert not (tmp_path / "resumed.jsonl").exists()
    monkeypatch.setattr(TextGenerator, "generate", original)
    assert invoke(prompts, *options, "-o", tmp_path / "resumed.jsonl").exit_code == 0
    assert read_jsonl(tmp_path / "resumed.jsonl") == first
    # A finished output is not overwritten by accident.
    result = invoke(prompts, *options, "-o", tmp_path / "resumed.jsonl")
    assert result.exit_code == 2
    assert "--overwrite" in result.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--draft", "OTHER"], "does not share the tokenizer"),
        (["--target", "/nonexistent/model"], "not a directory with a model"),
        (["--target", "no-such-org/no-such-model"], "is not available here"),
        (["--draft-layers", 3], "between 1 and 2"),
        (["--draft", "ngram", "--draft-layers", 1], "not both"),
        (["--max-draft-tokens", 65], "between 0 and 64"),
        (["-n", 3, "--temperature", 0], "temperature > 0"),
        (["--top-p", 1.5], "top_p"),
        (["--max-new-tokens", 0], "max_new_tokens"),
        (["--stop", "not-a-single-token-at-all"], "not a single token"),
        (["--field", "prediction=x"], "maps only the prompt"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(
    tmp_path: Path, tiny_llama_dir: Path, other_tokenizer_dir: Path, options: list[Any], message: str
) -> None:
    options = [other_tokenizer_dir if option == "OTHER" else option for option in options]
    if "--target" not in options:
        options = ["--target", tiny_llama_dir, *options]
    result = invoke(write_prompts(tmp_path / "p.jsonl"), *options, "-o", tmp_path / "out.jsonl")
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_a_record_without_a_prompt_is_named(tmp_path: Path, tiny_llama_dir: Path) -> None:
    prompts = write_prompts(tmp_path / "p.jsonl", [{"prompt": "fine"}, {"question": "no prompt here"}])
    result = invoke(prompts, "--target", tiny_llama_dir, "-o", tmp_path / "out.jsonl")
    assert result.exit_code == 2
    assert "p.jsonl:2" in result.output
    assert "missing required field 'prompt'" in result.output
    mapped = invoke(
        prompts, "--target", tiny_llama_dir, "--field", "prompt=question", "-o", tmp_path / "o.jsonl"
    )
    assert mapped.exit_code == 2  # record 1 has no 'question'


def test_chat_template_is_applied_when_the_tokenizer_has_one(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    chat_dir = tmp_path / "chat-model"
    shutil.copytree(tiny_llama_dir, chat_dir)
    tokenizer = AutoTokenizer.from_pretrained(chat_dir)
    tokenizer.chat_template = "{% for m in messages %}user says {{ m['content'] }} [SEP]{% endfor %}answer :"
    tokenizer.save_pretrained(chat_dir)
    generator = TextGenerator(str(chat_dir), device="cpu")
    expected = tokenizer(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi there"}], add_generation_prompt=True, tokenize=False
        ),
        add_special_tokens=False,
    )["input_ids"]
    assert generator.encode_prompt("hi there") == expected
    assert generator.describe()["chat_template"] is True
    plain = TextGenerator(str(chat_dir), device="cpu", chat_template=False)
    assert plain.encode_prompt("hi there") == tokenizer("hi there")["input_ids"]


def test_the_generator_loads_its_models_on_the_runtime_it_is_given(tiny_llama_dir: Path) -> None:
    runtime = Runtime(device="cpu", dtype="float32")
    generator = TextGenerator(str(tiny_llama_dir), runtime=runtime)
    assert generator.runtime is runtime
    assert generator.target is runtime.language_model(str(tiny_llama_dir))
    assert generator.device == runtime.device
    described = generator.describe()
    assert (described["device"], described["dtype"]) == ("cpu", "float32")
    assert described["models"]["target"] == runtime.describe_model(str(tiny_llama_dir))
    with pytest.raises(ConfigError, match="either a runtime or a device and dtype"):
        TextGenerator(str(tiny_llama_dir), runtime=runtime, device="cpu")
