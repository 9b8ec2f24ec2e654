"""Seconds per slice of every Stable Diffusion engine, and LoRA fine-tuning speed, on a GPU.

Measures the engines as users run them (windowing, crops, compositing, per-slice
generators, one VAE decode per slice) at 512x512, 50 steps, fp16: one slice alone, then
a batch of 16 slices, for DiffEdit, ControlNet, InstructPix2Pix, LEDITS++ and Stable
unCLIP. Also reports how far a slice's batched result is from its single-slice result
(GPU kernels are chosen by shape, so exact identity is not guaranteed there; on CPU it
is, see ``napari_scigen.engines.sd.numerics.batch_invariant_numerics``), and the LoRA
fine-tuning (``finetune-sd``) steps/s and peak GPU memory at 512 px, with and without
gradient checkpointing. Everything runs through :mod:`napari_scigen.api`.

Usage::

    python benchmarks/bench_diffusion_gpu.py --random-weights          # no download needed
    python benchmarks/bench_diffusion_gpu.py --model /data/sd15 --controlnet-model /data/cn-canny \
        --ip2p-model /data/ip2p --unclip-model /data/sd21-unclip-small
    python benchmarks/bench_diffusion_gpu.py --dry-run                 # tiny models on CPU

``--random-weights`` builds SD 1.5-architecture UNet/VAE/text encoder/ControlNet, an
InstructPix2Pix UNet (8 input channels) and an SD 2.1 unCLIP-small pipeline (OpenCLIP
ViT-H text encoder, CLIP ViT-L/14 image encoder) from configs (same layer sizes and
FLOPs; the text encoders' vocabulary is the tests' byte-level one, which changes no
timing) and saves them to a temporary folder, so it runs on an offline GPU box. Without
CUDA (and without ``--dry-run``) it prints why and exits 0. ``--engines`` and
``--no-lora`` select parts.
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


#: SD 2.1 unCLIP-small UNet (v-prediction, 768 px, conditioned on CLIP ViT-L/14 image embeddings).
UNCLIP_UNET = {
    **SD15_UNET,
    "sample_size": 96,
    "cross_attention_dim": 1024,
    "attention_head_dim": (5, 10, 20, 20),
    "use_linear_projection": True,
    "class_embed_type": "projection",
    "projection_class_embeddings_input_dim": 1536,
}
#: OpenCLIP ViT-H/14 text encoder of SD 2.x.
UNCLIP_TEXT = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 512,
}
#: CLIP ViT-L/14 vision tower (the unCLIP-small image encoder).
UNCLIP_VISION = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 768,
}


def build_random_ip2p(directory: Path, sd_dir: Path) -> Path:
    """An InstructPix2Pix pipeline: the random SD 1.5 one with an 8-channel UNet, fp16."""
    import torch
    from diffusers import StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel

    torch.manual_seed(1)
    unet = UNet2DConditionModel(**{**SD15_UNET, "in_channels": 8}).to(torch.float16)
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
        str(sd_dir),
        unet=unet,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        torch_dtype=torch.float16,
    )
    pipe.save_pretrained(str(directory / "ip2p-random"))
    return directory / "ip2p-random"


def build_random_unclip(directory: Path) -> Path:
    """A Stable unCLIP-small-architecture pipeline with random fp16 weights."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableUnCLIPImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    sys.path.insert(0, str(REPO / "tests"))
    from tiny_sd import write_tiny_tokenizer_files

    torch.manual_seed(2)
    files = write_tiny_tokenizer_files(directory / "tokenizer_source_unclip")
    tokenizer = CLIPTokenizer.from_pretrained(str(files), model_max_length=77)
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **UNCLIP_TEXT,
        )
    )
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
        image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(**UNCLIP_VISION)),
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=768),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer,
        text_encoder=text,
        unet=UNet2DConditionModel(**UNCLIP_UNET),
        scheduler=DDIMScheduler(**SD15_SCHEDULER, prediction_type="v_prediction"),
        vae=AutoencoderKL(**SD15_VAE),
    )
    pipe.to(torch.float16)
    pipe.save_pretrained(str(directory / "unclip-random"))
    return directory / "unclip-random"


def build_tiny(directory: Path) -> dict[str, Path]:
    """The tests' tiny models (for ``--dry-run`` on CPU)."""
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_sd import build_tiny_controlnet, build_tiny_sd_pipeline
    from tiny_sd_more import (
        build_tiny_instructpix2pix_pipeline,
        build_tiny_ledits_pipeline,
        build_tiny_unclip_pipeline,
    )

    sd_dir = build_tiny_sd_pipeline(directory / "sd")
    return {
        "sd": sd_dir,
        "controlnet": build_tiny_controlnet(directory / "controlnet", sd_dir),
        "ip2p": build_tiny_instructpix2pix_pipeline(directory / "ip2p"),
        "ledits": build_tiny_ledits_pipeline(directory / "ledits"),
        "unclip": build_tiny_unclip_pipeline(directory / "unclip"),
    }


