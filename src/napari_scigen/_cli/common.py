"""Helpers shared by CLI subcommands: progress printing, reading and writing volumes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..core.progress import Progress


class ProgressPrinter:
    """Print progress events on stderr: one updating line on a terminal, else a log.

    On a terminal the line is rewritten in place. Otherwise (a pipe, a log file, CI)
    a line is written for the first and last event and whenever another tenth of the
    job is done or ``interval`` seconds have passed, so long jobs show they are alive.
    """

    def __init__(self, quiet: bool = False, stream=None, interval: float = 30.0):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.interval = interval
        self._last = ""
        self._logged_fraction = -1.0
        self._logged_at = 0.0

    def __call__(self, event: Progress) -> None:
        if self.quiet:
            return
        line = f"[{event.step}/{event.total}] {event.message}" if event.total else event.message
        if self.stream.isatty():
            self.stream.write("\r" + line.ljust(len(self._last)))
            self.stream.flush()
            self._last = line
            return
        now = time.monotonic()
        fraction = event.fraction
        if (
            event.step == event.total
            or event.step == 1
            or fraction >= self._logged_fraction + 0.1
            or fraction < self._logged_fraction  # a new stage started over
            or now - self._logged_at >= self.interval
        ):
            self.stream.write(line + "\n")
            self.stream.flush()
            self._logged_fraction, self._logged_at = fraction, now

    def close(self) -> None:
        """End the progress line (on a terminal), so the next output starts cleanly."""
        if self._last and self.stream.isatty() and not self.quiet:
            self.stream.write("\n")
        self._last = ""


def write_output(path, data, provenance: dict, *, voxel_size=None, unit=None) -> None:
    """Write a result volume (atomically, with provenance) and say so on stdout."""
    from ..core.io import write_volume

    kwargs = {} if voxel_size is None else {"voxel_size": voxel_size, "unit": unit}
    write_volume(path, data, provenance=provenance, **kwargs)
    print(f"wrote {path} ({data.shape}, {data.dtype})")


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


def add_engine_arguments(parser, task: str, *, exclude=(), method_flag: bool = True) -> None:
    """``--method`` plus the parameter flags of every registered engine of ``task``.

    ``method_flag=False`` leaves out ``--method`` (for commands that take a list of
    methods, such as ``validate --methods``).

    Flags are grouped per engine ("flow options"); a field several engines declare
    (``seed``, ``device``...) becomes one flag listed under the first of them, its help
    naming every engine that uses it.
    """
    from ..core.params import add_cli_arguments, fields_of
    from ..engines.registry import engines

    registered = engines(task)
    users: dict[str, list[str]] = {}
    for engine in registered:
        for spec in fields_of(engine.params_class):
            users.setdefault(spec.flag, []).append(engine.name)
    summary = "; ".join(f"{e.name}: {e.description}" for e in registered)
    if method_flag:
        parser.add_argument(
            "--method",
            choices=[engine.name for engine in registered],
            default=registered[0].name,
            help=f"{summary} (default: {registered[0].name})",
        )
    taken: set[str] = set()
    for engine in registered:
        specs = [
            spec
            for spec in fields_of(engine.params_class)
            if spec.info.cli and spec.name not in exclude and spec.flag not in taken
        ]
        if not specs:
            continue
        group = parser.add_argument_group(f"{engine.name} options", engine.description)
        for spec in specs:
            shared = users[spec.flag]
            add_cli_arguments(
                group,
                engine.params_class,
                exclude=[s.name for s in fields_of(engine.params_class) if s.name != spec.name],
                users=shared if len(registered) > 1 else (),
                taken=taken,
            )


def engine_params_from_args(task: str, args, **fixed):
    """The params of ``args.method`` from the typed flags (others are an error)."""
    from ..core.params import params_from_cli
    from ..engines.registry import get_engine

    return params_from_cli(get_engine(task, args.method).params_class, args, **fixed)
