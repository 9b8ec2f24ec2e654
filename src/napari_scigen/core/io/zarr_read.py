"""Read OME-Zarr images (and plain 2D/3D zarr arrays) as a :class:`~.volume.Volume`.

Reading is lazy (dask) above ``lazy_threshold_bytes`` or on request; plain zarr arrays
(no NGFF metadata) are read too, uncalibrated unless they carry our record. zarr v3
stores with NGFF 0.5 and zarr v2 stores with NGFF 0.4 are read. Singleton non-spatial
axes (a time point, one channel) are dropped; the result is ``[C,] [Z,] Y, X``.
The store layout is described in :mod:`~napari_scigen.core.io.zarr_store`.
"""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_scigen.core.validation import InvalidInputError

from .ngff import axis_names, level_scale, multiscales_of, spatial_calibration
from .record import METADATA_KEY
from .volume import _LABEL_ONLY_DTYPES, _SUPPORTED, Volume
from .zarr_store import _reason, _zarr


class _Image:
    """An opened zarr image: its level arrays, axis names, scale and our record."""

    def __init__(self, path: Path) -> None:
        zarr = _zarr()
        self.path = path
        markers = ("zarr.json", ".zgroup", ".zarray")
        if path.is_dir() and not any((path / marker).is_file() for marker in markers):
            raise InvalidInputError(
                f"{path}: not a zarr store (no zarr.json, .zgroup or .zarray in it); expected "
                "an OME-Zarr image or a zarr array"
            )
        try:
            node = zarr.open(store=str(path), mode="r")
        except Exception as error:  # noqa: BLE001 - zarr raises several kinds for a non-store
            raise InvalidInputError(
                f"{path}: not a zarr store ({_reason(error)}); expected an OME-Zarr image "
                "or a zarr array"
            ) from error
        self.zarr_format = int(getattr(node.metadata, "zarr_format", 3))
        self.version: str | None = None
        if isinstance(node, zarr.Array):
            self.levels = [node]
            record = node.attrs.get(METADATA_KEY)
            self.record = record if isinstance(record, dict) else None
            self.names = ["z", "y", "x"][-node.ndim :] if node.ndim in (2, 3) else None
            if self.names is None:
                raise InvalidInputError(
                    f"{path}: a plain zarr array of shape {node.shape} has no axis names; "
                    "napari-scigen reads 2D (Y, X) or 3D (Z, Y, X) arrays or OME-Zarr images"
                )
            stored = (self.record or {}).get("voxel_size")
            ok = isinstance(stored, list) and len(stored) == node.ndim
            self.scale = [float(v) for v in stored] if ok else [1.0] * node.ndim
            self.multiscale: dict = {}
            return
        attributes = dict(node.attrs)
        record = attributes.get(METADATA_KEY)
        self.record = record if isinstance(record, dict) else None
        found = multiscales_of(attributes, str(path))
        if found is None:
            children = sorted(node.array_keys())
            hint = f"open one of its arrays (e.g. {path / children[0]}) or " if children else ""
            raise InvalidInputError(
                f"{path}: a zarr group without OME-NGFF 'multiscales' metadata (arrays: "
                f"{', '.join(children) or 'none'}); {hint}write it with napari-scigen convert"
            )
        self.multiscale, self.version = found
        self.levels = []
        for dataset in self.multiscale["datasets"]:
            try:
                array = node[dataset["path"]]
            except KeyError:
                raise InvalidInputError(
                    f"{path}: the OME-NGFF metadata name dataset {dataset['path']!r}, which "
                    "is missing (incomplete copy?)"
                ) from None
            if not isinstance(array, zarr.Array):
                raise InvalidInputError(f"{path}: dataset {dataset['path']!r} is not an array")
            self.levels.append(array)
        ndim = self.levels[0].ndim
        if any(level.ndim != ndim for level in self.levels):
            raise InvalidInputError(f"{path}: its resolution levels differ in dimensions")
        self.names = axis_names(self.multiscale, ndim, str(path))
        self.scale = level_scale(self.multiscale, 0, ndim, str(path))

    def selection(self) -> tuple[tuple, str]:
        """Index that drops singleton non-spatial axes, and the resulting axes (``CZYX``...)."""
        shape = self.levels[0].shape
        if self.names[-2:] != ["y", "x"]:
            raise InvalidInputError(
                f"{self.path}: axes {self.names} do not end in y, x; napari-scigen reads "
                "(C,) (Z,) Y, X images"
            )
        index, axes = [], ""
        for name, size in zip(self.names, shape, strict=True):
            if name in ("y", "x", "z") or (name == "c" and size > 1):
                index.append(slice(None))
                axes += name.upper()
            elif size == 1:
                index.append(0)
            else:
                raise InvalidInputError(
                    f"{self.path}: axis {name!r} has {size} entries; napari-scigen reads one "
                    "volume (one time point) per store"
                )
        return tuple(index), axes


