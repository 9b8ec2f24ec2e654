"""``demo`` subcommand: the offline end-to-end main job."""

from __future__ import annotations

import argparse

from .common import add_engine_arguments

#: Files the demo writes into its folder (``{method}``: each interpolation method).
DEMO_OUTPUTS = (
    "rock.tif",
    "rebuilt_{method}.tif",
    "rebuilt_{method}_uncertainty.tif",
    "region_mask.tif",
    "inpainted_region.tif",
    "inpainted_region_learned.tif",
    "ring_inpainted.tif",
    "demo.png",
    "metrics.csv",
    "metrics.json",
)


def register(subparsers) -> None:
    """Add the ``demo`` subcommand."""
    from ..workflows.demo import (
        DEMO_INPAINT_METHODS,
        DEMO_INPAINT_PARAMS,
        DEMO_METHOD_PARAMS,
        DEMO_METHODS,
    )

    demo_defaults = "; ".join(
        f"{method}: " + ", ".join(f"{k}={v}" for k, v in values.items())
        for method, values in DEMO_METHOD_PARAMS.items()
    )
    parser = subparsers.add_parser(
        "demo",
        help="run the offline end-to-end demo on a synthetic rock volume",
        description="Build a synthetic rock microCT volume with ring artifacts, hold out every "
        "4th slice and rebuild it with each method (learned and auto fine-tune the shipped "
        "default network on the volume), inpaint a damaged region (biharmonic and learned) and "
        "the ring artifacts, and write volumes, metrics (CSV/JSON) and a figure. Engine options "
        f"(below) override the demo's own settings ({demo_defaults}).",
    )
    parser.add_argument(
        "-o", "--output", default="scigen-demo", help="output folder (default: ./scigen-demo)"
    )
    parser.add_argument(
        "--every", type=int, default=4, help="hold out one slice in EVERY (default 4)"
    )
    parser.add_argument(
        "--methods",
        default=",".join(DEMO_METHODS),
        help="interpolation methods, comma separated (default: %(default)s)",
    )
    parser.add_argument(
        "--inpaint-methods",
        default=",".join(DEMO_INPAINT_METHODS),
        help="inpainting methods for the damaged region, comma separated (biharmonic always "
        "runs; default: %(default)s)",
    )
    parser.add_argument(
        "--inpaint-train-steps",
        type=int,
        default=DEMO_INPAINT_PARAMS["train_steps"],
        help="training steps of the learned inpainting (default: %(default)s)",
    )
    parser.add_argument(
        "--shape",
        default="32,128,128",
        help="volume size Z,Y,X (default 32,128,128; the napari sample is 64,256,256, about "
        "8x the StyleGAN work)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the procedural volume")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace demo files already in the folder"
    )
    parser.add_argument("-q", "--quiet", action="store_true")
    add_engine_arguments(parser, "interpolate", exclude=("seed",), method_flag=False)
    parser.set_defaults(func=run_demo_command)


def _check_demo_folder(output: str, methods, overwrite: bool) -> None:
    """Refuse to replace files in the demo folder without ``--overwrite`` (before any work)."""
    from pathlib import Path

    from ..cli import CliError
    from .common import check_writable_folder

    if not output.strip():
        raise CliError("-o is empty: give an output folder, e.g. -o scigen-demo")
    out = Path(output).expanduser()
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} exists and is not a folder")
    names = sorted({name.format(method=method) for name in DEMO_OUTPUTS for method in methods})
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        raise CliError(
            f"{out} already holds {', '.join(existing)}; pass --overwrite to replace them"
        )
    folder = out
    while not folder.exists():  # the demo creates missing folders
        folder = folder.parent
    check_writable_folder(folder)


def run_demo_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen demo``."""
    from ..cli import CliError
    from ..engines.registry import engine_names
    from ..workflows.demo import (
        DEMO_INPAINT_PARAMS,
        DEMO_METHOD_PARAMS,
        DemoConfig,
        format_summary,
        run_demo,
    )
    from ..workflows.validate import parse_names, validation_methods
    from .common import ProgressPrinter
    from .validate import method_params_from_args

    methods = parse_names(args.methods, validation_methods(), "methods")
    inpaint_methods = parse_names(args.inpaint_methods, engine_names("inpaint"), "inpaint methods")
    if args.inpaint_train_steps < 0:
        raise CliError(f"--inpaint-train-steps must be >= 0, got {args.inpaint_train_steps}")
    _check_demo_folder(args.output, methods, args.overwrite)
    if args.every < 2:
        raise CliError(f"--every must be an integer >= 2, got {args.every}")
    try:
        shape = tuple(int(v) for v in args.shape.split(","))
    except ValueError:
        raise CliError(
            f"--shape must be three integers like 64,256,256, got {args.shape!r}"
        ) from None
    if len(shape) != 3 or min(shape) < 8:
        raise CliError(f"--shape must be three integers >= 8, got {args.shape!r}")
    params = method_params_from_args(methods, args, defaults=DEMO_METHOD_PARAMS)
    method_params = {method: p.to_dict() for method, p in params.items()}
    config = DemoConfig(
        shape=shape,
        every=args.every,
        methods=methods,
        seed=args.seed,
        method_params=method_params,
        inpaint_methods=inpaint_methods,
        inpaint_params={**DEMO_INPAINT_PARAMS, "train_steps": args.inpaint_train_steps},
    )
    printer = ProgressPrinter(quiet=args.quiet)

    def log(line: str) -> None:
        if not args.quiet:
            printer.close()
            print(line, flush=True)

    report = run_demo(args.output, config, log=log, on_progress=printer)
    printer.close()
    print(format_summary(report))
    print(
        f"wrote {len(report.files)} files to {args.output}/ (metrics.csv, metrics.json, demo.png, volumes)"
    )
    return 0
