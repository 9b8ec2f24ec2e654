"""Lazy arrays over TIFF pages or slice files: only the planes an index touches are read."""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .errors import _DECODE_ERRORS, _broken_file_error, _collect_tifffile_messages, _describe


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
    """Planes of the chosen series of one TIFF file, one page each.

    ``series_index`` as for :func:`~napari_scigen.core.io.series.select_series`.
    Open file handles are pooled: a reading thread borrows an idle handle (or
    opens one) and gives it back, so concurrent reads decode in parallel and
    there are never more handles than concurrent readers.
    """

    def __init__(
        self, path: Path, lead_shape, plane_shape, dtype, series_index: int | None = None
    ) -> None:
        super().__init__(lead_shape, plane_shape, dtype)
        self.path = path
        self.series_index = series_index
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._handles: list = []
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _close_handles, self._handles)

    def _borrow_series(self):
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            from .series import select_series

            handle = tifffile.TiffFile(self.path)
            with self._lock:
                self._handles.append(handle)
            return select_series(handle, self.path, self.series_index)[0]

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
