"""Learned interpolation at larger sizes: inference time, throughput and peak memory (issue 19).

Volumes are built from tiles of real data: the fibre composite
(``../shared/data/fiber_composite_qim3d/volume.tif``, 150^3 uint8) repeated 4 x 4
in-plane and cut to ``D x 600 x 600`` (the size the issue measured). Each measurement
runs ``api.interpolate(..., method="learned", factor=2, force_learned=True,
train_steps=N)`` in its own subprocess, with the current streaming inference
(``new``; ``new-bf16``: the same with bfloat16 autocast on the CPU) or the whole-plane
inference it replaced (``old``, loaded from git at :data:`OLD_COMMIT` and patched in;
``new-side``, ``new-bf16-side``: with ``concurrent_tiles``, the network's calls side by
side, one per torch thread, compared bit for bit with the row without it),
compares the outputs with the ``old`` one, and reads the engine's own timings (train,
predict) and the process's peak RSS, minor page faults and system time from
``getrusage``. A few training steps keep the run about inference.

The ``old`` row of the JSON was measured at commit d77ed21: the engine's fill has
since moved to slab-by-slab writing (``fill_rows``), which the old ``predict_rows`` does
not support, so ``--impls old`` works only in a checkout of that commit. ``--batch
WORKERSxTHREADS,...`` times batch jobs of the same engine (trained once, weights
shipped to the chunks) on local clusters of those shapes and compares their outputs.

Writes ``benchmarks/bench_learned_scale.json`` and prints a Markdown table::

    python benchmarks/bench_learned_scale.py                          # 32 and 64 x 600^2
    python benchmarks/bench_learned_scale.py --sizes 100x300 --batch 1x1,2x1 --chunk-slices 100
    python benchmarks/bench_learned_scale.py --sizes 32x600 --impls new
    python benchmarks/bench_learned_scale.py --sizes 600x256 --impls new-bf16,new-bf16-side
    python benchmarks/bench_learned_scale.py --lock /tmp/scigen-cpu.lock  # each run under flock
    python benchmarks/bench_learned_scale.py --sizes 600x256 --batch 1x1,2x1 --chunk-slices 600
    python benchmarks/bench_learned_scale.py --large /tmp/big --large-shape 1024x1024

``--batch`` rows time the job's phases (before the fit, the fit on one worker, the
chunks) and compare the outputs and uncertainty images with the first layout and with
a one-process run of the same size kept in ``--scratch``. ``--large`` builds a >= 1 GB
OME-Zarr (and a mask store) in the given folder and runs one worker's share of a learned
inpainting and of a missing-slice interpolation batch job on it in one process, with
per phase the time, the voxels read from the image and the mask, and the peak RSS.
Under ``--lock`` every measurement is its own ``flock`` command of at most 8 minutes.

Targets of issue 19 on 2 CPU cores: peak RSS <= 3 x (input + output) + 1.5 GiB; new
inference throughput >= 3 x old.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FIBRE = REPO.parent / "shared" / "data" / "fiber_composite_qim3d" / "volume.tif"
#: The last commit with the whole-plane inference (before issue 19's streaming).
OLD_COMMIT = "4a4e536"
OLD_PATH = "src/napari_scigen/engines/learned/inference.py"


def _fibre() -> np.ndarray:
    import tifffile

    if not FIBRE.is_file():
        raise SystemExit(f"{FIBRE} is not here: this benchmark needs the real fibre volume")
    return tifffile.imread(FIBRE)


def _mirrored(fibre: np.ndarray, first: int, stop: int) -> np.ndarray:
    """Slices ``[first, stop)`` of the fibre repeated along z, every other copy mirrored
    (no jump at the seams)."""
    n = fibre.shape[0]
    index = np.arange(first, stop)
    period, offset = np.divmod(index, n)
    return fibre[np.where(period % 2 == 0, offset, n - 1 - offset)]


def build_volume(depth: int, side: int, first: int = 0) -> np.ndarray:
    """``depth x side x side`` uint8 from the fibre composite tiled in-plane (and, past
    its 150 slices, mirrored along z); slices ``[first, first + depth)`` of that."""
    fibre = _fibre()
    reps = -(-side // min(fibre.shape[1:]))
    slab = _mirrored(fibre, first, first + depth)
    return np.ascontiguousarray(np.tile(slab, (1, reps, reps))[:, :side, :side])


def load_old_predict_rows():
    """``predict_rows`` as it was at :data:`OLD_COMMIT` (read with ``git show``)."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{OLD_COMMIT}:{OLD_PATH}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    name = "napari_scigen.engines.learned._old_inference"
    path = Path("/tmp") / f"scigen_old_inference_{OLD_COMMIT}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.predict_rows