def _check_dtype(dtype: np.dtype, kind: str, path: Path) -> None:
    native = np.dtype(dtype).newbyteorder("=")
    if native in _SUPPORTED or (kind == "labels" and native in _LABEL_ONLY_DTYPES):
        return
    raise InvalidInputError(
        f"{path}: unsupported dtype {native}; napari-scigen reads uint8, uint16, int16 and "
        "float32 volumes: convert the data first"
    )


def _lazy_levels(image: _Image, index: tuple) -> list:
    import dask.array as da

    return [da.from_zarr(level)[index] for level in image.levels]


def open_zarr_levels(path: str | os.PathLike) -> list:
    """Every resolution level of a zarr image as a lazy dask array, largest first.

    Singleton non-spatial axes are dropped as by :func:`read_zarr`.
    """
    target = Path(path).expanduser()
    if not target.exists():
        raise FileNotFoundError(errno.ENOENT, f"no such store: {target}", str(target))
    image = _Image(target)
    index, _ = image.selection()
    return _lazy_levels(image, index)


def read_zarr(
    path: str | os.PathLike,
    *,
    lazy: bool | None = None,
    lazy_threshold_bytes: int = 2 * 1024**3,
    labels: bool = False,
) -> Volume:
    """Read an OME-Zarr image (or a plain 2D/3D zarr array) as a :class:`Volume`.

    Parameters
    ----------
    path : str or path-like
        The store (a folder ending in ``.zarr``).
    lazy : bool, optional
        True: a dask array reading chunks on demand; False: in memory; None: lazy
        above ``lazy_threshold_bytes``.
    lazy_threshold_bytes : int
        See ``lazy``.
    labels : bool
        The store is a mask or label image: any integer or bool dtype is accepted.

    Returns
    -------
    Volume
        Full-resolution data, voxel size (micrometres when the unit is a known
        length), unit, provenance and kind from our record; ``metadata`` has
        ``axes``, ``storage``, ``ngff_version``, ``zarr_format``, ``chunks`` and
        ``levels`` (the number of resolution levels).

    Raises
    ------
    FileNotFoundError
        When the store does not exist.
    InvalidInputError
        Not a zarr store, malformed NGFF metadata, missing levels, unsupported
        axes or dtype; the message names the store and the problem.
    """
    target = Path(path).expanduser()
    if not target.exists():
        raise FileNotFoundError(errno.ENOENT, f"no such store: {target}", str(target))
    image = _Image(target)
    kind = (image.record or {}).get("kind", "image")
    kind = kind if kind in ("image", "labels") else "image"
    full = image.levels[0]
    if not (labels and np.dtype(full.dtype).kind in "biu"):
        _check_dtype(full.dtype, kind, target)
    index, axes = image.selection()
    names_kept = [n for n, i in zip(image.names, index, strict=True) if not isinstance(i, int)]
    scale_kept = [s for s, i in zip(image.scale, index, strict=True) if not isinstance(i, int)]
    spatial, unit = spatial_calibration(image.multiscale, names_kept, scale_kept, image.record)
    nbytes = math.prod(full.shape) * full.dtype.itemsize
    use_lazy = bool(lazy) if lazy is not None else nbytes > int(lazy_threshold_bytes)
    if use_lazy:
        data = _lazy_levels(image, index)[0]
    else:
        data = np.ascontiguousarray(full[index])
    metadata: dict[str, Any] = {
        "axes": axes,
        "source_axes": "".join(image.names).upper(),
        "storage": "dask" if use_lazy else "memory",
        "ngff_version": image.version,
        "zarr_format": image.zarr_format,
        "chunks": list(full.chunks),
        "levels": len(image.levels),
    }
    voxel_size = tuple(float(v) for v in spatial)
    if "C" in axes:
        metadata["channel_axis"] = 0
        voxel_size = (1.0,) + voxel_size
    record = image.record or {}
    if record.get("stored_dtype_note"):
        metadata["notes"] = [f"written by napari-scigen: {record['stored_dtype_note']}"]
    return Volume(
        data=data,
        voxel_size=voxel_size,
        unit=unit,
        provenance=record.get("provenance"),
        kind=kind,
        source=str(target),
        lazy=use_lazy,
        metadata=metadata,
    )
