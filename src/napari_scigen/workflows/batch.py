"""Run any registered engine over the z-chunks of a volume on a Dask cluster, resumably.

A batch job reads a TIFF or zarr volume, cuts the output into z-chunks (whole stored
chunks, so no two tasks write the same zarr chunk), and runs one task per chunk on a
``dask.distributed`` cluster (see :mod:`~napari_scigen.workflows._batch_cluster`). Each
task reads only its input slices plus the halo its engine needs (see
:mod:`~napari_scigen.workflows._batch_plan`), runs the engine through
:mod:`napari_scigen.api`, writes its region of the output OME-Zarr store and then a
*done marker*. So:

* a rerun of the same job skips the chunks that have a marker (resume);
* a task that raises is retried (``retries``); a worker that dies loses only the chunk
  it was running, which the scheduler gives to another worker;
* for chunk-invariant engines (the registry's ``chunk_invariant``) the output equals
  the single-process output: the deterministic ones bit for bit; the learned
  interpolation and inpainting are trained once on the whole volume (on one worker,
  before the chunks; the network is kept in the bookkeeping folder as safetensors) and
  their chunks apply it (inpainting bit for bit, interpolation within one grey level);
  the ``auto`` interpolation, which trains on what it is given, runs as one task unless
  ``chunk_slices`` is set. For other engines the plan's note warns.

The store's ``.napari_scigen_batch/`` folder holds ``job.json`` (what the job is; a rerun
with other settings is refused), ``model/`` (a network trained once), ``done/NNNNNN.json`` (one marker per finished chunk) and
``attempts/`` (one file per time a chunk was started: what ``retries`` and killed
workers cost).

Examples
--------
>>> from napari_scigen.workflows.batch import BatchRequest, run_batch  # doctest: +SKIP
>>> summary = run_batch(BatchRequest("interpolate", "flow", "scan.ome.zarr",  # doctest: +SKIP
...     "rebuilt.ome.zarr", missing=tuple(range(1, 500, 2))))
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace

from ..core.progress import Cancelled, CancelToken, Progress, check_cancelled, drain
from ..core.validation import InvalidInputError
from ._batch_cluster import (
    ClusterInfo,
    ClusterOptions,
    SlurmProfile,
    check_cluster_available,
    open_client,
)
from ._batch_job import BatchJob, BatchRequest, plan_batch
from ._batch_plan import BATCH_TASKS
from ._batch_store import (
    _batch_folder,
    _read_job_record,
    _write_json,
    chunk_attempts,
    discard_if_empty,
    discard_store,
    done_chunks,
    finish_store,
    prepare_store,
)
from ._batch_worker import _slab_range, compute_chunk, fit_model

# --------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------


@dataclass
class BatchSummary:
    """How a batch job went.

    Attributes
    ----------
    store : str
        The output store.
    n_chunks, computed, skipped : int
        Chunks in the job; computed in this run; already done before it.
    failed : dict of int to str
        Chunks that failed after their retries, with the error (one line).
    user_errors : set of int
        Those of them that failed on the user's input or settings (not retried).
    seconds : float
        Wall time of this run (cluster start-up excluded).
    cluster : str
        What it ran on.
    dashboard : str or None
        The Dask dashboard's address.
    workers : dict of str to int
        Chunks computed per worker.
    """

    store: str
    n_chunks: int
    computed: int = 0
    skipped: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    user_errors: set[int] = field(default_factory=set)
    seconds: float = 0.0
    cluster: str = ""
    dashboard: str | None = None
    workers: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every chunk is done."""
        return not self.failed and self.computed + self.skipped == self.n_chunks

    def describe(self) -> str:
        """One line for the log."""
        state = "complete" if self.complete else f"{len(self.failed)} chunk(s) failed"
        return (
            f"{self.store}: {state}; {self.computed} chunk(s) computed, {self.skipped} already "
            f"done, of {self.n_chunks}, in {_duration(self.seconds)} on {len(self.workers)} "
            f"worker(s)"
        )


class BatchIncompleteError(RuntimeError):
    """Some chunks failed after their retries; a rerun computes only those."""

    def __init__(self, summary: BatchSummary) -> None:
        first = min(summary.failed)
        advice = (
            "fix that and rerun"
            if first in summary.user_errors
            else "rerun the same command to retry the failed chunks"
        )
        super().__init__(f"{summary.describe()}; chunk {first}: {summary.failed[first]}; {advice}")
        self.summary = summary


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _measure_range(client, job: BatchJob) -> tuple[float, float]:
    depth = job.input_shape[0]
    step = max(1, job.chunk_slices)
    futures = client.map(
        _slab_range,
        [job.request.input] * len(range(0, depth, step)),
        list(range(0, depth, step)),
        [min(depth, z + step) for z in range(0, depth, step)],
        [job.request.task == "interpolate"] * len(range(0, depth, step)),  # as the engine does
        [job.request.series] * len(range(0, depth, step)),
        pure=False,
    )
    ranges = client.gather(futures)
    return min(low for low, _ in ranges), max(high for _, high in ranges)