def model_folders(args: argparse.Namespace, work: Path) -> dict[str, Path | str]:
    """Where each engine's model comes from: tiny, random SD 1.5/2.1 architectures, or given."""
    if args.dry_run:
        return build_tiny(work)
    if args.random_weights:
        sd_dir, cn_dir = build_random_sd15(work)
        return {
            "sd": sd_dir,
            "controlnet": cn_dir,
            "ip2p": build_random_ip2p(work, sd_dir),
            "ledits": sd_dir,
            "unclip": build_random_unclip(work),
        }
    return {
        "sd": args.model,
        "controlnet": args.controlnet_model,
        "ip2p": args.ip2p_model,
        "ledits": args.model,
        "unclip": args.unclip_model,
    }


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


#: Engines timed, by name: how to call each through the API (mask-based ones edit the mask).
ENGINES = ("diffedit", "controlnet", "instructpix2pix", "ledits", "unclip")


def engine_jobs(volume, mask, models, common) -> dict:
    """``{name: (make_job(batch, slices), generates)}``; ``generates`` = (variant, slice, Y, X) output."""
    from napari_scigen import api

    return {
        "diffedit": (
            lambda batch, slices: api.edit_job(
                volume,
                mask,
                method="diffedit",
                source_prompt="grains in a matrix",
                prompt="a large pore",
                strength=1.0,
                batch_size=batch,
                slices=slices,
                model=str(models["sd"]),
                **common,
            ),
            False,
        ),
        "controlnet": (
            lambda batch, slices: api.generate_job(
                volume,
                method="controlnet",
                controlnet_model=str(models["controlnet"]),
                prompt="grains in a matrix",
                scheduler="ddim",
                batch_size=batch,
                slices=slices,
                model=str(models["sd"]),
                **common,
            ),
            True,
        ),
        "instructpix2pix": (
            lambda batch, slices: api.edit_job(
                volume,
                mask,
                method="instructpix2pix",
                prompt="make the pores larger",
                batch_size=batch,
                slices=slices,
                model=str(models["ip2p"]),
                **common,
            ),
            False,
        ),
        "ledits": (
            lambda batch, slices: api.edit_job(
                volume,
                mask,
                method="ledits",
                prompt="large pores",
                batch_size=batch,
                slices=slices,
                model=str(models["ledits"]),
                **common,
            ),
            False,
        ),
        "unclip": (
            lambda batch, slices: api.generate_job(
                volume,
                method="unclip",
                batch_size=batch,
                slices=slices,
                model=str(models["unclip"]),
                **common,
            ),
            True,
        ),
    }


