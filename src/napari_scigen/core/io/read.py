"""Read microCT volumes: multi-page TIFFs, ImageJ hyperstacks and folders of slices.

- a multi-page TIFF (each page one slice), including files written by
  ``tifffile`` (JSON "shaped" description) and by other software;
- an ImageJ hyperstack: the series axes from ``tifffile`` are used, singleton
  axes are dropped and the result is ``(Z, Y, X)``; a channel axis (ImageJ
  ``C`` or RGB samples ``S``) longer than 1 becomes the first axis and is
  reported as ``metadata["channel_axis"] = 0``. An ImageJ ``C`` axis longer than
  :data:`MAX_CHANNELS_WITHOUT_SLICES` with no Z axis is read as slices: that is
  what ``tifffile.imwrite(..., imagej=True)`` makes of a 3D array written
  without ``axes`` (the reinterpretation is noted in ``metadata["notes"]``);
- a folder (or list) of single-slice TIFFs, stacked in natural sort order
  (``slice2`` before ``slice10``); hidden files are ignored and every slice must
  share shape and dtype.

Accepted dtypes: uint8, uint16, int16 and float32 (plus uint32/int32 for label
files written by :func:`write_volume`); masks and labels (``labels=True``) may use
any integer or bool dtype. Volumes larger than
``lazy_threshold_bytes`` open lazily: a read-only ``numpy.memmap`` when the
data are stored contiguous and uncompressed, otherwise a dask array with one
page (or one file) per chunk. Either way only the slices you index are read.
Calibration: see :mod:`napari_scigen.core.io.calibration`. Files holding several
image series: see :mod:`napari_scigen.core.io.series`. A volume written by
:func:`write_volume` with one slice keeps its Z axis (``(1, Y, X)``) and Z voxel size.

Nothing larger than the memory available is allocated: an in-memory read (and, for
lazy reads, one slice) is checked first (:mod:`napari_scigen.core.io.memory`).
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_scigen.core.provenance import to_jsonable
from napari_scigen.core.validation import InvalidInputError

from .axes import _apply_plan, _plan_axes
from .calibration import _spatial_voxel_size, _tag_calibration
from .errors import _DECODE_ERRORS, _broken_file_error, _collect_tifffile_messages, _describe
from .files import list_tiff_slices
from .lazy import _as_dask, _file_token, _series_length, _series_page, _SliceFiles, _TiffPages
from .memory import check_fits_in_memory
from .record import _find_record, _record_kind, _record_notes
from .series import check_declared_sizes, select_series
from .volume import _LABEL_ONLY_DTYPES, _SUPPORTED, Volume
from .zarr_read import read_zarr
from .zarr_store import is_zarr_path

#: Volumes larger than this many bytes open lazily by default (2 GiB).
DEFAULT_LAZY_THRESHOLD_BYTES = 2 * 1024**3


def _check_dtype(dtype: np.dtype, kind: str, path: Path, labels: bool = False) -> None:
    native = dtype.newbyteorder("=")
    if native in _SUPPORTED or (kind == "labels" and native in _LABEL_ONLY_DTYPES):
        return
    if labels and native.kind in "biu":
        return
    raise _broken_file_error(
        path,
        f"unsupported dtype {native}; napari-scigen reads uint8, uint16, int16 and float32 "
        "volumes: convert the file (e.g. in Fiji: Image > Type) first",
    )


def _data_end(series) -> int:
    """Byte offset just past the last image data the series claims to hold."""
    if series.dataoffset is not None:
        return int(series.dataoffset) + int(series.nbytes)
    end = 0
    for index in range(_series_length(series)):
        page = _series_page(series, index)
        if page is None:
            continue
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
            if count:
                end = max(end, int(offset) + int(count))
    return end


def _check_complete(path: Path, series, messages: list[str]) -> None:
    broken = [m for m in messages if "invalid page offset" in m or "corrupted" in m]
    if broken:
        raise _broken_file_error(
            path,
            "the file is truncated or damaged (" + "; ".join(dict.fromkeys(broken)) + ")",
        )
    size = path.stat().st_size
    end = _data_end(series)
    if end > size:
        raise _broken_file_error(
            path,
            f"the file is truncated: its image data end at byte {end:,} but the file has "
            f"only {size:,} bytes (incomplete copy or download?)",
        )


def _want_lazy(nbytes: int, lazy: bool | None, threshold: int) -> bool:
    return bool(lazy) if lazy is not None else nbytes > threshold


def _check_memory(path: Path, shape, dtype, nbytes: int, lazy: bool) -> None:
    """Refuse a read that cannot fit: the whole volume, or one slice of a lazy one."""
    described = f"{path.name} ({' x '.join(map(str, shape))} {np.dtype(dtype)})"
    if lazy:
        check_fits_in_memory(nbytes, f"one slice of {described}")
    else:
        check_fits_in_memory(nbytes, described)


def _record_keeps_z(record: dict | None, axes: str) -> bool:
    """Whether our record says the file held a 3D volume whose single slice was squeezed."""
    values = (record or {}).get("voxel_size")
    return axes == "YX" and isinstance(values, list) and len(values) == 3


def _read_tiff_file(
    path: Path, lazy: bool | None, threshold: int, series_index: int | None, labels: bool
) -> Volume:
    metadata: dict[str, Any] = {}
    try:
        with _collect_tifffile_messages() as messages, tifffile.TiffFile(path) as tif:
            series, series_note = select_series(tif, path, series_index)
            shape, axes, dtype = tuple(series.shape), str(series.axes), np.dtype(series.dtype)
            _check_complete(path, series, messages)
            check_declared_sizes(path, series)
            record = _find_record(tif)
            kind = _record_kind(record)
            _check_dtype(dtype, kind, path, labels)
            plan = _plan_axes(shape, axes, path)
            imagej = dict(tif.imagej_metadata or {})
            calibration = _tag_calibration(series.keyframe, imagej)
            metadata.update(source_axes=axes, axes=plan.axes)
            if imagej:
                if record is not None:
                    imagej.pop("Info", None)
                metadata["imagej"] = to_jsonable(imagej)
            notes = plan.notes + calibration.notes + _record_notes(record)
            if series_note:
                notes = [series_note, *notes]
            if series_index is not None:
                metadata["series"] = int(series_index)
            if messages:
                metadata["tifffile_messages"] = list(messages)
            use_lazy = _want_lazy(int(series.nbytes), lazy, threshold)
            plane_bytes = int(np.dtype(dtype).itemsize * math.prod(series.keyframe.shape))
            _check_memory(path, shape, dtype, plane_bytes if use_lazy else series.nbytes, use_lazy)
            if use_lazy:
                data, storage = _open_lazy(path, tif, series, series_index)
            else:
                data, storage = series.asarray(), "memory"
    except InvalidInputError:
        raise
    except _DECODE_ERRORS as exc:
        raise _broken_file_error(path, f"cannot read as TIFF: {_describe(exc)}") from exc
    if notes:
        metadata["notes"] = notes
    metadata["storage"] = storage
    data = _apply_plan(data, plan)
    if storage == "memory":
        data = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("="), copy=False)
    if _record_keeps_z(record, plan.axes):
        data = data[np.newaxis]
        metadata["axes"] = "ZYX"
    spatial_ndim = len(metadata["axes"].replace("C", ""))
    spatial, unit = _spatial_voxel_size(calibration, record, spatial_ndim, metadata)
    voxel_size = spatial
    if "C" in plan.axes:
        metadata["channel_axis"] = 0
        voxel_size = (1.0,) + spatial
    return Volume(
        data=data,
        voxel_size=tuple(float(v) for v in voxel_size),
        unit=unit,
        provenance=(record or {}).get("provenance"),
        kind=kind,
        source=str(path),
        lazy=storage != "memory",
        metadata=metadata,
    )


def _open_lazy(
    path: Path, tif: tifffile.TiffFile, series, series_index: int | None
) -> tuple[Any, str]:
    """A memmap when the data are contiguous and uncompressed, else a dask array."""
    dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
    shape = tuple(series.shape)
    if series.dataoffset is not None:
        mapped = np.memmap(path, dtype=dtype, mode="r", offset=int(series.dataoffset), shape=shape)
        if dtype.isnative:
            return mapped, "memmap"
        import dask.array as da

        chunks = (1,) * (len(shape) - 2) + shape[-2:]
        return da.from_array(mapped, chunks=chunks).astype(dtype.newbyteorder("=")), "dask"
    plane_shape = tuple(series.keyframe.shape)
    lead_shape = shape[: len(shape) - len(plane_shape)]
    if tuple(lead_shape) + plane_shape != shape or math.prod(lead_shape) != _series_length(series):
        # pages do not map one-to-one onto planes (unusual layouts): read it all
        return series.asarray(), "memory"
    planes = _TiffPages(path, lead_shape, plane_shape, series.dtype, series_index)
    return _as_dask(planes, _file_token([path])), "dask"


def _slice_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one slice file, checking that it holds one complete 2D slice."""
    try:
        with _collect_tifffile_messages() as messages, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError("no image data found")
            series = tif.series[0]
            _check_complete(path, series, messages)
            check_declared_sizes(path, series)
            shape = tuple(n for n in series.shape if n != 1) or (1, 1)
            if len(shape) != 2:
                raise _broken_file_error(
                    path,
                    f"holds {series.shape} (axes {series.axes}), not one 2D slice; a folder must "
                    "contain one grayscale slice per file",
                )
            return tuple(series.shape[-2:]), np.dtype(series.dtype)
    except InvalidInputError:
        raise
    except _DECODE_ERRORS as exc:
        raise _broken_file_error(path, f"cannot read as TIFF: {_describe(exc)}") from exc


