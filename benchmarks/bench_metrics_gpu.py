"""LPIPS pairs/s at 512x512 and FID-Inception features images/s at 299x299 on a GPU.

Runs the package's own code paths (:func:`napari_scigen.metrics.perceptual.lpips_forward`
on a cached model, :class:`~napari_scigen.metrics.distribution.InceptionFeatureExtractor`).
Without the weight files, ``--random-weights`` uses a random LPIPS backbone and a
random FID Inception: same layers and FLOPs, so the timings hold, the values do not.
Skips (exit 0) when no CUDA device is visible unless ``--device cpu`` is given.

Usage::

    python benchmarks/bench_metrics_gpu.py --random-weights
    python benchmarks/bench_metrics_gpu.py --device cpu --random-weights --lpips-batch 2 --inception-batch 4 --iters 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path


def _timed(function, iters: int, synchronize) -> float:
    times = []
    for _ in range(iters):
        synchronize()
        start = time.perf_counter()
        function()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--random-weights", action="store_true", help="no weight files needed")
    parser.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex")
    parser.add_argument("--lpips-batch", type=int, default=16)
    parser.add_argument("--lpips-size", type=int, default=512)
    parser.add_argument("--inception-batch", type=int, default=256)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device visible: skipped (use --device cpu to time on the CPU)")
        return 0

    from napari_scigen.metrics.distribution import InceptionFeatureExtractor
    from napari_scigen.metrics.perceptual import load_lpips, lpips_forward

    def synchronize():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    results = []
    model = load_lpips(
        args.lpips_net, pretrained_backbone=not args.random_weights, device=args.device
    )
    size = args.lpips_size
    a = torch.rand(args.lpips_batch, 3, size, size, device=args.device) * 2 - 1
    b = torch.rand(args.lpips_batch, 3, size, size, device=args.device) * 2 - 1
    with torch.inference_mode():
        lpips_forward(model, a, b)  # warm-up (cuDNN autotuning)
        seconds = _timed(lambda: lpips_forward(model, a, b), args.iters, synchronize)
    results.append(
        {
            "case": f"LPIPS {args.lpips_net}, batch {args.lpips_batch} at {size}x{size}",
            "seconds_per_batch": seconds,
            "items_per_second": args.lpips_batch / seconds,
            "unit": "pairs/s",
        }
    )

    extractor = InceptionFeatureExtractor(
        device=args.device, batch_size=args.inception_batch, random_weights=args.random_weights
    )
    images = torch.rand(args.inception_batch, 1, 299, 299, device=args.device)
    with torch.inference_mode():
        extractor.features(images)  # warm-up
        seconds = _timed(lambda: extractor.features(images), args.iters, synchronize)
    results.append(
        {
            "case": f"FID Inception-v3 pool features, batch {args.inception_batch} at 299x299",
            "seconds_per_batch": seconds,
            "items_per_second": args.inception_batch / seconds,
            "unit": "images/s",
        }
    )
    device_name = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(
        f"Device: {device_name}; torch {torch.__version__}; random weights: {args.random_weights}"
    )
    print()
    print("| case | ms / batch | throughput |")
    print("| --- | --- | --- |")
    for row in results:
        print(
            f"| {row['case']} | {1000 * row['seconds_per_batch']:.1f} | "
            f"{row['items_per_second']:.0f} {row['unit']} |"
        )
    if args.out:
        record = {"device": device_name, "torch": torch.__version__, "results": results}
        args.out.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
