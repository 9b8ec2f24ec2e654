"""``edit``, ``generate``, ``mask``, ``train`` and ``sample --method NAME``: commands built
from the engine registry (``interpolate`` and ``inpaint``: :mod:`.engines`).

Each command serves every engine registered for its task: ``--method`` lists them and
every engine's parameter flags come from its params declaration (a flag several engines
declare shows each one's own help and default). The per-engine commands
(``train-stylegan``, ``train-dcgan``, ``finetune-sd``, ``sample-stylegan``,
``walk-stylegan``, ``sample-dcgan``) are thin aliases: the same run functions with the
method fixed and only that engine's flags (:func:`add_method_arguments`). ``edit`` and
``generate`` share their run function with the Stable Diffusion commands
(:func:`napari_scigen._cli.diffusion.run_sd_command`).

Runs go through :mod:`napari_scigen.api` only; nothing heavy is imported at registration.
"""

from __future__ import annotations

import argparse

from .common import (
    ProgressPrinter,
    add_engine_arguments,
    add_output_arguments,
    add_resume_argument,
    add_series_argument,
    engine_params_from_args,
    output_path,
    read_input,
    require_volume,
    write_output,
)
from .engines import INPUT_HELP


def add_method_arguments(parser, task: str, method: str | None = None, *, exclude=()) -> None:
    """``--method`` and every ``task`` engine's flags, or (``method`` given) one engine's.

    An alias command (``method`` given) gets only that engine's flags, in a group named
    after it, and ``args.method`` set, so the task's run function serves it unchanged.
    ``exclude``: fields whose flag the command adds itself.
    """
    if method is None:
        add_engine_arguments(parser, task, exclude=exclude)
        return
    from ..core.params import add_cli_arguments
    from ..engines.registry import get_engine

    engine = get_engine(task, method)
    group = parser.add_argument_group(f"{method} options", engine.description)
    add_cli_arguments(group, engine.params_class, exclude=exclude)
    parser.set_defaults(method=method)


def method_params(task: str, args: argparse.Namespace):
    """The params of ``args.method`` from the typed flags (:func:`.common.engine_params_from_args`).

    A typed flag of another engine of the task is refused first, naming the engines it
    belongs to: ``--precision does not apply to --method dcgan (a flag of stylegan)``.

    Raises
    ------
    CliError
    """
    from ..cli import CliError
    from ..core.params import cli_values, fields_of
    from ..engines.registry import engines, get_engine

    own = {spec.name for spec in fields_of(get_engine(task, args.method).params_class)}
    foreign = sorted(name for name in cli_values(args) if name not in own)
    if foreign:
        owners = [
            engine.name
            for engine in engines(task)
            if any(spec.name in foreign for spec in fields_of(engine.params_class))
        ]
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        verb, noun = ("does", "a flag") if len(foreign) == 1 else ("do", "flags")
        raise CliError(
            f"{flags} {verb} not apply to --method {args.method} ({noun} of {', '.join(owners)})"
        )
    return engine_params_from_args(task, args)


def register(subparsers) -> None:
    """Add the registry-built ``edit``, ``generate``, ``mask``, ``train`` and ``sample``."""
    from . import diffusion  # it imports this module: not at module level

    diffusion.register_edit_command(subparsers)
    diffusion.register_generate_command(subparsers)
    mask = subparsers.add_parser(
        "mask",
        help="derive an editable mask from the data with any registered mask engine",
        description="Derive a mask (a labels TIFF to correct in napari and give to inpaint "
        "or edit --mask) from the slices of a volume with the mask engine chosen by --method.",
    )
    mask.add_argument("input", help=INPUT_HELP)
    add_slices_argument(mask)
    add_series_argument(mask)
    add_method_arguments(mask, "mask")
    add_output_arguments(mask)
    mask.set_defaults(func=run_mask_command)

    train = subparsers.add_parser(
        "train",
        help="train a generative model on a volume with any registered training engine",
        description="Train (or continue training) the model chosen by --method on the slices "
        "of a volume. Checkpoints go to the -o folder; running the same command again "
        "resumes from the newest one. Ctrl-C stops with a checkpoint. The per-engine "
        "commands (train-stylegan, train-dcgan, finetune-sd) are the same engines.",
    )
    add_training_arguments(train, "run folder for checkpoints (created)")
    add_method_arguments(train, "train")
    train.set_defaults(func=run_train_command)

    sample = subparsers.add_parser(
        "sample",
        help="draw new slices from a trained generative model (any registered sampler)",
        description="Draw new slices (a stack) from the generative model chosen by --method, "
        "mapped back to the intensity range of its training data. The per-engine commands "
        "(sample-stylegan, walk-stylegan, sample-dcgan) are the same engines.",
    )
    add_method_arguments(sample, "sample")
    add_output_arguments(sample)
    sample.set_defaults(func=run_sample_command)


def add_slices_argument(parser) -> None:
    """``--slices`` in the one slice grammar (:data:`napari_scigen.core.indices.SLICES_HELP`)."""
    from ..core.indices import SLICES_HELP

    parser.add_argument("--slices", help=f"slices to process (default all): {SLICES_HELP}")


