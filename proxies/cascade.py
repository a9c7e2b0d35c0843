"""Cascades: the proxy answers where it is confident, the judge sees the rest.

Records go to the judge least confident first. With ``k`` records escalated, the expected agreement
with the judge is ``(k + sum of the confidences of the records the proxy keeps) / n``: the judge
agrees with itself, and a calibrated confidence is the chance that the proxy's answer is the judge's.
Pure functions over arrays; :meth:`proxies.JudgePredictor.cascade` feeds them its confidences.

Example:
    >>> plan = plan_cascade(["a", "b", "c", "d"], [0.99, 0.6, 0.9, 0.7], budget=0.5)
    >>> plan.escalated_ids, round(plan.expected_agreement, 4), plan.judge_calls_saved
    (['b', 'd'], 0.9725, 2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from evalsuite.errors import ConfigError

__all__ = ["CascadePlan", "agreement_curve", "escalation_order", "plan_cascade", "realised_agreement"]


@dataclass(frozen=True)
class CascadePlan:
    """Which records need the judge, and what the cascade is expected to achieve.

    ``curve`` has one row per number of judge calls (0 to n): ``judge_calls``, ``share_to_judge``,
    ``judge_calls_saved`` and ``expected_agreement``; the plan is one row of it.
    """

    ids: tuple[str, ...]
    confidence: np.ndarray
    needs_judge: np.ndarray
    escalation_rank: np.ndarray  # 1 = the first record to send to the judge; 0 = the proxy keeps it
    judge_calls: int
    expected_agreement: float
    curve: pl.DataFrame
    budget: float | None = None
    target_agreement: float | None = None

    @property
    def records(self) -> int:
        return len(self.ids)

    @property
    def judge_calls_saved(self) -> int:
        return self.records - self.judge_calls

    @property
    def share_to_judge(self) -> float:
        return self.judge_calls / self.records if self.records else 0.0

    @property
    def escalated_ids(self) -> list[str]:
        order = np.argsort(
            np.where(self.needs_judge, self.escalation_rank, np.iinfo(np.int64).max), kind="stable"
        )
        return [self.ids[i] for i in order[: self.judge_calls]]

    def to_frame(self) -> pl.DataFrame:
        """Per record: ``id, needs_judge, escalation_rank, confidence`` in the records' order."""
        return pl.DataFrame(
            {
                "id": list(self.ids),
                "needs_judge": self.needs_judge.tolist(),
                "escalation_rank": self.escalation_rank.tolist(),
                "confidence": self.confidence.tolist(),
            },
            schema={
                "id": pl.String,
                "needs_judge": pl.Boolean,
                "escalation_rank": pl.Int64,
                "confidence": pl.Float64,
            },
        )

    def lines(self) -> list[str]:
        goal = (
            f"budget {self.budget:g} of the records"
            if self.budget is not None
            else f"target agreement {self.target_agreement:g}"
        )
        return [
            f"{goal}: {self.judge_calls} of {self.records} records need the judge "
            f"({self.share_to_judge:.1%}), {self.judge_calls_saved} judge calls saved",
            f"expected agreement with the judge: {self.expected_agreement:.3f} "
            f"(proxy alone {float(self.curve['expected_agreement'][0]):.3f})",
        ]


def escalation_order(confidence: Sequence[float] | np.ndarray) -> np.ndarray:
    """Record positions, least confident first (ties keep the records' order, so plans are stable).

    Example:
        >>> escalation_order([0.9, 0.5, 0.9, 0.7]).tolist()
        [1, 3, 0, 2]
    """
    values = _confidences(confidence)
    return np.argsort(values, kind="stable")


