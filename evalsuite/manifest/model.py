"""The manifest's typed model and its file: build, validate, read and write (see :mod:`evalsuite.manifest`)."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from evalsuite.errors import ConfigError

if TYPE_CHECKING:
    pass


MANIFEST_SUFFIX = ".manifest.json"


# Result file suffixes stripped to name the manifest (``run.jsonl.gz`` → ``run.manifest.json``).
_RESULT_SUFFIXES = (".jsonl.gz", ".parquet", ".jsonl", ".csv")


class _Section(BaseModel):
    """A part of the manifest: unknown keys kept, assignments validated."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object written for this part (see the module docstring for which keys are written)."""
        plain: dict[str, Any] = json.loads(json.dumps(_written(self), default=str, ensure_ascii=False))
        return plain


class RuntimeInfo(_Section):
    """Where the scores were computed (``Runtime.describe()``)."""

    device: str | None = None
    dtype: str | None = None
    batch_size: int | None = None
    token_budget: int | None = None
    resolved: bool | None = None  # False: no model ran, so device and dtype are as requested ("auto")


class ModelInfo(_Section):
    """One model's source and weights (``Runtime.describe_model()``)."""

    name: str | None = None
    source: str | None = None
    location: str | None = None
    path: str | None = None
    weights_sha256: str | None = None


class MetricEntry(_Section):
    """One metric of a run: its class (JSON key ``"class"``), full config, hashes and the columns it wrote.

    ``higher_is_better`` ``None`` means the manifest does not say; ``detail_columns`` ``None`` means
    not recorded (an older manifest), unlike ``[]`` (no evidence columns).
    """

    name: str
    metric_class: str | None = Field(
        default=None, validation_alias=AliasChoices("class", "metric_class"), serialization_alias="class"
    )
    config: dict[str, Any] = Field(default_factory=dict)
    config_hash: str | None = None
    state_hash: str | None = None
    columns: list[str] | None = None
    detail_columns: list[str] | None = None
    higher_is_better: bool | None = None
    models: list[str] | None = None


class InputInfo(_Section):
    """The input file and how many of its records were read and failed."""

    path: str | None = None
    sha256: str | None = None
    records: int | None = None
    errors: int | None = None


class CacheInfo(_Section):
    """The score cache a run used."""

    path: str | None = None
    hits: int | None = None
    misses: int | None = None


class EngineInfo(_Section):
    """Where the chunks were scored: ``{"name": "local"}``, or a Ray cluster's facts."""

    name: str | None = None
    workers: int | None = None
    gpus_per_worker: int | float | None = None
    actors_used: int | None = None
    nodes_used: int | None = None
    started_local_cluster: bool | None = None
    cluster_resources: dict[str, int | float] | None = None
    worker_runtimes: list[RuntimeInfo] | None = None


class GeneratorInfo(_Section):
    """A generation run's models, drafter and device (``TextGenerator.describe()``)."""

    models: dict[str, ModelInfo] = Field(default_factory=dict)
    drafter: str | None = None
    device: str | None = None
    dtype: str | None = None
    chat_template: bool | None = None


class SummaryRow(_Section):
    """One score column's summary (a row of :func:`evalsuite.results.summarize`)."""

    score: str
    mean: float | None = None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    errors: int | None = None