def batch_job(
    job: BatchJob,
    *,
    options: ClusterOptions | None = None,
    client=None,
    retries: int = 2,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, BatchSummary]:
    """The generator that runs a prepared job (see :func:`prepare_store`) on a cluster.

    Parameters
    ----------
    job : BatchJob
        From :func:`plan_batch`, its store made by :func:`prepare_store`.
    options : ClusterOptions, optional
        The cluster (default: a local cluster sized to the machine).
    client : distributed.Client, optional
        Run on this client's cluster instead (left open).
    retries : int
        Times a failing chunk is retried.
    cancel : CancelToken, optional
        Stops submitting and cancels queued chunks; chunks running finish or are lost.

    Yields
    ------
    Progress
        Once when the cluster is up (its description and dashboard), then once per
        finished chunk (``done/total``, ETA).

    Returns
    -------
    BatchSummary

    Raises
    ------
    BatchIncompleteError
        When chunks failed after their retries (the others are written and marked).
    Cancelled
        When ``cancel`` was set.
    """
    _check_retries(retries)
    try:
        return (yield from _run_job(job, options, client, retries, cancel))
    except BatchIncompleteError as error:
        if error.summary.failed.keys() <= error.summary.user_errors:
            # The input or the parameters must change, and a job of other content or
            # parameters never resumes this store: its finished chunks are of no use.
            discard_store(job)
        else:
            discard_if_empty(job)
        raise
    except BaseException:
        discard_if_empty(job)  # failed or interrupted before any chunk: nothing to resume
        raise


