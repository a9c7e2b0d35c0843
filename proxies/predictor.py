"""JudgePredictor: predict an expensive judge's verdict per record from cheap small-model features.

Fitting, in order (all seeded):

1. labels are joined to records by id and checked against the kind (:mod:`proxies.labels`);
2. a calibration split (``calibration_share``, stratified for classes) is held out;
3. candidate models (a linear one at two strengths and gradient boosting) are compared by
   ``cv_folds``-fold cross-validation on the rest: log loss for classes, RMSE for numbers;
4. the winner is refit; classifiers get calibrated probabilities (``CalibratedClassifierCV``:
   sigmoid for two classes, temperature scaling for more), so that a confidence of 0.8 means the judge agrees 8 times in 10;
5. the held-out split conformalizes it (:mod:`proxies.conformal`): prediction sets (classes) or
   intervals (numbers) that hold the judge's label with probability ``coverage``.

Example:
    >>> import numpy as np
    >>> from proxies.features import FeatureTable
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(400, 2))
    >>> table = FeatureTable(tuple(map(str, range(400))), ("m_a", "m_b"), x)
    >>> labels = {str(i): int(x[i, 0] + 0.3 * rng.normal() > 0) for i in range(400)}
    >>> proxy = JudgePredictor(kind="binary", models=("linear",), cv_folds=3)
    >>> report = proxy.fit_table(table, labels)
    >>> report.model, report.holdout["accuracy"] > 0.8
    ('linear(C=1)', True)
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from evalsuite.errors import ConfigError
from evalsuite.results import Results
from proxies.archive import META_MEMBER, MODEL_MEMBER, UnsafeModelFileError, read_archive, write_archive
from proxies.cascade import CascadePlan, plan_cascade
from proxies.conformal import (
    agreement_probability,
    conformalize_classifier,
    conformalize_regressor,
    interval_coverage,
    prediction_intervals,
    prediction_sets,
    set_coverage,
)
from proxies.features import (
    EmbeddingRuntime,
    FeatureConfig,
    FeatureTable,
    embedding_blocks,
    load_results,
    pairwise_table,
    results_features,
)
from proxies.labels import KINDS, LabelReport, align_labels, encode_labels

__all__ = ["MODEL_FAMILIES", "FeatureSchemaError", "FitReport", "JudgePredictor", "Predictions"]

MODEL_FAMILIES = ("linear", "gradient_boosting")
CALIBRATION_METHODS = ("auto", "sigmoid", "isotonic", "temperature")


class FeatureSchemaError(ConfigError):
    """Features that do not match the ones a proxy was trained on (names, pairing or metric configs)."""


@dataclass
class FitReport:
    """What fitting did: data counts, the model chosen and why, and held-out quality.

    ``cv`` maps each candidate to its mean cross-validated scores; ``holdout`` gives figures on the
    calibration split (never trained on): accuracy, ROC AUC (two classes), log loss, mean set size
    and set coverage for classes; MAE, RMSE, Spearman, interval width and coverage for numbers.
    """

    kind: str
    classes: list[Any]
    model: str
    selection: str
    cv: dict[str, dict[str, float]]
    labels: LabelReport
    train: int
    calibration: int
    coverage: float
    holdout: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        lines = [*self.labels.lines()]
        lines.append(f"{self.train} records to train, {self.calibration} held out to calibrate and check")
        for name, scores in self.cv.items():
            shown = ", ".join(f"{key} {value:.4f}" for key, value in scores.items())
            lines.append(f"  {'*' if name == self.model else ' '} {name}: {shown}")
        lines.append(f"chosen by {self.selection}: {self.model}")
        held = ", ".join(f"{key} {value:.4f}" for key, value in self.holdout.items())
        lines.append(f"held-out ({self.calibration} records): {held}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "classes": self.classes,
            "model": self.model,
            "selection": self.selection,
            "cv": self.cv,
            "labels": vars(self.labels),
            "train": self.train,
            "calibration": self.calibration,
            "coverage": self.coverage,
            "holdout": self.holdout,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitReport:
        values = dict(data)
        values["labels"] = LabelReport(**values["labels"])
        return cls(**values)


@dataclass
class Predictions:
    """A proxy's verdict per record.

    ``label`` is the predicted judge label; ``confidence`` the calibrated probability that the judge
    gives exactly that label (for numbers: that it lands within ``tolerance``, NaN without one).
    Classifiers fill ``probabilities`` ([records, classes]) and ``sets`` (conformal prediction sets);
    regressors fill ``intervals`` ([records, 2]); ordinal labels also get ``expected``.
    """

    ids: tuple[str, ...]
    kind: str
    label: list[Any]
    confidence: np.ndarray
    coverage: float
    classes: list[Any] = field(default_factory=list)
    probabilities: np.ndarray | None = None
    sets: np.ndarray | None = None
    intervals: np.ndarray | None = None
    expected: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def to_frame(self) -> pl.DataFrame:
        """``id, judge_prediction, confidence``, then ``proba_<class>`` and ``judge_set`` (classes) or
        ``judge_lower, judge_upper`` (numbers), and ``judge_expected`` (ordinal)."""
        columns: dict[str, Any] = {
            "id": pl.Series("id", list(self.ids), dtype=pl.String),
            "judge_prediction": pl.Series("judge_prediction", self.label),
            "confidence": pl.Series("confidence", self.confidence, dtype=pl.Float64),
        }
        if self.probabilities is not None:
            for i, value in enumerate(self.classes):
                columns[f"proba_{value}"] = pl.Series(
                    f"proba_{value}", self.probabilities[:, i], dtype=pl.Float64
                )
        if self.sets is not None:
            sets = [[self.classes[i] for i in np.flatnonzero(row)] for row in self.sets]
            columns["judge_set"] = pl.Series("judge_set", sets)
        if self.intervals is not None:
            columns["judge_lower"] = pl.Series("judge_lower", self.intervals[:, 0], dtype=pl.Float64)
            columns["judge_upper"] = pl.Series("judge_upper", self.intervals[:, 1], dtype=pl.Float64)
        if self.expected is not None:
            columns["judge_expected"] = pl.Series("judge_expected", self.expected, dtype=pl.Float64)
        return pl.DataFrame(columns)


@dataclass(frozen=True)
class FeatureSchema:
    """The features a proxy was trained on: their config, names, pairing and metric config hashes."""

    config: FeatureConfig
    names: tuple[str, ...]
    pairwise: bool
    metric_hashes: Mapping[str, str | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "names": list(self.names),
            "pairwise": self.pairwise,
            "metric_hashes": dict(self.metric_hashes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        return cls(
            FeatureConfig.from_dict(data["config"]),
            tuple(str(name) for name in data["names"]),
            bool(data["pairwise"]),
            {str(key): None if value is None else str(value) for key, value in data["metric_hashes"].items()},
        )

    def check(self, table: FeatureTable) -> None:
        """Raise :class:`FeatureSchemaError` unless ``table`` has exactly these features and metric configs."""
        if table.pairwise != self.pairwise:
            wanted = (
                "pairs of outputs (pass versus=B / --versus B)"
                if self.pairwise
                else "single outputs (no versus)"
            )
            raise FeatureSchemaError(f"this proxy was trained on {wanted}")
        if table.names != self.names:
            missing = [name for name in self.names if name not in table.names]
            extra = [name for name in table.names if name not in self.names]
            raise FeatureSchemaError(
                f"the features do not match the ones the proxy was trained on: {len(missing)} missing "
                f"({', '.join(missing[:8]) or 'none'}), {len(extra)} unexpected ({', '.join(extra[:8]) or 'none'})"
                + ("" if missing or extra else "; same names in another order")
            )
        for metric, trained in self.metric_hashes.items():
            found = table.metric_hashes.get(metric)
            if trained is not None and found != trained:
                raise FeatureSchemaError(
                    f"metric {metric!r} was scored with config hash {found or '(none recorded)'}, but the proxy "
                    f"was trained on scores with config hash {trained}; score the records with the same "
                    "metric config as the training data, or refit the proxy"
                )


class JudgePredictor:
    """Predicts a judge's label per record from cheap features, with calibrated confidence and
    conformal sets or intervals.

    Parameters (all keyword-only):

    - ``kind``: ``binary``, ``pairwise`` (which of two outputs wins; needs pairwise features),
      ``ordinal`` (ordered levels, e.g. 1-5) or ``continuous``;
    - ``features``: a :class:`FeatureConfig` used when fitting from results (not by ``fit_table``);
    - ``coverage``: the conformal level (0.9: sets/intervals hold the judge's label 90% of the time);
    - ``models``: families to choose from by cross-validation, among :data:`MODEL_FAMILIES`;
    - ``cv_folds``, ``calibration_share``: folds for model choice, share held out for conformal;
    - ``calibration``: probability calibration, ``sigmoid``, ``isotonic`` or ``temperature``;
      ``auto`` (default) is sigmoid (Platt) for two classes and temperature scaling for more;
    - ``embedding_components``: PCA components kept per embedding block;
    - ``tolerance``: for ``continuous``, the distance within which the proxy "agrees" with the judge
      (needed for confidences and cascades);
    - ``seed``: every split, fold and model is seeded by it.
    """

    def __init__(
        self,
        *,
        kind: str,
        features: FeatureConfig | None = None,
        coverage: float = 0.9,
        models: Sequence[str] = MODEL_FAMILIES,
        cv_folds: int = 5,
        calibration_share: float = 0.25,
        calibration: str = "auto",
        embedding_components: int = 8,
        tolerance: float | None = None,
        seed: int = 0,
    ) -> None:
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not 0.0 < coverage < 1.0:
            raise ConfigError(f"coverage must be strictly between 0 and 1, got {coverage!r}")
        if isinstance(models, str) or not models or any(name not in MODEL_FAMILIES for name in models):
            raise ConfigError(f"models must name some of {', '.join(MODEL_FAMILIES)}, got {models!r}")
        if cv_folds < 2:
            raise ConfigError(f"cv_folds must be at least 2, got {cv_folds}")
        if not 0.05 <= calibration_share <= 0.5:
            raise ConfigError(f"calibration_share must be between 0.05 and 0.5, got {calibration_share!r}")
        if calibration not in CALIBRATION_METHODS:
            raise ConfigError(
                f"calibration must be one of {', '.join(CALIBRATION_METHODS)}, got {calibration!r}"
            )
        if embedding_components < 1:
            raise ConfigError(f"embedding_components must be a positive integer, got {embedding_components}")
        if tolerance is not None and (kind != "continuous" or not tolerance > 0):
            raise ConfigError(
                f"tolerance is a positive number for continuous labels, got {tolerance!r} with kind {kind!r}"
            )
        self.kind = kind
        self.feature_config = features or FeatureConfig()
        self.coverage = float(coverage)
        self.models = tuple(models)
        self.cv_folds = int(cv_folds)
        self.calibration_share = float(calibration_share)
        self.calibration = calibration
        self.embedding_components = int(embedding_components)
        self.tolerance = None if tolerance is None else float(tolerance)
        self.seed = int(seed)
        # Fitted state (None until fit).
        self.schema: FeatureSchema | None = None
        self.classes: list[Any] = []
        self.estimator: Any = None
        self.conformal: Any = None
        self.scale_model: Any = None
        self.calibration_scores: np.ndarray | None = None
        self.report: FitReport | None = None
        # Ids of the records fitting used (train and calibration): a SuperICL judge refuses in-context
        # examples among them, whose proxy predictions would be in-sample.
        self.fitted_ids: tuple[str, ...] = ()

    # -- parameters, for persistence ----------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "coverage": self.coverage,
            "models": list(self.models),
            "cv_folds": self.cv_folds,
            "calibration_share": self.calibration_share,
            "calibration": self.calibration,
            "embedding_components": self.embedding_components,
            "tolerance": self.tolerance,
            "seed": self.seed,
        }

    @property
    def is_classifier(self) -> bool:
        return self.kind != "continuous"

    # -- fitting ------------------------------------------------------------------------------------
    def fit(
        self,
        results: Results | str | os.PathLike[str],
        labels: Mapping[str, Any],
        *,
        versus: Results | str | os.PathLike[str] | None = None,
        runtime: EmbeddingRuntime | None = None,
        draw_label: Any = None,
        missing_labels: Literal["error", "skip"] = "error",
    ) -> FitReport:
        """Fit on result records (A) and their judge ``labels`` ({id: label}); with ``versus`` (B), on
        pairs A against B joined on id. Returns the :class:`FitReport` (also kept as ``report``)."""
        table, config = self._features(results, versus, runtime, self.feature_config)
        return self.fit_table(
            table, labels, draw_label=draw_label, missing_labels=missing_labels, feature_config=config
        )

    def fit_table(
        self,
        table: FeatureTable,
        labels: Mapping[str, Any] | Sequence[Any],
        *,
        draw_label: Any = None,
        missing_labels: Literal["error", "skip"] = "error",
        feature_config: FeatureConfig | None = None,
    ) -> FitReport:
        """Fit on a ready :class:`FeatureTable`; ``labels`` by id, or a sequence in the table's order.

        ``feature_config`` is the config the table was computed with (by default the predictor's own):
        it is stored, so that :meth:`predict` on results computes the same features.
        """
        from sklearn.model_selection import train_test_split

        if self.kind == "pairwise" and not table.pairwise:
            raise ConfigError(
                "kind 'pairwise' needs features of pairs of outputs: pass versus=B (--versus B)"
            )
        if not table.names:
            raise ConfigError(
                "there are no features to fit on; name metric columns, text fields or embeddings"
            )
        if not isinstance(labels, Mapping):
            if isinstance(labels, str) or len(labels) != len(table):
                raise ConfigError(f"labels must be {{id: label}} or one label per record ({len(table)})")
            labels = dict(zip(table.ids, labels, strict=True))
        aligned = align_labels(table.ids, labels, missing=missing_labels)
        labelled = table.subset(aligned.present)
        values = [value for value, present in zip(aligned.values, aligned.present, strict=True) if present]
        encoded = encode_labels(values, labelled.ids, self.kind, draw_label=draw_label)
        used = labelled.subset(encoded.keep)
        report_labels = aligned.report
        report_labels.draws = encoded.draws
        report_labels.used = len(used)
        target = encoded.target
        self._check_enough(target, encoded.classes)
        rows = np.arange(len(used))
        train_rows, calibration_rows = train_test_split(
            rows,
            test_size=self.calibration_share,
            random_state=self.seed,
            stratify=target if self.is_classifier else None,
        )
        x_train, y_train = used.values[train_rows], target[train_rows]
        x_cal, y_cal = used.values[calibration_rows], target[calibration_rows]
        cv_scores, chosen, selection = self._select(used.names, x_train, y_train, len(encoded.classes))
        self.classes = list(encoded.classes)
        self.fitted_ids = tuple(str(record_id) for record_id in used.ids)
        config = feature_config or self.feature_config
        self.schema = FeatureSchema(config, used.names, used.pairwise, dict(used.metric_hashes))
        holdout = self._fit_final(used.names, chosen, x_train, y_train, x_cal, y_cal)
        self.report = FitReport(
            kind=self.kind,
            classes=self.classes,
            model=chosen,
            selection=selection,
            cv=cv_scores,
            labels=report_labels,
            train=len(train_rows),
            calibration=len(calibration_rows),
            coverage=self.coverage,
            holdout=holdout,
        )
        return self.report

    def _features(
        self,
        results: Results | str | os.PathLike[str],
        versus: Results | str | os.PathLike[str] | None,
        runtime: EmbeddingRuntime | None,
        config: FeatureConfig,
    ) -> tuple[FeatureTable, FeatureConfig]:
        first = load_results(results)
        if config.metric_columns is None:
            config = FeatureConfig(
                metric_columns=tuple(first.score_columns),
                text_fields=config.text_fields,
                context_fields=config.context_fields,
                embedding_fields=config.embedding_fields,
                embedding_model=config.embedding_model,
            )
        table = results_features(first, config, runtime=runtime)
        if versus is not None:
            table = pairwise_table(table, results_features(versus, config, runtime=runtime), config)
        return table, config

    def _check_enough(self, target: np.ndarray, classes: Sequence[Any]) -> None:
        needed = 2 * self.cv_folds
        if self.is_classifier:
            counts = np.bincount(target, minlength=len(classes))
            small = [(classes[i], int(count)) for i, count in enumerate(counts) if count < needed]
            if small:
                shown = ", ".join(f"{value!r}: {count}" for value, count in small)
                raise ConfigError(
                    f"each judge label needs at least {needed} labelled records ({self.cv_folds} folds, "
                    f"plus a calibration split); too few for {shown}"
                )
        elif target.size < 4 * needed:
            raise ConfigError(
                f"continuous labels need at least {4 * needed} labelled records, got {target.size}"
            )

    def _candidates(self, names: Sequence[str], x: np.ndarray) -> dict[str, Any]:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        from sklearn.linear_model import LogisticRegression, Ridge

        candidates: dict[str, Any] = {}
        if "linear" in self.models:
            for strength in (1.0, 0.1) if self.is_classifier else (1.0, 10.0):
                if self.is_classifier:
                    name, model = f"linear(C={strength:g})", LogisticRegression(C=strength, max_iter=5000)
                else:
                    name, model = f"linear(alpha={strength:g})", Ridge(alpha=strength)
                candidates[name] = self._pipeline(names, x, model, scale=True)
        if "gradient_boosting" in self.models:
            options = {
                "max_iter": 200,
                "learning_rate": 0.05,
                "max_leaf_nodes": 15,
                "min_samples_leaf": 20,
                "l2_regularization": 1.0,
                "early_stopping": False,
                "random_state": self.seed,
            }
            booster = (
                HistGradientBoostingClassifier(**options)
                if self.is_classifier
                else HistGradientBoostingRegressor(**options)
            )
            candidates["gradient_boosting"] = self._pipeline(names, x, booster, scale=False)
        return candidates

    def _pipeline(self, names: Sequence[str], x: np.ndarray, model: Any, *, scale: bool) -> Any:
        """Impute, reduce each embedding block by PCA, (scale), model. A block that is constant in
        ``x`` (every record shares its prompt) carries nothing and is dropped, as PCA cannot fit it."""
        from sklearn.compose import ColumnTransformer
        from sklearn.decomposition import PCA
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        steps: list[tuple[str, Any]] = [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True))
        ]
        blocks = embedding_blocks(names)
        if blocks:
            reducers = [
                (
                    f"pca_{i}",
                    PCA(n_components=min(self.embedding_components, len(columns)), random_state=self.seed)
                    if np.nanmax(np.nanvar(x[:, columns], axis=0)) > 0
                    else "drop",
                    columns,
                )
                for i, columns in enumerate(blocks.values())
            ]
            steps.append(("reduce", ColumnTransformer(reducers, remainder="passthrough")))
        if scale:
            steps.append(("scale", StandardScaler()))
        steps.append(("model", model))
        return Pipeline(steps)

    def _folds(self) -> Any:
        from sklearn.model_selection import KFold, StratifiedKFold

        folds = StratifiedKFold if self.is_classifier else KFold
        return folds(n_splits=self.cv_folds, shuffle=True, random_state=self.seed)

    def _select(
        self, names: Sequence[str], x: np.ndarray, y: np.ndarray, n_classes: int
    ) -> tuple[dict[str, dict[str, float]], str, str]:
        from sklearn.model_selection import cross_validate

        if self.is_classifier:
            scoring = {"log_loss": "neg_log_loss", "accuracy": "accuracy"}
            if n_classes == 2:
                scoring["roc_auc"] = "roc_auc"
            selection = f"{self.cv_folds}-fold cross-validated log loss"
        else:
            scoring = {"rmse": "neg_root_mean_squared_error", "mae": "neg_mean_absolute_error"}
            selection = f"{self.cv_folds}-fold cross-validated RMSE"
        scores: dict[str, dict[str, float]] = {}
        for name, pipeline in self._candidates(names, x).items():
            result = cross_validate(pipeline, x, y, cv=self._folds(), scoring=scoring)
            # sklearn scorers are "higher is better": losses come negated.
            scores[name] = {
                key: float(np.mean(result[f"test_{key}"]))
                * (-1.0 if key in ("log_loss", "rmse", "mae") else 1.0)
                for key in scoring
            }
        primary = "log_loss" if self.is_classifier else "rmse"
        chosen = min(scores, key=lambda name: scores[name][primary])
        return scores, chosen, selection

    def _fit_final(
        self,
        names: Sequence[str],
        chosen: str,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_cal: np.ndarray,
        y_cal: np.ndarray,
    ) -> dict[str, float]:
        from scipy.stats import spearmanr
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.ensemble import HistGradientBoostingRegressor
        from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
        from sklearn.model_selection import cross_val_predict

        pipeline = self._candidates(names, x_train)[chosen]
        if self.is_classifier:
            method = self.calibration
            if method == "auto":
                method = "sigmoid" if len(self.classes) == 2 else "temperature"
            # ensemble=False: calibrate on out-of-fold predictions, then keep one model refit on all the
            # training rows (a fifth of the size on disk, and of the prediction time, of an ensemble).
            self.estimator = CalibratedClassifierCV(
                pipeline, method=method, cv=self._folds(), ensemble=False
            ).fit(x_train, y_train)
            self.conformal = conformalize_classifier(self.estimator, x_cal, y_cal, coverage=self.coverage)
            probabilities = self.estimator.predict_proba(x_cal)
            sets = prediction_sets(self.conformal, x_cal)
            holdout = {
                "accuracy": float(accuracy_score(y_cal, probabilities.argmax(axis=1))),
                "log_loss": float(log_loss(y_cal, probabilities, labels=list(range(len(self.classes))))),
            }
            if len(self.classes) == 2:
                holdout["roc_auc"] = float(roc_auc_score(y_cal, probabilities[:, 1]))
            holdout["mean_confidence"] = float(probabilities.max(axis=1).mean())
            holdout["set_size"] = float(sets.sum(axis=1).mean())
            holdout["set_coverage"] = set_coverage(sets, y_cal)
            return holdout
        self.estimator = pipeline.fit(x_train, y_train)
        self.conformal = conformalize_regressor(self.estimator, x_cal, y_cal, coverage=self.coverage)
        # A second model predicts each record's residual size, so confidence can vary by record.
        out_of_fold = cross_val_predict(
            self._candidates(names, x_train)[chosen], x_train, y_train, cv=self._folds()
        )
        scale = HistGradientBoostingRegressor(
            loss="poisson", max_iter=100, learning_rate=0.05, min_samples_leaf=20, random_state=self.seed
        )
        self.scale_model = self._pipeline(names, x_train, scale, scale=False).fit(
            x_train, np.abs(y_train - out_of_fold)
        )
        predicted = self.estimator.predict(x_cal)
        self.calibration_scores = np.abs(y_cal - predicted) / self._scale(x_cal)
        intervals = prediction_intervals(self.conformal, x_cal)
        holdout = {
            "mae": float(np.abs(y_cal - predicted).mean()),
            "rmse": float(math.sqrt(np.mean((y_cal - predicted) ** 2))),
            "spearman": float(spearmanr(y_cal, predicted).statistic)
            if np.ptp(predicted) > 0
            else float("nan"),
            "interval_width": float((intervals[:, 1] - intervals[:, 0]).mean()),
            "interval_coverage": interval_coverage(intervals, y_cal),
        }
        if self.tolerance is not None:
            holdout["agreement_within_tolerance"] = float(
                (np.abs(y_cal - predicted) <= self.tolerance).mean()
            )
        return holdout

    def _scale(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(np.asarray(self.scale_model.predict(x), dtype=np.float64), 1e-9)

    # -- predicting ---------------------------------------------------------------------------------
    def features(
        self,
        results: Results | str | os.PathLike[str],
        *,
        versus: Results | str | os.PathLike[str] | None = None,
        runtime: EmbeddingRuntime | None = None,
    ) -> FeatureTable:
        """The features of ``results`` (against ``versus``) as the proxy was trained on, checked."""
        schema = self._fitted_schema()
        table, _ = self._features(results, versus, runtime, schema.config)
        schema.check(table)
        return table

    def predict(
        self,
        results: Results | str | os.PathLike[str],
        *,
        versus: Results | str | os.PathLike[str] | None = None,
        runtime: EmbeddingRuntime | None = None,
    ) -> Predictions:
        """The judge's predicted label for each record of ``results`` (against ``versus``)."""
        return self.predict_table(self.features(results, versus=versus, runtime=runtime))

    def predict_table(self, table: FeatureTable) -> Predictions:
        """Predictions for a ready :class:`FeatureTable` (checked against the training schema)."""
        self._fitted_schema().check(table)
        x = table.values
        if self.is_classifier:
            probabilities = np.asarray(self.estimator.predict_proba(x), dtype=np.float64)
            best = probabilities.argmax(axis=1)
            expected = None
            if self.kind == "ordinal":
                expected = probabilities @ np.asarray(self.classes, dtype=np.float64)
            return Predictions(
                table.ids,
                self.kind,
                [self.classes[i] for i in best],
                probabilities.max(axis=1),
                self.coverage,
                classes=list(self.classes),
                probabilities=probabilities,
                sets=prediction_sets(self.conformal, x),
                expected=expected,
            )
        predicted = np.asarray(self.estimator.predict(x), dtype=np.float64)
        confidence = np.full(len(table), np.nan)
        if self.tolerance is not None and self.calibration_scores is not None:
            confidence = agreement_probability(self._scale(x), self.tolerance, self.calibration_scores)
        return Predictions(
            table.ids,
            self.kind,
            predicted.tolist(),
            confidence,
            self.coverage,
            intervals=prediction_intervals(self.conformal, x),
        )

    # -- cascades -----------------------------------------------------------------------------------
    def cascade(
        self,
        results: Results | str | os.PathLike[str],
        *,
        versus: Results | str | os.PathLike[str] | None = None,
        runtime: EmbeddingRuntime | None = None,
        budget: float | None = None,
        target_agreement: float | None = None,
    ) -> CascadePlan:
        """Which records still need the judge (see :func:`proxies.cascade.plan_cascade`)."""
        return self.cascade_predictions(
            self.predict(results, versus=versus, runtime=runtime),
            budget=budget,
            target_agreement=target_agreement,
        )

    def cascade_predictions(
        self, predictions: Predictions, *, budget: float | None = None, target_agreement: float | None = None
    ) -> CascadePlan:
        """A cascade plan from predictions already made."""
        if np.isnan(predictions.confidence).any():
            raise ConfigError(
                "a cascade over continuous labels needs a tolerance: fit with tolerance=... (--tolerance)"
            )
        return plan_cascade(
            predictions.ids, predictions.confidence, budget=budget, target_agreement=target_agreement
        )

    # -- persistence --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Write the fitted proxy to ``path``, a zip archive (the format: :mod:`proxies.archive`)."""
        if self.schema is None or self.estimator is None or self.report is None:
            raise ConfigError("only a fitted JudgePredictor can be saved: call fit() first")
        meta = {
            "params": self.params(),
            "classes": self.classes,
            "schema": self.schema.to_dict(),
            "report": self.report.to_dict(),
            "fitted_ids": list(self.fitted_ids),
        }
        payload = {
            "estimator": self.estimator,
            "conformal": self.conformal,
            "scale_model": self.scale_model,
            "calibration_scores": self.calibration_scores,
        }
        return write_archive(path, meta, payload)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> JudgePredictor:
        """Read a proxy written by :meth:`save`, executing no code from the file.

        Raises :class:`proxies.archive.UnsafeModelFileError` for a file evalsuite did not write or
        that would build a type outside the allow-list, and :class:`ConfigError` when it was written
        with another scikit-learn or MAPIE version.
        """
        source = pathlib.Path(path)
        meta, payload = read_archive(source)
        return cls._from_archive(source, meta, payload)

    @classmethod
    def _from_archive(cls, source: pathlib.Path, meta: Mapping[str, Any], payload: Any) -> JudgePredictor:
        expected = {"estimator", "conformal", "scale_model", "calibration_scores"}
        if not isinstance(payload, dict) or set(payload) != expected:
            raise UnsafeModelFileError(f"{source}: {MODEL_MEMBER} does not hold a judge proxy's objects")
        try:
            params = dict(meta["params"])
            schema = FeatureSchema.from_dict(meta["schema"])
            report = FitReport.from_dict(meta["report"])
            predictor = cls(**params, features=schema.config)
        except (KeyError, TypeError, ValueError) as error:
            raise UnsafeModelFileError(
                f"{source}: {META_MEMBER} is incomplete or malformed ({error})"
            ) from error
        predictor.schema = schema
        predictor.classes = list(meta.get("classes", []))
        predictor.report = report
        predictor.fitted_ids = tuple(str(record_id) for record_id in meta.get("fitted_ids", []))
        predictor.estimator = payload["estimator"]
        predictor.conformal = payload["conformal"]
        predictor.scale_model = payload["scale_model"]
        scores = payload["calibration_scores"]
        predictor.calibration_scores = None if scores is None else np.asarray(scores, dtype=np.float64)
        n_features = getattr(predictor.estimator, "n_features_in_", None)
        if n_features != len(schema.names):
            raise UnsafeModelFileError(
                f"{source}: the model takes {n_features} features but the schema names {len(schema.names)}; "
                "the file is inconsistent"
            )
        if predictor.is_classifier and len(getattr(predictor.estimator, "classes_", [])) != len(
            predictor.classes
        ):
            raise UnsafeModelFileError(f"{source}: the model's classes do not match the file's label classes")
        return predictor

    def _fitted_schema(self) -> FeatureSchema:
        if self.schema is None or self.estimator is None:
            raise ConfigError("this JudgePredictor is not fitted yet: call fit() or load a saved one")
        return self.schema

    def __repr__(self) -> str:
        state = f"model={self.report.model!r}" if self.report else "not fitted"
        return f"JudgePredictor(kind={self.kind!r}, coverage={self.coverage:g}, {state})"
