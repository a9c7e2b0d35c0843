"""The cascade, closed: the judge is called on the records the proxy sends, and verdicts are merged.

The proxy keeps the records it is confident about; the ``llm_judge`` metric scores the others
(through the score cache, so a re-run sends no request). Each record's final ``verdict`` is marked
``proxy`` or ``judge``; a record the judge could not answer keeps the proxy's verdict, marked
``proxy (judge failed)``, and its error row (with the raw reply) is returned.

With in-context examples the judge reads the proxy's verdicts in its prompt (SuperICL with the proxy
as the plug-in). The examples' proxy predictions must be out-of-fold: examples the proxy was fitted
on are refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from evalsuite.errors import ConfigError
from evalsuite.judges import check_out_of_fold
from evalsuite.records import json_line
from evalsuite.results import Results
from metrics.llm_judge import LLMJudge, gold_label
from proxies.cascade import CascadePlan
from proxies.features import load_results
from proxies.predictor import JudgePredictor, Predictions

__all__ = ["JudgedCascade", "judge_escalated", "verdict_of"]

PLUGIN = "proxy"  # the plug-in's name in SuperICL prompts, and the prefix of its record fields


@dataclass
class JudgedCascade:
    """The merged verdicts (one row per record) and what the judge step cost."""

    frame: pl.DataFrame
    escalated: int
    judged: int
    errors: list[dict[str, Any]]
    usage: dict[str, int]
    cache_hits: int
    cost: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        usage = self.usage
        lines = [
            f"judge: {self.judged} of {self.escalated} escalated records judged "
            f"({len(self.errors)} failed, kept the proxy's verdict); "
            f"{usage['requests']} requests sent ({usage['retries']} retries), {self.cache_hits} from the cache",
            f"tokens: {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion",
        ]
        if self.cost is not None:
            lines.append(f"cost: {self.cost:.4f} (at the prices given)")
        return lines


def judge_escalated(
    results: Results | str | os.PathLike[str],
    predictions: Predictions,
    plan: CascadePlan,
    judge_config: Mapping[str, Any],
    *,
    proxy: JudgePredictor | None = None,
    examples: Results | str | os.PathLike[str] | None = None,
    examples_label_field: str = "label",
    price_per_1k: float | None = None,
    price_per_1k_completion: float | None = None,
    cache: bool | str | Path = True,
    device: str = "auto",
) -> JudgedCascade:
    """Judge the records ``plan`` escalates with ``llm_judge`` configured by ``judge_config``, and merge.

    ``examples`` (a result file with a ``examples_label_field`` column of gold labels) turns on
    SuperICL with ``proxy`` as the plug-in.
    """
    from evalsuite.api import Scorer

    table = load_results(results).table
    config = dict(judge_config)
    escalated = set(plan.escalated_ids)
    proxy_rows = {
        record_id: (label, float(confidence))
        for record_id, label, confidence in zip(
            predictions.ids, predictions.label, predictions.confidence, strict=True
        )
    }
    with tempfile.TemporaryDirectory(prefix="evalsuite-cascade-") as scratch:
        if examples is not None:
            if proxy is None:
                raise ConfigError("SuperICL examples need the proxy that predicts them")
            config |= {
                "plugin": PLUGIN,
                "plugin_from_fields": True,
                "examples": str(_examples_file(proxy, examples, examples_label_field, Path(scratch))),
                "label_field": examples_label_field,
            }
        judge = LLMJudge(**config)
        rows = [
            _judge_input(row, judge, proxy_rows[row["id"]])
            for row in table.filter(pl.col("id").is_in(sorted(escalated))).to_dicts()
        ]
        with Scorer([judge], cache=cache, device=device) as scorer:
            judged = scorer.score(rows, on_error="skip")
            cache_hits = scorer.stats.cache_hits
    usage = judge.usage()
    frame = _merged(plan, predictions, judged, judge)
    cost = None
    if price_per_1k is not None:
        completion_price = price_per_1k if price_per_1k_completion is None else price_per_1k_completion
        cost = (
            usage["prompt_tokens"] / 1000 * price_per_1k
            + usage["completion_tokens"] / 1000 * completion_price
        )
    return JudgedCascade(frame, len(escalated), len(judged.table), judged.errors, usage, cache_hits, cost)


def verdict_of(kind: str, scores: Mapping[str, Any], classes: Sequence[Any], labels: Sequence[str]) -> Any:
    """The judge's verdict as one of the proxy's classes (None for a pairwise draw).

    >>> verdict_of("binary", {"llm_judge_verdict": 1.0}, [False, True], ("yes", "no"))
    True
    >>> verdict_of("direct", {"llm_judge_rating": 4.0}, [1, 2, 3, 4, 5], ())
    4
    """
    if kind == "direct":
        rating = int(scores["llm_judge_rating"])
        return next((value for value in classes if _as_int(value) == rating), rating)
    if kind == "binary":
        first = scores["llm_judge_verdict"] >= 0.5
    else:
        if scores["llm_judge_winner"] == 0.5:
            return None
        first = scores["llm_judge_winner"] >= 0.5
    wanted = labels[0] if first else labels[1]
    for value in classes:
        try:
            if gold_label(value, labels) == wanted:
                return value
        except ConfigError:
            continue
    raise ConfigError(
        f"cannot tell which of the proxy's classes {list(classes)} is the judge's {wanted!r}: "
        "name them like the template's labels, or use true/false or 1/0"
    )


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _judge_input(row: dict[str, Any], judge: LLMJudge, proxy: tuple[Any, float]) -> dict[str, Any]:
    """A result row as the judge's input: without columns it writes itself; with the proxy's
    prediction (for SuperICL prompts)."""
    written = {*judge.columns, *judge.detail_columns}
    record = {key: value for key, value in row.items() if key not in written and value is not None}
    label, confidence = proxy
    return record | {f"{PLUGIN}_label": label, f"{PLUGIN}_confidence": confidence}


def _examples_file(
    proxy: JudgePredictor, examples: Results | str | os.PathLike[str], label_field: str, scratch: Path
) -> Path:
    """The examples with the proxy's out-of-fold predictions, as a JSONL file the judge reads."""
    if not proxy.fitted_ids:
        raise ConfigError(
            "this proxy file does not list the records it was fitted on (written by an older evalsuite), "
            "so its predictions on the examples cannot be shown to be out-of-fold; refit it"
        )
    res = load_results(examples)
    if label_field not in res.table.columns:
        raise ConfigError(f"the examples lack the gold label column {label_field!r}")
    ids = res.table["id"].cast(pl.String).to_list()
    check_out_of_fold(ids, proxy.fitted_ids, plugin="the judge proxy")
    predicted = proxy.predict(res)
    path = scratch / "examples.jsonl"
    with open(path, "wb") as out:
        for row, label, confidence in zip(
            res.table.to_dicts(), predicted.label, predicted.confidence, strict=True
        ):
            record = {key: value for key, value in row.items() if value is not None}
            record |= {f"{PLUGIN}_label": label, f"{PLUGIN}_confidence": float(confidence)}
            out.write(json_line(record))
    return path


