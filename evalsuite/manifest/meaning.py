"""What a manifest says about its results: metrics, score columns, directions, and the diff of two."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from evalsuite.manifest.model import ManifestLike, RunManifest, metric_of_column

if TYPE_CHECKING:
    import polars as pl


def metric_entries(manifest: ManifestLike) -> list[dict[str, Any]]:
    """The manifest's metrics as ``{"name", "config", ...}`` dicts, whatever form they were written in.

    Example:
        >>> metric_entries({"metrics": {"bertscore": {"idf": True}}})
        [{'name': 'bertscore', 'config': {'idf': True}}]
    """
    return [entry.to_json_dict() for entry in RunManifest.coerce(manifest).metrics]


def metric_names(manifest: ManifestLike) -> list[str]:
    """The names of the manifest's metrics, in order."""
    return RunManifest.coerce(manifest).metric_names


def score_columns_of(schema: Mapping[str, pl.DataType], manifest: ManifestLike | None) -> list[str]:
    """The score columns of a result table with this schema.

    As the manifest lists them (``score_columns``); failing that, every Float (or all-null) column named
    after one of its metrics; with no manifest at all, every Float column.

    Example:
        >>> import polars as pl
        >>> score_columns_of({"id": pl.String(), "m_s": pl.Float64()}, {"metrics": [{"name": "m"}]})
        ['m_s']
    """
    import polars as pl

    run = RunManifest.coerce(manifest)
    if run.score_columns is not None:
        return list(run.score_columns)
    # A column that is null in every row is read back from JSONL/CSV as Null or String, not Float.
    floats = [name for name, dtype in schema.items() if dtype.is_float()]
    if run.is_empty:
        return floats
    prefixes = tuple(f"{name}_" for name in run.metric_names)
    candidates = [name for name, dtype in schema.items() if dtype.is_float() or dtype == pl.Null()]
    return [name for name in candidates if prefixes and name.startswith(prefixes)]


def higher_is_better_of(manifest: ManifestLike, score_columns: Sequence[str] = ()) -> dict[str, bool]:
    """Each score column's direction, from the manifest's metrics (and its ``higher_is_better`` map).

    Columns the manifest says nothing about are left out (callers treat them as higher-is-better).

    Example:
        >>> manifest = {"metrics": [{"name": "pii", "columns": ["pii_total"], "higher_is_better": False}]}
        >>> higher_is_better_of(manifest)
        {'pii_total': False}
    """
    run = RunManifest.coerce(manifest)
    flagged = {
        entry.name: entry.higher_is_better for entry in run.metrics if entry.higher_is_better is not None
    }
    directions: dict[str, bool] = {}
    for entry in run.metrics:
        if entry.higher_is_better is not None:
            directions.update(dict.fromkeys(entry.columns or [], entry.higher_is_better))
    for column in score_columns:
        if column not in directions:
            owner = metric_of_column(column, list(flagged))
            if owner is not None:
                directions[column] = flagged[owner]
    directions.update(run.higher_is_better)
    return directions


def config_differences(manifest_a: ManifestLike, manifest_b: ManifestLike) -> list[str]:
    """Why two runs' scores may not be comparable: metric configs, fitted state or model weights that differ.

    One line per difference; an empty list means equal config hashes (and weights) for every shared metric.

    Example:
        >>> a = {"metrics": [{"name": "bertscore", "config": {"idf": False}, "config_hash": "aa"}]}
        >>> b = {"metrics": [{"name": "bertscore", "config": {"idf": True}, "config_hash": "bb"}]}
        >>> config_differences(a, b)
        ['bertscore: config hash differs (A aa, B bb): idf False → True']
    """
    run_a, run_b = (
        RunManifest.coerce(manifest_a, where="manifest A"),
        RunManifest.coerce(manifest_b, where="manifest B"),
    )
    entries_a = {entry.name: entry for entry in run_a.metrics}
    entries_b = {entry.name: entry for entry in run_b.metrics}
    lines: list[str] = []
    for name in [*entries_a, *(name for name in entries_b if name not in entries_a)]:
        if name not in entries_b:
            lines.append(f"{name}: only run A has this metric")
            continue
        if name not in entries_a:
            lines.append(f"{name}: only run B has this metric")
            continue
        entry_a, entry_b = entries_a[name], entries_b[name]
        config_a, config_b = entry_a.config, entry_b.config
        changed = [
            f"{key} {config_a.get(key, '(unset)')} → {config_b.get(key, '(unset)')}"
            for key in sorted(set(config_a) | set(config_b), key=str)
            if config_a.get(key) != config_b.get(key)
        ]
        hash_a, hash_b = entry_a.config_hash, entry_b.config_hash
        if hash_a and hash_b and hash_a != hash_b:
            detail = f": {', '.join(changed)}" if changed else " (a metric version change)"
            lines.append(f"{name}: config hash differs (A {hash_a}, B {hash_b}){detail}")
        elif changed:
            lines.append(f"{name}: config differs: {', '.join(changed)}")
        if (entry_a.state_hash or "") != (entry_b.state_hash or ""):
            lines.append(f"{name}: fitted corpus statistics (e.g. idf weights) differ")
    for model in sorted(set(run_a.models) & set(run_b.models)):
        weights_a, weights_b = run_a.models[model].weights_sha256, run_b.models[model].weights_sha256
        if weights_a and weights_b and weights_a != weights_b:
            lines.append(f"model {model}: weights differ (A {weights_a[:12]}, B {weights_b[:12]})")
    return lines
