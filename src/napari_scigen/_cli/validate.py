"""``validate`` subcommand: the held-out slice benchmark of interpolation methods."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (
    ProgressPrinter,
    add_device_argument,
    add_engine_arguments,
    add_series_argument,
    check_writable_folder,
    read_input,
    require_volume,
)


def register(subparsers) -> None:
    """Add the ``validate`` subcommand."""
    from ..workflows.validate import DEFAULT_METHODS, VALIDATION_METRICS, validation_methods

    validate = subparsers.add_parser(
        "validate",
        help="held-out slice benchmark of slice interpolation methods",
        description="Hold out real slices (--drop-every G: one in G; --keep-every G: keep only "
        "every G-th and rebuild the rest), rebuild them with each method from the kept slices, "
        "and score the rebuilt slices against the real ones (PSNR, SSIM, LPIPS when available, "
        "GMSD, porosity and pore surface errors), next to the noise ceiling of the scan. Writes "
        "validation.csv, validation_slices.csv, validation.md, validation.png and "
        "validation.json into the output folder. Engine options (e.g. --flow-num-iter) apply "
        "to every chosen method that declares them.",
    )
    validate.add_argument("input", help="3D TIFF stack or folder of slices")
    geometry = validate.add_mutually_exclusive_group()
    geometry.add_argument(
        "--drop-every", type=int, help="hold out one interior slice in G (default 4)"
    )
    geometry.add_argument(
        "--keep-every", type=int, help="keep slices 0, G, 2G, ... and rebuild the rest"
    )
    validate.add_argument(
        "--offset",
        type=int,
        help="first held-out slice (--drop-every, default 1) or first kept slice "
        "(--keep-every, default 0)",
    )
    validate.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help="comma-separated interpolation methods, any of: "
        + ", ".join(validation_methods())
        + " (default: %(default)s)",
    )
    validate.add_argument(
        "--metrics",
        default=",".join(VALIDATION_METRICS),
        help="comma-separated: "
        + ", ".join(VALIDATION_METRICS)
        + " (GMSD needs no weights: the offline substitute when LPIPS' backbone is missing)",
    )
    add_device_argument(validate, "torch device of LPIPS and every method with a device")
    validate.add_argument("-o", "--output", required=True, help="output folder (created)")
    validate.add_argument("--overwrite", action="store_true", help="replace existing report files")
    validate.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_series_argument(validate)
    add_engine_arguments(validate, "interpolate", exclude=("device",), method_flag=False)
    validate.set_defaults(func=run_validate_command)


def method_params_from_args(
    methods, args: argparse.Namespace, defaults: dict | None = None
) -> dict[str, object]:
    """The params of each chosen method: ``defaults`` overridden by the typed engine flags.

    Every typed flag goes to each chosen method that declares it; invalid values are
    reported with the flag's name before any work starts.

    Raises
    ------
    InvalidInputError
        When a typed flag belongs to none of the chosen methods, or a value is invalid.
    """
    from ..core.params import cli_values, fields_of, params_from_cli
    from ..core.validation import InvalidInputError
    from ..engines.registry import get_engine

    typed = set(cli_values(args))
    params: dict[str, object] = {}
    used: set[str] = set()
    for method in methods:
        cls = get_engine("interpolate", method).params_class
        used |= typed & {spec.name for spec in fields_of(cls)}
        params[method] = params_from_cli(
            cls, args, base=(defaults or {}).get(method), ignore_foreign=True
        )
    unused = sorted(typed - used)
    if unused:
        flags = ", ".join("--" + name.replace("_", "-") for name in unused)
        raise InvalidInputError(f"{flags}: no chosen method ({', '.join(methods)}) takes it")
    return params


def _check_report_folder(out: Path) -> None:
    """Refuse an unwritable ``-o`` before any work: the folder, or where it will be created."""
    folder = out.expanduser().absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    check_writable_folder(folder)


def run_validate_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen validate``."""
    from ..cli import CliError
    from ..core.io.outputs import check_output_location
    from ..core.progress import drain
    from ..metrics.report import format_value
    from ..workflows.validate import parse_names, run_validation, validation_methods
    from ..workflows.validation_report import write_validation_report

    if not args.output.strip():
        raise CliError("-o is empty: give an output folder, e.g. -o validation")
    out = Path(args.output)
    check_output_location(out, [args.input])  # never the input, around it or inside it
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} exists and is not a folder")
    existing = [p.name for p in out.glob("validation*")] if out.is_dir() else []
    if existing and not args.overwrite:
        raise CliError(f"{out} already holds {', '.join(sorted(existing))}; pass --overwrite")
    _check_report_folder(out)
    methods = parse_names(args.methods, validation_methods(), "methods")
    method_params = method_params_from_args(methods, args)
    for flag, value in (("--drop-every", args.drop_every), ("--keep-every", args.keep_every)):
        if value is not None and value < 2:
            raise CliError(f"{flag} must be an integer >= 2, got {value}")
    if args.offset is not None and args.offset < (0 if args.keep_every else 1):
        raise CliError(f"--offset must be >= {0 if args.keep_every else 1} here, got {args.offset}")
    volume, data = read_input(args.input, series=args.series)
    require_volume(args.input, volume, purpose="validation", min_slices=3)
    printer = ProgressPrinter(quiet=args.quiet)
    job = run_validation(
        data,
        drop_every=args.drop_every,
        keep_every=args.keep_every,
        offset=args.offset,
        methods=methods,
        metrics=args.metrics,
        device=args.device,
        method_params=method_params,
    )
    result = drain(job, on_progress=printer)
    printer.close()
    result.provenance["source"]["file"] = str(args.input)
    out.mkdir(parents=True, exist_ok=True)
    paths = write_validation_report(result, out)
    for row in result.provenance["table"]:
        print(f"{row['method']:<10} {row['metric']:<9} {format_value(row['value'])}")
    extra = result.provenance.get("extra", {})
    ceiling = extra.get("noise_ceiling")
    if ceiling:
        print(
            f"noise ceiling: sigma {format_value(ceiling['sigma'])}, "
            f"PSNR <= {format_value(ceiling['psnr_db'])} dB"
        )
    for metric, why in extra.get("skipped_metrics", {}).items():
        print(f"skipped {metric}: {why}", file=sys.stderr)
    for method, why in extra.get("failed_methods", {}).items():
        print(f"method {method} not run: {why}", file=sys.stderr)
    for path in paths.values():
        print(f"wrote {path}")
    return 0
