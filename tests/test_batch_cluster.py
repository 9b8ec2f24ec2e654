"""The clusters a batch job runs on, without starting one: GPU and SLURM set-up, clear errors.

dask-cuda needs CUDA and SLURM needs a centre, so these tests check what can be checked
here: the errors when a library is missing (before any store is made), what the local
CUDA cluster is asked for (with a stand-in for dask-cuda), the SLURM job scripts
dask-jobqueue generates from a profile, and how the workers of a node share its GPUs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import types

import numpy as np
import pytest

pytest.importorskip("zarr", minversion="3")
pytest.importorskip("distributed")

from napari_scigen.cli import main  # noqa: E402
from napari_scigen.core.io import write_volume  # noqa: E402
from napari_scigen.core.validation import InvalidInputError  # noqa: E402
from napari_scigen.workflows import _batch_cluster  # noqa: E402
from napari_scigen.workflows.batch import (  # noqa: E402
    BatchRequest,
    ClusterOptions,
    SlurmProfile,
    check_cluster_available,
    run_batch,
)


@pytest.fixture
def small_tiff(tmp_path):
    return write_volume(tmp_path / "v.tif", np.zeros((4, 8, 8), np.uint8))


@pytest.mark.parametrize(
    ("kind", "module", "message"),
    [
        ("cuda", "dask_cuda", "a local GPU cluster needs dask-cuda"),
        ("slurm", "dask_jobqueue", "a SLURM cluster needs dask-jobqueue"),
    ],
)
def test_a_missing_cluster_library_is_named_before_any_work(
    tmp_path, small_tiff, monkeypatch, capsys, kind, module, message
):
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    options = ClusterOptions(kind, gpus=1, slurm=SlurmProfile(account="m1"))
    with pytest.raises(InvalidInputError, match=message):
        check_cluster_available(options)
    out = tmp_path / "o.ome.zarr"
    request = BatchRequest("interpolate", "linear", str(small_tiff), str(out), factor=2)
    with pytest.raises(InvalidInputError, match=message):
        run_batch(request, options=options)
    flag = ["--gpus", "1"] if kind == "cuda" else ["--cluster", "slurm", "--slurm-account", "m1"]
    argv = ["batch", "interpolate", "linear", str(small_tiff), "-o", str(out), "--factor", "2"]
    assert main([*argv, *flag]) == 2
    error = capsys.readouterr().err
    assert message in error and "pip install 'napari-scigen[" in error
    assert not out.exists()  # checked before the output store was made


def test_gpus_start_one_dask_cuda_worker_per_gpu(monkeypatch):
    import dask

    asked = {}

    class FakeLocalCUDACluster:  # what dask_cuda.LocalCUDACluster is called with
        def __init__(self, **kwargs):
            asked.update(kwargs)
            asked["environ"] = dask.config.get("distributed.nanny.pre-spawn-environ")
            asked["profile"] = dask.config.get("distributed.worker.profile.enabled")
            self.workers = {i: None for i in kwargs["CUDA_VISIBLE_DEVICES"].split(",")}

    monkeypatch.setitem(
        sys.modules, "dask_cuda", types.SimpleNamespace(LocalCUDACluster=FakeLocalCUDACluster)
    )
    monkeypatch.setattr(_batch_cluster, "available_cores", lambda: 16)
    cluster, description, threads, fit_threads = _batch_cluster._cuda_cluster(
        ClusterOptions("cuda", gpus=4, dashboard=None)
    )
    assert fit_threads == 4  # a once-only fit runs on its worker's GPU with its threads
    assert asked["CUDA_VISIBLE_DEVICES"] == "0,1,2,3" and asked["threads_per_worker"] == 1
    assert threads == 4 and asked["environ"]["OMP_NUM_THREADS"] == "4"  # 16 cores / 4 GPUs
    assert asked["environ"]["MALLOC_MMAP_THRESHOLD_"] == str(64 * 1024**2)
    assert asked["profile"] is False  # quiet monitoring, as on a local CPU cluster
    assert description == "local CUDA cluster: 4 GPU worker(s) x 4 thread(s)"


def test_a_cpu_node_slurm_profile_becomes_its_job_script():
    # the GPU profile from the command line: tests/test_batch_cli.py
    pytest.importorskip("dask_jobqueue")
    profile = SlurmProfile(
        account="proj7",
        constraint=None,
        partition="compute",
        gpus_per_node=0,
        workers_per_node=8,
        cores_per_node=32,
        memory="120GB",
        walltime="02:00:00",
        prologue=("module load python", "source ~/scigen/bin/activate"),
        local_directory="/tmp",
        extra_directives=("--exclusive",),
    )
    cluster = _batch_cluster.slurm_cluster(profile, dashboard=None)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in (
        "#SBATCH -A proj7",
        "#SBATCH -p compute",
        "#SBATCH --qos=regular",
        "#SBATCH --exclusive",
        "#SBATCH -t 02:00:00",
        "#SBATCH --cpus-per-task=32",
        "module load python",
        "source ~/scigen/bin/activate",
        "export OMP_NUM_THREADS=4",  # 32 cores / 8 workers
        "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON",
        "--nthreads 1",  # one chunk at a time per worker
        "--nworkers 8",
        "--local-directory /tmp",
    ):
        assert line in script
    assert "--gpus-per-node" not in script and "--constraint" not in script


def test_workers_of_one_node_each_keep_a_different_gpu(monkeypatch):
    job = f"pytest{os.getpid()}"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.setenv("SLURM_JOB_ID", job)
    monkeypatch.setattr(_batch_cluster, "_PINNED", [])
    other = "from napari_scigen.workflows._batch_cluster import pin_one_gpu; print(pin_one_gpu(2))"
    try:
        assert _batch_cluster.pin_one_gpu(2) == "3"  # this process: the first free GPU
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
        assert _batch_cluster.pin_one_gpu(2) == "3"  # pinned once for the process's life
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "3,5"}
        second = subprocess.run(
            [sys.executable, "-c", other], env=env, capture_output=True, text=True, check=True
        )
        assert second.stdout.strip() == "5"  # another worker of the node: the next one
    finally:
        for handle in _batch_cluster._PINNED:
            handle.close()
        for slot in (0, 1):
            path = os.path.join(tempfile.gettempdir(), f"napari-scigen-gpu-{job}-{slot}.lock")
            if os.path.exists(path):
                os.remove(path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(_batch_cluster, "_PINNED", [])
    assert _batch_cluster.pin_one_gpu(1) is None  # one GPU: nothing to choose


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ClusterOptions("mpi"), "cluster must be one of local, cuda, slurm, scheduler"),
        (ClusterOptions(workers=0), "workers must be a whole number >= 1"),
        (ClusterOptions("scheduler"), "needs its scheduler address"),
        (ClusterOptions("slurm"), "needs a profile"),
    ],
)
def test_inconsistent_cluster_options_are_refused(options, message):
    with pytest.raises(InvalidInputError, match=message):
        check_cluster_available(options)


def test_scheduler_address_attaches_and_leaves_scheduler_to_the_engines(small_tiff, tmp_path):
    # --scheduler is the Stable Diffusion engines' sampler; the cluster's is --scheduler-address
    from napari_scigen._cli.batch import cluster_options_from_args
    from napari_scigen.cli import build_parser

    base = ["batch", "inpaint", "controlnet", str(small_tiff), "-o", str(tmp_path / "o.zarr")]
    argv = [*base, "--mask", str(small_tiff), "--scheduler", "ddim"]
    args = build_parser().parse_args([*argv, "--scheduler-address", "tcp://head:8786"])
    options = cluster_options_from_args(args)
    assert (options.kind, options.scheduler) == ("scheduler", "tcp://head:8786")
    assert args.param__scheduler == "ddim"


def test_the_local_cluster_monitors_coarsely_but_keeps_the_users_own_settings():
    # at distributed's defaults the workers' profiler (every 10 ms) and the event loop
    # ticks (every 20 ms) took about 7 % of 2 cores beside two workers filling chunks
    import dask

    def timers(server) -> dict:
        """The server's periodic callbacks and their periods (ms)."""
        return {name: pc.callback_time for name, pc in server.periodic_callbacks.items()}

    profiling = dask.config.get("distributed.worker.profile.enabled")
    options = ClusterOptions(workers=1, threads=1, dashboard=None)
    with dask.config.set({"distributed.admin.tick.interval": "3s"}):  # the user's choice
        with _batch_cluster.open_client(options) as (client, _):
            (worker,) = client.run(lambda dask_worker: timers(dask_worker)).values()
            scheduler = client.run_on_scheduler(lambda dask_scheduler: timers(dask_scheduler))
            (nanny,) = client.cluster.workers.values()
            memory = nanny.periodic_callbacks["memory_monitor"].callback_time
    assert "profile" not in worker and "heartbeat" in worker  # no stack sampling
    assert worker["monitor"] == scheduler["monitor"] == 2000  # system monitor: 2 s
    assert worker["tick"] == scheduler["tick"] == 3000  # left as the user set it
    assert memory == 1000  # the nanny's memory monitor: 1 s
    assert dask.config.get("distributed.worker.profile.enabled") == profiling  # this process


def test_the_local_cluster_splits_the_cores_between_its_workers(monkeypatch):
    # one thread pool per worker: cores // workers OpenMP/BLAS threads, set before spawn
    monkeypatch.setattr(_batch_cluster, "available_cores", lambda: 4)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # e.g. left here by an earlier cluster's nanny
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    options = ClusterOptions(workers=2, dashboard=None)
    with _batch_cluster.open_client(options) as (client, info):
        environments = client.run(
            lambda: {name: os.environ.get(name) for name in _batch_cluster.worker_environment(2)}
        )
    assert info.description == "local cluster: 2 workers x 2 thread(s)" and info.threads == 2
    assert info.dashboard is None and info.fit_threads == 4  # the cluster's cores
    assert list(environments.values()) == [_batch_cluster.worker_environment(2)] * 2
    assert os.environ["OMP_NUM_THREADS"] == "7" and "MKL_NUM_THREADS" not in os.environ