def run_one(spec: dict) -> dict:
    """One measurement (in this process)."""
    import torch

    from napari_scigen import api
    from napari_scigen.engines.learned import inference

    torch.set_num_threads(spec["threads"])
    volume = build_volume(spec["depth"], spec["side"])
    if spec["impl"] == "old":
        inference.predict_rows = load_old_predict_rows()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    result = api.interpolate(
        volume,
        method="learned",
        factor=2,
        device="cpu",
        threads=spec["threads"],
        train_steps=spec["train_steps"],
        force_learned=True,
        precision="bfloat16" if "bf16" in spec["impl"] else "float32",
        uncertainty=spec.get("uncertainty", True),
        concurrent_tiles=spec["impl"].endswith("-side"),
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    extra = result.provenance["extra"]
    seconds = extra["seconds"]
    n_out, height, width = result.data.shape
    predicted = (n_out - volume.shape[0]) * height * width
    in_out = volume.nbytes + result.data.nbytes
    spread = result.images.get("uncertainty")
    spread_bytes = 0 if spread is None else spread.nbytes
    peak = after.ru_maxrss * 1024
    if spec.get("save"):
        np.save(spec["save"], result.data)
        if spread is not None:
            np.save(spec["save"].replace(".npy", "_uncertainty.npy"), spread)
    return {
        **spec,
        "shape": list(volume.shape),
        "output_shape": [n_out, height, width],
        "filled_with": extra.get("filled_with"),
        "engine_seconds": seconds,
        "train_s": seconds.get("train"),
        "predict_s": seconds.get("predict"),
        "total_s": round(wall, 2),
        "synthesized_mvoxel": round(predicted / 1e6, 2),
        "predict_mvoxel_per_s": round(predicted / 1e6 / max(seconds["predict"], 1e-9), 4),
        "peak_rss_mib": round(peak / 2**20, 1),
        "target_rss_mib": round((3 * in_out + 1.5 * 2**30) / 2**20, 1),
        # the float32 uncertainty image is a second output (4x a uint8 result)
        "uncertainty_mib": round(spread_bytes / 2**20, 1),
        "target_rss_counting_uncertainty_mib": round(
            (3 * (in_out + spread_bytes) + 1.5 * 2**30) / 2**20, 1
        ),
        "load_before_after": [spec.get("load"), _load()],
        "minor_faults_m": round((after.ru_minflt - usage.ru_minflt) / 1e6, 2),
        "system_s": round(after.ru_stime - usage.ru_stime, 1),
        "user_s": round(after.ru_utime - usage.ru_utime, 1),
    }


def _load() -> str:
    """The machine's 1-minute load average (other agents share the 2 cores)."""
    return Path("/proc/loadavg").read_text().split()[0]


def run_batch_one(spec: dict) -> dict:
    """One batch job (``workers`` x ``threads``) of the learned interpolation, timed.

    The phases are timed from the job's progress events: before the fit (cluster start,
    the value-range pass), the fit (one worker), the chunks.
    """
    from napari_scigen.core.io import read_volume, write_volume
    from napari_scigen.workflows._batch_worker import uncertainty_store
    from napari_scigen.workflows.batch import BatchRequest, ClusterOptions, run_batch

    scratch = Path(spec["scratch"])
    source = scratch / f"{spec['depth']}x{spec['side']}.ome.zarr"
    if not source.exists():
        write_volume(source, build_volume(spec["depth"], spec["side"]))
    output = scratch / f"batch_{spec['workers']}x{spec['threads']}.ome.zarr"
    params = {
        "device": "cpu", "threads": spec["engine_threads"], "train_steps": spec["train_steps"],
        "force_learned": True, "precision": spec["precision"],
        "uncertainty": spec.get("uncertainty", True),
        "concurrent_tiles": spec.get("concurrent_tiles", False),
    }  # fmt: skip
    request = BatchRequest(
        "interpolate", "learned", str(source), str(output), params=params, factor=2,
        chunk_slices=spec["chunk_slices"],
    )  # fmt: skip
    options = ClusterOptions(
        "local", workers=spec["workers"], threads=spec["threads"], dashboard=None
    )
    marks: dict[str, float] = {}
    started = time.perf_counter()

    def mark(event) -> None:
        for key, text in (("fit_start", "training the"), ("fit_end", "trained")):
            if event.message.startswith(text) and key not in marks:
                marks[key] = time.perf_counter() - started

    summary = run_batch(request, options=options, overwrite=True, on_progress=mark)
    wall = time.perf_counter() - started
    np.save(spec["save"], np.asarray(read_volume(str(output)).data))
    spread = uncertainty_store(output)
    if spread.is_dir():
        np.save(spec["save"].replace(".npy", "_uncertainty.npy"), read_volume(spread).data)
    fit = marks.get("fit_end", 0) - marks.get("fit_start", 0)
    return {
        **spec,
        "chunks": summary.n_chunks,
        "batch_s": round(summary.seconds, 2),
        "total_s": round(wall, 2),
        "before_fit_s": round(marks.get("fit_start", 0), 2),
        "fit_s": round(fit, 2),
        "fit_threads": _fit_threads(output),
        "chunks_s": round(wall - marks.get("fit_end", 0), 2),
        "per_worker_chunks": summary.workers,
        "load_before_after": [spec.get("load"), _load()],
    }


def _fit_threads(store: Path) -> int | None:
    """The torch threads the job's once-only fit trained with (its record)."""
    record = Path(store) / ".napari_scigen_batch" / "model" / "learned.json"
    if not record.is_file():
        return None
    return json.loads(record.read_text())["fitted"]["extra"].get("fit_threads")


def compare(reference: Path, path: str) -> dict:
    """How the output differs from the ``old`` one (grey levels), when both exist."""
    if not reference.is_file() or str(reference) == path:
        return {}
    old = np.load(reference).astype(np.int32)
    new = np.load(path).astype(np.int32)
    diff = np.abs(new - old)
    return {
        "vs_old_max_abs": int(diff.max()),
        "vs_old_differing_percent": round(100 * float((diff > 0).mean()), 4),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32x600,64x600", help="DEPTHxSIDE, comma-separated")
    parser.add_argument("--impls", default="new,new-bf16")
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lock", default=None, help="run each measurement under flock LOCK")
    parser.add_argument("--out", default=str(HERE / "bench_learned_scale.json"))
    parser.add_argument(
        "--scratch", default=None, help="folder of the outputs (an old one kept there is compared)"
    )
    parser.add_argument(
        "--append", action="store_true", help="keep the one-process rows already in --out"
    )
    parser.add_argument(
        "--batch",
        default=None,
        help="batch runs instead: WORKERSxTHREADS,... (e.g. 1x1,2x1) on the first size",
    )
    parser.add_argument("--chunk-slices", type=int, default=None, help="batch chunk size")
    parser.add_argument("--precision", default="bfloat16", help="batch runs' precision")
    parser.add_argument(
        "--concurrent-tiles", action="store_true", help="batch runs: tiles side by side"
    )
    parser.add_argument(
        "--engine-threads",
        type=int,
        default=None,
        help="batch runs: the engine's threads= (default none: the workers' threads, and "
        "the once-only fit uses the cores of the workers waiting on its machine)",
    )
    parser.add_argument("--lock-wait", type=int, default=1200, help="flock -w seconds")
    parser.add_argument(
        "--lock-limit", type=int, default=480, help="seconds a locked measurement may run"
    )
    parser.add_argument(
        "--no-uncertainty", action="store_true", help="without the float32 uncertainty image"
    )
    parser.add_argument(
        "--large", default=None, help="the >= 1 GB part instead: folder of its OME-Zarr stores"
    )
    parser.add_argument("--large-shape", default="1024x1024x1024", help="DEPTHxHEIGHTxWIDTH")
    parser.add_argument("--large-tasks", default="inpaint,interpolate")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--one-large", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--one-batch", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    if args.one_batch:
        print(json.dumps(run_batch_one(json.loads(args.one_batch))))
        return
    if args.one_large:
        print(json.dumps(run_large_one(json.loads(args.one_large))))
        return
    rows = []
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="bench_learned_scale_"))
    scratch.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    if args.batch:
        return batch_main(args, scratch, commit)
    if args.large:
        return large_main(args, commit)
    for size in args.sizes.split(","):
        depth, side = (int(v) for v in size.split("x"))
        for impl in args.impls.split(","):
            spec = {
                "depth": depth,
                "side": side,
                "impl": impl,
                "train_steps": args.train_steps,
                "threads": args.threads,
                "save": str(scratch / f"{size}_{impl}.npy"),
                "commit": commit,
                "uncertainty": not args.no_uncertainty,
                "load": _load(),
            }
            rows.append(measure("--one", spec, args.lock, args.lock_wait, args.lock_limit))
    for row in rows:
        in_turn = Path(row["save"].replace("-side.npy", ".npy"))
        if "error" not in row and row["impl"].endswith("-side") and in_turn.is_file():
            row.update(_differences(row["save"], str(in_turn), "vs_in_turn"))
        row.update(compare(scratch / f"{row['depth']}x{row['side']}_old.npy", row.pop("save")))
    # the batch, large and other parts of --out are kept; its rows too with --append
    record = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    if args.append:
        rows = record.get("rows", []) + rows
    record.update(
        machine=f"{platform.machine()}, {args.threads} threads (shared 2-core VM, no GPU)",
        python=platform.python_version(),
        old=f"{OLD_COMMIT}:{OLD_PATH}",
        rows=rows,
    )
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(
        "\n| size | impl | predict s | Mvoxel/s | peak RSS MiB | target MiB | faults M | sys s "
        "| vs old: max diff, % differing |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['depth']}x{row['side']}^2 | {row['impl']} | error: {row['error']} |")
            continue
        print(
            f"| {row['depth']}x{row['side']}^2 | {row['impl']} | {row['predict_s']} | "
            f"{row['predict_mvoxel_per_s']} | {row['peak_rss_mib']} | {row['target_rss_mib']} | "
            f"{row['minor_faults_m']} | {row['system_s']} | "
            f"{row.get('vs_old_max_abs', '')}, {row.get('vs_old_differing_percent', '')} |"
        )