def add_training_arguments(parser, folder_help: str, *, output_required: bool = True) -> None:
    """The input volume, ``-o`` run folder, ``--resume/--no-resume``, ``--series``, ``-q``."""
    parser.add_argument("input", help="3D TIFF stack or folder of slices")
    parser.add_argument("-o", "--output", required=output_required, help=folder_help)
    add_resume_argument(parser)
    add_series_argument(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def _slice_selection(text: str | None, data) -> tuple[int, ...] | None:
    """``--slices`` of ``data`` (``None`` = every slice); a bad selection names the flag."""
    from ..cli import CliError
    from ..core.indices import parse_slice_selection
    from ..core.validation import InvalidInputError

    depth = data.shape[0] if data.ndim == 3 else 1
    try:
        return parse_slice_selection(text, depth)
    except InvalidInputError as error:
        raise CliError(f"--slices {text!r}: {error}") from None


def run_mask_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen mask``: the engine's mask written as a labels TIFF."""
    from .. import api
    from ..core.io import check_unit, write_volume

    target = output_path(args.output, overwrite=args.overwrite, inputs=[args.input])
    params = method_params("mask", args)
    volume, data = read_input(args.input, series=args.series)
    require_volume(args.input, volume, purpose="a mask", allow_2d=True)
    check_unit(volume.unit)
    slices = _slice_selection(args.slices, data)
    printer = ProgressPrinter(quiet=args.quiet)
    result = api.make_mask(
        data, method=args.method, params=params, slices=slices, on_progress=printer
    )
    printer.close()
    result.provenance["source"]["file"] = str(args.input)
    labels = next(iter(result.labels.values()), result.data)
    voxel_size = result.output_voxel_size(volume.voxel_size)
    write_volume(
        target,
        labels,
        voxel_size=voxel_size,
        unit=volume.unit,
        provenance=result.provenance,
        kind="labels",
    )
    print(f"wrote {target} ({labels.shape}, {labels.dtype}, mask)")
    return 0


def train_params_from_args(args: argparse.Namespace):
    """The chosen training engine's params from the typed flags.

    ``--axes zyx`` (letters without commas, the earlier spelling) is read as ``z,y,x``
    for every engine that declares ``axes``.
    """
    from ..core.params import DEST_PREFIX, fields_of
    from ..engines.registry import get_engine

    key = DEST_PREFIX + "axes"
    axes = getattr(args, key, None)
    specs = {spec.name: spec for spec in fields_of(get_engine("train", args.method).params_class)}
    letters = specs["axes"].info.choices if "axes" in specs else None
    if axes and letters and len(axes) == 1 and len(axes[0]) > 1 and set(axes[0]) <= set(letters):
        setattr(args, key, tuple(axes[0]))
    return method_params("train", args)


def train_from_args(args: argparse.Namespace):
    """Train ``args.method`` on ``args.input`` into the ``-o`` folder; ``(status, result)``.

    ``result`` is ``None`` after Ctrl-C or SIGTERM (status 130 or 143; the engine wrote a
    checkpoint that resumes the run).
    """
    from pathlib import Path

    from .. import api
    from ..cli import CliError, Terminated
    from ..core.io.outputs import check_output_location
    from ..core.progress import Cancelled

    if not args.output:
        raise CliError("-o/--output is required: the run folder for checkpoints")
    out = Path(args.output)
    check_output_location(out, [args.input])  # checkpoints never go into the input
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} exists and is not a folder")
    params = train_params_from_args(args)
    loaded, volume = read_input(args.input, series=args.series)
    require_volume(args.input, loaded, purpose="training")
    printer = ProgressPrinter(quiet=args.quiet, rename={"resume=False": "--no-resume"})
    try:
        result = api.train(
            volume,
            out_dir=str(out),
            method=args.method,
            params=params,
            resume=args.resume,
            on_progress=printer,
        )
    except (Cancelled, KeyboardInterrupt) as stop:
        printer.close()
        print(f"stopped; the newest checkpoint in {out} resumes this run")
        return (143 if isinstance(stop, Terminated) else 130), None
    printer.close()
    if result.adopted_saved_config:
        config = result.metadata.get("config")
        print(f"resumed {result.resumed_from} with its saved architecture {config}")
    print(f"trained {result.step} steps; wrote {result.checkpoint}")
    losses = getattr(result, "history", {}).get("eval_loss")
    if losses:
        print(f"held-out denoising loss: {losses[0]:.4f} before, {losses[-1]:.4f} after this run")
    return 0, result


def run_train_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen train`` (and the ``train-dcgan`` and ``finetune-sd`` aliases)."""
    return train_from_args(args)[0]


def run_sample_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen sample`` (and ``sample-stylegan``, ``walk-stylegan``, ``sample-dcgan``)."""
    from .. import api

    params = method_params("sample", args)
    generator = getattr(params, "generator", None)
    target = output_path(args.output, overwrite=args.overwrite, inputs=[generator])
    printer = ProgressPrinter(quiet=args.quiet)
    result = api.sample(method=args.method, params=params, on_progress=printer)
    printer.close()
    write_output(target, result.data, result.provenance)
    return 0
