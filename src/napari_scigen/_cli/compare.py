"""``compare`` subcommand: run several engines on slices of a volume and score them.

The table of Sordo et al. (SSIM, LPIPS, FID, KID, CLIPScore as mean ± std; FID over the
set) plus porosity, S2 and surface errors, a figure grid and Markdown/CSV/JSON with
provenance (:mod:`napari_scigen.workflows.compare`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import ProgressPrinter, add_device_argument, add_series_argument


def register(subparsers) -> None:
    """Add the ``compare`` subcommand."""
    from ..workflows.compare import COMPARE_METRICS, DEFAULT_EDIT_PROMPT

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
    parser.add_argument(
        "--engines", default="all", help="comma-separated engines, or 'all' (default)"
    )
    parser.add_argument("-n", "--n-slices", type=int, default=4, help="slices compared (default 4)")
    parser.add_argument("--slices", help="the slices to compare, e.g. '10,20,30' (overrides -n)")
    parser.add_argument(
        "--mask", help="mask TIFF of the inpaint/edit engines (default: a centred square)"
    )
    parser.add_argument(
        "--mask-size",
        type=float,
        default=0.35,
        help="side of the default square mask, as a fraction of the slice (default 0.35)",
    )
    parser.add_argument("--prompt", help="description of the data (generate engines, CLIPScore)")
    parser.add_argument(
        "--edit-prompt", default=DEFAULT_EDIT_PROMPT, help="what edit engines edit towards"
    )
    parser.add_argument(
        "--metrics",
        default=",".join(COMPARE_METRICS),
        help="comma-separated: " + ", ".join(COMPARE_METRICS) + " (default all)",
    )
    parser.add_argument(
        "--params",
        help="JSON of engine parameters, e.g. "
        '\'{"edit/diffedit": {"steps": 20}, "flow": {"flow_num_iter": 20}}\'',
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        default=0,
        help="first train each sample engine (DCGAN, "
        "StyleGAN) on the volume for this many steps (default 0: DCGAN is skipped, StyleGAN "
        "uses its embedded rock generator)",
    )
    parser.add_argument("--train-params", help="JSON of training parameters per engine name")
    parser.add_argument("--work-dir", help="keep those training runs here (default: temporary)")
    add_device_argument(parser, "torch device of every engine and metric")
    add_series_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of every engine (default 0)")
    parser.add_argument(
        "--allow-downloads",
        action="store_true",
        help="let engines download missing weights (default: offline, missing = skipped)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing report files")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run_compare_command)


def _json_option(text: str | None, flag: str) -> dict:
    from ..cli import CliError

    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise CliError(f"{flag} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise CliError(f"{flag} must be a JSON object of engine name -> parameters")
    return value


def run_compare_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen compare``."""
    import numpy as np

    from ..cli import CliError
    from ..core.indices import parse_slice_selection
    from ..core.io import read_volume
    from ..core.progress import drain
    from ..workflows.compare import resolve_engines, run_compare
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
    engines = resolve_engines(args.engines)
    engine_params = _json_option(args.params, "--params")
    train_params = _json_option(args.train_params, "--train-params")
    volume = read_volume(args.input, series=args.series)
    data = np.asarray(volume.data)
    if data.ndim != 3:
        raise CliError(f"{args.input} is {data.ndim}D; compare needs a 3D volume")
    slices = parse_slice_selection(args.slices, data.shape[0]) if args.slices else None
    mask = np.asarray(read_volume(args.mask).data) if args.mask else None
    printer = ProgressPrinter(quiet=args.quiet)
    job = run_compare(
        data,
        engines=engines,
        n_slices=args.n_slices,
        slices=slices,
        mask=mask,
        mask_size=args.mask_size,
        prompt=args.prompt,
        edit_prompt=args.edit_prompt,
        metrics=args.metrics,
        engine_params=engine_params,
        train_params=train_params,
        train_steps=args.train_steps,
        work_dir=args.work_dir,
        device=args.device,
        allow_downloads=args.allow_downloads,
        seed=args.seed,
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
