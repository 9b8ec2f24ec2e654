"""``train-stylegan``, ``sample-stylegan``, ``walk-stylegan`` and ``export-stylegan``.

The first three are aliases of the registry-built ``train --method stylegan``,
``sample --method stylegan`` and ``sample --method stylegan-walk`` (:mod:`.tasks`: the
same run functions and flags, from the engines' declarations in
:mod:`napari_scigen.engines.stylegan.params`), plus ``train-stylegan --export`` and
``sample-stylegan -n``; every run goes through :mod:`napari_scigen.api`. Slice interpolation with StyleGAN is
``napari-scigen interpolate --method stylegan``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_output_arguments, deprecated_flag, output_path
from .tasks import train_params_from_args  # noqa: F401 - its former home


def _add_count_flag(parser: argparse.ArgumentParser) -> None:
    """``-n``/``--count`` for ``StyleGANSampleParams.count`` (the declaration's flag plus ``-n``)."""
    from ..core.params import DEST_PREFIX, field_spec
    from ..engines.stylegan.params import StyleGANSampleParams

    spec = field_spec(StyleGANSampleParams, "count")
    parser.add_argument(
        "-n",
        spec.flag,
        dest=DEST_PREFIX + spec.name,
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help=f"{spec.help} (default: {spec.default})",
    )


def register(subparsers) -> None:
    """Add the StyleGAN subcommands (aliases of ``train``/``sample --method stylegan[-walk]``)."""
    from .tasks import (
        add_method_arguments,
        add_training_arguments,
        run_sample_command,
    )

    train = subparsers.add_parser(
        "train-stylegan",
        help="train a StyleGAN2 on the slices of a volume",
        description="Train (or continue training) a StyleGAN2 generator on random crops of the "
        "slices of a volume. Checkpoints go to the run directory; running the same command "
        "again resumes from the newest one, with the architecture saved there. Ctrl-C stops "
        "with a checkpoint. The same as train --method stylegan, plus --export.",
    )
    # not required=True: the former --run-dir fills the same value
    add_training_arguments(train, "run folder for checkpoints (required)", output_required=False)
    train.add_argument(
        "--run-dir",
        dest="output",
        action=deprecated_flag("--output"),
        help=argparse.SUPPRESS,
    )
    train.add_argument(
        "--export", help="also write the final EMA generator to this .safetensors file"
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing --export file")
    add_method_arguments(train, "train", "stylegan")
    train.set_defaults(func=run_train_command)

    sample = subparsers.add_parser(
        "sample-stylegan",
        help="generate new random slices with a StyleGAN generator",
        description="Generate N random slices (a stack) with a trained generator, mapped back to "
        "the intensity range of its training data. The same as sample --method stylegan.",
    )
    add_method_arguments(sample, "sample", "stylegan", exclude=("count",))
    _add_count_flag(sample)
    add_output_arguments(sample)
    sample.set_defaults(func=run_sample_command)

    walk = subparsers.add_parser(
        "walk-stylegan",
        help="render a smooth latent walk between two seeds as a stack",
        description="Render FRAMES slices walking from the latent of --seed-a to that of "
        "--seed-b (float32 in [0, 1]), e.g. to see what a generator has learned. The same as "
        "sample --method stylegan-walk.",
    )
    add_method_arguments(walk, "sample", "stylegan-walk")
    add_output_arguments(walk)
    walk.set_defaults(func=run_sample_command)

    export = subparsers.add_parser(
        "export-stylegan",
        help="write the EMA generator of a training run as one .safetensors + .json",
    )
    export.add_argument("run_dir", help="run or checkpoint directory")
    export.add_argument("-o", "--output", required=True, help="target .safetensors file")
    export.add_argument(
        "--overwrite", action="store_true", help="replace an existing .safetensors/.json pair"
    )
    export.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    export.set_defaults(func=run_export_command)


def run_train_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen train-stylegan``: ``train --method stylegan``, then ``--export``."""
    from ..engines.stylegan.checkpoint import export_generator
    from .tasks import train_from_args

    if args.export:
        target = output_path(
            args.export,
            overwrite=args.overwrite,
            inputs=[args.input],
            suffixes=None,
            flag="--export",
        )
        output_path(  # the .json beside it is written too
            target.with_suffix(".json"),
            overwrite=args.overwrite,
            inputs=[args.input],
            suffixes=None,
            flag="--export",
        )
    status, result = train_from_args(args)
    if result is not None and args.export:
        path = export_generator(result.checkpoint, args.export)
        print(f"exported generator {path}")
    return status


def run_export_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen export-stylegan``."""
    from ..engines.stylegan.checkpoint import export_generator

    target = output_path(
        args.output, overwrite=args.overwrite, inputs=[args.run_dir], suffixes=None
    )
    output_path(  # the .json beside it is replaced too
        target.with_suffix(".json"), overwrite=args.overwrite, inputs=[args.run_dir], suffixes=None
    )
    path = export_generator(Path(args.run_dir), args.output)
    if not args.quiet:
        print(
            f"exported generator {path} ({path.stat().st_size / 1e6:.2f} MB) and "
            f"{path.with_suffix('.json')}"
        )
    return 0
