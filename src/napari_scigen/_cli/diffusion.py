"""``edit`` and ``generate --method NAME`` (built from the registry) and the Stable Diffusion
commands ``diffedit``, ``controlnet``, ``instructpix2pix``, ``ledits`` and ``unclip``.

``controlnet``, ``instructpix2pix``, ``ledits`` and ``unclip`` are aliases: one run
function (:func:`run_sd_command`) serves them and ``edit``/``generate``, with the method
fixed and only that engine's flags (``--mask`` routes to the ``inpaint`` task where the
engine has one). ``diffedit`` adds ``--auto-mask`` and ``--save-mask``.

The parameter flags are built from the engines' params declarations (one flag per
field, see :mod:`napari_scigen.core.params`), the slice selection uses the grammar of
:mod:`napari_scigen.core.indices`, and the runs go through :mod:`napari_scigen.api`,
so the CLI, the API and the widgets accept the same parameters and behave the same.

Nothing heavy is imported at registration: torch/diffusers load when a command runs.
Every output path and parameter is checked before any work starts, and files are
written only after the whole run succeeded (``write_volume`` is atomic), so an error
or a cancel leaves nothing behind.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    ProgressPrinter,
    add_output_arguments,
    add_series_argument,
    output_path,
    write_output,
)
from .engines import INPUT_HELP
from .tasks import _slice_selection, add_method_arguments, method_params


def register(subparsers) -> None:
    """Add the Stable Diffusion subcommands (``edit`` and ``generate``: :mod:`.tasks`)."""
    _register_diffedit(subparsers)
    _register_controlnet(subparsers)
    for command in SD_COMMANDS:
        _register_sd_command(subparsers, command)


def register_edit_command(subparsers) -> None:
    """``edit --method NAME``: every registered ``edit`` engine, built from the registry."""
    parser = subparsers.add_parser(
        "edit",
        help="edit slices (or the masked region) with any registered edit engine",
        description="Edit the slices of a volume, or only its masked region, with the edit "
        "engine chosen by --method (every engine registered for the 'edit' task, with its "
        "own flags). With --mask only the masked region changes (outside pixels copied bit "
        "for bit); the output keeps the input dtype. The per-engine commands (diffedit, "
        "instructpix2pix, ledits) are the same engines.",
    )
    _add_common_arguments(parser)
    parser.add_argument("--mask", help="mask TIFF (non-zero = change), volume- or slice-shaped")
    add_method_arguments(parser, "edit")
    add_output_arguments(parser)
    parser.set_defaults(func=run_sd_command, sd_command=("edit", "edit", "edit", None, "edit"))


def register_generate_command(subparsers) -> None:
    """``generate --method NAME``: every registered ``generate`` engine, from the registry."""
    from ..engines.registry import engines

    parser = subparsers.add_parser(
        "generate",
        help="synthesize new slices conditioned on real ones with any registered generator",
        description="Synthesize new slices conditioned on the chosen slices of a volume with "
        "the generate engine chosen by --method (every engine registered for the 'generate' "
        "task, with its own flags). With --count N > 1, one file per variant is written: "
        "OUT_v0.tif, OUT_v1.tif, ... The per-engine commands (controlnet, unclip) are the "
        "same engines.",
    )
    _add_common_arguments(parser)
    takes_control = [e.name for e in engines("generate") if "control" in e.inputs]
    if takes_control:
        parser.add_argument(
            "--control",
            help="control layer TIFF (labels or image) instead of the engine's own condition "
            f"[{', '.join(takes_control)}]",
        )
    add_method_arguments(parser, "generate")
    add_output_arguments(parser)
    parser.set_defaults(
        func=run_sd_command, sd_command=("generate", "generate", "generate", None, "generate")
    )


def _params_class(task: str, method: str) -> type:
    """The params dataclass of a registered engine (imports no torch)."""
    from ..engines.registry import get_engine

    return get_engine(task, method).params_class


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    from .tasks import add_slices_argument

    parser.add_argument("input", help=INPUT_HELP)
    add_slices_argument(parser)
    add_series_argument(parser)


def _register_diffedit(subparsers) -> None:
    parser = subparsers.add_parser(
        "diffedit",
        help="edit masked regions with a text prompt (Stable Diffusion DiffEdit)",
        description="Edit the masked region of each slice towards --prompt with DiffEdit. "
        "Pixels outside the mask are copied bit for bit; the output keeps the input dtype.",
    )
    _add_common_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--mask", help="mask TIFF (non-zero = edit), volume- or slice-shaped")
    source.add_argument(
        "--auto-mask",
        action="store_true",
        help="let DiffEdit find the region from --source-prompt vs --prompt",
    )
    parser.add_argument("--save-mask", help="also write the mask used (labels TIFF)")
    add_method_arguments(parser, "edit", "diffedit")
    add_output_arguments(parser)
    parser.set_defaults(
        func=run_diffedit_command, sd_command=("diffedit", "edit", "edit", "diffedit", "DiffEdit")
    )


def _register_controlnet(subparsers) -> None:
    parser = subparsers.add_parser(
        "controlnet",
        help="generate slices following Canny edges or a control layer (ControlNet)",
        description="Generate new slices whose structure follows each slice's Canny edges "
        "(or --control), or with --mask regenerate only the masked region (outside pixels "
        "copied bit for bit). With --count N > 1, one file per variant is written: "
        "OUT_v0.tif, OUT_v1.tif, ...",
    )
    _add_common_arguments(parser)
    parser.add_argument("--mask", help="mask TIFF: regenerate only the masked region")
    parser.add_argument(
        "--control", help="control layer TIFF (labels or image) instead of Canny edges"
    )
    add_method_arguments(parser, "generate", "controlnet")
    add_output_arguments(parser)
    parser.set_defaults(func=run_sd_command, sd_command=CONTROLNET_COMMAND)


def _variant_paths(target: Path, count: int, overwrite: bool, inputs=()) -> list[Path]:
    if count == 1:
        return [target]
    paths = [target.with_name(f"{target.stem}_v{v}{target.suffix}") for v in range(count)]
    for path in paths:
        output_path(str(path), overwrite=overwrite, inputs=inputs)
    return paths


def _read(path: str, what: str = "input", *, labels: bool = False, series: int | None = None):
    """Read a TIFF volume/slice fully into memory (the engines need NumPy arrays)."""
    from ..core.io import check_unit
    from .common import read_input, require_volume

    volume, data = read_input(path, what=what, labels=labels, series=series)
    if what == "input":
        require_volume(path, volume, purpose="Stable Diffusion", allow_2d=True)
        check_unit(volume.unit)  # the output is written with it: fail now, not after the run
    return volume, data


def run_diffedit_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen diffedit``: ``edit --method diffedit``, plus ``--save-mask``."""
    return run_sd_command(args, prepare=_prepare_diffedit)


