"""``convert``: TIFF stacks and folders to OME-Zarr and back, keeping calibration and provenance.

The input is read lazily and written a slab at a time, so volumes larger than memory
convert with bounded memory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_series_argument, output_path


def register(subparsers) -> None:
    """Add the ``convert`` subcommand."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a volume between TIFF and OME-Zarr",
        description="Convert a TIFF stack, ImageJ hyperstack or folder of TIFF slices to an "
        "OME-Zarr store (.ome.zarr: NGFF 0.5 on zarr v3, chunks of a few slices for slice "
        "access, optional resolution levels for display), or an OME-Zarr store back to TIFF. "
        "Voxel size, units and provenance are kept; the volume is read lazily and written a "
        "slab at a time.",
    )
    parser.add_argument("input", help="TIFF file, folder of TIFF slices, or .zarr store")
    parser.add_argument(
        "output_positional",
        nargs="?",
        metavar="output",
        help="output .ome.zarr store or .tif file (the earlier spelling of -o)",
    )
    parser.add_argument("-o", "--output", help="output .ome.zarr store or .tif file")
    parser.add_argument(
        "--chunk-slices",
        type=int,
        help="z-slices per stored chunk (default: about 4 MiB per chunk, at most 16 slices)",
    )
    parser.add_argument(
        "--levels",
        default="auto",
        help="resolution levels: 'auto' (halve Y and X until the longer side is <= 1024 px) "
        "or a number (1 = full resolution only); default auto",
    )
    parser.add_argument(
        "--ngff-version",
        choices=("0.5", "0.4"),
        default="0.5",
        help="OME-NGFF version: 0.5 (zarr v3, default) or 0.4 (zarr v2, for older readers)",
    )
    parser.add_argument("--labels", action="store_true", help="the input is a mask/label volume")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_series_argument(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    parser.set_defaults(func=run_convert_command)


def _levels(text: str) -> int | None:
    from ..cli import CliError

    if str(text).strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise CliError(f"--levels must be 'auto' or a whole number, got {text!r}") from None


def zarr_output_path(path: str, source: str, *, overwrite: bool) -> Path:
    """Check an output store before any work (``core.io.outputs.check_store_output``)."""
    from ..cli import CliError
    from ..core.io.outputs import check_store_output
    from ..core.validation import InvalidInputError

    try:
        return check_store_output(path, [source], overwrite=overwrite)
    except InvalidInputError as error:
        raise CliError(str(error)) from None


def run_convert_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen convert``."""
    from ..cli import CliError
    from ..core.io import is_tiff_path, is_zarr_path, read_volume, write_volume, write_zarr
    from ..core.io.zarr_read import refuse_missing_chunks

    if args.output and args.output_positional:
        raise CliError("give the output once: -o OUTPUT (or the positional OUTPUT), not both")
    args.output = args.output or args.output_positional
    if not args.output:
        raise CliError("-o OUTPUT is required: the .ome.zarr store or .tif file to write")
    if not (is_zarr_path(args.output) or is_tiff_path(args.output)):
        raise CliError(f"{args.output}: the output must end in .ome.zarr, .zarr, .tif or .tiff")
    if is_zarr_path(args.output):
        target = zarr_output_path(args.output, args.input, overwrite=args.overwrite)
    else:
        target = output_path(args.output, overwrite=args.overwrite, inputs=[args.input])
    volume = read_volume(args.input, lazy=True, labels=args.labels, series=args.series)
    refuse_missing_chunks(volume)
    if volume.channel_axis is not None:
        raise CliError(f"{args.input} has {volume.shape[0]} channels; convert one channel per file")
    kind = "labels" if args.labels else volume.kind
    common = {
        "voxel_size": volume.voxel_size,
        "unit": volume.unit,
        "provenance": volume.provenance,
        "kind": kind,
    }
    if is_zarr_path(target):
        write_zarr(
            target,
            volume.data,
            chunk_slices=args.chunk_slices,
            levels=_levels(args.levels),
            ngff_version=args.ngff_version,
            **common,
        )
    else:
        write_volume(target, volume.data, **common)
    size = " x ".join(f"{v:g}" for v in volume.voxel_size)
    if not args.quiet:
        print(f"wrote {target} ({volume.shape}, {volume.dtype}, voxel {size} {volume.unit})")
    return 0
