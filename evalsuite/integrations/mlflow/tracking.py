"""A scored run logged as an MLflow run: :func:`log_to_mlflow` (see :mod:`evalsuite.integrations.mlflow`).

Example:
    >>> import evalsuite
    >>> evalsuite.log_to_mlflow("answers.scores.jsonl", experiment="nightly")  # doctest: +SKIP
    '3f0c9a...'
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.errors import ConfigError, EvalsuiteError, MissingDependencyError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric as MlflowMetric
    from mlflow.entities import Param, RunTag

    from evalsuite.results import LazyResults

__all__ = [
    "DEFAULT_EXPERIMENT",
    "MlflowLoggingError",
    "log_to_mlflow",
    "require_mlflow",
    "resolve_tracking_uri",
]

DEFAULT_EXPERIMENT = "evalsuite"
INSTALL_HINT = "pip install 'evalsuite[mlflow]'"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
# MLflow 3 refuses a ./mlruns file store unless this is set; that store is evalsuite's documented default.
ALLOW_FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"

# MLflow's limits (mlflow.utils.validation): key length, value lengths, entries per log_batch call.
_MAX_KEY_LENGTH = 250
_MAX_TAG_LENGTH = 8000
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_ENTRIES_PER_BATCH = 1000
# Metric, param and tag names MLflow accepts on every platform, without "/" (read as a path) or ":".
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_.\-]")


class MlflowLoggingError(EvalsuiteError, RuntimeError):
    """A run could not be logged to MLflow; the message names the tracking URI and the call that logs it again.

    ``rerun`` is that call as a shell command; the scored results themselves are untouched.
    """

    def __init__(self, message: str, *, tracking_uri: str, rerun: str) -> None:
        self.tracking_uri = tracking_uri
        self.rerun = rerun
        super().__init__(message)


# -- logging a run ---------------------------------------------------------------------------------


def log_to_mlflow(
    result: str | os.PathLike[str],
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    tracking_uri: str | None = None,
    report: str | os.PathLike[str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log a scored run to MLflow as one finished run; returns the MLflow run id.

    Logged: each score column's mean as the metric ``<column>`` with ``<column>.std``,
    ``<column>.ci_low`` and ``<column>.ci_high`` (where defined), ``records`` (rows in the result file),
    ``errors`` and ``duration_s``; each metric's config as params ``<metric>.<key>`` (JSON for lists and
    dicts, cut to MLflow's length limit: the manifest artifact holds them whole); tags
    ``evalsuite.version``, ``evalsuite.<metric>.config_hash`` / ``.state_hash``,
    ``evalsuite.model.<name>.sha256``, ``evalsuite.input.sha256`` / ``.path``, ``evalsuite.device`` /
    ``.dtype``, ``evalsuite.torch`` / ``.transformers`` and ``tags``; as artifacts the result file, its
    manifest, its errors file (when there is one) and ``report`` (an HTML or Markdown file). Names MLflow
    would refuse are written with ``_`` in place of the offending characters.

    The tracking URI is ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the file store ``./mlruns``
    (for which ``MLFLOW_ALLOW_FILE_STORE`` is set during the call, as MLflow 3 refuses it otherwise).
    ``experiment`` (default ``"evalsuite"``) is created when missing; ``run_name`` defaults to the
    result file's name without its suffix.

    Raises :class:`~evalsuite.errors.MissingDependencyError` without mlflow,
    :class:`~evalsuite.errors.ConfigError` for a missing result or report file, and
    :class:`MlflowLoggingError` when MLflow cannot be reached or refuses the run (a run created
    before the failure is marked FAILED).

    Example:
        >>> log_to_mlflow("answers.scores.jsonl", report="answers.scores.report.html")  # doctest: +SKIP
        '3f0c9a5d2b7e4c1f8a6d0e9b7c5a3f1d'
    """
    require_mlflow("log_to_mlflow")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from evalsuite.manifest import manifest_path, sibling_path
    from evalsuite.results import scan_results

    path = Path(result)
    run = scan_results(path)
    report_path = None if report is None else Path(report)
    if report_path is not None and not report_path.is_file():
        raise ConfigError(f"report {str(report_path)!r} does not exist")
    metrics, params, run_tags = _run_entries(run, tags or {})
    # The errors file is named as evalsuite.results.files.read_errors_file reads it.
    extra_files = (manifest_path(path), path.with_suffix(".errors.jsonl"), report_path)
    artifacts = [path, *(file for file in extra_files if file is not None and file.is_file())]

    uri, local_default = _resolve_tracking_uri(tracking_uri)
    rerun = _rerun_command(
        path, experiment=experiment, run_name=run_name, tracking_uri=tracking_uri, report=report, tags=tags
    )
    client: MlflowClient | None = None
    run_id: str | None = None
    with _environment(ALLOW_FILE_STORE_ENV, "true" if local_default else None):
        try:
            client = MlflowClient(tracking_uri=uri)
            experiment_id = _experiment_id(client, experiment or DEFAULT_EXPERIMENT)
            run_id = client.create_run(
                experiment_id, run_name=run_name or sibling_path(path, "").name
            ).info.run_id
            for batch_metrics, batch_params, batch_tags in _batches(metrics, params, run_tags):
                client.log_batch(run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)
            for artifact in artifacts:
                client.log_artifact(run_id, str(artifact))
            client.set_terminated(run_id)
            return run_id
        except (MlflowException, OSError, ImportError) as error:
            marked = _mark_failed(client, run_id)
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise MlflowLoggingError(
                f"could not log {path} to MLflow at {uri}: {type(error).__name__}: {_clipped(reason, 300)}"
                + (f" (MLflow run {run_id} was marked FAILED)" if marked else "")
                + f". The scored results are safe at {path}; to log them again, run: {rerun}",
                tracking_uri=uri,
                rerun=rerun,
            ) from error


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI :func:`log_to_mlflow` logs to: ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``,
    else the file store ``./mlruns`` as an absolute ``file:`` URI.

    Example:
        >>> resolve_tracking_uri("http://mlflow.internal:5000")
        'http://mlflow.internal:5000'
    """
    return _resolve_tracking_uri(tracking_uri)[0]


def _resolve_tracking_uri(tracking_uri: str | None) -> tuple[str, bool]:
    """The tracking URI, and whether it is the local default (``./mlruns``)."""
    chosen = tracking_uri or os.environ.get(TRACKING_URI_ENV)
    if chosen:
        return chosen, False
    return (Path.cwd() / "mlruns").resolve().as_uri(), True


def require_mlflow(feature: str = "MLflow tracking") -> None:
    """Raise :class:`~evalsuite.errors.MissingDependencyError` naming the extra when mlflow is not installed."""
    try:
        import mlflow  # noqa: F401 - only whether it imports
    except ImportError as error:
        raise MissingDependencyError(f"{feature} needs mlflow: {INSTALL_HINT}") from error


@contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """``name`` set to ``value`` inside the block (``None``: left alone), then restored."""
    if value is None:
        yield
        return
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _experiment_id(client: MlflowClient, name: str) -> str:
    from mlflow.exceptions import MlflowException

    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:
        existing = client.get_experiment_by_name(name)  # created meanwhile by another process
        if existing is None:
            raise
        return str(existing.experiment_id)


def _mark_failed(client: MlflowClient | None, run_id: str | None) -> bool:
    """Mark a run that was created before a failure FAILED, if MLflow can still be told; whether it was."""
    if client is None or run_id is None:
        return False
    from mlflow.exceptions import MlflowException

    try:
        client.set_terminated(run_id, status="FAILED")
    except (MlflowException, OSError):
        return False
    return True


def _run_entries(
    run: LazyResults, user_tags: Mapping[str, str]
) -> tuple[list[MlflowMetric], list[Param], list[RunTag]]:
    """The metrics, params and tags logged for ``run`` (see :func:`log_to_mlflow`)."""
    import polars as pl
    from mlflow.entities import Metric as MlflowMetric
    from mlflow.entities import Param, RunTag
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    manifest = run.run_manifest
    values: dict[str, float] = {}
    for row in run.summary().iter_rows(named=True):
        for key, suffix in (("mean", ""), ("std", ".std"), ("ci_low", ".ci_low"), ("ci_high", ".ci_high")):
            value = row[key]
            if value is not None and not math.isnan(value):
                values[_mlflow_name(row["score"] + suffix)] = float(value)
    values["records"] = float(run.table.select(pl.len()).collect().item())
    values["errors"] = float(run.error_count)
    if manifest.duration_s is not None:
        values["duration_s"] = float(manifest.duration_s)

    params = {
        _mlflow_name(f"{entry.name}.{key}"): _clipped(_param_text(value), MAX_PARAM_VAL_LENGTH)
        for entry in manifest.metrics
        for key, value in entry.config.items()
    }

    tags: dict[str, str | None] = {
        "evalsuite.version": manifest.evalsuite_version,
        "evalsuite.input.sha256": manifest.input.sha256,
        "evalsuite.input.path": manifest.input.path,
        "evalsuite.device": manifest.runtime.device,
        "evalsuite.dtype": manifest.runtime.dtype,
        "evalsuite.torch": manifest.torch,
        "evalsuite.transformers": manifest.transformers,
    }
    for entry in manifest.metrics:
        tags[f"evalsuite.{entry.name}.config_hash"] = entry.config_hash
        tags[f"evalsuite.{entry.name}.state_hash"] = entry.state_hash or None
    for name, model in manifest.models.items():
        tags[f"evalsuite.model.{name}.sha256"] = model.weights_sha256
    tags.update(user_tags)
    timestamp = int(time.time() * 1000)
    return (
        [MlflowMetric(name, value, timestamp, 0) for name, value in values.items()],
        [Param(name, value) for name, value in params.items()],
        [
            RunTag(_mlflow_name(name), _clipped(str(value), _MAX_TAG_LENGTH))
            for name, value in tags.items()
            if value is not None
        ],
    )


def _batches(
    metrics: list[MlflowMetric], params: list[Param], tags: list[RunTag]
) -> Iterator[tuple[list[MlflowMetric], list[Param], list[RunTag]]]:
    """Split the entries into ``log_batch`` calls within MLflow's limits (one call for a usual run)."""
    while metrics or params or tags:
        batch_params, params = params[:_MAX_PARAMS_TAGS_PER_BATCH], params[_MAX_PARAMS_TAGS_PER_BATCH:]
        batch_tags, tags = tags[:_MAX_PARAMS_TAGS_PER_BATCH], tags[_MAX_PARAMS_TAGS_PER_BATCH:]
        room = _MAX_ENTRIES_PER_BATCH - len(batch_params) - len(batch_tags)
        batch_metrics, metrics = metrics[:room], metrics[room:]
        yield batch_metrics, batch_params, batch_tags


