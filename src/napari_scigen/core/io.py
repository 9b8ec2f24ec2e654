"""Read and write microCT volumes as TIFF, keeping voxel size and provenance.

Reading (:func:`read_volume`)
-----------------------------
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
files written by :func:`write_volume`). Volumes larger than
``lazy_threshold_bytes`` open lazily: a read-only ``numpy.memmap`` when the
data are stored contiguous and uncompressed, otherwise a dask array with one
page (or one file) per chunk. Either way only the slices you index are read.

Voxel size comes from the ImageJ ``spacing`` (Z) and the TIFF
``XResolution``/``YResolution`` tags (Y, X) with ``ResolutionUnit`` or the
ImageJ ``unit``; known length units are converted to micrometres (unit
``"um"``). Without calibration the voxel size is 1.0 with unit ``"pixel"``.
When Y/X are calibrated but Z is not, Z is assumed equal to X (isotropic
microCT voxels) and ``metadata["voxel_size_z_assumed"]`` is True. A 72 dpi
inch resolution is a screen default written by many programs, not a physical
pixel size, and is ignored.

Writing (:func:`write_volume`)
------------------------------
The file is written to a temporary file beside the target and moved into place
with :func:`os.replace`, so readers never see a half-written file and a failed
write leaves an existing target untouched. uint8, uint16 and float32 volumes
are written as ImageJ hyperstacks (axes ``ZYX``; ``spacing``, ``unit`` and the
X/Y resolution make Fiji show the voxel size). ImageJ has no signed 16-bit
or 32-bit integer type, so int16 volumes (and uint32/int32 labels) are written
as plain TIFF (BigTIFF when needed) with resolution tags in pixels per
centimetre; Z spacing then lives only in our JSON record. Lazy input (dask, memmap) is
written slab by slab, never materialised whole.

Where napari-scigen metadata lives
----------------------------------
Every file written here carries one JSON object::

    {"napari_scigen": {"format": 1, "kind": "image", "voxel_size": [z, y, x],
                       "unit": "um", "provenance": {...} or null}}

- ImageJ files: as the ImageJ ``Info`` property (IJMetadata tag 50839); Fiji
  shows it under *Image > Show Info* and keeps it when it re-saves the file;
- plain TIFF files: merged into tifffile's JSON ``ImageDescription`` next to
  ``"shape"``.

:func:`read_volume` looks in both places. The calibration found in the TIFF
tags wins over the JSON when the two disagree (the file was recalibrated, e.g.
in Fiji); when they agree to TIFF rational precision the exact JSON values are
returned, and the JSON supplies any axis the tags cannot describe (Z in plain
TIFF files).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import math
import os
import queue
import re
import secrets
import struct
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_scigen.core.provenance import to_jsonable
from napari_scigen.core.validation import SUPPORTED_DTYPES, InvalidInputError

__all__ = [
    "DEFAULT_LAZY_THRESHOLD_BYTES",
    "MAX_CHANNELS_WITHOUT_SLICES",
    "METADATA_KEY",
    "TIFF_SUFFIXES",
    "Volume",
    "list_tiff_slices",
    "natural_sort_key",
    "read_volume",
    "write_volume",
]

#: File name endings treated as TIFF (compared case-insensitively).
TIFF_SUFFIXES = (".tif", ".tiff")
#: Volumes larger than this many bytes open lazily by default (2 GiB).
DEFAULT_LAZY_THRESHOLD_BYTES = 2 * 1024**3
#: Key of our JSON record in ImageJ ``Info`` or in the shaped JSON description.
METADATA_KEY = "napari_scigen"
#: Version of the JSON record layout.
METADATA_FORMAT = 1
#: An ImageJ C axis longer than this, with no Z axis, is read as slices.
MAX_CHANNELS_WITHOUT_SLICES = 4

#: Micrometres per unit, for the length units we convert (keys lower-case).
MICROMETRES_PER_UNIT = {
    "um": 1.0,
    "\u00b5m": 1.0,  # micro sign
    "\u03bcm": 1.0,  # greek small letter mu
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "inch": 25400.0,
    "in": 25400.0,
}
_UNCALIBRATED_UNITS = {"", "pixel", "pixels", "px", "none"}
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_LABEL_ONLY_DTYPES = (np.dtype(np.uint32), np.dtype(np.int32))
_SUPPORTED = tuple(np.dtype(d) for d in SUPPORTED_DTYPES)
_CHANNEL_AXES = "CS"
_SLAB_BYTES = 256 * 1024**2
_BIGTIFF_BYTES = 2**32 - 2**25
_RATIONAL_RTOL = 1e-4
_SCREEN_DPI = 72.0


@dataclass
class Volume:
    """A volume (or slice) read from disk, with its calibration.

    Parameters
    ----------
    data : numpy.ndarray, numpy.memmap or dask.array.Array
        Voxels, ``(Z, Y, X)`` or ``(Y, X)``; ``(C, Z, Y, X)`` when the file has a
        channel axis (then ``metadata["channel_axis"] == 0``). A memmap or dask
        array when ``lazy``.
    voxel_size : tuple of float
        Size of a voxel along each axis of ``data`` (1.0 for a channel axis).
    unit : str
        Unit of ``voxel_size``: ``"um"`` when the file's unit is a known length,
        ``"pixel"`` when uncalibrated, otherwise the file's own unit string.
    provenance : dict or None
        The provenance record stored by :func:`write_volume`, if any.
    kind : str
        ``"image"`` or ``"labels"`` (from our record; ``"image"`` otherwise).
    source : str
        The file or folder read.
    lazy : bool
        Whether ``data`` reads slices on demand.
    metadata : dict
        Raw extras: ``axes`` of ``data``, ``source_axes``, ``storage``
        (``"memory"``, ``"memmap"`` or ``"dask"``), ``imagej`` metadata,
        ``channel_axis``, ``voxel_size_z_assumed``, ``notes`` ...
    """

    data: Any
    voxel_size: tuple[float, ...]
    unit: str = "pixel"
    provenance: dict | None = None
    kind: str = "image"
    source: str = ""
    lazy: bool = False
    metadata: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of :attr:`data`."""
        return tuple(int(n) for n in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        """dtype of :attr:`data`."""
        return np.dtype(self.data.dtype)

    @property
    def channel_axis(self) -> int | None:
        """Index of the channel axis of :attr:`data`, or None."""
        return self.metadata.get("channel_axis")


# --------------------------------------------------------------------------- helpers


def natural_sort_key(name: str) -> list:
    """Sort key that orders embedded numbers numerically (``s2`` before ``s10``).

    Parameters
    ----------
    name : str
        File name.

    Returns
    -------
    list
        Alternating lower-case text and integer parts.
    """
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_tiff_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a TIFF file name ending (no file access)."""
    return Path(path).suffix.lower() in TIFF_SUFFIXES


def list_tiff_slices(folder: str | os.PathLike) -> list[Path]:
    """TIFF files directly inside ``folder``, in natural sort order.

    Hidden files (name starting with ``.``, e.g. macOS ``._*`` files or our
    own temporary files) and sub-folders are skipped.

    Parameters
    ----------
    folder : str or path-like
        Folder to list.

    Returns
    -------
    list of pathlib.Path
        The slice files (empty when there are none).
    """
    files = [
        entry
        for entry in Path(folder).iterdir()
        if entry.is_file() and is_tiff_path(entry) and not entry.name.startswith(".")
    ]
    return sorted(files, key=lambda p: natural_sort_key(p.name))


def _unit_factor(unit: str | None) -> float | None:
    """Micrometres per ``unit``, or None when the unit is not a known length."""
    if unit is None:
        return None
    return MICROMETRES_PER_UNIT.get(str(unit).strip().lower())


def _is_uncalibrated(unit: str | None) -> bool:
    return unit is None or str(unit).strip().lower() in _UNCALIBRATED_UNITS


class _TifffileMessages(logging.Filter):
    """Collects (and hides) tifffile log records emitted by the current thread."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        self.messages.append(record.getMessage())
        return False


@contextlib.contextmanager
def _collect_tifffile_messages() -> Iterator[list[str]]:
    logger = logging.getLogger("tifffile")
    collector = _TifffileMessages()
    logger.addFilter(collector)
    try:
        yield collector.messages
    finally:
        logger.removeFilter(collector)


#: Exceptions that tifffile and the codecs raise for damaged or foreign files.
_DECODE_ERRORS = (
    ValueError,  # includes tifffile.TiffFileError
    struct.error,
    EOFError,
    IndexError,
    KeyError,
    OverflowError,
    RuntimeError,  # imagecodecs errors
)


def _broken_file_error(path: Path, problem: str) -> InvalidInputError:
    return InvalidInputError(f"{path.name}: {problem} (file: {path})")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, tifffile.TiffFileError) and text.startswith("not a TIFF file"):
        return "not a TIFF file (the header is not 'II*' or 'MM*'); is it another image format?"
    return text


