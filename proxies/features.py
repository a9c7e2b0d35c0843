"""Features for judge proxies: metric columns, text statistics and (optionally) sentence embeddings.

A :class:`FeatureTable` is a plain matrix with named columns and record ids. Names say where a feature
comes from, and the predictor relies on them:

- ``bertscore_f1``: a metric score column of the results (metric config hashes are kept beside);
- ``prediction:log_chars``: a text statistic of a field (:data:`TEXT_STATISTICS`);
- ``emb:prediction:17``: dimension 17 of the field's sentence embedding (reduced by PCA in the model);
- ``cos:prompt:prediction``: cosine between two embedded fields.

Pairwise tables (A against B, :func:`pairwise_table`) prefix the per-output features with ``a:``,
``b:`` and ``diff:`` (B − A); context fields such as the prompt are shared and kept once.

Example:
    >>> import polars as pl
    >>> table = pl.DataFrame({"id": ["x", "y"], "prediction": ["Yes.", "- one\\n- two"], "m_s": [0.5, 0.9]})
    >>> features = table_features(table, FeatureConfig(metric_columns=("m_s",)))
    >>> features.names[:3]
    ('m_s', 'prediction:log_chars', 'prediction:log_words')
    >>> features.column("prediction:list_items").tolist()
    [0.0, 2.0]
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import polars as pl

from evalsuite.errors import ConfigError, InputError
from evalsuite.manifest import metric_of_column
from evalsuite.results import Results

__all__ = [
    "TEXT_STATISTICS",
    "EmbeddingRuntime",
    "FeatureConfig",
    "FeatureTable",
    "embedding_blocks",
    "load_results",
    "metric_config_hashes",
    "pairwise_table",
    "results_features",
    "table_features",
    "text_statistics",
]

# Text statistics per field, in this order. Lengths are log-scaled: judges care about ratios of length.
TEXT_STATISTICS = (
    "log_chars",
    "log_words",
    "lines",
    "paragraphs",
    "list_items",
    "code_blocks",
    "headings",
    "sentences",
    "unique_word_share",
    "digit_share",
    "ends_cleanly",
)
_LIST_ITEM = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+\S", re.MULTILINE)
_HEADING = re.compile(r"^\s*(?:#{1,6}\s+\S|[A-Z][^\n.!?]{0,60}:\s*$)", re.MULTILINE)
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_WORD = re.compile(r"\w+")
_CLEAN_ENDINGS = (".", "!", "?", "`", ")", '"', "'", "]", "*")


class EmbeddingRuntime(Protocol):
    """What the features need from :class:`evalsuite.runtime.Runtime` (a fake one in tests)."""

    def sentence_embeddings(self, model: str, texts: Sequence[str]) -> Any: ...


@dataclass(frozen=True)
class FeatureConfig:
    """Which features to compute from results.

    - ``metric_columns``: score columns to use; ``None`` means every score column of the results
      (resolved to an explicit list at fit time, so predicting needs the same columns);
    - ``text_fields``: fields of each judged output whose text statistics are features;
    - ``context_fields``: fields shared by both outputs of a pair (the prompt), counted once;
    - ``embedding_fields``: fields embedded with ``embedding_model`` (empty: no embeddings, no model call).

    Example:
        >>> FeatureConfig(context_fields=("prompt",), embedding_fields=("prompt", "prediction")).embeddings
        True
    """

    metric_columns: tuple[str, ...] | None = None
    text_fields: tuple[str, ...] = ("prediction",)
    context_fields: tuple[str, ...] = ()
    embedding_fields: tuple[str, ...] = ()
    embedding_model: str = "minilm"

    def __post_init__(self) -> None:
        for name in ("metric_columns", "text_fields", "context_fields", "embedding_fields"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ConfigError(f"{name} must be a sequence of names, got the string {value!r}")
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        overlap = set(self.text_fields) & set(self.context_fields)
        if overlap:
            raise ConfigError(
                f"a field is either a text field or a context field, not both: {sorted(overlap)}"
            )
        unknown = set(self.embedding_fields) - set(self.text_fields) - set(self.context_fields)
        if unknown:
            raise ConfigError(
                f"embedding_fields must be text or context fields; {sorted(unknown)} is neither "
                f"(text_fields={list(self.text_fields)}, context_fields={list(self.context_fields)})"
            )

    @property
    def embeddings(self) -> bool:
        return bool(self.embedding_fields)

    def to_dict(self) -> dict[str, Any]:
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureConfig:
        known = {"metric_columns", "text_fields", "context_fields", "embedding_fields", "embedding_model"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"unknown feature config keys {sorted(unknown)}; expected some of {sorted(known)}"
            )
        values: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value for key, value in data.items()
        }
        return cls(**values)


@dataclass(frozen=True)
class FeatureTable:
    """Feature matrix ``values`` [records, features] with record ``ids`` and feature ``names``.

    ``metric_hashes`` maps each metric whose columns are used to its config hash in the results'
    manifest (``None`` when the results carry none); ``pairwise`` says whether rows compare A with B.
    """

    ids: tuple[str, ...]
    names: tuple[str, ...]
    values: np.ndarray
    metric_hashes: Mapping[str, str | None] = field(default_factory=dict)
    pairwise: bool = False

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 2 or values.shape != (len(self.ids), len(self.names)):
            raise ConfigError(
                f"feature values must have shape ({len(self.ids)}, {len(self.names)}) for "
                f"{len(self.ids)} ids and {len(self.names)} names, got {values.shape}"
            )
        duplicated = sorted({name for name in self.names if self.names.count(name) > 1})
        if duplicated:
            raise ConfigError(f"feature names must be unique, got duplicates {duplicated}")
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return len(self.ids)

    def column(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise ConfigError(f"unknown feature {name!r}; available: {', '.join(self.names)}")
        return self.values[:, self.names.index(name)]

    def subset(self, rows: np.ndarray) -> FeatureTable:
        """The rows at integer positions (or a boolean mask) ``rows``."""
        index = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, dtype=np.int64)
        return FeatureTable(
            tuple(self.ids[i] for i in index),
            self.names,
            self.values[index],
            dict(self.metric_hashes),
            self.pairwise,
        )


def text_statistics(text: str) -> list[float]:
    """The :data:`TEXT_STATISTICS` of one text, in that order (an empty text gives zeros).

    Example:
        >>> stats = dict(zip(TEXT_STATISTICS, text_statistics("Steps:\\n1. Mix.\\n2. Bake.\\n```\\nx\\n```")))
        >>> stats["list_items"], stats["code_blocks"], stats["headings"]
        (2.0, 1.0, 1.0)
    """
    words = _WORD.findall(text)
    stripped = text.strip()
    return [
        math.log1p(len(text)),
        math.log1p(len(words)),
        float(stripped.count("\n") + 1 if stripped else 0),
        float(len([block for block in re.split(r"\n\s*\n", stripped) if block.strip()])),
        float(len(_LIST_ITEM.findall(text))),
        float(text.count("```") // 2),
        float(len(_HEADING.findall(text))),
        float(len(_SENTENCE_END.findall(text))),
        len({word.lower() for word in words}) / len(words) if words else 0.0,
        sum(char.isdigit() for char in text) / len(text) if text else 0.0,
        float(stripped.endswith(_CLEAN_ENDINGS)),
    ]


def metric_config_hashes(results: Results, columns: Sequence[str]) -> dict[str, str | None]:
    """Config hash of the metric behind each column, from the results' manifest (``None``: not recorded).

    Example:
        >>> manifest = {"metrics": [{"name": "bertscore", "config_hash": "ab12"}]}
        >>> res = Results(pl.DataFrame({"bertscore_f1": [0.9]}), score_columns=["bertscore_f1"], manifest=manifest)
        >>> metric_config_hashes(res, ["bertscore_f1"])
        {'bertscore': 'ab12'}
    """
    manifest = results.run_manifest
    hashes: dict[str, str | None] = {}
    for column in columns:
        metric = metric_of_column(column, manifest.metric_names) or column
        entry = manifest.metric(metric)
        hashes[metric] = entry.config_hash if entry is not None and entry.config_hash else None
    return hashes


def load_results(source: Results | str | os.PathLike[str]) -> Results:
    """``source`` itself, or the result file it names read with :meth:`Results.read`."""
    return source if isinstance(source, Results) else Results.read(source)


def results_features(
    results: Results | str | os.PathLike[str],
    config: FeatureConfig,
    *,
    runtime: EmbeddingRuntime | None = None,
    id_column: str = "id",
) -> FeatureTable:
    """Features of each record of ``results`` (a :class:`Results` or a result file).

    ``metric_columns=None`` takes every score column of the results. Embeddings need ``runtime``
    (an :class:`evalsuite.runtime.Runtime`; one on the best device is made when none is given).
    """
    res = load_results(results)
    columns = list(res.score_columns) if config.metric_columns is None else list(config.metric_columns)
    missing = [column for column in columns if column not in res.score_columns]
    if missing:
        raise ConfigError(
            f"the results lack the score column(s) {missing} the features use; "
            f"they have {res.score_columns or 'no score columns'}"
        )
    resolved = FeatureConfig(
        metric_columns=tuple(columns),
        text_fields=config.text_fields,
        context_fields=config.context_fields,
        embedding_fields=config.embedding_fields,
        embedding_model=config.embedding_model,
    )
    features = table_features(res.table, resolved, runtime=runtime, id_column=id_column)
    return FeatureTable(
        features.ids, features.names, features.values, metric_config_hashes(res, columns), features.pairwise
    )


def table_features(
    table: pl.DataFrame,
    config: FeatureConfig,
    *,
    runtime: EmbeddingRuntime | None = None,
    id_column: str = "id",
) -> FeatureTable:
    """Features of each row of a polars table (``metric_columns=None`` means none here).

    Null texts count as empty; null or NaN metric values stay NaN (the model imputes them).
    """
    ids = _ids(table, id_column)
    names: list[str] = []
    blocks: list[np.ndarray] = []
    for column in config.metric_columns or ():
        if column not in table.columns:
            raise ConfigError(f"the table has no column {column!r}; columns: {', '.join(table.columns)}")
        try:
            values = table[column].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        except pl.exceptions.PolarsError as error:
            raise ConfigError(
                f"metric column {column!r} must be numeric, got {table[column].dtype}"
            ) from error
        names.append(column)
        blocks.append(values[:, None])
    texts = {name: _texts(table, name) for name in (*config.context_fields, *config.text_fields)}
    for name in (*config.context_fields, *config.text_fields):
        names.extend(f"{name}:{stat}" for stat in TEXT_STATISTICS)
        blocks.append(
            np.array([text_statistics(text) for text in texts[name]], dtype=np.float64).reshape(
                -1, len(TEXT_STATISTICS)
            )
        )
    if config.embeddings:
        embedded = _embed(texts, config, runtime)
        for name in config.embedding_fields:
            names.extend(f"emb:{name}:{i}" for i in range(embedded[name].shape[1]))
            blocks.append(embedded[name])
        for first, second in _cosine_pairs(config):
            names.append(f"cos:{first}:{second}")
            blocks.append(_cosine(embedded[first], embedded[second])[:, None])
    values = np.hstack(blocks) if blocks else np.empty((len(ids), 0))
    return FeatureTable(ids, tuple(names), values)


def pairwise_table(a: FeatureTable, b: FeatureTable, config: FeatureConfig) -> FeatureTable:
    """Features of pairs (A, B) joined on id: ``a:``/``b:``/``diff:`` (B − A) per output, context once.

    Records of A and B must carry the same ids; a mismatch raises :class:`InputError` with counts and
    examples. Rows follow A's order. When both outputs are embedded, ``cos:a.F:b.F`` compares them.

    Example:
        >>> config = FeatureConfig(metric_columns=("m_s",), text_fields=())
        >>> a = FeatureTable(("x", "y"), ("m_s",), np.array([[0.2], [0.5]]))
        >>> b = FeatureTable(("y", "x"), ("m_s",), np.array([[0.9], [0.1]]))
        >>> pairwise_table(a, b, config).values.tolist()
        [[0.2, 0.1, -0.1], [0.5, 0.9, 0.4]]
    """
    if a.pairwise or b.pairwise:
        raise ConfigError("pairwise_table takes the single-output features of A and of B")
    if a.names != b.names:
        raise ConfigError(
            f"A and B have different features: only in A {sorted(set(a.names) - set(b.names))}, "
            f"only in B {sorted(set(b.names) - set(a.names))}"
        )
    _check_same_ids(a.ids, b.ids)
    for metric in sorted(set(a.metric_hashes) | set(b.metric_hashes)):
        hash_a, hash_b = a.metric_hashes.get(metric), b.metric_hashes.get(metric)
        if hash_a != hash_b:
            raise ConfigError(
                f"metric {metric!r} was computed with different configs in A ({hash_a}) and B ({hash_b}); "
                "score both outputs with the same metric config"
            )
    position = {record_id: i for i, record_id in enumerate(b.ids)}
    b_values = b.values[[position[record_id] for record_id in a.ids]]
    context_prefixes = tuple(f"{name}:" for name in config.context_fields) + tuple(
        f"emb:{name}:" for name in config.context_fields
    )
    shared = [
        i
        for i, name in enumerate(a.names)
        if name.startswith(context_prefixes) or _is_context_cosine(name, config)
    ]
    own = [i for i in range(len(a.names)) if i not in set(shared)]
    names = [a.names[i] for i in shared]
    blocks = [a.values[:, shared]]
    for prefix, values in (
        ("a", a.values[:, own]),
        ("b", b_values[:, own]),
        ("diff", b_values[:, own] - a.values[:, own]),
    ):
        names.extend(f"{prefix}:{a.names[i]}" for i in own)
        blocks.append(values)
    for name in config.embedding_fields:
        if name in config.text_fields:
            dims = [i for i, feature in enumerate(a.names) if feature.startswith(f"emb:{name}:")]
            names.append(f"cos:a.{name}:b.{name}")
            blocks.append(_cosine(a.values[:, dims], b_values[:, dims])[:, None])
    metric_hashes = {**b.metric_hashes, **a.metric_hashes}
    return FeatureTable(a.ids, tuple(names), np.hstack(blocks), metric_hashes, pairwise=True)


def embedding_blocks(names: Sequence[str]) -> dict[str, list[int]]:
    """Column positions of each embedding block (``emb:F``, ``a:emb:F``, ``diff:emb:F``...), by block.

    Example:
        >>> embedding_blocks(["m_s", "emb:prompt:0", "emb:prompt:1", "a:emb:prediction:0"])
        {'emb:prompt': [1, 2], 'a:emb:prediction': [3]}
    """
    blocks: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        head, _, tail = name.rpartition(":")
        if tail.isdigit() and (head.startswith("emb:") or ":emb:" in head):
            blocks.setdefault(head, []).append(i)
    return blocks


def _ids(table: pl.DataFrame, id_column: str) -> tuple[str, ...]:
    if id_column in table.columns:
        ids = tuple("" if value is None else str(value) for value in table[id_column].to_list())
    else:
        ids = tuple(
            str(i) for i in range(table.height)
        )  # as evalsuite does: records without an id get their position
    duplicated = sorted(record_id for record_id, count in Counter(ids).items() if count > 1)
    if duplicated:
        shown = ", ".join(map(repr, duplicated[:5]))
        raise InputError(
            f"{len(duplicated)} duplicated {id_column} value(s) ({shown}); records need unique ids",
            field=id_column,
        )
    return ids


def _texts(table: pl.DataFrame, name: str) -> list[str]:
    if name not in table.columns:
        raise ConfigError(
            f"the results have no {name!r} field to compute text features from; columns: {', '.join(table.columns)}"
        )
    values = table[name].to_list()
    texts: list[str] = []
    for i, value in enumerate(values):
        if value is None:
            texts.append("")
        elif isinstance(value, str):
            texts.append(value)
        else:
            raise InputError(
                f"field {name!r} must hold text, got {type(value).__name__}",
                location=f"record {i}",
                field=name,
            )
    return texts


def _embed(
    texts: Mapping[str, list[str]], config: FeatureConfig, runtime: EmbeddingRuntime | None
) -> dict[str, np.ndarray]:
    if runtime is None:
        from evalsuite.runtime import Runtime

        runtime = Runtime()
    embedded: dict[str, np.ndarray] = {}
    for name in config.embedding_fields:
        values = np.asarray(
            runtime.sentence_embeddings(config.embedding_model, texts[name]), dtype=np.float64
        )
        if values.ndim != 2 or values.shape[0] != len(texts[name]):
            raise ConfigError(f"embeddings of {name!r} must be [records, dim], got shape {values.shape}")
        embedded[name] = values
    return embedded


def _cosine_pairs(config: FeatureConfig) -> list[tuple[str, str]]:
    # Each output against its context (how on-topic it is), and the outputs against each other.
    context = [name for name in config.embedding_fields if name in config.context_fields]
    outputs = [name for name in config.embedding_fields if name in config.text_fields]
    pairs = [(first, second) for first in context for second in outputs]
    pairs += [(outputs[i], outputs[j]) for i in range(len(outputs)) for j in range(i + 1, len(outputs))]
    return pairs


def _is_context_cosine(name: str, config: FeatureConfig) -> bool:
    if not name.startswith("cos:"):
        return False
    _, first, second = name.split(":", 2)
    return first in config.context_fields and second in config.context_fields


def _cosine(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
    dots = (first * second).sum(axis=1)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def _check_same_ids(ids_a: Sequence[str], ids_b: Sequence[str]) -> None:
    only_a = sorted(set(ids_a) - set(ids_b))
    only_b = sorted(set(ids_b) - set(ids_a))
    if only_a or only_b:
        raise InputError(
            f"A and B must hold the same records: {len(only_a)} id(s) only in A "
            f"({', '.join(map(repr, only_a[:5]))}) and {len(only_b)} only in B ({', '.join(map(repr, only_b[:5]))})",
            field="id",
        )
