"""Tests of evalsuite.cache: the SQLite score cache."""

from __future__ import annotations

import math
import multiprocessing
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from evalsuite.cache import ScoreCache, default_cache_path


@pytest.fixture
def cache(tmp_path: pathlib.Path) -> Iterator[ScoreCache]:
    with ScoreCache(tmp_path / "sub" / "scores.sqlite") as opened:
        yield opened


def test_default_cache_path_env_override(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_path() == tmp_path / "c" / "scores.sqlite"
    monkeypatch.delenv("EVALSUITE_CACHE_DIR")
    assert default_cache_path().name == "scores.sqlite"
    assert "evalsuite" in str(default_cache_path().parent)


def test_default_path_is_used(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "new"))
    with ScoreCache() as cache:
        cache.put_many("c", {"k": {"v": 1.0}})
    assert (tmp_path / "new" / "scores.sqlite").is_file()


def test_round_trip_and_missing_keys(cache: ScoreCache) -> None:
    cache.put_many("cfg", {"a": {"f1": 0.5}, "b": {"f1": 0.25, "p": 1.0}})
    assert cache.get_many("cfg", ["a", "b", "zzz", "a"]) == {"a": {"f1": 0.5}, "b": {"f1": 0.25, "p": 1.0}}
    assert cache.get_many("other", ["a"]) == {}
    assert cache.get_many("cfg", []) == {}


def test_values_nan_none_lists_dicts(cache: ScoreCache) -> None:
    value = {
        "score": float("nan"),
        "missing": None,
        "tokens": [0.1, float("inf"), None],
        "nested": {"k": [1]},
    }
    cache.put_many("cfg", {"r": value})
    got = cache.get_many("cfg", ["r"])["r"]
    assert math.isnan(got["score"])
    assert got["missing"] is None
    assert got["tokens"] == [0.1, float("inf"), None]
    assert got["nested"] == {"k": [1]}


def test_numpy_values_are_stored_as_plain_numbers(cache: ScoreCache) -> None:
    np = pytest.importorskip("numpy")
    cache.put_many("cfg", {"r": {"f1": np.float32(0.5), "vec": np.array([1.0, 2.0])}})
    assert cache.get_many("cfg", ["r"]) == {"r": {"f1": 0.5, "vec": [1.0, 2.0]}}


def test_put_replaces_existing(cache: ScoreCache) -> None:
    cache.put_many("cfg", {"a": {"f1": 0.1}})
    cache.put_many("cfg", {"a": {"f1": 0.9}})
    assert cache.get_many("cfg", ["a"]) == {"a": {"f1": 0.9}}
    assert cache.stats()["entries"] == 1


def test_more_keys_than_one_batch(cache: ScoreCache) -> None:
    values = {f"k{i}": {"i": i} for i in range(1234)}
    cache.put_many("cfg", values)
    keys = [f"k{i}" for i in range(0, 1300)]
    got = cache.get_many("cfg", keys)
    assert got == values


def test_clear_and_stats(cache: ScoreCache) -> None:
    cache.put_many("c1", {f"k{i}": {"v": i} for i in range(5)})
    cache.put_many("c2", {f"k{i}": {"v": i} for i in range(3)})
    stats = cache.stats()
    assert stats["entries"] == 8
    assert stats["configs"] == 2
    assert stats["size_bytes"] > 0
    assert cache.clear("c1") == 5
    assert cache.get_many("c1", ["k0"]) == {}
    assert cache.get_many("c2", ["k0"]) == {"k0": {"v": 0}}
    assert cache.clear() == 3
    assert cache.stats()["entries"] == 0


