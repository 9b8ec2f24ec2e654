"""Prepare the sparse stacks the outside peers see, and score what they rebuilt.

Runs in the project's environment (``/work/main/.venv``); the peers themselves run in
their own virtual environments (``run_eclare.py``, ``run_rife.py``) and exchange plain
``.npy`` / JSON files with this script, never Python objects.

``prepare`` writes, per volume and gap G, ``<work>/<volume>_keep<G>/kept.npy`` (the kept
slices ``0, G, 2G, ...`` only: the acquisition a peer is given) and ``meta.json``.

``score`` reads a peer's rebuilt dense stack (``rebuilt.npy``, on the original z grid)
and its ``run.json`` (seconds, peak memory, settings) and scores the held-out slices
exactly as ``bench_zupsample.score_cubic`` scores the cubic spline: the same held-out
slices (``workflows.validate.held_out_slices(n, keep_every=G)``), the same 0.5-99.5
percentile window, the same Otsu threshold, ``workflows.validate._score``. The rebuilt
values are clipped to the kept slices' range and, for integer data, rounded to the
data's dtype, as ``cubic_fill`` does. The row (the benchmark's format) replaces any row
of the same volume, gap and method in ``--out``.

    python benchmarks/peers/score_peer.py prepare --volumes rock,fibre,concrete --gaps 4
    python benchmarks/peers/score_peer.py score --volume rock --gap 4 \\
        --run-dir /tmp/peers/work/rock_keep4/eclare
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench_zupsample import METRICS, load_volume  # noqa: E402

WORK = Path("/tmp/peers/work")
OUT = HERE.parent / "bench_zupsample_peers.json"
NOTE = (
    "Outside peers run from their own virtual environments under /tmp/peers (never "
    "dependencies of napari-scigen; ECLARE is GPL-3 and is driven only through its "
    "run-eclare command line). Each peer saw only the kept slices (keep-every-G); the "
    "held-out slices are scored exactly like bench_zupsample's engines (same held-out "
    "slices, 0.5-99.5 percentile window, Otsu threshold, workflows.validate._score). "
    "seconds = the peer's own run (ECLARE: the whole run-eclare process; RIFE: weight "
    "loading + inference); peak_rss_mib = the peer process's peak resident memory. "
    "2 shared CPU cores, no GPU, other jobs running: times are upper bounds. See "
    "benchmarks/peers/README.md for set-up, budgets and ECLARE's z alignment."
)


def prepare(volumes: list[str], gaps: list[int], work: Path) -> None:
    """Write each volume's kept slices for every gap."""
    from napari_scigen.workflows.validate import held_out_slices

    for name in volumes:
        volume = load_volume(name)
        for gap in gaps:
            missing, _ = held_out_slices(volume.shape[0], keep_every=gap)
            kept = list(range(0, volume.shape[0], gap))
            folder = work / f"{name}_keep{gap}"
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / "kept.npy", np.ascontiguousarray(volume[kept]))
            meta = {
                "volume": name,
                "gap": gap,
                "shape": list(volume.shape),
                "dtype": str(volume.dtype),
                "kept": kept,
                "held_out": list(missing),
            }
            (folder / "meta.json").write_text(json.dumps(meta))
            print(f"{folder}: {len(kept)} kept slices of {volume.shape}", file=sys.stderr)


def to_dtype(rebuilt: np.ndarray, kept: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Clip to the kept slices' range and round to an integer dtype (as ``cubic_fill``)."""
    low, high = float(kept.min()), float(kept.max())
    values = np.clip(rebuilt.astype(np.float64), low, high)
    if np.dtype(dtype).kind in "ui":
        values = np.rint(values)
    return values.astype(dtype)


def score(name: str, gap: int, run_dir: Path) -> dict:
    """Score one peer run (``run_dir`` holds ``rebuilt.npy`` and ``run.json``)."""
    from napari_scigen.core.stack import percentile_window
    from napari_scigen.metrics.morphology import otsu_threshold
    from napari_scigen.metrics.pixel import psnr, resolve_data_range
    from napari_scigen.workflows.validate import _score, held_out_slices

    volume = load_volume(name)
    run = json.loads((run_dir / "run.json").read_text())
    rebuilt = np.load(run_dir / "rebuilt.npy")
    if rebuilt.shape != volume.shape:
        raise SystemExit(f"{run_dir}: rebuilt {rebuilt.shape} != volume {volume.shape}")
    missing, _ = held_out_slices(volume.shape[0], keep_every=gap)
    missing = list(missing)
    kept = list(range(0, volume.shape[0], gap))
    rebuilt = to_dtype(rebuilt, volume[kept], volume.dtype)
    window = percentile_window(volume, 0.5, 99.5)
    _, resolved = resolve_data_range(volume, (window.low, window.high))
    rows = _score(
        run["method"],
        volume[missing],
        rebuilt[missing],
        METRICS,
        resolved,
        otsu_threshold(volume),
        "alex",
        "cpu",
        None,
    )
    # The peer's own kept slices against the real ones: high for an aligned output
    # (None where the peer copied them: identical slices).
    kept_psnr = float(psnr(volume[kept], rebuilt[kept], data_range=resolved).value)
    return {
        "volume": name,
        "gap": f"keep{gap}",
        "method": run["method"],
        "scores": {r["metric"]: r["value"] for r in rows},
        "seconds": round(run["seconds"], 2),
        "peak_rss_mib": round(run["peak_rss_mib"], 1),
        "rss_before_mib": round(run["rss_before_mib"], 1),
        "held_out": len(missing),
        "kept_slices_psnr_db": round(kept_psnr, 2) if np.isfinite(kept_psnr) else None,
        "peer": {k: v for k, v in run.items() if k not in ("method", "seconds")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare")
    prep.add_argument("--volumes", default="rock,fibre,concrete")
    prep.add_argument("--gaps", default="4")
    prep.add_argument("--work", default=str(WORK))
    scr = sub.add_parser("score")
    scr.add_argument("--volume", required=True)
    scr.add_argument("--gap", type=int, required=True)
    scr.add_argument("--run-dir", required=True)
    scr.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if args.command == "prepare":
        gaps = [int(g) for g in args.gaps.split(",")]
        prepare(args.volumes.split(","), gaps, Path(args.work))
        return 0
    row = score(args.volume, args.gap, Path(args.run_dir))
    out = Path(args.out)
    rows = json.loads(out.read_text())["rows"] if out.is_file() else []
    key = (row["volume"], row["gap"], row["method"])
    rows = [r for r in rows if (r["volume"], r["gap"], r["method"]) != key]
    rows.append(row)
    out.write_text(json.dumps({"rows": rows, "note": NOTE}, indent=1))
    s = row["scores"]
    print(
        f"{key}: PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.3f}, GMSD {s['gmsd']:.3f}, "
        f"{row['seconds']:.0f} s, kept slices {row['kept_slices_psnr_db']} dB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
