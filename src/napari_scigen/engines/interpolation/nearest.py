"""Nearest-slice interpolation: the do-nothing baseline every method must beat."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from ...core.params import EngineParams
from ...core.progress import CancelToken, Progress
from ...core.result import EngineResult
from .classical import run_blend


@dataclass(frozen=True)
class NearestParams(EngineParams):
    """Nearest-slice interpolation has no parameters."""


def run_nearest(
    volume,
    params: NearestParams = NearestParams(),  # noqa: B008 - frozen, immutable
    *,
    missing=None,
    factor=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Rebuild missing slices (or upsample z) with a copy of the nearer kept slice.

    A slice exactly halfway between its kept neighbours takes the lower one. Arguments
    and result as :func:`~napari_scigen.engines.interpolation.classical.run_linear`
    (provenance engine ``"interpolate-nearest"``).
    """
    return run_blend(
        "nearest",
        volume,
        params,
        missing,
        factor,
        cancel,
        lambda below, above, t, _state: below if t <= 0.5 else above,
    )
