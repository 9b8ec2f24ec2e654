"""What InstructPix2Pix, LEDITS++ and Stable unCLIP share: loading, the masked-crop loop,
compositing and provenance.

Each of these engines edits (or regenerates) model-size crops of a slice: around the
mask (:func:`slice_canvases`), or tiling the whole slice when there is no mask. One
pipeline call processes a batch of crops (:func:`run_rounds`), each with its slice's
own ``torch.Generator`` (``seed + z + VARIANT_SEED_STRIDE * variant``), on
batch-invariant numerics, reporting each denoising step and raising
:class:`~napari_scigen.core.progress.Cancelled` from the step callback. The crops are
pasted inside the mask and composited into the input (:func:`compose`), so every pixel
outside the mask stays bit-identical. diffusers is imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from ...core.progress import CancelToken, Progress, check_cancelled
from ...core.provenance import make_provenance
from ...core.result import EngineResult
from ...core.stack import Window
from ...core.validation import InvalidInputError, check_image, check_mask
from .adapters import adapter_provenance, applied_adapter
from .canvas import (
    VARIANT_SEED_STRIDE,
    SliceCanvas,
    batch_rounds,
    describe_zs,
    finish_slice,
    run_window,
    selected_slices,
    slice_of,
    slice_seed,
)
from .hub import SD_WHAT, ModelSource, cached_model, load_pipeline, locate_model
from .numerics import batch_invariant_numerics, decode_latents_one_by_one, rgb_to_gray
from .relay import StepCounter, StepRelay


def load_engine_pipeline(
    engine: str,
    class_name: str,
    params,
    *,
    loader: Callable[[Any, ModelSource, Any], Any] | None = None,
) -> tuple[Any, ModelSource, str, Any]:
    """Load (or fetch from the model cache) ``diffusers.<class_name>`` from ``params.model``.

    The device and dtype come from ``params.device`` (fp16 on CUDA, fp32 elsewhere). The
    model is located first (a missing one raises
    :class:`~napari_scigen.core.models.ModelNotAvailableError` with what to download,
    writing nothing). ``loader(cls, source, dtype)`` replaces the default
    :func:`~.hub.load_pipeline` (no safety checker) for pipelines with other components.

    Returns
    -------
    pipeline, ModelSource, str, torch.dtype
        The cached pipeline (never change it: build a fresh one per run), its source,
        the device and the dtype.
    """
    from ...core.device import default_dtype_for, resolve_device

    device = resolve_device(params.device)
    dtype = default_dtype_for(device)
    source = locate_model(
        params.model,
        what=SD_WHAT,
        index_file="model_index.json",
        local_files_only=params.local_files_only,
    )

    def load():
        import diffusers

        cls = getattr(diffusers, class_name)
        pipe = (loader or load_pipeline)(cls, source, dtype)
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    cached = cached_model((engine, source.location, str(device), str(dtype)), load)
    return cached, source, device, dtype


def slice_canvases(
    image: np.ndarray,
    mask: np.ndarray | None,
    zs: Sequence[int],
    window: Window,
    params,
    *,
    variants: int = 1,
) -> list[SliceCanvas]:
    """One canvas per slice (and variant): crops around the mask, or tiles of the whole
    slice when ``mask`` is ``None``."""
    canvases = []
    for z in zs:
        data = slice_of(image, z)
        slice_mask = np.ones(data.shape, bool) if mask is None else slice_of(mask, z)
        for variant in range(int(variants)):
            canvases.append(
                SliceCanvas.create(
                    z,
                    data,
                    slice_mask,
                    window,
                    resolution=params.resolution,
                    context=params.context,
                    seed=slice_seed(params.seed, z, variant),
                    variant=variant,
                    whole_slice=mask is None,
                )
            )
    return canvases


def step_callback(relay: StepRelay):
    """A ``callback_on_step_end`` reporting each step and raising ``Cancelled`` on cancel."""

    def on_step_end(pipe, step, timestep, callback_kwargs):
        relay.step_or_raise()
        return callback_kwargs

    return on_step_end


def decode_gray(pipe, latents) -> np.ndarray:
    """Latents -> grayscale ``(B, H, W)`` in [0, 1], decoded one by one (batch-invariant)."""
    return rgb_to_gray(decode_latents_one_by_one(pipe, latents))


def encode_one_by_one(pipe, units: np.ndarray):
    """VAE latent modes (unscaled) of grayscale crops ``(B, H, W)`` in [0, 1], item by item.

    The VAE encoder is batch-dependent on CPU (like its decoder), so a slice's latents
    must not depend on the batch it runs in.
    """
    import torch

    from .numerics import gray_to_rgb

    pixels = pipe.image_processor.preprocess(gray_to_rgb(units))
    pixels = pixels.to(device=pipe.device, dtype=pipe.vae.dtype)
    with torch.no_grad():
        return torch.cat(
            [pipe.vae.encode(pixels[i : i + 1]).latent_dist.mode() for i in range(len(pixels))]
        )


RoundCall = Callable[[Any, list, StepRelay], np.ndarray]


def run_rounds(
    pipe,
    canvases: Sequence[SliceCanvas],
    params,
    call: RoundCall,
    *,
    steps_per_call: int | Callable[[list], int],
    cancel: CancelToken | None,
) -> Generator[Progress, None, None]:
    """Process every crop of ``canvases`` in batches and paste the results.

    ``call(pipe, items, relay)`` gets ``[(canvas, crop index), ...]`` and returns the
    generated crops as grayscale ``(B, H, W)`` in [0, 1]; it runs on batch-invariant
    numerics in a worker thread, and reports its steps through ``relay``.
    ``steps_per_call`` is the number of steps one call reports (or a function of its items).
    """
    rounds = batch_rounds(canvases, int(params.batch_size))
    steps = steps_per_call if callable(steps_per_call) else (lambda _items: steps_per_call)
    counter = StepCounter(sum(steps(items) for items in rounds))
    for number, items in enumerate(rounds, start=1):
        check_cancelled(cancel)
        message = f"batch {number}/{len(rounds)} ({describe_zs(sorted({c.z for c, _ in items}))})"

        def work(relay, items=items):
            with batch_invariant_numerics(str(pipe.device)):
                return call(pipe, items, relay)

        grays = yield from counter.relay(work, cancel, message, steps(items))
        check_cancelled(cancel)
        for (canvas, k), gray in zip(items, grays, strict=True):
            canvas.paste(k, gray, canvas.crop_input(k)[1])
        yield Progress(counter.done, counter.total, f"{message}: done")


def crop_batch(items) -> tuple[np.ndarray, np.ndarray, list]:
    """The model-unit crops, their edit masks and generators of one round."""
    inputs = [canvas.crop_input(k) for canvas, k in items]
    units = np.stack([unit for unit, _ in inputs])
    masks = np.stack([mask for _, mask in inputs])
    return units, masks, [canvas.generator for canvas, _ in items]


def compose(
    image: np.ndarray,
    mask: np.ndarray | None,
    canvases: Sequence[SliceCanvas],
    window: Window,
    feather: float,
    *,
    variants: int = 1,
) -> np.ndarray:
    """The output: a copy of ``image`` (per variant) with each processed slice composited.

    Pixels outside ``mask`` are bit-identical; ``mask=None`` replaces processed slices
    whole. Shape ``image.shape``, or ``(variants, *image.shape)`` when ``variants > 1``.
    """
    output = np.stack([np.array(image, copy=True) for _ in range(int(variants))])
    for canvas in canvases:
        original = slice_of(image, canvas.z)
        slice_mask = np.ones(original.shape, bool) if mask is None else slice_of(mask, canvas.z)
        edited = finish_slice(original, slice_mask, canvas.result_unit(), window, feather)
        if image.ndim == 2:
            output[canvas.variant] = edited
        else:
            output[canvas.variant, canvas.z] = edited
    return output[0] if variants == 1 else output


def engine_provenance(
    engine: str,
    params,
    image: np.ndarray,
    zs: Sequence[int],
    canvases: Sequence[SliceCanvas],
    window: Window,
    source: ModelSource,
    *,
    pipeline: str,
    device: str,
    dtype,
    adapter: dict | None,
    extra: dict | None = None,
) -> dict:
    """The provenance record the three engines share (model, seeds, window, crops, adapter)."""
    seeds = {
        f"{c.z}:{c.variant}" if params_variants(params) > 1 else str(c.z): c.seed for c in canvases
    }
    record = {
        "model_location": source.location,
        "pipeline": f"{pipeline} (diffusers)",
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "window": window.as_dict(),
        "seeds": seeds,
        "seed_rule": f"seed + z + {VARIANT_SEED_STRIDE} * variant",
        "tiles": {
            key: c.crops_in_slice_coordinates() for key, c in zip(seeds, canvases, strict=True)
        },
        "padding": [list(p) for p in canvases[0].pads] if canvases else [],
        "adapter": adapter_provenance(adapter),
    }
    record.update(extra or {})
    return make_provenance(
        engine,
        params,
        model=params.model,
        seed=list(seeds.values()),
        source={"shape": list(image.shape), "dtype": image.dtype.name, "slices": list(zs)},
        extra=record,
    )


def params_variants(params) -> int:
    """Outputs per slice of a run (1 for engines without ``count``)."""
    return int(getattr(params, "count", 1))


def masked_inputs(image, mask, slices) -> tuple[np.ndarray, list[int], np.ndarray | None]:
    """Checked image, selected slices and boolean mask (``None`` = whole slices).

    Raises
    ------
    InvalidInputError
        For a bad image, slices or mask, or a mask empty in every selected slice.
    """
    image = check_image(image)
    zs = selected_slices(image, slices)
    mask_bool = None if mask is None else check_mask(mask, image.shape, allow_empty=True)
    if mask_bool is not None and not any(slice_of(mask_bool, z).any() for z in zs):
        raise InvalidInputError(f"the mask is empty in {describe_zs(zs)}: paint the region first")
    return image, zs, mask_bool


def masked_result(
    engine: str,
    params,
    image: np.ndarray,
    mask: np.ndarray | None,
    zs: Sequence[int],
    canvases: Sequence[SliceCanvas],
    window: Window,
    source: ModelSource,
    **record,
) -> EngineResult:
    """The result of a crop-editing run: :func:`compose` + :func:`engine_provenance`.

    ``record`` holds ``pipeline``, ``device``, ``dtype``, ``adapter`` and ``extra`` of
    :func:`engine_provenance`. ``labels["mask"]`` is the mask used (absent without one).
    """
    variants = params_variants(params)
    output = compose(image, mask, canvases, window, params.feather, variants=variants)
    extra = {"masked": mask is not None, **record.pop("extra", {})}
    if variants > 1:
        extra["output_layout"] = "(variant, *image shape)"
    provenance = engine_provenance(
        engine, params, image, zs, canvases, window, source, extra=extra, **record
    )
    labels = {} if mask is None else {"mask": mask.astype(np.uint8)}
    return EngineResult(data=output, provenance=provenance, labels=labels)


def run_masked_edit(
    engine: str,
    pipeline: str,
    image: np.ndarray,
    mask: np.ndarray | None,
    params,
    call: RoundCall,
    *,
    slices=None,
    loading: str,
    steps_per_call: int | Callable[[list], int],
    cancel: CancelToken | None = None,
    cache_engine: str | None = None,
    loader: Callable[[Any, ModelSource, Any], Any] | None = None,
    overrides: Callable[[Any], dict] | None = None,
    prepare: Callable[[Any], None] | None = None,
    extra: dict | None = None,
) -> Generator[Progress, None, EngineResult]:
    """A whole crop-editing run: check, load, edit every crop in rounds, composite.

    The steps every masked Stable Diffusion engine shares: :func:`masked_inputs`, a
    ``loading`` progress message, :func:`load_engine_pipeline`, the run's intensity
    window, :func:`slice_canvases` (``count`` of ``params`` per slice), the adapter
    (:func:`~.adapters.applied_adapter`), :func:`run_rounds` and :func:`masked_result`.

    Parameters
    ----------
    engine : str
        Engine name recorded in the provenance.
    pipeline : str
        ``diffusers`` pipeline class name.
    image, mask, params
        As the engine's ``run_*`` function got them; never modified.
    call : RoundCall
        ``call(pipe, items, relay)``, see :func:`run_rounds`.
    slices : sequence of int, optional
        Slices to process (default all).
    loading : str
        The progress message while the model loads.
    steps_per_call : int or callable
        See :func:`run_rounds`.
    cancel : CancelToken, optional
        Checked before loading and at every step ``call`` reports.
    cache_engine : str, optional
        Engine whose cached pipeline is used (default ``engine``).
    loader : callable, optional
        See :func:`load_engine_pipeline`.
    overrides : callable, optional
        ``overrides(cached)`` gives the components the run's pipeline replaces (fresh
        schedulers, a cloned UNet); see :func:`~.adapters.applied_adapter`.
    prepare : callable, optional
        ``prepare(pipe)`` adjusts the run's own pipeline before the first round.
    extra : dict, optional
        Added to the provenance's ``extra``.

    Yields
    ------
    Progress

    Returns
    -------
    EngineResult
        See :func:`masked_result`.
    """
    image, zs, mask_bool = masked_inputs(image, mask, slices)
    yield Progress(0, 0, loading)
    check_cancelled(cancel)
    cached, source, device, dtype = load_engine_pipeline(
        cache_engine or engine, pipeline, params, loader=loader
    )
    window = run_window(image, params.window_percentiles)
    canvases = slice_canvases(
        image, mask_bool, zs, window, params, variants=params_variants(params)
    )
    components = overrides(cached) if overrides is not None else {}
    with applied_adapter(cached, params, **components) as (pipe, adapter):
        if prepare is not None:
            prepare(pipe)
        yield from run_rounds(
            pipe, canvases, params, call, steps_per_call=steps_per_call, cancel=cancel
        )
    return masked_result(
        engine,
        params,
        image,
        mask_bool,
        zs,
        canvases,
        window,
        source,
        pipeline=pipeline,
        device=device,
        dtype=dtype,
        adapter=adapter,
        extra=extra or {},
    )
