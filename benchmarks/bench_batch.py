"""Benchmark: batch jobs on a local Dask cluster — speed-up with workers, memory per worker.

Two parts (run them one at a time, with nothing else heavy on the machine):

``--part speedup``
    Flow interpolation of a 64 x 512 x 512 uint16 rock phantom (every other slice
    rebuilt: 31 TV-L1 flows), through ``workflows.batch`` on a LocalCluster of 1 worker
    and then of 2 workers (the package's own local cluster: processes, 1 thread each),
    alternated ``--repeats`` times; the best time of each counts. Reports wall time of
    each job (cluster start-up excluded), the speed-up, that both outputs are identical,
    the CPU that other processes used (and the host stole) during each run, and per
    worker the peak RSS (``VmHWM``) against its RSS before the job and the bytes of one
    chunk. ``--single-process`` also times ``api.interpolate`` in this process and checks
    the batch output against it.

``--part large``
    A 4 GiB uint16 OME-Zarr (512 x 2048 x 2048, generated lazily and written slab by
    slab) processed end to end: linear interpolation of every other slice on 2
    workers, peak RSS per worker (target < 1 GiB).

``--part learned``
    What z-chunks do to the learned interpolation engine (which trains on the volume it
    is given): a 48 x 64 x 64 rock phantom, every other slice rebuilt, in evaluation
    mode (``train_steps=0``, the shipped weights) and trained (30 steps), each run as
    the default one task and with ``chunk_slices`` 8 and 16, against ``api.interpolate``
    in this process: whether one task is identical, and how far the chunked results are.

Usage::

    python benchmarks/bench_batch.py --part learned
    python benchmarks/bench_batch.py --part speedup
    python benchmarks/bench_batch.py --part large --dir /tmp/bench_batch --generate-only --keep
    python benchmarks/bench_batch.py --part large --dir /tmp/bench_batch

Results are merged into ``bench_batch.json`` beside this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _load() -> str:
    return os.popen("uptime").read().strip()


def _peak_rss_mib() -> float:
    """Peak RSS of this process (``VmHWM``: since its own start, unlike ``ru_maxrss``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds() -> dict:
    """Machine-wide busy and steal CPU seconds, and those of this process tree."""
    import psutil

    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _, _, irq, softirq, steal = fields[:8]
    ours = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
            ours += times.user + times.system
        except psutil.Error:
            continue
    return {
        "busy": (user + nice + system + irq + softirq) / tick,
        "steal": steal / tick,
        "ours": ours,
    }


def _others(before: dict, after: dict, seconds: float) -> dict:
    """CPU used by other processes (and stolen by the host) during a run, in cores."""
    busy = after["busy"] - before["busy"]
    ours = after["ours"] - before["ours"]
    return {
        "this_job_cores": round(ours / seconds, 2),
        "other_processes_cores": round(max(0.0, busy - ours) / seconds, 2),
        "stolen_cores": round((after["steal"] - before["steal"]) / seconds, 2),
    }


def _warm_up() -> int:
    """Import what a chunk needs, so the baseline RSS is the worker's resting size."""
    import skimage.registration  # noqa: F401
    import skimage.transform  # noqa: F401

    import napari_scigen.api  # noqa: F401
    import napari_scigen.workflows.batch  # noqa: F401

    return os.getpid()


def _run_on(workers: int, request, *, fresh: bool = True) -> dict:
    """Run ``request`` on the package's own local cluster of ``workers`` processes."""
    from napari_scigen.workflows._batch_cluster import open_client
    from napari_scigen.workflows.batch import ClusterOptions, run_batch

    if fresh and Path(request.output).exists():
        shutil.rmtree(request.output)
    with open_client(ClusterOptions(workers=workers, dashboard=None)) as (client, info):
        client.run(_warm_up)
        before = client.run(_rss_mib)
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        summary = run_batch(request, client=client)
        seconds = time.perf_counter() - started
        cpu = _others(cpu_before, _cpu_seconds(), seconds)
        peak = client.run(_peak_rss_mib)
    return {
        "workers": workers,
        "cluster": info.description,
        "seconds": round(seconds, 2),
        "chunks": summary.n_chunks,
        "chunks_per_worker": sorted(summary.workers.values()),
        "rss_before_job_mib": sorted(round(v) for v in before.values()),
        "peak_rss_mib": sorted(round(v) for v in peak.values()),
        "cpu_during_run": cpu,
    }


def part_speedup(folder: Path, single_process: bool, repeats: int) -> dict:
    from napari_scigen import api
    from napari_scigen.core.io import read_volume, write_volume
    from napari_scigen.core.phantoms import make_rock_volume
    from napari_scigen.engines.interpolation.plan import keep_every
    from napari_scigen.workflows.batch import BatchRequest, plan_batch

    volume = make_rock_volume(shape=(64, 512, 512), seed=1).volume
    source = write_volume(folder / "rock512.ome.zarr", volume, voxel_size=(1, 1, 1))
    missing = keep_every(64, 2)
    results: dict = {"shape": list(volume.shape), "dtype": volume.dtype.name}
    results["missing"] = f"{len(missing)} slices (every other, {len(missing)} flows)"
    outputs, runs = {}, {1: [], 2: []}
    for _ in range(repeats):
        for workers in (1, 2):  # alternated, so a burst of other load hits both alike
            out = folder / f"flow_{workers}w.ome.zarr"
            request = BatchRequest("interpolate", "flow", str(source), str(out), missing=missing)
            if "chunk_slices" not in results:
                job = plan_batch(request)
                chunk = job.chunks[1]
                depth = chunk.source_stop - chunk.source_start
                results["chunk_slices"] = job.chunk_slices
                results["chunk_input_mib"] = round(depth * 512 * 512 * 2 / 2**20, 1)
            run = _run_on(workers, request)
            run["load_after"] = _load()
            runs[workers].append(run)
            outputs[workers] = read_volume(out).data
    for workers in (1, 2):
        results[f"{workers}_worker"] = min(runs[workers], key=lambda run: run["seconds"])
        results[f"{workers}_worker_all_seconds"] = [run["seconds"] for run in runs[workers]]
    results["identical_outputs"] = bool(np.array_equal(outputs[1], outputs[2]))
    results["speedup"] = round(results["1_worker"]["seconds"] / results["2_worker"]["seconds"], 2)
    if single_process:
        started = time.perf_counter()
        reference = api.interpolate(volume, missing=missing, method="flow").data
        results["single_process_seconds"] = round(time.perf_counter() - started, 2)
        results["equals_single_process"] = bool(np.array_equal(outputs[2], reference))
    return results


def _synthetic_slab(block: np.ndarray, block_info=None) -> np.ndarray:
    """A microCT-like uint16 slab: smooth structure that moves with z, plus noise."""
    (z0, z1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    z = np.arange(z0, z1, dtype=np.float32)[:, None, None]
    y = np.arange(y0, y1, dtype=np.float32)[None, :, None]
    x = np.arange(x0, x1, dtype=np.float32)[None, None, :]
    field = np.sin((x + 0.7 * z) / 37.0) * np.cos((y - 0.4 * z) / 53.0)
    noise = np.random.default_rng(z0).normal(0.0, 0.05, field.shape).astype(np.float32)
    return ((field + noise + 1.2) * 20000.0).clip(0, 65535).astype(np.uint16)


def part_large(folder: Path, generate_only: bool = False) -> dict:
    import dask.array as da

    from napari_scigen.core.io import write_zarr
    from napari_scigen.engines.interpolation.plan import keep_every
    from napari_scigen.workflows.batch import BatchRequest, plan_batch

    shape = (512, 2048, 2048)
    source = folder / "large.ome.zarr"
    results: dict = {"shape": list(shape), "dtype": "uint16", "gib": 4.0}
    if not source.exists():
        lazy = da.zeros(shape, dtype=np.uint16, chunks=(16, 2048, 2048))
        lazy = lazy.map_blocks(_synthetic_slab, dtype=np.uint16)
        started = time.perf_counter()
        write_zarr(source, lazy, voxel_size=(1, 1, 1), levels=1)
        results["generate_and_write_seconds"] = round(time.perf_counter() - started, 1)
        results["generator_and_writer_peak_rss_mib"] = round(_peak_rss_mib())
    on_disk = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    results["input_on_disk_gib"] = round(on_disk / 2**30, 2)
    if generate_only:
        return results
    missing = keep_every(shape[0], 2)
    out = folder / "large_linear.ome.zarr"
    request = BatchRequest("interpolate", "linear", str(source), str(out), missing=missing)
    job = plan_batch(request)
    chunk = job.chunks[1]
    results["chunk_slices"] = job.chunk_slices
    results["chunk_input_mib"] = (chunk.source_stop - chunk.source_start) * 2048 * 2048 * 2 / 2**20
    results["2_worker"] = _run_on(2, request)
    results["2_worker"]["load_after"] = _load()
    return results


def part_learned(folder: Path) -> dict:
    import torch
    from distributed import Client

    from napari_scigen import api
    from napari_scigen.core.io import read_volume, write_volume
    from napari_scigen.core.phantoms import make_rock_volume
    from napari_scigen.workflows.batch import BatchRequest, run_batch

    torch.set_num_threads(1)
    volume = make_rock_volume(shape=(48, 64, 64), seed=5).volume
    source = write_volume(folder / "rock.ome.zarr", volume, voxel_size=(2.0, 1.0, 1.0))
    missing = tuple(range(1, volume.shape[0] - 1, 2))
    low, high = int(volume.min()), int(volume.max())
    results: dict = {
        "shape": list(volume.shape),
        "dtype": volume.dtype.name,
        "missing": f"every other slice ({len(missing)})",
        "value_range": [low, high],
        "cluster": "in-process, 1 worker x 1 thread (torch 1 thread, params threads=1)",
    }
    modes = {
        "eval": {"train_steps": 0, "validation_slices": 0},
        "trained_30_steps": {"train_steps": 30, "batch_size": 4, "crop_size": 32},
    }
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        for mode, params in modes.items():
            params = {**params, "threads": 1, "uncertainty": False, "seed": 0}
            reference = api.interpolate(volume, method="learned", missing=missing, **params).data
            entry: dict = {"params": params}
            for chunk_slices in (None, 8, 16):
                out = folder / f"{mode}_{chunk_slices}.ome.zarr"
                request = BatchRequest(
                    "interpolate", "learned", str(source), str(out), params=params,
                    missing=missing, chunk_slices=chunk_slices,
                )  # fmt: skip
                summary = run_batch(request, client=c)
                got = read_volume(out).data
                diff = np.abs(got.astype(np.int64) - reference.astype(np.int64))[list(missing)]
                entry["one_task" if chunk_slices is None else f"chunk_slices_{chunk_slices}"] = {
                    "chunks": summary.n_chunks,
                    "identical_to_single_process": bool(np.array_equal(got, reference)),
                    "synthesized_voxels_differing": round(float((diff > 0).mean()), 4),
                    "mean_abs_diff": round(float(diff.mean()), 1),
                    "max_abs_diff": int(diff.max()),
                    "max_abs_diff_percent_of_range": round(
                        100 * float(diff.max()) / (high - low), 1
                    ),
                }
            results[mode] = entry
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("speedup", "large", "learned"), required=True)
    parser.add_argument("--dir", help="working folder (default: a temporary one, removed)")
    parser.add_argument("--single-process", action="store_true", help="also time api.interpolate")
    parser.add_argument("--keep", action="store_true", help="keep the generated stores")
    parser.add_argument(
        "--generate-only", action="store_true", help="large: only write the input (use --keep)"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="speedup: runs of each size (the best counts)"
    )
    parser.add_argument("--json", default=str(HERE / "bench_batch.json"))
    args = parser.parse_args()
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_batch_"))
    folder.mkdir(parents=True, exist_ok=True)
    load_before = _load()
    try:
        if args.part == "speedup":
            result = part_speedup(folder, args.single_process, args.repeats)
        elif args.part == "learned":
            result = part_learned(folder)
        else:
            result = part_large(folder, args.generate_only)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    result["load_before"] = load_before
    result["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    path = Path(args.json)
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged[args.part] = result
    path.write_text(json.dumps(merged, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
