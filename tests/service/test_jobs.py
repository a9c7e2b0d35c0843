"""JobManager: durable acceptance, one worker, resumable jobs; model-free metrics keep it fast."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from evalsuite.api import Scorer
from evalsuite.errors import ConfigError, InputError
from evalsuite.service.jobs import DATABASE_NAME, OUTPUT_NAME, JobInfo, JobManager, PayloadTooLargeError
from metrics.base import Metric, Scores

if TYPE_CHECKING:
    from evalsuite.runtime import Runtime

CHUNK = 10
METRICS = ["toxicity", "pii"]


class ModelWork(Metric):
    """Stands for a model's work in a job: records the ids it scores and whether the model lock is
    held while it runs, and first runs ``hook(call_number)``.

    A job scorer's last metric, so the hook runs after the job's checks for a stop, as the last
    model work of its chunk: a chunk whose hook returns is committed.
    """

    name = "model_work"
    fields = ("prediction",)
    optional_fields = ("id",)  # the id too, so no two records share a cache key: each is scored
    score_names = ("call",)

    def __init__(self, model_lock: threading.Lock) -> None:
        super().__init__()
        self.model_lock = model_lock
        self.scored: list[str] = []
        self.lock_held: list[bool] = []
        self.hook: Callable[[int], object] | None = None

    def score_batch(self, records: Sequence[Mapping[str, Any]], rt: Runtime) -> Scores:
        self.lock_held.append(self.model_lock.locked())
        if self.hook is not None:
            self.hook(len(self.lock_held))
        self.scored.extend(str(record["id"]) for record in records)
        return {"call": [float(len(self.lock_held))] * len(records)}


class Served:
    """What the app gives a JobManager: one scorer per metric set, kept across jobs, each ending
    with a :class:`ModelWork` (``recorder(metrics)``)."""

    def __init__(self, model_lock: threading.Lock) -> None:
        self.model_lock = model_lock
        self.scorers: dict[tuple[str, ...], Scorer] = {}
        self.recorders: dict[tuple[str, ...], ModelWork] = {}

    def __call__(self, metrics: list[str]) -> Scorer:
        key = tuple(metrics)
        if key not in self.scorers:
            self.recorders[key] = ModelWork(self.model_lock)
            self.scorers[key] = Scorer(
                [*metrics, self.recorders[key]], device="cpu", cache=False, chunk_size=CHUNK
            )
        return self.scorers[key]

    def recorder(self, metrics: list[str]) -> ModelWork:
        self(metrics)
        return self.recorders[tuple(metrics)]


def answers(n: int, *, bad: Sequence[int] = (), prefix: str = "r") -> bytes:
    lines = []
    for i in range(n):
        record: dict[str, Any] = {
            "id": f"{prefix}{i}",
            "prediction": f"Answer number {i}, mail me at a{i}@b.org",
        }
        if i in bad:
            record = {"id": f"{prefix}{i}", "answer": "no prediction field"}
        lines.append(json.dumps(record) + "\n")
    return "".join(lines).encode()


def output_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]


def wait_for(manager: JobManager, job_id: str, timeout: float = 60) -> JobInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = manager.get(job_id)
        assert info is not None
        if info.state in ("succeeded", "failed"):
            return info
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {manager.get(job_id)}")


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def served() -> Served:
    return Served(threading.Lock())


@pytest.fixture
def manager(tmp_path: Path, served: Served, data_root: Path) -> Iterator[JobManager]:
    jobs = JobManager(tmp_path / "jobs", served, served.model_lock, allowed_roots=[data_root])
    jobs.start()
    yield jobs
    jobs.stop()


def test_upload_job_succeeds_with_every_record_once(manager: JobManager, served: Served) -> None:
    job = manager.submit_upload("answers.jsonl", io.BytesIO(answers(35)), metrics=METRICS, on_error="fail")
    assert job.state == "queued"
    assert job.metrics == METRICS
    assert (manager.directory / job.id / "input.jsonl").read_bytes() == answers(35)

    info = wait_for(manager, job.id)

    assert info.state == "succeeded", info.error
    assert (info.records_total, info.records_done, info.errors) == (35, 35, 0)
    assert {row["score"] for row in info.summary or []} >= {"toxicity_overall", "pii_email", "pii_total"}
    email = next(row for row in info.summary or [] if row["score"] == "pii_email")
    assert email["mean"] == pytest.approx(1.0)
    assert output_ids(manager.results_path(job.id)) == [f"r{i}" for i in range(35)]
    assert served.recorder(METRICS).scored == [f"r{i}" for i in range(35)]
    assert info.created_at <= info.updated_at
    assert info.created_at.endswith("+00:00")


def test_model_lock_is_held_per_chunk_only(manager: JobManager, served: Served) -> None:
    served.model_lock.acquire()  # an interactive request holds the models
    job = manager.submit_upload("answers.jsonl", io.BytesIO(answers(25)), metrics=METRICS, on_error="fail")
    time.sleep(0.5)
    info = manager.get(job.id)
    assert info is not None
    assert info.state == "running"
    assert info.records_done == 0  # no chunk can be scored while the lock is held
    served.model_lock.release()

    assert wait_for(manager, job.id).state == "succeeded"
    # The model work of each chunk of 10 ran under the lock, and the job let go of it after each.
    assert served.recorder(METRICS).lock_held == [True, True, True]
    assert not served.model_lock.locked()


def test_a_stop_while_waiting_for_the_models_commits_nothing_and_the_job_resumes(
    tmp_path: Path, served: Served
) -> None:
    jobs_dir = tmp_path / "jobs"
    first = JobManager(jobs_dir, served, served.model_lock)
    first.start()
    recorder = served.recorder(METRICS)
    stopper = threading.Thread(target=first.stop, kwargs={"timeout": 30})
    served.model_lock.acquire()  # an interactive request holds the models
    try:
        job = first.submit_upload("answers.jsonl", io.BytesIO(answers(25)), metrics=METRICS, on_error="fail")
        deadline = time.monotonic() + 30
        while (first.get(job.id) or job).records_total != 25 and time.monotonic() < deadline:
            time.sleep(0.01)  # counted and validated without the lock
        assert (first.get(job.id) or job).state == "running"
        time.sleep(0.2)  # now waiting for the lock at its first model work
        stopper.start()
        while not first._stopping.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        served.model_lock.release()
    stopper.join(30)
    assert not stopper.is_alive()

    assert recorder.scored == []  # stopped before the chunk's model work was done
    assert list((jobs_dir / job.id).glob(f"{OUTPUT_NAME}.partial/part-*.parquet")) == []
    second = JobManager(jobs_dir, served, served.model_lock)
    second.start()
    try:
        info = wait_for(second, job.id)
    finally:
        second.stop()
    assert info.state == "succeeded", info.error
    assert output_ids(jobs_dir / job.id / OUTPUT_NAME) == [f"r{i}" for i in range(25)]
    assert recorder.scored == [f"r{i}" for i in range(25)]


def test_fail_mode_fails_the_job_naming_record_and_field(manager: JobManager, tmp_path: Path) -> None:
    upload = io.BytesIO(answers(30, bad=[5]))
    job = manager.submit_upload("answers.jsonl", upload, metrics=METRICS, on_error="fail")

    info = wait_for(manager, job.id)

    assert info.state == "failed"
    assert info.error is not None
    assert info.error.startswith("answers.jsonl:6: missing required field 'prediction'")
    assert str(tmp_path) not in info.error  # the server's paths stay private
    assert info.summary is None
    with pytest.raises(ConfigError, match="failed, not succeeded"):
        manager.results_path(job.id)


def test_skip_mode_counts_errors_and_scores_the_rest(manager: JobManager) -> None:
    job = manager.submit_upload(
        "answers.jsonl", io.BytesIO(answers(30, bad=[3, 17])), metrics=["toxicity"], on_error="skip"
    )

    info = wait_for(manager, job.id)

    assert info.state == "succeeded", info.error
    assert (info.records_total, info.records_done, info.errors) == (30, 30, 2)
    assert output_ids(manager.results_path(job.id)) == [f"r{i}" for i in range(30) if i not in (3, 17)]
    assert info.summary is not None
    assert info.summary[0]["errors"] == 2


def test_unknown_metric_fails_the_job_with_the_registry_message(manager: JobManager) -> None:
    job = manager.submit_upload(
        "a.jsonl", io.BytesIO(answers(3)), metrics=["no_such_metric"], on_error="fail"
    )

    info = wait_for(manager, job.id)

    assert info.state == "failed"
    assert "no_such_metric" in (info.error or "")


def test_interrupted_job_resumes_with_every_record_once(
    tmp_path: Path, served: Served, data_root: Path
) -> None:
    jobs_dir = tmp_path / "jobs"
    first = JobManager(jobs_dir, served, served.model_lock)
    first.start()
    recorder = served.recorder(METRICS)
    reached = threading.Event()

    def block_third_chunk_until_stopping(call: int) -> None:
        if call == 3:
            reached.set()
            # stop() is waiting for this chunk; the job must end at its boundary, not finish.
            deadline = time.monotonic() + 30
            while not first._stopping.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)

    recorder.hook = block_third_chunk_until_stopping
    job = first.submit_upload("answers.jsonl", io.BytesIO(answers(55)), metrics=METRICS, on_error="skip")
    assert reached.wait(30)
    first.stop()
    recorder.hook = None

    staging = jobs_dir / job.id / f"{OUTPUT_NAME}.partial"
    committed = len(list(staging.glob("part-*.parquet")))
    assert committed == 3
    assert not (jobs_dir / job.id / OUTPUT_NAME).exists()
    # Leave the row as a kill -9 would: still "running".
    with sqlite3.connect(jobs_dir / DATABASE_NAME) as db:
        db.execute("UPDATE jobs SET state='running' WHERE id=?", (job.id,))
    db.close()

    recorder.scored.clear()
    second = JobManager(jobs_dir, served, served.model_lock)
    second.start()
    try:
        info = wait_for(second, job.id)
    finally:
        second.stop()

    assert info.state == "succeeded", info.error
    assert (info.records_total, info.records_done) == (55, 55)
    assert output_ids(jobs_dir / job.id / OUTPUT_NAME) == [f"r{i}" for i in range(55)]
    assert recorder.scored == [f"r{i}" for i in range(committed * CHUNK, 55)]  # only what was missing


def test_jobs_run_in_submission_order(manager: JobManager, served: Served) -> None:
    recorder = served.recorder(METRICS)
    release = threading.Event()
    recorder.hook = lambda call: release.wait(30) and None
    jobs = [
        manager.submit_upload(
            f"b{k}.jsonl", io.BytesIO(answers(3, prefix=f"b{k}-")), metrics=METRICS, on_error="fail"
        )
        for k in range(3)
    ]
    assert manager.queue_depth() == 3
    counts = manager.state_counts()
    assert counts["queued"] + counts["running"] == 3
    assert counts["running"] <= 1  # one worker
    release.set()

    finished = [wait_for(manager, job.id) for job in jobs]

    assert [info.state for info in finished] == ["succeeded"] * 3
    assert recorder.scored == [f"b{k}-{i}" for k in range(3) for i in range(3)]
    assert manager.state_counts() == {"queued": 0, "running": 0, "succeeded": 3, "failed": 0}
    assert manager.queue_depth() == 0


def test_submit_path_reads_only_under_allowed_roots(
    manager: JobManager, tmp_path: Path, data_root: Path
) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.jsonl").write_bytes(answers(2))
    (data_root / "answers.jsonl").write_bytes(answers(4))
    (data_root / "link.jsonl").symlink_to(outside / "secret.jsonl")

    for refused in [
        outside / "secret.jsonl",
        data_root / ".." / "private" / "secret.jsonl",
        data_root / "link.jsonl",
    ]:
        with pytest.raises(ConfigError, match="not under an allowed root"):
            manager.submit_path(str(refused), metrics=METRICS, on_error="fail")
    with pytest.raises(ConfigError, match="does not exist"):
        manager.submit_path(str(data_root / "missing.jsonl"), metrics=METRICS, on_error="fail")

    job = manager.submit_path(str(data_root / "answers.jsonl"), metrics=METRICS, on_error="fail")
    (data_root / "answers.jsonl").write_bytes(answers(1))  # the job holds its own copy

    info = wait_for(manager, job.id)
    assert info.state == "succeeded", info.error
    assert output_ids(manager.results_path(job.id)) == ["r0", "r1", "r2", "r3"]
    assert manager.queue_depth() == 0


def test_submit_path_is_refused_without_allowed_roots(
    tmp_path: Path, served: Served, data_root: Path
) -> None:
    (data_root / "answers.jsonl").write_bytes(answers(2))
    jobs = JobManager(tmp_path / "jobs", served, served.model_lock)
    jobs.start()
    try:
        with pytest.raises(ConfigError, match="--allow-path"):
            jobs.submit_path(str(data_root / "answers.jsonl"), metrics=METRICS, on_error="fail")
    finally:
        jobs.stop()


def test_upload_too_large_is_refused_and_leaves_nothing(manager: JobManager) -> None:
    body = answers(50)
    with pytest.raises(PayloadTooLargeError, match="limit of 100 bytes") as caught:
        manager.submit_upload(
            "answers.jsonl", io.BytesIO(body), metrics=METRICS, on_error="fail", max_bytes=100
        )

    assert isinstance(caught.value, InputError)
    assert caught.value.field == "file"
    assert [p.name for p in manager.directory.iterdir() if p.is_dir()] == []
    assert manager.queue_depth() == 0
    job = manager.submit_upload(
        "answers.jsonl", io.BytesIO(body), metrics=METRICS, on_error="fail", max_bytes=len(body)
    )
    assert wait_for(manager, job.id).state == "succeeded"


@pytest.mark.parametrize(
    ("filename", "options", "message"),
    [
        ("answers.txt", {}, "unsupported file type 'answers.txt'"),
        ("answers", {}, "unsupported file type"),
        ("answers.jsonl", {"on_error": "ignore"}, "on_error must be 'fail' or 'skip'"),
        ("answers.jsonl", {"metrics": []}, "metrics must be a non-empty list"),
        ("answers.jsonl", {"fields": {"answer": "x"}}, "unknown field 'answer'"),
    ],
)
def test_bad_submissions_are_refused(
    manager: JobManager, filename: str, options: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"metrics": METRICS, "on_error": "fail", **options}
    with pytest.raises(ConfigError, match=message):
        manager.submit_upload(filename, io.BytesIO(answers(2)), **arguments)
    assert manager.queue_depth() == 0


def test_field_mapping_is_applied(manager: JobManager) -> None:
    body = b"".join(json.dumps({"id": f"q{i}", "output": f"text {i}"}).encode() + b"\n" for i in range(3))
    job = manager.submit_upload(
        "answers.jsonl",
        io.BytesIO(body),
        metrics=["toxicity"],
        on_error="fail",
        fields={"prediction": "output"},
    )
    info = wait_for(manager, job.id)
    assert info.state == "succeeded", info.error
    assert output_ids(manager.results_path(job.id)) == ["q0", "q1", "q2"]


def test_jobs_persist_across_instances(tmp_path: Path, served: Served) -> None:
    first = JobManager(tmp_path / "jobs", served, served.model_lock)
    first.start()
    job = first.submit_upload("answers.jsonl", io.BytesIO(answers(12)), metrics=METRICS, on_error="fail")
    done = wait_for(first, job.id)
    first.stop()

    second = JobManager(tmp_path / "jobs", served, served.model_lock)
    second.start()
    try:
        assert second.get(job.id) == done
        assert output_ids(second.results_path(job.id)) == [f"r{i}" for i in range(12)]
        assert second.get("0" * 32) is None
        with pytest.raises(ConfigError, match="no job"):
            second.results_path("0" * 32)
    finally:
        second.stop()


def test_orphaned_upload_directories_are_removed_at_start(tmp_path: Path, served: Served) -> None:
    jobs_dir = tmp_path / "jobs"
    orphan = jobs_dir / ("a" * 32)
    orphan.mkdir(parents=True)
    (orphan / "input.jsonl.upload").write_bytes(b"half an upload")
    (jobs_dir / "not-a-job").mkdir()
    jobs = JobManager(jobs_dir, served, served.model_lock)
    jobs.start()
    jobs.stop()
    assert not orphan.exists()
    assert (jobs_dir / "not-a-job").exists()


def test_submitting_before_start_is_an_error(tmp_path: Path, served: Served) -> None:
    jobs = JobManager(tmp_path / "jobs", served, served.model_lock)
    with pytest.raises(RuntimeError, match="start"):
        jobs.submit_upload("a.jsonl", io.BytesIO(answers(1)), metrics=METRICS, on_error="fail")


def test_a_bug_fails_one_job_and_the_worker_goes_on(manager: JobManager, served: Served) -> None:
    recorder = served.recorder(METRICS)

    def explode(call: int) -> None:
        if call == 1:
            raise RuntimeError("a bug in a metric")

    recorder.hook = explode
    broken = manager.submit_upload("a.jsonl", io.BytesIO(answers(5)), metrics=METRICS, on_error="fail")
    fine = manager.submit_upload("b.jsonl", io.BytesIO(answers(5)), metrics=METRICS, on_error="fail")

    failed = wait_for(manager, broken.id)
    assert failed.state == "failed"
    assert failed.error == "internal error while running the job (RuntimeError); see the server log"
    assert wait_for(manager, fine.id).state == "succeeded"


# -- owners ---------------------------------------------------------------------------------------
def test_an_owned_job_is_visible_to_its_owner_only(manager: JobManager) -> None:
    job = manager.submit_upload(
        "answers.jsonl", io.BytesIO(answers(3)), metrics=METRICS, on_error="fail", owner="alice"
    )
    assert wait_for(manager, job.id).state == "succeeded"
    assert manager.get(job.id, visible_to="alice") is not None
    assert manager.get(job.id, visible_to="bob") is None
    assert manager.get(job.id) is not None  # an open server sees every job
    assert output_ids(manager.results_path(job.id, visible_to="alice")) == ["r0", "r1", "r2"]
    with pytest.raises(ConfigError, match="no job"):
        manager.results_path(job.id, visible_to="bob")

    ownerless = manager.submit_upload("b.jsonl", io.BytesIO(answers(1)), metrics=METRICS, on_error="fail")
    assert manager.get(ownerless.id, visible_to="bob") is not None


# The job table as schema 1 created it, before jobs had owners.
_SCHEMA_1 = """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, state TEXT NOT NULL,
    metrics TEXT NOT NULL, on_error TEXT NOT NULL, fields TEXT, source TEXT NOT NULL, input TEXT NOT NULL,
    records_total INTEGER, records_done INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, error TEXT, summary TEXT
)
"""


def test_a_schema_1_database_gains_the_owner_column_and_keeps_its_jobs(
    tmp_path: Path, served: Served
) -> None:
    jobs_dir = tmp_path / "jobs"
    (jobs_dir / ("a" * 32)).mkdir(parents=True)
    with sqlite3.connect(jobs_dir / DATABASE_NAME) as db:
        db.execute(_SCHEMA_1)
        db.execute("PRAGMA user_version=1")
        db.execute(
            "INSERT INTO jobs (id, state, metrics, on_error, source, input, created_at, updated_at)"
            " VALUES (?, 'failed', '[\"pii\"]', 'fail', 'old.jsonl', 'input.jsonl', 't', 't')",
            ("a" * 32,),
        )
    db.close()

    jobs = JobManager(jobs_dir, served, served.model_lock)
    jobs.start()
    try:
        old = jobs.get("a" * 32, visible_to="alice")  # no owner recorded: still visible to every key
        assert old is not None
        assert old.state == "failed"
        new = jobs.submit_upload(
            "n.jsonl", io.BytesIO(answers(1)), metrics=METRICS, on_error="fail", owner="alice"
        )
        assert jobs.get(new.id, visible_to="bob") is None
    finally:
        jobs.stop()
    with sqlite3.connect(jobs_dir / DATABASE_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
        assert "owner" in {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    db.close()


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path, served: Served) -> None:
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    with sqlite3.connect(jobs_dir / DATABASE_NAME) as db:
        db.execute("PRAGMA user_version=3")
    db.close()
    with pytest.raises(ConfigError, match="job schema 3, newer than"):
        JobManager(jobs_dir, served, served.model_lock).start()


# -- server paths that are not file names ---------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("answers\x00.jsonl", "must not contain a NUL character"),
        ("", "1 to 4096 characters, got 0"),
        ("a" * 5000, "1 to 4096 characters, got 5000"),
        ("answers\ud800.jsonl", "not valid Unicode"),
    ],
)
def test_a_server_path_that_is_not_a_path_name_is_refused(
    manager: JobManager, data_root: Path, path: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        manager.submit_path(
            path if not path.startswith("answers") else str(data_root / path),
            metrics=METRICS,
            on_error="fail",
        )
    assert manager.queue_depth() == 0


def test_a_server_path_the_system_cannot_look_up_is_refused(manager: JobManager, data_root: Path) -> None:
    for path in (data_root / ("n" * 300 + ".jsonl"), data_root / ("d" * 300) / "a.jsonl"):
        with pytest.raises(ConfigError, match=r"cannot be read|does not exist"):
            manager.submit_path(str(path), metrics=METRICS, on_error="fail")
    loop = data_root / "loop.jsonl"
    loop.symlink_to(loop)
    with pytest.raises(ConfigError):
        manager.submit_path(str(loop), metrics=METRICS, on_error="fail")


def test_a_server_file_that_cannot_be_opened_is_refused_and_leaves_nothing(
    manager: JobManager, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = data_root / "locked.jsonl"
    locked.write_bytes(answers(2))
    opened = Path.open

    def deny(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)  # running as root, chmod would not stop the read
    with pytest.raises(ConfigError, match="cannot be read: Permission denied"):
        manager.submit_path(str(locked), metrics=METRICS, on_error="fail")
    assert [p.name for p in manager.directory.iterdir() if p.is_dir()] == []
    assert manager.queue_depth() == 0
