"""Saved proxies: a round trip gives the same predictions; loading executes no code from the file;
mismatched feature schemas and metric configs are refused."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import skops.io

from evalsuite.errors import ConfigError
from evalsuite.results import Results
from proxies import (
    FeatureConfig,
    FeatureSchemaError,
    FeatureTable,
    JudgePredictor,
    load_predictor,
    save_predictor,
)
from proxies.persistence import ALLOWED_TYPES, META_MEMBER, MODEL_MEMBER, UnsafeModelFileError, read_meta

Maker = Callable[..., tuple[FeatureTable, np.ndarray]]
MARKER_ENV = "EVALSUITE_PROXY_TEST_MARKER"


class Exploit:
    """Pickling this runs code on load: it creates the marker file named by the environment."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f'touch "${MARKER_ENV}"',))


class Planted:
    """A type no proxy holds; building it would run ``__setstate__``."""

    def __setstate__(self, state: dict[str, object]) -> None:
        Path(os.environ[MARKER_ENV]).touch()


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "code-ran"
    monkeypatch.setenv(MARKER_ENV, str(path))
    return path


@pytest.fixture
def saved(tmp_path: Path, make_binary: Maker) -> tuple[Path, JudgePredictor, FeatureTable]:
    table, labels = make_binary(600, seed=31)
    proxy = JudgePredictor(kind="binary", cv_folds=3)
    proxy.fit_table(table, labels)
    path = save_predictor(proxy, tmp_path / "judge.proxy")
    return path, proxy, table


def rewrite(path: Path, *, meta: dict[str, object] | None = None, model: bytes | None = None) -> Path:
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if meta is not None:
        members[META_MEMBER] = json.dumps(meta).encode()
    if model is not None:
        members[MODEL_MEMBER] = model
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_round_trip_gives_the_same_predictions(saved: tuple[Path, JudgePredictor, FeatureTable]) -> None:
    path, proxy, table = saved
    loaded = JudgePredictor.load(path)
    before, after = proxy.predict_table(table), loaded.predict_table(table)
    assert np.array_equal(before.probabilities, after.probabilities)  # type: ignore[arg-type]
    assert np.array_equal(before.sets, after.sets)  # type: ignore[arg-type]
    assert loaded.report is not None
    assert loaded.report.to_dict() == proxy.report.to_dict()
    meta = read_meta(path)
    assert meta["versions"]["scikit-learn"] == "1.9.1"
    assert meta["schema"]["names"] == ["m_0", "m_1", "m_2"]
    assert meta["params"]["kind"] == "binary"


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("ordinal", {"models": ("linear",)}),
        ("binary", {"models": ("gradient_boosting",)}),
        ("continuous", {"tolerance": 0.5}),
        ("binary", {"models": ("linear",), "calibration": "isotonic"}),
    ],
)
def test_every_kind_saves_only_allowed_types(tmp_path: Path, kind: str, options: dict[str, object]) -> None:
    rng = np.random.default_rng(32)
    x = rng.normal(size=(300, 2))
    labels = {
        "ordinal": np.digitize(x[:, 0], [-0.5, 0.5]),
        "continuous": x[:, 0],
        "binary": (x[:, 0] > 0).astype(int),
    }[kind]
    table = FeatureTable(tuple(map(str, range(300))), ("m_a", "emb:prediction:0"), x)
    proxy = JudgePredictor(kind=kind, cv_folds=3, **options)  # type: ignore[arg-type]
    proxy.fit_table(table, labels.tolist())
    path = proxy.save(tmp_path / "p.proxy")
    with zipfile.ZipFile(path) as archive:
        assert set(skops.io.get_untrusted_types(data=archive.read(MODEL_MEMBER))) <= ALLOWED_TYPES
    assert np.allclose(
        JudgePredictor.load(path).predict_table(table).confidence,
        proxy.predict_table(table).confidence,
        equal_nan=True,
    )


def test_a_pickle_is_never_loaded(tmp_path: Path, marker: Path) -> None:
    crafted = tmp_path / "judge.proxy"
    crafted.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(
        UnsafeModelFileError, match=r"not a judge proxy file.*pickles and other formats are never loaded"
    ):
        load_predictor(crafted)
    assert not marker.exists()


def test_a_pickle_inside_the_archive_is_never_loaded(
    saved: tuple[Path, JudgePredictor, FeatureTable], marker: Path
) -> None:
    path, _, _ = saved
    rewrite(path, model=pickle.dumps(Exploit()))
    with pytest.raises(UnsafeModelFileError, match=f"{MODEL_MEMBER} is not a valid skops file"):
        load_predictor(path)
    assert not marker.exists()


@pytest.mark.parametrize("planted", ["function", "class"])
def test_types_outside_the_allow_list_are_refused_before_anything_is_built(
    saved: tuple[Path, JudgePredictor, FeatureTable], marker: Path, planted: str
) -> None:
    path, proxy, _ = saved
    payload = {
        "estimator": proxy.estimator,
        "conformal": os.system if planted == "function" else Planted(),
        "scale_model": None,
        "calibration_scores": None,
    }
    rewrite(path, model=skops.io.dumps(payload))
    expected = r"posix\.system|os\.system" if planted == "function" else "Planted"
    with pytest.raises(UnsafeModelFileError, match=f"refusing to load.*({expected})"):
        load_predictor(path)
    assert not marker.exists()


