"""The provenance a run records in its manifest: versions, runtime, metrics, models, input, times."""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

from evalsuite.manifest import (
    CacheInfo,
    InputInfo,
    MetricEntry,
    ModelInfo,
    RunManifest,
    RuntimeInfo,
    timestamp,
)
from evalsuite.run.work import RunStats, Work


def package_version(name: str) -> str | None:
    """The installed version of a distribution, read without importing it (torch takes seconds)."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def run_manifest(
    work: Work,
    input_info: InputInfo,
    *,
    fields: Mapping[str, str] | None,
    stats: RunStats,
    started: float,
) -> RunManifest:
    """The manifest entries every run shares (a file run adds its output, summary and engine)."""
    import evalsuite

    finished = time.time()
    models = sorted({model for metric in work.metrics for model in metric.models()})
    return RunManifest(
        evalsuite_version=evalsuite.__version__,
        python=platform.python_version(),
        torch=package_version("torch"),
        transformers=package_version("transformers"),
        runtime=RuntimeInfo.model_validate(work.runtime.describe()),
        metrics=[
            MetricEntry(
                name=metric.name,
                metric_class=f"{type(metric).__module__}:{type(metric).__qualname__}",
                config=metric.config,
                config_hash=metric.config_hash(),
                state_hash=metric.state_hash(),
                columns=metric.columns,
                detail_columns=metric.detail_columns,
                higher_is_better=metric.higher_is_better,
                models=metric.models(),
            )
            for metric in work.metrics
        ],
        models={model: ModelInfo.model_validate(work.model_info(model)) for model in models},
        input=input_info,
        fields=dict(fields or {}),
        truncated_texts=dict(stats.truncated_texts),
        cache=CacheInfo(
            path=str(work.cache.path) if work.cache is not None else None,
            hits=stats.cache_hits,
            misses=stats.cache_misses,
        ),
        started_at=timestamp(started),
        finished_at=timestamp(finished),
        duration_s=round(finished - started, 3),
    )