def _read_slice_files(
    files: Sequence[Path], source: str, lazy: bool | None, threshold: int, labels: bool = False
) -> Volume:
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(errno.ENOENT, f"no such file: {path}", str(path))
    first = files[0]
    try:
        with _collect_tifffile_messages(), tifffile.TiffFile(first) as tif:
            record = _find_record(tif)
            imagej = dict(tif.imagej_metadata or {})
            calibration = _tag_calibration(tif.pages[0], imagej)
    except _DECODE_ERRORS as exc:
        raise _broken_file_error(first, f"cannot read as TIFF: {_describe(exc)}") from exc
    kind = _record_kind(record)
    shape0, dtype0 = None, None
    for path in files:
        shape, dtype = _slice_header(path)
        if shape0 is None:
            shape0, dtype0 = shape, dtype
            _check_dtype(dtype0, kind, path, labels)
        elif shape != shape0 or dtype != dtype0:
            raise _broken_file_error(
                path,
                f"slice has shape {shape} and dtype {dtype}, but {first.name} has shape "
                f"{shape0} and dtype {dtype0}; all slices in a folder must match",
            )
    metadata: dict[str, Any] = {
        "axes": "ZYX",
        "source_axes": "ZYX",
        "files": [p.name for p in files],
    }
    if calibration.notes or _record_notes(record):
        metadata["notes"] = calibration.notes + _record_notes(record)
    if imagej:
        imagej.pop("Info", None)
        metadata["imagej_first_slice"] = to_jsonable(imagej)
    planes = _SliceFiles(files, shape0, dtype0)
    nbytes = len(files) * math.prod(shape0) * dtype0.itemsize
    use_lazy = _want_lazy(nbytes, lazy, threshold)
    shape = (len(files), *shape0)
    described = Path(source)
    _check_memory(described, shape, dtype0, nbytes // len(files) if use_lazy else nbytes, use_lazy)
    if use_lazy:
        data = _as_dask(planes, _file_token(list(files)))
        metadata["storage"] = "dask"
    else:
        data = np.empty((len(files),) + shape0, dtype=planes.dtype)
        for index in range(len(files)):
            data[index] = planes._read_plane(index)
        metadata["storage"] = "memory"
    spatial, unit = _spatial_voxel_size(calibration, record, 3, metadata)
    return Volume(
        data=data,
        voxel_size=tuple(float(v) for v in spatial),
        unit=unit,
        provenance=(record or {}).get("provenance"),
        kind=kind,
        source=source,
        lazy=use_lazy,
        metadata=metadata,
    )


def read_volume(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    lazy_threshold_bytes: int = DEFAULT_LAZY_THRESHOLD_BYTES,
    lazy: bool | None = None,
    series: int | None = None,
    labels: bool = False,
) -> Volume:
    """Read a microCT volume from a TIFF file, a folder of slices or a list of slices.

    Parameters
    ----------
    path : str, path-like or sequence of them
        A multi-page TIFF or ImageJ hyperstack; a folder of single-slice TIFFs
        (natural sort order); or a list of single-slice TIFFs (stacked in the
        given order).
    lazy_threshold_bytes : int
        Volumes larger than this open lazily when ``lazy`` is None (default 2 GiB).
    lazy : bool, optional
        Force lazy (True) or in-memory (False) reading; None decides by size.
    series : int, optional
        Which image series of a TIFF file to read. ``None``: the only one, or all
        pages as one stack when every series has pages of one 2D shape and dtype
        (files written with ``append=True``); otherwise an error lists the series.
    labels : bool
        The file is a mask or label image: any integer or bool dtype is accepted.

    Returns
    -------
    Volume
        Data, voxel size (micrometres when the file's unit is known), unit,
        provenance and kind (when written by :func:`write_volume`).

    Raises
    ------
    FileNotFoundError
        When the file or folder does not exist.
    InvalidInputError
        For non-TIFF, truncated or damaged files, unsupported dtypes or layouts,
        folders without TIFFs or with mismatched slices, several image series that
        cannot be stacked; the message names the file and the problem.
    NotEnoughMemoryError
        (an ``InvalidInputError``) When the volume (or, read lazily, one slice)
        would not fit into the memory available.

    Examples
    --------
    >>> volume = read_volume("scan.tif")  # doctest: +SKIP
    >>> volume.data.shape, volume.voxel_size, volume.unit  # doctest: +SKIP
    ((512, 1024, 1024), (2.23, 2.23, 2.23), 'um')
    """
    if int(lazy_threshold_bytes) < 0:
        raise InvalidInputError("lazy_threshold_bytes must be >= 0")
    if isinstance(path, (str, os.PathLike)) and is_zarr_path(path):  # OME-Zarr / zarr store
        return read_zarr(path, lazy=lazy, lazy_threshold_bytes=lazy_threshold_bytes, labels=labels)
    if series is not None and (isinstance(series, bool) or not isinstance(series, int)):
        raise InvalidInputError(f"series must be a whole number, got {series!r}")
    threshold = int(lazy_threshold_bytes)
    if not isinstance(path, (str, os.PathLike)):
        files = [Path(p).expanduser() for p in path]
        if not files:
            raise InvalidInputError("no files given")
        if len(files) > 1:
            return _read_slice_files(files, str(files[0].parent), lazy, threshold, labels)
        path = files[0]
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, f"no such file or folder: {path}", str(path))
    if path.is_dir():
        files = list_tiff_slices(path)
        if not files:
            raise InvalidInputError(f"folder {path} contains no .tif/.tiff files")
        return _read_slice_files(files, str(path), lazy, threshold, labels)
    return _read_tiff_file(path, lazy, threshold, series, labels)
