"""OME-NGFF metadata: axes, units and scales to and from napari-scigen's voxel size.

OME-Zarr images written here follow NGFF 0.5 (zarr v3; the NGFF attributes live under
``attributes["ome"]``) or, on request, NGFF 0.4 (zarr v2; the attributes are at the top
level). A volume is a ``multiscales`` image with axes ``z, y, x`` (or ``y, x``) of type
``space``; level 0 is the full resolution and each further level halves Y and X (Z is
never downsampled, so every z-chunk of every level can be written independently). The
``scale`` of each level is the voxel size in the axes' unit.

Units: napari-scigen's ``"um"``, ``"nm"``, ``"mm"``, ``"cm"`` and ``"inch"`` are written
as the NGFF (UDUNITS-2) names ``micrometer`` ... ``inch``; an uncalibrated volume
(``"pixel"``) has axes without a unit. When reading, known NGFF length units are
converted to micrometres (unit ``"um"``), as the TIFF reader does.
"""

from __future__ import annotations

import math
from typing import Any

from napari_scigen.core.validation import InvalidInputError

#: NGFF versions this package writes.
NGFF_VERSIONS = ("0.5", "0.4")
#: The NGFF version written by default.
DEFAULT_NGFF_VERSION = "0.5"

#: napari-scigen unit -> NGFF (UDUNITS-2) unit name.
NGFF_UNIT_NAMES = {
    "nm": "nanometer",
    "um": "micrometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "inch": "inch",
}
#: NGFF length unit -> micrometres per unit.
NGFF_MICROMETRES = {
    "angstrom": 1e-4,
    "nanometer": 1e-3,
    "micrometer": 1.0,
    "millimeter": 1e3,
    "centimeter": 1e4,
    "decimeter": 1e5,
    "meter": 1e6,
    "inch": 25400.0,
    "foot": 304800.0,
}
_SPATIAL = ("z", "y", "x")


def axes_metadata(ndim: int, unit: str) -> list[dict[str, str]]:
    """NGFF ``axes`` for a ``(Z, Y, X)`` or ``(Y, X)`` volume in ``unit``.

    Parameters
    ----------
    ndim : int
        2 or 3.
    unit : str
        A canonical napari-scigen unit (``"um"``, ``"pixel"``, or another unit string).

    Returns
    -------
    list of dict
        ``[{"name": "z", "type": "space", "unit": "micrometer"}, ...]``; no ``unit``
        key for ``"pixel"``.
    """
    names = _SPATIAL[-ndim:]
    ngff_unit = None if unit == "pixel" else NGFF_UNIT_NAMES.get(unit, unit)
    axes = []
    for name in names:
        axis = {"name": name, "type": "space"}
        if ngff_unit is not None:
            axis["unit"] = ngff_unit
        axes.append(axis)
    return axes