# --------------------------------------------------------------------------- calibration


def _resolution_pixel_size(page) -> tuple[float | None, float | None]:
    """Pixel size (Y, X) in resolution units from the page tags, or None each."""
    sizes = []
    for tag_name in ("YResolution", "XResolution"):
        tag = page.tags.get(tag_name)
        size = None
        if tag is not None:
            value = tag.value
            try:
                numerator, denominator = (value if isinstance(value, tuple) else (value, 1))[:2]
                pixels_per_unit = float(numerator) / float(denominator)
            except (TypeError, ValueError, ZeroDivisionError):
                pixels_per_unit = 0.0
            if math.isfinite(pixels_per_unit) and pixels_per_unit > 0:
                size = 1.0 / pixels_per_unit
        sizes.append(size)
    return sizes[0], sizes[1]


def _resolution_unit_name(page) -> str | None:
    tag = page.tags.get("ResolutionUnit")
    code = int(tag.value) if tag is not None else 2  # TIFF default is inch
    return {2: "inch", 3: "cm", 4: "mm", 5: "um"}.get(code)


@dataclass
class _Calibration:
    """Calibration stated by the tags of one file (None = not stated)."""

    z: float | None
    y: float | None
    x: float | None
    unit: str
    notes: list[str]


def _tag_calibration(page, imagej: dict | None) -> _Calibration:
    """Calibration from ImageJ metadata and resolution tags, in micrometres when known."""
    notes: list[str] = []
    imagej = imagej or {}
    ij_unit = imagej.get("unit")
    if ij_unit is not None:
        ij_unit = str(ij_unit).replace("\\u00B5", "\u00b5").strip()
    if _is_uncalibrated(ij_unit):
        ij_unit = None

    size_y, size_x = _resolution_pixel_size(page)
    res_unit = _resolution_unit_name(page)
    xy_unit = None
    if size_x is not None:
        if res_unit == "inch" and ij_unit is None and abs(1.0 / size_x - _SCREEN_DPI) < 1e-6:
            notes.append("72 dpi resolution ignored (a screen default, not a pixel size)")
        else:
            xy_unit = res_unit or ij_unit
    if xy_unit is None:
        size_y = size_x = None
    elif size_y is None:
        size_y = size_x

    spacing = imagej.get("spacing")
    try:
        spacing = float(spacing) if spacing is not None else None
    except (TypeError, ValueError):
        spacing = None
    z_unit = ij_unit or xy_unit
    if spacing is None or not math.isfinite(spacing) or spacing <= 0 or z_unit is None:
        spacing = None  # ImageJ ignores a spacing without unit, and so do we

    units = ([xy_unit] if xy_unit else []) + ([z_unit] if spacing is not None else [])
    if not units:
        return _Calibration(None, None, None, "pixel", notes)
    if all(_unit_factor(u) is not None for u in units):
        f_xy, f_z = _unit_factor(xy_unit), _unit_factor(z_unit)
        return _Calibration(
            None if spacing is None else spacing * f_z,
            None if size_y is None else size_y * f_xy,
            None if size_x is None else size_x * f_xy,
            "um",
            notes,
        )
    if len(set(units)) > 1:
        notes.append(f"Z unit {z_unit!r} differs from Y/X unit {xy_unit!r}; Z spacing ignored")
        spacing = None
    return _Calibration(spacing, size_y, size_x, units[0], notes)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_RATIONAL_RTOL, abs_tol=0.0)


