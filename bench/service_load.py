"""Throughput of ``evalsuite serve`` under concurrent clients: micro-batching vs one request at a time.

Starts a real server (a subprocess on a free loopback port, score cache off so repeated texts are not
free) twice in the same invocation:

- micro-batching: the default batcher, concurrent requests merged into one model batch
  (``--max-wait-ms``);
- one at a time: the same server with merging off (``--max-batch-records 1 --max-wait-ms 0``: every
  model batch holds exactly one request), the peer.

``--clients`` threads, each with its own :class:`evalsuite.client.Client` (no retries, so every
refusal is counted), send ``POST /v1/score`` requests of ``--records-per-request`` distinct records
until ``--requests`` have been answered or ``--duration`` seconds have passed. Printed: records/s,
latency p50/p99, errors by code, model batches and records per batch (from ``/metrics``), and the ratio of the two runs.
Not a test: nothing here fails on a number.

    .venv/bin/python bench/service_load.py                       # embedding_similarity, 32 clients
    .venv/bin/python bench/service_load.py --metric toxicity --requests 4000 --duration 30
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from evalsuite.client import Client, ServiceError

SERVE = [sys.executable, "-m", "evalsuite", "serve"]
START_TIMEOUT_S = 300

SENTENCES = [
    "Water boils at 100 degrees Celsius at sea level.",
    "The capital of Australia is Canberra, not Sydney.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "Neil Armstrong walked on the Moon in July 1969.",
    "A spider has eight legs, while insects have six.",
    "Rayleigh scattering makes the daytime sky look blue.",
    "The train's average speed is 72 km/h over the whole journey.",
    "Use list.reverse() to reverse a Python list in place.",
]


@dataclass
class Run:
    """What one server configuration achieved."""

    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    records: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    model_batches: int | None = None  # warm-up included
    batched_records: int | None = None  # records those batches held

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def records_for(request: int, size: int) -> list[dict[str, Any]]:
    """Distinct records, so no runtime memo or cache can answer a request from an earlier one."""
    out = []
    for j in range(size):
        a, b = SENTENCES[(request + j) % len(SENTENCES)], SENTENCES[(request * 3 + j + 1) % len(SENTENCES)]
        out.append(
            {
                "id": f"{request}-{j}",
                "prediction": f"{a} (answer {request}.{j})",
                "references": [f"{b} (reference {request}.{j})", a],
            }
        )
    return out


class Server:
    def __init__(self, metric: str, device: str, extra: list[str], folder: Path, name: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"{name}.log"
        command = [
            *SERVE,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--metrics", metric,
            "--device", device,
            "--no-cache",
            "--data-dir", str(folder / f"{name}-data"),
            "--log-level", "warning",
            *extra,
        ]  # fmt: skip
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with Client(self.url, retries=0, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    sys.exit(f"server exited with {self.process.returncode}:\n{self.log.read_text()}")
                try:
                    client.health()
                    return
                except ServiceError:
                    time.sleep(0.25)
        self.stop()
        sys.exit(f"server not ready after {START_TIMEOUT_S}s:\n{self.log.read_text()}")

    def batch_counters(self, metric: str) -> tuple[int, int] | None:
        """(model batches, records in them) so far: the batch-size histogram of ``/metrics``."""
        response = httpx.get(f"{self.url}/metrics", timeout=10)
        if response.status_code != 200:
            return None
        values = []
        for suffix in ("count", "sum"):
            pattern = rf'evalsuite_batch_records_{suffix}\{{metric="{re.escape(metric)}"\}} ([0-9.e+]+)'
            found = re.search(pattern, response.text)
            values.append(int(float(found.group(1))) if found else 0)  # no series before the first batch
        return values[0], values[1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def load(server: Server, args: argparse.Namespace, name: str) -> Run:
    """``--clients`` threads sending requests until ``--requests`` are done or ``--duration`` passes."""
    run = Run(name)
    tickets = iter(range(args.warmup + args.requests))
    tickets_lock, results_lock = threading.Lock(), threading.Lock()
    start_gate = threading.Barrier(args.clients + 1)
    measured_from: list[float] = []
    deadline: list[float] = []

    def client_thread() -> None:
        with Client(server.url, retries=0, timeout=args.timeout) as client:
            start_gate.wait()
            while True:
                with tickets_lock:
                    ticket = next(tickets, None)
                if ticket is None or (deadline and time.monotonic() > deadline[0]):
                    return
                records = records_for(ticket, args.records_per_request)
                started = time.perf_counter()
                try:
                    answer = client.score(records, metrics=[args.metric])
                    code = None if len(answer["scores"]) == len(records) else "wrong_row_count"
                except ServiceError as error:
                    code = error.code
                elapsed = time.perf_counter() - started
                if ticket < args.warmup:
                    continue  # warm-up: connections, allocator and kernels settle; not counted
                with results_lock:
                    if not measured_from:
                        measured_from.append(started)
                    if code is None:
                        run.latencies.append(elapsed)
                        run.records += len(records)
                    else:
                        run.errors[code] += 1

    threads = [threading.Thread(target=client_thread, daemon=True) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    before = server.batch_counters(args.metric)
    start_gate.wait()
    deadline.append(time.monotonic() + args.duration)
    for thread in threads:
        thread.join()
    finished = time.perf_counter()
    run.seconds = finished - measured_from[0] if measured_from else 0.0
    after = server.batch_counters(args.metric)
    if before is not None and after is not None:
        run.model_batches, run.batched_records = after[0] - before[0], after[1] - before[1]
    return run


def measure(args: argparse.Namespace, name: str, extra: list[str], folder: Path) -> Run:
    server = Server(args.metric, args.device, extra, folder, name.replace(" ", "-"))
    try:
        server.wait_ready()
        return load(server, args, name)
    finally:
        server.stop()


def print_table(runs: list[Run], args: argparse.Namespace) -> None:
    print(
        f"\n{args.clients} clients, {args.records_per_request} record(s) per request, metric {args.metric}, "
        f"device {args.device}, score cache off\n"
    )
    header = (
        f"{'mode':<16}{'requests':>9}{'records':>9}{'errors':>8}{'seconds':>9}{'records/s':>11}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'batches':>9}{'rec/batch':>10}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        batches = run.model_batches
        per_batch = f"{run.batched_records / batches:.1f}" if batches and run.batched_records else "-"
        print(
            f"{run.name:<16}{len(run.latencies):>9}{run.records:>9}{sum(run.errors.values()):>8}"
            f"{run.seconds:>9.1f}{run.records_per_second:>11.1f}{run.percentile(50):>9.0f}"
            f"{run.percentile(99):>9.0f}{batches if batches is not None else '-':>9}{per_batch:>10}"
        )
    for run in runs:
        if run.errors:
            print(f"errors in {run.name}: {dict(run.errors)}")
    batched, single = runs
    if single.records_per_second:
        print(
            f"\nmicro-batching / one at a time: {batched.records_per_second / single.records_per_second:.2f}x "
            f"records/s; p99 {batched.percentile(99):.0f} ms vs {single.percentile(99):.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metric", default="embedding_similarity", help="A served metric (a real model).")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000, help="Measured requests per run (at most).")
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds per run (at most).")
    parser.add_argument("--records-per-request", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=64, help="Requests sent first and not counted.")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="The batched run's merge window.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--timeout", type=float, default=120.0, help="Client timeout per request, seconds.")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    with tempfile.TemporaryDirectory(prefix="evalsuite-bench-") as folder:
        runs = [
            measure(args, "micro-batching", ["--max-wait-ms", str(args.max_wait_ms)], Path(folder)),
            measure(args, "one at a time", ["--max-wait-ms", "0", "--max-batch-records", "1"], Path(folder)),
        ]
    print_table(runs, args)


if __name__ == "__main__":
    main()
