"""A cheap identity of an input's content, so that a resumed job notices a changed input.

:func:`content_identity` hashes the name, size and modification time (nanoseconds) of
every file of an input: one TIFF, a folder of slices, or a zarr store (every chunk
file and its metadata). It reads no pixel data, so it costs one ``stat`` per file. A
file rewritten in place (even with the same shape and dtype), a chunk replaced, a
slice added or removed all change it; a copy that keeps modification times
(``cp -p``, ``rsync -t``) of identical content does not, which is what a resume wants.

Inputs of more than :data:`MAX_FILES` files (zarr stores of millions of chunks) are
identified by their folders' modification times and metadata files instead, which
change when a chunk file is added, removed or replaced by a rename (how zarr and most
copy tools write), so the cost stays one ``stat`` per folder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: Above this many files an input is identified by its folders and metadata files.
MAX_FILES = 200_000
_METADATA_FILES = ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata")


def _entries(root: Path, folders_only: bool = False):
    """``(relative name, size, mtime_ns)`` of every file (or folder) under ``root``, sorted."""
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as listing:
            items = sorted(listing, key=lambda entry: entry.name)
        for entry in items:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
                if not folders_only:
                    continue
            elif folders_only and entry.name not in _METADATA_FILES:
                continue
            try:
                status = entry.stat()
            except OSError:  # a dangling link or a link loop: the link itself
                status = entry.stat(follow_symlinks=False)
            name = os.path.relpath(entry.path, root).replace(os.sep, "/")
            yield name, status.st_size, status.st_mtime_ns


def content_identity(path: str | os.PathLike) -> str:
    """A short hash of the names, sizes and modification times of an input's files.

    Parameters
    ----------
    path : str or path-like
        A file, a folder of slices or a zarr store. Hidden bookkeeping (names starting
        with ``.``) is included: a store's own files are part of what it holds.

    Returns
    -------
    str
        16 hexadecimal digits; ``"missing"`` when the path does not exist.
    """
    target = Path(path).expanduser()
    digest = hashlib.sha256()
    if not target.exists():
        return "missing"
    if target.is_dir():
        for count, (name, size, mtime) in enumerate(_entries(target)):
            if count >= MAX_FILES:  # millions of chunks: folders and metadata only
                digest = hashlib.sha256(b"folders")
                top = target.stat()
                digest.update(f"{top.st_mtime_ns}\n".encode())
                for entry in _entries(target, folders_only=True):
                    digest.update("{}\0{}\0{}\n".format(*entry).encode())
                break
            digest.update(f"{name}\0{size}\0{mtime}\n".encode())
    else:
        status = target.stat()
        digest.update(f"{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def array_identity(array) -> str:
    """A short hash of an in-memory volume's shape, dtype and every value.

    What a training run keys its checkpoints on: the engines receive arrays (a napari
    layer, a file read by a front-end), so the identity is of the content itself, not of
    a file's name and time. It reads every byte once (about 1 s per GB), plane by plane,
    without a copy of the whole volume.

    Parameters
    ----------
    array : numpy.ndarray
        The volume.

    Returns
    -------
    str
        16 hexadecimal digits.
    """
    import numpy as np

    data = np.asarray(array)
    digest = hashlib.sha256(f"{data.shape}\0{data.dtype.str}\n".encode())
    for plane in data if data.ndim > 1 else (data,):
        digest.update(np.ascontiguousarray(plane))
    return digest.hexdigest()[:16]
