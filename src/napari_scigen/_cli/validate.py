"""``validate`` subcommand: the held-out slice benchmark of interpolation methods."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (
    ProgressPrinter,
    add_engine_arguments,
    add_series_argument,
    check_writable_folder,
    read_input,
    require_volume,
)


def register(subparsers) -> None:
    """Add the ``validate`` subcommand."""
    from ..core.params import add_cli_arguments
    from ..workflows.settings import ValidateParams
    from ..workflows.validate import validation_methods

    validate = subparsers.add_parser(
        "validate",
        help="held-out slice benchmark of slice interpolation methods",
        description="Hold out real slices (--drop-every G: one in G; --keep-every G: keep only "
        "every G-th and rebuild the rest), rebuild them with each method from the kept slices, "
        "and score the rebuilt slices against the real ones (PSNR, SSIM, LPIPS when available, "
        "GMSD, porosity and pore surface errors), next to the noise ceiling of the scan. Writes "
        "validation.csv, validation_slices.csv, validation.md, validation.png and "
        "validation.json into the output folder. Engine options (e.g. --flow-num-iter) apply "
        "to every chosen method that declares them. Methods: "
        + ", ".join(validation_methods())
        + ".",
    )
    validate.add_argument("input", help="3D TIFF stack or folder of slices")
    add_cli_arguments(validate.add_argument_group("validate options"), ValidateParams)
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


def validate_settings_from_args(args: argparse.Namespace):
    """The :class:`~napari_scigen.workflows.settings.ValidateParams` the typed flags give.

    Raises
    ------
    CliError
        A bad value, named by its flag (e.g. ``--drop-every must be an integer >= 2``).
    """
    from ..workflows.settings import ValidateParams
    from .common import settings_from_args

    return settings_from_args(ValidateParams, args, ignore_foreign=True)


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
    from ..core.params import without_params
    from ..core.progress import drain
    from ..metrics.report import format_value
    from ..workflows.settings import ValidateParams
    from ..workflows.validate import run_validation
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
    settings = validate_settings_from_args(args)
    methods = settings.method_names()
    method_params = method_params_from_args(methods, without_params(args, ValidateParams))
    volume, data = read_input(args.input, series=args.series)
    require_volume(args.input, volume, purpose="validation", min_slices=3)
    printer = ProgressPrinter(quiet=args.quiet)
    job = run_validation(
        data,
        drop_every=settings.drop_every,
        keep_every=settings.keep_every,
        offset=settings.offset,
        methods=methods,
        metrics=settings.metrics,
        device=settings.device,
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
