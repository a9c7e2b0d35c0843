"""BERTScore (Zhang et al., ICLR 2020): greedy cosine matching of contextual token embeddings.

The math is in pure functions (:func:`idf_weights`, :func:`greedy_match`, :func:`best_over_references`,
:func:`rescale`); :class:`BERTScore` only wires them to the runtime. Scores equal those of the
original ``bert_score`` package (0.3.13) with the same model and layer, with one deliberate
difference: ``bert_score`` lets padded positions of its scoring batch count as a similarity of 0,
so a token whose best real match has a negative cosine can score 0 there, depending on the batch.
Here tokens are matched over real positions only, so scores do not depend on batching.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.errors import ConfigError
from evalsuite.runtime import Runtime
from metrics.base import Metric, Scores, register_metric

if TYPE_CHECKING:
    import torch

BASELINES_DIR = Path(__file__).parent / "baselines"


def idf_weights(reference_token_ids: Sequence[Sequence[int]]) -> tuple[dict[int, float], float]:
    """Inverse document frequencies over reference sentences, as ``bert_score.get_idf_dict``.

    Returns ``(weights, unseen)``: ``log((M + 1) / (df + 1))`` per token id seen, and
    ``log(M + 1)`` for tokens no reference contains (M = number of reference sentences).
    """
    documents = len(reference_token_ids)
    frequency: Counter[int] = Counter()
    for ids in reference_token_ids:
        frequency.update(set(ids))
    weights = {token: math.log((documents + 1) / (count + 1)) for token, count in frequency.items()}
    return weights, math.log(documents + 1)


def token_weights(
    token_ids: Sequence[int], idf: tuple[dict[int, float], float] | None, special_ids: set[int]
) -> torch.Tensor:
    """Per-token weights: idf when given, else 1; sequence-start and separator tokens get 0 without idf."""
    import torch

    if idf is None:
        return torch.tensor([0.0 if token in special_ids else 1.0 for token in token_ids])
    weights, unseen = idf
    return torch.tensor([weights.get(token, unseen) for token in token_ids])


def greedy_match(
    candidate: torch.Tensor,
    reference: torch.Tensor,
    candidate_weights: torch.Tensor,
    reference_weights: torch.Tensor,
) -> tuple[float, float, float]:
    """Precision, recall and F1 of one pair from token embeddings ``[len, dim]`` and token weights.

    Each candidate token is matched to its most similar reference token (precision) and vice
    versa (recall), averaged with the weights; F1 is their harmonic mean (0 when undefined).
    """
    candidate = candidate / candidate.norm(dim=-1, keepdim=True)
    reference = reference / reference.norm(dim=-1, keepdim=True)
    similarity = candidate @ reference.T
    precision = float((similarity.max(dim=1).values * candidate_weights / candidate_weights.sum()).sum())
    recall = float((similarity.max(dim=0).values * reference_weights / reference_weights.sum()).sum())
    total = precision + recall
    f1 = 2 * precision * recall / total if total != 0 else 0.0
    return precision, recall, (0.0 if math.isnan(f1) else f1)


def best_over_references(pair_scores: Sequence[tuple[float, float, float]]) -> tuple[float, float, float]:
    """Best precision, recall and F1 over a record's references, each taken on its own (as ``bert_score``)."""
    return (
        max(score[0] for score in pair_scores),
        max(score[1] for score in pair_scores),
        max(score[2] for score in pair_scores),
    )


def rescale(value: float, baseline: float) -> float:
    """Linear rescaling with a baseline b: ``(x - b) / (1 - b)``, so unrelated text scores near 0."""
    return (value - baseline) / (1 - baseline)


def baseline_file(model: str, lang: str = "en") -> Path | None:
    """The shipped baseline for a model name, preset or hub id (``bert_score``'s files and our own)."""
    for name in Runtime.model_aliases(model):
        path = BASELINES_DIR / lang / f"{name}.tsv"
        if path.is_file():
            return path
    return None


def read_baseline(path: Path, layer: int) -> tuple[float, float, float]:
    """The (P, R, F) baseline of one layer from a ``LAYER,P,R,F`` table."""
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if int(row["LAYER"]) == layer:
                return float(row["P"]), float(row["R"]), float(row["F"])
    raise ConfigError(f"the baseline file {path} has no row for layer {layer}")