def _prepare_diffedit(args: argparse.Namespace, inputs, target: Path, params):
    """Check ``--save-mask`` and the prompt before the run; return the mask writer."""
    from ..cli import CliError
    from ..core.io import write_volume
    from ..engines.sd.diffedit import MASK_LABEL

    if not params.prompt.strip():
        raise CliError("--prompt is required: describe what the masked region should become")
    if not args.save_mask:
        return None
    mask_target = output_path(
        args.save_mask, overwrite=args.overwrite, inputs=inputs, flag="--save-mask"
    )
    if mask_target.resolve() == target.resolve():
        raise CliError("--save-mask and -o name the same file; give two file names")

    def save_mask(result, voxel_size, unit) -> None:
        labels = result.labels[MASK_LABEL]
        write_volume(
            mask_target,
            labels,
            voxel_size=voxel_size,
            unit=unit,
            provenance=result.provenance,
            kind="labels",
        )
        print(f"wrote {mask_target} (mask)")

    return save_mask


# --------------------------------------------------------------------------------------
# ControlNet, InstructPix2Pix, LEDITS++ and Stable unCLIP: aliases of generate/edit/inpaint
# --------------------------------------------------------------------------------------

#: ``controlnet``: ``generate --method controlnet``, or ``inpaint`` with ``--mask``.
CONTROLNET_COMMAND = ("controlnet", "generate", "inpaint", "controlnet", "ControlNet")


