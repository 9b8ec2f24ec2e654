"""z-upsampling benchmark: every method rebuilds the slices a keep-every-G scan never had.

For each volume and gap G, only slices ``0, G, 2G, ...`` are kept (``--keep-every G``;
``drop4`` = one slice in 4 missing, for comparison), the others are held out and
rebuilt; every method is scored on the held-out slices only, with the same intensity
window (0.5-99.5 percentiles of the whole volume): PSNR, SSIM, GMSD, porosity and
pore-surface errors (Otsu phase threshold of the volume), time and peak memory (each
method in its own subprocess).

Methods: ``nearest``, ``linear``, ``flow``, ``learned`` and ``auto`` (the registered
engines, through ``workflows.validate.run_validation``) and ``cubic`` (a cubic spline
along z through the kept slices, ``scipy.interpolate.make_interp_spline``; computed
here, not a registered engine). Outside peers (ECLARE, RIFE) run from their own
environments, never as dependencies: see ``--peer-json``, which merges rows that a peer
script wrote in this benchmark's row format.

Volumes: ``rock`` (the procedural sample rock, 64 x 256 x 256, seed 0: the phantom the
shipped weights' family was trained on, but other seeds), ``fibre``
(``../shared/data/fiber_composite_qim3d``, 150^3, real X-ray CT) and ``concrete``
(``../shared/data/concrete_neutron_spam``, 100^3 uint16, real neutron CT); voxel sizes
unknown, taken as isotropic.

    python benchmarks/bench_zupsample.py                                  # everything
    python benchmarks/bench_zupsample.py --volumes concrete --gaps keep4 --methods linear,learned
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_learned import machine, peak_rss_mib

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
FILES = {
    "fibre": SHARED / "fiber_composite_qim3d" / "volume.tif",
    "concrete": SHARED / "concrete_neutron_spam" / "volume.tif",
}
GAPS = {
    "keep2": {"keep_every": 2},
    "keep4": {"keep_every": 4},
    "keep8": {"keep_every": 8},
    "drop4": {"drop_every": 4},
}
METHODS = ("nearest", "linear", "cubic", "flow", "learned", "auto")
CLASSICAL = ("nearest", "linear", "cubic", "flow")
METRICS = ("psnr", "ssim", "gmsd", "porosity", "surface")


def load_volume(name: str) -> np.ndarray:
    """``rock`` (procedural, 64 x 256 x 256), ``fibre`` or ``concrete`` (shared data)."""
    if name == "rock":
        from napari_scigen.core.phantoms import make_rock_volume

        return make_rock_volume((64, 256, 256), seed=0).volume
    path = FILES.get(name)
    if path is None:
        raise SystemExit(f"unknown volume {name!r}")
    if not path.is_file():
        raise SystemExit(f"{path} is not here: run with --volumes rock")
    import tifffile

    return tifffile.imread(path)


def cubic_fill(observed: np.ndarray, missing: list[int]) -> np.ndarray:
    """A cubic spline along z through the kept slices, evaluated at the missing ones."""
    from scipy.interpolate import make_interp_spline

    kept = np.array([z for z in range(observed.shape[0]) if z not in set(missing)])
    order = 3 if kept.size >= 4 else 1
    spline = make_interp_spline(kept, observed[kept].astype(np.float64), k=order, axis=0)
    values = spline(np.array(missing, dtype=np.float64))
    info = np.iinfo(observed.dtype) if observed.dtype.kind in "ui" else None
    low, high = float(observed[kept].min()), float(observed[kept].max())
    values = np.clip(values, low, high)
    if info is not None:
        values = np.rint(values)
    return values.astype(observed.dtype)


def score_cubic(volume: np.ndarray, geometry: dict) -> dict:
    """Score the cubic spline exactly as ``run_validation`` scores an engine."""
    from napari_scigen.core.stack import percentile_window
    from napari_scigen.metrics.morphology import otsu_threshold
    from napari_scigen.metrics.pixel import resolve_data_range
    from napari_scigen.workflows.validate import _score, held_out_slices

    missing, _ = held_out_slices(volume.shape[0], **geometry)
    missing = list(missing)
    truth = volume[missing]
    observed = volume.copy()
    observed[missing] = 0
    started = time.perf_counter()
    rebuilt = cubic_fill(observed, missing)
    seconds = time.perf_counter() - started
    window = percentile_window(volume, 0.5, 99.5)
    _, resolved = resolve_data_range(volume, (window.low, window.high))
    rows = _score(
        "cubic", truth, rebuilt, METRICS, resolved, otsu_threshold(volume), "alex", "cpu", None
    )
    return {"scores": {r["metric"]: r["value"] for r in rows}, "seconds": seconds}


def run_one(spec: dict) -> dict:
    """One method on one volume and gap (in this process)."""
    import torch

    from napari_scigen.core.progress import drain
    from napari_scigen.workflows.validate import run_validation

    torch.set_num_threads(spec["threads"])
    volume = load_volume(spec["volume"])
    geometry = GAPS[spec["gap"]]
    method = spec["method"]
    before = peak_rss_mib()
    if method == "cubic":
        scored = score_cubic(volume, geometry)
        return {
            **spec,
            **scored,
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "rss_before_mib": round(before, 1),
        }
    params = {}
    if method in ("learned", "auto"):
        params = {"device": spec["device"], "threads": spec["threads"]}
        params.update(spec.get("learned_params") or {})
    started = time.perf_counter()
    result = drain(
        run_validation(
            volume,
            methods=method,
            metrics=METRICS,
            device=spec["device"],
            method_params={method: params} if params else None,
            **geometry,
        )
    )
    extra = result.provenance["extra"]
    row = {
        **spec,
        "scores": {r["metric"]: r["value"] for r in result.provenance["table"]},
        "seconds": round(extra["seconds"].get(method, time.perf_counter() - started), 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_before_mib": round(before, 1),
        "noise_ceiling_db": extra["noise_ceiling"]["psnr_db"],
        "held_out": len(extra["held_out"]),
    }
    notes = extra.get("engine_notes", {}).get(method)
    if notes:
        z_check = notes.get("self_validation") or {}
        in_plane = notes.get("in_plane_check") or {}
        row["engine"] = {
            "filled_with": notes.get("filled_with"),
            "decided_by": notes.get("decided_by"),
            "choice_reason": notes.get("choice_reason"),
            "z_check_psnr": {m: s.get("psnr") for m, s in z_check.get("scores", {}).items()},
            "in_plane_psnr": {m: s.get("psnr") for m, s in in_plane.get("scores", {}).items()},
            "seconds": notes.get("seconds"),
        }
    return row


def table(rows: list[dict]) -> str:
    """Markdown: one row per volume, gap and method; learned/auto vs the best classical."""
    lines = [
        "| volume | gap | method | PSNR dB | SSIM | GMSD | porosity err | surface err "
        "| vs best classical | time s | peak RSS MiB | filled with (decided by) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for volume in dict.fromkeys(r["volume"] for r in rows):
        for gap in dict.fromkeys(r["gap"] for r in rows if r["volume"] == volume):
            group = [r for r in rows if r["volume"] == volume and r["gap"] == gap]
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
                engine = r.get("engine") or {}
                filled = engine.get("filled_with") or ""
                if filled:
                    filled = f"{filled} ({engine.get('decided_by')})"
                lines.append(
                    f"| {volume} | {gap} | {r['method']} | {s['psnr']:.2f} | {s['ssim']:.3f} "
                    f"| {s['gmsd']:.3f} | {s['porosity']:+.3f} | {s['surface']:+.3f} | {delta} "
                    f"| {r['seconds']:.0f} | {r['peak_rss_mib']:.0f} | {filled} |"
                )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", default="rock,fibre,concrete")
    parser.add_argument("--gaps", default="keep2,keep4,keep8")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument(
        "--learned-params",
        type=json.loads,
        default={},
        help="extra parameters of learned/auto as JSON, e.g. '{\"train_steps\": 300}'",
    )
    parser.add_argument("--peer-json", action="append", default=[], help="rows of a peer run")
    parser.add_argument("--out", default=str(HERE / "bench_zupsample.json"))
    parser.add_argument("--append", action="store_true", help="add to the rows in --out")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0
    out = Path(args.out)
    rows = json.loads(out.read_text())["rows"] if args.append and out.is_file() else []
    for peer in args.peer_json:
        rows += json.loads(Path(peer).read_text())["rows"]
    started = time.perf_counter()
    before = machine()
    for volume in args.volumes.split(","):
        for gap in args.gaps.split(","):
            for method in args.methods.split(","):
                spec = {
                    "volume": volume,
                    "gap": gap,
                    "method": method,
                    "device": args.device,
                    "threads": args.threads,
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
                rows = [
                    r for r in rows if (r["volume"], r["gap"], r["method"]) != (volume, gap, method)
                ]
                rows.append(row)
                print(
                    f"{volume} {gap} {method}: {row['scores']['psnr']:.2f} dB, "
                    f"{row['scores']['ssim']:.3f}, {row['seconds']:.0f} s "
                    f"{(row.get('engine') or {}).get('filled_with', '')}",
                    file=sys.stderr,
                    flush=True,
                )
                record = {
                    "machine_before": before,
                    "machine_after": machine(),
                    "total_seconds": round(time.perf_counter() - started, 1),
                    "rows": rows,
                    "note": "every method ran in its own subprocess; seconds = the method's "
                    "run (train + checks + inference for learned/auto); peak RSS includes the "
                    "Python + torch baseline (rss_before_mib)",
                }
                out.write_text(json.dumps(record, indent=1))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
