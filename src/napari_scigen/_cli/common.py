"""Helpers shared by CLI subcommands: progress printing, reading and writing volumes.

Outputs are checked before any work (:func:`output_path`): never one of the command's
inputs, never inside an input slice folder, a TIFF file name in an existing writable
folder, replaced only with ``--overwrite``. Inputs are read after checking that they
fit into memory (:func:`read_input`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..core.progress import Progress

#: File name endings of TIFF outputs (those of ``core.io.TIFF_SUFFIXES``; not imported
#: from there so that registering the commands stays free of NumPy and tifffile).
TIFF_OUTPUT_SUFFIXES = (".tif", ".tiff")
#: Copies of an input a run holds at once (input, output, working data): the memory
#: check of :func:`read_input` asks for this many times the input's size.
MEMORY_COPIES = 3


class ProgressPrinter:
    """Print progress events on stderr: one updating line on a terminal, else a log.

    On a terminal the line is rewritten in place. Otherwise (a pipe, a log file, CI)
    a line is written for the first and last event and whenever another tenth of the
    job is done or ``interval`` seconds have passed, so long jobs show they are alive.
    ``rename`` replaces API spellings in engine messages by the command's flags
    (``{"resume=False": "--no-resume"}``).
    """

    def __init__(
        self,
        quiet: bool = False,
        stream=None,
        interval: float = 30.0,
        rename: dict[str, str] | None = None,
    ):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.rename = dict(rename or {})
        self.interval = interval
        self._last = ""
        self._logged_fraction = -1.0
        self._logged_at = 0.0

    def __call__(self, event: Progress) -> None:
        if self.quiet:
            return
        message = event.message
        for api_name, flag in self.rename.items():
            message = message.replace(api_name, flag)
        line = f"[{event.step}/{event.total}] {message}" if event.total else message
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
    """Write a result volume (atomically, with provenance) and say so on stdout.

    Raises
    ------
    InvalidInputError
        When floating-point results hold NaN/infinite values (broken weights or
        parameters): nothing is written.
    """
    import numpy as np

    from ..core.io import write_volume
    from ..core.validation import InvalidInputError

    if np.issubdtype(np.dtype(data.dtype), np.floating) and isinstance(data, np.ndarray):
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if bad:
            raise InvalidInputError(
                f"the result holds {bad} NaN/infinite value(s) (broken weights or parameters?); "
                f"{path} was not written"
            )
    kwargs = {} if voxel_size is None else {"voxel_size": voxel_size, "unit": unit}
    write_volume(path, data, provenance=provenance, **kwargs)
    print(f"wrote {path} ({data.shape}, {data.dtype})")


def check_not_an_input(target: Path, inputs: Iterable, *, flag: str = "-o") -> None:
    """Refuse an output that is, contains or lies inside one of the command's inputs.

    The one shared check (:func:`napari_scigen.core.io.outputs.check_output_location`):
    resolved paths and :func:`os.path.samefile` (links, ``..``, symlinks), whether or
    not ``--overwrite`` was given: writing there would destroy or change an input.

    Raises
    ------
    CliError
    """
    from ..cli import CliError
    from ..core.io.outputs import check_output_location
    from ..core.validation import InvalidInputError

    try:
        check_output_location(target, inputs, flag=flag)
    except InvalidInputError as error:
        raise CliError(str(error)) from None


def output_path(
    path: str | None,
    *,
    overwrite: bool,
    inputs: Iterable = (),
    suffixes: Sequence[str] | None = TIFF_OUTPUT_SUFFIXES,
    flag: str = "-o",
) -> Path:
    """Check an output path before any work is done (no surprise overwrites, no data loss).

    Parameters
    ----------
    path : str
        The output file the user gave.
    overwrite : bool
        Whether an existing (non-input) file may be replaced.
    inputs : iterable of path
        The command's input files and folders: the output may be none of them, nor lie
        inside an input folder of slices, ``--overwrite`` or not.
    suffixes : sequence of str, optional
        Accepted file name endings (default TIFF); ``None`` accepts any.
    flag : str
        The option's name in messages.

    Raises
    ------
    CliError
        Empty name, a folder, a wrong suffix, an input, an existing file without
        ``--overwrite``, or a missing or unwritable output folder.
    """
    from ..cli import CliError

    if path is None or not str(path).strip():
        raise CliError(f"{flag} is empty: give an output file name such as out.tif")
    target = Path(path).expanduser()
    if target.is_dir():
        raise CliError(f"{flag} {target} is a folder: give a file name, e.g. {target / 'out.tif'}")
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise CliError(f"{flag} {target.name}: the output must end in {' or '.join(suffixes)}")
    check_not_an_input(target, inputs, flag=flag)
    if target.exists() and not overwrite:
        raise CliError(f"{target} exists; pass --overwrite to replace it")
    check_writable_folder(target.parent)
    return target


def check_writable_folder(folder: Path) -> None:
    """Refuse a missing or read-only output folder before any work is done.

    Raises
    ------
    CliError
    """
    from ..cli import CliError

    if not folder.is_dir():
        raise CliError(f"output folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(f"output folder {folder} is not writable (permission denied)")
    try:  # root ignores permission bits, a read-only mount does not
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".napari-scigen-probe-")
    except OSError as error:
        raise CliError(
            f"cannot write into output folder {folder} ({error.strerror or error})"
        ) from None
    probe.close()


def read_input(path: str, *, what: str = "input", series: int | None = None, labels: bool = False):
    """Read a volume for a command, fully into memory after checking that it fits.

    Parameters
    ----------
    path : str
        File or slice folder.
    what : str
        How messages call it (``"mask"``, ``"reference"``...).
    series : int, optional
        TIFF image series to read (``--series``).
    labels : bool
        A mask or label file: any integer or bool dtype.

    Returns
    -------
    (Volume, numpy.ndarray)
        The volume and its data as an array.
    """
    import numpy as np

    from ..core.io import check_fits_in_memory, read_volume

    volume = read_volume(path, series=series, labels=labels)
    lost = volume.metadata.get("missing_chunks")
    if lost:
        print(
            f"warning: {what} {path}: {lost} stored chunk(s) are missing and read as zeros "
            "(incomplete copy?)",
            file=sys.stderr,
        )
    if volume.lazy:
        shape = " x ".join(map(str, volume.shape))
        check_fits_in_memory(
            math.prod(volume.shape) * volume.dtype.itemsize * MEMORY_COPIES,
            f"{what} {path} ({shape} {volume.dtype}, with the copies a run makes)",
        )
    return volume, np.asarray(volume.data)


def describe_array(path: str, volume) -> str:
    """``"scan.tif (10 x 32 x 40 uint16)"`` for messages."""
    return f"{path} ({' x '.join(map(str, volume.shape))} {volume.dtype})"


def require_volume(
    path: str, volume, *, purpose: str, min_slices: int = 1, allow_2d: bool = False
) -> None:
    """Refuse data that is not one single-channel volume, saying what it is instead.

    Parameters
    ----------
    path : str
        The input as the user gave it.
    volume : Volume
        What was read.
    purpose : str
        What the command does, for the message (``"interpolation"``).
    min_slices : int
        Fewest slices a 3D stack needs.
    allow_2d : bool
        Whether a single 2D slice is acceptable too.

    Raises
    ------
    CliError
    """
    from ..cli import CliError

    if volume.channel_axis is not None:
        raise CliError(
            f"{describe_array(path, volume)} has a channel axis (RGB or multi-channel); "
            f"{purpose} needs single-channel data: convert it to grayscale or save one channel"
        )
    if len(volume.shape) == 2:
        if allow_2d:
            return
        raise CliError(
            f"{describe_array(path, volume)} is a single 2D slice; {purpose} needs a 3D stack"
            + (f" of at least {min_slices} slices" if min_slices > 1 else "")
        )
    if volume.shape[0] < min_slices:
        raise CliError(
            f"{describe_array(path, volume)} has {volume.shape[0]} slice(s); {purpose} needs "
            f"at least {min_slices}"
        )


def check_output_fits(shape: Sequence[int], dtype, option: str) -> None:
    """Refuse an output whose size (set by ``option``) cannot fit into memory, before the run.

    Raises
    ------
    NotEnoughMemoryError
    """
    from ..core.io import check_fits_in_memory
    from ..core.io.memory import array_nbytes

    check_fits_in_memory(
        array_nbytes(shape, dtype),
        f"{option} makes an output of {' x '.join(map(str, shape))} voxels, which",
        hint=f"choose a smaller {option.split()[0]} or crop the volume first",
    )


def add_series_argument(parser) -> None:
    """``--series N``: which image series of a multi-series TIFF input to read."""
    parser.add_argument(
        "--series",
        type=int,
        metavar="N",
        help="image series of the input TIFF to read, when it holds several (default: all "
        "pages as one stack when they match)",
    )


def deprecated_flag(new_flag: str) -> type[argparse.Action]:
    """An argparse action for a former flag: it stores, after a one-line warning."""
    from ..core.params.cli import deprecated_action

    return deprecated_action(argparse._StoreAction, new_flag)


def add_resume_argument(parser) -> None:
    """``--resume/--no-resume``: the one spelling of every training command (default on)."""
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from the newest checkpoint in the output folder (default: on; "
        "--no-resume starts over and replaces the folder's earlier checkpoints once its "
        "first new one is written)",
    )


def add_device_argument(parser, help: str = "torch device") -> None:  # noqa: A002
    """``--device``, validated like every engine's ``device_param`` (``gpu``: exit 2)."""
    from ..core.params import DEVICE_PATTERN

    def device(text: str) -> str:
        if not DEVICE_PATTERN.match(text.strip().lower()):
            raise argparse.ArgumentTypeError(
                f"must be auto, cpu, cuda, cuda:N or mps; got {text!r}"
            )
        return text.strip().lower()

    parser.add_argument(
        "--device", type=device, default="auto", help=f"{help}: auto, cpu, cuda, cuda:N or mps"
    )


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
    declared: dict[str, list[tuple[str, object]]] = {}
    for engine in registered:
        for spec in fields_of(engine.params_class):
            users.setdefault(spec.flag, []).append(engine.name)
            if spec.info.cli and spec.name not in exclude:
                declared.setdefault(spec.flag, []).append((engine.name, spec))
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
    for flag, owners in declared.items():
        _each_engines_own_help(parser, flag, owners)


