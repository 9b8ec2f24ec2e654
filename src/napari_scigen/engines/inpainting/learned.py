"""Learned inpainting with 3D context: a network trained on this volume (method ``learned``).

The engine module of :mod:`napari_scigen.engines.learned.inpaint`: trained on the
volume's own unmasked voxels hidden by masks shaped like yours, with the neighbouring
slices as input, checked against biharmonic inpainting on held-out masks before filling
(falling back to biharmonic, and saying so, when it loses). Pixels outside the mask are
bit-identical.
"""

from __future__ import annotations

from collections.abc import Generator

from ...core.progress import CancelToken, Progress
from ...core.result import EngineResult
from ..learned.params import LearnedInpaintParams


def run_learned_inpaint(
    image,
    mask,
    params: LearnedInpaintParams = LearnedInpaintParams(),  # noqa: B008 - frozen
    *,
    slices=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Fill masked pixels with a network trained on the volume's own known voxels.

    Arguments as :func:`~napari_scigen.engines.inpainting.biharmonic.run_biharmonic`; see
    :func:`~napari_scigen.engines.learned.inpaint.run_learned_inpainting` for the result
    (``images["uncertainty"]``) and the provenance (engine ``"inpaint-learned"``).
    """
    from ..learned.inpaint import run_learned_inpainting

    return run_learned_inpainting(image, mask, params, slices=slices, cancel=cancel)
