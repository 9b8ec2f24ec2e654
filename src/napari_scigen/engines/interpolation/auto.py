"""Automatic choice of the interpolation method for this volume (method ``auto``).

Trains the learned engine, rebuilds held-out kept slices with learned, linear and flow
interpolation, and fills the gaps with whichever scored best (PSNR by default); the
choice, the scores and the reason are in the provenance and a progress message.
"""

from __future__ import annotations

from collections.abc import Generator

from ...core.progress import CancelToken, Progress
from ...core.result import EngineResult
from ..learned.params import AutoInterpolateParams


def run_auto(
    volume,
    params: AutoInterpolateParams = AutoInterpolateParams(),  # noqa: B008 - frozen
    *,
    missing=None,
    factor=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Fill the gaps with the method that scores best on held-out kept slices.

    Arguments as :func:`~napari_scigen.engines.interpolation.classical.run_linear`;
    provenance engine ``"interpolate-auto"`` with ``filled_with``, ``choice_reason`` and
    the self-validation scores of every method (see
    :func:`~napari_scigen.engines.learned.interpolate.run_learned_interpolation`).
    """
    from ..learned.interpolate import run_learned_interpolation

    return run_learned_interpolation(
        volume, params, missing=missing, factor=factor, cancel=cancel, mode="auto"
    )
