"""Held-out slice benchmark of the learned interpolation against the classical engines.

For each volume (the procedural sample rock, 64x256x256 like the napari sample, and the
real fibre composite ``../shared/data/fiber_composite_qim3d``, 150^3, voxel size unknown:
assumed isotropic) and each geometry (``--drop-every 4``, ``--keep-every 4``,
``--keep-every 8``), every method (nearest, linear, flow, learned, auto) runs through
``workflows.validate.run_validation`` (held-out slices blanked before the engine sees the
volume) in its own subprocess, so that its wall time (train + inference for the learned
engines) and its peak memory (RSS) are its own. Scores: PSNR, SSIM, GMSD, porosity and
pore-surface errors on the held-out slices only, plus the learned engines' own
self-validation estimate and the rank correlation of their uncertainty with the error.

Writes ``benchmarks/bench_learned.json`` and prints a Markdown table::

    python benchmarks/bench_learned.py                      # everything, 2 CPU threads
    python benchmarks/bench_learned.py --volumes fibre --geometries drop4 --methods linear,learned
    python benchmarks/bench_learned.py --device cuda --timing-512   # + a 512^3 timing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FIBRE = HERE.parents[1] / "shared" / "data" / "fiber_composite_qim3d" / "volume.tif"
GEOMETRIES = {"drop4": {"drop_every": 4}, "keep4": {"keep_every": 4}, "keep8": {"keep_every": 8}}
METHODS = ("nearest", "linear", "flow", "learned", "auto")
CLASSICAL = ("nearest", "linear", "flow")
METRICS = "psnr,ssim,gmsd,porosity,surface"


def load_volume(name: str) -> np.ndarray:
    """``rock`` (procedural, seed 0, 64x256x256), ``rock-demo`` (32x128x128) or ``fibre``."""
    if name.startswith("rock"):
        from napari_scigen.core.phantoms import make_rock_volume

        shape = (32, 128, 128) if name == "rock-demo" else (64, 256, 256)
        return make_rock_volume(shape, seed=0).volume
    if name == "fibre":
        import tifffile

        if not FIBRE.is_file():
            raise SystemExit(f"{FIBRE} is not here: run with --volumes rock")
        return tifffile.imread(FIBRE)
    raise SystemExit(f"unknown volume {name!r}")


def peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(spec: dict) -> dict:
    """One method on one volume and geometry (in this process)."""
    import torch

    from napari_scigen.core.progress import drain
    from napari_scigen.workflows.validate import run_validation

    torch.set_num_threads(spec["threads"])
    volume = load_volume(spec["volume"])
    before = peak_rss_mib()
    method = spec["method"]
    params = {}
    if method in ("learned", "auto"):
        params = {"device": spec["device"], "threads": spec["threads"]}
        if spec.get("train_steps") is not None:
            params["train_steps"] = spec["train_steps"]
        params.update(spec.get("learned_params") or {})
    started = time.perf_counter()
    result = drain(
        run_validation(
            volume,
            methods=method,
            metrics=METRICS,
            device=spec["device"],
            method_params={method: params} if params else None,
            **GEOMETRIES[spec["geometry"]],
        )
    )
    seconds = time.perf_counter() - started
    extra = result.provenance["extra"]
    row = {
        **spec,
        "scores": {r["metric"]: r["value"] for r in result.provenance["table"]},
        "per_slice_psnr": next(
            r["details"]["per_slice"] for r in result.provenance["table"] if r["metric"] == "psnr"
        ),
        "seconds": round(extra["seconds"].get(method, seconds), 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_before_mib": round(before, 1),
        "noise_ceiling_db": extra["noise_ceiling"]["psnr_db"],
        "held_out": len(extra["held_out"]),
    }
    notes = extra.get("engine_notes", {}).get(method)
    if notes:
        validation = notes.get("self_validation") or {}
        row["engine"] = {
            "filled_with": notes.get("filled_with"),
            "choice_reason": notes.get("choice_reason"),
            "expected_error": notes.get("expected_error"),
            "self_validation": {m: s.get("psnr") for m, s in validation.get("scores", {}).items()},
            "uncertainty_error_spearman": notes.get("held_out_uncertainty_error_spearman"),
        }
    return row


def timing_512(device: str, threads: int, train_steps: int | None) -> dict:
    """Train + inference time of ``learned`` on a synthetic 512^3 uint16 volume (keep every 4th)."""
    import torch
    from scipy import ndimage

    from napari_scigen import api
    from napari_scigen.engines.interpolation.plan import keep_every

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    coarse = ndimage.gaussian_filter(rng.normal(size=(128, 128, 128)).astype(np.float32), 2)
    field = ndimage.zoom(coarse, 4, order=1)
    volume = (30000 + 8000 * field / field.std()).clip(0, 65535).astype(np.uint16)
    missing = keep_every(volume.shape[0], 4)
    observed = volume.copy()
    observed[list(missing)] = 0
    overrides = {"device": device, "threads": threads, "uncertainty": True}
    if train_steps is not None:
        overrides["train_steps"] = train_steps
    started = time.perf_counter()
    result = api.interpolate(observed, method="learned", missing=missing, **overrides)
    seconds = result.provenance["extra"]["seconds"]
    return {
        "shape": list(volume.shape),
        "device": device,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "stages": seconds,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "gpu_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if device.startswith("cuda")
        else None,
    }


def inpaint_benchmark(device: str, threads: int, train_steps: int | None) -> list[dict]:
    """Biharmonic vs learned inpainting on the demo's damaged region and its ring artifacts."""
    import torch

    from napari_scigen import api
    from napari_scigen.core.stack import percentile_window
    from napari_scigen.metrics.pixel import psnr, ssim

    torch.set_num_threads(threads)
    from napari_scigen.core.phantoms import make_rock_volume

    rock = make_rock_volume((32, 128, 128), seed=0)
    truth = rock.volume
    window = percentile_window(truth, 0.5, 99.5)
    window = (window.low, window.high)
    yy, xx = np.mgrid[:128, :128]
    disk = (yy - 128 * 0.4) ** 2 + (xx - 128 * 0.55) ** 2 <= 20**2
    region = np.zeros(truth.shape, np.uint8)
    region[12:20] = disk
    damaged = truth.copy()
    damaged[region != 0] = 0
    cases = [
        ("damaged region (20-px disk, 8 slices)", damaged, region, truth, slice(12, 20)),
        (
            "ring artifacts (8 slices, vs clean scan)",
            truth[:8],
            rock.ring_mask,
            rock.clean[:8],
            slice(0, 8),
        ),
    ]
    overrides = {"device": device, "threads": threads}
    if train_steps is not None:
        overrides["train_steps"] = train_steps
    rows = []
    for name, image, mask, reference, zs in cases:
        mask3 = np.broadcast_to(mask, image.shape) if mask.ndim == 2 else mask
        for method in ("biharmonic", "learned"):
            started = time.perf_counter()
            kwargs = overrides if method == "learned" else {}
            result = api.inpaint(image, mask, method=method, **kwargs)
            seconds = time.perf_counter() - started
            ref, out, m = reference[zs], result.data[zs], mask3[zs]
            if image.shape[0] == zs.stop - zs.start:
                ref, out, m = reference, result.data, mask3
            row = {
                "case": name,
                "method": method,
                "psnr_inside": psnr(ref, out, data_range=window, mask=m, region="inside").value,
                "ssim_inside": ssim(ref, out, data_range=window, mask=m, region="inside").value,
                "seconds": round(seconds, 1),
            }
            extra = result.provenance.get("extra", {})
            if method == "learned":
                row["filled_with"] = extra.get("filled_with")
                row["self_validation"] = {
                    k: v["psnr"]
                    for k, v in (extra.get("self_validation") or {}).get("scores", {}).items()
                }
                row["train_steps"] = extra.get("training", {}).get("steps")
            rows.append(row)
            print(f"{name} {method}: {row['psnr_inside']:.2f} dB", file=sys.stderr, flush=True)
    return rows


