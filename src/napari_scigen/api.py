"""Headless API: every engine, drained to completion, for scripts and notebooks.

Each function runs the same generator the napari widgets run, so scripts and the
GUI give identical results. Pass ``on_progress`` to see progress events, e.g.
``on_progress=print``.

Examples
--------
>>> from napari_scigen import api
>>> from napari_scigen.core.phantoms import make_rock_volume
>>> rock = make_rock_volume(shape=(16, 128, 128))
>>> rebuilt = api.interpolate_slices(rock.volume, missing=[4, 8], method="linear")
>>> rebuilt.data.shape
(16, 128, 128)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .core.progress import Progress, drain
from .core.result import EngineResult

ProgressCallback = Callable[[Progress], None] | None

#: Slice-interpolation methods and the engine that provides each.
INTERPOLATION_METHODS = ("linear", "flow", "stylegan")


def inpaint(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    tile_size: int = 256,
    context: int = 16,
    on_progress: ProgressCallback = None,
) -> EngineResult:
    """Fill masked pixels with biharmonic inpainting, slice by slice.

    Parameters
    ----------
    image : numpy.ndarray
        2D slice or 3D volume (uint8, uint16, int16 or float32).
    mask : numpy.ndarray
        Non-zero where pixels are replaced; same shape as ``image`` (a 2D mask
        applies to every slice of a volume).
    tile_size, context : int
        Largest box solved at once, and the known-pixel margin around it.
    on_progress : callable, optional
        Receives :class:`~napari_scigen.core.progress.Progress` events.

    Returns
    -------
    EngineResult
        ``data`` has the input's dtype; pixels outside the mask are bit-identical.
    """
    from .engines.classical import InpaintParams, run_inpaint

    params = InpaintParams(tile_size=tile_size, context=context)
    return drain(run_inpaint(image, mask, params), on_progress=on_progress)


def interpolate_slices(
    volume: np.ndarray,
    *,
    missing: Sequence[int] | None = None,
    factor: int | None = None,
    method: str = "linear",
    on_progress: ProgressCallback = None,
    **options: Any,
) -> EngineResult:
    """Rebuild missing slices, or upsample z by an integer factor.

    Parameters
    ----------
    volume : numpy.ndarray
        3D volume (Z, Y, X).
    missing : sequence of int, optional
        Indices of slices to synthesize (same output shape). Exactly one of
        ``missing`` and ``factor`` is given.
    factor : int, optional
        Upsampling factor along z: ``(n - 1) * factor + 1`` output slices.
    method : {"linear", "flow", "stylegan"}
        Linear blend, motion-compensated TV-L1 optical flow, or StyleGAN latent
        interpolation (default: the embedded generator).
    on_progress : callable, optional
        Receives progress events.
    **options
        Engine options: flow parameters for ``"flow"`` (see
        :class:`~napari_scigen.engines.classical.InterpolateParams`) or
        StyleGAN options (see
        :func:`~napari_scigen.engines.stylegan.interpolate.run_interpolate_stylegan`).

    Returns
    -------
    EngineResult
        Kept slices are bit-identical to the input.
    """
    if method not in INTERPOLATION_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(INTERPOLATION_METHODS)}")
    missing = tuple(int(i) for i in missing) if missing is not None else None
    if method == "stylegan":
        from .engines.stylegan.interpolate import run_interpolate_stylegan

        generator = run_interpolate_stylegan(volume, missing=missing, factor=factor, **options)
    else:
        from .engines.classical import InterpolateParams, run_interpolate

        params = InterpolateParams(method=method, missing=missing, factor=factor, **options)
        generator = run_interpolate(volume, params)
    return drain(generator, on_progress=on_progress)
