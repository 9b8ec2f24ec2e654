"""Write volumes atomically as TIFF, with voxel size and the napari-scigen record.

The file is written to a temporary file beside the target
(``.NAME.PID.HEX.tmp``, hidden, so a slice folder never lists it) and moved into
place with :func:`os.replace`, so readers never see a half-written file and a failed
write (an error, Ctrl-C, or SIGTERM in the command line) leaves an existing target
untouched and no temporary file. Temporary files of the same target left by a process
that was killed outright are removed by the next write. uint8, uint16 and float32 volumes
are written as ImageJ hyperstacks (axes ``ZYX``; ``spacing``, ``unit`` and the
X/Y resolution make Fiji show the voxel size). ImageJ has no signed 16-bit
or 32-bit integer type, so int16 volumes (and uint32/int32 labels) are written
as plain TIFF (BigTIFF when needed) with resolution tags in pixels per
centimetre; Z spacing then lives only in our JSON record. Lazy input (dask, memmap) is
written slab by slab, never materialised whole.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import math
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_scigen.core.validation import InvalidInputError

from .calibration import MICROMETRES_PER_UNIT, _canonical_unit, _check_voxel_size, _unit_factor
from .files import is_tiff_path
from .record import METADATA_KEY, _record_json
from .volume import _SUPPORTED
from .zarr_store import is_zarr_path
from .zarr_write import write_zarr

#: dtypes ImageJ can hold; the others are written as plain TIFF.
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
#: Plain TIFF files larger than this are written as BigTIFF.
_BIGTIFF_BYTES = 2**32 - 2**25
#: A temporary file of an older layout (no process id in its name) untouched this
#: long is stale.
_STALE_TEMP_SECONDS = 3600.0


def _slab_bytes() -> int:
    """Bytes of lazy input computed at a time: ``napari_scigen.core.io._SLAB_BYTES``.

    Looked up on the package at call time, so that setting the package attribute
    (tuning, or a test's ``monkeypatch``) takes effect.
    """
    from napari_scigen.core import io

    return io._SLAB_BYTES


def _storage_dtype(data: Any, kind: str) -> tuple[np.dtype, str | None]:
    """dtype to store ``data`` with, and a note when it differs from the input."""
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "biuf":
        raise InvalidInputError(
            f"cannot write {dtype} data as TIFF: napari-scigen writes numeric volumes "
            "(uint8, uint16, int16, float32)"
        )
    native = dtype.newbyteorder("=")
    if native == np.bool_:
        return np.dtype(np.uint8), "bool stored as uint8 (0/1)"
    if kind == "image" and native in _SUPPORTED:
        return native, None
    if native.kind == "f":
        return np.dtype(np.float32), f"{native} stored as float32"
    if kind == "labels" and native in (np.dtype(np.uint8), np.dtype(np.uint16)):
        return native, None
    low, high = _value_range(data)
    if kind == "labels":
        candidates = (np.uint8, np.uint16, np.uint32) if low >= 0 else (np.int16, np.int32)
    else:
        candidates = (np.uint8, np.uint16, np.int16)
    for candidate in candidates:
        info = np.iinfo(candidate)
        if info.min <= low and high <= info.max:
            target = np.dtype(candidate)
            return target, None if target == native else f"{native} stored as {target}"
    raise InvalidInputError(
        f"cannot store {kind} values {low}..{high} ({native}) losslessly in "
        + ("uint8/uint16/uint32/int16/int32" if kind == "labels" else "uint8, uint16 or int16")
        + "; rescale or convert the data (e.g. to float32) first"
    )


def _value_range(data: Any) -> tuple[int, int]:
    if hasattr(data, "compute") and hasattr(data, "chunks"):
        import dask

        low, high = dask.compute(data.min(), data.max())
    else:
        low, high = np.min(data), np.max(data)
    return int(low), int(high)


def _slabs(data: Any, dtype: np.dtype) -> Iterator[np.ndarray]:
    """Yield 2D pages of ``data`` (first axis), computing at most ~256 MiB at a time."""
    if data.ndim == 2:
        yield np.ascontiguousarray(np.asarray(data), dtype=dtype)
        return
    depth = int(data.shape[0])
    plane_bytes = max(1, math.prod(data.shape[1:]) * np.dtype(data.dtype).itemsize)
    per_slab = max(1, _slab_bytes() // plane_bytes)
    bounds = list(range(0, depth, per_slab)) + [depth]
    chunks = getattr(data, "chunks", None)
    if chunks is not None and hasattr(data, "compute"):
        # dask: group whole chunks along Z so that no chunk is computed twice
        bounds, previous_end = [0], 0
        for end in np.cumsum(chunks[0]).tolist():
            if end - bounds[-1] > per_slab and previous_end > bounds[-1]:
                bounds.append(previous_end)
            previous_end = end
        bounds.append(depth)
    first_page = True
    for start, stop in itertools.pairwise(bounds):
        slab = data[start:stop]
        slab = slab.compute() if hasattr(slab, "compute") else np.asarray(slab)
        slab = np.ascontiguousarray(slab, dtype=dtype)
        for index in range(len(slab)):
            page = slab[index]
            if first_page or index == len(slab) - 1:
                # tifffile keeps the first page for the whole write (it peeks at it)
                # and the last page while asking for the next: copies of these two
                # let every slab be freed before the next one is computed
                page = page.copy()
                first_page = False
            yield page
        del slab, page


def _write_tiff(file: str, data: Any, dtype: np.dtype, voxel_size, unit: str, record_json: str):
    shape = tuple(int(n) for n in data.shape)
    y_size, x_size = voxel_size[-2:]
    imagej = dtype in _IMAGEJ_DTYPES
    nbytes = math.prod(shape) * dtype.itemsize
    in_memory = isinstance(data, np.ndarray) and not isinstance(data, np.memmap)
    options: dict[str, Any] = {"photometric": "minisblack"}
    if in_memory:
        pages: Any = np.ascontiguousarray(data, dtype=dtype)
    else:
        pages = _slabs(data, dtype)
        options.update(shape=shape, dtype=dtype)
    calibrated = unit != "pixel"
    if imagej:
        ij: dict[str, Any] = {"axes": "ZYX" if len(shape) == 3 else "YX", "Info": record_json}
        if calibrated:
            ij["unit"] = unit
            if len(shape) == 3:
                ij["spacing"] = float(voxel_size[0])
        options.update(metadata=ij)
        if calibrated:
            options.update(resolution=(1.0 / x_size, 1.0 / y_size))
    else:
        options.update(metadata={METADATA_KEY: json.loads(record_json)[METADATA_KEY]})
        factor = _unit_factor(unit)
        if factor is not None:
            centimetre = MICROMETRES_PER_UNIT["cm"]
            options.update(
                resolution=(centimetre / (x_size * factor), centimetre / (y_size * factor)),
                resolutionunit="CENTIMETER",
            )
        elif calibrated:
            options.update(resolution=(1.0 / x_size, 1.0 / y_size), resolutionunit="NONE")
    import warnings

    with warnings.catch_warnings():
        # ImageJ files > 4 GiB are written "truncated" (contiguous data, one IFD),
        # which Fiji and tifffile read; tifffile warns about it.
        warnings.filterwarnings("ignore", message=".*truncating ImageJ file")
        bigtiff = not imagej and nbytes > _BIGTIFF_BYTES
        with tifffile.TiffWriter(file, bigtiff=bigtiff, imagej=imagej) as writer:
            writer.write(pages, **options)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # exists (another user's) or cannot tell: keep its file
    return True


def _remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove temporary files of ``target`` whose writer is gone; return them.

    ``.NAME.PID.HEX.tmp`` is stale when process PID no longer runs; an older
    ``.NAME.HEX.tmp`` when it was not modified for :data:`_STALE_TEMP_SECONDS`.
    """
    import time

    removed = []
    prefix = f".{target.name}."
    try:
        candidates = [
            p for p in target.parent.iterdir() if p.name.startswith(prefix) and p.suffix == ".tmp"
        ]
    except OSError:
        return removed
    for candidate in candidates:
        middle = candidate.name[len(prefix) : -len(".tmp")].split(".")
        try:
            if len(middle) == 2 and middle[0].isdigit():
                stale = not _process_alive(int(middle[0]))
            else:
                stale = time.time() - candidate.stat().st_mtime > _STALE_TEMP_SECONDS
            if stale and candidate.is_file():
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue
    return removed


def _fsync(path: Path) -> None:
    """Flush a written file to disk so a crash cannot leave a renamed empty file."""
    descriptor = os.open(path, os.O_RDWR)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_volume(
    path: str | os.PathLike,
    data: Any,
    *,
    voxel_size: Sequence[float] | None = None,
    unit: str = "um",
    provenance: dict | None = None,
    kind: str = "image",
) -> Path:
    """Write a volume (or slice) atomically as TIFF with calibration and provenance.

    Parameters
    ----------
    path : str or path-like
        Target ``.tif``/``.tiff`` file; an existing file is replaced only once the
        new one is complete.
    data : array-like
        ``(Z, Y, X)`` or ``(Y, X)``; numpy, memmap or dask (written slab by slab).
        uint8/uint16/int16/float32 are stored as they are. Other numeric dtypes
        are stored losslessly in the smallest of those that holds the values
        (labels may also use uint32/int32), floats as float32, bool as uint8;
        the conversion is recorded.
    voxel_size : sequence of float, optional
        Voxel size per axis in ``unit`` (Z, Y, X order). None writes an
        uncalibrated file (1.0 ``"pixel"``) whatever ``unit`` says.
    unit : str
        Length unit of ``voxel_size`` (``"um"``, ``"nm"``, ``"mm"`` ...).
    provenance : dict, optional
        JSON-serialisable provenance (see
        :func:`napari_scigen.core.provenance.make_provenance`).
    kind : {"image", "labels"}
        Stored in the record so the napari reader opens labels as a Labels layer.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InvalidInputError
        For non-numeric data, unsupported dimensions, a bad voxel size or kind,
        a non-TIFF file name, or values that cannot be stored losslessly.
    """
    if is_zarr_path(path):  # OME-Zarr store: same arguments, written by core.io.zarr_write
        return write_zarr(
            path, data, voxel_size=voxel_size, unit=unit, provenance=provenance, kind=kind
        )
    target = Path(path).expanduser()
    if not is_tiff_path(target):
        raise InvalidInputError(f"{target.name}: the file name must end in .tif or .tiff")
    if kind not in ("image", "labels"):
        raise InvalidInputError(f"kind must be 'image' or 'labels', got {kind!r}")
    if not (hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "ndim")):
        data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise InvalidInputError(
            f"can write 2D (Y, X) or 3D (Z, Y, X) data, got shape {tuple(data.shape)}; "
            "write one channel or time point per file"
        )
    if min(data.shape) == 0:
        raise InvalidInputError(f"data are empty (shape {tuple(data.shape)})")
    dtype, note = _storage_dtype(data, kind)
    checked = _check_voxel_size(voxel_size, data.ndim)
    if checked is None:
        checked, unit = (1.0,) * data.ndim, "pixel"
    unit = _canonical_unit(unit)
    record_json = _record_json(kind, checked, unit, provenance, note)

    if target.is_dir():
        raise InvalidInputError(
            f"{target} is a folder: give a file name (e.g. {target / 'out.tif'})"
        )
    if not target.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, f"folder {target.parent} does not exist", str(target.parent)
        )
    _remove_stale_temporaries(target)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: never clobber another writer's temporary file; 0o666 & umask as for open()
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        _write_tiff(str(temporary), data, dtype, checked, unit, record_json)
        _fsync(temporary)
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        if isinstance(error, OSError) and error.errno is None:  # "N requested and M written"
            raise _short_write(target, error) from error
        raise
    return target


def _short_write(target: Path, error: OSError) -> OSError:
    """A write that stopped short without an errno, as an error naming the file and why."""
    import shutil

    try:
        full = shutil.disk_usage(target.parent).free < 64 * 1024**2
    except OSError:
        full = False
    code = errno.ENOSPC if full else errno.EIO
    return OSError(code, f"writing {target.name} stopped short ({error})", str(target))