def _run_job(job, options, client, retries, cancel) -> Generator[Progress, None, BatchSummary]:
    from distributed import wait

    options = options or ClusterOptions()
    chunks = job.chunks
    total = len(chunks)
    summary = BatchSummary(str(job.store), total)
    with open_client(options, client) as (active, info):
        info: ClusterInfo
        summary.cluster, summary.dashboard = info.description, info.dashboard
        dashboard = f"dashboard {info.dashboard}" if info.dashboard else "no dashboard"
        already = done_chunks(job.store)
        summary.skipped = len(already)
        yield Progress(len(already), total, f"{info.description}; {dashboard}")
        started = time.monotonic()
        if (job.carry_range or job.fit_once) and job.value_range is None:
            job = replace(job, value_range=_measure_range(active, job))
            record = _read_job_record(job.store) or {"job": job.fingerprint()}
            _write_json(
                _batch_folder(job.store) / "job.json", {**record, "value_range": job.value_range}
            )
        if job.fit_once and len(already) < total:
            yield from _fit_once(active, job, info, retries, cancel, len(already), total)
        token = hashlib.sha1(json.dumps(job.fingerprint()).encode()).hexdigest()[:10]
        pending = {
            active.submit(
                compute_chunk,
                job,
                chunk.index,
                info.threads,
                info.gpu_slots,
                key=f"napari-scigen-chunk-{token}-{chunk.index}-{secrets.token_hex(3)}",
                retries=int(retries),
                pure=False,
            ): chunk.index
            for chunk in chunks
            if chunk.index not in already
        }
        try:
            while pending:
                check_cancelled(cancel)
                try:
                    finished, _ = wait(list(pending), timeout=0.5, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    continue
                for future in finished:
                    index = pending.pop(future)
                    try:
                        outcome = future.result()
                    except Exception as error:  # noqa: BLE001 - reported per chunk
                        text = " ".join(str(error).split())[:500]
                        summary.failed[index] = f"{type(error).__name__}: {text}"
                        continue
                    finally:
                        future.release()
                    if outcome["status"] == "failed":
                        summary.failed[index] = outcome["error"]
                        summary.user_errors.add(index)
                    elif outcome["status"] == "skipped":
                        summary.skipped += 1
                    else:
                        summary.computed += 1
                        worker = outcome["worker"]
                        summary.workers[worker] = summary.workers.get(worker, 0) + 1
                    yield _progress(summary, len(pending), time.monotonic() - started)
        finally:
            if pending:
                active.cancel(list(pending))
        summary.seconds = time.monotonic() - started
    if summary.failed:
        raise BatchIncompleteError(summary)
    finish_store(job, summary)
    return summary


def _fit_once(active, job, info, retries, cancel, done, total) -> Generator[Progress, None, None]:
    """Train the job's learned engine once, on one worker, before the chunks are sent."""
    from distributed import wait

    fixed = getattr(job.params, "threads", None)  # the engine's threads= wins
    threads = fixed or info.fit_threads
    using = f" with {threads} thread(s)" if threads else ""
    yield Progress(
        done, total, f"training the {job.request.method} engine once on one worker{using}"
    )
    future = active.submit(
        fit_model, job, info.threads, info.gpu_slots, info.fit_threads,
        retries=int(retries), pure=False,
    )  # fmt: skip
    try:
        while True:
            check_cancelled(cancel)
            try:
                wait([future], timeout=0.5)
                break
            except TimeoutError:
                continue
        outcome = future.result()
    except BaseException:
        future.cancel()
        raise
    finally:
        future.release()
    verb = "trained" if outcome["status"] == "trained" else "already trained"
    yield Progress(
        done, total, f"{verb}; filling with {outcome['filled_with']}; the weights go to the chunks"
    )


def _check_retries(retries) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidInputError(f"retries must be an integer >= 0, got {retries!r}")


def _progress(summary: BatchSummary, remaining: int, elapsed: float) -> Progress:
    done = summary.computed + summary.skipped + len(summary.failed)
    eta = ""
    if summary.computed and remaining:
        eta = f", ETA {_duration(elapsed / summary.computed * remaining)}"
    failed = f", {len(summary.failed)} failed" if summary.failed else ""
    return Progress(
        done,
        summary.n_chunks,
        f"chunks done ({summary.computed} computed, {summary.skipped} already done{failed}){eta}",
    )


def run_batch(
    request: BatchRequest,
    *,
    options: ClusterOptions | None = None,
    client=None,
    retries: int = 2,
    overwrite: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> BatchSummary:
    """Plan, prepare and run a batch job to the end (resuming a store of the same job).

    See :func:`batch_job` for the arguments and errors; ``overwrite`` replaces a store
    that holds another job. The cluster's libraries are checked before the store is made.
    """
    _check_retries(retries)
    if client is None:
        check_cluster_available(options or ClusterOptions())
    job = prepare_store(plan_batch(request), overwrite=overwrite)
    return drain(
        batch_job(job, options=options, client=client, retries=retries, cancel=cancel),
        on_progress=on_progress,
    )


class BackgroundBatch:
    """A batch job running on a thread of this process (its workers are processes).

    Attributes
    ----------
    job : BatchJob
        The job; its store exists from the start (zeros until chunks land).
    last_progress : Progress or None
        The latest event.
    summary : BatchSummary or None
        Set when the job completed.
    error : BaseException or None
        Set when it failed or was cancelled (:class:`Cancelled`).
    """

    def __init__(
        self,
        job: BatchJob,
        run: Callable[[CancelToken, Callable[[Progress], None]], BatchSummary],
        on_progress: Callable[[Progress], None] | None = None,
        on_finished: Callable[[BackgroundBatch], None] | None = None,
    ) -> None:
        self.job = job
        self.token = CancelToken()
        self.last_progress: Progress | None = None
        self.summary: BatchSummary | None = None
        self.error: BaseException | None = None
        self._run, self._on_progress, self._on_finished = run, on_progress, on_finished
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._work, name="napari-scigen-batch", daemon=True)

    def start(self) -> BackgroundBatch:
        """Start the background thread (once)."""
        self._thread.start()
        return self

    def _progress(self, event: Progress) -> None:
        self.last_progress = event
        if self._on_progress is not None:
            self._on_progress(event)

    def _work(self) -> None:
        try:
            self.summary = self._run(self.token, self._progress)
        except BaseException as error:  # noqa: BLE001 - kept for the caller
            self.error = error
        finally:
            self._finished.set()
            if self._on_finished is not None:
                self._on_finished(self)

    @property
    def done(self) -> bool:
        """The job ended (completed, failed or cancelled)."""
        return self._finished.is_set()

    def cancel(self) -> None:
        """Stop submitting chunks; done chunks stay written (a rerun resumes)."""
        self.token.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the end; True when it ended within ``timeout``."""
        return self._finished.wait(timeout)


def start_batch_in_background(
    request: BatchRequest,
    *,
    options: ClusterOptions | None = None,
    retries: int = 2,
    overwrite: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    on_finished: Callable[[BackgroundBatch], None] | None = None,
) -> BackgroundBatch:
    """Start a batch job on a background thread (a local cluster by default).

    The store is created before this returns, so a viewer can show it at once and
    re-read it as chunks land. Qt-free: the napari glue is :mod:`napari_scigen._qt._batch`.

    Parameters
    ----------
    request : BatchRequest
        What to run.
    options : ClusterOptions, optional
        The cluster; default a local one sized to the machine (no dashboard).
    retries, overwrite
        See :func:`run_batch`.
    on_progress : callable, optional
        Called on the background thread with each :class:`Progress`.
    on_finished : callable, optional
        Called on the background thread with the handle once the job ended.
    """
    _check_retries(retries)
    options = options or ClusterOptions(dashboard=None)
    check_cluster_available(options)
    job = prepare_store(plan_batch(request), overwrite=overwrite)

    def run(token: CancelToken, progress: Callable[[Progress], None]) -> BatchSummary:
        generator = batch_job(job, options=options, retries=retries, cancel=token)
        return drain(generator, on_progress=progress)

    return BackgroundBatch(job, run, on_progress, on_finished).start()


__all__ = [
    "BATCH_TASKS",
    "BackgroundBatch",
    "BatchIncompleteError",
    "BatchJob",
    "BatchRequest",
    "BatchSummary",
    "Cancelled",
    "ClusterOptions",
    "SlurmProfile",
    "batch_job",
    "check_cluster_available",
    "chunk_attempts",
    "compute_chunk",
    "done_chunks",
    "plan_batch",
    "prepare_store",
    "run_batch",
    "start_batch_in_background",
]