def _spatial_voxel_size(
    calibration: _Calibration, record: dict | None, spatial_ndim: int, metadata: dict
) -> tuple[tuple[float, ...], str]:
    """Voxel size of the spatial axes (Z, Y, X or Y, X) and its unit.

    Tags win where they state a value; our JSON record supplies exact values when
    it agrees with the tags and any axis the tags cannot describe.
    """
    tags = [calibration.z, calibration.y, calibration.x][-spatial_ndim:]
    unit = calibration.unit
    stored = None
    if record is not None:
        values = record.get("voxel_size")
        if isinstance(values, list) and len(values) == spatial_ndim:
            try:
                stored = [float(v) for v in values]
            except (TypeError, ValueError):
                stored = None
        if stored is not None and any(not math.isfinite(v) or v <= 0 for v in stored):
            stored = None
    if stored is not None:
        stored_unit = str(record.get("unit") or "pixel")
        factor = _unit_factor(stored_unit)
        if factor is not None:
            stored, stored_unit = [v * factor for v in stored], "um"
        elif _is_uncalibrated(stored_unit):
            stored_unit = "pixel"
        tag_values = [(t, s) for t, s in zip(tags, stored, strict=True) if t is not None]
        agrees = (unit == stored_unit or not tag_values) and all(
            _close(t, s) for t, s in tag_values
        )
        if agrees:
            return tuple(stored), stored_unit
        metadata.setdefault("notes", []).append(
            "the TIFF calibration differs from the napari-scigen record; using the TIFF tags"
        )
    if all(t is None for t in tags):
        return (1.0,) * spatial_ndim, "pixel"
    if spatial_ndim == 3 and tags[0] is None:
        tags[0] = tags[2] if tags[2] is not None else 1.0
        metadata["voxel_size_z_assumed"] = True
    return tuple(1.0 if t is None else float(t) for t in tags), unit


