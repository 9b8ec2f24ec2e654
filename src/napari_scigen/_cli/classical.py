"""``inpaint`` and ``interpolate`` subcommands (classical engines, StyleGAN via --method)."""

from __future__ import annotations

import argparse

from .common import ProgressPrinter, add_output_arguments, output_path, write_output


def register(subparsers) -> None:
    """Add the ``inpaint`` and ``interpolate`` subcommands."""
    inpaint = subparsers.add_parser(
        "inpaint",
        help="fill masked pixels (biharmonic inpainting)",
        description="Fill the masked pixels of a slice or volume with biharmonic inpainting. "
        "Pixels outside the mask are copied bit for bit.",
    )
    inpaint.add_argument("input", help="TIFF stack, ImageJ hyperstack or folder of TIFF slices")
    inpaint.add_argument("--mask", required=True, help="mask TIFF (non-zero = inpaint), same shape")
    inpaint.add_argument(
        "--tile-size", type=int, default=256, help="largest box solved at once (px)"
    )
    inpaint.add_argument(
        "--context", type=int, default=16, help="known-pixel margin around masked regions"
    )
    add_output_arguments(inpaint)
    inpaint.set_defaults(func=run_inpaint_command)

    interpolate = subparsers.add_parser(
        "interpolate",
        help="synthesize missing slices or upsample z",
        description="Rebuild missing slices of a volume (--missing) or upsample z by an integer "
        "factor (--factor). Kept slices are copied bit for bit.",
    )
    interpolate.add_argument("input", help="3D TIFF stack or folder of slices")
    group = interpolate.add_mutually_exclusive_group(required=True)
    group.add_argument("--missing", help="slice indices to synthesize, e.g. 10,11,12 or 10-12")
    group.add_argument("--factor", type=int, help="z upsampling factor (>= 2)")
    interpolate.add_argument("--method", choices=("linear", "flow", "stylegan"), default="linear")
    interpolate.add_argument(
        "--checkpoint", help="StyleGAN checkpoint (default: the embedded generator)"
    )
    add_output_arguments(interpolate)
    interpolate.set_defaults(func=run_interpolate_command)


def run_inpaint_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen inpaint``."""
    from .. import api
    from ..core.io import read_volume

    target = output_path(args.output, overwrite=args.overwrite)
    volume = read_volume(args.input)
    mask = read_volume(args.mask)
    printer = ProgressPrinter(quiet=args.quiet)
    result = api.inpaint(
        volume.data, mask.data, tile_size=args.tile_size, context=args.context, on_progress=printer
    )
    printer.close()
    result.provenance["source"]["file"] = str(args.input)
    write_output(
        target, result.data, result.provenance, voxel_size=volume.voxel_size, unit=volume.unit
    )
    return 0


def run_interpolate_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen interpolate``."""
    from .. import api
    from ..cli import CliError
    from ..core.indices import parse_indices
    from ..core.io import read_volume

    target = output_path(args.output, overwrite=args.overwrite)
    volume = read_volume(args.input)
    if volume.data.ndim != 3:
        raise CliError(f"{args.input} is {volume.data.ndim}D; interpolation needs a 3D volume")
    try:
        missing = parse_indices(args.missing, volume.data.shape[0]) if args.missing else None
    except ValueError as error:
        raise CliError(str(error)) from None
    options = {}
    if args.method == "stylegan" and args.checkpoint:
        options["generator"] = args.checkpoint
    printer = ProgressPrinter(quiet=args.quiet)
    result = api.interpolate_slices(
        volume.data,
        missing=missing,
        factor=args.factor,
        method=args.method,
        on_progress=printer,
        **options,
    )
    printer.close()
    voxel_size = list(volume.voxel_size)
    if args.factor:
        voxel_size[0] = voxel_size[0] / args.factor
    result.provenance["source"]["file"] = str(args.input)
    write_output(
        target, result.data, result.provenance, voxel_size=tuple(voxel_size), unit=volume.unit
    )
    return 0