def _each_engines_own_help(parser, flag: str, owners) -> None:
    """A flag several engines declare differently lists each one's help and default.

    ``interpolate --help`` then reads ``--batch-size: stylegan: ... (default: 8);
    learned: ... (default: 12)`` instead of the first engine's words for all of them.
    """
    from ..core.params.cli import format_default

    action = parser._option_string_actions.get(flag)
    if action is None:
        return
    if action.choices is not None:  # every engine's values (each engine checks its own)
        merged = list(dict.fromkeys(c for _, spec in owners for c in spec.info.choices or ()))
        if merged != list(action.choices):
            action.choices = merged
            action.metavar = "{" + ",".join(map(str, merged)) + "}"
    variants = {(spec.help, spec.default) for _, spec in owners}
    if len(variants) < 2:
        return
    parts = [
        f"{name}: {spec.help} (default: {format_default(spec.default)})" for name, spec in owners
    ]
    action.help = "; ".join(parts).replace("%", "%%")


def settings_from_args(cls: type, args, **options):
    """A workflow's settings ``cls`` from the typed flags (``options``: of ``params_from_cli``).

    Raises
    ------
    CliError
        A bad value, named by its flag (e.g. ``--drop-every must be an integer >= 2``).
    """
    from ..cli import CliError
    from ..core.params import params_from_cli
    from ..core.validation import InvalidInputError

    try:
        return params_from_cli(cls, args, **options)
    except InvalidInputError as error:
        raise CliError(str(error)) from None