def machine() -> dict:
    """Where the benchmark ran, and how busy the machine was."""
    from napari_scigen.core.provenance import software_versions
    from napari_scigen.engines._training.hardware import cpu_model

    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
        "software": software_versions(),
    }


def table(rows: list[dict]) -> str:
    """Markdown: one row per volume, geometry and method, deltas vs the best classical."""
    lines = [
        "| volume | geometry | method | PSNR dB | SSIM | GMSD | porosity err | surface err "
        "| vs best classical | time s | peak RSS MiB | filled with |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for volume in dict.fromkeys(r["volume"] for r in rows):
        for geometry in dict.fromkeys(r["geometry"] for r in rows if r["volume"] == volume):
            group = [r for r in rows if r["volume"] == volume and r["geometry"] == geometry]
            classical = [r for r in group if r["method"] in CLASSICAL]
            best = max(classical, key=lambda r: r["scores"]["psnr"]) if classical else None
            for r in group:
                s = r["scores"]
                delta = ""
                if best is not None and r["method"] not in CLASSICAL:
                    delta = (
                        f"{s['psnr'] - best['scores']['psnr']:+.2f} dB / "
                        f"{s['ssim'] - best['scores']['ssim']:+.3f} ({best['method']})"
                    )
                lines.append(
                    f"| {volume} | {geometry} | {r['method']} | {s['psnr']:.2f} | {s['ssim']:.3f} "
                    f"| {s['gmsd']:.3f} | {s['porosity']:+.3f} | {s['surface']:+.3f} | {delta} "
                    f"| {r['seconds']:.0f} | {r['peak_rss_mib']:.0f} "
                    f"| {(r.get('engine') or {}).get('filled_with', '')} |"
                )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", default="rock,fibre")
    parser.add_argument("--geometries", default=",".join(GEOMETRIES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--train-steps", type=int, help="override the engines' default")
    parser.add_argument("--timing-512", action="store_true", help="also time learned on 512^3")
    parser.add_argument(
        "--inpaint", action="store_true", help="also compare learned vs biharmonic inpainting"
    )
    parser.add_argument(
        "--learned-params",
        type=json.loads,
        default={},
        help="extra parameters of learned/auto as JSON, e.g. '{\"adversarial_weight\": 0.05}'",
    )
    parser.add_argument("--out", default=str(HERE / "bench_learned.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0
    rows = []
    started = time.perf_counter()
    before = machine()
    for volume in args.volumes.split(","):
        if volume == "none":
            continue
        for geometry in args.geometries.split(","):
            for method in args.methods.split(","):
                spec = {
                    "volume": volume,
                    "geometry": geometry,
                    "method": method,
                    "device": args.device,
                    "threads": args.threads,
                    "train_steps": args.train_steps,
                    "learned_params": args.learned_params,
                }
                done = subprocess.run(
                    [sys.executable, __file__, "--one", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode:
                    print(done.stderr[-2000:], file=sys.stderr)
                    raise SystemExit(f"{spec} failed")
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"{volume} {geometry} {method}: {row['scores']['psnr']:.2f} dB, "
                    f"{row['scores']['ssim']:.3f}, {row['seconds']:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    record = {
        "machine_before": before,
        "machine_after": machine(),
        "total_seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
        "note": "every method ran in its own subprocess; seconds = the method's run inside "
        "validate (train + self-validation + inference for learned/auto); peak RSS includes "
        "the Python + torch baseline (rss_before_mib)",
    }
    if args.inpaint:
        record["inpaint"] = inpaint_benchmark(args.device, args.threads, args.train_steps)
    if args.timing_512:
        record["timing_512"] = timing_512(args.device, args.threads, args.train_steps)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(table(rows))
    for row in record.get("inpaint", []):
        print(
            f"{row['case']}: {row['method']} {row['psnr_inside']:.2f} dB / SSIM "
            f"{row['ssim_inside']:.3f} inside the mask, {row['seconds']} s"
        )
    if "timing_512" in record:
        print(json.dumps(record["timing_512"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
