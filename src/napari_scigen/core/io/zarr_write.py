"""Write volumes as OME-Zarr (zarr v3, OME-NGFF 0.5) with voxel size and provenance.

:func:`write_zarr` writes a whole volume atomically (into a temporary store, moved
into place once complete; lazy input a slab at a time). :func:`create_zarr` makes an
empty store with its metadata and :func:`write_zarr_slices` fills z-ranges of it, one
chunk-aligned range per writer: the batch runner writes each z-chunk of its output from
a different worker. NGFF 0.4 on zarr v2 is written on request (``ngff_version="0.4"``)
for tools that do not read zarr v3 yet. The store layout (chunks, levels) is described
in :mod:`~napari_scigen.core.io.zarr_store`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_scigen.core.validation import InvalidInputError

from .ngff import DEFAULT_NGFF_VERSION, NGFF_VERSIONS, axes_metadata, level_datasets
from .record import METADATA_KEY
from .volume import _LABEL_ONLY_DTYPES, _SUPPORTED
from .zarr_store import (
    MAX_LEVELS,
    _reason,
    _zarr,
    auto_levels,
    downsample_yx,
    level_shapes,
    slice_chunks,
)


def _record_dict(kind, voxel_size, unit, provenance, note=None) -> dict:
    from .record import _record_json

    return json.loads(_record_json(kind, voxel_size, unit, provenance, note))[METADATA_KEY]


def _check_ngff_version(ngff_version: str) -> str:
    version = str(ngff_version)
    if version not in NGFF_VERSIONS:
        raise InvalidInputError(
            f"ngff_version must be one of {', '.join(NGFF_VERSIONS)}, got {ngff_version!r}"
        )
    return version


def create_zarr(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype: Any,
    *,
    voxel_size: Sequence[float] | None = None,
    unit: str = "um",
    provenance: dict | None = None,
    kind: str = "image",
    chunk_slices: int | None = None,
    levels: int | None = 1,
    ngff_version: str = DEFAULT_NGFF_VERSION,
    name: str | None = None,
) -> Path:
    """Create an empty OME-Zarr volume (zeros until written) with its metadata.

    Parameters
    ----------
    path : str or path-like
        The store to create; it must not exist.
    shape : sequence of int
        ``(Z, Y, X)`` or ``(Y, X)``.
    dtype : dtype
        Stored dtype (uint8, uint16, int16, float32; uint32/int32 for labels).
    voxel_size, unit, provenance, kind
        As for :func:`~napari_scigen.core.io.write_volume`.
    chunk_slices : int, optional
        z-slices per chunk (default: see :func:`slice_chunks`).
    levels : int or None
        Resolution levels (1 = full resolution only; None = :func:`auto_levels`).
    ngff_version : {"0.5", "0.4"}
        NGFF 0.5 on zarr v3 (default) or NGFF 0.4 on zarr v2.
    name : str, optional
        The multiscale image's name (default: the store's name).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InvalidInputError
        Bad shape, dtype, voxel size, kind, levels or version; an existing store.
    """
    from .calibration import _canonical_unit, _check_voxel_size

    zarr = _zarr()
    target = Path(path).expanduser()
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise InvalidInputError(f"a zarr volume is (Z, Y, X) or (Y, X), got shape {shape}")
    if kind not in ("image", "labels"):
        raise InvalidInputError(f"kind must be 'image' or 'labels', got {kind!r}")
    stored = np.dtype(dtype).newbyteorder("=")
    if stored not in _SUPPORTED and not (kind == "labels" and stored in _LABEL_ONLY_DTYPES):
        raise InvalidInputError(
            f"cannot store {stored} volumes: napari-scigen stores uint8, uint16, int16 and "
            "float32 (and uint32/int32 labels)"
        )
    version = _check_ngff_version(ngff_version)
    n_levels = auto_levels(shape) if levels is None else int(levels)
    if not 1 <= n_levels <= MAX_LEVELS:
        raise InvalidInputError(f"levels must be between 1 and {MAX_LEVELS}, got {levels}")
    checked = _check_voxel_size(voxel_size, len(shape))
    if checked is None:
        checked, unit = (1.0,) * len(shape), "pixel"
    unit = _canonical_unit(unit)
    if target.exists():
        raise InvalidInputError(f"{target} exists; remove it or choose another output")
    if not target.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, f"folder {target.parent} does not exist", str(target.parent)
        )
    zarr_format = 3 if version == "0.5" else 2
    group = zarr.open_group(str(target), mode="w-", zarr_format=zarr_format)
    chunks = slice_chunks(shape, stored, chunk_slices)
    names = ["z", "y", "x"][-len(shape) :]
    for level, level_shape in enumerate(level_shapes(shape, n_levels)):
        level_chunks = tuple(min(c, n) for c, n in zip(chunks, level_shape, strict=True))
        options: dict[str, Any] = {}
        if zarr_format == 3:
            options["dimension_names"] = names
        else:
            options["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        group.create_array(
            str(level),
            shape=level_shape,
            chunks=level_chunks,
            dtype=stored,
            fill_value=0,
            **options,
        )
    _write_ngff_metadata(group, checked, unit, n_levels, version, name or target.name)
    group.attrs[METADATA_KEY] = {
        **_record_dict(kind, checked, unit, provenance),
        "every_chunk_stored": True,  # read back: a missing chunk is a loss, not zeros
    }
    return target


def _write_ngff_metadata(group, voxel_size, unit, n_levels, version, name) -> None:
    import warnings

    with warnings.catch_warnings():
        # ome-zarr warns about units it does not list, and about its own deprecations
        warnings.simplefilter("ignore")
        from ome_zarr.format import FormatV04, FormatV05
        from ome_zarr.writer import write_multiscales_metadata

        fmt = FormatV05() if version == "0.5" else FormatV04()
        write_multiscales_metadata(
            group,
            level_datasets(voxel_size, n_levels),
            fmt=fmt,
            axes=axes_metadata(len(voxel_size), unit),
            name=name,
        )


def _open_group(path: Path, mode: str):
    zarr = _zarr()
    try:
        return zarr.open_group(str(path), mode=mode)
    except Exception as error:  # noqa: BLE001 - zarr raises several kinds for a non-store
        raise InvalidInputError(f"{path}: not a zarr group ({_reason(error)})") from error


def write_zarr_slices(path: str | os.PathLike, start: int, block: np.ndarray) -> None:
    """Write slices ``[start, start + len(block))`` of a store made by :func:`create_zarr`.

    Every level is written (Y and X downsampled from ``block``). ``start`` and the end
    must fall on chunk boundaries (or the end of the volume), so that writers of
    different z-ranges never touch the same chunk.

    Raises
    ------
    InvalidInputError
        When the block does not fit the store or is not chunk-aligned.
    """
    target = Path(path)
    group = _open_group(target, "r+")
    record = group.attrs.get(METADATA_KEY) or {}
    kind = record.get("kind", "image") if isinstance(record, dict) else "image"
    full = group["0"]
    block = np.asarray(block)
    stop = int(start) + block.shape[0]
    if block.shape[1:] != tuple(full.shape[1:]) or start < 0 or stop > full.shape[0]:
        raise InvalidInputError(
            f"{target}: slices {start}..{stop - 1} of shape {block.shape[1:]} do not fit the "
            f"store's shape {tuple(full.shape)}"
        )
    depth = full.chunks[0]
    if start % depth or (stop % depth and stop != full.shape[0]):
        raise InvalidInputError(
            f"{target}: slices {start}..{stop - 1} are not aligned to its {depth}-slice chunks"
        )
    level, data = 0, block.astype(full.dtype, copy=False)
    while str(level) in group:
        _every_chunk(group[str(level)])[start:stop] = data
        level += 1
        data = downsample_yx(data, kind)


def _every_chunk(array):
    """The array, writing chunks of only the fill value too (so a missing chunk is a loss)."""
    return array.with_config({"write_empty_chunks": True})


def update_zarr_record(path: str | os.PathLike, **fields: Any) -> None:
    """Replace fields (e.g. ``provenance``) of the napari-scigen record of a store."""
    from napari_scigen.core.provenance import to_jsonable

    group = _open_group(Path(path), "r+")
    record = dict(group.attrs.get(METADATA_KEY) or {})
    record.update(to_jsonable(fields))
    group.attrs[METADATA_KEY] = record


def _replace_folder(temporary: Path, target: Path) -> None:
    """Move the finished ``temporary`` store to ``target``, replacing an old one last."""
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"{target} exists and is not a folder; cannot replace it")
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{secrets.token_hex(6)}.old")
        os.replace(target, old)
    try:
        os.replace(temporary, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_zarr(
    path: str | os.PathLike,
    data: Any,
    *,
    voxel_size: Sequence[float] | None = None,
    unit: str = "um",
    provenance: dict | None = None,
    kind: str = "image",
    chunk_slices: int | None = None,
    levels: int | None = None,
    ngff_version: str = DEFAULT_NGFF_VERSION,
) -> Path:
    """Write a volume (or slice) as OME-Zarr, atomically, with calibration and provenance.

    Parameters
    ----------
    path : str or path-like
        Target ``.zarr``/``.ome.zarr`` store; an existing store is replaced only once
        the new one is complete.
    data : array-like
        ``(Z, Y, X)`` or ``(Y, X)``; numpy, memmap or dask (written a slab at a time,
        never whole). dtypes are stored as by :func:`~napari_scigen.core.io.write_volume`.
    voxel_size, unit, provenance, kind
        As for :func:`~napari_scigen.core.io.write_volume`.
    chunk_slices : int, optional
        z-slices per chunk (default: about 4 MiB per chunk, see :func:`slice_chunks`).
    levels : int or None
        Resolution levels (None: until the smallest is at most 1024 px; 1: none).
    ngff_version : {"0.5", "0.4"}
        NGFF 0.5 on zarr v3 (default), or 0.4 on zarr v2 for older readers.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InvalidInputError
        Non-numeric or empty data, unsupported dimensions, bad voxel size, kind,
        levels or version, or values that cannot be stored losslessly.
    """
    from .write import _slab_bytes, _storage_dtype

    target = Path(path).expanduser()
    if not (hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "ndim")):
        data = np.asarray(data)
    if data.ndim not in (2, 3) or min(data.shape) == 0:
        raise InvalidInputError(
            f"can write 2D (Y, X) or 3D (Z, Y, X) data, got shape {tuple(data.shape)}"
        )
    if np.dtype(data.dtype).kind not in "biuf":
        raise InvalidInputError(f"cannot write {data.dtype} data: volumes must be numeric")
    if kind not in ("image", "labels"):
        raise InvalidInputError(f"kind must be 'image' or 'labels', got {kind!r}")
    dtype, note = _storage_dtype(data, kind)
    if not target.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, f"folder {target.parent} does not exist", str(target.parent)
        )
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        create_zarr(
            temporary,
            data.shape,
            dtype,
            voxel_size=voxel_size,
            unit=unit,
            provenance=provenance,
            kind=kind,
            chunk_slices=chunk_slices,
            levels=levels,
            ngff_version=ngff_version,
            name=target.name,
        )
        if note:
            update_zarr_record(temporary, stored_dtype_note=note)
        if data.ndim == 2:
            _write_plane(temporary, np.asarray(data).astype(dtype, copy=False), kind)
        else:
            _write_slabs(temporary, data, dtype, _slab_bytes())
        _replace_folder(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(temporary)
        raise
    return target


def _write_plane(path: Path, plane: np.ndarray, kind: str) -> None:
    group = _open_group(path, "r+")
    level = 0
    while str(level) in group:
        _every_chunk(group[str(level)])[...] = plane
        level += 1
        plane = downsample_yx(plane, kind)


def _write_slabs(path: Path, data: Any, dtype: np.dtype, slab_bytes: int) -> None:
    group = _open_group(path, "r+")
    depth = group["0"].chunks[0]
    plane_bytes = max(1, math.prod(data.shape[1:]) * np.dtype(data.dtype).itemsize)
    per_slab = max(depth, (slab_bytes // plane_bytes) // depth * depth)
    for start in range(0, data.shape[0], per_slab):
        slab = data[start : start + per_slab]
        slab = slab.compute() if hasattr(slab, "compute") else np.asarray(slab)
        write_zarr_slices(path, start, np.ascontiguousarray(slab, dtype=dtype))
        del slab