# --------------------------------------------------------------------------- our record


def _record_from_text(text: Any) -> dict | None:
    if isinstance(text, dict):
        record = text.get(METADATA_KEY)
        return record if isinstance(record, dict) else None
    if not isinstance(text, str) or METADATA_KEY not in text:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return _record_from_text(parsed) if isinstance(parsed, dict) else None


def _find_record(tif: tifffile.TiffFile) -> dict | None:
    """Our JSON record from ImageJ ``Info`` or the shaped description, if present."""
    imagej = tif.imagej_metadata or {}
    record = _record_from_text(imagej.get("Info"))
    if record is None:
        for shaped in tif.shaped_metadata or ():
            record = _record_from_text(shaped)
            if record is not None:
                break
    return record


def _record_kind(record: dict | None) -> str:
    kind = (record or {}).get("kind", "image")
    return kind if kind in ("image", "labels") else "image"


def _record_notes(record: dict | None) -> list[str]:
    note = (record or {}).get("stored_dtype_note")
    return [f"written by napari-scigen: {note}"] if note else []


def _check_dtype(dtype: np.dtype, kind: str, path: Path) -> None:
    native = dtype.newbyteorder("=")
    if native in _SUPPORTED or (kind == "labels" and native in _LABEL_ONLY_DTYPES):
        return
    raise _broken_file_error(
        path,
        f"unsupported dtype {native}; napari-scigen reads uint8, uint16, int16 and float32 "
        "volumes: convert the file (e.g. in Fiji: Image > Type) first",
    )


# --------------------------------------------------------------------------- axes


