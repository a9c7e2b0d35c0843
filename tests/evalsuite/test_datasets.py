"""The data directory comes from the caller or $EVALSUITE_DATA, with a clear error otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalsuite.datasets import DATA_ENV, resolve_data_dir
from evalsuite.errors import ConfigError


def test_explicit_path_wins_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV, "/somewhere/else")
    assert resolve_data_dir(tmp_path) == tmp_path


def test_environment_is_used_when_no_path_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert resolve_data_dir() == tmp_path


def test_missing_directory_or_files_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(ConfigError, match="pass --data DIR or set EVALSUITE_DATA"):
        resolve_data_dir()
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_data_dir(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"sts/test\.csv"):
        resolve_data_dir(tmp_path, needs=["sts/test.csv"])
