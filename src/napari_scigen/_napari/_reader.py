"""npe2 reader: microCT TIFF stacks, ImageJ hyperstacks and folders of TIFF slices.

The heavy lifting is :func:`napari_scigen.core.io.read_volume`; this module only
decides which paths it handles and turns a :class:`~napari_scigen.core.io.Volume`
into napari layer data (scale = voxel size, provenance in the layer metadata).
napari is not imported here.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_scigen.core.io import (
    Volume,
    is_tiff_path,
    is_zarr_path,
    list_tiff_slices,
    open_zarr_levels,
    read_volume,
)

PathLike = str | os.PathLike
LayerDataTuple = tuple[Any, dict[str, Any], str]


def get_reader(path: PathLike | Sequence[PathLike]) -> Callable[..., list] | None:
    """Return a reader for ``path`` if it is ours to read, else None (npe2 convention).

    Parameters
    ----------
    path : str, path-like or list of them
        A ``.tif``/``.tiff`` file, a folder holding TIFF files, or a list of TIFF
        files (stacked as slices in the given order).

    Returns
    -------
    callable or None
        :func:`read_layers`, or None for other files, folders without TIFFs and
        lists that are not all TIFF files.
    """
    if isinstance(path, (list, tuple)):
        if path and all(isinstance(p, (str, os.PathLike)) and _is_tiff_file(p) for p in path):
            return read_layers
        return None
    if not isinstance(path, (str, os.PathLike)):
        return None
    candidate = Path(path)
    if is_zarr_path(candidate):  # OME-Zarr / zarr store, opened lazily
        return read_zarr_layers
    if candidate.is_dir():
        try:
            return read_layers if list_tiff_slices(candidate) else None
        except OSError:
            return None
    return read_layers if is_tiff_path(candidate) else None


def _is_tiff_file(path: PathLike) -> bool:
    return is_tiff_path(path) and not Path(path).is_dir()


def read_layers(path: PathLike | Sequence[PathLike]) -> list[LayerDataTuple]:
    """Read ``path`` and return one napari layer data tuple.

    Parameters
    ----------
    path : str, path-like or list of them
        See :func:`get_reader`.

    Returns
    -------
    list of tuple
        ``[(data, kwargs, layer_type)]``; lazy (dask/memmap) data are passed
        through as they are.
    """
    if isinstance(path, (list, tuple)) and len(path) == 1:
        path = path[0]
    volume = read_volume(path)
    if isinstance(path, (list, tuple)):
        name = Path(path[0]).stem
    else:
        name = Path(path).stem if not Path(path).is_dir() else Path(path).name
    return [volume_to_layer_data(volume, name=name)]


def read_zarr_layers(path: PathLike | Sequence[PathLike]) -> list[LayerDataTuple]:
    """Open a zarr / OME-Zarr store lazily: dask arrays, every resolution level when several."""
    path = path[0] if isinstance(path, (list, tuple)) else path
    volume = read_volume(path, lazy=True)
    name = store_layer_name(path, volume.provenance)
    data, kwargs, layer_type = volume_to_layer_data(volume, name=name)
    if volume.metadata.get("levels", 1) > 1:
        data, kwargs["multiscale"] = open_zarr_levels(path), True
    return [(data, kwargs, layer_type)]


def store_layer_name(path: PathLike, provenance: dict | None) -> str:
    """The layer name of a zarr store: its file name's stem plus the method that made it.

    A store this plugin wrote records its method in the provenance: a whole-volume run
    (``engine: "batch-<task>-<method>"``) opens as ``"<stem> whole volume <method>"``, the
    name the dock gave it; a single result as ``"<stem> <method>"``; any other store as
    its stem (``"scan.ome.zarr"`` -> ``"scan"``).
    """
    stem = Path(str(path).rstrip("/\\")).name.split(".")[0]
    record = provenance if isinstance(provenance, dict) else {}
    extra = record.get("extra") if isinstance(record.get("extra"), dict) else {}
    method = record.get("method") or extra.get("method")
    if not isinstance(method, str) or not method.strip():
        return stem
    if str(record.get("engine", "")).startswith("batch-"):
        return f"{stem} whole volume {method}"
    return stem if stem.endswith(f" {method}") else f"{stem} {method}"


def volume_to_layer_data(volume: Volume, *, name: str) -> LayerDataTuple:
    """Turn a :class:`~napari_scigen.core.io.Volume` into a napari layer data tuple.

    Parameters
    ----------
    volume : Volume
        The volume read from disk.
    name : str
        Layer name (channels get `` ch<i>`` appended).

    Returns
    -------
    tuple
        ``(data, kwargs, "image" | "labels")`` with ``scale`` = voxel size and
        ``metadata = {"provenance", "source", "voxel_unit"}``.
    """
    metadata = {
        "provenance": volume.provenance,
        "source": volume.source,
        "voxel_unit": volume.unit,
    }
    scale = tuple(float(s) for s in volume.voxel_size)
    kwargs: dict[str, Any] = {"name": name, "metadata": metadata}
    channel_axis = volume.channel_axis
    if channel_axis is not None:
        scale = scale[:channel_axis] + scale[channel_axis + 1 :]
        channels = volume.data.shape[channel_axis]
        kwargs["channel_axis"] = channel_axis
        kwargs["name"] = [f"{name} ch{index}" for index in range(channels)]
    kwargs["scale"] = scale
    if volume.unit == "um" and _layers_accept_units():
        kwargs["units"] = (volume.unit,) * len(scale)
    is_labels = volume.kind == "labels" and np.issubdtype(volume.dtype, np.integer)
    if is_labels and channel_axis is None:
        return (volume.data, kwargs, "labels")
    return (volume.data, kwargs, "image")


@functools.lru_cache(maxsize=1)
def _layers_accept_units() -> bool:
    """Whether the installed napari layers take a ``units`` argument (napari >= 0.6)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = (int(part) for part in version("napari").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (0, 6)