def engine_params_from_args(task: str, args, **fixed):
    """The params of ``args.method`` from the typed flags (others are an error).

    A cross-field rule that fails names its fields by their flags (``--tile-size``),
    also when the field it blames was left at its default.
    """
    import re

    from ..core.params import ParameterError, fields_of, params_from_cli
    from ..core.validation import InvalidInputError
    from ..engines.registry import get_engine

    cls = get_engine(task, args.method).params_class
    try:
        return params_from_cli(cls, args, **fixed)
    except ParameterError as error:
        flags = {spec.name: spec.flag for spec in fields_of(cls) if spec.info.cli}
        if error.field not in flags:
            raise
        reason = error.reason
        for name, flag in flags.items():
            if "_" in name:  # one-word names are also plain words of the message
                reason = re.sub(rf"\b{name}\b", flag, reason)
        raise InvalidInputError(f"{flags[error.field]} {reason}") from None


def command_options(parser: argparse.ArgumentParser, command: str | None = None) -> dict:
    """The option actions of a command's parser, by option name, nested commands included.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``napari-scigen`` parser (with ``command``) or a command's own parser.
    command : str, optional
        The subcommand whose options are wanted.

    Returns
    -------
    dict of str to argparse.Action
        Keyed by the option's name as the API spells it: its ``dest`` without the prefix
        of declared parameters (``"overwrite"``, ``"series"``, ``"precision"``).
    """
    from ..core.params.cli import DEST_PREFIX

    found: dict[str, argparse.Action] = {}

    def walk(current: argparse.ArgumentParser, depth: int) -> None:
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                if depth:  # nested commands (``batch TASK``): all of them
                    chosen = list(action.choices.values())
                else:  # the top parser: only the running command
                    chosen = [action.choices[command]] if command in action.choices else []
                for sub in chosen:
                    walk(sub, depth + 1)
            elif action.option_strings and action.dest not in (argparse.SUPPRESS, "help"):
                found.setdefault(action.dest.removeprefix(DEST_PREFIX), action)

    walk(parser, 0 if command else 1)
    return found


