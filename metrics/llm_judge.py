"""``llm_judge``: an LLM judge as a metric, optionally reading a small model's verdicts (SuperICL).

Configured like every metric, so judges work wherever metrics do (Python API, CLI, cache, resume,
service, Ray, dashboard evidence)::

    evalsuite score answers.jsonl -m "llm_judge:kind=direct"                       # local SmolLM2
    evalsuite score answers.jsonl -m "llm_judge:base_url=http://127.0.0.1:8000/v1,model=NAME,kind=binary"
    evalsuite score rag.jsonl -m "llm_judge:kind=binary,plugin=factuality,examples=labelled.jsonl"

Verdicts are cached like scores, keyed by backend, model, template hash, parameters and record
content (the API key, concurrency, timeout and retries are not part of the key): a re-run sends no
request. A record the judge cannot answer (no rating token, a refusal, a reply that is not JSON, a
server error after the retries) is a record error that names the record and shows the raw reply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.errors import ConfigError, InputError
from evalsuite.judges import (
    BackendStats,
    ConfidenceCalibrator,
    InContextExample,
    Judge,
    JudgeBackend,
    LocalBackend,
    OpenAICompatibleBackend,
    PluginPrediction,
    SuperICL,
    load_template,
)
from evalsuite.judges.supericl import select_examples
from evalsuite.judges.templates import KINDS, SECOND_RESPONSE, Kind
from evalsuite.records import CANONICAL_FIELDS, iter_records, validate_record
from metrics.base import Metric, ScoreFailure, Scores, load_metric, register_metric

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime

LOCAL_DEFAULT = "smollm2"


@register_metric("llm_judge")
class LLMJudge(Metric):
    """An LLM's verdict on each record, read from its answer token's probabilities.

    ``kind``: ``direct`` (columns ``rating``: the most likely rating 1..``scale``, and ``weighted``:
    G-Eval's sum of p(k)·k), ``binary`` (``probability`` of the template's first label, e.g. P(yes), and
    ``verdict``) or ``pairwise`` (``probability_a`` that ``prediction`` beats ``prediction_b``, judged
    in both orders, and ``winner``: 1, 0, or 0.5 when the orders disagree). Evidence columns: the
    judge's ``reply`` (with its rationale when ``explain=true``) and the label ``distribution``.

    ``base_url`` (an OpenAI-compatible server) with ``model``; the key is read from the environment
    variable ``api_key_env``. Without ``base_url`` the judge is a local causal LM (default SmolLM2-135M-
    Instruct, packaged). ``template``: ``groundedness`` (binary, reads source and prediction),
    ``quality`` (direct, reads prompt and prediction), ``pairwise``, or a ``.json`` file with
    ``input`` (``{field}`` placeholders), ``question`` and optional ``labels``.

    SuperICL: ``plugin`` names an evalsuite metric (its first score column, or ``plugin_column``) and
    ``examples`` a labelled file (the template's fields plus ``label_field``). The plug-in's score is
    calibrated on the examples by Platt scaling, cross-fitted so each example's shown prediction is
    out-of-fold; ``k`` examples (balanced over the labels, seeded) go into every prompt. Added columns:
    ``plugin_verdict``, ``plugin_confidence`` and ``overrides`` (1 where the judge disagrees).
    """

    fields = ("prediction",)
    detail_names = ("reply", "distribution")
    higher_is_better = True
    description = "An LLM judge's rating, P(yes) or pairwise preference, from its answer-token probabilities."
    citation = (
        "Liu et al., G-Eval, 2023 (probability-weighted ratings); Xu et al., Small Models are Valuable "
        "Plug-ins for Large Language Models (SuperICL), 2023; Zheng et al., Judging LLM-as-a-Judge, 2023."
    )

    def __init__(
        self,
        *,
        kind: str = "direct",
        model: str | None = None,
        base_url: str | None = None,
        template: str | Mapping[str, Any] | None = None,
        scale: int = 5,
        explain: bool = False,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        top_logprobs: int = 20,
        logprobs: bool = True,
        plugin: str | None = None,
        plugin_column: str | None = None,
        plugin_from_fields: bool = False,
        examples: str | None = None,
        label_field: str = "label",
        k: int = 8,
        seed: int = 0,
        template_sha256: str | None = None,
        examples_sha256: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 60.0,
        retries: int = 4,
    ) -> None:
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if base_url is not None and not model:
            raise ConfigError("an HTTP judge needs model=NAME (the model the server serves)")
        if (plugin is None) != (examples is None):
            raise ConfigError(
                "SuperICL needs both plugin=METRIC and examples=FILE (labelled in-context examples)"
            )
        judge_kind: Kind = kind
        loaded = load_template(template, judge_kind).with_scale(scale)
        model = model or LOCAL_DEFAULT
        config: dict[str, Any] = {
            "kind": kind,
            "model": model,
            "base_url": base_url,
            "template": dict(template) if isinstance(template, Mapping) else (template or loaded.name),
            "template_sha256": _same_hash("template", template_sha256, loaded.sha256()),
            "scale": scale,
            "explain": explain,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_logprobs": top_logprobs,
            "logprobs": logprobs,
        }
        if plugin is not None and examples is not None:
            config |= {
                "plugin": plugin,
                "plugin_column": plugin_column,
                "plugin_from_fields": plugin_from_fields,
                "examples": str(examples),
                "examples_sha256": _same_hash("examples", examples_sha256, _file_sha256(examples)),
                "label_field": label_field,
                "k": k,
                "seed": seed,
            }
        super().__init__(**config)
        self.template = loaded
        self.kind = judge_kind
        self.model = model
        self.base_url = base_url
        # Transport settings: not in the config, so they never change the cache key.
        self.api_key_env, self.concurrency, self.timeout, self.retries = (
            api_key_env,
            concurrency,
            timeout,
            retries,
        )
        self.explain = explain
        self.max_tokens = max_tokens
        self.plugin_metric = None if plugin is None or plugin_from_fields else load_metric(plugin)
        # A plug-in read from the records: its label and confidence fields, e.g. proxy_label.
        self.plugin_fields: tuple[str, ...] = (
            (f"{plugin}_label", f"{plugin}_confidence") if plugin_from_fields else ()
        )
        if (
            self.plugin_metric is not None
            and plugin_column is not None
            and plugin_column not in self.plugin_metric.score_names
        ):
            raise ConfigError(
                f"plugin_column {plugin_column!r} is not a score of {plugin!r}: "
                f"{', '.join(self.plugin_metric.score_names)}"
            )
        self.examples_path = None if examples is None else Path(examples)
        self.label_field, self.k, self.seed = label_field, k, seed
        self.supericl = plugin is not None
        self.score_names = Judge.score_names_for(judge_kind, supericl=self.supericl)
        canonical = [name for name in loaded.fields if name in CANONICAL_FIELDS]
        plugin_fields = self.plugin_metric.fields if self.plugin_metric is not None else ()
        self.fields = tuple(dict.fromkeys([*canonical, *plugin_fields]))  # type: ignore[misc,assignment]
        self._backend: JudgeBackend | None = None
        self._examples: tuple[InContextExample, ...] | None = None
        # Fitted on the examples (Platt, cross-fitted) before the first batch, when the plug-in is a metric.
        self._calibrator = ConfidenceCalibrator(seed=seed)

    @property
    def input_fields(self) -> tuple[str, ...]:
        """Every field a verdict depends on, metadata fields of the template (prediction_b) included."""
        plugin = self.plugin_metric.input_fields if self.plugin_metric is not None else self.plugin_fields
        return tuple(dict.fromkeys([*self.fields, *self.template.fields, *plugin]))

    def models(self) -> list[str]:
        local = [self.model] if self.base_url is None else []
        return [*local, *(self.plugin_metric.models() if self.plugin_metric is not None else [])]

    def backend(self, rt: Runtime) -> JudgeBackend:
        """The judge's backend, built once (its counters add up over the run)."""
        if self._backend is None:
            if self.base_url is None:
                self._backend = LocalBackend(rt, self.model, top_logprobs=self._config["top_logprobs"])
            else:
                self._backend = OpenAICompatibleBackend(
                    self.base_url,
                    self.model,
                    logprobs=self._config["logprobs"],
                    top_logprobs=self._config["top_logprobs"],
                    temperature=self._config["temperature"],
                    api_key_env=self.api_key_env,
                    concurrency=self.concurrency,
                    timeout=self.timeout,
                    retries=self.retries,
                )
        return self._backend

    def __getstate__(self) -> dict[str, Any]:
        # Ray ships metrics to workers: each builds its own backend (a runtime or an HTTP client).
        return {**self.__dict__, "_backend": None}

    def usage(self) -> dict[str, int]:
        """Requests sent (retries included), retries, failures and tokens since this metric was built."""
        if self._backend is None:
            return BackendStats().to_dict()
        return self._backend.stats.to_dict()

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        judge = Judge(self.backend(rt), self.template, explain=self.explain, max_tokens=self.max_tokens)
        supericl = self._supericl(records, rt) if self.supericl else None
        verdicts = judge.judge(records, supericl)
        names = (*self.score_names, *self.detail_names)
        scores: Scores = {name: [] for name in names}
        for verdict in verdicts:
            if isinstance(verdict, ScoreFailure):
                for name in names:
                    scores[name].append(verdict)
                continue
            for name in self.score_names:
                scores[name].append(verdict.scores[name])
            scores["reply"].append(verdict.reply)
            scores["distribution"].append(verdict.distribution)
        return scores

    # -- SuperICL ---------------------------------------------------------------------------------
    def _supericl(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> SuperICL:
        examples = self._in_context_examples(rt)
        labels = self.template.labels
        predictions: tuple[PluginPrediction | ScoreFailure, ...]
        if self.plugin_metric is None:  # predictions given in the records
            predictions = tuple(self._field_prediction(record) for record in records)
        else:
            probabilities = self._calibrator.predict(self._plugin_scores(self.plugin_metric, records, rt))
            predictions = tuple(PluginPrediction.from_probability(float(p), labels) for p in probabilities)
        return SuperICL(self._config["plugin"], examples, predictions)

    def _field_prediction(self, record: Mapping[str, Any]) -> PluginPrediction | ScoreFailure:
        """A plug-in prediction given in the record (``<plugin>_label``, ``<plugin>_confidence``)."""
        label_field, confidence_field = self.plugin_fields
        try:
            label = gold_label(record.get(label_field), self.template.labels)
            confidence = float(record.get(confidence_field))  # type: ignore[arg-type]
        except (ConfigError, TypeError, ValueError):
            return ScoreFailure(
                f"the record needs the plug-in's prediction in {label_field!r} (one of "
                f"{', '.join(self.template.labels)}) and {confidence_field!r} (a probability)"
            )
        if not 0.0 <= confidence <= 1.0:
            return ScoreFailure(f"{confidence_field!r} must be a probability in [0, 1], got {confidence!r}")
        return PluginPrediction(label, confidence)

    def _plugin_scores(
        self, metric: Metric, records: Sequence[Mapping[str, Any]], rt: Runtime
    ) -> list[float]:
        """The plug-in's score per record; for pairwise judges, its score of A minus that of B."""
        column = self._config["plugin_column"] or metric.score_names[0]
        values = metric.score_batch(records, rt)[column]
        if self.kind == "pairwise":
            swapped = [{**record, "prediction": record[SECOND_RESPONSE]} for record in records]
            values = [a - b for a, b in zip(values, metric.score_batch(swapped, rt)[column], strict=True)]
        return [float(value) for value in values]

    def _in_context_examples(self, rt: Runtime) -> tuple[InContextExample, ...]:
        """Read and label the examples, calibrate the plug-in on them (cross-fitted), pick k (once)."""
        if self._examples is not None:
            return self._examples
        if self.examples_path is None:
            raise ConfigError("SuperICL needs examples=FILE (labelled in-context examples)")
        records, gold = self._read_examples(self.examples_path)
        labels = self.template.labels
        chosen = select_examples(gold, self.k, seed=self.seed)
        if (
            self.plugin_metric is None
        ):  # given predictions: out-of-fold is the caller's promise (the cascade checks)
            given = []
            for i in chosen:
                prediction = self._field_prediction(records[i])
                if isinstance(prediction, ScoreFailure):
                    where = f"{self.examples_path} example id {records[i]['id']!r}"
                    raise InputError(prediction.reason, location=where)
                given.append(InContextExample(records[i], gold[i], prediction))
            self._examples = tuple(given)
            return self._examples
        out_of_fold = self._calibrator.fit(
            self._plugin_scores(self.plugin_metric, records, rt), [label == labels[0] for label in gold]
        )
        self._examples = tuple(
            InContextExample(
                records[i], gold[i], PluginPrediction.from_probability(float(out_of_fold[i]), labels)
            )
            for i in chosen
        )
        return self._examples

    def _read_examples(self, path: Path) -> tuple[list[dict[str, Any]], list[str]]:
        needed = [name for name in self.template.fields if name in CANONICAL_FIELDS]
        records, gold = [], []
        for raw in iter_records(path):
            record = validate_record(raw, needed)
            for name in (*self.template.fields, self.label_field):
                if record.get(name) is None:
                    raise InputError(
                        f"in-context example lacks field {name!r}", location=raw.location, field=name
                    )
            try:
                gold.append(gold_label(record[self.label_field], self.template.labels))
            except ConfigError as error:
                raise InputError(str(error), location=raw.location, field=self.label_field) from None
            records.append(record)
        return records, gold


def gold_label(value: Any, labels: Sequence[str]) -> str:
    """An example's gold label as one of the template's two labels: the label itself (any case), or a
    boolean / 0-1 meaning the first label (true, 1) or the second (false, 0).

    >>> gold_label("Yes", ("yes", "no")), gold_label(0, ("yes", "no")), gold_label(True, ("A", "B"))
    ('yes', 'no', 'A')
    """
    by_name = {label.lower(): label for label in labels}
    text = str(value).strip().lower()
    if text in by_name:
        return by_name[text]
    if text in ("true", "1", "1.0"):
        return labels[0]
    if text in ("false", "0", "0.0"):
        return labels[1]
    raise ConfigError(f"label {value!r} is none of {', '.join(labels)} (or true/false, 1/0)")


def _same_hash(what: str, recorded: str | None, current: str) -> str:
    """``current``, refusing a config recorded for other content (the file changed since that run)."""
    if recorded is not None and recorded != current:
        raise ConfigError(
            f"the {what} has changed since this config was recorded (sha256 {recorded[:12]}..., now "
            f"{current[:12]}...); drop {what}_sha256 to use the current one"
        )
    return current


def _file_sha256(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as error:
        raise ConfigError(f"cannot read the in-context examples file {path}: {error}") from None
