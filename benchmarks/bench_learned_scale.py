"""Learned interpolation at larger sizes: inference time, throughput and peak memory (issue 19).

Volumes are built from tiles of real data: the fibre composite
(``../shared/data/fiber_composite_qim3d/volume.tif``, 150^3 uint8) repeated 4 x 4
in-plane and cut to ``D x 600 x 600`` (the size the issue measured). Each measurement
runs ``api.interpolate(..., method="learned", factor=2, force_learned=True,
train_steps=N)`` in its own subprocess, with the current streaming inference
(``new``; ``new-bf16``: the same with bfloat16 autocast on the CPU) or the whole-plane
inference it replaced (``old``, loaded from git at :data:`OLD_COMMIT` and patched in),
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
    python benchmarks/bench_learned_scale.py --lock /tmp/scigen-cpu.lock  # each run under flock

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


def build_volume(depth: int, side: int) -> np.ndarray:
    """``depth x side x side`` uint8 from the fibre composite tiled in-plane."""
    import tifffile

    if not FIBRE.is_file():
        raise SystemExit(f"{FIBRE} is not here: this benchmark needs the real fibre volume")
    fibre = tifffile.imread(FIBRE)
    if depth > fibre.shape[0]:
        raise SystemExit(f"at most {fibre.shape[0]} slices")
    reps = -(-side // min(fibre.shape[1:]))
    return np.ascontiguousarray(np.tile(fibre[:depth], (1, reps, reps))[:, :side, :side])


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
        precision="bfloat16" if spec["impl"] == "new-bf16" else "float32",
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    extra = result.provenance["extra"]
    seconds = extra["seconds"]
    n_out, height, width = result.data.shape
    predicted = (n_out - volume.shape[0]) * height * width
    in_out = volume.nbytes + result.data.nbytes
    peak = after.ru_maxrss * 1024
    if spec.get("save"):
        np.save(spec["save"], result.data)
    return {
        **spec,
        "shape": list(volume.shape),
        "output_shape": [n_out, height, width],
        "filled_with": extra.get("filled_with"),
        "train_s": seconds.get("train"),
        "predict_s": seconds.get("predict"),
        "total_s": round(wall, 2),
        "synthesized_mvoxel": round(predicted / 1e6, 2),
        "predict_mvoxel_per_s": round(predicted / 1e6 / max(seconds["predict"], 1e-9), 4),
        "peak_rss_mib": round(peak / 2**20, 1),
        "target_rss_mib": round((3 * in_out + 1.5 * 2**30) / 2**20, 1),
        "minor_faults_m": round((after.ru_minflt - usage.ru_minflt) / 1e6, 2),
        "system_s": round(after.ru_stime - usage.ru_stime, 1),
        "user_s": round(after.ru_utime - usage.ru_utime, 1),
    }


def run_batch_one(spec: dict) -> dict:
    """One batch job (``workers`` x ``threads``) of the learned interpolation, timed."""
    from napari_scigen.core.io import write_volume
    from napari_scigen.workflows.batch import BatchRequest, ClusterOptions, run_batch

    scratch = Path(spec["scratch"])
    source = scratch / f"{spec['depth']}x{spec['side']}.ome.zarr"
    if not source.exists():
        write_volume(source, build_volume(spec["depth"], spec["side"]))
    output = scratch / f"batch_{spec['workers']}x{spec['threads']}.ome.zarr"
    params = {
        "device": "cpu", "threads": spec["engine_threads"], "train_steps": spec["train_steps"],
        "force_learned": True, "precision": spec["precision"],
    }  # fmt: skip
    request = BatchRequest(
        "interpolate", "learned", str(source), str(output), params=params, factor=2,
        chunk_slices=spec["chunk_slices"],
    )  # fmt: skip
    options = ClusterOptions(
        "local", workers=spec["workers"], threads=spec["threads"], dashboard=None
    )
    started = time.perf_counter()
    summary = run_batch(request, options=options, overwrite=True)
    wall = time.perf_counter() - started
    from napari_scigen.core.io import read_volume

    np.save(spec["save"], np.asarray(read_volume(str(output)).data))
    return {
        **spec,
        "chunks": summary.n_chunks,
        "batch_s": round(summary.seconds, 2),
        "total_s": round(wall, 2),
        "per_worker_chunks": summary.workers,
    }


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
    parser.add_argument("--append", action="store_true", help="keep the rows already in --out")
    parser.add_argument(
        "--batch",
        default=None,
        help="batch runs instead: WORKERSxTHREADS,... (e.g. 1x1,2x1) on the first size",
    )
    parser.add_argument("--chunk-slices", type=int, default=None, help="batch chunk size")
    parser.add_argument("--precision", default="bfloat16", help="batch runs' precision")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--one-batch", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    if args.one_batch:
        print(json.dumps(run_batch_one(json.loads(args.one_batch))))
        return
    rows = []
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="bench_learned_scale_"))
    scratch.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    if args.batch:
        return batch_main(args, scratch, commit)
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
            }
            rows.append(measure("--one", spec, args.lock))
    for row in rows:
        row.update(compare(scratch / f"{row['depth']}x{row['side']}_old.npy", row.pop("save")))
    if args.append and Path(args.out).is_file():
        rows = json.loads(Path(args.out).read_text())["rows"] + rows
    record = {
        "machine": f"{platform.machine()}, {args.threads} threads (shared 2-core VM, no GPU)",
        "python": platform.python_version(),
        "old": f"{OLD_COMMIT}:{OLD_PATH}",
        "rows": rows,
    }
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


def measure(flag: str, spec: dict, lock: str | None) -> dict:
    """Run one measurement in a subprocess (under ``flock lock``); its row, or its error."""
    command = [sys.executable, __file__, flag, json.dumps(spec)]
    if lock:
        command = ["flock", "-w", "1200", lock, *command]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        row = {**spec, "error": done.stderr.strip().splitlines()[-1:]}
    else:
        row = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def batch_main(args, scratch: Path, commit: str) -> None:
    """Batch runs of the first size on each ``WORKERSxTHREADS`` cluster (same chunks)."""
    depth, side = (int(v) for v in args.sizes.split(",")[0].split("x"))
    rows = []
    for layout in args.batch.split(","):
        workers, threads = (int(v) for v in layout.split("x"))
        spec = {
            "kind": "batch", "depth": depth, "side": side, "workers": workers,
            "threads": threads, "engine_threads": threads, "train_steps": args.train_steps,
            "precision": args.precision, "chunk_slices": args.chunk_slices,
            "scratch": str(scratch), "save": str(scratch / f"batch_{layout}.npy"),
            "commit": commit,
        }  # fmt: skip
        rows.append(measure("--one-batch", spec, args.lock))
    first = rows[0]
    for row in rows:
        if "error" in row or "error" in first:
            continue
        row["speedup_vs_first"] = round(first["batch_s"] / row["batch_s"], 3)
        one = np.load(first["save"]).astype(np.int32)
        diff = np.abs(np.load(row["save"]).astype(np.int32) - one)
        row["vs_first_max_abs"] = int(diff.max())
        single = (
            scratch / f"{depth}x{side}_{'new-bf16' if args.precision == 'bfloat16' else 'new'}.npy"
        )
        if single.is_file():
            diff = np.abs(np.load(row["save"]).astype(np.int32) - np.load(single).astype(np.int32))
            row["vs_one_process_max_abs"] = int(diff.max())
            row["vs_one_process_differing_percent"] = round(100 * float((diff > 0).mean()), 4)
    for row in rows:
        row.pop("save", None)
        row.pop("scratch", None)
    old = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {"rows": []}
    old.setdefault("batch_rows", [])
    old["batch_rows"] += rows
    Path(args.out).write_text(json.dumps(old, indent=1) + "\n")


if __name__ == "__main__":
    main()
