"""Judge proxies: predict an expensive judge's verdict per record from cheap small-model features,
and decide which records still need the judge.

Example:
    >>> from proxies import FeatureConfig, JudgePredictor
    >>> proxy = JudgePredictor(kind="pairwise", features=FeatureConfig(context_fields=("prompt",)))
    >>> proxy.fit("model_a.parquet", labels, versus="model_b.parquet", draw_label=0)  # doctest: +SKIP
    >>> proxy.cascade("new_a.parquet", versus="new_b.parquet", budget=0.3).escalated_ids  # doctest: +SKIP

Importing this package imports neither scikit-learn nor torch; fitting, loading and embedding do.
"""

from proxies.cascade import CascadePlan, agreement_curve, plan_cascade, realised_agreement
from proxies.features import (
    TEXT_STATISTICS,
    FeatureConfig,
    FeatureTable,
    pairwise_table,
    results_features,
    table_features,
    text_statistics,
)
from proxies.labels import KINDS, LabelReport, align_labels, encode_labels, read_labels
from proxies.persistence import load_predictor, save_predictor
from proxies.predictor import FeatureSchemaError, FitReport, JudgePredictor, Predictions

__all__ = [
    "KINDS",
    "TEXT_STATISTICS",
    "CascadePlan",
    "FeatureConfig",
    "FeatureSchemaError",
    "FeatureTable",
    "FitReport",
    "JudgePredictor",
    "LabelReport",
    "Predictions",
    "agreement_curve",
    "align_labels",
    "encode_labels",
    "load_predictor",
    "pairwise_table",
    "plan_cascade",
    "read_labels",
    "realised_agreement",
    "results_features",
    "save_predictor",
    "table_features",
    "text_statistics",
]
