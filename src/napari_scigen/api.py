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
        raise ValueError(
            f"unknown method {method!r}; choose one of {', '.join(INTERPOLATION_METHODS)}"
        )
    missing = tuple(int(i) for i in missing) if missing is not None else None
    if method == "stylegan":
        from .engines.stylegan.interpolate import run_interpolate_stylegan

        generator = run_interpolate_stylegan(volume, missing=missing, factor=factor, **options)
    else:
        from .engines.classical import InterpolateParams, run_interpolate

        params = InterpolateParams(method=method, missing=missing, factor=factor, **options)
        generator = run_interpolate(volume, params)
    return drain(generator, on_progress=on_progress)


def _params(params_type, params, overrides: dict[str, Any]):
    """``params`` (or the defaults) with keyword overrides applied."""
    import dataclasses

    return dataclasses.replace(params if params is not None else params_type(), **overrides)


def generate_diffedit_mask(
    image: np.ndarray,
    params=None,
    *,
    slices=None,
    on_progress: ProgressCallback = None,
    **overrides: Any,
) -> EngineResult:
    """Let DiffEdit find the region to edit from its source and target prompts.

    Parameters
    ----------
    image : numpy.ndarray
        2D slice or 3D volume.
    params : DiffEditParams, optional
        Model, prompts, steps, seed... (see
        :class:`~napari_scigen.engines.diffedit.DiffEditParams`); keyword
        ``overrides`` replace single fields, e.g. ``source_prompt="..."``.
    slices : optional
        Which slices of a volume to process (default: all).
    on_progress : callable, optional
        Receives progress events.

    Returns
    -------
    EngineResult
        ``labels["diffedit_mask"]`` is a pixel-resolution uint8 mask you can correct
        before calling :func:`edit_diffedit`.
    """
    from .engines.diffedit import DiffEditParams, run_generate_mask

    generator = run_generate_mask(image, _params(DiffEditParams, params, overrides), slices=slices)
    return drain(generator, on_progress=on_progress)


def edit_diffedit(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    params=None,
    *,
    slices=None,
    on_progress: ProgressCallback = None,
    **overrides: Any,
) -> EngineResult:
    """Regenerate the masked region of each slice with DiffEdit (Stable Diffusion).

    Parameters
    ----------
    image : numpy.ndarray
        2D slice or 3D volume (uint8, uint16, int16 or float32).
    mask : numpy.ndarray, optional
        Painted mask (non-zero = edit); ``None`` derives it from the prompts.
    params : DiffEditParams, optional
        See :class:`~napari_scigen.engines.diffedit.DiffEditParams`; keyword
        ``overrides`` replace single fields (``model=``, ``target_prompt=``, ``seed=``...).
    slices : optional
        Which slices of a volume to edit (default: all).
    on_progress : callable, optional
        Receives progress events.

    Returns
    -------
    EngineResult
        Same dtype and shape as ``image``; pixels outside the mask are bit-identical.
    """
    from .engines.diffedit import DiffEditParams, run_diffedit

    generator = run_diffedit(image, mask, _params(DiffEditParams, params, overrides), slices=slices)
    return drain(generator, on_progress=on_progress)


def generate_controlnet(
    image: np.ndarray,
    params=None,
    *,
    control: np.ndarray | None = None,
    slices=None,
    on_progress: ProgressCallback = None,
    **overrides: Any,
) -> EngineResult:
    """Synthesize new slices that follow the structure of real ones (ControlNet).

    Parameters
    ----------
    image : numpy.ndarray
        2D slice or 3D volume whose Canny edges condition the generation.
    params : ControlNetParams, optional
        See :class:`~napari_scigen.engines.controlnet.ControlNetParams`; keyword
        ``overrides`` replace single fields (``prompt=``, ``n_variants=``...).
    control : numpy.ndarray, optional
        A user layer (e.g. painted grain/pore labels) used as control instead of Canny.
    slices : optional
        Which slices to process (default: all).
    on_progress : callable, optional
        Receives progress events.

    Returns
    -------
    EngineResult
        ``data`` is ``(n_variants, Z, Y, X)`` (or ``(n_variants, Y, X)`` for a slice);
        ``images["control"]`` holds the control images used.
    """
    from .engines.controlnet import ControlNetParams, run_controlnet

    generator = run_controlnet(
        image, _params(ControlNetParams, params, overrides), control=control, slices=slices
    )
    return drain(generator, on_progress=on_progress)


