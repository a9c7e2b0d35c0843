"""Side-by-side benchmark: evalsuite's NLI runtime against ``transformers.pipeline``.

Run::

    python bench/nli.py --data /path/to/shared/data [--model nli-minilm] [--pairs 2000] [--repeats 3]

Both score the same MultiNLI dev-matched pairs (the first ``--pairs`` of
``nli/eval/mnli_dev_matched.jsonl``) with the same model on CPU, float32: evalsuite through
``Runtime.nli`` and the peer through ``pipeline("text-classification", top_k=None)`` fed
``{"text": premise, "text_pair": hypothesis}``, once with the pipeline's default batch size (1)
and once with the runtime's batch size. Model loading is excluded; each tool is warmed up, and the
best of ``--repeats`` timed runs is kept (each of evalsuite's on a fresh runtime, so its memo of
pairs already scored cannot answer). Prints pairs/s of each, the ratios, and the max absolute
difference of the three probabilities (pipeline labels mapped by name). Target: >= 2x the
pipeline's pairs/s at a max difference <= 1e-5. A benchmark, not a test: the exit status does not
depend on the target.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from evalsuite.calibration import softmax
from evalsuite.datasets import resolve_data_dir
from evalsuite.errors import ConfigError
from evalsuite.runtime import Runtime
from evalsuite.runtime.models import load_model
from evalsuite.runtime.nli import NLI_LABELS, label_columns
from evalsuite.training.nli_eval import read_nli_pairs

MNLI_MATCHED = Path("nli") / "eval" / "mnli_dev_matched.jsonl"
BATCH_SIZE = 64


def best_time(run: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    best, output = float("inf"), np.empty(0)
    for _ in range(repeats):
        started = time.perf_counter()
        output = run()
        best = min(best, time.perf_counter() - started)
    return best, output


def pipeline_runner(
    model: str, pairs: Sequence[tuple[str, str]], batch_size: int
) -> Callable[[], np.ndarray]:
    """The peer: a text-classification pipeline over the very model object evalsuite loaded.

    The pipeline gives raw logits; the softmax, at the temperature of the model's calibration (as
    evalsuite applies it), is taken here.
    """
    from transformers import pipeline

    runtime = Runtime(device="cpu")
    loaded = load_model(model, runtime.device, runtime.dtype, head="sequence-classification")
    columns = label_columns(loaded.model.config.id2label)
    outputs_of = {loaded.model.config.id2label[i]: i for i in range(len(columns))}
    classifier = pipeline(
        "text-classification", model=loaded.model, tokenizer=loaded.tokenizer, device="cpu", top_k=None
    )
    inputs = [{"text": premise, "text_pair": hypothesis} for premise, hypothesis in pairs]

    temperature = loaded.calibration.temperature if loaded.calibration is not None else 1.0

    def run() -> np.ndarray:
        logits = np.zeros((len(pairs), len(columns)))
        outputs = classifier(inputs, batch_size=batch_size, truncation=True, function_to_apply="none")
        for row, scores in enumerate(outputs):
            for item in scores:
                logits[row, outputs_of[item["label"]]] = item["score"]
        out = np.zeros((len(pairs), len(NLI_LABELS)))
        for output, probability in enumerate(softmax(logits, temperature).T):
            out[:, columns[output]] += probability
        return out

    return run


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: $EVALSUITE_DATA)")
    parser.add_argument("--model", default="nli-minilm", help="NLI preset, local path or hub id")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        data = resolve_data_dir(args.data, needs=[str(MNLI_MATCHED)])
    except ConfigError as error:
        parser.error(str(error))
    pairs, _ = read_nli_pairs(data / MNLI_MATCHED, limit=args.pairs)

    Runtime(device="cpu", batch_size=BATCH_SIZE).nli(args.model, pairs[:8])  # load and warm up

    def ours_run() -> np.ndarray:
        # A fresh runtime each time: one runtime answers pairs it has seen from its NLI memo, which
        # would time a lookup, not the model (the loaded model itself is shared by the process).
        return Runtime(device="cpu", batch_size=BATCH_SIZE).nli(args.model, pairs).numpy()

    ours_time, ours = best_time(ours_run, args.repeats)
    rows = [("evalsuite Runtime.nli", BATCH_SIZE, ours_time, 0.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pipeline's advice to use a dataset is not our concern here
        for batch_size in (1, BATCH_SIZE):
            run = pipeline_runner(args.model, pairs, batch_size)
            run_few = pipeline_runner(args.model, pairs[:8], batch_size)
            run_few()
            peer_time, peer = best_time(run, args.repeats)
            rows.append(("pipeline(top_k=None)", batch_size, peer_time, float(np.abs(peer - ours).max())))

    print(f"{len(pairs)} MultiNLI dev-matched pairs, model {args.model}, CPU float32, best of {args.repeats}")
    print(f"{'tool':<24}{'batch':>6}{'pairs/s':>10}{'evalsuite is':>14}{'max |Δp|':>12}")
    for name, batch_size, seconds, difference in rows:
        ratio = seconds / ours_time
        print(f"{name:<24}{batch_size:>6}{len(pairs) / seconds:>10.1f}{ratio:>13.2f}x{difference:>12.2e}")
    print("target: >= 2x the pipeline's pairs/s at max |Δp| <= 1e-5")


if __name__ == "__main__":
    main()
