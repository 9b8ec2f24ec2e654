"""Learned slice interpolation: a network trained on the volume itself (method ``learned``).

The engine module of :mod:`napari_scigen.engines.learned.interpolate`: training pairs come
from this volume at the gap geometry being filled, the result is checked on held-out
kept slices against linear and flow interpolation before filling, and the engine falls
back to linear interpolation (saying so) when the network loses, unless forced.
"""

from __future__ import annotations

from collections.abc import Generator

from ...core.progress import CancelToken, Progress
from ...core.result import EngineResult
from ..learned.params import LearnedInterpolateParams


def run_learned(
    volume,
    params: LearnedInterpolateParams = LearnedInterpolateParams(),  # noqa: B008 - frozen
    *,
    missing=None,
    factor=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Rebuild missing slices (or upsample z) with a network trained on this volume.

    Arguments as :func:`~napari_scigen.engines.interpolation.classical.run_linear`; see
    :func:`~napari_scigen.engines.learned.interpolate.run_learned_interpolation` for the
    method, the result (``images["uncertainty"]``) and the provenance
    (engine ``"interpolate-learned"``: self-validation scores, training record, what was
    assumed, ``learned_lost_self_validation``).
    """
    from ..learned.interpolate import run_learned_interpolation

    return run_learned_interpolation(
        volume, params, missing=missing, factor=factor, cancel=cancel, mode="learned"
    )
