"""Features from results: metric columns, text statistics, embeddings (fake runtime), pairs."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from evalsuite.errors import ConfigError, InputError
from evalsuite.results import Results
from proxies import (
    TEXT_STATISTICS,
    FeatureConfig,
    pairwise_table,
    results_features,
    table_features,
    text_statistics,
)
from proxies.features import embedding_blocks


def test_text_statistics_count_structure() -> None:
    text = "## Steps\nTo bake:\n1. Mix flour.\n2. Bake it!\n- serve\n\n```python\nprint(1)\n```\nDone."
    stats = dict(zip(TEXT_STATISTICS, text_statistics(text), strict=True))
    assert stats["list_items"] == 3
    assert stats["code_blocks"] == 1
    assert stats["headings"] == 2  # a markdown heading and a "Label:" line
    assert stats["paragraphs"] == 2
    assert stats["ends_cleanly"] == 1.0
    assert stats["log_chars"] == pytest.approx(np.log1p(len(text)))
    assert text_statistics("") == [0.0] * len(TEXT_STATISTICS)
    assert dict(zip(TEXT_STATISTICS, text_statistics("and then the"), strict=True))["ends_cleanly"] == 0.0


def test_results_features_use_every_score_column_by_default() -> None:
    table = pl.DataFrame(
        {
            "id": ["a", "b", "c"],
            "prompt": ["Why?", "How?", None],
            "prediction": ["Because.", "- x\n- y", "ok"],
            "bertscore_f1": [0.9, None, 0.7],
            "pii_total": [0.0, 1.0, 0.0],
        }
    )
    manifest = {"metrics": [{"name": "bertscore", "config_hash": "b1"}, {"name": "pii", "config_hash": "p1"}]}
    results = Results(table, score_columns=["bertscore_f1", "pii_total"], manifest=manifest)
    features = results_features(results, FeatureConfig(context_fields=("prompt",)))
    assert features.ids == ("a", "b", "c")
    assert features.names[:2] == ("bertscore_f1", "pii_total")
    assert features.names[2] == "prompt:log_chars"
    assert len(features.names) == 2 + 2 * len(TEXT_STATISTICS)
    assert np.isnan(features.column("bertscore_f1")[1])  # missing scores stay missing: the model imputes
    assert features.column("prompt:log_chars")[2] == 0.0  # a null text counts as empty
    assert dict(features.metric_hashes) == {"bertscore": "b1", "pii": "p1"}


def test_embeddings_add_blocks_and_cosines(fake_runtime: Any) -> None:
    table = pl.DataFrame({"id": ["a", "b"], "prompt": ["tea time", "sea"], "prediction": ["eat", "soda"]})
    runtime = fake_runtime
    config = FeatureConfig(
        text_fields=("prediction",), context_fields=("prompt",), embedding_fields=("prompt", "prediction")
    )
    features = table_features(table, config, runtime=runtime)
    assert runtime.calls == [("minilm", 2), ("minilm", 2)]
    blocks = embedding_blocks(features.names)
    assert list(blocks) == ["emb:prompt", "emb:prediction"]
    assert all(len(columns) == 6 for columns in blocks.values())
    assert features.names[-1] == "cos:prompt:prediction"
    assert -1.0 <= features.column("cos:prompt:prediction").min() <= 1.0


def test_pairwise_features_keep_the_context_once_and_join_on_id(fake_runtime: Any) -> None:
    config = FeatureConfig(
        metric_columns=("m_s",), context_fields=("prompt",), embedding_fields=("prompt", "prediction")
    )
    runtime = fake_runtime
    a = table_features(
        pl.DataFrame(
            {
                "id": ["x", "y"],
                "prompt": ["p1", "p2"],
                "prediction": ["short", "a longer one"],
                "m_s": [0.1, 0.2],
            }
        ),
        config,
        runtime=runtime,
    )
    b = table_features(
        pl.DataFrame(
            {
                "id": ["y", "x"],
                "prompt": ["p2", "p1"],
                "prediction": ["tiny", "also long-ish"],
                "m_s": [0.5, 0.7],
            }
        ),
        config,
        runtime=runtime,
    )
    pairs = pairwise_table(a, b, config)
    assert pairs.pairwise
    assert pairs.ids == ("x", "y")
    assert "prompt:log_chars" in pairs.names
    assert "a:prompt:log_chars" not in pairs.names
    assert "emb:prompt:0" in pairs.names
    assert "diff:emb:prediction:0" in pairs.names
    assert pairs.column("diff:m_s").tolist() == pytest.approx([0.6, 0.3])
    assert pairs.column("b:m_s").tolist() == [0.7, 0.5]
    assert "a:cos:prompt:prediction" in pairs.names
    assert pairs.names[-1] == "cos:a.prediction:b.prediction"
    assert set(embedding_blocks(pairs.names)) == {
        "emb:prompt",
        "a:emb:prediction",
        "b:emb:prediction",
        "diff:emb:prediction",
    }


def test_pairs_with_mismatched_ids_or_configs_are_refused() -> None:
    config = FeatureConfig(metric_columns=("m_s",), text_fields=())
    a = table_features(pl.DataFrame({"id": ["x", "y", "z"], "m_s": [0.1, 0.2, 0.3]}), config)
    b = table_features(pl.DataFrame({"id": ["x", "w"], "m_s": [0.1, 0.2]}), config)
    with pytest.raises(InputError, match=r"2 id\(s\) only in A \('y', 'z'\) and 1 only in B \('w'\)"):
        pairwise_table(a, b, config)
    a_hashed = a.__class__(a.ids, a.names, a.values, {"m": "h1"})
    b_hashed = a.__class__(a.ids, a.names, a.values, {"m": "h2"})
    with pytest.raises(ConfigError, match="metric 'm' was computed with different configs in A"):
        pairwise_table(a_hashed, b_hashed, config)


def test_bad_inputs_name_the_field_or_record() -> None:
    with pytest.raises(ConfigError, match="no 'prompt' field"):
        table_features(
            pl.DataFrame({"id": ["a"], "prediction": ["x"]}), FeatureConfig(context_fields=("prompt",))
        )
    with pytest.raises(InputError, match=r"1 duplicated id value\(s\) \('a'\)"):
        table_features(pl.DataFrame({"id": ["a", "a"], "prediction": ["x", "y"]}), FeatureConfig())
    with pytest.raises(InputError, match="record 0: field 'prediction' must hold text, got int"):
        table_features(pl.DataFrame({"id": ["a", "b"], "prediction": [1, 2]}), FeatureConfig())
    res = Results(pl.DataFrame({"id": ["a"], "m_s": [0.5]}), score_columns=["m_s"])
    with pytest.raises(ConfigError, match=r"lack the score column\(s\) \['m_t'\]"):
        results_features(res, FeatureConfig(metric_columns=("m_t",), text_fields=()))
    with pytest.raises(ConfigError, match="embedding_fields must be text or context fields"):
        FeatureConfig(embedding_fields=("source",))
    with pytest.raises(ConfigError, match="must be a sequence of names, got the string 'prompt'"):
        FeatureConfig(context_fields="prompt")  # type: ignore[arg-type]


def test_feature_config_round_trips_through_a_dict() -> None:
    config = FeatureConfig(metric_columns=("m_s",), context_fields=("prompt",), embedding_fields=("prompt",))
    assert FeatureConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown feature config keys"):
        FeatureConfig.from_dict({"colour": "red"})