def time_engines(args, volume, mask, models, device, synchronize) -> dict:
    """Single-slice and batched seconds per slice, and the batched-vs-alone difference."""
    common = {
        "resolution": args.resolution,
        "context": min(64, args.resolution // 4),
        "device": device,
        "seed": 0,
        "steps": args.steps,
    }
    jobs = engine_jobs(volume, mask, models, common)
    rows = {}
    for name in args.engines:
        make, generates = jobs[name]
        _timed(lambda make=make: make(1, [0]), synchronize)  # load + warm-up
        single = [_timed(lambda make=make: make(1, [0]), synchronize) for _ in range(args.repeats)]
        batched_time, batched = _timed(
            lambda make=make: make(args.batch, list(range(args.batch))), synchronize
        )
        alone, together = single[0][1].data, batched.data
        first_alone, first_batched = (
            (alone[0, 0], together[0, 0]) if generates else (alone[0], together[0])
        )
        difference = np.abs(first_alone.astype(np.int64) - first_batched.astype(np.int64))
        single_seconds = statistics.median(t for t, _ in single)
        rows[name] = {
            "single_slice_s": round(single_seconds, 3),
            "batch_s_per_slice": round(batched_time / args.batch, 3),
            "speedup": round(single_seconds / (batched_time / args.batch), 2),
            "batch_vs_alone_max_abs_uint16": int(difference.max()),
            "batch_vs_alone_fraction_differing": round(float((difference > 0).mean()), 5),
        }
    return rows


def _peak_memory_mib(device: str) -> float:
    """Peak GPU memory since the last reset (CUDA), or the process' peak RSS (CPU)."""
    import torch

    if device == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def time_lora(args, models, device, work: Path) -> dict:
    """LoRA fine-tuning steps/s (after warm-up) and peak memory, without / with checkpointing."""
    import torch

    from napari_scigen import api

    volume, _ = synthetic_volume(4, max(args.resolution, 64), seed=1)
    rows = {}
    for checkpointing in (False, True):
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        stamps: list[float] = []

        def on_progress(event, stamps=stamps):
            if event.message.startswith("step "):
                stamps.append(time.perf_counter())

        api.train(
            volume,
            out_dir=str(work / f"lora-{int(checkpointing)}"),
            method="sd-lora",
            model=str(models["sd"]),
            train_steps=args.lora_steps,
            batch_size=args.lora_batch,
            resolution=args.resolution,
            rank=8,
            gradient_checkpointing=checkpointing,
            mixed_precision="auto",
            preview_steps=0,
            checkpoint_every=10**9,
            device=device,
            on_progress=on_progress,
        )
        warm = min(3, len(stamps) - 2)
        timed = stamps[warm:]
        rate = (len(timed) - 1) / (timed[-1] - timed[0]) if len(timed) > 1 else float("nan")
        rows["gradient checkpointing" if checkpointing else "plain"] = {
            "steps_per_s": round(rate, 3),
            "images_per_s": round(rate * args.lora_batch, 3),
            "peak_memory_mib": _peak_memory_mib(device),
            "batch": args.lora_batch,
            "precision": "fp16 autocast" if device == "cuda" else "fp32",
        }
        if args.dry_run:
            break
    return rows


def benchmark(args: argparse.Namespace) -> dict:
    """Run the measurements and return them as a dict."""
    import torch

    device = "cpu" if args.dry_run else "cuda"
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        models = model_folders(args, Path(work))
        volume, mask = synthetic_volume(args.batch, args.resolution)
        results = {
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "weights": "tiny" if args.dry_run else ("random" if args.random_weights else "given"),
            "resolution": args.resolution,
            "steps": args.steps,
            "batch": args.batch,
            "engines": time_engines(args, volume, mask, models, device, synchronize),
        }
        if not args.no_lora:
            results["lora"] = time_lora(args, models, device, Path(work))
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print tables (and optionally write JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--random-weights", action="store_true", help="SD architectures, random")
    source.add_argument("--dry-run", action="store_true", help="tiny models on CPU, few steps")
    parser.add_argument("--model", default="stable-diffusion-v1-5/stable-diffusion-v1-5")
    parser.add_argument("--controlnet-model", default="lllyasviel/sd-controlnet-canny")
    parser.add_argument("--ip2p-model", default="timbrooks/instruct-pix2pix")
    parser.add_argument("--unclip-model", default="stabilityai/stable-diffusion-2-1-unclip-small")
    parser.add_argument(
        "--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)}"
    )
    parser.add_argument("--no-lora", action="store_true", help="skip the LoRA fine-tuning timing")
    parser.add_argument("--steps", type=int, default=None, help="default 50 (2 with --dry-run)")
    parser.add_argument("--batch", type=int, default=None, help="default 16 (2 with --dry-run)")
    parser.add_argument("--resolution", type=int, default=None, help="default 512 (64 dry run)")
    parser.add_argument("--repeats", type=int, default=2, help="single-slice repetitions")
    parser.add_argument("--lora-steps", type=int, default=None, help="default 30 (5 dry run)")
    parser.add_argument("--lora-batch", type=int, default=1, help="tiles per LoRA step")
    parser.add_argument("--work-dir", default=None, help="where random weights are saved")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.dry_run else 50)
    args.batch = args.batch or (2 if args.dry_run else 16)
    args.resolution = args.resolution or (64 if args.dry_run else 512)
    args.lora_steps = args.lora_steps or (5 if args.dry_run else 30)
    args.engines = [name.strip() for name in args.engines.split(",") if name.strip()]
    unknown = sorted(set(args.engines) - set(ENGINES))
    if unknown:
        parser.error(f"unknown engines {unknown}; choose from {', '.join(ENGINES)}")
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
        f"{'engine':<16}{'1 slice (s)':>13}{'batched (s/slice)':>19}{'speed-up':>10}{'max |diff|':>12}"
    )
    for name, row in results["engines"].items():
        print(
            f"{name:<16}{row['single_slice_s']:>13.3f}{row['batch_s_per_slice']:>19.3f}"
            f"{row['speedup']:>10.2f}{row['batch_vs_alone_max_abs_uint16']:>12d}"
        )
    for name, row in results.get("lora", {}).items():
        print(
            f"LoRA ({name}, batch {row['batch']}, {row['precision']}): {row['steps_per_s']:.3f} "
            f"steps/s, peak memory {row['peak_memory_mib']:.0f} MiB"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
