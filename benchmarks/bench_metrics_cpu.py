"""SSIM and PSNR over a whole microCT-sized volume on the CPU.

Default: a 256 x 512 x 512 uint16 volume (128 MiB) and a noisy copy; reports seconds
per volume and slices per second for SSIM (map included, as napari shows it) and
PSNR, median of ``--repeats`` runs. Prints a Markdown table and optionally writes JSON.

Usage::

    python benchmarks/bench_metrics_cpu.py --repeats 3 --out benchmarks/bench_metrics_cpu.json
    python benchmarks/bench_metrics_cpu.py --shape 16 256 256   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from napari_scigen.metrics.pixel import psnr, ssim, ssim_report


def _volume_pair(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = np.empty(shape, dtype=np.uint16)
    generated = np.empty(shape, dtype=np.uint16)
    for index in range(shape[0]):  # slice by slice keeps peak memory low
        slice_ = rng.normal(20000, 4000, shape[1:])
        reference[index] = np.clip(slice_, 0, 65535)
        generated[index] = np.clip(slice_ + rng.normal(0, 500, shape[1:]), 0, 65535)
    return reference, generated


def _median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shape", type=int, nargs=3, default=(256, 512, 512), metavar=("Z", "Y", "X")
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    reference, generated = _volume_pair(shape)
    window = (10000.0, 30000.0)
    cases = {
        "SSIM (mean, dtype range)": lambda: ssim(reference, generated),
        "SSIM + map (window)": lambda: ssim_report(reference, generated, data_range=window),
        "PSNR (dtype range)": lambda: psnr(reference, generated),
    }
    ssim(reference[:1], generated[:1])  # warm-up: imports and first-call overheads
    results = []
    for name, function in cases.items():
        seconds = _median_seconds(function, args.repeats)
        results.append(
            {"case": name, "seconds_per_volume": seconds, "slices_per_second": shape[0] / seconds}
        )
    print(f"Volume {shape} uint16, {os.cpu_count()} CPU(s), median of {args.repeats}")
    print()
    print("| case | s / volume | slices / s |")
    print("| --- | --- | --- |")
    for row in results:
        print(
            f"| {row['case']} | {row['seconds_per_volume']:.2f} | {row['slices_per_second']:.1f} |"
        )
    if args.out:
        record = {
            "shape": shape,
            "dtype": "uint16",
            "repeats": args.repeats,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "results": results,
        }
        args.out.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
