"""``metrics``, ``weights`` and ``validate`` subcommands (Qt-free metrics package)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``metrics``, ``weights`` and ``validate`` subcommands."""
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
    metrics.add_argument(
        "--metrics",
        default="ssim,psnr",
        help="comma-separated: ssim, psnr, lpips, gmsd, morphology, fid, kid, prdc, clipscore, "
        "or 'all' (default: ssim,psnr)",
    )
    range_group = metrics.add_mutually_exclusive_group()
    range_group.add_argument(
        "--data-range", type=float, help="SSIM/PSNR data range (default: dtype span)"
    )
    range_group.add_argument(
        "--window",
        help="LOW,HIGH intensity window: both images are clipped to it and the data range is "
        "HIGH-LOW (recommended for 16-bit data)",
    )
    metrics.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    metrics.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex")
    metrics.add_argument(
        "--voxel-size",
        type=float,
        help="voxel size for morphology (default: the reference file's x voxel size)",
    )
    metrics.add_argument("--prompt", help="text for clipscore")
    metrics.add_argument("--clip-model", help="CLIP model id or folder for clipscore")
    metrics.add_argument("--json", dest="json_path", help="write the table and provenance as JSON")
    metrics.add_argument("--csv", dest="csv_path", help="write the table as CSV")
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
    weights.set_defaults(func=run_weights_command)

    validate = subparsers.add_parser(
        "validate",
        help="held-out slice benchmark of slice interpolation methods",
        description="Hold out every N-th interior slice, rebuild it with each method from the "
        "kept slices, and score the rebuilt slices against the real ones (PSNR, SSIM, LPIPS "
        "when available, GMSD, porosity and pore surface errors). Writes validation.csv, "
        "validation.md, validation.png and validation.json into the output folder.",
    )
    validate.add_argument("input", help="3D TIFF stack or folder of slices")
    validate.add_argument(
        "--drop-every", type=int, default=4, help="hold out one slice in N (default 4)"
    )
    validate.add_argument(
        "--offset", type=int, default=1, help="first held-out slice index (default 1)"
    )
    validate.add_argument(
        "--methods",
        default="linear,flow",
        help="comma-separated: linear, flow, stylegan (default: linear,flow)",
    )
    validate.add_argument(
        "--metrics",
        default="psnr,ssim,lpips,gmsd,porosity,surface",
        help="comma-separated: psnr, ssim, lpips, gmsd, porosity, surface (GMSD needs no "
        "weights: the offline substitute when LPIPS' backbone is missing)",
    )
    validate.add_argument("--checkpoint", help="StyleGAN generator (default: the embedded one)")
    validate.add_argument(
        "--stylegan-steps",
        type=int,
        default=None,
        help="StyleGAN projection steps per tile (default: the engine's 200)",
    )
    validate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    validate.add_argument("-o", "--output", required=True, help="output folder (created)")
    validate.add_argument("--overwrite", action="store_true", help="replace existing report files")
    validate.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    validate.set_defaults(func=run_validate_command)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def _read(path: str, what: str):
    import numpy as np

    from ..core.io import read_volume

    volume = read_volume(path)
    if volume.channel_axis is not None:
        from ..cli import CliError

        raise CliError(f"{what} {path} has a channel axis; metrics need single-channel data")
    return volume, np.asarray(volume.data)


def _parse_window(text: str) -> tuple[float, float]:
    from ..cli import CliError

    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise CliError(f"--window must be LOW,HIGH (two numbers), got {text!r}") from None
    if high <= low:
        raise CliError(f"--window needs LOW < HIGH, got {text!r}")
    return low, high


def _format_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def _summary(row: dict) -> str:
    details = row.get("details") or {}
    parts = []
    if "reference" in details and "relative_error" in details:
        parts.append(
            f"reference {_format_value(details['reference'])}, "
            f"rel. error {_format_value(details['relative_error'])}"
        )
    if "std" in details:
        parts.append(f"std {_format_value(details['std'])}")
    if "net" in details and row["metric"] == "lpips":
        parts.append(f"net {details['net']}")
    if "model" in details:
        parts.append(f"model {details['model']}")
    if "data_range" in details:
        parts.append(f"data range {_format_value(details['data_range'])}")
    if row.get("note"):
        parts.append(row["note"])
    return "; ".join(parts)


def format_table(rows: list[dict]) -> str:
    """A plain-text table of evaluation rows."""
    header = ("metric", "region", "value", "details")
    body = [
        (row["metric"], row["region"], _format_value(row["value"]), _summary(row)) for row in rows
    ]
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)
    ]
    widths[-1] = 0
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * max(w, len(h)) for h, w in zip(header, widths, strict=True)))
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body
    )
    return "\n".join(lines)


def _write_csv(rows: list[dict], path: Path) -> None:
    import csv

    from ..metrics.evaluate import table_rows_for_json

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["metric", "region", "value", "note", "details"])
        for row, clean in zip(rows, table_rows_for_json(rows), strict=True):
            writer.writerow(
                [
                    row["metric"],
                    row["region"],
                    row["value"],
                    row.get("note", ""),
                    json.dumps(clean["details"], sort_keys=True),
                ]
            )