def measure(flag: str, spec: dict, lock: str | None, wait: int = 1200, limit: int = 480) -> dict:
    """Run one measurement in a subprocess (under ``flock lock``); its row, or its error."""
    command = [sys.executable, __file__, flag, json.dumps(spec)]
    if lock:  # each locked command at most ``limit`` seconds (8 minutes: the machine's rule)
        command = ["flock", "-w", str(wait), lock, "timeout", str(limit), *command]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        row = {**spec, "error": done.stderr.strip().splitlines()[-1:]}
    else:
        row = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def _differences(path: str, reference: str, name: str) -> dict:
    """Output (grey levels) and uncertainty (data units) differences of two runs."""
    a, b = np.load(path).astype(np.int32), np.load(reference).astype(np.int32)
    diff = np.abs(a - b)
    found = {
        f"{name}_max_abs": int(diff.max()),
        f"{name}_differing_percent": round(100 * float((diff > 0).mean()), 4),
    }
    spread, other = (Path(p.replace(".npy", "_uncertainty.npy")) for p in (path, reference))
    if spread.is_file() and other.is_file():
        gap = np.abs(np.load(spread) - np.load(other))
        found[f"{name}_uncertainty_max_abs"] = float(gap.max())
    return found


def batch_main(args, scratch: Path, commit: str) -> None:
    """Batch runs of the first size on each ``WORKERSxTHREADS`` cluster (same chunks)."""
    depth, side = (int(v) for v in args.sizes.split(",")[0].split("x"))
    rows = []
    for layout in args.batch.split(","):
        workers, threads = (int(v) for v in layout.split("x"))
        spec = {
            "kind": "batch", "depth": depth, "side": side, "workers": workers,
            "threads": threads, "engine_threads": args.engine_threads,
            "train_steps": args.train_steps,
            "precision": args.precision, "chunk_slices": args.chunk_slices,
            "scratch": str(scratch), "save": str(scratch / f"batch_{layout}.npy"),
            "commit": commit, "uncertainty": not args.no_uncertainty, "load": _load(),
            "concurrent_tiles": args.concurrent_tiles,
        }  # fmt: skip
        rows.append(measure("--one-batch", spec, args.lock, args.lock_wait, args.lock_limit))
    first = rows[0]
    impl = "new-bf16" if args.precision == "bfloat16" else "new"
    single = scratch / f"{depth}x{side}_{impl}.npy"
    for row in rows:
        if "error" in row or "error" in first:
            continue
        row["speedup_vs_first"] = round(first["batch_s"] / row["batch_s"], 3)
        row["chunks_speedup_vs_first"] = round(first["chunks_s"] / row["chunks_s"], 3)
        row.update(_differences(row["save"], first["save"], "vs_first"))
        if single.is_file():
            row.update(_differences(row["save"], str(single), "vs_one_process"))
    for row in rows:
        row.pop("save", None)
        row.pop("scratch", None)
    old = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {"rows": []}
    old.setdefault("batch_rows", [])
    old["batch_rows"] += rows
    Path(args.out).write_text(json.dumps(old, indent=1) + "\n")