def option_flag(name: str, actions: dict | None = None) -> str:
    """The command's long flag of the option ``name`` (default ``--name-with-dashes``)."""
    action = (actions or {}).get(name)
    if action is None:
        return "--" + name.replace("_", "-")
    strings = list(action.option_strings)
    flag = next((s for s in strings if s.startswith("--") and not s.startswith("--no-")), None)
    return flag or next((s for s in strings if s.startswith("--")), strings[0])


def flag_spelling(name: str, value: str, actions: dict | None = None) -> str:
    """How the command line spells the option ``name=value`` of a message.

    ``overwrite=True`` -> ``--overwrite``, ``resume=False`` -> ``--no-resume``,
    ``series=N`` -> ``--series N``, ``precision='bfloat16'`` -> ``--precision bfloat16``;
    the flag is the command's own (``actions``: :func:`command_options`), else the
    declared spelling (``--`` + the name with dashes).
    """
    action = (actions or {}).get(name)
    flag = option_flag(name, actions)
    if action is None:
        return {"True": flag, "False": "--no-" + flag[2:]}.get(value, f"{flag} {value}")
    strings = list(action.option_strings)
    if value not in ("True", "False"):
        return f"{flag} {value}"
    negative = next((s for s in strings if s.startswith("--no-")), None)
    if isinstance(action, argparse.BooleanOptionalAction):
        return flag if value == "True" or negative is None else negative
    if action.nargs == 0:  # store_true / store_false / store_const
        return flag if str(action.const) == value else f"without {flag}"
    return f"{flag} {value.lower()}"


def cli_message(error: BaseException, message: str, actions: dict | None = None) -> str:
    """A user error's one-line ``message`` with the options it names as the command's flags.

    Core messages spell options as keyword arguments and list them in the error's
    ``options`` (see :mod:`napari_scigen.core.validation`); a
    :class:`~napari_scigen.core.params.ParameterError` also names its field first.

    Parameters
    ----------
    error : BaseException
        What the command raised.
    message : str
        Its one-line message (``napari_scigen.cli.user_error_message``).
    actions : dict, optional
        The command's options (:func:`command_options`).

    Returns
    -------
    str
    """
    from ..core.validation import option_names, spell_options, subject_field

    field = subject_field(error)
    if field and message.startswith(field + " "):
        message = option_flag(field, actions) + message[len(field) :]
    return spell_options(
        message, option_names(error), lambda name, value: flag_spelling(name, value, actions)
    )