def _check_writable(path: str | None) -> Path | None:
    from ..cli import CliError

    if path is None:
        return None
    target = Path(path)
    if not target.parent.exists():
        raise CliError(f"output folder {target.parent} does not exist")
    return target


# ---------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------


def run_metrics_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen metrics``."""
    from ..core.progress import drain
    from ..metrics.evaluate import parse_metrics, run_evaluate, table_rows_for_json
    from .common import ProgressPrinter

    json_path = _check_writable(args.json_path)
    csv_path = _check_writable(args.csv_path)
    wanted = parse_metrics(args.metrics)
    reference, ref_data = _read(args.reference, "reference")
    _, gen_data = _read(args.generated, "generated")
    mask = _read(args.mask, "mask")[1] if args.mask else None
    data_range = _parse_window(args.window) if args.window else args.data_range
    voxel_size = args.voxel_size if args.voxel_size else float(reference.voxel_size[-1])
    printer = ProgressPrinter(quiet=args.quiet)
    result = drain(
        run_evaluate(
            ref_data,
            gen_data,
            metrics=wanted,
            mask=mask,
            data_range=data_range,
            device=args.device,
            lpips_net=args.lpips_net,
            voxel_size=voxel_size,
            prompt=args.prompt,
            clip_model=args.clip_model,
        ),
        on_progress=printer,
    )
    printer.close()
    rows = result.provenance["table"]
    print(format_table(rows))
    if json_path is not None:
        record = dict(result.provenance)
        record["table"] = table_rows_for_json(rows)
        record["source"]["reference"]["file"] = str(args.reference)
        record["source"]["generated"]["file"] = str(args.generated)
        if args.mask:
            record["source"]["mask_file"] = str(args.mask)
        json_path.write_text(
            json.dumps(table_rows_for_json([record])[0], indent=2, allow_nan=False),
            encoding="utf-8",
        )
        print(f"wrote {json_path}")
    if csv_path is not None:
        _write_csv(rows, csv_path)
        print(f"wrote {csv_path}")
    return 0


def run_weights_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen weights``."""
    from ..metrics.weights import DEFAULT_CLIP_MODEL, weights_report

    report = weights_report(args.clip_model or DEFAULT_CLIP_MODEL)
    for entry in report:
        print(f"[{entry['status']:>8}] {entry['key']:<20} {entry['used_by']}")
        if entry["present"]:
            print(f"           {entry['location']}")
        else:
            print(f"           file(s): {', '.join(entry['files'])}")
            print(f"           looked in: {', '.join(entry['looked_in'])}")
            for line in entry["how_to_get"].splitlines():
                print(f"           {line}")
    missing = sum(not entry["present"] for entry in report)
    print(f"{len(report) - missing} present, {missing} missing. Nothing was downloaded.")
    target = _check_writable(args.json_path)
    if target is not None:
        target.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"wrote {target}")
    return 0


def run_validate_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen validate``."""
    from ..cli import CliError
    from ..core.progress import drain
    from ..metrics.validation import run_validation, write_validation_report
    from .common import ProgressPrinter

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} exists and is not a folder")
    existing = [p.name for p in out.glob("validation.*")] if out.is_dir() else []
    if existing and not args.overwrite:
        raise CliError(f"{out} already holds {', '.join(sorted(existing))}; pass --overwrite")
    _, data = _read(args.input, "input")
    if data.ndim != 3:
        raise CliError(f"{args.input} is {data.ndim}D; validation needs a 3D volume")
    stylegan_options = {}
    if args.checkpoint:
        stylegan_options["generator"] = args.checkpoint
    if args.stylegan_steps is not None:
        if args.stylegan_steps < 1:
            raise CliError(f"--stylegan-steps must be >= 1, got {args.stylegan_steps}")
        stylegan_options["projection_steps"] = args.stylegan_steps
    options = {"stylegan": stylegan_options} if stylegan_options else {}
    printer = ProgressPrinter(quiet=args.quiet)
    result = drain(
        run_validation(
            data,
            every=args.drop_every,
            offset=args.offset,
            methods=args.methods,
            metrics=args.metrics,
            device=args.device,
            method_options=options,
        ),
        on_progress=printer,
    )
    printer.close()
    result.provenance["source"]["file"] = str(args.input)
    out.mkdir(parents=True, exist_ok=True)
    paths = write_validation_report(result, out)
    for row in result.provenance["table"]:
        print(f"{row['method']:<9} {row['metric']:<9} {_format_value(row['value'])}")
    extra = result.provenance.get("extra", {})
    for metric, why in extra.get("skipped_metrics", {}).items():
        print(f"skipped {metric}: {why}", file=sys.stderr)
    for method, why in extra.get("failed_methods", {}).items():
        print(f"method {method} not run: {why}", file=sys.stderr)
    for path in paths.values():
        print(f"wrote {path}")
    return 0
