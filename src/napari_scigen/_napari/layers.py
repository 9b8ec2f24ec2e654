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
    """
    metadata = layer_metadata(result.provenance, source_metadata)

    def geometry(ndim: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if scale is not None:
            kwargs["scale"] = _fit(scale, ndim, 1.0)
        if translate is not None:
            kwargs["translate"] = _fit(translate, ndim, 0.0)
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
