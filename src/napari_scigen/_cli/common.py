"""Helpers shared by CLI subcommands: progress printing, reading and writing volumes."""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.progress import Progress


class ProgressPrinter:
    """Print progress events on one updating line of stderr (quiet when not a TTY)."""

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._last = ""

    def __call__(self, event: Progress) -> None:
        if self.quiet:
            return
        line = f"[{event.step}/{event.total}] {event.message}" if event.total else event.message
        if self.stream.isatty():
            self.stream.write("\r" + line.ljust(len(self._last)))
            self.stream.flush()
        elif event.step == event.total or event.step == 1:
            self.stream.write(line + "\n")
        self._last = line

    def close(self) -> None:
        """End the progress line."""
        if self._last and self.stream.isatty() and not self.quiet:
            self.stream.write("\n")


def output_path(path: str, *, overwrite: bool) -> Path:
    """Check an output path before any work is done (no surprise overwrites)."""
    from ..cli import CliError

    target = Path(path)
    if target.exists() and not overwrite:
        raise CliError(f"{target} exists; pass --overwrite to replace it")
    if not target.parent.exists():
        raise CliError(f"output folder {target.parent} does not exist")
    return target


def add_output_arguments(parser) -> None:
    """``-o/--output`` and ``--overwrite``, the same for every writing command."""
    parser.add_argument("-o", "--output", required=True, help="output TIFF path")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