#: ``(command, task without --mask, task with --mask, method, help)``.
SD_COMMANDS = (
    (
        "instructpix2pix",
        "edit",
        "edit",
        "instructpix2pix",
        "edit slices (or the masked region) by an instruction (InstructPix2Pix)",
    ),
    (
        "ledits",
        "edit",
        "edit",
        "ledits",
        "edit slices (or the masked region) towards or away from a concept (LEDITS++)",
    ),
    (
        "unclip",
        "generate",
        "inpaint",
        "unclip",
        "image variations of slices, or of the masked region (Stable unCLIP)",
    ),
)


def _register_sd_command(subparsers, command) -> None:
    from ..core.params import fields_of

    name, task, masked_task, method, summary = command
    cls = _params_class(task, method)
    variants = any(spec.name == "count" for spec in fields_of(cls))
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=f"{summary[0].upper()}{summary[1:]}. With --mask only the masked region "
        "changes (outside pixels copied bit for bit); the output keeps the input dtype. "
        "--adapter FOLDER applies a LoRA adapter written by finetune-sd."
        + (
            " With --count N > 1, one file per variant is written: OUT_v0.tif, OUT_v1.tif, ..."
            if variants
            else ""
        ),
    )
    _add_common_arguments(parser)
    parser.add_argument("--mask", help="mask TIFF (non-zero = change), volume- or slice-shaped")
    add_method_arguments(parser, task, method)
    add_output_arguments(parser)
    parser.set_defaults(func=run_sd_command, sd_command=command)


def run_sd_command(args: argparse.Namespace, *, prepare=None) -> int:
    """Run ``edit``, ``generate``, ``controlnet``, ``diffedit`` or one of :data:`SD_COMMANDS`
    through :mod:`napari_scigen.api` (``args.sd_command`` says which task and method).

    ``prepare(args, inputs, target, params)``, called after the output and parameter checks
    and before any work, checks a command's own options and may return
    ``finish(result, voxel_size, unit)``, called after the output is written.
    """
    from .. import api

    _, task, masked_task, method, _ = args.sd_command
    mask_file, control_file = getattr(args, "mask", None), getattr(args, "control", None)
    inputs = [args.input, mask_file, control_file]
    target = output_path(args.output, overwrite=args.overwrite, inputs=inputs)
    chosen = masked_task if mask_file else task
    args.method = method or args.method  # an alias fixes it; `edit`/`generate` take --method
    params = method_params(chosen, args)
    finish = prepare(args, inputs, target, params) if prepare is not None else None
    variants = int(getattr(params, "count", 1))
    targets = _variant_paths(target, variants, args.overwrite, inputs)
    volume, data = _read(args.input, series=args.series)
    mask = _read(mask_file, "mask", labels=True)[1] if mask_file else None
    control = _read(control_file, "control", labels=True)[1] if control_file else None
    slices = _slice_selection(args.slices, data)
    printer = ProgressPrinter(quiet=args.quiet)
    common = {"method": args.method, "params": params, "slices": slices, "on_progress": printer}
    if chosen == "edit":
        result = api.edit(data, mask, **common)
    elif chosen == "inpaint":
        result = api.inpaint(data, mask, control=control, **common)
    else:
        result = api.generate(data, control=control, **common)
    printer.close()
    result.provenance["source"]["file"] = str(args.input)
    outputs = result.data if (chosen == "generate" or variants > 1) else result.data[None]
    voxel_size = result.output_voxel_size(volume.voxel_size)
    for variant, (path, array) in enumerate(zip(targets, outputs, strict=True)):
        provenance = dict(result.provenance, variant=variant)
        write_output(path, array, provenance, voxel_size=voxel_size, unit=volume.unit)
    if finish is not None:
        finish(result, voxel_size, volume.unit)
    return 0
