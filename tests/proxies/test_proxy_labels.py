"""Judge labels: reading files, joining them to records by id, checking them against the kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from evalsuite.errors import ConfigError, InputError
from proxies import align_labels, encode_labels, read_labels


def test_read_labels_from_every_format(tmp_path: Path) -> None:
    rows = [{"id": "q1", "verdict": 2}, {"id": "q2", "verdict": 1}]
    (tmp_path / "l.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    (tmp_path / "l.json").write_text(json.dumps(rows))
    pl.DataFrame(rows).write_csv(tmp_path / "l.csv")
    pl.DataFrame(rows).write_parquet(tmp_path / "l.parquet")
    for name in ("l.jsonl", "l.json", "l.csv", "l.parquet"):
        assert read_labels(tmp_path / name, label_field="verdict") == {"q1": 2, "q2": 1}
    (tmp_path / "n.jsonl").write_text(json.dumps({"uid": 7, "v": "good"}) + "\n")
    assert read_labels(tmp_path / "n.jsonl", label_field="v", id_field="uid") == {"7": "good"}


def test_read_labels_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text('{"id": "q1", "v": 1}\n{"id": "q1", "v": 2}\n')
    with pytest.raises(InputError, match=r"l.jsonl:2: id 'q1' is labelled twice"):
        read_labels(path, label_field="v")
    path.write_text('{"id": "q1", "v": 1}\n{"id": "q2"}\n')
    with pytest.raises(InputError, match=r"l.jsonl:2: the label record has no field 'v'"):
        read_labels(path, label_field="v")
    path.write_text('{"v": 1}\n')
    with pytest.raises(InputError, match=r"l.jsonl:1: the label record has no 'id'"):
        read_labels(path, label_field="v")
    (tmp_path / "l.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"must end in \.jsonl, \.json, \.csv or \.parquet"):
        read_labels(tmp_path / "l.txt", label_field="v")


def test_align_counts_what_it_leaves_out() -> None:
    aligned = align_labels(["a", "b", "c"], {"a": 1, "c": None, "z": 2}, missing="skip")
    assert aligned.present.tolist() == [True, False, False]
    report = aligned.report
    assert (report.records, report.labelled, report.missing_labels, report.extra_labels) == (3, 1, 2, 1)
    assert report.missing_examples == ["b", "c"]
    assert report.extra_examples == ["z"]
    with pytest.raises(
        InputError, match=r"2 of 3 records have no label \(e.g. id 'b', 'c'\); 1 labels name ids"
    ):
        align_labels(["a", "b", "c"], {"a": 1, "c": None, "z": 2})


def test_encode_checks_labels_against_the_kind() -> None:
    ids = ["a", "b", "c", "d"]
    binary = encode_labels([True, False, True, True], ids, "binary")
    assert binary.classes == [False, True]
    assert binary.target.tolist() == [1, 0, 1, 1]
    assert encode_labels(list(np.array([3, 1, 2, 3])), ids, "ordinal").classes == [1, 2, 3]
    assert encode_labels([0.5, 1, 2.5, 3], ids, "continuous").target.dtype == np.float64
    with pytest.raises(InputError, match=r"binary labels need exactly 2 distinct values, got 1: 'x' \(4x\)"):
        encode_labels(["x"] * 4, ids, "binary")
    with pytest.raises(
        InputError, match=r"pairwise labels need 2 to 3 distinct values, got 4.*pass draw_label"
    ):
        encode_labels([0, 1, 2, 3], ids, "pairwise")
    with pytest.raises(InputError, match="ordinal labels need at least 3 distinct values"):
        encode_labels([1, 2, 1, 2], ids, "ordinal")
    with pytest.raises(InputError, match="id 'c': ordinal labels must be finite numbers, got 'high'"):
        encode_labels([1, 2, "high", 3], ids, "ordinal")
    with pytest.raises(InputError, match="id 'b': continuous labels must be finite numbers, got True"):
        encode_labels([1.0, True, 2.0, 3.0], ids, "continuous")
    with pytest.raises(InputError, match="id 'd': a label must be a string, number or boolean, got list"):
        encode_labels([1, 2, 1, [2]], ids, "binary")
    with pytest.raises(InputError, match="labels mix types"):
        encode_labels([1, "2", 1, "2"], ids, "binary")
    with pytest.raises(ConfigError, match="draw_label is for pairwise labels"):
        encode_labels([1, 2, 1, 2], ids, "binary", draw_label=0)


def test_pairwise_draws_are_counted_not_trained_on() -> None:
    encoded = encode_labels([1, 2, 0, 0, 2], list("abcde"), "pairwise", draw_label=0)
    assert encoded.classes == [1, 2]
    assert encoded.draws == 2
    assert encoded.keep.tolist() == [True, True, False, False, True]
    assert encode_labels([1, 2, 0], list("abc"), "pairwise").classes == [0, 1, 2]  # draws as a class
