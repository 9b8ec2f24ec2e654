"""Held-out-slice quality of StyleGAN interpolation against linear interpolation.

Builds a rock phantom with a seed the embedded generator never saw, holds out
every other interior slice, rebuilds them with linear interpolation and with the
StyleGAN engine (several options), and scores only the held-out slices (PSNR and
SSIM with the phantom's intensity window as data range, plus the mean absolute
difference of the pore fraction, a morphology check pixel metrics miss)::

    python benchmarks/bench_stylegan_quality.py --shape 9 128 128 --steps 100

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", type=int, nargs=3, default=(9, 128, 128))
    parser.add_argument("--seed", type=int, default=7, help="phantom seed (training used 0)")
    parser.add_argument("--steps", type=int, default=100, help="projection steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generator", default=None, help="default: the embedded generator")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from napari_scigen import api
    from napari_scigen.core.phantoms import make_rock_volume
    from napari_scigen.core.stack import percentile_window
    from napari_scigen.engines.stylegan.params import StyleGANInterpolateParams

    torch.set_num_threads(args.threads)
    volume = make_rock_volume(tuple(args.shape), seed=args.seed).volume
    missing = list(range(1, volume.shape[0] - 1, 2))
    window = percentile_window(volume)
    span = window.high - window.low
    truth = volume[missing]

    def score(name: str, data, seconds: float) -> dict:
        rebuilt = data[missing]
        psnr = [
            peak_signal_noise_ratio(window.to_unit(t), window.to_unit(r), data_range=1.0)
            for t, r in zip(truth, rebuilt, strict=True)
        ]
        ssim = [
            structural_similarity(window.to_unit(t), window.to_unit(r), data_range=1.0)
            for t, r in zip(truth, rebuilt, strict=True)
        ]
        dark = window.low + 0.15 * span
        pore_error = np.abs((rebuilt < dark).mean(axis=(1, 2)) - (truth < dark).mean(axis=(1, 2)))
        return {
            "method": name,
            "psnr_db": float(np.mean(psnr)),
            "ssim": float(np.mean(ssim)),
            "pore_fraction_abs_error": float(pore_error.mean()),
            "seconds": seconds,
        }

    rows = []
    start = time.perf_counter()
    linear = api.interpolate(volume, method="linear", missing=missing)
    rows.append(score("linear", linear.data, time.perf_counter() - start))
    variants = {
        "stylegan": {},
        "stylegan+residual": {"residual_correction": True},
        "stylegan+blend0.5": {"pixel_blend": 0.5},
    }
    projections = None
    for name, options in variants.items():
        start = time.perf_counter()
        params = StyleGANInterpolateParams(
            generator=args.generator, projection_steps=args.steps, device="cpu", **options
        )
        result = api.interpolate(volume, method="stylegan", missing=missing, params=params)
        rows.append(score(name, result.data, time.perf_counter() - start))
        projections = projections or result.provenance["extra"]["projection_final_loss"]
    report = {
        "phantom": {"shape": list(volume.shape), "seed": args.seed},
        "held_out": missing,
        "projection_steps": args.steps,
        "projection_final_loss": projections,
        "results": rows,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
