"""Seconds per slice of the DiffEdit and ControlNet engines on a GPU.

Measures the engines as users run them (windowing, crops, compositing, per-slice
generators, one VAE decode per slice) with SD 1.5-architecture models at 512x512,
50 steps, fp16: one slice alone, then a batch of 16 slices. Also reports how far a
slice's batched result is from its single-slice result (GPU kernels are chosen by
shape, so exact identity is not guaranteed there; on CPU it is, see
``napari_scigen.engines.sd.numerics.batch_invariant_numerics``). The engines run
through :mod:`napari_scigen.api` (``api.edit_job``, ``api.generate_job``).

Usage::

    python benchmarks/bench_diffusion_gpu.py --random-weights          # no download needed
    python benchmarks/bench_diffusion_gpu.py --model /data/sd15 --controlnet-model /data/cn-canny
    python benchmarks/bench_diffusion_gpu.py --dry-run                 # tiny models on CPU

``--random-weights`` builds SD 1.5-architecture UNet/VAE/text encoder/ControlNet from
configs (same layer sizes and FLOPs; the text encoder's vocabulary is the tests'
byte-level one, which changes no timing) and saves them to a temporary folder, so it
runs on an offline GPU box. Without CUDA (and without ``--dry-run``) it prints why and
exits 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: Stable Diffusion 1.5 UNet configuration (from the public model's unet/config.json).
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
#: Stable Diffusion 1.5 VAE configuration.
SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
#: CLIP ViT-L/14 text encoder sizes used by SD 1.5 (vocabulary set from the tokenizer).
SD15_TEXT = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
SD15_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


def build_random_sd15(directory: Path) -> tuple[Path, Path]:
    """Save SD 1.5-architecture pipeline and ControlNet with random fp16 weights.

    Returns
    -------
    (Path, Path)
        The pipeline folder and the ControlNet folder.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    sys.path.insert(0, str(REPO / "tests"))
    from tiny_sd import write_tiny_tokenizer_files

    torch.manual_seed(0)
    tokenizer_files = write_tiny_tokenizer_files(directory / "tokenizer_source")
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_files), model_max_length=77)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **SD15_TEXT,
    )
    unet = UNet2DConditionModel(**SD15_UNET)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**SD15_VAE),
        text_encoder=CLIPTextModel(text_config),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16)
    sd_dir = directory / "sd15-random"
    pipe.save_pretrained(str(sd_dir))
    controlnet = ControlNetModel.from_unet(unet.float()).to(torch.float16)
    cn_dir = directory / "controlnet-random"
    controlnet.save_pretrained(str(cn_dir))
    return sd_dir, cn_dir


def build_tiny(directory: Path) -> tuple[Path, Path]:
    """The tests' tiny models (for ``--dry-run`` on CPU)."""
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_sd import build_tiny_controlnet, build_tiny_sd_pipeline

    sd_dir = build_tiny_sd_pipeline(directory / "sd")
    return sd_dir, build_tiny_controlnet(directory / "controlnet", sd_dir)


