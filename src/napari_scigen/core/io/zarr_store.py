"""What an OME-Zarr store written by napari-scigen is: its name, chunk and level layout.

Layout of a store (see :mod:`~napari_scigen.core.io.ngff` for the metadata)::

    scan.ome.zarr/        group: NGFF "multiscales" (axes z, y, x + units, scale per level)
                          and our record under attributes["napari_scigen"]
      0/                  full resolution (Z, Y, X)
      1/, 2/ ...          optional levels, Y and X halved each time (Z kept)

Every chunk is stored, also one holding only zeros (the record says
``every_chunk_stored``), so a chunk file missing from such a store is a loss, not an
empty region (see :func:`~napari_scigen.core.io.zarr_read.missing_chunks`).

Chunks are chosen for slice access: one or a few z-slices per chunk (about 4 MiB),
slices wider than 1024 px split into 1024 x 1024 tiles, so showing one slice in napari
reads little. Because Z is never downsampled, the slices ``[z0, z1)`` of every level
can be written on their own.

Reading is in :mod:`~napari_scigen.core.io.zarr_read`, writing (whole volumes, empty
stores, z-ranges of slices) in :mod:`~napari_scigen.core.io.zarr_write`; this module
holds what both share: recognising a store's path, the chunk and level geometry, and
loading the zarr library.

The libraries: ``zarr`` (v3) for the arrays and ``ome-zarr`` (the OME consortium's
reference implementation, the one napari-ome-zarr builds on) for validated NGFF
metadata. Both are optional (``pip install 'napari-scigen[zarr]'``) and imported only
when a ``.zarr`` path is used.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_scigen.core.validation import InvalidInputError

#: Path endings read and written as zarr (``.zarr`` covers ``.ome.zarr``; any case).
ZARR_SUFFIX = ".zarr"
#: Bytes aimed at per stored chunk.
CHUNK_TARGET_BYTES = 4 * 1024**2
#: Slices wider or taller than this are stored in square tiles of this side.
TILE_SIDE = 1024
#: At most this many z-slices per chunk.
MAX_CHUNK_SLICES = 16
#: ``levels=None`` adds levels until the longer side of the smallest is at most this.
AUTO_LEVEL_SIDE = 1024
#: At most this many levels (including full resolution).
MAX_LEVELS = 6
_INSTALL_HINT = "pip install 'napari-scigen[zarr]' (zarr>=3 and ome-zarr; Python >= 3.11)"


def is_zarr_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a zarr store (``.zarr``/``.ome.zarr``; no file access)."""
    return str(path).rstrip("/\\").lower().endswith(ZARR_SUFFIX)


#: Files that make a folder a zarr store (v3; v2 group; v2 array).
STORE_MARKERS = ("zarr.json", ".zgroup", ".zarray")


def is_zarr_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding zarr metadata (a store, not just its name)."""
    folder = os.fspath(path)
    return os.path.isdir(folder) and any(
        os.path.isfile(os.path.join(folder, marker)) for marker in STORE_MARKERS
    )


def _zarr():
    """The zarr module (v3), or a clear error saying what to install."""
    try:
        import zarr
    except ImportError:
        raise InvalidInputError(f"reading or writing .zarr stores needs {_INSTALL_HINT}") from None
    if int(zarr.__version__.split(".")[0]) < 3:
        raise InvalidInputError(
            f"zarr {zarr.__version__} is installed but napari-scigen needs zarr>=3: {_INSTALL_HINT}"
        )
    return zarr


def _reason(error: BaseException) -> str:
    """The first line of a zarr error (at most 200 characters), for our own messages."""
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


# --------------------------------------------------------------------------------------
# geometry: chunks and levels
# --------------------------------------------------------------------------------------


def slice_chunks(
    shape: Sequence[int], dtype: Any, chunk_slices: int | None = None
) -> tuple[int, ...]:
    """Chunk shape for slice access: whole slices (or 1024 px tiles), a few slices deep.

    Parameters
    ----------
    shape : sequence of int
        ``(Z, Y, X)`` or ``(Y, X)``.
    dtype : dtype
        The stored dtype.
    chunk_slices : int, optional
        Slices per chunk; default: as many as fit in about 4 MiB (1 to 16).

    Returns
    -------
    tuple of int
    """
    shape = tuple(int(n) for n in shape)
    itemsize = np.dtype(dtype).itemsize
    rows, cols = shape[-2:]
    if rows * cols * itemsize > CHUNK_TARGET_BYTES:
        rows, cols = min(rows, TILE_SIDE), min(cols, TILE_SIDE)
    if len(shape) == 2:
        return rows, cols
    if chunk_slices is None:
        chunk_slices = CHUNK_TARGET_BYTES // max(1, rows * cols * itemsize)
        chunk_slices = max(1, min(MAX_CHUNK_SLICES, chunk_slices))
    if int(chunk_slices) < 1:
        raise InvalidInputError(f"chunk_slices must be >= 1, got {chunk_slices}")
    return min(int(chunk_slices), shape[0]), rows, cols


def auto_levels(shape: Sequence[int]) -> int:
    """Number of levels so that the smallest has a longer side of at most 1024 px."""
    side, levels = max(int(n) for n in shape[-2:]), 1
    while side > AUTO_LEVEL_SIDE and levels < MAX_LEVELS:
        side, levels = math.ceil(side / 2), levels + 1
    return levels


def level_shapes(shape: Sequence[int], n_levels: int) -> list[tuple[int, ...]]:
    """Shapes of the levels: Y and X halved (rounded up) per level, Z kept."""
    shapes, current = [], tuple(int(n) for n in shape)
    for _ in range(n_levels):
        shapes.append(current)
        current = (*current[:-2], math.ceil(current[-2] / 2), math.ceil(current[-1] / 2))
    return shapes


def downsample_yx(block: np.ndarray, kind: str) -> np.ndarray:
    """Halve Y and X: 2 x 2 means (rounded for integers) for images, every other pixel for labels."""
    if kind == "labels":
        return np.ascontiguousarray(block[..., ::2, ::2])
    rows, cols = block.shape[-2:]
    pad = [(0, 0)] * (block.ndim - 2) + [(0, rows % 2), (0, cols % 2)]
    padded = np.pad(block, pad, mode="edge") if rows % 2 or cols % 2 else block
    shape = (*padded.shape[:-2], padded.shape[-2] // 2, 2, padded.shape[-1] // 2, 2)
    means = padded.reshape(shape).mean(axis=(-3, -1), dtype=np.float64)
    if np.issubdtype(block.dtype, np.integer):
        means = np.rint(means)
    return means.astype(block.dtype)
