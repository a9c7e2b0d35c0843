"""Semantic entropy (Kuhn et al., ICLR 2023; Farquhar et al., Nature 2024): uncertainty over meanings.

Sampled answers are clustered by bidirectional entailment, then the entropy is taken over meaning
clusters rather than strings, so paraphrases do not count as disagreement. The clustering and the
entropies follow the reference code of Farquhar et al. (``semantic_uncertainty``).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from metrics.base import Scores, register_metric
from metrics.nli_metric import DEFAULT_NLI_MODEL, NLIMetric, Probabilities

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime

ENTAILMENT, NEUTRAL, CONTRADICTION = 0, 1, 2


def predicted_class(probabilities: Probabilities) -> int:
    """0 entailment, 1 neutral, 2 contradiction: the most probable class (the first one on a tie)."""
    return max(range(3), key=lambda column: (probabilities[column], -column))


def equivalent(forward: int, backward: int, *, strict: bool) -> bool:
    """Whether two texts mean the same, from the predicted NLI class in both directions.

    Strict: each entails the other. Otherwise: neither contradicts the other and they are not
    both merely neutral (at least one direction entails), as in the reference code.
    """
    if strict:
        return forward == ENTAILMENT and backward == ENTAILMENT
    return CONTRADICTION not in (forward, backward) and (forward, backward) != (NEUTRAL, NEUTRAL)


def semantic_clusters(count: int, same_meaning: Callable[[int, int], bool]) -> list[int]:
    """Cluster id of each of ``count`` texts, numbered in order of first appearance.

    Each text not yet clustered opens a cluster and takes in every later text it is equivalent
    to. As in the reference code, a later text joins the newest equivalent opener even when an
    earlier cluster already took it (equivalence by a classifier is not transitive).

    >>> semantic_clusters(3, lambda i, j: (i, j) == (0, 2))
    [0, 1, 0]
    """
    ids = [-1] * count
    next_id = 0
    for i in range(count):
        if ids[i] != -1:
            continue
        ids[i] = next_id
        for j in range(i + 1, count):
            if same_meaning(i, j):
                ids[j] = next_id
        next_id += 1
    return ids


def discrete_semantic_entropy(cluster_ids: Sequence[int]) -> float:
    """Entropy (nats) of the cluster frequencies: for samples without log-probabilities."""
    total = len(cluster_ids)
    return -sum((n / total) * math.log(n / total) for n in Counter(cluster_ids).values())


def semantic_entropy(cluster_ids: Sequence[int], log_likelihoods: Sequence[float]) -> float:
    """Entropy (nats) of cluster probabilities: each cluster's share of the samples' total likelihood.

    ``p(c) = sum_{i in c} exp(l_i) / sum_i exp(l_i)``, computed in log space (no underflow).
    """
    total = _logsumexp(log_likelihoods)
    members: dict[int, list[float]] = {}
    for cluster, value in zip(cluster_ids, log_likelihoods, strict=True):
        members.setdefault(cluster, []).append(value)
    log_p = [_logsumexp(values) - total for values in members.values()]
    return -sum(math.exp(value) * value for value in log_p)


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(value - top) for value in values))


@register_metric("semantic_entropy")
class SemanticEntropy(NLIMetric):
    """Semantic entropy of the sampled answers, in nats; higher means less certain (lower is better).

    Needs ``samples``; with ``sample_logprobs`` (one log-likelihood per sample; Farquhar et al.
    use the mean token log-probability) it reports ``entropy``, else that score is missing.
    ``discrete_entropy`` uses cluster frequencies alone (range 0 to log N). ``clusters`` is the
    number of distinct meanings; ``cluster_ids`` gives each sample's cluster. ``strict=False``
    (default) puts two samples together when neither contradicts the other and one entails the
    other; ``strict=True`` asks for entailment both ways, which a small NLI model rarely grants
    short answers of different lengths ("Paris." vs "The capital is Paris."), so paraphrases split.

    >>> SemanticEntropy().columns
    ['semantic_entropy_entropy', 'semantic_entropy_discrete_entropy', 'semantic_entropy_clusters']
    """

    fields = ("samples",)
    optional_fields = ("sample_logprobs",)
    score_names = ("entropy", "discrete_entropy", "clusters")
    detail_names = ("cluster_ids",)
    higher_is_better = False
    description = "Entropy over meaning clusters of sampled answers (bidirectional NLI entailment); high = confabulation risk."
    citation = (
        "Kuhn, Gal & Farquhar, Semantic Uncertainty, ICLR 2023; "
        "Farquhar et al., Detecting hallucinations in large language models using semantic entropy, Nature 2024."
    )

    def __init__(
        self,
        *,
        model: str = DEFAULT_NLI_MODEL,
        strict: bool = False,
        label_map: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(model=model, label_map=label_map, strict=strict)
        self.strict = strict

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        # Every ordered pair of samples: O(N²) pairs, each distinct one scored once by the runtime.
        pairs = [pair for record in records for pair in itertools.permutations(record["samples"], 2)]
        probabilities = self.probabilities(rt, pairs)
        scores: Scores = {name: [] for name in (*self.score_names, *self.detail_names)}
        for record in records:
            samples = record["samples"]

            def same_meaning(i: int, j: int, samples: Sequence[str] = samples) -> bool:
                forward = predicted_class(probabilities[(samples[i], samples[j])])
                backward = predicted_class(probabilities[(samples[j], samples[i])])
                return equivalent(forward, backward, strict=self.strict)

            ids = semantic_clusters(len(samples), same_meaning)
            logprobs = record.get("sample_logprobs")
            scores["entropy"].append(semantic_entropy(ids, logprobs) if logprobs else None)
            scores["discrete_entropy"].append(discrete_semantic_entropy(ids))
            scores["clusters"].append(float(len(set(ids))))
            scores["cluster_ids"].append(ids)
        return scores
