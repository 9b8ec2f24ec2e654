"""Per-slice timings of the classical engines (CPU).

Measures biharmonic inpainting (512x512 and 2048x2048 slices, ~2 % of the
pixels masked in four blobs; 2048x2048 also with ~0.1 % masked, and both 2048
cases also with a direct whole-slice ``inpaint_biharmonic`` for comparison) and slice interpolation (linear and
TV-L1 flow, 256x256 and 512x512). Each figure is the median of ``--repeats``
runs. Prints a Markdown table and writes JSON.

Usage::

    python benchmarks/bench_classical.py --repeats 3 --out benchmarks/bench_classical.json
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
from scipy import ndimage as ndi

from napari_scigen import api


def _textured_slice(n: int, rng: np.random.Generator) -> np.ndarray:
    texture = ndi.gaussian_filter(rng.normal(size=(n, n)), 3) * 4000
    return np.clip(20000 + texture + rng.normal(0, 300, (n, n)), 0, 65535).astype(np.uint16)


def _blob_mask(n: int, fraction: float, n_blobs: int, rng: np.random.Generator) -> np.ndarray:
    """``n_blobs`` disks, well apart, covering about ``fraction`` of the slice."""
    radius = int(round(np.sqrt(fraction * n * n / (n_blobs * np.pi))))
    yy, xx = np.indices((n, n))
    mask = np.zeros((n, n), dtype=bool)
    grid = int(np.ceil(np.sqrt(n_blobs)))
    cell = n / grid
    for k in range(n_blobs):
        cy = (k // grid + 0.5) * cell + rng.uniform(-0.1, 0.1) * cell
        cx = (k % grid + 0.5) * cell + rng.uniform(-0.1, 0.1) * cell
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return mask


def _median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_inpaint(n: int, repeats: int, *, fraction: float = 0.02, direct: bool) -> list[dict]:
    rng = np.random.default_rng(n)
    image = _textured_slice(n, rng)
    mask = _blob_mask(n, fraction, 4, rng)
    rows = []
    seconds = _median_time(lambda: api.inpaint(image, mask), repeats)
    result = api.inpaint(image, mask)
    rows.append(
        {
            "engine": "inpaint-biharmonic (boxes)",
            "size": f"{n}x{n}",
            "masked_percent": round(100 * mask.mean(), 3),
            "boxes": result.provenance["extra"]["n_boxes"],
            "seconds_per_slice": seconds,
        }
    )
    if direct:
        from skimage.restoration import inpaint_biharmonic

        as_float = image.astype(np.float64)
        seconds = _median_time(lambda: inpaint_biharmonic(as_float, mask), repeats)
        rows.append(
            {
                "engine": "skimage inpaint_biharmonic (whole slice)",
                "size": f"{n}x{n}",
                "masked_percent": round(100 * mask.mean(), 3),
                "boxes": 1,
                "seconds_per_slice": seconds,
            }
        )
    return rows


def bench_interpolate(n: int, method: str, repeats: int) -> dict:
    """Time to synthesize one missing slice between two kept ones (flow included)."""
    rng = np.random.default_rng(n + 1)
    base = _textured_slice(n + 16, rng)
    # three slices of a structure drifting 3 px per slice
    volume = np.stack([base[3 * z : 3 * z + n, 4 : 4 + n] for z in range(3)])
    seconds = _median_time(lambda: api.interpolate(volume, method=method, missing=(1,)), repeats)
    return {
        "engine": f"interpolate-{method}",
        "size": f"{n}x{n}",
        "masked_percent": None,
        "boxes": None,
        "seconds_per_slice": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (median reported)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).with_name("bench_classical.json"),
        help="JSON output file",
    )
    args = parser.parse_args(argv)

    rows: list[dict] = []
    rows += bench_inpaint(512, args.repeats, direct=False)
    rows += bench_inpaint(2048, args.repeats, direct=True)
    rows += bench_inpaint(2048, args.repeats, fraction=0.001, direct=True)
    for n in (256, 512):
        for method in ("linear", "flow"):
            rows.append(bench_interpolate(n, method, args.repeats))

    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores")
    print(f"median of {args.repeats} runs\n")
    print("| engine | slice | masked % | boxes | s / slice |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        masked = "" if row["masked_percent"] is None else f"{row['masked_percent']:.2g}"
        boxes = "" if row["boxes"] is None else str(row["boxes"])
        print(
            f"| {row['engine']} | {row['size']} | {masked} | {boxes} | "
            f"{row['seconds_per_slice']:.3f} |"
        )
    record = {
        "benchmark": "classical",
        "repeats": args.repeats,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(record, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
