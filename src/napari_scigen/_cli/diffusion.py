"""``diffedit`` and ``controlnet`` subcommands (Stable Diffusion engines).

Nothing heavy is imported at registration: torch/diffusers load when a command runs.
Every output path is checked before any work starts, and files are written only
after the whole run succeeded (``write_volume`` is atomic), so an error or a
cancel leaves nothing behind.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import ProgressPrinter, add_output_arguments, output_path, write_output

DEFAULT_SD_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def register(subparsers) -> None:
    """Add the ``diffedit`` and ``controlnet`` subcommands."""
    _register_diffedit(subparsers)
    _register_controlnet(subparsers)


def _add_sd_arguments(parser: argparse.ArgumentParser, *, steps: int) -> None:
    parser.add_argument("input", help="TIFF stack, ImageJ hyperstack or folder of TIFF slices")
    parser.add_argument(
        "--slices", help="slices to process: 'START:STOP' (stop excluded) or '3, 5, 10-12'"
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_SD_MODEL,
        help="Stable Diffusion hub id or local directory (default: %(default)s)",
    )
    parser.add_argument("--steps", type=int, default=steps, help="denoising steps")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance")
    parser.add_argument("--seed", type=int, default=0, help="base seed (slice z uses seed + z)")
    parser.add_argument("--resolution", type=int, default=512, help="model crop size in pixels")
    parser.add_argument("--context", type=int, default=64, help="context pixels around the mask")
    parser.add_argument("--feather", type=float, default=3.0, help="seam blend width in pixels")
    parser.add_argument("--batch-size", type=int, default=1, help="slices per pipeline call")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--local-files-only", action="store_true", help="never download model weights"
    )


def _register_diffedit(subparsers) -> None:
    parser = subparsers.add_parser(
        "diffedit",
        help="edit masked regions with a text prompt (Stable Diffusion DiffEdit)",
        description="Edit the masked region of each slice towards --prompt with DiffEdit. "
        "Pixels outside the mask are copied bit for bit; the output keeps the input dtype.",
    )
    _add_sd_arguments(parser, steps=50)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--mask", help="mask TIFF (non-zero = edit), volume- or slice-shaped")
    source.add_argument(
        "--auto-mask",
        action="store_true",
        help="let DiffEdit find the region from --source-prompt vs --prompt",
    )
    parser.add_argument("--prompt", required=True, help="what the masked region should become")
    parser.add_argument(
        "--source-prompt",
        default="a grayscale microCT slice of porous rock",
        help="what the image shows now",
    )
    parser.add_argument("--strength", type=float, default=0.8, help="inversion depth in (0, 1]")
    parser.add_argument(
        "--mask-threshold", type=float, default=3.0, help="auto-mask threshold ratio"
    )
    parser.add_argument("--save-mask", help="also write the mask used (labels TIFF)")
    add_output_arguments(parser)
    parser.set_defaults(func=run_diffedit_command)


def _register_controlnet(subparsers) -> None:
    parser = subparsers.add_parser(
        "controlnet",
        help="generate slices following Canny edges or a control layer (ControlNet)",
        description="Generate new slices whose structure follows each slice's Canny edges "
        "(or --control), or with --mask regenerate only the masked region (outside pixels "
        "copied bit for bit). With --variants N > 1, one file per variant is written: "
        "OUT_v0.tif, OUT_v1.tif, ...",
    )
    _add_sd_arguments(parser, steps=20)
    parser.add_argument("--prompt", required=True, help="text guidance")
    parser.add_argument("--negative-prompt", default="", help="what to avoid")
    parser.add_argument("--mask", help="mask TIFF: regenerate only the masked region")
    parser.add_argument(
        "--control", help="control layer TIFF (labels or image) instead of Canny edges"
    )
    parser.add_argument("--variants", type=int, default=1, help="outputs per slice")
    parser.add_argument(
        "--controlnet-model",
        default="lllyasviel/sd-controlnet-canny",
        help="ControlNet for Canny/control layers (default: %(default)s)",
    )
    parser.add_argument(
        "--inpaint-controlnet-model",
        default="lllyasviel/control_v11p_sd15_inpaint",
        help="ControlNet for --mask without --control (default: %(default)s)",
    )
    parser.add_argument("--conditioning-scale", type=float, default=1.0)
    parser.add_argument("--strength", type=float, default=1.0, help="masked mode: noise level")
    parser.add_argument("--canny-sigma", type=float, default=2.0)
    parser.add_argument(
        "--canny-low", type=float, default=0.1, help="fraction of the intensity window"
    )
    parser.add_argument(
        "--canny-high", type=float, default=0.2, help="fraction of the intensity window"
    )
    parser.add_argument("--scheduler", choices=("unipc", "ddim"), default="unipc")
    add_output_arguments(parser)
    parser.set_defaults(func=run_controlnet_command)


def parse_slices(text: str | None, depth: int):
    """``None``, ``'START:STOP[:STEP]'`` or ``'3, 5, 10-12'`` -> slice selection."""
    from ..cli import CliError
    from ..core.indices import parse_indices

    if text is None:
        return None
    try:
        if ":" in text:
            parts = [int(p) if p.strip() else None for p in text.split(":")]
            if len(parts) > 3:
                raise ValueError
            chosen = list(range(depth))[slice(*parts)]
            if not chosen:
                raise CliError(f"--slices {text!r} selects no slice of {depth}")
            return chosen
        return list(parse_indices(text, depth))
    except ValueError as error:
        detail = str(error) or "use 'START:STOP' or '3, 5, 10-12'"
        raise CliError(f"--slices {text!r}: {detail}") from None


def _variant_paths(target: Path, count: int, overwrite: bool) -> list[Path]:
    if count == 1:
        return [target]
    paths = [target.with_name(f"{target.stem}_v{v}{target.suffix}") for v in range(count)]
    for path in paths:
        output_path(str(path), overwrite=overwrite)
    return paths


def _read(path: str):
    """Read a TIFF volume/slice fully into memory (the engines need NumPy arrays)."""
    import numpy as np

    from ..core.io import read_volume

    volume = read_volume(path)
    return volume, np.asarray(volume.data)


def run_diffedit_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen diffedit``."""
    from ..core.io import write_volume
    from ..core.progress import drain
    from ..engines.diffedit import MASK_LABEL, DiffEditParams, run_diffedit

    target = output_path(args.output, overwrite=args.overwrite)
    mask_target = output_path(args.save_mask, overwrite=args.overwrite) if args.save_mask else None
    volume, data = _read(args.input)
    mask = _read(args.mask)[1] if args.mask else None
    params = DiffEditParams(
        model=args.model,
        source_prompt=args.source_prompt,
        target_prompt=args.prompt,
        steps=args.steps,
        strength=args.strength,
        guidance_scale=args.guidance,
        mask_threshold=args.mask_threshold,
        seed=args.seed,
        resolution=args.resolution,
        context=args.context,
        feather=args.feather,
        batch_size=args.batch_size,
        device=args.device,
        local_files_only=args.local_files_only,
    )
    slices = parse_slices(args.slices, data.shape[0] if data.ndim == 3 else 1)
    printer = ProgressPrinter(quiet=args.quiet)
    result = drain(run_diffedit(data, mask, params, slices=slices), on_progress=printer)
    printer.close()
    result.provenance["source"]["file"] = str(args.input)
    write_output(
        target, result.data, result.provenance, voxel_size=volume.voxel_size, unit=volume.unit
    )
    if mask_target is not None:
        write_volume(
            mask_target,
            result.labels[MASK_LABEL],
            voxel_size=volume.voxel_size,
            unit=volume.unit,
            provenance=result.provenance,
            kind="labels",
        )
        print(f"wrote {mask_target} (mask)")
    return 0


