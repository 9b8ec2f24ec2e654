"""ECLARE (Remedios et al. 2025, GPL-3) as a z-upsampling peer, driven as a separate program.

Runs with ``/tmp/peers/venv-eclare/bin/python`` (ECLARE's own venv: ``eclare`` 1.0.1
with its pins scipy 1.11.4 and radifox-utils 1.0.3; torch comes from the project's venv
through a ``.pth`` file, see README.md). No ECLARE code is imported or copied here: this
script writes a NIfTI file, runs the ``run-eclare`` command in a subprocess, reads the
NIfTI it writes, and aligns it to our z grid. Never imported by napari-scigen.

Input: ``<run>/kept.npy`` (the kept slices ``0, G, 2G, ...`` only, written by
``score_peer.py prepare``) and ``meta.json``. The sparse stack is written as NIfTI
(float32, affine ``diag(G, 1, 1)``: z voxel size G x the in-plane size, the real
acquisition), so ECLARE reads slice separation G along axis 0.

Budget: ECLARE's training length is ``--n-patches / --batch-size`` steps (default
1,000,000 / 128 = 7,813 steps: ~43 h on 2 CPU cores). Here ``--steps N`` and
``--batch-size B`` (default 32: more, smaller updates on a tiny budget) set
``--n-patches N * B``; everything else is ECLARE's default. The slice profile is given, not
estimated: ``--relative-slice-profile-type rect --relative-slice-thickness 1`` (a
1-voxel rect = a delta, i.e. thin slices = decimation, exactly how the keep-every-G
stacks are made), which skips ESPRESO's PSF estimation (a fixed ~4,100-step GAN).

Alignment: ECLARE treats each acquired slice as the centre of a G-voxel slab (its
training pairs are made by resampling rows at slab centres), so its output slice ``j``
(``n_kept * G`` slices) sits at ``z = j - (G - 1) / 2`` on our grid, where kept slice
``i`` is at ``z = i * G``. The value at grid position ``z`` is therefore read at output
coordinate ``j = z + (G - 1) / 2`` with a cubic spline along z
(``scipy.ndimage.map_coordinates``, order 3, ``mode="nearest"``); for even G that is a
half-slice shift. The alignment is checked on the kept slices: the RMSE between the
real kept slices and the output read at ``i * G + s`` is reported for shifts
``s = 0, 0.25, ..., G - 1``; it should be smallest at ``s = (G - 1) / 2``.

Writes ``<run>/eclare_<steps>x<batch>/rebuilt.npy`` (dense, on the original z grid; kept slices
are ECLARE's own, not copied) and ``run.json``.

    OMP_NUM_THREADS=2 /tmp/peers/venv-eclare/bin/python benchmarks/peers/run_eclare.py \\
        /tmp/peers/work/rock_keep4 --steps 60
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import map_coordinates


def children_peak_rss_mib() -> float:
    """Peak resident memory of the largest finished child process (MiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def read_at(output: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """Slices of ``output`` at fractional z ``coordinates`` (cubic spline along z)."""
    zz = np.asarray(coordinates, dtype=np.float64)[:, None, None]
    _, h, w = output.shape
    grid = np.broadcast_arrays(zz, np.arange(h)[None, :, None], np.arange(w)[None, None, :])
    return map_coordinates(output, grid, order=3, mode="nearest").astype(np.float32)


def alignment_check(output: np.ndarray, kept: np.ndarray, gap: int) -> dict:
    """RMSE of the real kept slices against the output read at ``i * G + s``."""
    index = np.arange(kept.shape[0]) * gap
    span = float(kept.max() - kept.min()) or 1.0
    rmse = {}
    for shift in np.arange(0.0, gap - 1 + 1e-9, 0.25):
        values = read_at(output, index + shift)
        error = values.astype(np.float64) - kept.astype(np.float64)
        rmse[f"{shift:.2f}"] = round(float(np.sqrt(np.mean(error**2))) / span, 5)
    best = min(rmse, key=rmse.get)
    return {"relative_rmse_by_shift": rmse, "best_shift": float(best), "used": (gap - 1) / 2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="folder with kept.npy and meta.json")
    parser.add_argument("--steps", type=int, required=True, help="training steps")
    parser.add_argument("--batch-size", type=int, default=32, help="patches per step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cli", default=str(Path(sys.executable).parent / "run-eclare"))
    args = parser.parse_args()
    run = Path(args.run)
    meta = json.loads((run / "meta.json").read_text())
    kept = np.load(run / "kept.npy")
    gap = int(meta["gap"])
    out = run / f"eclare_{args.steps}x{args.batch_size}"
    out.mkdir(exist_ok=True)
    source = out / "sparse.nii.gz"
    affine = np.diag([float(gap), 1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(kept.astype(np.float32), affine), source)
    # The same interpreter, torch and ECLARE import, without training: the baseline memory.
    baseline = subprocess.run(
        [sys.executable, "-c", "import torch, eclare.main"], check=True, capture_output=True
    )
    del baseline
    rss_before = children_peak_rss_mib()
    command = [
        args.cli,
        "--in-fpath",
        str(source),
        "--out-dir",
        str(out),
        "--batch-size",
        str(args.batch_size),
        "--n-patches",
        str(args.steps * args.batch_size),
        "--relative-slice-profile-type",
        "rect",
        "--relative-slice-thickness",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    (out / "eclare.log").write_text(done.stdout + "\n" + done.stderr)
    if done.returncode:
        print(done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"run-eclare failed ({done.returncode})")
    output = np.asarray(nib.load(out / "sparse_eclare.nii.gz").get_fdata(dtype=np.float32))
    if output.shape[1:] != kept.shape[1:] or output.shape[0] != kept.shape[0] * gap:
        raise SystemExit(f"unexpected ECLARE output shape {output.shape} for {kept.shape}")
    check = alignment_check(output, kept, gap)
    rebuilt = read_at(output, np.arange(meta["shape"][0]) + (gap - 1) / 2)
    np.save(out / "rebuilt.npy", rebuilt)
    record = {
        "method": f"eclare (reduced CPU budget: {args.steps} steps x {args.batch_size})",
        "seconds": seconds,
        "peak_rss_mib": children_peak_rss_mib(),
        "rss_before_mib": rss_before,
        "steps": args.steps,
        "default_steps": 7813,
        "batch_size": args.batch_size,
        "patches": args.steps * args.batch_size,
        "default_patches": 1_000_000,
        "threads": args.threads,
        "command": command,
        "slice_profile": "rect, thickness 1 (thin slices = decimation; ESPRESO skipped)",
        "alignment": "grid z = output j - (G - 1) / 2; read at j = z + (G - 1) / 2, "
        "cubic spline along z (scipy.ndimage.map_coordinates order 3)",
        "alignment_check": check,
        "output_shape": list(output.shape),
    }
    (out / "run.json").write_text(json.dumps(record, indent=1))
    print(
        f"{run.name}: ECLARE {args.steps} steps {seconds:.1f} s; kept-slice RMSE by shift "
        f"{check['relative_rmse_by_shift']} best {check['best_shift']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