def test_persists_across_objects_and_close(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "scores.sqlite"
    with ScoreCache(path) as first:
        first.put_many("cfg", {"a": {"v": 1}})
    first.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        first.get_many("cfg", ["a"])
    with ScoreCache(path) as second:
        assert second.get_many("cfg", ["a"]) == {"a": {"v": 1}}


def test_threads_share_one_object(cache: ScoreCache) -> None:
    def work(worker: int) -> None:
        for i in range(50):
            cache.put_many("cfg", {f"t{worker}-{i}": {"v": i}})
            cache.get_many("cfg", [f"t{worker}-{i}"])

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.stats()["entries"] == 200


def _write_rows(path: str, worker: int, count: int, start: Any) -> None:
    # Many small transactions, started together, so the two processes contend for the write lock.
    with ScoreCache(path) as cache:
        start.wait()
        for i in range(count):
            cache.put_many("shared", {f"w{worker}-{i}": {"i": i, "worker": worker}})


@pytest.mark.slow
def test_two_processes_write_concurrently(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "scores.sqlite"
    count = 300
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    processes = [
        context.Process(target=_write_rows, args=(str(path), worker, count, start)) for worker in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0]
    with ScoreCache(path) as cache:
        keys = [f"w{worker}-{i}" for worker in range(2) for i in range(count)]
        got = cache.get_many("shared", keys)
    assert len(got) == 2 * count
    assert got["w1-299"] == {"i": 299, "worker": 1}


# --------------------------------------------------------------------------------------------
# A damaged cache never stops a run


def _damage(path: pathlib.Path, how: str) -> None:
    if how == "directory":
        path.mkdir(parents=True)
        return
    with ScoreCache(path) as cache:  # a real cache with enough pages that damage can be mid-file
        cache.put_many("cfg", {f"key{i}": {"f1": i / 7, "pad": "x" * 200} for i in range(400)})
    data = path.read_bytes()
    if how == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif how == "bad header":
        path.write_bytes(b"\0" * 100 + data[100:])
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 3])
    else:  # garbage pages in the middle: found only when a query reads them
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(range(256)) * ((len(data) - middle) // 256 + 1))


def _open_and_look_up(path: pathlib.Path, keys: list[str]) -> tuple[ScoreCache, dict[str, Any]]:
    cache = ScoreCache(path)
    return cache, cache.get_many("cfg", keys)


@pytest.mark.parametrize("how", ["garbage", "bad header", "truncated", "pages", "directory"])
def test_a_damaged_cache_is_moved_aside_and_the_run_goes_on(tmp_path: pathlib.Path, how: str) -> None:
    path = tmp_path / "scores.sqlite"
    _damage(path, how)
    keys = [f"key{i}" for i in range(400)]
    # Damage is met on opening or on the first lookup that reads a bad page: either way, a warning.
    with pytest.warns(
        RuntimeWarning, match=r"score cache .* was damaged .*moved it to scores\.sqlite\.corrupt-"
    ):
        cache, hits = _open_and_look_up(path, keys)
    with cache:
        assert hits == {}
        cache.put_many("cfg", {"key1": {"f1": 0.5}})
        assert cache.get_many("cfg", keys) == {"key1": {"f1": 0.5}}
    assert any(p.name.startswith("scores.sqlite.corrupt-") for p in tmp_path.iterdir())


def test_a_cache_that_cannot_be_replaced_is_skipped(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "scores.sqlite"
    path.write_bytes(b"not a database" * 100)

    def refuse(*_: object) -> None:
        raise PermissionError("read-only folder")

    monkeypatch.setattr("evalsuite.cache.os.replace", refuse)
    with pytest.warns(RuntimeWarning, match="could not be replaced .*goes on without a cache"):
        cache = ScoreCache(path)
    cache.put_many("cfg", {"a": {"f1": 1.0}})
    assert cache.get_many("cfg", ["a"]) == {}
    assert cache.stats()["entries"] == 0
    cache.close()
    assert path.read_bytes() == b"not a database" * 100


def test_a_locked_cache_is_not_taken_for_a_damaged_one(tmp_path: pathlib.Path) -> None:
    import sqlite3

    path = tmp_path / "scores.sqlite"
    ScoreCache(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        cache = ScoreCache(path)
        cache._connection.execute("PRAGMA busy_timeout = 50")  # type: ignore[union-attr]
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            cache.put_many("cfg", {"a": {"f1": 1.0}})
        cache.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not [p for p in tmp_path.iterdir() if "corrupt" in p.name]
