"""``demo`` subcommand: the offline end-to-end main job."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run the offline end-to-end demo on a synthetic rock volume",
        description="Build a synthetic rock microCT volume with ring artifacts, hold out every "
        "4th slice and rebuild it with each method, inpaint a damaged region and the ring "
        "artifacts, and write volumes, metrics (CSV/JSON) and a figure.",
    )
    parser.add_argument(
        "-o", "--output", default="scigen-demo", help="output folder (default: ./scigen-demo)"
    )
    parser.add_argument(
        "--every", type=int, default=4, help="hold out one slice in EVERY (default 4)"
    )
    parser.add_argument(
        "--methods", default="linear,flow,stylegan", help="interpolation methods, comma separated"
    )
    parser.add_argument(
        "--shape",
        default="32,128,128",
        help="volume size Z,Y,X (default 32,128,128; the napari sample is 64,256,256, about "
        "8x the StyleGAN work)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stylegan-steps",
        type=int,
        default=50,
        help="StyleGAN projection steps per tile (default 50; the engine's own default is 200)",
    )
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    """Run ``napari-scigen demo``."""
    from ..cli import CliError
    from ..demo import DEMO_METHODS, DemoConfig, format_summary, run_demo
    from .common import ProgressPrinter

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = sorted(set(methods) - set(DEMO_METHODS))
    if unknown:
        raise CliError(f"unknown method(s) {unknown}; choose from {', '.join(DEMO_METHODS)}")
    try:
        shape = tuple(int(v) for v in args.shape.split(","))
    except ValueError:
        raise CliError(
            f"--shape must be three integers like 64,256,256, got {args.shape!r}"
        ) from None
    if len(shape) != 3 or min(shape) < 8:
        raise CliError(f"--shape must be three integers >= 8, got {args.shape!r}")
    if args.stylegan_steps < 1:
        raise CliError(f"--stylegan-steps must be >= 1, got {args.stylegan_steps}")
    config = DemoConfig(
        shape=shape,
        every=args.every,
        methods=methods,
        seed=args.seed,
        stylegan_steps=args.stylegan_steps,
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
