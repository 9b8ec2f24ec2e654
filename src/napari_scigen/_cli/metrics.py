"""``metrics`` and ``weights`` subcommands (Qt-free metrics package, via :mod:`napari_scigen.api`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``metrics`` and ``weights`` subcommands."""
    from ..core.params import add_cli_arguments
    from ..metrics.settings import MetricsParams
    from .common import add_series_argument

    metrics = subparsers.add_parser(
        "metrics",
        help="compare a generated image with its reference (SSIM, PSNR, LPIPS, FID, morphology...)",
        description="Compare a generated slice/volume with its reference and print a table. "
        "Pixel metrics need the same shape and dtype; with --mask they are reported inside and "
        "outside the mask. Metrics whose weights are missing are listed with a note "
        "(see `napari-scigen weights`).",
    )
    metrics.add_argument("reference", help="reference TIFF (or folder of TIFF slices)")
    metrics.add_argument("generated", help="generated TIFF (or folder of TIFF slices)")
    metrics.add_argument("--mask", help="mask TIFF (non-zero = region of interest)")
    add_series_argument(metrics)
    add_cli_arguments(metrics.add_argument_group("metrics options"), MetricsParams)
    metrics.add_argument("--json", dest="json_path", help="write the table and provenance as JSON")
    metrics.add_argument("--csv", dest="csv_path", help="write the table as CSV")
    metrics.add_argument(
        "--overwrite", action="store_true", help="replace existing --json/--csv files"
    )
    metrics.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    metrics.set_defaults(func=run_metrics_command)

    weights = subparsers.add_parser(
        "weights",
        help="list the weight files metrics and engines use, and where to put missing ones",
        description="List every weight file napari-scigen knows (LPIPS backbones, FID "
        "Inception, CLIP, embedded StyleGAN), whether it is present, and how to install it "
        "on an offline machine. Nothing is downloaded.",
    )
    weights.add_argument("--clip-model", help="CLIP model id or folder to check")
    weights.add_argument("--json", dest="json_path", help="also write the list as JSON")
    weights.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    weights.set_defaults(func=run_weights_command)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def _read(path: str, what: str, *, labels: bool = False, series: int | None = None):
    from .common import read_input, require_volume

    volume, data = read_input(path, what=what, labels=labels, series=series)
    require_volume(path, volume, purpose="metrics", allow_2d=True)
    return volume, data


def _check_writable(
    path: str | None, suffix: str, flag: str, overwrite: bool, inputs=()
) -> Path | None:
    """An optional report file: checked like every output; replaced only with --overwrite."""
    from .common import output_path

    if path is None:
        return None
    return output_path(path, overwrite=overwrite, inputs=inputs, suffixes=(suffix,), flag=flag)


# ---------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------


def run_metrics_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen metrics``."""
    from .. import api
    from ..cli import CliError
    from ..core.indices import parse_slice_selection
    from ..core.io.outputs import atomic_path
    from ..core.params import params_from_cli
    from ..metrics.evaluate import parse_metrics
    from ..metrics.report import format_table, write_rows_csv, write_rows_json
    from ..metrics.settings import MetricsParams
    from .common import ProgressPrinter

    inputs = [args.reference, args.generated, args.mask]
    json_path = _check_writable(args.json_path, ".json", "--json", args.overwrite, inputs)
    csv_path = _check_writable(args.csv_path, ".csv", "--csv", args.overwrite, inputs)
    if json_path is not None and csv_path is not None and json_path == csv_path:
        raise CliError("--json and --csv name the same file")
    settings = params_from_cli(MetricsParams, args)
    wanted = parse_metrics(settings.metrics)
    reference, ref_data = _read(args.reference, "reference", series=args.series)
    _, gen_data = _read(args.generated, "generated", series=args.series)
    mask = _read(args.mask, "mask", labels=True)[1] if args.mask else None
    slices = None
    if settings.slices is not None:
        if ref_data.ndim != 3:
            raise CliError(f"--slices needs stacks, but {args.reference} is a single 2D slice")
        depth = min(ref_data.shape[0], gen_data.shape[0] if gen_data.ndim == 3 else 1)
        slices = parse_slice_selection(settings.slices, depth)
    voxel_size = settings.voxel_size or float(reference.voxel_size[-1])
    printer = ProgressPrinter(quiet=args.quiet)
    result = api.evaluate(
        ref_data,
        gen_data,
        metrics=wanted,
        mask=mask,
        data_range=settings.scoring_range(),
        device=settings.device,
        lpips_net=settings.lpips_net,
        voxel_size=voxel_size,
        prompt=settings.prompt,
        clip_model=settings.clip_model,
        slices=slices,
        on_progress=printer,
    )
    printer.close()
    rows = result.provenance["table"]
    print(format_table(rows))
    print(f"scale of SSIM/PSNR/GMSD: {result.provenance['extra']['scoring_window']['description']}")
    failed = {row["metric"]: row["note"] for row in rows if row["note"].startswith("failed: ")}
    for metric, note in failed.items():
        print(f"napari-scigen metrics: {metric} {note}", file=sys.stderr)
    source = result.provenance["source"]
    source["reference"]["file"] = str(args.reference)
    source["generated"]["file"] = str(args.generated)
    if args.mask:
        source["mask_file"] = str(args.mask)
    if json_path is not None:
        with atomic_path(json_path) as temporary:  # a full disk leaves no empty file
            write_rows_json(rows, temporary, provenance=result.provenance)
        print(f"wrote {json_path}")
    if csv_path is not None:
        with atomic_path(csv_path) as temporary:
            write_rows_csv(rows, temporary)
        print(f"wrote {csv_path}")
    if failed and all(row["note"].startswith(("failed: ", "skipped: ")) for row in rows):
        return 2  # nothing could be measured
    return 0


def run_weights_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen weights``."""
    from ..metrics.weights import DEFAULT_CLIP_MODEL, weights_report

    target = _check_writable(args.json_path, ".json", "--json", args.overwrite)
    report = weights_report(args.clip_model or DEFAULT_CLIP_MODEL)
    for entry in report:
        print(f"[{entry['status']:>8}] {entry['key']:<20} {entry['used_by']}")
        if entry["present"]:
            print(f"           {entry['location']}")
            continue
        if entry["location"]:
            print(f"           {entry['location']}: {entry['problem']}")
            print("           replace it:")
        else:
            print(f"           file(s): {', '.join(entry['files'])}")
            print(f"           looked in: {', '.join(entry['looked_in'])}")
        for line in entry["how_to_get"].splitlines():
            print(f"           {line}")
    damaged = sum(entry["status"] == "damaged" for entry in report)
    missing = sum(not entry["present"] for entry in report) - damaged
    print(
        f"{len(report) - missing - damaged} present, {missing} missing, {damaged} damaged. "
        "Nothing was downloaded."
    )
    if target is not None:
        from ..core.io.outputs import atomic_path

        with atomic_path(target) as temporary:
            temporary.write_text(json.dumps(report, indent=2, allow_nan=False), encoding="utf-8")
        print(f"wrote {target}")
    return 0