def level_datasets(voxel_size: tuple[float, ...], n_levels: int) -> list[dict[str, Any]]:
    """NGFF ``datasets`` of ``n_levels`` levels, each halving Y and X.

    Parameters
    ----------
    voxel_size : tuple of float
        Voxel size of level 0 (Z, Y, X or Y, X).
    n_levels : int
        Number of levels (>= 1); level ``i`` is stored at path ``"i"``.
    """
    datasets = []
    for level in range(n_levels):
        factor = 2.0**level
        scale = [float(v) for v in voxel_size]
        scale[-1] *= factor
        scale[-2] *= factor
        datasets.append(
            {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    return datasets


def multiscales_of(attributes: dict, where: str) -> tuple[dict, str] | None:
    """The first ``multiscales`` entry of a group's attributes and its NGFF version.

    Parameters
    ----------
    attributes : dict
        The group's attributes (NGFF 0.5 nests them under ``"ome"``).
    where : str
        The store, for error messages.

    Returns
    -------
    tuple or None
        ``(multiscale, version)``, or None when the group holds no NGFF image.

    Raises
    ------
    InvalidInputError
        When the ``multiscales`` metadata are malformed.
    """
    ome = attributes.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:
        entries, version = ome["multiscales"], str(ome.get("version", "0.5"))
    elif "multiscales" in attributes:
        entries = attributes["multiscales"]
        first = entries[0] if isinstance(entries, list) and entries else {}
        version = str(first.get("version", "0.4")) if isinstance(first, dict) else "0.4"
    else:
        return None
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise InvalidInputError(f"{where}: malformed OME-NGFF metadata ('multiscales' is empty)")
    multiscale = entries[0]
    datasets = multiscale.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise InvalidInputError(f"{where}: malformed OME-NGFF metadata (no 'datasets')")
    if not all(isinstance(d, dict) and isinstance(d.get("path"), str) for d in datasets):
        raise InvalidInputError(f"{where}: malformed OME-NGFF metadata (a dataset has no 'path')")
    return multiscale, version


def axis_names(multiscale: dict, ndim: int, where: str) -> list[str]:
    """Lower-case axis names of an NGFF image (``z, y, x`` order assumed when absent)."""
    axes = multiscale.get("axes")
    if axes is None:  # NGFF 0.1/0.2: always 5D t, c, z, y, x
        return ["t", "c", "z", "y", "x"][-ndim:]
    names = [str(a.get("name", "") if isinstance(a, dict) else a).lower() for a in axes]
    if len(names) != ndim:
        raise InvalidInputError(
            f"{where}: the OME-NGFF metadata name {len(names)} axes but the array has {ndim}"
        )
    return names


#: Largest voxel size accepted, in micrometres (1 km): beyond it the metadata is broken.
MAX_VOXEL_MICROMETRES = 1e9


def _scale_of(transformations: Any, ndim: int, where: str = "") -> list[float]:
    scale = [1.0] * ndim
    if not isinstance(transformations, (list, tuple)):
        transformations = ()
    for transform in transformations:
        if isinstance(transform, dict) and transform.get("type") == "scale":
            values = transform.get("scale")
            if isinstance(values, list) and len(values) == ndim:
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                    raise InvalidInputError(
                        f"{where}: OME-NGFF scale {values!r} is not a list of numbers"
                    )
                scale = [a * float(b) for a, b in zip(scale, values, strict=True)]
    return scale


def level_scale(multiscale: dict, level: int, ndim: int, where: str) -> list[float]:
    """The physical scale of one level (dataset and multiscale transformations combined)."""
    dataset = multiscale["datasets"][level]
    scale = _scale_of(dataset.get("coordinateTransformations"), ndim, where)
    overall = _scale_of(multiscale.get("coordinateTransformations"), ndim, where)
    scale = [a * b for a, b in zip(scale, overall, strict=True)]
    if any(not math.isfinite(v) or v <= 0 for v in scale):
        raise InvalidInputError(f"{where}: OME-NGFF scale {scale} is not positive and finite")
    return scale


def spatial_calibration(
    multiscale: dict, names: list[str], scale: list[float], record: dict | None
) -> tuple[tuple[float, ...], str]:
    """Voxel size (micrometres when the unit is a known length) and unit of the spatial axes.

    Parameters
    ----------
    multiscale : dict
        The NGFF multiscale entry.
    names : list of str
        Axis names of the array.
    scale : list of float
        Level-0 scale per axis.
    record : dict or None
        The napari-scigen record, which supplies the unit when the axes have none.
    """
    axes = multiscale.get("axes") or []
    units = {}
    for axis in axes:
        if isinstance(axis, dict) and axis.get("unit"):
            units[str(axis.get("name", "")).lower()] = str(axis["unit"]).strip().lower()
    spatial = [(name, value) for name, value in zip(names, scale, strict=True) if name in _SPATIAL]
    values = [value for _, value in spatial]
    found = [units.get(name) for name, _ in spatial]
    if all(unit is None for unit in found):
        from .calibration import _canonical_unit, _unit_factor

        stored = str((record or {}).get("unit") or "pixel")
        factor = _unit_factor(stored)
        if factor is not None:
            return tuple(v * factor for v in values), "um"
        return tuple(values), _canonical_unit(stored)
    if all(unit in NGFF_MICROMETRES for unit in found if unit is not None):
        converted = [
            v * NGFF_MICROMETRES[u] if u is not None else v
            for v, u in zip(values, found, strict=True)
        ]
        if any(not math.isfinite(v) or v > MAX_VOXEL_MICROMETRES for v in converted):
            raise InvalidInputError(
                f"OME-NGFF voxel size {converted} um is not plausible (more than "
                f"{MAX_VOXEL_MICROMETRES:g} um, or not finite): the store's scale metadata "
                "is broken"
            )
        return tuple(converted), "um"
    first = next(unit for unit in found if unit is not None)
    return tuple(values), first