def _mlflow_name(name: str) -> str:
    """``name`` as a metric, param or tag key MLflow accepts: other characters become ``_``, no leading dot."""
    return (_UNSAFE_NAME_CHARACTERS.sub("_", name).lstrip(".") or "_")[:_MAX_KEY_LENGTH]


def _param_text(value: Any) -> str:
    """A config value as a param: scalars as ``str()`` gives them (as ``mlflow.log_params`` does), others as JSON."""
    if value is None or isinstance(value, str | bool | int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _rerun_command(
    result: Path,
    *,
    experiment: str | None,
    run_name: str | None,
    tracking_uri: str | None,
    report: str | os.PathLike[str] | None,
    tags: Mapping[str, str] | None,
) -> str:
    """The shell command that logs ``result`` again with the same arguments."""
    # JSON strings and objects of strings are Python literals too, and hold no single quote to escape.
    options = {
        "experiment": experiment if experiment != DEFAULT_EXPERIMENT else None,
        "run_name": run_name,
        "tracking_uri": tracking_uri,
        "report": None if report is None else os.fspath(report),
        "tags": dict(tags) if tags else None,
    }
    arguments = [json.dumps(str(result), ensure_ascii=False)] + [
        f"{name}={json.dumps(value, ensure_ascii=False)}"
        for name, value in options.items()
        if value is not None
    ]
    code = f"import evalsuite; evalsuite.log_to_mlflow({', '.join(arguments)})"
    return f"python -c {shlex.quote(code)}"
