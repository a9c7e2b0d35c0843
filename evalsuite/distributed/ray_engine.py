"""Score one file on a Ray cluster, with the local engine's output, resume and manifest.

Ray Data streams the file's records (read on the driver's node) to a fixed pool of actors; each
actor holds one :class:`~evalsuite.run.Work`, so its models load once, on the GPUs Ray gives it.
The scored rows stream back to the driver in input order and are committed chunk by chunk by the
same :class:`~evalsuite.checkpoint.ChunkedWriter` as the local engine.

Two choices, and why:

* Records are read by evalsuite's readers inside a Ray Data datasource, not ``ray.data.read_json``
  or ``read_csv``: those infer one Arrow schema per file and fail the whole read on one malformed
  line or on a field whose type varies (``references`` is a string in one record and a list in the
  next), and they know no line numbers. Ids (the record's index when absent), locations and bad
  records are therefore the local engine's.
* Output goes through the driver rather than ``Dataset.write_parquet``: that writes a directory of
  parts, in Parquet only, and cannot resume; here ``OUT`` is one file in the format of its extension,
  and a run killed at any point resumes (on either engine) with every record exactly once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any

from evalsuite._validation import check_positive_int, invalid
from evalsuite.errors import ConfigError, MissingDependencyError
from evalsuite.run import ChunkResult, EngineReport, FileJob, RunStats, Work, commit_chunk

if TYPE_CHECKING:
    import pyarrow as pa

    from evalsuite.checkpoint import ChunkedWriter
    from evalsuite.run import Progress

# Ray's INFO lines (execution plans, per-operator progress) would drown the caller's progress bar;
# warnings still show, but the one saying Ray's progress bars are off, as they are on purpose.
_QUIET_LEVELS = {
    "ray": logging.WARNING,
    "ray.data": logging.WARNING,
    "ray.data._internal.progress": logging.ERROR,
}


def import_ray() -> ModuleType:
    """``ray`` with Ray Data, or :class:`MissingDependencyError` naming the extra to install."""
    try:
        import ray
        import ray.data  # fails without the ray[data] extra (pyarrow, pandas), not with ray alone
    except ImportError as error:
        raise MissingDependencyError(
            f"the Ray engine needs ray with Ray Data: pip install 'evalsuite[ray]' ({error})"
        ) from error
    return ray


@dataclass(frozen=True)
class RayEngine:
    """Scores :meth:`Scorer.score_file`'s records on Ray: ``workers`` actors, ``gpus_per_worker`` each.

    ``address``: ``None`` starts a local Ray for the run (``workers`` CPUs) and stops it after;
    ``"auto"`` joins the cluster of this machine (``ray start --head``, a KubeRay pod), and
    ``"ray://HOST:10001"`` one elsewhere. When this process is already connected to Ray
    (``ray.init()`` in a notebook or test), that connection is used and left open.
    ``workers``: default one per ``gpus_per_worker`` GPUs of the cluster, else one per CPU.

    >>> engine = RayEngine(address="auto", workers=4, gpus_per_worker=1)   # doctest: +SKIP
    >>> scorer.score_file("answers.jsonl", "scores.parquet", engine=engine)  # doctest: +SKIP
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    quiet: bool = True  # hide Ray's INFO logs and the workers' output

    def __post_init__(self) -> None:
        if self.workers is not None:
            check_positive_int("workers", self.workers)
        if self.gpus_per_worker < 0:
            raise invalid("gpus_per_worker", "a number >= 0", self.gpus_per_worker)
        import_ray()  # fail before any work, not after the driver's validation pass

    def write_chunks(self, work: Work, job: FileJob, writer: ChunkedWriter) -> EngineReport:
        ray = import_ray()
        remaining = job.records - writer.records_done
        facts: dict[str, Any] = {"name": "ray", "ray_version": ray.__version__, "address": self.address}
        if remaining <= 0:  # finished already (a resumed run) or empty: no cluster needed
            return EngineReport(facts)
        with _quiet_ray(self.quiet), self._connected(ray) as started_here:
            workers = self._pool_size(ray, check=started_here)
            scored = self._scored_dataset(ray, work, job, writer, workers, remaining)
            tally = _commit_in_order(scored, work, writer, job.progress)
            facts.update(
                started_local_cluster=started_here,
                cluster_resources={k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")},
            )
        facts.update(
            workers=workers,
            gpus_per_worker=self.gpus_per_worker,
            actors_used=len(tally.actors),
            nodes_used=len(tally.nodes),
            worker_runtimes=tally.runtimes,
        )
        # The manifest's device and dtype are where the scores were computed: on the workers.
        return EngineReport(facts, tally.stats, tally.runtimes[0] if tally.runtimes else None)

    @contextmanager
    def _connected(self, ray: Any) -> Iterator[bool]:
        """Connect for the run (yields whether a local cluster was started here); disconnect after."""
        if ray.is_initialized():
            yield False
            return
        local = self.address is None
        ray.init(
            address="local" if local else self.address,
            num_cpus=self.workers if local else None,  # one CPU per actor; the reader needs none
            include_dashboard=False,
            log_to_driver=not self.quiet,
            logging_level=logging.WARNING if self.quiet else logging.INFO,
        )
        try:
            yield local
        finally:
            ray.shutdown()

    def _pool_size(self, ray: Any, *, check: bool) -> int:
        resources = ray.cluster_resources()
        if not self.gpus_per_worker:
            return self.workers or max(int(resources.get("CPU", 1)), 1)
        gpus = resources.get("GPU", 0)
        workers = self.workers or int(gpus // self.gpus_per_worker)
        if workers < 1:
            raise ConfigError(
                f"workers with {self.gpus_per_worker:g} GPU(s) each were asked for, but the Ray cluster "
                f"has {gpus:g} GPUs; if it adds GPU nodes on demand (autoscaling), give the number of workers"
            )
        # A cluster started here cannot grow: a pool it cannot hold would wait forever. A cluster
        # joined may be autoscaled (KubeRay), so it is trusted to find the GPUs.
        if check and workers * self.gpus_per_worker > gpus:
            raise ConfigError(
                f"{workers} workers with {self.gpus_per_worker:g} GPU(s) each need "
                f"{workers * self.gpus_per_worker:g} GPUs; this machine has {gpus:g}"
            )
        return workers

    def _scored_dataset(
        self, ray: Any, work: Work, job: FileJob, writer: ChunkedWriter, workers: int, remaining: int
    ) -> Iterable[pa.Table]:
        from evalsuite.distributed.ray_worker import RecordsDatasource, ScoringActor

        datasource = RecordsDatasource(
            job.source,
            fields=job.fields,
            skip=writer.records_done,
            block_size=writer.chunk_size,
            records=remaining,
        )
        records = ray.data.read_datasource(datasource, num_cpus=0)
        context = records.context  # this dataset's own copy: the caller's global context is untouched
        context.execution_options.preserve_order = True  # chunks are committed in input order
        context.enable_progress_bars = False  # the caller shows progress (the CLI's bar)
        context.print_on_execution_start = False
        settings = work.settings
        if settings.device == "auto" and not self.gpus_per_worker:
            settings = replace(settings, device="cpu")  # never a GPU that Ray did not assign to this actor
        scored = records.map_batches(
            ScoringActor,
            fn_constructor_kwargs={"metrics": work.metrics, "settings": settings, "on_error": job.on_error},
            compute=ray.data.ActorPoolStrategy(size=workers),
            # Even shares for small inputs, so every worker gets some; at most a chunk per call.
            batch_size=max(1, min(writer.chunk_size, math.ceil(remaining / workers))),
            batch_format="pyarrow",
            num_cpus=1,
            num_gpus=self.gpus_per_worker or None,
            udf_modifying_row_count=False,
        )
        return scored.iter_batches(batch_size=None, batch_format="pyarrow")


@dataclass
class _WorkerTally:
    """What the workers report, summed for the manifest."""

    actors: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    runtimes: list[dict[str, Any]] = field(default_factory=list)
    stats: RunStats = field(default_factory=RunStats)

    def add(self, report: Mapping[str, Any]) -> None:
        self.actors.add(report["actor"])
        self.nodes.add(report["node"])
        if report["runtime"] not in self.runtimes:
            self.runtimes.append(report["runtime"])
        self.stats.add(report["stats"])


def _commit_in_order(
    batches: Iterable[pa.Table], work: Work, writer: ChunkedWriter, progress: Progress | None
) -> _WorkerTally:
    """Regroup the scored records into the writer's chunks and commit each one when it is complete."""
    import pickle

    tally = _WorkerTally()
    expected = writer.records_done
    chunk_index = writer.completed_chunks
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for batch in batches:
        failure = batch.column("failure")[0].as_py() if batch.num_rows else None
        if failure is not None:
            raise pickle.loads(failure)  # a worker's evalsuite error, with its own type and message
        columns = [batch.column(name).to_pylist() for name in ("index", "row", "error", "stats")]
        for index, row, error, stats in zip(*columns, strict=True):
            if index != expected:  # every record exactly once, in order: never write around a gap
                raise RuntimeError(f"the Ray engine returned record {index} where record {expected} was due")
            expected += 1
            if index // writer.chunk_size != chunk_index:
                commit_chunk(work, writer, chunk_index, ChunkResult(rows, errors, RunStats()))
                rows, errors, chunk_index = [], [], chunk_index + 1
            if stats is not None:
                tally.add(pickle.loads(stats))
            if error is not None:
                errors.append(pickle.loads(error))
            else:
                rows.append(pickle.loads(row))
        if progress:
            progress(batch.num_rows)
    if rows or errors:
        commit_chunk(work, writer, chunk_index, ChunkResult(rows, errors, RunStats()))
    return tally


@contextmanager
def _quiet_ray(quiet: bool) -> Iterator[None]:
    if not quiet:
        yield
        return
    loggers = {logging.getLogger(name): level for name, level in _QUIET_LEVELS.items()}
    before = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, level in before.items():
            logger.setLevel(level)
