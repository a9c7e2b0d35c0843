"""SummaC-Conv's learned aggregation (Laban et al., TACL 2022), with a logistic layer for the convolution.

A claim's column of the (source chunk × claim) NLI matrix is binned into two histograms, of the
entailment and of the contradiction probabilities over the chunks (``bins`` equal-width bins over
[0, 1], divided by the number of chunks), so a source of any length gives a fixed-size feature
vector. A logistic regression maps it to P(consistent). The layer is linear, so a record's mean
histogram gives the mean of its claims' logits: fitted on labelled records, it scores single claims.

The fitted layer is an :class:`Aggregator`, saved as JSON by ``evalsuite factuality-fit``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.errors import ConfigError
from evalsuite.records.writers import atomic_target

AGGREGATOR_KIND = "evalsuite factuality summac-conv aggregator"
AGGREGATOR_FORMAT = 1
HISTOGRAMS = ("entailment", "contradiction")  # the order of the features, and of the weights
DEFAULT_BINS = 20


def fit_hint(model: str = "MODEL", granularity: str = "sentence", language: str = "en") -> str:
    """How to fit an aggregator for these options, for error messages."""
    flags = f"--model {model}"
    flags += f" --granularity {granularity}" if granularity != "sentence" else ""
    flags += f" --language {language}" if language != "en" else ""
    return (
        "fit one on records labelled 1 (consistent) or 0 (not) with "
        f"`evalsuite factuality-fit FILE --out aggregator.json {flags}`"
    )


def claim_histograms(
    entailment: Sequence[Sequence[float]], contradiction: Sequence[Sequence[float]], bins: int
) -> np.ndarray:
    """``[claims, 2 * bins]``: per claim, the histograms of its entailment then contradiction
    probabilities over the chunks (``[chunk][claim]`` matrices), each summing to 1.

    >>> claim_histograms([[0.9], [0.2]], [[0.0], [0.7]], bins=2).tolist()
    [[0.5, 0.5, 0.5, 0.5]]
    """
    return np.concatenate(
        [_column_histograms(entailment, bins), _column_histograms(contradiction, bins)], axis=1
    )


def _column_histograms(matrix: Sequence[Sequence[float]], bins: int) -> np.ndarray:
    """``[claims, bins]``: each column's histogram over the rows, as shares of the rows."""
    values = np.asarray(matrix, dtype=np.float64)
    counts = [
        np.histogram(values[:, column], bins=bins, range=(0.0, 1.0))[0] for column in range(values.shape[1])
    ]
    return np.stack(counts) / len(values)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function; a very negative logit gives 0 (its overflowing exp is no error)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


@dataclass(frozen=True)
class TrainingFile:
    """What an aggregator was fitted on: the labelled file and its counts."""

    file: str
    sha256: str
    records: int
    consistent: int
    inconsistent: int
    claims: int


