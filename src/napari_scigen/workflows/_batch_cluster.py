"""The Dask clusters a batch job runs on: local CPU, local GPUs, SLURM, or a running one.

* ``local`` (default): a :class:`distributed.LocalCluster` of worker *processes* sized to
  the machine (one per core unless ``workers`` says otherwise), each running one chunk
  at a time with ``threads`` OpenMP/MKL/torch threads (cores // workers), so the
  workers never oversubscribe the cores;
* ``cuda``: dask-cuda's ``LocalCUDACluster``, one worker per GPU (``gpus``);
* ``slurm``: dask-jobqueue's ``SLURMCluster`` from a :class:`SlurmProfile` (account,
  QOS, GPUs per node, walltime...), one worker per GPU of each node, each pinned to its
  own GPU by :func:`pin_one_gpu`;
* ``scheduler``: attach to a running scheduler (``tcp://host:8786``, or its scheduler file).

Models are loaded once per worker process and kept in
:data:`napari_scigen.core.models.MODEL_CACHE`, so the chunks a worker runs after its
first reuse the loaded model. dask-cuda and dask-jobqueue are imported only when used.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..core.validation import InvalidInputError

CLUSTER_KINDS = ("local", "cuda", "slurm", "scheduler")
_CLUSTER_HINT = "pip install 'napari-scigen[cluster]'"
#: What each cluster kind needs beyond dask.distributed: (module, error when it is missing).
_NEEDS = {
    "cuda": (
        "dask_cuda",
        "a local GPU cluster needs dask-cuda (one worker per GPU): pip install "
        "'napari-scigen[gpu-cluster]' (Linux with CUDA)",
    ),
    "slurm": ("dask_jobqueue", f"a SLURM cluster needs dask-jobqueue: {_CLUSTER_HINT}"),
}
#: Environment variables that size the thread pools of numerical libraries.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may use (CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class SlurmProfile:
    """Where and how SLURM jobs start Dask workers (see docs/scaling.md).

    Attributes
    ----------
    account : str
        Allocation charged (``#SBATCH -A``), e.g. ``m1234`` at NERSC.
    qos : str
        Quality of service (``--qos``), e.g. ``regular``, ``debug``, ``shared``.
    constraint : str or None
        Node type (``--constraint``), e.g. ``gpu`` or ``cpu`` on Perlmutter.
    partition : str or None
        Partition/queue (``-p``), where the centre uses partitions instead.
    gpus_per_node : int
        GPUs per node; one worker per GPU (0: CPU nodes, ``workers_per_node`` workers).
    workers_per_node : int
        Workers per node on CPU nodes (ignored when ``gpus_per_node`` > 0).
    cores_per_node : int
        Cores given to each job (split evenly between its workers).
    memory : str
        Memory per job, e.g. ``"200GB"``.
    walltime : str
        Time limit per job, ``HH:MM:SS``.
    jobs : int
        Number of jobs (nodes) to start.
    prologue : tuple of str
        Shell lines run before the workers start (``module load``, ``source venv``...).
    local_directory : str or None
        Node-local scratch for worker spill files (e.g. ``$TMPDIR``).
    interface : str or None
        Network interface of the nodes (e.g. ``hsn0`` on Perlmutter).
    extra_directives : tuple of str
        More ``#SBATCH`` options, e.g. ``("--licenses=scratch",)``.
    """

    account: str
    qos: str = "regular"
    constraint: str | None = "gpu"
    partition: str | None = None
    gpus_per_node: int = 4
    workers_per_node: int = 1
    cores_per_node: int = 64
    memory: str = "200GB"
    walltime: str = "01:00:00"
    jobs: int = 1
    prologue: tuple[str, ...] = ()
    local_directory: str | None = None
    interface: str | None = None
    extra_directives: tuple[str, ...] = ()

    @property
    def processes(self) -> int:
        """Worker processes per job."""
        return self.gpus_per_node if self.gpus_per_node > 0 else max(1, self.workers_per_node)

    @property
    def threads(self) -> int:
        """OpenMP/torch threads per worker."""
        return max(1, self.cores_per_node // self.processes)


@dataclass(frozen=True)
class ClusterOptions:
    """Which cluster a batch job runs on.

    Attributes
    ----------
    kind : {"local", "cuda", "slurm", "scheduler"}
        See the module docstring.
    workers : int, optional
        Local worker processes (default: one per core).
    threads : int, optional
        OpenMP/torch threads per worker (default: cores // workers).
    gpus : int, optional
        GPUs for ``cuda`` (one worker each; default all).
    scheduler : str, optional
        For ``scheduler``: its address (``tcp://host:8786``) or the JSON file written
        by ``dask scheduler --scheduler-file``.
    slurm : SlurmProfile, optional
        The profile for ``slurm``.
    dashboard : str or None
        Dashboard address (``":8787"``; ``":0"`` picks a free port; None: off).
    task_tracebacks : bool
        Let the workers log each failing chunk's traceback (``--debug``); by default
        the failure reaches the driver as one line and the workers stay quiet about it.
    """

    kind: str = "local"
    workers: int | None = None
    threads: int | None = None
    gpus: int | None = None
    scheduler: str | None = None
    slurm: SlurmProfile | None = None
    dashboard: str | None = ":8787"
    memory_limit: str | float | None = "auto"
    extra: dict = field(default_factory=dict)
    task_tracebacks: bool = False

    def check(self) -> None:
        """Raise :class:`InvalidInputError` for inconsistent options."""
        if self.kind not in CLUSTER_KINDS:
            raise InvalidInputError(
                f"cluster must be one of {', '.join(CLUSTER_KINDS)}, got {self.kind!r}"
            )
        for name in ("workers", "threads", "gpus"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) < 1):
                raise InvalidInputError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.kind == "scheduler" and not self.scheduler:
            raise InvalidInputError("attaching to a cluster needs its scheduler address")
        if self.kind == "slurm" and self.slurm is None:
            raise InvalidInputError("a SLURM cluster needs a profile (at least the account)")


@dataclass(frozen=True)
class ClusterInfo:
    """What a batch job runs on.

    Attributes
    ----------
    description : str
        One line for the log.
    dashboard : str or None
        The dashboard's address (None without one).
    threads : int or None
        OpenMP/torch threads per worker (None: leave the workers' setting).
    gpu_slots : int
        GPUs per node that workers divide among themselves (:func:`pin_one_gpu`).
    fit_threads : int or None
        Torch threads of a job's once-only fit (a learned engine trained once, see
        :func:`~._batch_worker.fit_model`): every other worker waits for it, so it may
        use the cores the cluster was given on its machine (a local cluster's workers x
        threads; a SLURM node's cores). From the cluster's options, never from the
        workers alive at the time, so a job's fit is the same on every run. None: the
        worker's own ``threads`` (an attached scheduler or a given client).
    """

    description: str
    dashboard: str | None
    threads: int | None
    gpu_slots: int = 0
    fit_threads: int | None = None


#: glibc malloc settings of the workers. distributed's default (trim freed memory back to
#: the OS above 64 KiB) makes every large numpy temporary a fresh mmap that the kernel
#: zeroes again: measured on TV-L1 flow at 512 px, 2.5x the wall time, half of it in the
#: kernel. Arrays up to 64 MiB are reused from the heap instead, at most 256 MiB kept free.
MALLOC_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": str(64 * 1024**2),
    "MALLOC_TRIM_THRESHOLD_": str(256 * 1024**2),
}


#: distributed's monitoring, made coarser on the local clusters this module starts. At
#: its defaults each worker samples its task's stack every 10 ms (the dashboard's
#: profile) and checks its event loop every 20 ms; with the scheduler and the nannies in
#: this process that took about 7 % of 2 cores while both workers filled learned
#: chunks (their task threads got 93 % of a core, 99 % with these settings). The
#: dashboard's "Profile" page stays empty; everything else it shows still works.
QUIET_MONITORING = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def quiet_monitoring() -> dict:
    """:data:`QUIET_MONITORING` for each setting still at distributed's default.

    A setting that differs from distributed's default (a dask config file, ``DASK_...``
    environment variables, ``dask.config.set``) is left as it is. The nannies' memory
    monitor then checks every 1 s instead of 100 ms: a worker whose memory jumps fast may
    pass its limit before it is paused or restarted.

    Returns
    -------
    dict
        Dask config keys and values to set while the cluster starts.
    """
    import dask
    import distributed  # noqa: F401 - registers its defaults

    defaults = dask.config.merge(*dask.config.defaults)
    return {
        key: value
        for key, value in QUIET_MONITORING.items()
        if dask.config.get(key, None) == dask.config.get(key, None, config=defaults)
    }


def worker_environment(threads: int) -> dict[str, str]:
    """Environment a worker process must start with: thread pools and malloc settings.

    Both are read when the process (or numpy's BLAS) starts, so they go into
    ``distributed.nanny.pre-spawn-environ``, which the nanny sets before it spawns.
    """
    return {**MALLOC_ENVIRONMENT, **{name: str(threads) for name in THREAD_VARIABLES}}


@contextlib.contextmanager
def _spawn_environment(threads: int) -> Iterator[None]:
    """Workers spawned inside get :func:`worker_environment`; this process's is restored.

    A nanny lets this process's environment override its pre-spawn settings, and writes
    them into this process when it spawns. So an earlier cluster (or a worker restarted
    by its nanny) would hand its thread counts to the next cluster's workers: they are
    set here for the spawn, and the previous values put back afterwards. The scheduler,
    nannies and workers made inside also get :func:`quiet_monitoring`.
    """
    import dask

    environment = worker_environment(threads)
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        settings = {"distributed.nanny.pre-spawn-environ": environment, **quiet_monitoring()}
        with dask.config.set(settings):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _dashboard_link(client) -> str | None:
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:
        return None  # distributed serves no dashboard without bokeh
    try:
        return client.dashboard_link
    except Exception:  # noqa: BLE001 - no dashboard is not an error
        return None


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise InvalidInputError(f"batch jobs need dask.distributed: {_CLUSTER_HINT}") from None
    return distributed


def check_cluster_available(options: ClusterOptions) -> None:
    """Check the options and that the libraries their cluster needs are installed.

    Starts nothing, so front-ends call it before they create an output store.

    Raises
    ------
    InvalidInputError
        Inconsistent options, or a missing library (dask.distributed; dask-cuda for
        ``cuda``; dask-jobqueue for ``slurm``), naming what to install.
    """
    import importlib.util

    options.check()
    _import_distributed()
    module, message = _NEEDS.get(options.kind, (None, ""))
    if module is not None and importlib.util.find_spec(module) is None:
        raise InvalidInputError(message)


def _local_cluster(options: ClusterOptions):
    import distributed

    cores = available_cores()
    workers = int(options.workers or cores)
    threads = int(options.threads or max(1, cores // workers))
    with _spawn_environment(threads):
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=options.dashboard,
            memory_limit=options.memory_limit,
            **options.extra,
        )
    noun = "worker" if workers == 1 else "workers"
    description = f"local cluster: {workers} {noun} x {threads} thread(s)"
    return cluster, description, threads, workers * threads


def _cuda_cluster(options: ClusterOptions):
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        raise InvalidInputError(_NEEDS["cuda"][1]) from None
    cores = available_cores()
    kwargs = dict(options.extra)
    gpus = options.gpus
    if gpus is not None:
        kwargs["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(int(gpus)))
    threads = int(options.threads or max(1, cores // max(1, gpus or 1)))
    with _spawn_environment(threads):
        cluster = LocalCUDACluster(
            threads_per_worker=1, dashboard_address=options.dashboard, **kwargs
        )
    workers = len(cluster.workers)
    description = f"local CUDA cluster: {workers} GPU worker(s) x {threads} thread(s)"
    return cluster, description, threads, threads  # the fit runs on its worker's GPU


def slurm_cluster(profile: SlurmProfile, *, dashboard: str | None = ":8787"):
    """A dask-jobqueue ``SLURMCluster`` for ``profile`` (jobs not yet submitted).

    Its ``job_script()`` shows the batch script each job runs.
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise InvalidInputError(_NEEDS["slurm"][1]) from None
    directives = [f"--qos={profile.qos}"]
    if profile.constraint:
        directives.append(f"--constraint={profile.constraint}")
    if profile.gpus_per_node > 0:
        directives.append(f"--gpus-per-node={profile.gpus_per_node}")
    directives += list(profile.extra_directives)
    environment = worker_environment(profile.threads)
    prologue = list(profile.prologue) + [
        f"export {name}={value}" for name, value in environment.items()
    ]
    # the nanny sets its own pre-spawn environment over the job's: hand it ours
    prologue.append(f'export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON="{environment}"')
    return SLURMCluster(
        account=profile.account,
        queue=profile.partition,
        # one Dask thread per worker (one chunk at a time), all cores booked for the job:
        # the engines' own thread pools (OMP/torch, set in the prologue) use them
        cores=profile.processes,
        job_cpu=profile.cores_per_node,
        processes=profile.processes,
        memory=profile.memory,
        walltime=profile.walltime,
        job_extra_directives=directives,
        job_script_prologue=prologue,
        local_directory=profile.local_directory,
        interface=profile.interface,
        scheduler_options={"dashboard_address": dashboard} if dashboard else {},
    )


_PINNED: list = []  # the lock file this worker process holds, once pinned


def pin_one_gpu(gpus_per_node: int) -> str | None:
    """Keep one GPU of the node visible to this worker process (``CUDA_VISIBLE_DEVICES``).

    Several workers of one SLURM job share a node and all its GPUs. Before its first
    chunk (so before any engine initialises CUDA) each worker takes the first free slot
    among ``gpus_per_node``: an exclusive lock on a node-local file, held for the
    worker's life. Returns the device kept, or None when there is nothing to choose.
    """
    import fcntl
    import tempfile

    if _PINNED:
        return os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(int(gpus_per_node))]
    if len(devices) <= 1:
        return None
    job = os.environ.get("SLURM_JOB_ID", "local")
    for slot, device in enumerate(devices):
        path = os.path.join(tempfile.gettempdir(), f"napari-scigen-gpu-{job}-{slot}.lock")
        handle = open(path, "w")  # noqa: SIM115 - held open while the worker lives
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _PINNED.append(handle)
        os.environ["CUDA_VISIBLE_DEVICES"] = device
        return device
    return None


def _slurm(options: ClusterOptions):
    profile = options.slurm
    cluster = slurm_cluster(profile, dashboard=options.dashboard)
    cluster.scale(jobs=profile.jobs)
    workers = profile.jobs * profile.processes
    where = f"{profile.gpus_per_node} GPU(s)/node" if profile.gpus_per_node else "CPU nodes"
    description = (
        f"SLURM: {profile.jobs} job(s) x {profile.processes} worker(s), {where}, account "
        f"{profile.account}, qos {profile.qos}, walltime {profile.walltime} "
        f"({workers} workers once the jobs start)"
    )
    return cluster, description, profile.threads, profile.threads * profile.processes


class _NoComputeFailedRecords(logging.Filter):
    """Drops the worker's multi-line "Compute Failed ... Traceback" records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Compute Failed")


class QuietTaskErrors:
    """Worker plugin: a failing chunk is reported once, by the driver, as one line.

    Installed on every worker (also on workers that join or restart later) unless
    :attr:`ClusterOptions.task_tracebacks`; other worker messages are kept.
    """

    name = "napari-scigen-quiet-task-errors"

    def setup(self, worker=None) -> None:
        """Add the filter to the worker's logger (once per process)."""
        logger = logging.getLogger("distributed.worker")
        if not any(isinstance(f, _NoComputeFailedRecords) for f in logger.filters):
            logger.addFilter(_NoComputeFailedRecords())

    def teardown(self, worker=None) -> None:
        """Nothing to undo: the filter goes with the process."""

    def transition(self, key, start, finish, **kwargs) -> None:
        """Not used."""


def _quiet_task_errors(client, options: ClusterOptions) -> None:
    if options.task_tracebacks:
        return
    from distributed.diagnostics.plugin import WorkerPlugin

    plugin = type("QuietTaskErrorsPlugin", (QuietTaskErrors, WorkerPlugin), {})()
    client.register_plugin(plugin, name=QuietTaskErrors.name)


@contextlib.contextmanager
def open_client(options: ClusterOptions, client=None) -> Iterator[tuple[object, ClusterInfo]]:
    """A ``distributed.Client`` on the cluster ``options`` describe, closed on exit.

    Parameters
    ----------
    options : ClusterOptions
        The cluster to start or attach to.
    client : distributed.Client, optional
        Use this client (and its cluster) as it is; it is left open.

    Yields
    ------
    tuple
        ``(client, ClusterInfo)``.
    """
    options.check()
    distributed = _import_distributed()
    if client is not None:
        yield client, ClusterInfo("the given client", _dashboard_link(client), options.threads)
        return
    if options.kind == "scheduler":
        where = str(options.scheduler)
        by_file = where.endswith(".json") and os.path.isfile(
            where
        )  # dask scheduler --scheduler-file
        try:
            if by_file:
                attached = distributed.Client(scheduler_file=where, timeout="30s")
            else:
                attached = distributed.Client(where, timeout="30s")
        except (OSError, TimeoutError) as error:
            raise InvalidInputError(
                f"cannot reach the Dask scheduler at {options.scheduler}: {error}"
            ) from None
        try:
            _quiet_task_errors(attached, options)
            info = ClusterInfo(
                f"scheduler {options.scheduler}", _dashboard_link(attached), options.threads
            )
            yield attached, info
        finally:
            attached.close()
        return
    factory = {"local": _local_cluster, "cuda": _cuda_cluster, "slurm": _slurm}[options.kind]
    cluster, description, threads, fit_threads = factory(options)
    try:
        with distributed.Client(cluster) as started:
            _quiet_task_errors(started, options)
            slots = options.slurm.gpus_per_node if options.kind == "slurm" else 0
            # the scheduler serves its HTTP routes (and a link to them) even without the
            # dashboard, so the link is only reported when a dashboard was asked for
            link = _dashboard_link(started) if options.dashboard is not None else None
            yield started, ClusterInfo(description, link, threads, slots, fit_threads)
    finally:
        cluster.close()