@dataclass
class _AxisPlan:
    """How to turn a tifffile series into ``[C,] [Z,] Y, X``."""

    squeeze: tuple[int, ...]  # axes of the series to drop (singletons)
    order: tuple[int, ...]  # transpose order applied after squeezing
    axes: str  # resulting axes, e.g. "ZYX" or "CZYX"
    notes: list[str]


def _plan_axes(shape: tuple[int, ...], axes: str, path: Path) -> _AxisPlan:
    if len(axes) != len(shape) or "Y" not in axes or "X" not in axes:
        raise _broken_file_error(path, f"cannot interpret TIFF axes {axes!r} of shape {shape}")
    notes: list[str] = []
    squeeze = tuple(
        i for i, (a, n) in enumerate(zip(axes, shape, strict=True)) if n == 1 and a not in "YX"
    )
    kept = [(a, n) for i, (a, n) in enumerate(zip(axes, shape, strict=True)) if i not in squeeze]
    channel = [i for i, (a, _) in enumerate(kept) if a in _CHANNEL_AXES]
    stack = [i for i, (a, _) in enumerate(kept) if a not in _CHANNEL_AXES + "YX"]
    if len(channel) == 1 and not stack and kept[channel[0]][0] == "C":
        size = kept[channel[0]][1]
        if size > MAX_CHANNELS_WITHOUT_SLICES:
            notes.append(
                f"ImageJ channel axis of {size} with no Z axis read as {size} slices "
                "(tifffile writes a 3D array without 'axes' this way)"
            )
            stack, channel = channel, []
    if len(channel) > 1:
        described = ", ".join(f"{kept[i][0]}={kept[i][1]}" for i in channel)
        raise _broken_file_error(
            path, f"has more than one channel axis ({described}); save one channel set per file"
        )
    if len(stack) > 1:
        described = ", ".join(f"{kept[i][0]}={kept[i][1]}" for i in stack)
        raise _broken_file_error(
            path,
            f"has several stack axes ({described}); napari-scigen reads one volume per file: "
            "save a single time point / position (e.g. Fiji: Image > Duplicate)",
        )
    y_index = next(i for i, (a, _) in enumerate(kept) if a == "Y")
    x_index = next(i for i, (a, _) in enumerate(kept) if a == "X")
    order = tuple(channel + stack + [y_index, x_index])
    result_axes = ("C" if channel else "") + ("Z" if stack else "") + "YX"
    return _AxisPlan(squeeze, order, result_axes, notes)


def _apply_plan(array: Any, plan: _AxisPlan) -> Any:
    if plan.squeeze:
        index = tuple(0 if i in plan.squeeze else slice(None) for i in range(array.ndim))
        array = array[index]
    if plan.order != tuple(range(len(plan.order))):
        array = array.transpose(plan.order)
    return array


# --------------------------------------------------------------------------- lazy readers


def _close_handles(handles: list) -> None:
    for handle in handles:
        with contextlib.suppress(Exception):
            handle.close()
    handles.clear()


def _series_page(series, index: int):
    try:
        return series[index]
    except TypeError:  # older tifffile: series is not a sequence
        return series.pages[index]


def _series_length(series) -> int:
    try:
        return len(series)
    except TypeError:
        return len(series.pages)


