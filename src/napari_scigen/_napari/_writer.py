"""npe2 single-layer writers: image and labels layers to TIFF with voxel size and provenance.

Both call :func:`napari_scigen.core.io.write_volume` (atomic, ImageJ-compatible
where the dtype allows). The voxel size is the layer ``scale``; the unit comes
from the layer metadata ``voxel_unit`` (set by our reader), else from napari's
layer ``units`` when they are not pixels, else ``"um"`` when the scale was set
and ``"pixel"`` (uncalibrated) when every scale is 1. napari is not imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_scigen.core.io import TIFF_SUFFIXES, write_volume
from napari_scigen.core.validation import InvalidInputError


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write an image layer to a TIFF file (npe2 single-layer writer).

    Parameters
    ----------
    path : str
        Target file; ``.tif`` is appended when it has no TIFF extension.
    data : array-like
        Layer data (numpy or dask), 2D or 3D; for multiscale data the full
        resolution level is written.
    meta : dict
        Layer attributes from napari (``scale``, ``metadata``, ``units``, ``rgb`` ...).

    Returns
    -------
    list of str
        The written file.
    """
    return [str(_write_layer(path, data, meta, kind="image"))]


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a labels layer to a TIFF file (npe2 single-layer writer).

    Parameters
    ----------
    path : str
        Target file; ``.tif`` is appended when it has no TIFF extension.
    data : array-like
        Label image (integers), 2D or 3D; stored in the smallest unsigned dtype
        that holds the labels.
    meta : dict
        Layer attributes from napari.

    Returns
    -------
    list of str
        The written file.
    """
    return [str(_write_layer(path, data, meta, kind="labels"))]


def tiff_path(path: str) -> Path:
    """``path`` with ``.tif`` appended unless it already ends in .tif/.tiff."""
    target = Path(path)
    if target.suffix.lower() not in TIFF_SUFFIXES:
        target = target.with_name(target.name + ".tif")
    return target


def _write_layer(path: str, data: Any, meta: dict, *, kind: str) -> Path:
    meta = meta or {}
    name = meta.get("name") or "layer"
    if meta.get("rgb"):
        raise InvalidInputError(
            f"layer {name!r} is RGB; microCT TIFFs are grayscale: convert it first "
            "(e.g. skimage.color.rgb2gray) or save it with napari's built-in writer"
        )
    if meta.get("multiscale") and isinstance(data, (list, tuple)):
        data = data[0]
    metadata = meta.get("metadata") or {}
    scale = meta.get("scale")
    voxel_size = None if scale is None else tuple(float(s) for s in scale)
    return write_volume(
        tiff_path(path),
        data,
        voxel_size=voxel_size,
        unit=_layer_unit(metadata, meta.get("units"), voxel_size),
        provenance=metadata.get("provenance"),
        kind=kind,
    )


def _layer_unit(metadata: dict, units: Any, voxel_size: tuple[float, ...] | None) -> str:
    """Unit of the layer scale: our metadata, napari units, then a default."""
    unit = metadata.get("voxel_unit")
    if unit:
        return str(unit)
    if units is not None:
        names = {_unit_name(u) for u in (units if isinstance(units, (list, tuple)) else [units])}
        names.discard("pixel")
        if len(names) == 1:
            return names.pop()
    if voxel_size is not None and any(v != 1.0 for v in voxel_size):
        return "um"
    return "pixel"


def _unit_name(unit: Any) -> str:
    """Short name of a napari (pint) unit or a plain string, e.g. ``"um"``."""
    text = str(unit)
    return {
        "micrometer": "um",
        "nanometer": "nm",
        "millimeter": "mm",
        "centimeter": "cm",
        "pixel": "pixel",
    }.get(text, text)
