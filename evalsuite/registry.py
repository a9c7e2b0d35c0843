"""The Metric protocol and the lazy metric registry: the core's only view of metrics.

A metric is a thin class around pure functions: it declares its name, the record fields it needs,
its score names, direction and keyword-only config, and scores a batch of records through the
:class:`~evalsuite.runtime.Runtime`. Names map to ``"module:Class"`` strings, so listing or looking
up metrics imports no model code; third-party packages add metrics through the entry-point group
``evalsuite.metrics``. This module depends on nothing above :mod:`evalsuite.errors`; metric
authors import the same names from :mod:`metrics.base`.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from evalsuite.errors import ConfigError, UnknownMetricError

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime

ENTRY_POINT_GROUP = "evalsuite.metrics"

Scores = dict[str, list[Any]]


@dataclass(frozen=True)
class ScoreFailure:
    """What a metric returns, in place of a record's scores, when that record cannot be scored (an LLM
    judge's reply without a rating, a server error after its retries).

    The run turns it into a record error naming the record and the column, with ``raw`` (the reply as
    received) in the message; it is never cached, so a resumed or repeated run tries the record again.
    """

    reason: str
    raw: str | None = None

    def message(self) -> str:
        return self.reason if self.raw is None else f"{self.reason}; the reply was: {self.raw!r}"


class Metric(ABC):
    """Base class of every metric.

    Subclasses set the class attributes, take their config as keyword-only ``__init__`` arguments
    passed on to ``super().__init__(**config)``, and implement :meth:`score_batch`.
    """

    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]  # canonical record fields the metric needs
    optional_fields: ClassVar[tuple[str, ...]] = ()  # canonical fields it reads when present
    # One numeric output column each: "<name>_<score>". Usually fixed by the class; a metric whose
    # columns come from its model (a classifier's labels) sets them on the instance.
    score_names: tuple[str, ...]
    # Evidence columns "<name>_<detail>" (lists, structs) for people and dashboards: written with the
    # scores and cached, never summarised or thresholded.
    detail_names: ClassVar[tuple[str, ...]] = ()
    higher_is_better: ClassVar[bool] = True
    description: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    version: ClassVar[int] = 1  # bump when the math changes, so cached scores are not reused

    def __init__(self, **config: Any) -> None:
        self._config = dict(config)

    @property
    def config(self) -> dict[str, Any]:
        """The keyword config this metric was built with (defaults filled in)."""
        return dict(self._config)

    @property
    def columns(self) -> list[str]:
        """The numeric score columns."""
        return [f"{self.name}_{score}" for score in self.score_names]

    @property
    def detail_columns(self) -> list[str]:
        return [f"{self.name}_{detail}" for detail in self.detail_names]

    @property
    def input_fields(self) -> tuple[str, ...]:
        """Every field the scores depend on (the cache keys on their content)."""
        return (*self.fields, *self.optional_fields)

    def config_hash(self) -> str:
        """Stable across processes and versions of Python: the cache and manifests key on it."""
        payload = json.dumps(
            {"metric": self.name, "version": self.version, "config": self._config},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def models(self) -> list[str]:
        """The models this metric loads (presets, paths or hub ids)."""
        return []

    @property
    def needs_corpus(self) -> bool:
        """True when corpus statistics (e.g. idf weights) need one pass over every record first."""
        return False

    def fit_corpus(self, records: Iterable[Mapping[str, Any]], rt: Runtime) -> None:  # noqa: B027 - optional hook
        """Compute corpus statistics from all records (called before scoring when needed)."""

    def state_hash(self) -> str:
        """Hash of fitted corpus statistics (empty when none); part of the cache key."""
        return ""

    @abstractmethod
    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        """Scores of ``records`` (validated, canonical fields): one list per score and detail name, in order.

        A record that cannot be scored gets a :class:`ScoreFailure` in its place in every list.
        """

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self._config.items())
        return f"{type(self).__name__}({options})"


M = TypeVar("M", bound=type[Metric])

BUILTIN_METRICS: dict[str, str] = {
    "bartscore": "metrics.bartscore:BARTScore",
    "bartscore_faithfulness": "metrics.bartscore:BARTScoreFaithfulness",
    "bertscore": "metrics.bertscore:BERTScore",
    "embedding_similarity": "metrics.embedding_similarity:EmbeddingSimilarity",
    "factuality": "metrics.factuality:Factuality",
    "llm_judge": "metrics.llm_judge:LLMJudge",
    "pii": "metrics.pii:PII",
    "selfcheck_nli": "metrics.selfcheck_nli:SelfCheckNLI",
    "semantic_entropy": "metrics.semantic_entropy:SemanticEntropy",
    "toxicity": "metrics.toxicity:Toxicity",
}
_registered: dict[str, type[Metric]] = {}


def register_metric(name: str) -> Callable[[M], M]:
    """Class decorator registering a metric under ``name`` (the class's ``name`` must match)."""

    def decorate(cls: M) -> M:
        if getattr(cls, "name", name) != name:
            raise ConfigError(
                f"metric class {cls.__name__} has name {cls.name!r} but is registered as {name!r}"
            )
        cls.name = name
        _registered[name] = cls
        return cls

    return decorate


def _entry_point_targets() -> dict[str, str]:
    return {entry.name: entry.value for entry in entry_points(group=ENTRY_POINT_GROUP)}


def _targets() -> dict[str, str]:
    return {**_entry_point_targets(), **BUILTIN_METRICS}


def list_metrics() -> list[str]:
    """Names of every available metric: built-in, plugin and registered at run time."""
    return sorted(set(_targets()) | set(_registered))


def get_metric_class(name: str) -> type[Metric]:
    """The class registered under ``name``; unknown names get the close matches in the error."""
    if name in _registered:
        return _registered[name]
    target = _targets().get(name)
    if target is None:
        close = difflib.get_close_matches(name, list_metrics(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownMetricError(f"unknown metric {name!r}.{hint} Available: {', '.join(list_metrics())}.")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        raise ConfigError(f"metric {name!r} points to {target}, which is not a Metric subclass")
    _registered.setdefault(name, cls)
    return cls


def load_metric(name: str, **config: Any) -> Metric:
    """Build a metric by name with keyword config: ``load_metric("bertscore", idf=True)``."""
    cls = get_metric_class(name)
    try:
        return cls(**config)
    except TypeError as error:
        raise ConfigError(f"invalid config for metric {name!r}: {error}") from error
