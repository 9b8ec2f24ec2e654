"""Held-out-slice quality of StyleGAN interpolation against linear and learned interpolation.

For each volume and geometry the held-out slices are rebuilt from the kept ones by every
method, and only the held-out slices are scored: PSNR, SSIM and GMSD in the volume's
0.5-99.5 percentile window, and the signed relative errors of porosity and of the pore
specific surface (one Otsu threshold of the whole volume shared by truth and methods),
plus the wall time of each method. Methods:

* ``linear``;
* ``learned`` (the per-volume U-Net, ``--learned-steps`` training steps);
* ``learned+gan``: the same with the adversarial term of a StyleGAN2 discriminator
  (``adversarial_weight``, the hybrid "learned base, GAN texture");
* ``stylegan``: the StyleGAN engine's defaults (linear base + generator detail,
  self-validated; it fills with linear when the generator loses on held-out kept slices);
* ``stylegan-forced``: the same with ``force_stylegan`` (what the generator's detail alone
  does to the scores).

Volumes: ``rock`` (a rock phantom with a seed the embedded generator never saw, embedded
generator) and ``fibre`` (a z-run and centre crop of the real fibre composite, generator
given with ``--fibre-generator``)::

    python benchmarks/bench_stylegan_quality.py --volumes rock --geometries drop4 \\
        --json benchmarks/bench_stylegan_quality.json

Each (volume, geometry) is a separate entry of the JSON (an existing file is updated, so
runs can be split to stay short). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

GEOMETRIES = {"drop4": ("drop_every", 4), "keep4": ("keep_every", 4), "keep8": ("keep_every", 8)}
METHODS = ("linear", "learned", "learned+gan", "stylegan", "stylegan-forced")
FIBRE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fiber_composite_qim3d"


def load_volume(name: str, depth: int, side: int, fibre_start: int):
    """The benchmark volume and a one-line description."""
    import numpy as np

    if name == "rock":
        from napari_scigen.core.phantoms import make_rock_volume

        volume = make_rock_volume((depth, side, side), seed=7).volume
        return volume, f"rock phantom {depth}x{side}x{side}, seed 7 (training used 0)"
    from napari_scigen.core.io import read_volume

    full = np.asarray(read_volume(FIBRE / "volume.tif").data)
    top = (full.shape[1] - side) // 2
    left = (full.shape[2] - side) // 2
    crop = full[fibre_start : fibre_start + depth, top : top + side, left : left + side]
    return np.ascontiguousarray(crop), (
        f"fibre composite z {fibre_start}..{fibre_start + depth - 1}, centre {side}x{side} crop"
    )


def score(volume, missing, data, window, threshold) -> dict:
    """Scores of the held-out slices of ``data``."""
    import numpy as np

    from napari_scigen.metrics.gradient import gmsd
    from napari_scigen.metrics.morphology import specific_surface_area
    from napari_scigen.metrics.pixel import psnr, ssim
    from napari_scigen.metrics.realism import realism

    truth, rebuilt = volume[missing], data[missing]
    surface_t = np.mean([specific_surface_area(s <= threshold) for s in truth])
    surface_r = np.mean([specific_surface_area(s <= threshold) for s in rebuilt])
    pores_t, pores_r = float((truth <= threshold).mean()), float((rebuilt <= threshold).mean())
    shape = realism(truth, rebuilt, threshold)
    return {
        "psnr": round(float(psnr(truth, rebuilt, data_range=window).value), 3),
        "ssim": round(float(ssim(truth, rebuilt, data_range=window).value), 4),
        "gmsd": round(float(gmsd(truth, rebuilt, data_range=window).value), 4),
        "porosity_error": round((pores_r - pores_t) / pores_t, 4) if pores_t else None,
        "surface_error": round(float((surface_r - surface_t) / surface_t), 4),
        "pore_size_distance_px": round(float(shape["pore_size"]["distance"]), 3),
    }


def run_method(method, volume, missing, args, generator):
    """``(data, provenance extra)`` of one method on the blanked volume."""
    from napari_scigen import api
    from napari_scigen.engines.learned.params import LearnedInterpolateParams
    from napari_scigen.engines.stylegan.params import StyleGANInterpolateParams

    if method == "linear":
        result = api.interpolate(volume, method="linear", missing=missing)
    elif method.startswith("learned"):
        params = LearnedInterpolateParams(
            train_steps=args.learned_steps,
            device="cpu",
            threads=args.threads,
            adversarial_weight=args.adversarial_weight if method == "learned+gan" else 0.0,
            crop_size=args.learned_crop,
        )
        result = api.interpolate(volume, method="learned", missing=missing, params=params)
    else:
        params = StyleGANInterpolateParams(
            generator=generator,
            projection_steps=args.steps,
            device="cpu",
            force_stylegan=method == "stylegan-forced",
        )
        result = api.interpolate(volume, method="stylegan", missing=missing, params=params)
    return result.data, result.provenance.get("extra", {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--volumes", default="rock", help="comma-separated: rock, fibre")
    parser.add_argument(
        "--geometries", default="drop4", help="comma-separated: drop4, keep4, keep8"
    )
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--depth", type=int, default=33, help="slices of each volume")
    parser.add_argument("--side", type=int, default=96, help="in-plane size (crop) in pixels")
    parser.add_argument("--fibre-start", type=int, default=60, help="first fibre slice")
    parser.add_argument("--steps", type=int, default=100, help="StyleGAN projection steps")
    parser.add_argument("--learned-steps", type=int, default=300)
    parser.add_argument("--adversarial-weight", type=float, default=0.05)
    parser.add_argument(
        "--learned-crop", type=int, default=32, help="learned crop size (a power of two <= depth)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fibre-generator", default=None, help="StyleGAN generator for fibre")
    parser.add_argument("--json", type=Path, default=None, help="add the results to this file")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from napari_scigen.core.stack import percentile_window
    from napari_scigen.engines.interpolation.plan import drop_every, keep_every
    from napari_scigen.metrics.morphology import otsu_threshold

    torch.set_num_threads(args.threads)
    report = json.loads(args.json.read_text()) if args.json and args.json.exists() else {}
    entries = report.setdefault("entries", {})
    report["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "note": "2 CPU cores shared with other jobs: times are upper bounds",
    }
    for volume_name in args.volumes.split(","):
        volume, description = load_volume(volume_name, args.depth, args.side, args.fibre_start)
        window = percentile_window(volume)
        span = (window.low, window.high)
        threshold = otsu_threshold(volume)
        generator = args.fibre_generator if volume_name == "fibre" else None
        for geometry in args.geometries.split(","):
            kind, gap = GEOMETRIES[geometry]
            plan = drop_every if kind == "drop_every" else keep_every
            missing = list(plan(volume.shape[0], gap))
            blanked = volume.copy()
            blanked[missing] = 0  # the methods never see the held-out slices
            key = f"{volume_name}/{geometry}"
            rows = [
                r
                for r in entries.get(key, {}).get("rows", [])
                if r["method"] not in args.methods.split(",")
            ]
            for method in args.methods.split(","):
                start = time.perf_counter()
                data, extra = run_method(method, blanked, missing, args, generator)
                seconds = round(time.perf_counter() - start, 1)
                row = {"method": method, **score(volume, missing, data, span, threshold)}
                row["seconds"] = seconds
                if "filled_with" in extra:
                    row["filled_with"] = extra["filled_with"]
                if method.startswith("stylegan"):
                    row["decided_by"] = extra.get("decided_by")
                    row["detail_strength"] = extra.get("detail_strength")
                    validation = extra.get("self_validation") or {}
                    row["self_validation"] = validation.get("scores")
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
            rows.sort(key=lambda r: METHODS.index(r["method"]))
            entries[key] = {
                "volume": description,
                "geometry": f"{kind}={gap}",
                "held_out": missing,
                "window": list(span),
                "otsu_threshold": threshold,
                "stylegan_generator": generator or "embedded rock generator",
                "projection_steps": args.steps,
                "learned_train_steps": args.learned_steps,
                "learned_crop_size": args.learned_crop,
                "adversarial_weight": args.adversarial_weight,
                "rows": rows,
            }
            print(f"\n### {volume_name}, {kind}={gap} ({description})\n")
            print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")
    del np
    return 0


def table(rows: list[dict]) -> str:
    """Markdown table of one entry's rows."""
    lines = [
        "| method | filled with | PSNR (dB) | SSIM | GMSD | porosity err. | surface err. "
        "| pore sizes (px) | time (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r.get('filled_with', r['method'])} | {r['psnr']:.2f} "
            f"| {r['ssim']:.3f} | {r['gmsd']:.3f} | {r['porosity_error']:+.3f} "
            f"| {r['surface_error']:+.3f} | {r['pore_size_distance_px']:.2f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
