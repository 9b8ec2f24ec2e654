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
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from napari_scigen.core.validation import InvalidInputError

from .memory import check_fits_in_memory, format_bytes
from .ngff import axis_names, level_scale, multiscales_of, spatial_calibration
from .record import METADATA_KEY
from .volume import _LABEL_ONLY_DTYPES, _SUPPORTED, Volume
from .zarr_store import _reason, _zarr, is_zarr_store


class _Image:
    """An opened zarr image: its level arrays, axis names, scale and our record."""

    def __init__(self, path: Path) -> None:
        zarr = _zarr()
        self.path = path
        if path.is_dir() and not is_zarr_store(path):
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
            self.level_paths: list[str] = []
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
        self.level_paths = [str(d["path"]) for d in self.multiscale["datasets"]]
        for dataset in self.multiscale["datasets"]:
            try:
                array = node[dataset["path"]]
            except KeyError:
                raise InvalidInputError(
                    f"{path}: the OME-NGFF metadata name dataset {dataset['path']!r}, which "
                    "is missing (incomplete copy?)"
                ) from None
            except (OSError, MemoryError):
                raise
            except Exception as error:  # noqa: BLE001 - zarr's checks of the array metadata
                raise InvalidInputError(
                    f"{path}: dataset {dataset['path']!r} has broken metadata ({_reason(error)})"
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


#: A store split into more chunks than this ...
MANY_CHUNKS = 1_000_000
#: ... of fewer bytes each than this is refused: reading it is all per-chunk overhead.
SMALL_CHUNK_BYTES = 4096


def check_declared_geometry(array, path: Path, *, whole: bool, plane: bool = True) -> None:
    """Refuse what a store's metadata declares before anything is read or allocated.

    Parameters
    ----------
    array : zarr.Array
        The full-resolution level.
    path : Path
        For messages.
    whole : bool
        The whole array is about to be read into memory (else: lazily, a slice at a time).
    plane : bool
        A lazy read must at least fit one slice into memory.

    Raises
    ------
    InvalidInputError
        A chunk larger than memory; millions of tiny chunks; and via
        :class:`~napari_scigen.core.io.memory.NotEnoughMemoryError` a volume (or one
        slice of it) that cannot fit.
    """
    shape = tuple(int(n) for n in array.shape)
    chunks = tuple(int(n) for n in array.chunks)
    itemsize = np.dtype(array.dtype).itemsize
    described = f"{path.name} ({' x '.join(map(str, shape))} {np.dtype(array.dtype)})"
    chunk_bytes = math.prod(chunks) * itemsize
    check_fits_in_memory(
        2 * chunk_bytes,
        f"one stored chunk of {described} ({' x '.join(map(str, chunks))}, decoded and copied)",
        hint="the store's chunks are too large for this machine: rechunk it with smaller chunks",
    )
    n_chunks = math.prod(-(-n // c) for n, c in zip(shape, chunks, strict=True))
    if n_chunks > MANY_CHUNKS and chunk_bytes < SMALL_CHUNK_BYTES:
        raise InvalidInputError(
            f"{path.parent / described} is stored in {n_chunks:,} chunks of only "
            f"{format_bytes(chunk_bytes)} each; reading it would take hours of per-chunk "
            "overhead: rechunk it (chunks of a few slices) with zarr or ome-zarr tools first"
        )
    nbytes = math.prod(shape) * itemsize
    if whole:
        check_fits_in_memory(nbytes, described)
    elif plane and len(shape) >= 3:
        check_fits_in_memory(nbytes // max(1, shape[0]), f"one slice of {described}")


#: Chunk files are counted (to find missing ones) only up to this many chunks.
COUNT_CHUNKS_UP_TO = 1_000_000


def missing_chunks(image: _Image) -> int:
    """How many chunks of the full-resolution level are missing from a store written here.

    napari-scigen stores every chunk, also one of zeros (its record says
    ``every_chunk_stored``), so a missing chunk file is a loss (an incomplete copy, a
    deleted file) that would read back as zeros. Other stores leave empty chunks out on
    purpose: 0 for them, and for stores of more than :data:`COUNT_CHUNKS_UP_TO` chunks.
    """
    if not (image.record or {}).get("every_chunk_stored") or len(image.levels) == 0:
        return 0
    full = image.levels[0]
    expected = math.prod(-(-int(n) // int(c)) for n, c in zip(full.shape, full.chunks, strict=True))
    if expected > COUNT_CHUNKS_UP_TO:
        return 0
    folder = image.path / str(image.level_paths[0]) if image.level_paths else image.path
    found = 0
    for _root, folders, files in os.walk(folder):
        folders[:] = [f for f in folders if not f.startswith(".")]
        found += sum(1 for name in files if not name.startswith(".") and name != "zarr.json")
    return max(0, expected - found)


def refuse_missing_chunks(volume: Volume, what: str = "input") -> None:
    """Refuse a volume read from a store that lost chunks (see :func:`missing_chunks`).

    Raises
    ------
    InvalidInputError
    """
    lost = volume.metadata.get("missing_chunks")
    if lost:
        raise InvalidInputError(
            f"{what} {volume.source}: {lost} of its stored chunks are missing (an incomplete "
            "copy, or a batch job that has not finished?); they would read as zeros: copy "
            "the store again or finish the job first"
        )


def _check_dtype(dtype: np.dtype, kind: str, path: Path) -> None:
    try:
        native = np.dtype(dtype).newbyteorder("=")
    except (TypeError, ValueError):  # text and other variable-width dtypes
        native = None
    if native is None:
        raise InvalidInputError(
            f"{path}: unsupported dtype {dtype}; napari-scigen reads uint8, uint16, int16 and "
            "float32 volumes: convert the data first"
        )
    if native in _SUPPORTED or (kind == "labels" and native in _LABEL_ONLY_DTYPES):
        return
    raise InvalidInputError(
        f"{path}: unsupported dtype {native}; napari-scigen reads uint8, uint16, int16 and "
        "float32 volumes: convert the data first"
    )


class _CheckedArray:
    """A zarr array whose failed chunk reads name the store (damaged or lying chunks)."""

    def __init__(self, array, path: Path) -> None:
        self.array, self.path = array, path
        self.shape, self.dtype, self.ndim = tuple(array.shape), np.dtype(array.dtype), array.ndim
        self.chunks = tuple(array.chunks)

    def __getitem__(self, key):
        try:
            return self.array[key]
        except (InvalidInputError, OSError, MemoryError):
            raise
        except Exception as error:  # noqa: BLE001 - codecs raise many kinds for bad bytes
            raise InvalidInputError(
                f"{self.path}: a stored chunk cannot be decoded ({type(error).__name__}: "
                f"{_reason(error)}); the store is damaged or its metadata (dtype, codecs, "
                "chunk shape) do not match its chunks"
            ) from None


def _lazy_levels(image: _Image, index: tuple) -> list:
    import dask.array as da

    levels, token = [], secrets.token_hex(8)  # a fresh name: chunks may land after opening
    for number, level in enumerate(image.levels):
        checked = _CheckedArray(level, image.path)
        name = f"napari-scigen-zarr-{number}-{token}"
        levels.append(da.from_array(checked, chunks=checked.chunks, name=name, lock=False)[index])
    return levels


def open_zarr_levels(path: str | os.PathLike) -> list:
    """Every resolution level of a zarr image as a lazy dask array, largest first.

    Singleton non-spatial axes are dropped as by :func:`read_zarr`.
    """
    target = Path(path).expanduser()
    if not target.exists():
        raise FileNotFoundError(errno.ENOENT, f"no such store: {target}", str(target))
    image = _Image(target)
    index, _ = image.selection()
    for level in image.levels:
        check_declared_geometry(level, target, whole=False, plane=False)
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
    if not (labels and getattr(full.dtype, "kind", "") in "biu"):
        _check_dtype(full.dtype, kind, target)
    index, axes = image.selection()
    names_kept = [n for n, i in zip(image.names, index, strict=True) if not isinstance(i, int)]
    scale_kept = [s for s, i in zip(image.scale, index, strict=True) if not isinstance(i, int)]
    try:
        spatial, unit = spatial_calibration(image.multiscale, names_kept, scale_kept, image.record)
    except InvalidInputError as error:
        raise InvalidInputError(f"{target}: {error}") from None
    nbytes = math.prod(full.shape) * full.dtype.itemsize
    use_lazy = bool(lazy) if lazy is not None else nbytes > int(lazy_threshold_bytes)
    # a multiscale store is shown a level at a time: its full-resolution slice may be huge
    check_declared_geometry(full, target, whole=not use_lazy, plane=len(image.levels) == 1)
    if use_lazy:
        data = _lazy_levels(image, index)[0]
    else:
        data = np.ascontiguousarray(_CheckedArray(full, target)[index])
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
    notes = []
    if record.get("stored_dtype_note"):
        notes.append(f"written by napari-scigen: {record['stored_dtype_note']}")
    lost = missing_chunks(image)
    if lost:
        metadata["missing_chunks"] = lost
        notes.append(
            f"{lost} stored chunk(s) are missing (incomplete copy, or a batch job still "
            "running?): they read as zeros"
        )
    if notes:
        metadata["notes"] = notes
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