class RunManifest(_Section):
    """The provenance of one result file; see the module docstring for building and writing one.

    ``score_columns`` ``None`` means not recorded (readers then infer them from the metrics);
    ``errors`` ``None`` means not recorded (readers then look for ``<name>.errors.jsonl``).
    """

    # versions
    evalsuite_version: str | None = None
    python: str | None = None
    torch: str | None = None
    transformers: str | None = None
    command: str | None = None  # "generate" for a generation run
    # what ran, where
    runtime: RuntimeInfo = Field(default_factory=RuntimeInfo)
    engine: EngineInfo = Field(default_factory=EngineInfo)
    metrics: list[MetricEntry] = Field(default_factory=list)
    models: dict[str, ModelInfo] = Field(default_factory=dict)
    generator: GeneratorInfo = Field(default_factory=GeneratorInfo)
    options: dict[str, Any] = Field(default_factory=dict)  # a generation run's GenerationOptions
    # on what
    input: InputInfo = Field(default_factory=InputInfo)
    fields: dict[str, str] = Field(default_factory=dict)
    # what came out
    output: str | None = None
    errors_file: str | None = None
    json_text_columns: list[str] | None = None
    csv_json_columns: list[str] | None = None
    score_columns: list[str] | None = None
    higher_is_better: dict[str, bool] = Field(default_factory=dict)
    summary: list[SummaryRow] = Field(default_factory=list)
    errors: list[dict[str, Any]] | None = None
    truncated_texts: dict[str, int] = Field(default_factory=dict)
    cache: CacheInfo = Field(default_factory=CacheInfo)
    stats: dict[str, Any] = Field(default_factory=dict)  # a generation run's GenerationStats
    empty_samples: int | None = None
    # when
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics_in_any_written_form(cls, value: Any) -> Any:
        # Older manifests list metrics as {name: config} or [name, ...]; evalsuite writes [{"name": ...}].
        if value is None:
            return []
        if isinstance(value, Mapping):
            return [
                {"name": str(name), "config": dict(config) if isinstance(config, Mapping) else {}}
                for name, config in value.items()
            ]
        if isinstance(value, list | tuple):
            return [{"name": item, "config": {}} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("started_at", "finished_at", mode="before")
    @classmethod
    def _datetime_as_text(cls, value: Any) -> Any:
        return value.isoformat(timespec="seconds") if isinstance(value, datetime) else value

    # -- construction, files ------------------------------------------------------------------------

    @classmethod
    def coerce(cls, manifest: ManifestLike | None, *, where: str = "manifest") -> RunManifest:
        """``manifest`` itself, or a mapping (a manifest's JSON) validated; ``None`` gives an empty one.

        Raises :class:`ConfigError` naming ``where`` and each invalid field.
        """
        if isinstance(manifest, RunManifest):
            return manifest
        if manifest is None:
            return cls()
        if not isinstance(manifest, Mapping):
            raise ConfigError(f"{where} must be a mapping or a RunManifest, got {type(manifest).__name__}")
        try:
            return cls.model_validate(dict(manifest))
        except ValidationError as exc:
            raise ConfigError(f"{where} is invalid: {_describe(exc)}") from exc

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RunManifest:
        """Read and validate a manifest; ``path`` is the manifest file or the result file it belongs to.

        Raises :class:`ConfigError` for a file that is not JSON, not an object, or not a valid manifest.
        """
        target = manifest_path(path)
        try:
            raw = json.loads(target.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"manifest {str(target)!r} is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"manifest {str(target)!r} must hold a JSON object, got {type(raw).__name__}")
        return cls.coerce(raw, where=f"manifest {str(target)!r}")

    def write(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Write as JSON (indent 2, sorted keys) atomically; ``path`` as for :meth:`read`. Returns the file."""
        target = manifest_path(path)
        text = json.dumps(_written(self), indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
        from evalsuite.records.writers import atomic_target

        with atomic_target(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return target

    # -- meaning --------------------------------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        """Whether nothing is recorded (as for a result file without a manifest)."""
        return next(_written_items(self), None) is None

    @property
    def metric_names(self) -> list[str]:
        return [entry.name for entry in self.metrics]

    def metric(self, name: str) -> MetricEntry | None:
        """The entry of the metric called ``name``, if the run had it."""
        return next((entry for entry in self.metrics if entry.name == name), None)

    def metric_of_column(self, column: str) -> MetricEntry | None:
        """The entry of the metric that wrote ``column`` (see :func:`metric_of_column`)."""
        owner = metric_of_column(column, self.metric_names)
        return None if owner is None else self.metric(owner)

    @property
    def detail_columns(self) -> list[str]:
        """Evidence columns the metrics list (in metric order)."""
        return [column for entry in self.metrics for column in entry.detail_columns or []]

    @property
    def error_count(self) -> int | None:
        """Records that failed, as the ``errors`` list or else the input counts them (``None``: not recorded)."""
        if self.errors is not None:
            return len(self.errors)
        return self.input.errors


ManifestLike = RunManifest | Mapping[str, Any]


def manifest_path(path: str | os.PathLike[str]) -> pathlib.Path:
    """The manifest file that belongs to a result file.

    Example:
        >>> manifest_path("out/run.parquet").as_posix()
        'out/run.manifest.json'
    """
    result = pathlib.Path(path)
    if result.name.endswith(MANIFEST_SUFFIX):
        return result
    return sibling_path(result, MANIFEST_SUFFIX)


def sibling_path(path: str | os.PathLike[str], suffix: str) -> pathlib.Path:
    """A file beside a result file, named by its stem and ``suffix`` (the result suffix is replaced).

    The rule :func:`manifest_path` names the manifest by; ``.jsonl.gz`` counts as one suffix.

    Example:
        >>> sibling_path("out/answers.scores.jsonl", ".report.html").as_posix()
        'out/answers.scores.report.html'
    """
    result = pathlib.Path(path)
    stem = result.name
    for result_suffix in _RESULT_SUFFIXES:
        if stem.lower().endswith(result_suffix):
            stem = stem[: -len(result_suffix)]
            break
    else:
        stem = result.stem
    return result.with_name(stem + suffix)


def write_manifest(path: str | os.PathLike[str], manifest: ManifestLike) -> pathlib.Path:
    """Write a manifest (a :class:`RunManifest` or a mapping, validated) as JSON; returns the file written.

    ``path`` is the manifest file, or the result file it belongs to (mapped by :func:`manifest_path`).
    JSON, indent 2, sorted keys, written atomically; values JSON cannot hold (paths, datetimes) as text.

    Example:
        >>> write_manifest("run.parquet", {"evalsuite_version": "0.1.0"})  # doctest: +SKIP
        PosixPath('run.manifest.json')
    """
    return RunManifest.coerce(manifest).write(path)


def metric_of_column(column: str, metric_names: Sequence[str]) -> str | None:
    """The metric that wrote a score column: the longest name that prefixes it (``bartscore`` vs
    ``bartscore_faithfulness``).

    Example:
        >>> metric_of_column("bartscore_faithfulness_score", ["bartscore", "bartscore_faithfulness"])
        'bartscore_faithfulness'
    """
    matches = [name for name in metric_names if column.startswith(f"{name}_")]
    return max(matches, key=len) if matches else None


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a manifest, as its JSON dict (:meth:`RunManifest.read` gives the typed one).

    Example:
        >>> read_manifest("run.parquet")["score_columns"]  # doctest: +SKIP
        ['bertscore_f1']
    """
    return RunManifest.read(path).to_json_dict()


def timestamp(seconds: float) -> str:
    """A manifest timestamp: UTC ISO 8601 to the second.

    Example:
        >>> timestamp(0)
        '1970-01-01T00:00:00+00:00'
    """
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")


def _written_items(model: BaseModel) -> Iterator[tuple[str, Any]]:
    """The (JSON key, value) pairs written for ``model``: fields set or changed from their default, extras."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if name in model.model_fields_set or value != info.get_default(call_default_factory=True):
            yield info.serialization_alias or info.alias or name, value
    yield from (model.model_extra or {}).items()


def _written(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {key: _written(item) for key, item in _written_items(value)}
    if isinstance(value, Mapping):
        return {key: _written(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_written(item) for item in value]
    return value


def _describe(error: ValidationError, limit: int = 3) -> str:
    problems = [
        f"{'.'.join(map(str, item['loc'])) or '(top level)'}: {item['msg']} (got {item['input']!r:.60})"
        for item in error.errors(include_url=False)
    ]
    more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more
