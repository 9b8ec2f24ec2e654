"""Speed of the StyleGAN engine: training throughput, projection time, synthesis rate.

On CUDA it measures 256x256 with the default architecture (``StyleGANConfig()``
at resolution 256); on CPU it uses a small setting (the embedded generator's
architecture at 64x64) unless told otherwise. Examples::

    python benchmarks/bench_stylegan.py                       # auto device, auto size
    python benchmarks/bench_stylegan.py --device cpu --resolution 64 --threads 2
    python benchmarks/bench_stylegan.py --device cuda --resolution 256 --batch-size 32

Prints one JSON object (also written to ``--json`` when given).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_training(volume, sizes: dict, device: str, batch_size: int, steps: int) -> dict:
    """Images per second of full training steps (G + D + lazy R1 + EMA), first step excluded."""
    from napari_scigen import api
    from napari_scigen.engines.stylegan.params import StyleGANTrainParams

    params = StyleGANTrainParams(
        **sizes,
        train_steps=steps + 1,
        batch_size=batch_size,
        sample_every=10**9,
        checkpoint_every=10**9,
        device=device,
    )
    times = []
    with tempfile.TemporaryDirectory() as run_dir:
        gen = api.train_job(volume, out_dir=run_dir, params=params, resume=False)
        last = time.perf_counter()
        for event in gen:
            _sync(device)
            now = time.perf_counter()
            if event.step > 1:
                times.append(now - last)
            last = now
    per_step = sum(times) / len(times)
    return {
        "seconds_per_step": per_step,
        "images_per_second": batch_size / per_step,
        "steps_timed": len(times),
    }


def bench_projection(generator, device: str, slices: int, steps: int, batch_size: int) -> dict:
    """Seconds per projected slice for ``steps`` optimisation steps."""
    import torch

    from napari_scigen.core.progress import drain
    from napari_scigen.engines.stylegan.project import run_project

    res = generator.config.resolution
    z = torch.randn(slices, generator.config.z_dim, generator=torch.Generator().manual_seed(0)).to(
        device
    )
    with torch.no_grad():
        targets = generator(z, noise_mode="const")[:, 0].cpu().numpy()
    _sync(device)
    start = time.perf_counter()
    result = drain(run_project(generator, targets, steps=steps, batch_size=batch_size))
    _sync(device)
    elapsed = time.perf_counter() - start
    return {
        "slices": slices,
        "steps": steps,
        "batch_size": batch_size,
        "resolution": res,
        "seconds_per_slice": elapsed / slices,
        "loss_reduction": float((result.final_loss / result.initial_loss).mean()),
    }


def bench_synthesis(generator, device: str, batch_size: int, repeats: int) -> dict:
    """Slices per second of ``G.synthesis`` in inference mode."""
    import torch

    z = torch.randn(batch_size, generator.config.z_dim, device=device)
    with torch.no_grad():
        ws = generator.mapping(z)
        generator.synthesis(ws, noise_mode="const")
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            generator.synthesis(ws, noise_mode="const")
        _sync(device)
    elapsed = time.perf_counter() - start
    return {"batch_size": batch_size, "slices_per_second": batch_size * repeats / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--resolution", type=int, default=None, help="default: 256 on CUDA, 64 on CPU"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="training batch (default 32 CUDA, 8 CPU)"
    )
    parser.add_argument("--train-steps", type=int, default=None)
    parser.add_argument("--projection-steps", type=int, default=100)
    parser.add_argument("--projection-slices", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from napari_scigen.core.device import resolve_device
    from napari_scigen.engines.stylegan.checkpoint import build_networks
    from napari_scigen.engines.stylegan.default import DEFAULT_CONFIG
    from napari_scigen.engines.stylegan.networks import StyleGANConfig, count_parameters
    from napari_scigen.engines.stylegan.params import NETWORK_FIELDS

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.backends.cudnn.benchmark = True
    resolution = args.resolution or (256 if cuda else 64)
    base = StyleGANConfig() if cuda else DEFAULT_CONFIG
    config = dataclasses.replace(base, resolution=resolution)
    batch = args.batch_size or (32 if cuda else 8)
    train_steps = args.train_steps or (20 if cuda else 5)
    proj_slices = args.projection_slices or (16 if cuda else 4)

    rng = np.random.default_rng(0)
    volume = (rng.random((8, resolution * 2, resolution * 2)) * 60000).astype(np.uint16)
    generator, disc = build_networks(config, seed=0)
    generator = generator.to(device).eval().requires_grad_(False)

    results = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "config": config.to_dict(),
        "generator_parameters": count_parameters(build_networks(config)[0]),
        "discriminator_parameters": count_parameters(disc),
        "training": bench_training(
            volume,
            {name: getattr(config, name) for name in NETWORK_FIELDS},
            device,
            batch,
            train_steps,
        ),
        "projection": bench_projection(
            generator, device, proj_slices, args.projection_steps, proj_slices
        ),
        "synthesis": bench_synthesis(generator, device, 16, 10 if cuda else 3),
    }
    results["training"]["batch_size"] = batch
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