# --------------------------------------------------------------------------------------
# the >= 1 GB lazy OME-Zarr part: one worker's share of a batch job, in one process
# --------------------------------------------------------------------------------------


def _disk_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def _proc(field: str, name: str = "status") -> int:
    """A number from ``/proc/self/status`` (kB) or ``/proc/self/io`` (bytes)."""
    for line in Path(f"/proc/self/{name}").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def build_large(folder: Path, depth: int, side: int) -> tuple[Path, Path]:
    """The large store (fibre tiled in-plane, mirrored along z, plus seeded noise of +-3
    grey levels so that its compressed chunks are not tiny; uint8) and a mask store of
    one 32 x 64 x 64 block in its middle, each written 64 slices at a time."""
    from napari_scigen.core.io.zarr_write import create_zarr, write_zarr_slices

    image = folder / f"fibre_{depth}x{side}.ome.zarr"
    mask = folder / f"mask_{depth}x{side}.ome.zarr"
    for path, kind in ((image, "image"), (mask, "labels")):
        if path.exists():
            continue
        draft = path.with_name(f"part_{path.name}")
        create_zarr(draft, (depth, side, side), np.uint8, kind=kind, levels=1)
        for first in range(0, depth, 64):
            stop = min(depth, first + 64)
            if kind == "image":  # tiles repeat: noise makes the chunks as dense as a scan's
                block = build_volume(stop - first, side, first).astype(np.int16)
                block += np.random.default_rng(first).integers(-3, 4, block.shape, np.int16)
                block = np.clip(block, 0, 255).astype(np.uint8)
            else:
                block = np.zeros((stop - first, side, side), np.uint8)
                z = np.arange(first, stop)
                inside = (z >= depth // 2 - 16) & (z < depth // 2 + 16)
                block[inside, side // 2 - 32 : side // 2 + 32, side // 2 - 32 : side // 2 + 32] = 1
            write_zarr_slices(draft, first, block)
        draft.rename(path)
    return image, mask


class _Counting:
    """A lazy volume that counts the voxels read through it (as the tests' wrapper)."""

    def __init__(self, data, counted: dict, key: str) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.counted, self.key = counted, key

    def __getitem__(self, index):
        part = self.data[index]
        self.counted[self.key] += int(np.prod(part.shape))
        return part


def _count_reads(worker, spec: dict, counted: dict) -> None:
    """Count the voxels a batch worker reads from the image and the mask: every read goes
    through its cached ``_open_input`` (``_read_slices`` slices what that returns)."""
    open_input = worker._open_input
    keys = {spec["image"]: "image", spec["mask"]: "mask"}

    def counted_open(path, labels, stamp, *args, **options):
        data = open_input(path, labels, stamp, *args, **options)
        return _Counting(data, counted, keys[str(path)]) if str(path) in keys else data

    worker._open_input = counted_open


def run_large_one(spec: dict) -> dict:
    """One worker's share of a learned batch job on the large store, in this process:
    the value-range pass, the fit (once), the chunks; per phase the time, the bytes read
    from disk (``rchar``: compressed chunks) and the process's peak RSS so far."""
    import torch

    from napari_scigen.workflows import _batch_worker
    from napari_scigen.workflows._batch_store import prepare_store
    from napari_scigen.workflows.batch import BatchRequest, plan_batch

    torch.set_num_threads(spec["threads"])
    params = {
        "device": "cpu", "threads": spec["threads"], "train_steps": spec["train_steps"],
        "force_learned": True, "precision": spec["precision"], "uncertainty": True,
    }  # fmt: skip
    geometry = {"mask": spec["mask"]} if spec["task"] == "inpaint" else {}
    if spec["task"] == "interpolate":
        geometry = {"missing": tuple(spec["missing"])}
    request = BatchRequest(
        spec["task"], "learned", spec["image"], spec["output"], params=params, **geometry
    )
    phases: dict[str, dict] = {}
    counted = {"image": 0, "mask": 0}
    _count_reads(_batch_worker, spec, counted)
    from napari_scigen.engines.learned import inpaint, interpolate  # noqa: F401 - imports

    def phase(name: str, work):
        read, started = _proc("rchar", "io"), time.perf_counter()
        before = dict(counted)
        value = work()
        phases[name] = {
            "s": round(time.perf_counter() - started, 2),
            "image_voxels_read_m": round((counted["image"] - before["image"]) / 1e6, 2),
            "mask_voxels_read_m": round((counted["mask"] - before["mask"]) / 1e6, 2),
            "disk_read_mib": round((_proc("rchar", "io") - read) / 2**20, 1),
            "peak_rss_mib": round(_proc("VmHWM") / 1024, 1),
        }
        return value

    job = phase("plan", lambda: prepare_store(plan_batch(request), overwrite=True))
    depth = job.input_shape[0]

    def value_range():
        ranges = [_batch_worker._slab_range(spec["image"], z, min(depth, z + 64)) for z in
                  range(0, depth, 64)]  # fmt: skip
        return float(min(r[0] for r in ranges)), float(max(r[1] for r in ranges))

    from dataclasses import replace

    job = replace(job, value_range=phase("range", value_range))
    fit = phase("fit", lambda: _batch_worker.fit_model(job, spec["threads"]))
    middle = range(depth // 2 - 16 - 48, depth // 2 + 16 + 48)  # the block or the gap
    busy = [c for c in job.chunks if not c.copy and c.start < middle.stop and c.stop > middle.start]
    rest = [c for c in job.chunks if c not in busy]

    def run(chunks):
        return [_batch_worker.compute_chunk(job, c.index, spec["threads"]) for c in chunks]

    phase("work_chunks", lambda: run(busy))
    if spec.get("all_chunks", True):
        phase("other_chunks", lambda: run(rest))
    return {
        **spec,
        "input_shape": list(job.input_shape),
        "input_disk_mib": round(_disk_mib(Path(spec["image"])), 1),
        "input_mib": round(int(np.prod(job.input_shape)) / 2**20, 1),
        "chunks": [len(busy), len(rest)],
        "chunk_slices": job.chunk_slices,
        "filled_with": fit["filled_with"],
        "fit_seconds_worker": fit.get("seconds"),
        "phases": phases,
        "peak_rss_mib": round(_proc("VmHWM") / 1024, 1),
        "target_rss_mib": round((3 * 2 * int(np.prod(job.input_shape)) + 1.5 * 2**30) / 2**20),
        "load_before_after": [spec.get("load"), _load()],
    }


def large_main(args, commit: str) -> None:
    """Build the large stores (if absent), then one row per task (own process each)."""
    folder = Path(args.large)
    folder.mkdir(parents=True, exist_ok=True)
    depth, side = (int(v) for v in args.large_shape.split("x"))
    image, mask = build_large(folder, depth, side)
    rows = []
    for task in args.large_tasks.split(","):
        spec = {
            "kind": "large", "task": task, "image": str(image), "mask": str(mask),
            "missing": list(range(depth // 2 - 2, depth // 2 + 2)), "threads": args.threads,
            "train_steps": args.train_steps, "precision": args.precision,
            "output": str(folder / f"out_{task}.ome.zarr"), "commit": commit, "load": _load(),
        }  # fmt: skip
        rows.append(measure("--one-large", spec, args.lock, args.lock_wait, args.lock_limit))
    old = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {"rows": []}
    old.setdefault("large_rows", [])
    old["large_rows"] += rows
    Path(args.out).write_text(json.dumps(old, indent=1) + "\n")


if __name__ == "__main__":
    main()
