"""A real ``evalsuite serve`` killed with SIGKILL mid-job finishes the job after a restart, every record once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalsuite.client import Client, ServiceError

pytestmark = pytest.mark.slow

RECORDS = 3000  # three checkpointed chunks at the default job chunk size of 1000
START_TIMEOUT_S = 180  # importing torch and loading the metric on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One ``evalsuite serve`` process on a loopback port, logging into ``log``."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "evalsuite", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--metrics", "toxicity",
            "--data-dir", str(data_dir),
        ]  # fmt: skip
        self.log = log
        with log.open("ab") as sink:
            self.process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=os.environ.copy()
            )

    def wait_ready(self, client: Client) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                client.health()
                return
            except ServiceError:
                time.sleep(0.2)
        raise AssertionError(f"server not ready in {START_TIMEOUT_S}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def write_answers(path: Path, n: int, prefix: str) -> list[str]:
    ids = [f"{prefix}{i:05d}" for i in range(n)]
    with path.open("w") as sink:
        for i, record_id in enumerate(ids):
            sink.write(
                json.dumps({"id": record_id, "prediction": f"Answer {i}: you are a wonderful person"}) + "\n"
            )
    return ids


def test_sigkill_mid_job_then_restart_finishes_every_record_once(
    tmp_path: Path, servers: list[Server]
) -> None:
    data_dir = tmp_path / "service"
    big_ids = write_answers(tmp_path / "big.jsonl", RECORDS, "big-")
    small_ids = write_answers(tmp_path / "small.jsonl", 40, "small-")
    log = tmp_path / "serve.log"

    first = Server(data_dir, log)
    servers.append(first)
    # No retries on connection errors: the kill must not be papered over while it is observed.
    with Client(first.url, retries=0, timeout=30) as client:
        first.wait_ready(client)
        big = client.submit_job(tmp_path / "big.jsonl", metrics=["toxicity"], on_error="fail")
        small = client.submit_job(tmp_path / "small.jsonl", metrics=["toxicity"], on_error="fail")
        assert small["state"] == "queued"
        deadline = time.monotonic() + 120
        while True:
            info = client.job(big["id"])
            assert info["state"] in ("queued", "running"), info
            if info["records_total"] and 0 < info["records_done"] < info["records_total"]:
                break
            assert time.monotonic() < deadline, f"job never seen mid-way: {info}\n{log.read_text()}"
            time.sleep(0.02)
    first.kill()

    job_dir = data_dir / big["id"]
    staging = job_dir / "output.jsonl.partial"
    chunk_size = json.loads((staging / "job.json").read_text())["chunk_size"]
    committed = len(list(staging.glob("part-*.parquet")))
    assert committed, "the kill came before any checkpoint"
    assert committed * chunk_size < RECORDS, "the job had finished before the kill"
    assert not (job_dir / "output.jsonl").exists()

    second = Server(data_dir, log)
    servers.append(second)
    with Client(second.url, timeout=30) as client:
        second.wait_ready(client)
        done = client.wait(big["id"], poll=0.2, timeout=300)
        assert (done["state"], done["records_done"], done["records_total"], done["errors"]) == (
            "succeeded", RECORDS, RECORDS, 0,
        )  # fmt: skip
        rows = client.results(big["id"])
        assert [row["id"] for row in rows] == big_ids  # each record exactly once, in input order
        assert all(0.0 <= row["toxicity_overall"] <= 1.0 for row in rows)  # the default, safety-minilm

        # The job queued behind it survived the kill too.
        assert client.wait(small["id"], poll=0.2, timeout=120)["state"] == "succeeded"
        assert [row["id"] for row in client.results(small["id"])] == small_ids


def test_client_against_a_real_server(tmp_path: Path, servers: list[Server]) -> None:
    ids = write_answers(tmp_path / "answers.jsonl", 5, "a-")
    server = Server(tmp_path / "service", tmp_path / "serve.log")
    servers.append(server)
    with Client(server.url, timeout=30) as client:
        server.wait_ready(client)
        assert client.health()["metrics"] == ["toxicity"]

        scored = client.score([{"id": "x", "prediction": "You are kind."}], metrics=["toxicity"])
        assert [row["id"] for row in scored["scores"]] == ["x"]
        with pytest.raises(ServiceError) as caught:
            client.score([{"prediction": "fine"}, {"prediction": ""}])
        assert (caught.value.status, caught.value.code) == (422, "validation_error")
        assert caught.value.field == "records[1].prediction"
        with pytest.raises(ServiceError) as caught:
            client.score([{"prediction": "fine"}], metrics=["no_such_metric"])
        assert (caught.value.status, caught.value.code, caught.value.field) == (
            422,
            "unknown_metric",
            "metrics",
        )

        job = client.submit_job(tmp_path / "answers.jsonl", on_error="skip")
        client.wait(job["id"], poll=0.1, timeout=120)
        saved = client.download(job["id"], tmp_path / "scored.jsonl")
        assert [json.loads(line)["id"] for line in saved.read_text().splitlines()] == ids
        with pytest.raises(ServiceError) as caught:
            client.job("0" * 32)
        assert (caught.value.status, caught.value.code) == (404, "not_found")
