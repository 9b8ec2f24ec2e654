"""Benchmark: time to first slice and peak memory of ``read_volume`` on a large TIFF.

Writes a synthetic uint16 microCT-like volume (default 4 GiB) with
:func:`napari_scigen.core.io.write_volume` (uncompressed ImageJ hyperstack,
opened as a memmap) and, unless ``--no-compressed``, a smaller deflate-compressed
multi-page TIFF written with tifffile (opened as a dask array, one page per
chunk). Each measurement runs in a fresh subprocess: open the file, read slice 0,
read the middle slice, optionally scan every slice, and report the peak RSS
(``resource.getrusage(...).ru_maxrss``). Before a "cold" run the file's pages
are dropped from the OS cache with ``posix_fadvise(DONTNEED)`` (no root needed,
affects only that file).

Usage::

    python benchmarks/bench_io.py --size-gib 4 --dir /tmp/bench_io

Prints a Markdown table and writes ``bench_io.json`` beside this script (or
``--json``). The generated files are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

SLICE_SIDE = 2048


class SyntheticVolume:
    """Array-like uint16 volume generated slice by slice (never held in memory whole).

    A fixed noisy texture (grains + noise) is shifted per slice, so consecutive
    slices differ like a real scan and compress like one.
    """

    def __init__(self, depth: int, side: int = SLICE_SIDE, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
        grains = np.sin(yy / 37.0) * np.cos(xx / 23.0) * 8000.0
        noise = rng.normal(0.0, 600.0, size=(side, side)).astype(np.float32)
        self.texture = np.clip(grains + noise + 30000.0, 0, 65535).astype(np.uint16)
        self.shape = (depth, side, side)
        self.dtype = np.dtype(np.uint16)
        self.ndim = 3

    def plane(self, index: int) -> np.ndarray:
        return np.roll(self.texture, shift=(3 * index) % self.shape[1], axis=0)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):
            key = key[0]
        indices = range(self.shape[0])[key] if isinstance(key, slice) else [int(key)]
        out = np.empty((len(indices),) + self.shape[1:], dtype=self.dtype)
        for position, index in enumerate(indices):
            out[position] = self.plane(index)
        return out


def drop_from_page_cache(path: Path) -> bool:
    """Ask the OS to evict ``path`` from its page cache (Linux; False if unsupported)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)
    return True


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux)."""
    unit_bytes = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit_bytes / 1024**2


def resident_memory_mib() -> dict:
    """Current resident memory split into anonymous and file-backed (Linux only)."""
    fields = {}
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields


def measure(path: str, full_scan: bool, lazy: bool | None) -> dict:
    """Run inside the fresh subprocess: open, first slice, middle slice, full scan."""
    import_start = time.perf_counter()
    import dask.array  # noqa: F401  (already loaded inside napari; timed separately)

    from napari_scigen.core.io import read_volume

    import_seconds = time.perf_counter() - import_start
    rss_after_import = peak_rss_mib()
    start = time.perf_counter()
    volume = read_volume(path, lazy=lazy)
    opened = time.perf_counter()
    # np.array copies, so a memmap slice is really read from disk
    first = np.array(volume.data[0])
    first_done = time.perf_counter()
    middle_index = volume.shape[0] // 2
    middle = np.array(volume.data[middle_index])
    middle_done = time.perf_counter()
    result = {
        "storage": volume.metadata.get("storage"),
        "lazy": volume.lazy,
        "shape": list(volume.shape),
        "import_s": import_seconds,
        "open_s": opened - start,
        "first_slice_s": first_done - start,
        "middle_slice_s": middle_done - first_done,
        "checksum_first_middle": int(first[::64, ::64].sum()) + int(middle[::64, ::64].sum()),
        "rss_after_import_mib": rss_after_import,
    }
    result["peak_rss_after_slices_mib"] = peak_rss_mib()
    if full_scan:
        scan_start = time.perf_counter()
        total = 0.0
        for index in range(volume.shape[0]):
            total += float(np.asarray(volume.data[index], dtype=np.float64).mean())
        result["full_scan_s"] = time.perf_counter() - scan_start
        result["full_scan_mean"] = total / volume.shape[0]
        result["peak_rss_after_scan_mib"] = peak_rss_mib()
        result["memory_after_scan_mib"] = resident_memory_mib()
        # every slice is a shifted copy of one texture, so every slice has its mean
        expected = float(SyntheticVolume(1).texture.mean(dtype=np.float64))
        result["data_verified"] = abs(result["full_scan_mean"] - expected) < 1e-6
    return result


def run_measurement(path: Path, *, cold: bool, full_scan: bool, lazy: bool | None) -> dict:
    dropped = drop_from_page_cache(path) if cold else False
    command = [sys.executable, __file__, "--measure", str(path)]
    if lazy:
        command.append("--lazy")
    elif lazy is False:
        command.append("--eager")
    if full_scan:
        command.append("--full-scan")
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["cache"] = "cold" if dropped else "warm"
    result["read_call"] = {
        True: "read_volume(path, lazy=True)",
        False: "read_volume(path, lazy=False)",
    }.get(lazy, "read_volume(path)")
    return result


def write_uncompressed(path: Path, depth: int) -> dict:
    """Write with write_volume in a subprocess so its peak RSS can be reported."""
    command = [sys.executable, __file__, "--write", str(path), "--depth", str(depth)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def write_in_subprocess(path: Path, depth: int) -> dict:
    from napari_scigen.core.io import write_volume

    volume = SyntheticVolume(depth)
    start = time.perf_counter()
    write_volume(path, volume, voxel_size=(2.0, 2.0, 2.0), unit="um", provenance={"bench": True})
    return {"write_s": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}


def write_compressed(path: Path, depth: int) -> dict:
    """Write the deflate variant in a subprocess (keeps this process small)."""
    command = [sys.executable, __file__, "--write-compressed", str(path), "--depth", str(depth)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def write_compressed_in_subprocess(path: Path, depth: int) -> dict:
    import tifffile

    volume = SyntheticVolume(depth)
    start = time.perf_counter()
    tifffile.imwrite(
        path,
        (volume.plane(i) for i in range(depth)),
        shape=volume.shape,
        dtype=volume.dtype,
        photometric="minisblack",
        compression="zlib",
        compressionargs={"level": 1},
        predictor=True,
        maxworkers=os.cpu_count(),
    )
    return {"write_s": time.perf_counter() - start}


def machine() -> dict:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": version("numpy"),
        "tifffile": version("tifffile"),
        "dask": version("dask"),
    }


def markdown(rows: list[dict]) -> str:
    header = (
        "| file | size on disk | call | storage | cache | open | first slice | middle slice "
        "| full scan | peak RSS: slices (after import) | peak RSS / anon. RSS after scan "
        "| imports |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [header]
    for row in rows:
        scan, after_scan = "-", "-"
        if "full_scan_s" in row:
            scan = f"{row['full_scan_s']:.1f} s"
            anon = row["memory_after_scan_mib"].get("RssAnon", float("nan"))
            after_scan = f"{row['peak_rss_after_scan_mib']:.0f} / {anon:.0f} MiB"
        lines.append(
            f"| {row['label']} | {row['file_gib']:.2f} GiB | `{row['read_call']}` "
            f"| {row['storage']} | {row['cache']} "
            f"| {row['open_s'] * 1000:.0f} ms | {row['first_slice_s'] * 1000:.0f} ms "
            f"| {row['middle_slice_s'] * 1000:.0f} ms | {scan} "
            f"| {row['peak_rss_after_slices_mib']:.0f} MiB ({row['rss_after_import_mib']:.0f}) "
            f"| {after_scan} | {row['import_s']:.2f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=4.0, help="uncompressed volume size")
    parser.add_argument("--compressed-gib", type=float, default=1.0, help="compressed variant size")
    parser.add_argument("--no-compressed", action="store_true", help="skip the compressed file")
    parser.add_argument("--no-full-scan", action="store_true", help="skip reading every slice")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the test files")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_suffix(".json"))
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--write", help=argparse.SUPPRESS)
    parser.add_argument("--write-compressed", help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--full-scan", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lazy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--eager", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.measure:
        lazy = True if args.lazy else (False if args.eager else None)
        print(json.dumps(measure(args.measure, args.full_scan, lazy)))
        return 0
    if args.write_compressed:
        result = write_compressed_in_subprocess(Path(args.write_compressed), args.depth)
        print(json.dumps(result))
        return 0
    if args.write:
        print(json.dumps(write_in_subprocess(Path(args.write), args.depth)))
        return 0

    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench_io_"))
    folder.mkdir(parents=True, exist_ok=True)
    slice_bytes = SLICE_SIDE * SLICE_SIDE * 2
    files = []
    rows = []
    try:
        depth = max(2, math.ceil(args.size_gib * 1024**3 / slice_bytes))
        plain = folder / "bench_uint16.tif"
        files.append(plain)
        print(f"writing {depth} x {SLICE_SIDE} x {SLICE_SIDE} uint16 to {plain} ...", flush=True)
        written = write_uncompressed(plain, depth)
        # the big file opens lazily by size; the smaller compressed one is forced lazy
        variants = [("uncompressed (write_volume, ImageJ)", plain, written, None)]
        if not args.no_compressed:
            depth_c = max(2, math.ceil(args.compressed_gib * 1024**3 / slice_bytes))
            compressed = folder / "bench_uint16_deflate.tif"
            files.append(compressed)
            print(f"writing {depth_c} slices deflate-compressed to {compressed} ...", flush=True)
            info = write_compressed(compressed, depth_c)
            variants.append(("deflate (tifffile)", compressed, info, True))
        # baseline: what a plain reader does, loading the whole stack before showing a slice
        variants.append(("uncompressed, eager load (baseline)", plain, written, False))
        for label, path, write_info, lazy in variants:
            for cold in (True,) if lazy is False else (True, False):
                scan = not args.no_full_scan and cold
                result = run_measurement(path, cold=cold, full_scan=scan, lazy=lazy)
                result.update(
                    label=label,
                    file=str(path),
                    file_gib=path.stat().st_size / 1024**3,
                    write=write_info,
                )
                rows.append(result)
                verified = result.get("data_verified")
                check = "" if verified is None else f", data verified: {verified}"
                print(
                    f"  {label} ({result['cache']}): first slice {result['first_slice_s']:.3f} s{check}"
                )
    finally:
        if not args.keep:
            for path in files:
                path.unlink(missing_ok=True)
            if args.dir is None:
                folder.rmdir()
    table = markdown(rows)
    print()
    print(table)
    for label, _, write_info, _ in variants:
        extra = (
            f", writer peak RSS {write_info['peak_rss_mib']:.0f} MiB"
            if "peak_rss_mib" in write_info
            else ""
        )
        print(f"- write {label}: {write_info['write_s']:.1f} s{extra}")
    report = {"machine": machine(), "size_gib": args.size_gib, "results": rows, "markdown": table}
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
