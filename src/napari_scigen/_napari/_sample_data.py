"""npe2 sample data: synthetic rock and fibre composite microCT volumes with ground truth.

Both are simulated on the fly (no download) by :mod:`napari_scigen.core.phantoms`, in a
few seconds, and are the same bytes on every call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.phantoms import Phantom, make_fibre_volume, make_rock_volume
from ..core.provenance import make_provenance
from ..core.stack import percentile_window

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]


def phantom_layers(
    phantom: Phantom, *, material: str, engine: str, include_clean: bool = False
) -> list[LayerDataTuple]:
    """LayerDataTuples for a phantom: the CT image, its phases and, if any, its rings.

    Parameters
    ----------
    phantom : Phantom
        A volume from :func:`~napari_scigen.core.phantoms.make_rock_volume` or
        :func:`~napari_scigen.core.phantoms.make_fibre_volume`.
    material : str
        First word of the layer names (``"rock"``, ``"fibre"``).
    engine : str
        Engine name recorded in the provenance (``"sample-rock"``).
    include_clean : bool
        Also return the artifact-free reference scan as a hidden image layer.

    Returns
    -------
    list of tuple
        ``(data, kwargs, layer_type)``: the image ``"<material> microCT (synthetic)"``,
        the labels ``"<material> phases (ground truth)"`` (hidden), then, when the phantom
        has ring artifacts, the labels ``"<material> ring artifacts"`` (hidden, the ring
        mask repeated on every slice), then optionally the clean reference image.
    """
    provenance = make_provenance(engine, phantom.parameters, seed=phantom.parameters["seed"])
    metadata = {"provenance": provenance, "voxel_unit": phantom.unit}
    scale = tuple(float(s) for s in phantom.voxel_size)
    window = percentile_window(phantom.volume, 0.5, 99.5)
    contrast_limits = (float(window.low), float(window.high))
    layers: list[LayerDataTuple] = [
        (
            phantom.volume,
            {
                "name": f"{material} microCT (synthetic)",
                "scale": scale,
                "metadata": metadata,
                "contrast_limits": contrast_limits,
                "colormap": "gray",
            },
            "image",
        ),
        (
            phantom.labels,
            {
                "name": f"{material} phases (ground truth)",
                "scale": scale,
                "metadata": {**metadata, "phase_names": dict(phantom.phase_names)},
                "visible": False,
                "opacity": 0.4,
            },
            "labels",
        ),
    ]
    if phantom.ring_mask is not None and phantom.ring_mask.any():
        rings = np.repeat(
            phantom.ring_mask[np.newaxis].astype(np.uint8), phantom.volume.shape[0], axis=0
        )
        layers.append(
            (
                rings,
                {
                    "name": f"{material} ring artifacts",
                    "scale": scale,
                    "metadata": {
                        **metadata,
                        "ring_radii_px": phantom.parameters["derived"]["ring_radii_px"],
                    },
                    "visible": False,
                    "opacity": 0.5,
                },
                "labels",
            )
        )
    if include_clean and phantom.clean is not None:
        layers.append(
            (
                phantom.clean,
                {
                    "name": f"{material} microCT clean reference (synthetic)",
                    "scale": scale,
                    "metadata": metadata,
                    "contrast_limits": contrast_limits,
                    "colormap": "gray",
                    "visible": False,
                },
                "image",
            )
        )
    return layers


def rock_sample() -> list[LayerDataTuple]:
    """Synthetic sandstone-like core, 64 x 256 x 256 at 2.5 um, with ring artifacts.

    Returns
    -------
    list of tuple
        ``rock microCT (synthetic)`` (uint16 image), ``rock phases (ground truth)``
        (labels: 1 pore, 2 quartz, 3 dense mineral) and ``rock ring artifacts`` (labels).
    """
    return phantom_layers(make_rock_volume(), material="rock", engine="sample-rock")


def fibre_sample() -> list[LayerDataTuple]:
    """Synthetic unidirectional fibre composite, 64 x 256 x 256 at 1 um.

    Returns
    -------
    list of tuple
        ``fibre microCT (synthetic)`` (uint16 image) and ``fibre phases (ground truth)``
        (labels: 1 matrix, 2 fibre, 3 void).
    """
    return phantom_layers(make_fibre_volume(), material="fibre", engine="sample-fibre")