def inpaint_controlnet(
    image: np.ndarray,
    mask: np.ndarray,
    params=None,
    *,
    control: np.ndarray | None = None,
    slices=None,
    on_progress: ProgressCallback = None,
    **overrides: Any,
) -> EngineResult:
    """Regenerate a masked region following the surrounding structure (ControlNet inpaint).

    Parameters are as in :func:`generate_controlnet`, plus ``mask`` (non-zero =
    regenerate). Pixels outside the mask are bit-identical to the input.
    """
    from .engines.controlnet import ControlNetParams, run_controlnet_inpaint

    generator = run_controlnet_inpaint(
        image, mask, _params(ControlNetParams, params, overrides), control=control, slices=slices
    )
    return drain(generator, on_progress=on_progress)


def evaluate(
    reference: np.ndarray,
    generated: np.ndarray,
    *,
    metrics: str | Sequence[str] | None = None,
    mask: np.ndarray | None = None,
    on_progress: ProgressCallback = None,
    **options: Any,
) -> EngineResult:
    """Score generated data against a reference with pixel, perceptual, distribution
    and morphology metrics.

    Parameters
    ----------
    reference, generated : numpy.ndarray
        Slices or volumes of the same shape.
    metrics : str or sequence of str, optional
        Metric names (default: the evaluation defaults, see
        :func:`~napari_scigen.metrics.evaluate.run_evaluate`).
    mask : numpy.ndarray, optional
        Restrict pixel metrics to a region.
    on_progress : callable, optional
        Receives progress events.
    **options
        ``data_range``, ``device``, ``lpips_net``, ``voxel_size``, ``prompt``... as in
        :func:`~napari_scigen.metrics.evaluate.run_evaluate`.

    Returns
    -------
    EngineResult
        ``provenance["table"]`` lists one row per metric; ``images`` holds maps.
    """
    from .metrics.evaluate import run_evaluate

    if metrics is not None:
        options["metrics"] = metrics
    return drain(run_evaluate(reference, generated, mask=mask, **options), on_progress=on_progress)


def validate(
    volume: np.ndarray,
    *,
    every: int = 4,
    methods: str | Sequence[str] = ("linear", "flow"),
    on_progress: ProgressCallback = None,
    **options: Any,
) -> EngineResult:
    """Held-out-slice benchmark: drop every ``every``-th slice, rebuild it with each
    method and score only the held-out slices.

    See :func:`~napari_scigen.metrics.validation.run_validation` for ``options``;
    :func:`~napari_scigen.metrics.validation.write_validation_report` writes the
    CSV, Markdown report and figure.
    """
    from .metrics.validation import run_validation

    return drain(
        run_validation(volume, every=every, methods=methods, **options), on_progress=on_progress
    )


def train_stylegan(
    volume: np.ndarray,
    *,
    out_dir: str,
    params=None,
    config=None,
    resume: bool = True,
    on_progress: ProgressCallback = None,
    **overrides: Any,
):
    """Train a StyleGAN2 generator on a volume's slices (checkpoints go to ``out_dir``).

    Parameters
    ----------
    volume : numpy.ndarray
        3D training volume.
    out_dir : str
        Run folder: safetensors checkpoints + JSON config; training resumes from the
        latest checkpoint there when ``resume`` is true.
    params : TrainParams, optional
        See :class:`~napari_scigen.engines.stylegan.train.TrainParams`; keyword
        ``overrides`` replace single fields (``steps=``, ``batch_size=``...).
    config : StyleGANConfig, optional
        Network size; default chosen by the trainer.
    on_progress : callable, optional
        Receives progress events (with preview images).

    Returns
    -------
    TrainResult
    """
    from .engines.stylegan.train import TrainParams, run_train_stylegan

    generator = run_train_stylegan(
        volume, _params(TrainParams, params, overrides), config, out_dir=out_dir, resume=resume
    )
    return drain(generator, on_progress=on_progress)


def sample_stylegan(
    generator=None,
    n: int = 8,
    *,
    seed: int = 0,
    truncation_psi: float = 0.7,
    on_progress: ProgressCallback = None,
    **options: Any,
) -> EngineResult:
    """Sample ``n`` new random slices from a StyleGAN generator (default: embedded).

    See :func:`~napari_scigen.engines.stylegan.sample.run_sample_slices`.
    """
    from .engines.stylegan.sample import run_sample_slices

    job = run_sample_slices(generator, n, seed, truncation_psi, **options)
    return drain(job, on_progress=on_progress)
