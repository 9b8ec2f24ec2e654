"""``train-stylegan``, ``sample-stylegan`` and ``export-stylegan`` subcommands.

Slice interpolation with StyleGAN is ``napari-scigen interpolate --method stylegan``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import ProgressPrinter, add_output_arguments, output_path, write_output


def register(subparsers) -> None:
    """Add the StyleGAN subcommands."""
    train = subparsers.add_parser(
        "train-stylegan",
        help="train a StyleGAN2 on the slices of a volume",
        description="Train (or continue training) a StyleGAN2 generator on random crops of the "
        "slices of a volume. Checkpoints go to the run directory; running the same command "
        "again resumes from the newest one. Ctrl-C stops with a checkpoint.",
    )
    train.add_argument("input", help="3D TIFF stack or folder of slices")
    train.add_argument("-o", "--run-dir", required=True, help="run directory for checkpoints")
    train.add_argument("--steps", type=int, default=10_000, help="total training steps")
    train.add_argument(
        "--resolution", type=int, default=64, help="crop size (power of two, 32-512)"
    )
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=0.0025)
    train.add_argument(
        "--r1-gamma", type=float, default=None, help="R1 weight (default: heuristic)"
    )
    train.add_argument("--channel-base", type=int, default=4096)
    train.add_argument("--channel-max", type=int, default=128)
    train.add_argument("--z-dim", type=int, default=128)
    train.add_argument("--w-dim", type=int, default=128)
    train.add_argument("--mapping-layers", type=int, default=4)
    train.add_argument(
        "--axes",
        default="z",
        help="slicing directions: 'z' (YX planes) or 'zyx' for isotropic data",
    )
    train.add_argument("--no-augment", action="store_true", help="no flips/rotations/DiffAugment")
    train.add_argument(
        "--no-crop", action="store_true", help="resize whole slices instead of cropping"
    )
    train.add_argument(
        "--no-resume", action="store_true", help="start over even if checkpoints exist"
    )
    train.add_argument("--sample-every", type=int, default=200)
    train.add_argument("--checkpoint-every", type=int, default=1000)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto")
    train.add_argument(
        "--export", help="also write the final EMA generator to this .safetensors file"
    )
    train.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    train.set_defaults(func=run_train_command)

    sample = subparsers.add_parser(
        "sample-stylegan",
        help="generate new random slices with a StyleGAN generator",
        description="Generate N random slices (a stack) with a trained generator, mapped back to "
        "the intensity range of its training data.",
    )
    sample.add_argument(
        "--checkpoint",
        help="generator .safetensors, checkpoint or run directory "
        "(default: the embedded rock generator)",
    )
    sample.add_argument("-n", "--count", type=int, default=16)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--truncation", type=float, default=0.7, help="truncation psi (1 = none)")
    sample.add_argument("--device", default="auto")
    add_output_arguments(sample)
    sample.set_defaults(func=run_sample_command)

    export = subparsers.add_parser(
        "export-stylegan",
        help="write the EMA generator of a training run as one .safetensors + .json",
    )
    export.add_argument("run_dir", help="run or checkpoint directory")
    export.add_argument("-o", "--output", required=True, help="target .safetensors file")
    export.set_defaults(func=run_export_command)


def _axes(text: str) -> tuple[str, ...]:
    from ..cli import CliError

    axes = tuple(text.replace(",", "").strip().lower())
    if not axes or any(a not in "zyx" for a in axes) or len(set(axes)) != len(axes):
        raise CliError(f"--axes must be letters from 'zyx' without repeats, got {text!r}")
    return axes


def run_train_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen train-stylegan``."""
    import numpy as np

    from ..cli import CliError
    from ..core.io import read_volume
    from ..core.progress import Cancelled, drain
    from ..engines.stylegan.checkpoint import export_generator
    from ..engines.stylegan.networks import StyleGANConfig
    from ..engines.stylegan.train import TrainParams, run_train_stylegan

    try:
        config = StyleGANConfig(
            resolution=args.resolution,
            z_dim=args.z_dim,
            w_dim=args.w_dim,
            mapping_layers=args.mapping_layers,
            channel_base=args.channel_base,
            channel_max=args.channel_max,
        )
        params = TrainParams(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            r1_gamma=args.r1_gamma,
            augment=not args.no_augment,
            crop=not args.no_crop,
            axes=_axes(args.axes),
            sample_every=args.sample_every,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
            device=args.device,
        )
    except ValueError as error:
        raise CliError(str(error)) from error
    volume = np.asarray(read_volume(args.input).data)
    printer = ProgressPrinter(quiet=args.quiet)
    try:
        result = drain(
            run_train_stylegan(
                volume, params, config, out_dir=args.run_dir, resume=not args.no_resume
            ),
            on_progress=printer,
        )
    except (Cancelled, KeyboardInterrupt):
        printer.close()
        print(f"stopped; the newest checkpoint in {args.run_dir} resumes this run")
        return 130
    printer.close()
    print(f"trained {result.step} steps; checkpoint {result.checkpoint}")
    if args.export:
        path = export_generator(result.checkpoint, args.export)
        print(f"exported generator {path}")
    return 0


def run_sample_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen sample-stylegan``."""
    from ..core.progress import drain
    from ..engines.stylegan.sample import run_sample_slices

    target = output_path(args.output, overwrite=args.overwrite)
    printer = ProgressPrinter(quiet=args.quiet)
    result = drain(
        run_sample_slices(
            args.checkpoint, args.count, args.seed, args.truncation, device=args.device
        ),
        on_progress=printer,
    )
    printer.close()
    write_output(target, result.data, result.provenance)
    return 0


def run_export_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen export-stylegan``."""
    from ..engines.stylegan.checkpoint import export_generator

    path = export_generator(Path(args.run_dir), args.output)
    print(
        f"exported generator {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.json')}"
    )
    return 0