@dataclass(frozen=True)
class Aggregator:
    """A fitted SummaC-Conv layer: logit = weights · histograms + intercept.

    ``nli_model``, ``granularity`` and ``language`` are the options the histograms were made with;
    a metric with other options would feed it features of another distribution, so it refuses.
    """

    weights: tuple[float, ...]
    intercept: float
    bins: int
    nli_model: str
    granularity: str
    language: str
    regularisation: float = 1.0  # scikit-learn's C: the inverse strength of the L2 penalty
    fitted_on: TrainingFile | None = None

    def __post_init__(self) -> None:
        if len(self.weights) != len(HISTOGRAMS) * self.bins:
            raise ConfigError(
                f"an aggregator with {self.bins} bins needs {len(HISTOGRAMS) * self.bins} weights, "
                f"got {len(self.weights)}"
            )

    def describe(self) -> str:
        """One line for people: what it was fitted on and with."""
        made = f"{self.bins} bins, model {self.nli_model}, {self.granularity} chunks"
        data = self.fitted_on
        if data is None:
            return f"aggregator with {made}"
        return (
            f"fitted on {data.records} records of {data.file or 'records'} ({data.consistent} consistent, "
            f"{data.inconsistent} not; {data.claims} claims) with {made}"
        )

    def claim_logits(self, histograms: np.ndarray) -> np.ndarray:
        """The logit of P(consistent) of each claim from its ``[claims, 2 * bins]`` histograms."""
        return np.asarray(histograms, dtype=np.float64) @ np.asarray(self.weights) + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": AGGREGATOR_KIND,
            "format": AGGREGATOR_FORMAT,
            "features": [f"{name} histogram" for name in HISTOGRAMS],
            **asdict(self),
            "weights": list(self.weights),
        }

    def digest(self) -> str:
        """A hash of what the scores depend on (not the file's layout, nor what it was fitted on)."""
        scoring = {
            key: value for key, value in self.to_dict().items() if key not in ("fitted_on", "regularisation")
        }
        payload = json.dumps(scoring, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Save as JSON, atomically: a metric reading the file never sees half of it."""
        target = Path(path)
        with atomic_target(target) as temporary:
            temporary.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return target

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Aggregator:
        """The aggregator saved at ``path``; a missing or foreign file raises :class:`ConfigError`."""
        where = os.fspath(path)
        if not Path(where).is_file():
            raise ConfigError(f"aggregator file {where!r} does not exist; {fit_hint()}")
        try:
            values = json.loads(Path(where).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"aggregator file {where!r} is not JSON: {error}") from None
        if not isinstance(values, dict) or values.get("kind") != AGGREGATOR_KIND:
            raise ConfigError(
                f"{where!r} is not a factuality aggregator (written by evalsuite factuality-fit)"
            )
        if values.get("format") != AGGREGATOR_FORMAT:
            raise ConfigError(
                f"aggregator file {where!r} has format {values.get('format')!r}; this evalsuite reads "
                f"format {AGGREGATOR_FORMAT}: fit it again"
            )
        try:
            fitted_on = values.get("fitted_on")
            return cls(
                weights=tuple(float(weight) for weight in values["weights"]),
                intercept=float(values["intercept"]),
                bins=int(values["bins"]),
                nli_model=str(values["nli_model"]),
                granularity=str(values["granularity"]),
                language=str(values["language"]),
                regularisation=float(values.get("regularisation", 1.0)),
                fitted_on=TrainingFile(**fitted_on) if fitted_on else None,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"aggregator file {where!r} is damaged: {error!r}") from None


def fit_aggregator(
    histograms: Sequence[np.ndarray],
    labels: Sequence[int],
    *,
    bins: int,
    nli_model: str,
    granularity: str,
    language: str,
    file: str = "",
    sha256: str = "",
    regularisation: float = 1.0,
) -> Aggregator:
    """Fit the layer on each record's mean claim histogram (``histograms[i]``: ``[claims, 2 * bins]``)
    and its label (1 consistent, 0 not)."""
    from sklearn.linear_model import LogisticRegression

    target = np.asarray(labels, dtype=int)
    if len(histograms) != len(target):
        raise ConfigError(f"{len(histograms)} records but {len(target)} labels")
    if set(target.tolist()) != {0, 1}:
        raise ConfigError("fitting an aggregator needs both consistent (1) and inconsistent (0) records")
    features = np.stack([np.asarray(record).mean(axis=0) for record in histograms])
    layer = LogisticRegression(C=regularisation, max_iter=10_000).fit(features, target)
    consistent = int(target.sum())
    return Aggregator(
        weights=tuple(float(weight) for weight in layer.coef_[0]),
        intercept=float(layer.intercept_[0]),
        bins=bins,
        nli_model=nli_model,
        granularity=granularity,
        language=language,
        regularisation=regularisation,
        fitted_on=TrainingFile(
            file=file,
            sha256=sha256,
            records=len(target),
            consistent=consistent,
            inconsistent=len(target) - consistent,
            claims=sum(len(record) for record in histograms),
        ),
    )