class _PlaneArray:
    """Array-like over planes; reads only the planes an index touches.

    ``shape == lead_shape + plane_shape``; plane ``i`` (flat index over
    ``lead_shape``) is returned by :meth:`_read_plane`. Safe to call from
    several threads (dask and napari read from worker threads).
    """

    def __init__(self, lead_shape: tuple[int, ...], plane_shape: tuple[int, ...], dtype) -> None:
        self.lead_shape = tuple(lead_shape)
        self.plane_shape = tuple(plane_shape)
        self.shape = self.lead_shape + self.plane_shape
        self.dtype = np.dtype(dtype).newbyteorder("=")
        self.ndim = len(self.shape)

    def _read_plane(self, index: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        n_lead = len(self.lead_shape)
        ranges, drop = [], []
        for axis, (k, n) in enumerate(zip(key[:n_lead], self.lead_shape, strict=True)):
            if isinstance(k, slice):
                ranges.append(range(n)[k])
            else:
                ranges.append([range(n)[int(k)]])
                drop.append(axis)
        plane_key = key[n_lead:]
        planes = []
        for index in itertools.product(*ranges):
            flat = int(np.ravel_multi_index(index, self.lead_shape)) if n_lead else 0
            planes.append(np.asarray(self._read_plane(flat))[plane_key])
        lead_out = tuple(len(r) for r in ranges)
        if planes:
            out = np.stack(planes).reshape(lead_out + planes[0].shape)
        else:
            sample = np.empty(self.plane_shape, self.dtype)[plane_key]
            out = np.empty(lead_out + sample.shape, self.dtype)
        if drop:
            out = out.reshape(tuple(n for i, n in enumerate(out.shape) if i not in drop))
        return out.astype(self.dtype, copy=False)


class _TiffPages(_PlaneArray):
    """Planes of series 0 of one TIFF file, one page each.

    Open file handles are pooled: a reading thread borrows an idle handle (or
    opens one) and gives it back, so concurrent reads decode in parallel and
    there are never more handles than concurrent readers.
    """

    def __init__(self, path: Path, lead_shape, plane_shape, dtype) -> None:
        super().__init__(lead_shape, plane_shape, dtype)
        self.path = path
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._handles: list = []
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _close_handles, self._handles)

    def _borrow_series(self):
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            handle = tifffile.TiffFile(self.path)
            with self._lock:
                self._handles.append(handle)
            return handle.series[0]

    def _read_plane(self, index: int) -> np.ndarray:
        try:
            with _collect_tifffile_messages():
                series = self._borrow_series()
                try:
                    page = _series_page(series, index)
                    if page is None:
                        raise ValueError("page missing from the file")
                    plane = page.asarray()
                finally:
                    self._idle.put(series)
        except _DECODE_ERRORS as exc:
            raise _broken_file_error(
                self.path, f"cannot read page {index}: {_describe(exc)}"
            ) from exc
        return plane.reshape(self.plane_shape)


class _SliceFiles(_PlaneArray):
    """One 2D slice per file."""

    def __init__(self, files: Sequence[Path], plane_shape, dtype) -> None:
        super().__init__((len(files),), plane_shape, dtype)
        self.files = list(files)

    def _read_plane(self, index: int) -> np.ndarray:
        path = self.files[index]
        try:
            with _collect_tifffile_messages():
                plane = tifffile.imread(path, key=0)
        except _DECODE_ERRORS as exc:
            raise _broken_file_error(path, f"cannot read slice: {_describe(exc)}") from exc
        return plane.reshape(self.plane_shape)


def _as_dask(planes: _PlaneArray, token: str):
    import dask.array as da

    chunks = (1,) * len(planes.lead_shape) + planes.plane_shape
    return da.from_array(
        planes,
        chunks=chunks,
        name=f"napari-scigen-read-{token}",
        lock=False,
        asarray=False,
        fancy=False,
        meta=np.empty((0,) * planes.ndim, dtype=planes.dtype),
    )


def _file_token(paths: Sequence[Path]) -> str:
    from dask.base import tokenize

    stats = []
    for path in paths[:1] + paths[-1:]:
        stat = path.stat()
        stats.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return tokenize(stats, len(paths))


# --------------------------------------------------------------------------- reading


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


