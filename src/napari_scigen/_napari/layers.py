"""Turn engine results into napari LayerDataTuples (no Qt needed)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.result import EngineResult


def layer_metadata(
    provenance: dict[str, Any], source_metadata: dict | None = None
) -> dict[str, Any]:
    """Metadata for a generated layer: the provenance plus the source's voxel unit."""
    metadata: dict[str, Any] = {"provenance": provenance}
    if source_metadata and "voxel_unit" in source_metadata:
        metadata["voxel_unit"] = source_metadata["voxel_unit"]
    return metadata


def layer_file(layer) -> str | None:
    """The file a layer was opened from (napari's ``source.path``, else our reader's
    ``metadata["source"]``), or ``None``."""
    path = getattr(getattr(layer, "source", None), "path", None)
    if path:
        return str(path)
    source = (getattr(layer, "metadata", None) or {}).get("source")
    return str(source) if isinstance(source, str) else None


def with_inputs(provenance: dict[str, Any], source, mask=None, mask_name=None) -> dict[str, Any]:
    """``provenance`` with what the result was made from, and the history before it.

    Adds ``inputs`` (the source layer's name, file, shape and dtype; the mask layer's name,
    masked pixel count and a SHA-256 of its bytes) and ``history``: the source's own
    ``history`` followed by the source's provenance, so a chain of edits (read, inpaint,
    interpolate) stays readable after saving and reopening. ``provenance`` is not modified.
    """
    import hashlib

    data = getattr(source, "data", None)
    inputs: dict[str, Any] = {
        "source": {
            "layer": getattr(source, "name", None),
            "file": layer_file(source),
            "shape": list(getattr(data, "shape", ())),
            "dtype": str(getattr(data, "dtype", "")),
        }
    }
    if mask is not None:
        array = np.ascontiguousarray(np.asarray(mask) != 0)
        inputs["mask"] = {
            "layer": mask_name,
            "masked_pixels": int(np.count_nonzero(array)),
            "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
        }
    before = dict((getattr(source, "metadata", None) or {}).get("provenance") or {})
    history = list(before.pop("history", None) or [])
    if before:
        history.append(before)
    return {**provenance, "inputs": inputs, "history": history}


def _trailing(values, ndim: int, fill) -> tuple:
    """The last ``ndim`` of ``values``, padded in front with ``fill``."""
    values = tuple(values)
    return (
        values[len(values) - ndim :]
        if len(values) >= ndim
        else (fill,) * (ndim - len(values)) + values
    )


def layer_units(layer) -> tuple[str, ...] | None:
    """A layer's per-axis units as short strings (``"um"``), or ``None`` if it has none."""
    units = getattr(layer, "units", None)
    if units is None:
        return None
    return tuple(_unit_text(unit) for unit in units)


def _unit_text(unit: Any) -> str:
    text = str(unit)
    return {"micrometer": "um", "nanometer": "nm", "millimeter": "mm"}.get(text, text)


def source_geometry(source, ndim: int, *, scale: tuple[float, ...] | None = None) -> dict[str, Any]:
    """``scale``/``translate``/``units`` for an ``ndim`` result placed in ``source``'s world.

    The trailing axes take the source's values (``scale`` overrides its scale, e.g. after
    z upsampling); extra leading axes (variants, samples) get scale 1, translate 0 and
    the unit ``"pixel"``. Without a source (``None``), nothing is set.
    """
    if source is None:
        return {}
    geometry: dict[str, Any] = {
        "scale": _trailing((float(s) for s in (scale or source.scale)), ndim, 1.0),
        "translate": _trailing((float(t) for t in source.translate), ndim, 0.0),
    }
    units = layer_units(source)
    if units is not None:
        geometry["units"] = _trailing(units, ndim, "pixel")
    return geometry


def shown_units(layers, ndim: int) -> dict[str, Any]:
    """``{"units": ...}`` for an ``ndim`` layer without a source (a preview, samples), in the
    units of the layers already shown, so napari keeps one world unit (no "Inconsistent
    units across layers" warning); ``{}`` when there are no layers or their units differ.
    """
    if len(layers) == 0:
        return {}
    units = layers.extent.units
    if units is None:
        return {}
    return {"units": _trailing((_unit_text(unit) for unit in units), ndim, "pixel")}


def next_layer_name(existing: list[str], source: str, engine: str) -> str:
    """``"<source> <engine> <n>"`` with the smallest ``n >= 1`` not already used."""
    taken = set(existing)
    n = 1
    while f"{source} {engine} {n}" in taken:
        n += 1
    return f"{source} {engine} {n}"


def result_to_layer_tuples(
    result: EngineResult,
    *,
    name: str,
    scale: tuple[float, ...] | None = None,
    translate: tuple[float, ...] | None = None,
    source_metadata: dict | None = None,
    contrast_limits: tuple[float, float] | None = None,
    units: tuple[str, ...] | None = None,
) -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """LayerDataTuples for a result: the main image, then extra images and labels.

    Parameters
    ----------
    result : EngineResult
        What the engine returned.
    name : str
        Name of the main layer; extras are named ``"<name> <key>"``.
    scale, translate : tuple of float, optional
        Copied from the source layer so results overlay it exactly. When the
        result has more leading axes than the source (e.g. variants), the extra
        axes get scale 1 and translate 0.
    source_metadata : dict, optional
        The source layer's metadata (voxel unit is carried over).
    contrast_limits : tuple, optional
        The source layer's contrast limits, so the result looks comparable.
    units : tuple of str, optional
        The source layer's units (extra leading axes get ``"pixel"``), so results
        live in the same world as the source (no "inconsistent units" warnings).
    """
    metadata = layer_metadata(result.provenance, source_metadata)

    def geometry(ndim: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if scale is not None:
            kwargs["scale"] = _fit(scale, ndim, 1.0)
        if translate is not None:
            kwargs["translate"] = _fit(translate, ndim, 0.0)
        if units is not None:
            kwargs["units"] = _trailing(units, ndim, "pixel")
        return kwargs

    main_kwargs = {"name": name, "metadata": metadata, **geometry(result.data.ndim)}
    if contrast_limits is not None:
        main_kwargs["contrast_limits"] = contrast_limits
    tuples = [(result.data, main_kwargs, "image")]
    for key, image in result.images.items():
        tuples.append(
            (
                image,
                {"name": f"{name} {key}", "metadata": metadata, **geometry(image.ndim)},
                "image",
            )
        )
    for key, labels in result.labels.items():
        tuples.append(
            (
                labels,
                {"name": f"{name} {key}", "metadata": metadata, **geometry(labels.ndim)},
                "labels",
            )
        )
    return tuples


def _fit(values: tuple[float, ...], ndim: int, fill: float) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) >= ndim:
        return values[len(values) - ndim :]
    return (fill,) * (ndim - len(values)) + values