def test_other_library_versions_and_formats_are_refused(
    saved: tuple[Path, JudgePredictor, FeatureTable],
) -> None:
    path, _, _ = saved
    meta = read_meta(path)
    rewrite(path, meta={**meta, "versions": {**meta["versions"], "scikit-learn": "1.2.0"}})
    with pytest.raises(ConfigError, match=r"fitted with scikit-learn 1\.2\.0, this environment has 1\.9\.1"):
        load_predictor(path)
    rewrite(path, meta={**meta, "format_version": 99})
    with pytest.raises(ConfigError, match="format version 99"):
        load_predictor(path)
    rewrite(path, meta={**meta, "schema": {**meta["schema"], "names": ["m_0"]}})
    with pytest.raises(UnsafeModelFileError, match="takes 3 features but the schema names 1"):
        load_predictor(path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    other = path.with_name("other.proxy")
    other.write_bytes(buffer.getvalue())
    with pytest.raises(UnsafeModelFileError, match=r"lacks meta\.json or model\.skops"):
        load_predictor(other)


def test_mismatched_feature_schemas_are_refused(saved: tuple[Path, JudgePredictor, FeatureTable]) -> None:
    path, _, table = saved
    loaded = load_predictor(path)
    renamed = FeatureTable(table.ids, ("m_0", "m_1", "m_9"), table.values)
    with pytest.raises(FeatureSchemaError, match=r"1 missing \(m_2\), 1 unexpected \(m_9\)"):
        loaded.predict_table(renamed)
    reordered = FeatureTable(table.ids, ("m_1", "m_0", "m_2"), table.values)
    with pytest.raises(FeatureSchemaError, match="same names in another order"):
        loaded.predict_table(reordered)
    paired = FeatureTable(table.ids, table.names, table.values, pairwise=True)
    with pytest.raises(FeatureSchemaError, match="trained on single outputs"):
        loaded.predict_table(paired)


def results_with(values: np.ndarray, config_hash: str) -> Results:
    n = values.shape[0]
    table = pl.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "prediction": ["An answer."] * n,
            "m_a": values[:, 0],
            "m_b": values[:, 1],
        }
    )
    manifest = {"metrics": [{"name": "m", "config": {"k": config_hash}, "config_hash": config_hash}]}
    return Results(table, score_columns=["m_a", "m_b"], manifest=manifest)


def test_results_scored_with_another_metric_config_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(33)
    x = rng.normal(size=(400, 2))
    labels = {f"r{i}": int(value > 0) for i, value in enumerate(x[:, 0] + 0.3 * rng.normal(size=400))}
    proxy = JudgePredictor(
        kind="binary", models=("linear",), cv_folds=3, features=FeatureConfig(text_fields=())
    )
    proxy.fit(results_with(x, "cfg-1"), labels)
    loaded = load_predictor(proxy.save(tmp_path / "p.proxy"))
    assert loaded.schema is not None
    assert loaded.schema.metric_hashes == {"m": "cfg-1"}
    assert len(loaded.predict(results_with(x, "cfg-1"))) == 400
    with pytest.raises(
        FeatureSchemaError,
        match=r"metric 'm' was scored with config hash cfg-2.*trained on scores with config hash cfg-1",
    ):
        loaded.predict(results_with(x, "cfg-2"))
    without = Results(results_with(x, "cfg-1").table.drop("m_b"), score_columns=["m_a"])
    with pytest.raises(ConfigError, match=r"lack the score column\(s\) \['m_b'\]"):
        loaded.predict(without)


def test_embedding_features_round_trip_through_results(tmp_path: Path, fake_runtime: Any) -> None:
    rng = np.random.default_rng(34)
    words = ["tea", "sea", "oat", "toast", "idea", "east", "site", "iota"]
    n = 300
    texts = [" ".join(rng.choice(words, size=4)) for _ in range(n)]
    table = pl.DataFrame(
        {"id": [f"r{i}" for i in range(n)], "prompt": ["Say words."] * n, "prediction": texts}
    )
    results = Results(table, score_columns=[])
    labels = {f"r{i}": int(text.count("t") > 4) for i, text in enumerate(texts)}
    config = FeatureConfig(context_fields=("prompt",), embedding_fields=("prompt", "prediction"))
    proxy = JudgePredictor(kind="binary", features=config, cv_folds=3, embedding_components=3)
    report = proxy.fit(results, labels, runtime=fake_runtime)  # one prompt: its block is dropped
    assert report.holdout["accuracy"] > 0.9  # the letter counts carry the label
    loaded = load_predictor(proxy.save(tmp_path / "p.proxy"))
    assert loaded.schema is not None
    assert loaded.schema.config == FeatureConfig(
        metric_columns=(), context_fields=("prompt",), embedding_fields=("prompt", "prediction")
    )
    again = loaded.predict(results, runtime=fake_runtime)
    assert np.array_equal(again.confidence, proxy.predict(results, runtime=fake_runtime).confidence)