def run_controlnet_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen controlnet``."""
    from ..cli import CliError
    from ..core.progress import drain
    from ..engines.controlnet import ControlNetParams, run_controlnet, run_controlnet_inpaint

    if args.variants < 1:
        raise CliError("--variants must be >= 1")
    target = output_path(args.output, overwrite=args.overwrite)
    targets = _variant_paths(target, args.variants, args.overwrite)
    volume, data = _read(args.input)
    mask = _read(args.mask)[1] if args.mask else None
    control = _read(args.control)[1] if args.control else None
    params = ControlNetParams(
        model=args.model,
        controlnet_model=args.controlnet_model,
        inpaint_controlnet_model=args.inpaint_controlnet_model,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        steps=args.steps,
        guidance_scale=args.guidance,
        conditioning_scale=args.conditioning_scale,
        strength=args.strength,
        seed=args.seed,
        n_variants=args.variants,
        resolution=args.resolution,
        context=args.context,
        feather=args.feather,
        batch_size=args.batch_size,
        device=args.device,
        canny_sigma=args.canny_sigma,
        canny_low=args.canny_low,
        canny_high=args.canny_high,
        scheduler=args.scheduler,
        local_files_only=args.local_files_only,
    )
    slices = parse_slices(args.slices, data.shape[0] if data.ndim == 3 else 1)
    printer = ProgressPrinter(quiet=args.quiet)
    if mask is None:
        engine = run_controlnet(data, params, control=control, slices=slices)
    else:
        engine = run_controlnet_inpaint(data, mask, params, control=control, slices=slices)
    result = drain(engine, on_progress=printer)
    printer.close()
    result.provenance["source"]["file"] = str(args.input)
    outputs = result.data if (mask is None or args.variants > 1) else result.data[None]
    for variant, (path, array) in enumerate(zip(targets, outputs, strict=True)):
        provenance = dict(result.provenance, variant=variant)
        write_output(path, array, provenance, voxel_size=volume.voxel_size, unit=volume.unit)
    return 0