def _read_tiff_file(path: Path, lazy: bool | None, threshold: int) -> Volume:
    metadata: dict[str, Any] = {}
    try:
        with _collect_tifffile_messages() as messages, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError("no image data found")
            series = tif.series[0]
            shape, axes, dtype = tuple(series.shape), str(series.axes), np.dtype(series.dtype)
            _check_complete(path, series, messages)
            record = _find_record(tif)
            kind = _record_kind(record)
            _check_dtype(dtype, kind, path)
            plan = _plan_axes(shape, axes, path)
            imagej = dict(tif.imagej_metadata or {})
            calibration = _tag_calibration(series.keyframe, imagej)
            metadata.update(source_axes=axes, axes=plan.axes)
            if imagej:
                if record is not None:
                    imagej.pop("Info", None)
                metadata["imagej"] = to_jsonable(imagej)
            notes = plan.notes + calibration.notes + _record_notes(record)
            if messages:
                metadata["tifffile_messages"] = list(messages)
            if _want_lazy(int(series.nbytes), lazy, threshold):
                data, storage = _open_lazy(path, tif, series)
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
    spatial_ndim = len(plan.axes.replace("C", ""))
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


def _open_lazy(path: Path, tif: tifffile.TiffFile, series) -> tuple[Any, str]:
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
    planes = _TiffPages(path, lead_shape, plane_shape, series.dtype)
    return _as_dask(planes, _file_token([path])), "dask"


def _slice_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one slice file, checking that it holds one complete 2D slice."""
    try:
        with _collect_tifffile_messages() as messages, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError("no image data found")
            series = tif.series[0]
            _check_complete(path, series, messages)
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
    files: Sequence[Path], source: str, lazy: bool | None, threshold: int
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
            _check_dtype(dtype0, kind, path)
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
        folders without TIFFs or with mismatched slices; the message names the
        file and the problem.

    Examples
    --------
    >>> volume = read_volume("scan.tif")  # doctest: +SKIP
    >>> volume.data.shape, volume.voxel_size, volume.unit  # doctest: +SKIP
    ((512, 1024, 1024), (2.23, 2.23, 2.23), 'um')
    """
    if int(lazy_threshold_bytes) < 0:
        raise InvalidInputError("lazy_threshold_bytes must be >= 0")
    threshold = int(lazy_threshold_bytes)
    if not isinstance(path, (str, os.PathLike)):
        files = [Path(p).expanduser() for p in path]
        if not files:
            raise InvalidInputError("no files given")
        if len(files) > 1:
            return _read_slice_files(files, str(files[0].parent), lazy, threshold)
        path = files[0]
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, f"no such file or folder: {path}", str(path))
    if path.is_dir():
        files = list_tiff_slices(path)
        if not files:
            raise InvalidInputError(f"folder {path} contains no .tif/.tiff files")
        return _read_slice_files(files, str(path), lazy, threshold)
    return _read_tiff_file(path, lazy, threshold)


# --------------------------------------------------------------------------- writing


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
    per_slab = max(1, _SLAB_BYTES // plane_bytes)
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


def _check_voxel_size(voxel_size: Any, ndim: int) -> tuple[float, ...] | None:
    if voxel_size is None:
        return None
    values = tuple(float(v) for v in voxel_size)
    if len(values) != ndim:
        raise InvalidInputError(
            f"voxel_size has {len(values)} values but the data have {ndim} dimensions"
        )
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise InvalidInputError(f"voxel_size must be positive and finite, got {values}")
    return values


def _canonical_unit(unit: str) -> str:
    text = str(unit).strip()
    factor = _unit_factor(text)
    if factor is not None:
        return {1.0: "um", 1e-3: "nm", 1e3: "mm", 1e4: "cm", 25400.0: "inch"}[factor]
    if _is_uncalibrated(text):
        return "pixel"
    if not text.isascii():
        raise InvalidInputError(f"unit {unit!r} must be ASCII (TIFF metadata are ASCII)")
    return text


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
    record: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "kind": kind,
        "voxel_size": list(checked),
        "unit": unit,
        "provenance": to_jsonable(provenance) if provenance is not None else None,
    }
    if note:
        record["stored_dtype_note"] = note
    record_json = json.dumps({METADATA_KEY: record}, sort_keys=True)

    if not target.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, f"folder {target.parent} does not exist", str(target.parent)
        )
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: never clobber another writer's temporary file; 0o666 & umask as for open()
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        _write_tiff(str(temporary), data, dtype, checked, unit, record_json)
        _fsync(temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    return target
