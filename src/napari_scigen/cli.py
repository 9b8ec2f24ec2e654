"""The ``napari-scigen`` command line.

Each subcommand lives in ``napari_scigen._cli.<module>`` and registers itself
with :func:`register` so heavy imports happen only when that command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

#: Modules under ``napari_scigen._cli`` that add subcommands, in help order.
SUBCOMMAND_MODULES = (
    "demo",
    "engines",
    "info",
    "metrics",
    "validate",
    "diffusion",
    "stylegan",
)


class CliError(RuntimeError):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="napari-scigen",
        description="Synthesize and verify scientific images in microCT volumes.",
    )
    parser.add_argument("--version", action="version", version=f"napari-scigen {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"napari_scigen._cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"napari_scigen._cli.{name}":
                continue  # subcommand not part of this build
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-scigen`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    from .core.models import ModelNotAvailableError
    from .core.progress import Cancelled
    from .core.validation import InvalidInputError

    try:
        return int(args.func(args) or 0)
    except (
        CliError,
        InvalidInputError,
        ModelNotAvailableError,
        FileNotFoundError,
        Cancelled,
    ) as error:
        print(f"napari-scigen {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"napari-scigen {args.command}: interrupted; nothing more was written", file=sys.stderr
        )
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