def _merged(plan: CascadePlan, predictions: Predictions, judged: Results, judge: LLMJudge) -> pl.DataFrame:
    """Per record: the plan, the proxy's prediction, the judge's columns, the final verdict and its source."""
    by_id = {row["id"]: row for row in judged.table.to_dicts()}
    failed = {str((row.get("record") or {}).get("id")) for row in judged.errors}
    columns = [*judge.columns, *judge.detail_columns]
    verdicts, sources = [], []
    judge_values: dict[str, list[Any]] = {column: [] for column in columns}
    for record_id, proxy_label, escalated in zip(
        plan.ids, predictions.label, plan.needs_judge.tolist(), strict=True
    ):
        row = by_id.get(record_id)
        for column in columns:
            judge_values[column].append(None if row is None else row.get(column))
        if row is not None:
            verdicts.append(verdict_of(judge.kind, row, predictions.classes, judge.template.labels))
            sources.append("judge")
        else:
            verdicts.append(proxy_label)
            sources.append("proxy (judge failed)" if escalated and record_id in failed else "proxy")
    frame = plan.to_frame().with_columns(pl.Series("judge_prediction", predictions.label))
    for column in columns:
        values = judge_values[column]
        if column in judge.columns:
            frame = frame.with_columns(pl.Series(column, values, dtype=pl.Float64))
        else:  # evidence: text as it is, structures as JSON text (a table cell of one type)
            text = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
            frame = frame.with_columns(pl.Series(column, text, dtype=pl.String))
    return frame.with_columns(
        pl.Series("verdict", verdicts, strict=False), pl.Series("verdict_source", sources, dtype=pl.String)
    )
