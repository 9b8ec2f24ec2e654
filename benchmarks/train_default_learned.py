"""Train the small default networks the learned engines start from (shipped as package data).

Both defaults are trained on procedural phantoms only (``make_rock_volume`` seeds 1-3 and
``make_fibre_volume`` seeds 1-2, never seed 0, which the demo and the napari sample use),
with full ground truth:

* ``learned_interpolate_default``: xz/yz planes and xy slices of the phantoms (fibres
  along z, and the same phantoms turned so fibres lie in-plane) with the known-row
  patterns of drop-every-2..5 and keep-every-2..8 applied to their rows; the loss is on
  every dropped row (supervised by the phantom, which no user volume can be);
* ``learned_inpaint_default``: known voxels of the phantoms hidden by random discs,
  rings and strokes (2-12 slices deep), with 2 neighbouring slices of context.

The run is resumable: it checkpoints into ``--work`` and stops by itself after
``--chunk-seconds`` (so it can run in turns on shared cores); run it again until it
reports "done", then it writes the ``.safetensors`` + ``.json`` pairs into
``src/napari_scigen/data``::

    python benchmarks/train_default_learned.py interpolate --steps 3000
    python benchmarks/train_default_learned.py inpaint --steps 2000
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np

from napari_scigen.core.phantoms import make_fibre_volume, make_rock_volume
from napari_scigen.core.progress import Cancelled, CancelToken, Progress, drain
from napari_scigen.core.provenance import software_versions
from napari_scigen.engines.learned import store
from napari_scigen.engines.learned.context import channel_count
from napari_scigen.engines.learned.geometry import bounded, linear_fill
from napari_scigen.engines.learned.inpaint import InpaintSampler
from napari_scigen.engines.learned.networks import UNetConfig, build_network
from napari_scigen.engines.learned.params import LearnedInpaintParams, LearnedInterpolateParams
from napari_scigen.engines.learned.sampling import Batch
from napari_scigen.engines.learned.shapes import MaskShapes
from napari_scigen.engines.learned.training import train_network

#: Known-row patterns (period, kept phase pattern) the interpolation default learns.
PATTERNS = [("drop", g) for g in (2, 3, 4, 5)] + [("keep", g) for g in (2, 3, 4, 6, 8)]
PHANTOMS = [
    ("rock", {"seed": 1}),
    ("rock", {"seed": 2, "grain_radius_range": (4, 12)}),
    ("rock", {"seed": 3, "grain_radius_range": (8, 24), "target_porosity": 0.2}),
    ("fibre", {"seed": 1}),
    ("fibre", {"seed": 2, "fibre_radius": 3.5, "misalignment_deg": 6.0}),
]
SHAPE = (64, 128, 128)


def phantoms() -> list[np.ndarray]:
    """The training volumes in [0, 1] units (percentile window of each), plus turned fibres."""
    volumes = []
    for kind, kwargs in PHANTOMS:
        make = make_rock_volume if kind == "rock" else make_fibre_volume
        volume = make(SHAPE, **kwargs).volume.astype(np.float32)
        low, high = np.percentile(volume, [0.5, 99.5])
        unit = (volume - low) / (high - low)
        volumes.append(unit)
        if kind == "fibre":
            volumes.append(np.ascontiguousarray(unit.transpose(1, 0, 2)[:64]))
    return volumes


def pattern(kind: str, period: int, length: int, rng) -> np.ndarray:
    """A window of a known-row pattern with random phase."""
    rows = np.arange(length) + int(rng.integers(period))
    return (rows % period != 0) if kind == "drop" else (rows % period == 0)


class PatternSampler:
    """Planes and slices of full-truth volumes with known-row patterns applied."""

    def __init__(self, volumes, side: int, rng) -> None:
        self.volumes, self.side, self.rng = volumes, side, rng

    def _plane(self):
        volume = self.volumes[int(self.rng.integers(len(self.volumes)))]
        axis = int(self.rng.integers(3))
        index = int(self.rng.integers(volume.shape[axis]))
        plane = np.take(volume, index, axis=axis)
        if axis == 0 and self.rng.random() < 0.5:
            plane = plane.T
        top = int(self.rng.integers(0, plane.shape[0] - self.side + 1))
        left = int(self.rng.integers(0, plane.shape[1] - self.side + 1))
        return np.ascontiguousarray(plane[top : top + self.side, left : left + self.side])

    def sample(self, batch: int, *, with_real: bool = False) -> Batch:
        side = self.side
        inputs = np.empty((batch, 2, side, side), np.float32)
        target = np.empty((batch, 1, side, side), np.float32)
        weight = np.empty((batch, 1, side, side), np.float32)
        for i in range(batch):
            image = self._plane()
            kind, period = PATTERNS[int(self.rng.integers(len(PATTERNS)))]
            known = pattern(kind, period, side, self.rng)
            if self.rng.random() < 0.5:
                image = image[:, ::-1]
            inputs[i, 0] = linear_fill(np.ascontiguousarray(image), known)
            inputs[i, 1] = known[:, None]
            target[i, 0] = image
            weight[i, 0] = bounded(known)[:, None]
        return Batch(inputs, target, weight)


def synthetic_mask(rng) -> np.ndarray:
    """Discs, rings and strokes in a volume, to draw training masks like them."""
    mask = np.zeros(SHAPE, dtype=bool)
    yy, xx = np.mgrid[: SHAPE[1], : SHAPE[2]]
    for _ in range(12):
        z0 = int(rng.integers(0, SHAPE[0] - 12))
        depth = int(rng.integers(2, 12))
        cy, cx = rng.uniform(20, SHAPE[1] - 20, 2)
        radius = rng.uniform(6, 24)
        distance = np.hypot(yy - cy, xx - cx)
        shape = distance <= radius if rng.random() < 0.6 else np.abs(distance - radius) <= 1.5
        mask[z0 : z0 + depth] |= shape
    return mask


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=("interpolate", "inpaint"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--chunk-seconds", type=float, default=280.0)
    parser.add_argument("--work", default="/tmp/scigen-learned-default")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(1234)
    volumes = phantoms()
    if args.task == "interpolate":
        params = LearnedInterpolateParams(
            init="scratch",
            train_steps=args.steps,
            learning_rate=1e-3,
            batch_size=12,
            checkpoint_dir=str(Path(args.work) / "interpolate"),
            checkpoint_every=100,
            loss="l1",
        )
        network = build_network(UNetConfig(2, params.base_channels), seed=0)
        sampler = PatternSampler(volumes, params.crop_size, rng)
    else:
        params = LearnedInpaintParams(
            init="scratch",
            train_steps=args.steps,
            learning_rate=1e-3,
            batch_size=12,
            checkpoint_dir=str(Path(args.work) / "inpaint"),
            checkpoint_every=100,
            loss="l1",
        )
        network = build_network(
            UNetConfig(channel_count(params.context_slices), params.base_channels), seed=0
        )
        samplers = [
            InpaintSampler(
                v,
                np.zeros(v.shape, bool),
                MaskShapes(synthetic_mask(rng), 64),
                64,
                params.context_slices,
                rng,
            )
            for v in volumes
        ]

        class Mixed:
            def sample(self, batch, *, with_real=False):
                parts = [samplers[int(rng.integers(len(samplers)))].sample(1) for _ in range(batch)]
                return Batch(
                    *(
                        np.concatenate([getattr(p, f) for p in parts])
                        for f in ("inputs", "target", "weight")
                    )
                )

        sampler = Mixed()
    cancel = CancelToken()
    timer = threading.Timer(args.chunk_seconds, cancel.cancel)
    timer.start()
    started = time.perf_counter()
    job = train_network(
        network,
        sampler.sample,
        params,
        device="cpu",
        task_key=f"default-{args.task}-v1",
        rng=rng,
        progress=lambda f, m: Progress(int(1000 * f), 1000, m),
        label=args.task,
        cancel=cancel,
    )
    last = {}
    try:
        report = drain(job, on_progress=lambda e: last.update(message=e.message))
    except Cancelled:
        print(
            json.dumps(
                {"paused": last.get("message"), "seconds": round(time.perf_counter() - started)}
            )
        )
        return 0
    finally:
        timer.cancel()
    name = store.DEFAULT_WEIGHTS[args.task]
    out = store.data_dir() / name
    record = {
        "trained_on": "procedural phantoms only: " + json.dumps(PHANTOMS) + f", shape {SHAPE}",
        "task": args.task,
        "steps": report.steps,
        "final_loss": report.final_loss,
        "params": {k: v for k, v in params.to_dict().items() if k not in ("checkpoint_dir",)},
        "patterns": PATTERNS
        if args.task == "interpolate"
        else "discs, rings, strokes (2-12 slices)",
        "script": "benchmarks/train_default_learned.py",
        "hardware": "2 shared x86_64 CPU cores",
        "software": software_versions(),
    }
    path = store.save_weights(network, out, record)
    print(
        json.dumps(
            {
                "done": str(path),
                "steps": report.steps,
                "final_loss": report.final_loss,
                "bytes": path.stat().st_size,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
