"""``train-stylegan``, ``sample-stylegan``, ``walk-stylegan`` and ``export-stylegan``.

The parameter flags come from the engines' declarations
(:mod:`napari_scigen.engines.stylegan.params`); the commands run the engines through
:mod:`napari_scigen.api`. Slice interpolation with StyleGAN is
``napari-scigen interpolate --method stylegan``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    ProgressPrinter,
    add_output_arguments,
    add_resume_argument,
    add_series_argument,
    deprecated_flag,
    output_path,
    write_output,
)


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
    """Add the StyleGAN subcommands."""
    from ..core.params import add_cli_arguments
    from ..engines.stylegan.params import (
        StyleGANSampleParams,
        StyleGANTrainParams,
        StyleGANWalkParams,
    )

    train = subparsers.add_parser(
        "train-stylegan",
        help="train a StyleGAN2 on the slices of a volume",
        description="Train (or continue training) a StyleGAN2 generator on random crops of the "
        "slices of a volume. Checkpoints go to the run directory; running the same command "
        "again resumes from the newest one, with the architecture saved there. Ctrl-C stops "
        "with a checkpoint.",
    )
    train.add_argument("input", help="3D TIFF stack or folder of slices")
    # not required=True: the former --run-dir fills the same value
    train.add_argument("-o", "--output", help="run folder for checkpoints (required)")
    train.add_argument(
        "--run-dir",
        dest="output",
        action=deprecated_flag("--output"),
        help=argparse.SUPPRESS,
    )
    add_resume_argument(train)
    train.add_argument(
        "--export", help="also write the final EMA generator to this .safetensors file"
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing --export file")
    add_series_argument(train)
    train.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_cli_arguments(train.add_argument_group("training options"), StyleGANTrainParams)
    train.set_defaults(func=run_train_command)

    sample = subparsers.add_parser(
        "sample-stylegan",
        help="generate new random slices with a StyleGAN generator",
        description="Generate N random slices (a stack) with a trained generator, mapped back to "
        "the intensity range of its training data.",
    )
    options = sample.add_argument_group("sampling options")
    add_cli_arguments(options, StyleGANSampleParams, exclude=("count",))
    _add_count_flag(options)
    add_output_arguments(sample)
    sample.set_defaults(func=run_sample_command)

    walk = subparsers.add_parser(
        "walk-stylegan",
        help="render a smooth latent walk between two seeds as a stack",
        description="Render FRAMES slices walking from the latent of --seed-a to that of "
        "--seed-b (float32 in [0, 1]), e.g. to see what a generator has learned.",
    )
    add_cli_arguments(walk.add_argument_group("walk options"), StyleGANWalkParams)
    add_output_arguments(walk)
    walk.set_defaults(func=run_walk_command)

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


def train_params_from_args(args: argparse.Namespace):
    """The :class:`StyleGANTrainParams` of the typed flags.

    ``--axes zyx`` (letters without commas, the earlier spelling) is read as ``z,y,x``.
    """
    from ..core.params import DEST_PREFIX, params_from_cli
    from ..engines.stylegan.params import AXIS_NAMES, StyleGANTrainParams

    key = DEST_PREFIX + "axes"
    axes = getattr(args, key, None)
    if axes and len(axes) == 1 and len(axes[0]) > 1 and set(axes[0]) <= set(AXIS_NAMES):
        setattr(args, key, tuple(axes[0]))
    return params_from_cli(StyleGANTrainParams, args)


def run_train_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen train-stylegan``."""
    from .. import api
    from ..cli import CliError, Terminated
    from ..core.io.outputs import check_output_location
    from ..core.progress import Cancelled
    from ..engines.stylegan.checkpoint import export_generator
    from .common import read_input, require_volume

    if not args.output:
        raise CliError("-o/--output is required: the run folder for checkpoints")
    params = train_params_from_args(args)
    check_output_location(args.output, [args.input])  # checkpoints never go into the input
    if args.export:
        output_path(
            args.export,
            overwrite=args.overwrite,
            inputs=[args.input],
            suffixes=None,
            flag="--export",
        )
    loaded, volume = read_input(args.input, series=args.series)
    require_volume(args.input, loaded, purpose="training")
    printer = ProgressPrinter(quiet=args.quiet, rename={"resume=False": "--no-resume"})
    try:
        result = api.train(
            volume,
            out_dir=args.output,
            method="stylegan",
            params=params,
            resume=args.resume,
            on_progress=printer,
        )
    except (Cancelled, KeyboardInterrupt) as stop:
        printer.close()
        print(f"stopped; the newest checkpoint in {args.output} resumes this run")
        return 143 if isinstance(stop, Terminated) else 130
    printer.close()
    extra = result.provenance["extra"]
    if result.adopted_saved_config:
        print(f"resumed {extra['resumed_from']} with its saved architecture {extra['config']}")
    print(f"trained {result.step} steps; checkpoint {result.checkpoint}")
    if args.export:
        path = export_generator(result.checkpoint, args.export)
        print(f"exported generator {path}")
    return 0


def _run_sampler(args: argparse.Namespace, method: str, params) -> int:
    from .. import api

    generator = getattr(params, "generator", None)
    target = output_path(args.output, overwrite=args.overwrite, inputs=[generator])
    printer = ProgressPrinter(quiet=args.quiet)
    result = api.sample(method=method, params=params, on_progress=printer)
    printer.close()
    write_output(target, result.data, result.provenance)
    return 0


def run_sample_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen sample-stylegan``."""
    from ..core.params import params_from_cli
    from ..engines.stylegan.params import StyleGANSampleParams

    return _run_sampler(args, "stylegan", params_from_cli(StyleGANSampleParams, args))


def run_walk_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen walk-stylegan``."""
    from ..core.params import params_from_cli
    from ..engines.stylegan.params import StyleGANWalkParams

    return _run_sampler(args, "stylegan-walk", params_from_cli(StyleGANWalkParams, args))


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