def synthetic_volume(depth: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A uint16 volume of grains in a matrix, and a central square mask per slice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    volume = np.empty((depth, size, size), dtype=np.uint16)
    for z in range(depth):
        slice_ = np.full((size, size), 12000.0)
        for _ in range(12):
            cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 20, size / 8)]
            slice_[np.hypot(yy - cy, xx - cx) < r] = 38000.0
        volume[z] = (slice_ + rng.normal(0, 900, (size, size))).clip(0, 65535)
    mask = np.zeros(volume.shape, dtype=bool)
    mask[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = True
    return volume, mask


def _timed(run, synchronize) -> tuple[float, object]:
    from napari_scigen.core.progress import drain

    synchronize()
    start = time.perf_counter()
    result = drain(run())
    synchronize()
    return time.perf_counter() - start, result


def benchmark(args: argparse.Namespace) -> dict:
    """Run the measurements and return them as a dict."""
    import torch

    from napari_scigen import api

    device = "cpu" if args.dry_run else "cuda"
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        if args.dry_run:
            sd_dir, cn_dir = build_tiny(Path(work))
        elif args.random_weights:
            sd_dir, cn_dir = build_random_sd15(Path(work))
        else:
            sd_dir, cn_dir = args.model, args.controlnet_model
        volume, mask = synthetic_volume(args.batch, args.resolution)
        common = {
            "model": str(sd_dir),
            "resolution": args.resolution,
            "context": min(64, args.resolution // 4),
            "device": device,
            "seed": 0,
            "steps": args.steps,
        }
        engines = {
            "diffedit": lambda batch, slices: api.edit_job(
                volume,
                mask,
                method="diffedit",
                source_prompt="grains in a matrix",
                target_prompt="a large pore",
                strength=1.0,
                batch_size=batch,
                slices=slices,
                **common,
            ),
            "controlnet": lambda batch, slices: api.generate_job(
                volume,
                method="controlnet",
                controlnet_model=str(cn_dir),
                prompt="grains in a matrix",
                scheduler="ddim",
                batch_size=batch,
                slices=slices,
                **common,
            ),
        }
        results = {
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "weights": "tiny" if args.dry_run else ("random" if args.random_weights else "given"),
            "resolution": args.resolution,
            "steps": args.steps,
            "batch": args.batch,
            "engines": {},
        }
        for name, make in engines.items():
            _timed(lambda make=make: make(1, [0]), synchronize)  # load + warm-up
            single = [
                _timed(lambda make=make: make(1, [0]), synchronize) for _ in range(args.repeats)
            ]
            batched_time, batched = _timed(
                lambda make=make: make(args.batch, list(range(args.batch))), synchronize
            )
            alone = single[0][1].data
            together = batched.data
            if name == "diffedit":
                first_alone, first_batched = alone[0], together[0]
            else:
                first_alone, first_batched = alone[0, 0], together[0, 0]
            difference = np.abs(first_alone.astype(np.int64) - first_batched.astype(np.int64))
            single_seconds = statistics.median(t for t, _ in single)
            results["engines"][name] = {
                "single_slice_s": round(single_seconds, 3),
                "batch_s_per_slice": round(batched_time / args.batch, 3),
                "speedup": round(single_seconds / (batched_time / args.batch), 2),
                "batch_vs_alone_max_abs_uint16": int(difference.max()),
                "batch_vs_alone_fraction_differing": round(float((difference > 0).mean()), 5),
            }
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print a table (and optionally write JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--random-weights", action="store_true", help="SD1.5 architecture, random")
    source.add_argument("--dry-run", action="store_true", help="tiny models on CPU, few steps")
    parser.add_argument("--model", default="stable-diffusion-v1-5/stable-diffusion-v1-5")
    parser.add_argument("--controlnet-model", default="lllyasviel/sd-controlnet-canny")
    parser.add_argument("--steps", type=int, default=None, help="default 50 (2 with --dry-run)")
    parser.add_argument("--batch", type=int, default=None, help="default 16 (2 with --dry-run)")
    parser.add_argument("--resolution", type=int, default=None, help="default 512 (64 dry run)")
    parser.add_argument("--repeats", type=int, default=2, help="single-slice repetitions")
    parser.add_argument("--work-dir", default=None, help="where random weights are saved")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.dry_run else 50)
    args.batch = args.batch or (2 if args.dry_run else 16)
    args.resolution = args.resolution or (64 if args.dry_run else 512)
    if args.dry_run:
        args.repeats = 1

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("CUDA is not available: skipping the GPU benchmark (use --dry-run for a CPU check).")
        return 0
    if args.dry_run:
        torch.set_num_threads(1)
    results = benchmark(args)
    print(
        f"device {results['device']}, {results['weights']} weights, {results['resolution']}px, "
        f"{results['steps']} steps, batch {results['batch']}"
    )
    print(
        f"{'engine':<12}{'1 slice (s)':>13}{'batched (s/slice)':>19}{'speed-up':>10}{'max |diff|':>12}"
    )
    for name, row in results["engines"].items():
        print(
            f"{name:<12}{row['single_slice_s']:>13.3f}{row['batch_s_per_slice']:>19.3f}"
            f"{row['speedup']:>10.2f}{row['batch_vs_alone_max_abs_uint16']:>12d}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