@register_metric("bertscore")
class BERTScore(Metric):
    """BERTScore precision, recall and F1 of the prediction against its best reference.

    Scores lie in [-1, 1] (in practice 0.3–1 without rescaling; rescaled ones may be negative);
    higher is better. Compare scores only within one model and layer.

    >>> metric = BERTScore(model="minilm", idf=False)
    >>> metric.columns
    ['bertscore_precision', 'bertscore_recall', 'bertscore_f1']
    """

    fields = ("prediction", "references")
    score_names = ("precision", "recall", "f1")
    description = "Token-level greedy cosine matching of contextual embeddings (P, R, F1 vs best reference)."
    citation = "Zhang et al., BERTScore: Evaluating Text Generation with BERT, ICLR 2020."

    def __init__(
        self,
        *,
        model: str = "minilm",
        num_layers: int | None = None,
        idf: bool = False,
        rescale_with_baseline: bool = False,
        lang: str = "en",
    ) -> None:
        if num_layers is None:
            num_layers = Runtime.default_layer(model)
        if num_layers is not None and num_layers < 0:
            raise ConfigError(f"num_layers must be >= 0, got {num_layers}")
        super().__init__(
            model=model,
            num_layers=num_layers,
            idf=idf,
            rescale_with_baseline=rescale_with_baseline,
            lang=lang,
        )
        self.model = model
        self.num_layers = num_layers
        self.idf = idf
        self.rescale_with_baseline = rescale_with_baseline
        self.lang = lang
        self._idf: tuple[dict[int, float], float] | None = None
        if rescale_with_baseline and baseline_file(model, lang) is None:
            raise ConfigError(
                f"no {lang!r} rescaling baseline is shipped for model {model!r}; "
                "compute one with scripts/bertscore_baseline.py or set rescale_with_baseline=False"
            )

    @property
    def needs_corpus(self) -> bool:
        return self.idf

    def models(self) -> list[str]:
        return [self.model]

    def fit_corpus(self, records: Iterable[Mapping[str, Any]], rt: Runtime) -> None:
        """idf weights from every reference of every record (each reference is one document)."""
        references = [reference.strip() for record in records for reference in record["references"]]
        self._idf = idf_weights(rt.tokenize(self.model, references))

    def state_hash(self) -> str:
        if self._idf is None:
            return ""
        weights, unseen = self._idf
        digest = hashlib.sha256(repr((sorted(weights.items()), unseen)).encode())
        return digest.hexdigest()[:16]

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        if self.idf and self._idf is None:
            self.fit_corpus(records, rt)
        texts = sorted(
            {text.strip() for record in records for text in (record["prediction"], *record["references"])}
        )
        token_ids = rt.tokenize(self.model, texts)
        embeddings = dict(
            zip(texts, rt.token_embeddings(self.model, token_ids, layer=self.num_layers), strict=True)
        )
        special = rt.special_token_ids(self.model)
        weights = {
            text: token_weights(ids, self._idf, special) for text, ids in zip(texts, token_ids, strict=True)
        }
        baseline = None
        if self.rescale_with_baseline:
            layer = self.num_layers if self.num_layers is not None else rt.num_layers(self.model)
            path = baseline_file(self.model, self.lang)
            baseline = read_baseline(path, layer) if path else None
        scores: Scores = {name: [] for name in self.score_names}
        for record in records:
            candidate = record["prediction"].strip()
            best = best_over_references(
                [
                    greedy_match(embeddings[candidate], embeddings[ref], weights[candidate], weights[ref])
                    for ref in (reference.strip() for reference in record["references"])
                ]
            )
            if baseline is not None:
                best = (
                    rescale(best[0], baseline[0]),
                    rescale(best[1], baseline[1]),
                    rescale(best[2], baseline[2]),
                )
            for name, value in zip(self.score_names, best, strict=True):
                scores[name].append(value)
        return scores


def token_alignment(
    prediction: str, reference: str, rt: Runtime, *, model: str = "minilm", num_layers: int | None = None
) -> dict[str, Any]:
    """The token-by-token cosine similarities BERTScore matches greedily, for one (prediction, reference).

    Returns ``prediction_tokens`` and ``reference_tokens`` (the tokenizer's pieces, special tokens
    included), ``similarity`` (``[prediction token][reference token]`` cosines) and the pair's
    ``precision``, ``recall`` and ``f1`` without idf or rescaling (equal to :class:`BERTScore`'s
    with ``idf=False``, ``rescale_with_baseline=False`` and a single reference). For review (the
    dashboard's heatmap), not for scoring many records.

    >>> alignment = token_alignment("Paris.", "It is Paris.", Runtime(device="cpu"))  # doctest: +SKIP
    >>> alignment["reference_tokens"]  # doctest: +SKIP
    ['[CLS]', 'it', 'is', 'paris', '.', '[SEP]']
    """
    import torch

    if num_layers is None:
        num_layers = rt.default_layer(model)
    texts = [prediction.strip(), reference.strip()]
    token_ids = rt.tokenize(model, texts)
    candidate, target = rt.token_embeddings(model, token_ids, layer=num_layers)
    special = rt.special_token_ids(model)
    weights = [token_weights(ids, None, special) for ids in token_ids]
    precision, recall, f1 = greedy_match(candidate, target, weights[0], weights[1])
    similarity = (
        torch.nn.functional.normalize(candidate, dim=-1) @ torch.nn.functional.normalize(target, dim=-1).T
    )
    tokenizer = rt.encoder(model).tokenizer
    return {
        "prediction_tokens": list(tokenizer.convert_ids_to_tokens(token_ids[0])),
        "reference_tokens": list(tokenizer.convert_ids_to_tokens(token_ids[1])),
        "similarity": similarity.tolist(),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }
