"""``interpolate``, ``inpaint`` and ``engines``: commands built from the engine registry.

``--method`` choices and every engine's parameter flags come from
:mod:`napari_scigen.engines.registry` and the engines' params declarations, so a newly
registered engine appears here without touching this module.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    ProgressPrinter,
    add_engine_arguments,
    add_output_arguments,
    add_series_argument,
    check_output_fits,
    output_path,
    read_input,
    require_volume,
    write_output,
)

INPUT_HELP = "TIFF stack, ImageJ hyperstack or folder of TIFF slices"


def register(subparsers) -> None:
    """Add the ``interpolate``, ``inpaint`` and ``engines`` subcommands."""
    interpolate = subparsers.add_parser(
        "interpolate",
        help="synthesize missing slices or upsample z",
        description="Rebuild missing slices of a volume (--missing) or upsample z by a factor "
        "(--factor: a whole number, or a simple fraction such as 2.5; the z voxel size shrinks "
        "by it). Kept slices are copied bit for bit.",
    )
    interpolate.add_argument("input", help="3D " + INPUT_HELP)
    group = interpolate.add_mutually_exclusive_group(required=True)
    group.add_argument("--missing", help="slice indices to synthesize, e.g. 10,11,12 or 10-12")
    group.add_argument(
        "--factor",
        type=_factor_argument,
        help="z upsampling factor: a whole number >= 2 or a simple fraction > 1 (2.5, 1.5)",
    )
    add_engine_arguments(interpolate, "interpolate")
    add_series_argument(interpolate)
    add_output_arguments(interpolate)
    _add_uncertainty_argument(interpolate)
    interpolate.set_defaults(func=run_interpolate_command)

    inpaint = subparsers.add_parser(
        "inpaint",
        help="fill masked pixels",
        description="Fill the masked pixels of a slice or volume. Pixels outside the mask are "
        "copied bit for bit.",
    )
    inpaint.add_argument("input", help=INPUT_HELP)
    inpaint.add_argument("--mask", required=True, help="mask TIFF (non-zero = inpaint), same shape")
    inpaint.add_argument(
        "--slices", help="slices to fill: 'START:STOP' or '3, 5, 10-12' (default all)"
    )
    add_engine_arguments(inpaint, "inpaint")
    add_series_argument(inpaint)
    add_output_arguments(inpaint)
    _add_uncertainty_argument(inpaint)
    inpaint.set_defaults(func=run_inpaint_command)

    listing = subparsers.add_parser(
        "engines",
        help="list the registered engines and whether they can run here",
        description="Every registered engine by task, what it needs, and whether that is "
        "installed on this machine.",
    )
    listing.add_argument("--task", help="only this task")
    listing.add_argument(
        "--markdown",
        action="store_true",
        help="print the engine and parameter tables of docs/engines.md instead",
    )
    listing.set_defaults(func=run_engines_command)


def _add_uncertainty_argument(parser) -> None:
    parser.add_argument(
        "--uncertainty-out",
        metavar="PATH",
        help="also write the engine's per-voxel uncertainty map to this TIFF (engines that "
        "return one, e.g. learned; float32, same grid as the output, with provenance)",
    )


def _uncertainty_target(args, task, inputs, params):
    """The checked ``--uncertainty-out`` path (or None), before any work is done.

    The path gets the same checks as ``-o`` (not an input, ``--overwrite``, a writable
    folder), and the engine must be one that returns an uncertainty map with its
    ``uncertainty`` parameter on, so that nothing is computed for an output that cannot
    be written.
    """
    if getattr(args, "uncertainty_out", None) is None:
        return None
    from ..cli import CliError
    from ..engines.registry import get_engine

    target = output_path(
        args.uncertainty_out, overwrite=args.overwrite, inputs=inputs, flag="--uncertainty-out"
    )
    if target.resolve() == Path(args.output).expanduser().resolve():
        raise CliError("--uncertainty-out must differ from -o")
    if not get_engine(task, args.method).outputs_uncertainty:
        raise CliError(
            f"--uncertainty-out: the {args.method} engine returns no uncertainty map; "
            "use --method learned or drop --uncertainty-out"
        )
    if not params.uncertainty:
        raise CliError("--uncertainty-out needs the uncertainty map: drop --no-uncertainty")
    return target


def _with_file_voxel_size(engine, params, volume):
    """Give an engine that declares ``accepts_voxel_size`` the file's calibrated voxel size."""
    unit = (volume.unit or "").strip().lower()
    calibrated = unit not in ("", "pixel", "pixels", "px") and len(volume.voxel_size) == 3
    if engine.accepts_voxel_size and params.voxel_size is None and calibrated:
        return params.replace(voxel_size=tuple(float(v) for v in volume.voxel_size))
    return params


def _write_outputs(target, uncertainty_target, result, method: str, voxel_size, unit) -> None:
    """Write the result and, with ``--uncertainty-out``, its uncertainty map: both or neither.

    With an uncertainty target the result goes to a hidden temporary file beside ``-o``
    first and is moved into place only once the uncertainty map is written, so a failure
    on the second file (no map, NaN values, a full disk) leaves no new or changed ``-o``.
    """
    import contextlib
    import io
    import os

    from ..cli import CliError

    kwargs = {"voxel_size": voxel_size, "unit": unit}
    if uncertainty_target is None:
        write_output(target, result.data, result.provenance, **kwargs)
        return
    uncertainty = result.images.get("uncertainty")
    if uncertainty is None:
        filled = result.provenance.get("extra", {}).get("filled_with", method)
        raise CliError(
            f"--uncertainty-out: the {method} engine returned no uncertainty map here (filled "
            f"with {filled}); nothing was written: run again without --uncertainty-out"
        )
    partial = target.with_name(f".{target.stem}.partial-{os.getpid()}{target.suffix}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its "wrote" line names the temporary
            write_output(partial, result.data, result.provenance, **kwargs)
        provenance = dict(result.provenance, output="uncertainty (per-voxel spread, data units)")
        write_output(uncertainty_target, uncertainty, provenance, **kwargs)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    print(f"wrote {target} ({result.data.shape}, {result.data.dtype})")


def _factor_argument(text: str) -> int | float:
    """``--factor``: a whole number stays an ``int``, anything else a ``float``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return int(value) if value.is_integer() else value


def run_interpolate_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen interpolate``."""
    from .. import api
    from ..cli import CliError
    from ..core.indices import parse_indices
    from ..core.io import check_unit
    from ..core.upsampling import factor_fraction, upsampled_length
    from ..core.validation import InvalidInputError
    from ..engines.registry import get_engine
    from . import tasks

    target = output_path(args.output, overwrite=args.overwrite, inputs=[args.input])
    params = tasks.method_params("interpolate", args)
    uncertainty_target = _uncertainty_target(args, "interpolate", [args.input], params)
    if args.factor is not None:
        try:
            factor_fraction(args.factor)
        except InvalidInputError as error:
            raise CliError(f"--{error}") from None
    volume, data = read_input(args.input, series=args.series)
    require_volume(args.input, volume, purpose="interpolation", min_slices=2)
    check_unit(volume.unit)
    missing = parse_indices(args.missing, volume.data.shape[0]) if args.missing else None
    if args.missing is not None and not missing:
        raise CliError(f"--missing {args.missing!r} names no slice; give e.g. 10,11,12 or 10-12")
    if args.factor is not None:
        depth = upsampled_length(volume.shape[0], args.factor)
        check_output_fits((depth, *volume.shape[1:]), volume.dtype, f"--factor {args.factor}")
    params = _with_file_voxel_size(get_engine("interpolate", args.method), params, volume)
    printer = ProgressPrinter(quiet=args.quiet)
    result = api.interpolate(
        data,
        method=args.method,
        missing=missing,
        factor=args.factor,
        params=params,
        on_progress=printer,
    )
    printer.close()
    result.provenance["source"]["file"] = str(args.input)
    voxel_size = result.output_voxel_size(volume.voxel_size)
    _write_outputs(target, uncertainty_target, result, args.method, voxel_size, volume.unit)
    return 0


def run_inpaint_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen inpaint``."""
    from .. import api
    from ..core.indices import parse_slice_selection
    from ..core.io import check_unit
    from . import tasks

    target = output_path(args.output, overwrite=args.overwrite, inputs=[args.input, args.mask])
    params = tasks.method_params("inpaint", args)
    uncertainty_target = _uncertainty_target(args, "inpaint", [args.input, args.mask], params)
    volume, data = read_input(args.input, series=args.series)
    _, mask = read_input(args.mask, what="mask", labels=True)
    require_volume(args.input, volume, purpose="inpainting", allow_2d=True)
    check_unit(volume.unit)
    depth = volume.data.shape[0] if volume.data.ndim == 3 else 1
    slices = parse_slice_selection(args.slices, depth)
    printer = ProgressPrinter(quiet=args.quiet)
    result = api.inpaint(
        data,
        mask,
        method=args.method,
        params=params,
        slices=slices,
        on_progress=printer,
    )
    printer.close()
    result.provenance["source"]["file"] = str(args.input)
    result.provenance["source"]["mask_file"] = str(args.mask)
    voxel_size = result.output_voxel_size(volume.voxel_size)
    _write_outputs(target, uncertainty_target, result, args.method, voxel_size, volume.unit)
    return 0


def engines_markdown() -> str:
    """The docs' engine table and one parameter table per engine, from the registry."""
    from ..core.params import describe_params
    from ..engines.registry import TASKS, engines

    lines = [
        "| task | method | what it does | needs |",
        "| --- | --- | --- | --- |",
    ]
    for engine in engines():
        needs = ", ".join(engine.extras) or "core install"
        if engine.needs_weights:
            needs += " + model weights"
        lines.append(f"| {engine.task} | `{engine.name}` | {engine.description} | {needs} |")
    for task in TASKS:
        for engine in engines(task):
            rows = describe_params(engine.params_class)
            lines += ["", f"### {task} / `{engine.name}`", ""]
            if not rows:
                lines.append("No parameters.")
                continue
            lines += ["| flag | default | allowed | meaning |", "| --- | --- | --- | --- |"]
            for row in rows:
                flag = f"`{row['flag']}`" if row["flag"] else f"({row['name']}, not a flag)"
                text = row["help"].replace("|", "\\|")
                lines.append(f"| {flag} | {row['default']} | {row['bounds']} | {text} |")
    return "\n".join(lines) + "\n"


def run_engines_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen engines``."""
    from ..engines.registry import TASKS, engines

    if args.markdown:
        print(engines_markdown(), end="")
        return 0
    tasks = [args.task] if args.task else list(TASKS)
    for task in tasks:
        print(f"{task}: {TASKS[task].description}")
        for engine in engines(task):
            missing = engine.missing_extras()
            state = "ready" if not missing else f"needs {', '.join(missing)}"
            if engine.needs_weights and not missing:
                state += " (+ model weights)"
            print(f"  {engine.name:<14} {state:<26} {engine.description}")
    return 0
