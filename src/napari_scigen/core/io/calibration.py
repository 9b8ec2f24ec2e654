"""Voxel size and units: reading calibration from TIFF tags, checking it for writing.

Voxel size comes from the ImageJ ``spacing`` (Z) and the TIFF
``XResolution``/``YResolution`` tags (Y, X) with ``ResolutionUnit`` or the
ImageJ ``unit``; known length units are converted to micrometres (unit
``"um"``). Without calibration the voxel size is 1.0 with unit ``"pixel"``.
When Y/X are calibrated but Z is not, Z is assumed equal to X (isotropic
microCT voxels) and ``metadata["voxel_size_z_assumed"]`` is True. A 72 dpi
inch resolution is a screen default written by many programs, not a physical
pixel size, and is ignored.

The calibration found in the TIFF tags wins over our JSON record when the two
disagree (the file was recalibrated, e.g. in Fiji); when they agree to TIFF
rational precision the exact JSON values are returned, and the JSON supplies
any axis the tags cannot describe (Z in plain TIFF files).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from napari_scigen.core.validation import InvalidInputError

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
    "angstrom": 1e-4,
    "\u00e5ngstr\u00f6m": 1e-4,
    "\u00e5": 1e-4,  # the angstrom sign and capital A-ring lower-case to this
}
_UNCALIBRATED_UNITS = {"", "pixel", "pixels", "px", "none"}
_RATIONAL_RTOL = 1e-4
_SCREEN_DPI = 72.0


def _unit_factor(unit: str | None) -> float | None:
    """Micrometres per ``unit``, or None when the unit is not a known length."""
    if unit is None:
        return None
    return MICROMETRES_PER_UNIT.get(str(unit).strip().lower())


def _is_uncalibrated(unit: str | None) -> bool:
    return unit is None or str(unit).strip().lower() in _UNCALIBRATED_UNITS


def _canonical_unit(unit: str) -> str:
    text = str(unit).strip()
    factor = _unit_factor(text)
    if factor is not None:
        names = {1.0: "um", 1e-3: "nm", 1e3: "mm", 1e4: "cm", 25400.0: "inch", 1e-4: "angstrom"}
        return names[factor]
    if _is_uncalibrated(text):
        return "pixel"
    if not text.isascii():
        raise InvalidInputError(
            f"unit {unit!r} cannot be written: TIFF metadata are ASCII; use an ASCII unit "
            "(e.g. um, nm, mm; in Fiji: Image > Properties)"
        )
    return text


def check_unit(unit: str) -> str:
    """The unit as :func:`~napari_scigen.core.io.write_volume` will store it.

    Call it before a long computation whose result is written with ``unit``.

    Raises
    ------
    InvalidInputError
        For a unit that cannot be stored in TIFF metadata (not ASCII).
    """
    return _canonical_unit(unit)


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
        # ImageJ writes non-ASCII units escaped (Fiji's "\u00B5m", "\u00C5")
        ij_unit = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), str(ij_unit))
        ij_unit = ij_unit.strip()
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
