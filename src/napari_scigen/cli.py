"""The ``napari-scigen`` command line.

Each subcommand lives in ``napari_scigen._cli.<module>`` and registers itself
with :func:`register` so heavy imports happen only when that command runs.

Every command runs inside one error boundary (:func:`main`):

* a user error (bad input or option, a missing or unreadable file, a full disk, a
  damaged checkpoint or weights file, not enough memory, missing model weights)
  prints one line ``napari-scigen COMMAND: error: ...`` saying what to do, and exits
  with status 2;
* an unexpected error prints one line naming it and exits with status 1; the global
  ``--debug`` flag shows its traceback instead;
* Ctrl-C exits with 130 and SIGTERM with 143, after the running write removed its
  temporary file (nothing half-written is left); a closed output pipe
  (``napari-scigen info scan.tif | head -1``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys

from . import __version__

#: Modules under ``napari_scigen._cli`` that add subcommands, in help order.
SUBCOMMAND_MODULES = (
    "demo",
    "engines",
    "tasks",
    "info",
    "metrics",
    "validate",
    "diffusion",
    "stylegan",
    "finetune",
    "compare",
    "convert",
    "batch",
)

#: Exit status of a user error, of an unexpected error, of Ctrl-C, of SIGTERM and of a
#: closed output pipe (128 + the signal number, as the shell reports a killed process).
EXIT_USER_ERROR, EXIT_UNEXPECTED = 2, 1
EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_BROKEN_PIPE = 130, 143, 141

#: Exceptions from optional packages that are user errors, by ``module:qualified name``;
#: looked up only when their module is already imported (the CLI imports none of them).
_FOREIGN_USER_ERRORS = {
    "napari_scigen.engines._training.checkpoint:CheckpointError": "",
    "safetensors:SafetensorError": "not a valid safetensors file",
    "torch.cuda:OutOfMemoryError": "the GPU ran out of memory (try --device cpu, or a smaller "
    "batch size, tile or resolution)",
}

#: API spellings in engine messages and the command-line flags a user types instead.
_API_SPELLINGS_TO_FLAGS = {"resume=False": "--no-resume", "resume=True": "--resume"}

#: What to do about an operating-system error, by errno.
_OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write to another disk",
    errno.EDQUOT: "the disk quota is exceeded: free some space or write elsewhere",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.EACCES: "permission denied: check the file's and folder's permissions",
    errno.EPERM: "permission denied: check the file's and folder's permissions",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "this is a folder, not a file",
    errno.ENOTDIR: "a part of this path is not a folder",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.EFBIG: "the file is too large for this file system",
    errno.EIO: "input/output error: the disk or network share failed",
    errno.ELOOP: "a symbolic link loop (a link that points back at itself): fix or remove it",
}


class CliError(RuntimeError):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so running writes clean up as on Ctrl-C."""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="napari-scigen",
        description="Synthesize and verify scientific images in microCT volumes.",
    )
    parser.add_argument("--version", action="version", version=f"napari-scigen {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an unexpected error (also accepted after the command)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"napari_scigen._cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"napari_scigen._cli.{name}":
                continue  # subcommand not part of this build
            raise
        module.register(subparsers)
    for subparser in subparsers.choices.values():
        _accept_debug_flag(subparser)
    return parser


def _accept_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after the command too, also on nested commands (``batch TASK``)."""
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                _accept_debug_flag(nested)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


def _foreign_user_error(error: BaseException) -> str | None:
    """The prefix for a user error of an optional package (``""``: none), else ``None``."""
    for dotted, prefix in _FOREIGN_USER_ERRORS.items():
        module_name, _, class_name = dotted.partition(":")
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if isinstance(cls, type) and isinstance(error, cls):
            return prefix
    return None


def _os_error_message(error: OSError) -> str:
    hint = _OS_ERROR_HINTS.get(error.errno or -1)
    where = error.filename or ""
    if hint and where:
        return f"{where}: {hint}"
    return _first_line(error) if not hint else f"{hint} ({_first_line(error)})"


def user_error_message(error: BaseException) -> str | None:
    """The one-line message for a user error, or ``None`` for an unexpected one.

    Parameters
    ----------
    error : BaseException
        What a command raised.

    Returns
    -------
    str or None
        The message to print after ``napari-scigen COMMAND: error:``.
    """
    import json
    import pickle

    from .core.models import ModelNotAvailableError
    from .core.progress import Cancelled
    from .core.validation import InvalidInputError

    if isinstance(error, (CliError, InvalidInputError, Cancelled)):
        return _first_line(error)
    if isinstance(error, ModelNotAvailableError):
        # what to download and where to put it may span lines: all of it, on one line
        return " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, pickle.UnpicklingError):
        return (
            "a file is not a safe weights file (it holds Python objects, not only tensors and "
            "numbers) and was not loaded"
        )
    if isinstance(error, json.JSONDecodeError):
        return f"a JSON file is damaged ({_first_line(error)}); replace or delete it"
    if isinstance(error, MemoryError):
        return (
            "not enough memory: crop the volume or process fewer slices, use a machine with "
            "more memory, or open the file lazily (napari) and work in batches"
        )
    foreign = _foreign_user_error(error)
    if foreign is not None:
        return f"{foreign}: {_first_line(error)}" if foreign else _first_line(error)
    if isinstance(error, OSError):
        return _os_error_message(error)
    return None


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into :class:`Terminated` while a command runs (main thread only)."""

    def terminate(_signum, _frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except (ValueError, OSError, AttributeError):  # not the main thread / no SIGTERM
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the exit flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-scigen`` console script (see the module notes)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    prefix = f"napari-scigen {args.command}"
    try:
        with _sigterm_as_interrupt():
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
            return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as error:
        terminated = isinstance(error, Terminated)
        print(
            f"{prefix}: {'terminated' if terminated else 'interrupted'}; nothing more was written",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except Exception as error:
        message = user_error_message(error)
        if message is not None:
            if args.debug:
                raise
            from ._cli.common import cli_message, command_options

            message = cli_message(error, message, command_options(parser, args.command))
            for api_spelling, flag in _API_SPELLINGS_TO_FLAGS.items():
                message = message.replace(api_spelling, flag)
            print(f"{prefix}: error: {message}", file=sys.stderr)
            return EXIT_USER_ERROR
        if args.debug:
            raise
        print(
            f"{prefix}: unexpected error ({type(error).__name__}: {_first_line(error)}); "
            f"rerun with --debug for the traceback (napari-scigen --debug {args.command} ...)",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
