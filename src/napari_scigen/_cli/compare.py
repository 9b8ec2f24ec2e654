"""``compare`` subcommand: run several engines on slices of a volume and score them.

The table of Sordo et al. (SSIM, LPIPS, FID, KID, CLIPScore as mean ± std; FID over the
set) plus porosity, S2 and surface errors, a figure grid and Markdown/CSV/JSON with
provenance (:mod:`napari_scigen.workflows.compare`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import ProgressPrinter, add_series_argument


def register(subparsers) -> None:
    """Add the ``compare`` subcommand."""
    from ..core.params import add_cli_arguments
    from ..workflows.settings import CompareParams

    parser = subparsers.add_parser(
        "compare",
        help="compare generative engines on slices of a volume (the paper's table and figure)",
        description="Run the chosen engines on N slices of the volume (inpaint/edit engines on "
        "a mask, generate engines from each slice, interpolate engines rebuilding the slices, "
        "sample engines drawing N samples) and score their outputs against the real slices: "
        "SSIM, LPIPS (GMSD offline), FID and KID over the set, CLIPScore, porosity, S2 and "
        "surface errors. Writes compare.md, compare.csv, compare.json and compare.png into the "
        "output folder. Engines or metrics whose weights are missing are listed as skipped. "
        "Engines are 'task/name' (see 'napari-scigen engines'); bare names work when unique.",
    )
    parser.add_argument("input", help="3D TIFF stack or folder of slices")
    parser.add_argument("-o", "--output", required=True, help="output folder (created)")
    add_cli_arguments(parser.add_argument_group("compare options"), CompareParams)
    (n_slices,) = [a for a in parser._actions if "--n-slices" in a.option_strings]
    parser.add_argument(  # the short spelling, same destination
        "-n",
        dest=n_slices.dest,
        type=n_slices.type,
        default=argparse.SUPPRESS,
        metavar=n_slices.metavar,
        help="short for --n-slices",
    )
    add_series_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace existing report files")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run_compare_command)


def compare_settings_from_args(args: argparse.Namespace):
    """The :class:`~napari_scigen.workflows.settings.CompareParams` the typed flags give.

    Raises
    ------
    CliError
        A bad value, named by its flag (e.g. ``--params is not valid JSON``).
    """
    from ..workflows.settings import CompareParams
    from .common import settings_from_args

    return settings_from_args(CompareParams, args)


def run_compare_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen compare``."""
    import numpy as np

    from ..cli import CliError
    from ..core.indices import parse_slice_selection
    from ..core.io import read_volume
    from ..core.progress import drain
    from ..workflows.compare import run_compare
    from ..workflows.compare_report import (
        REPORT_FILES,
        compare_table_markdown,
        write_compare_report,
    )

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} exists and is not a folder")
    existing = [name for name in REPORT_FILES.values() if (out / name).exists()]
    if existing and not args.overwrite:
        raise CliError(f"{out} already holds {', '.join(existing)}; pass --overwrite")
    settings = compare_settings_from_args(args)
    volume = read_volume(args.input, series=args.series)
    data = np.asarray(volume.data)
    if data.ndim != 3:
        raise CliError(f"{args.input} is {data.ndim}D; compare needs a 3D volume")
    slices = parse_slice_selection(settings.slices, data.shape[0]) if settings.slices else None
    mask = np.asarray(read_volume(settings.mask).data) if settings.mask else None
    printer = ProgressPrinter(quiet=args.quiet)
    job = run_compare(
        data,
        engines=settings.engine_keys(),
        n_slices=settings.n_slices,
        slices=slices,
        mask=mask,
        mask_size=settings.mask_size,
        prompt=settings.prompt,
        edit_prompt=settings.edit_prompt,
        metrics=settings.metrics,
        engine_params=settings.engine_params(),
        train_params=settings.training_params(),
        train_steps=settings.train_steps,
        work_dir=settings.work_dir,
        device=settings.device,
        allow_downloads=settings.allow_downloads,
        seed=settings.seed,
    )
    result = drain(job, on_progress=printer)
    printer.close()
    result.provenance["source"]["file"] = str(args.input)
    paths = write_compare_report(result, out)
    print(compare_table_markdown(result))
    extra = result.provenance["extra"]
    for engine, why in extra["skipped_engines"].items():
        print(f"skipped engine {engine}: {why}", file=sys.stderr)
    for metric, why in extra["skipped_metrics"].items():
        print(f"skipped metric {metric}: {why}", file=sys.stderr)
    for path in paths.values():
        print(f"wrote {path}")
    return 0
