"""``finetune-sd``, ``train-dcgan`` and ``sample-dcgan``: training on the user's volume.

* ``finetune-sd VOLUME -o ADAPTER_DIR``: LoRA fine-tuning of Stable Diffusion on tiles
  of the volume (``api.train(method="sd-lora")``); every SD command then takes
  ``--adapter ADAPTER_DIR``.
* ``train-dcgan VOLUME -o RUN_DIR`` / ``sample-dcgan --generator RUN_DIR -o OUT``: the
  DCGAN baseline (``api.train(method="dcgan")``, ``api.sample(method="dcgan")``).

The parameter flags come from the engines' declarations; running a training command
again on the same folder resumes from its newest checkpoint; Ctrl-C stops with one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    ProgressPrinter,
    add_output_arguments,
    add_resume_argument,
    add_series_argument,
    output_path,
    write_output,
)


def _params_class(task: str, method: str) -> type:
    from ..engines.registry import get_engine

    return get_engine(task, method).params_class


def _add_training_arguments(parser, task: str, method: str, folder_help: str) -> None:
    from ..core.params import add_cli_arguments

    parser.add_argument("input", help="3D TIFF stack or folder of slices")
    parser.add_argument("-o", "--output", required=True, help=folder_help)
    add_resume_argument(parser)
    add_series_argument(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_cli_arguments(parser.add_argument_group(f"{method} options"), _params_class(task, method))


def register(subparsers) -> None:
    """Add the ``finetune-sd``, ``train-dcgan`` and ``sample-dcgan`` subcommands."""
    from ..core.params import add_cli_arguments

    finetune = subparsers.add_parser(
        "finetune-sd",
        help="LoRA fine-tuning of Stable Diffusion on tiles of a volume",
        description="Fine-tune Stable Diffusion on random tiles of the volume's slices with a "
        "domain prompt (LoRA on the UNet, optionally the text encoder and a new token; "
        "optional prior preservation). Writes an adapter folder that every SD command takes "
        "as --adapter; running again on the same folder resumes from its newest checkpoint.",
    )
    _add_training_arguments(finetune, "train", "sd-lora", "adapter folder (created)")
    finetune.set_defaults(func=run_training_command, method="sd-lora")

    train = subparsers.add_parser(
        "train-dcgan",
        help="train the DCGAN baseline on the slices of a volume",
        description="Train (or continue training) a DCGAN on random crops of the volume's "
        "slices; checkpoints go to the run folder.",
    )
    _add_training_arguments(train, "train", "dcgan", "run folder for checkpoints (created)")
    train.set_defaults(func=run_training_command, method="dcgan")

    sample = subparsers.add_parser(
        "sample-dcgan",
        help="random slices from a trained DCGAN",
        description="Generate N random slices with a DCGAN trained by train-dcgan, mapped back "
        "to the intensity range of its training data.",
    )
    add_cli_arguments(
        sample.add_argument_group("sampling options"), _params_class("sample", "dcgan")
    )
    add_output_arguments(sample)
    sample.set_defaults(func=run_sample_command)


def run_training_command(args: argparse.Namespace) -> int:
    """Run ``finetune-sd`` or ``train-dcgan``."""
    import numpy as np

    from .. import api
    from ..cli import CliError
    from ..core.io import read_volume
    from ..core.io.outputs import check_output_location
    from ..core.params import params_from_cli
    from ..core.progress import Cancelled

    out = Path(args.output)
    check_output_location(out, [args.input])  # checkpoints never go into the input
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} exists and is not a folder")
    params = params_from_cli(_params_class("train", args.method), args)
    volume = np.asarray(read_volume(args.input, series=args.series).data)
    printer = ProgressPrinter(quiet=args.quiet)
    try:
        result = api.train(
            volume,
            out_dir=str(out),
            method=args.method,
            params=params,
            resume=args.resume,
            on_progress=printer,
        )
    except (Cancelled, KeyboardInterrupt):
        printer.close()
        print(f"stopped; the newest checkpoint in {out} resumes this run")
        return 130
    printer.close()
    print(
        f"trained {result.step} steps; {'adapter' if args.method == 'sd-lora' else 'checkpoint'} {result.checkpoint}"
    )
    losses = result.history.get("eval_loss")
    if losses:
        print(f"held-out denoising loss: {losses[0]:.4f} before, {losses[-1]:.4f} after this run")
    return 0


def run_sample_command(args: argparse.Namespace) -> int:
    """Run ``sample-dcgan``."""
    from .. import api
    from ..core.params import params_from_cli

    target = output_path(args.output, overwrite=args.overwrite)
    params = params_from_cli(_params_class("sample", "dcgan"), args)
    printer = ProgressPrinter(quiet=args.quiet)
    result = api.sample(method="dcgan", params=params, on_progress=printer)
    printer.close()
    write_output(target, result.data, result.provenance)
    return 0