def agreement_curve(confidence: Sequence[float] | np.ndarray) -> pl.DataFrame:
    """Expected agreement with the judge for every number of judge calls, least confident first.

    Example:
        >>> agreement_curve([0.5, 1.0])["expected_agreement"].to_list()
        [0.75, 1.0, 1.0]
    """
    values = _confidences(confidence)
    n = values.size
    kept_sorted = values[escalation_order(values)]
    # kept_after[k]: total confidence of the records the proxy keeps once k have gone to the judge.
    kept_after = np.concatenate([[kept_sorted.sum()], kept_sorted.sum() - np.cumsum(kept_sorted)])
    calls = np.arange(n + 1)
    expected = (calls + kept_after) / n if n else np.ones(1)
    return pl.DataFrame(
        {
            "judge_calls": calls,
            "share_to_judge": calls / n if n else np.zeros(1),
            "judge_calls_saved": n - calls,
            "expected_agreement": np.clip(expected, 0.0, 1.0),
        }
    )


def plan_cascade(
    ids: Sequence[str],
    confidence: Sequence[float] | np.ndarray,
    *,
    budget: float | None = None,
    target_agreement: float | None = None,
) -> CascadePlan:
    """Pick the records that need the judge: a ``budget`` (share of records the judge may see, the
    least confident go first) or the fewest calls whose expected agreement reaches ``target_agreement``.
    Exactly one of the two is given.
    """
    values = _confidences(confidence)
    if len(ids) != values.size:
        raise ConfigError(f"ids and confidence must have the same length, got {len(ids)} and {values.size}")
    if (budget is None) == (target_agreement is None):
        raise ConfigError("give exactly one of budget (share of records for the judge) or target_agreement")
    curve = agreement_curve(values)
    n = values.size
    expected = curve["expected_agreement"].to_numpy()
    if budget is not None:
        if not 0.0 <= budget <= 1.0:
            raise ConfigError(f"budget must be a share of the records between 0 and 1, got {budget!r}")
        calls = math.floor(budget * n + 1e-9)
    elif target_agreement is not None:  # always, after the check above; narrows the type
        if not 0.0 < target_agreement <= 1.0:
            raise ConfigError(f"target_agreement must be in (0, 1], got {target_agreement!r}")
        # Expected agreement grows with every call (confidences are at most 1); all calls reach 1.
        reached = np.flatnonzero(expected >= target_agreement - 1e-12)
        calls = int(reached[0]) if reached.size else n
    order = escalation_order(values)
    needs_judge = np.zeros(n, dtype=bool)
    needs_judge[order[:calls]] = True
    rank = np.zeros(n, dtype=np.int64)
    rank[order[:calls]] = np.arange(1, calls + 1)
    return CascadePlan(
        tuple(str(record_id) for record_id in ids),
        values,
        needs_judge,
        rank,
        calls,
        float(expected[calls]),
        curve,
        budget,
        target_agreement,
    )


def realised_agreement(
    needs_judge: Sequence[bool] | np.ndarray,
    proxy_labels: Sequence[object],
    judge_labels: Sequence[object],
) -> float:
    """Share of records where the cascade's answer (the judge's where escalated, else the proxy's)
    equals the judge's label.

    Example:
        >>> realised_agreement([True, False, False], [1, 1, 2], [2, 1, 1])
        0.6666666666666666
    """
    escalated = np.asarray(needs_judge, dtype=bool)
    if not (escalated.size == len(proxy_labels) == len(judge_labels)):
        raise ConfigError("needs_judge, proxy_labels and judge_labels must have the same length")
    if not escalated.size:
        return float("nan")
    agrees = [bool(e) or p == j for e, p, j in zip(escalated, proxy_labels, judge_labels, strict=True)]
    return float(np.mean(agrees))


def _confidences(confidence: Sequence[float] | np.ndarray) -> np.ndarray:
    values = np.asarray(confidence, dtype=np.float64).ravel()
    if values.size and (np.isnan(values).any() or values.min() < 0.0 or values.max() > 1.0):
        raise ConfigError("confidences must be probabilities in [0, 1] without NaN")
    return values
