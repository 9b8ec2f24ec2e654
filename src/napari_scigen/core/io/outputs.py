"""The one output check every writer shares: an output never destroys an input.

:func:`check_output_location` is called before any work by every command and
workflow that writes (single-process commands, ``convert``, ``batch`` and the napari
"whole volume" run, which goes through the batch workflow). An output

* is never one of the inputs (compared by resolved path and :func:`os.path.samefile`,
  so ``..``, symbolic and hard links are seen through);
* never contains an input: replacing an output store (``overwrite``) deletes the
  whole folder, and an input inside it with it;
* never sits inside an input folder (a folder of slices, a zarr store): writing there
  would add a slice or a file to the input;
* that is a folder store (``.zarr``) is never a symbolic link: replacing it would
  replace the link, not the store it points to.

These hold with or without ``overwrite``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from napari_scigen.core.validation import InvalidInputError


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return Path(os.path.abspath(path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return _resolved(a) == _resolved(b)


def _is_within(inner: Path, outer: Path) -> bool:
    """Whether ``inner`` lies strictly inside the folder ``outer`` (both resolved)."""
    return inner != outer and outer in inner.parents


def check_output_location(
    output: str | os.PathLike,
    inputs: Iterable,
    *,
    flag: str | None = None,
    store: bool | None = None,
) -> Path:
    """Refuse an output that is, contains or lies inside one of the inputs.

    Parameters
    ----------
    output : str or path-like
        The file or store about to be written.
    inputs : iterable of str or path-like
        Every file or folder the job reads (``None`` and empty entries are skipped).
    flag : str, optional
        How messages name the output: a front-end passes its own name for it (the
        CLI ``"-o"``, ``"--save-mask"``); default ``"the output"``.
    store : bool, optional
        The output is a folder store (``.zarr``); default: decided by its name.

    Returns
    -------
    pathlib.Path
        The output path (``~`` expanded).

    Raises
    ------
    InvalidInputError
        Naming the output, the input and why writing there would lose data.
    """
    from .zarr_store import is_zarr_path

    target = Path(output).expanduser()
    flag = flag or "the output"
    store = is_zarr_path(target) if store is None else store
    if store and target.is_symlink():
        raise InvalidInputError(
            f"{flag} {target} is a symbolic link (to {os.readlink(target)}); replacing it "
            "would replace the link, not the store: give the real path or another name"
        )
    resolved_target = _resolved(target)
    for given in inputs:
        if given is None or str(given) == "":
            continue
        source = Path(given).expanduser()
        resolved_source = _resolved(source)
        if _same_file(target, source):
            raise InvalidInputError(
                f"{flag} {target} is the input {given}: writing there would destroy it; "
                "choose another output"
            )
        if _is_within(resolved_source, resolved_target):
            raise InvalidInputError(
                f"{flag} {target} contains the input {given}: replacing it would delete the "
                "input; write somewhere else"
            )
        if _is_within(resolved_target, resolved_source) and source.is_dir():
            kind = "store" if is_zarr_path(source) else "slice folder"
            raise InvalidInputError(
                f"{flag} {target} is inside the input {kind} {given}: writing there would "
                "change the input; write outside it"
            )
    return target


def check_store_output(
    path: str | os.PathLike, inputs: Iterable, *, overwrite: bool, flag: str | None = None
) -> Path:
    """An output store that loses nothing: not an input, not around or inside one, not a link.

    An existing store is replaced only with ``overwrite``, and only when it is a zarr
    store (a folder holding ``zarr.json``, ``.zgroup`` or ``.zarray``): any other file or
    folder of that name is left alone.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InvalidInputError
    """
    from .zarr_store import is_zarr_store

    target = check_output_location(path, inputs, flag=flag, store=True)
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise InvalidInputError(
                f"{target} exists; run again with overwrite=True to replace it",
                options=["overwrite"],
            )
        if not is_zarr_store(target):
            raise InvalidInputError(
                f"{target} exists and is not a zarr store; overwrite=True replaces only a "
                "zarr store: remove it yourself or choose another output",
                options=["overwrite"],
            )
    if not target.parent.is_dir():
        raise InvalidInputError(f"output folder {target.parent} does not exist; create it first")
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary path beside ``path``, moved onto it once the block succeeds.

    A failed write (a full disk, an error, Ctrl-C) leaves neither a half-written
    ``path`` nor the temporary file behind.

    Examples
    --------
    >>> with atomic_path("report.json") as temporary:  # doctest: +SKIP
    ...     temporary.write_text("{}")
    """
    target = Path(path).expanduser()
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
