"""DiffEdit: text-guided editing of masked regions in microCT slices (Stable Diffusion).

Built on diffusers' ``StableDiffusionDiffEditPipeline``. That pipeline lives under
``diffusers/pipelines/deprecated`` (still exported; the project pins ``diffusers<1``),
so everything touching it is isolated in this module (parameters:
:class:`~napari_scigen.engines.sd.params.DiffEditParams`). Two quirks it imposes:
its ``__call__`` wants the mask **at latent resolution** (we max-pool the painted
pixel mask by the VAE factor, 8, so no masked pixel is missed), and it supports only
the legacy ``callback(step, timestep, latents)`` (we raise
:class:`~napari_scigen.core.progress.Cancelled` from it to stop between steps).

Workflow
--------
1. Paint a mask, or call :func:`run_generate_mask` with a source and target prompt
   (DiffEdit's automatic mask); the mask comes back at pixel resolution as uint8
   labels so it can be corrected.
2. :func:`run_diffedit` inverts each masked crop with DDIM (source prompt), then
   denoises it towards the target prompt inside the mask.

microCT handling (shared with ControlNet, see :mod:`.canvas`): one percentile
window maps 8/16-bit/float data to [0, 1]; grayscale is replicated to RGB; model
output is averaged back to grayscale and mapped to the input dtype/range; slices
larger than ``resolution`` are processed in model-size crops around the mask
(never downscaled); smaller ones are reflect-padded; pixels outside the mask are
bit-identical to the input, with a feathered seam inside the mask.

Randomness is per slice: slice ``z`` uses ``torch.Generator().manual_seed(seed + z)``,
so its result is the same whether it runs alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from ...core.device import default_dtype_for, resolve_device
from ...core.progress import CancelToken, Progress, check_cancelled
from ...core.provenance import make_provenance
from ...core.result import EngineResult
from ...core.validation import InvalidInputError, check_image, check_mask
from .adapters import adapted_pipeline, adapter_provenance
from .canvas import (
    SliceCanvas,
    batch_rounds,
    describe_zs,
    finish_slice,
    latent_mask,
    run_window,
    selected_slices,
    slice_of,
    slice_seed,
    unpad,
    upsample_latent_mask,
)
from .hub import (
    SD_WHAT,
    ModelSource,
    cached_model,
    load_pipeline,
    locate_model,
    scheduler_from,
)
from .numerics import batch_invariant_numerics, decode_latents_one_by_one, gray_to_rgb, rgb_to_gray
from .params import DiffEditParams, check_prompt
from .relay import StepCounter

__all__ = [
    "MASK_LABEL",
    "DiffEditParams",
    "load_diffedit_pipeline",
    "run_diffedit",
    "run_generate_mask",
]

ENGINE = "diffedit"
MASK_ENGINE = "diffedit-mask"
#: Key of the mask in ``EngineResult.labels``.
MASK_LABEL = "diffedit_mask"


def load_diffedit_pipeline(
    model: str, *, device: str, dtype, local_files_only: bool = False
) -> tuple[Any, ModelSource]:
    """Load (or fetch from the model cache) a DiffEdit pipeline with DDIM schedulers.

    Parameters
    ----------
    model : str
        Hub id or local directory of a Stable Diffusion pipeline.
    device : str
        Concrete torch device (see :func:`~napari_scigen.core.device.resolve_device`).
    dtype : torch.dtype
        Weights dtype.
    local_files_only : bool
        Never download.

    Returns
    -------
    pipeline, ModelSource
        The cached pipeline (do not mutate it; see ``fresh_pipeline``) and where it came from.

    Raises
    ------
    ModelNotAvailableError
        When the weights are missing and cannot be downloaded.
    """
    source = locate_model(
        model, what=SD_WHAT, index_file="model_index.json", local_files_only=local_files_only
    )

    def loader():
        from diffusers import (
            DDIMInverseScheduler,
            DDIMScheduler,
            StableDiffusionDiffEditPipeline,
        )

        pipe = load_pipeline(StableDiffusionDiffEditPipeline, source, dtype)
        pipe.scheduler = scheduler_from(DDIMScheduler, pipe.scheduler.config)
        pipe.inverse_scheduler = scheduler_from(DDIMInverseScheduler, pipe.scheduler.config)
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    key = (ENGINE, source.location, str(device), str(dtype))
    return cached_model(key, loader), source


def _prepare(image, params: DiffEditParams, slices, cancel):
    """Shared start of both generators: checks, device, window, pipeline."""
    image = check_image(image)
    zs = selected_slices(image, slices)
    device = resolve_device(params.device)
    dtype = default_dtype_for(device)
    check_cancelled(cancel)
    cached, source = load_diffedit_pipeline(
        params.model, device=device, dtype=dtype, local_files_only=params.local_files_only
    )
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    pipe, adapter = adapted_pipeline(
        cached,
        params.adapter,
        params.adapter_scale,
        scheduler=scheduler_from(DDIMScheduler, cached.scheduler.config),
        inverse_scheduler=scheduler_from(DDIMInverseScheduler, cached.inverse_scheduler.config),
    )
    return image, zs, device, dtype, pipe, (source, adapter)


def _provenance(engine, params, image, zs, canvases, window, sources, device, dtype, extra):
    source, adapter = sources
    seeds = {str(c.z): c.seed for c in canvases}
    record_extra = {
        "model_location": source.location,
        "adapter": adapter_provenance(adapter),
        "pipeline": "StableDiffusionDiffEditPipeline (diffusers, deprecated module)",
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "window": window.as_dict(),
        "seeds": seeds,
        "seed_rule": "seed + z",
        "tiles": {str(c.z): c.crops_in_slice_coordinates() for c in canvases},
        "padding": {str(c.z): [list(p) for p in c.pads] for c in canvases},
    }
    record_extra.update(extra)
    return make_provenance(
        engine,
        params,
        model=params.model,
        seed=[c.seed for c in canvases],
        source={"shape": list(image.shape), "dtype": image.dtype.name, "slices": zs},
        extra=record_extra,
    )


def run_generate_mask(
    image: np.ndarray,
    params: DiffEditParams,
    *,
    slices=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Generate DiffEdit's automatic mask from ``source_prompt`` vs ``prompt``.

    Each slice is tiled with model-size crops; per crop, DiffEdit compares the noise
    predicted under both prompts and thresholds the difference at latent resolution.
    The mask is upsampled to pixel resolution so it can be corrected before editing.

    Parameters
    ----------
    image : numpy.ndarray
        2D slice or 3D volume (uint8, uint16, int16 or float32).
    params : DiffEditParams
        ``prompt`` must be set.
    slices : sequence of int, optional
        Slices to process (all by default).
    cancel : CancelToken, optional
        Checked between crops.

    Yields
    ------
    Progress

    Returns
    -------
    EngineResult
        ``data`` and ``labels["diffedit_mask"]``: uint8 labels (1 = edit) of the
        image's shape; unprocessed slices are 0. Provenance records seeds and crops.
    """
    check_prompt(params.prompt, "prompt", "describe what the region should become")
    selected_slices(check_image(image), slices)  # bad input fails before the model loads
    yield Progress(0, 0, "loading Stable Diffusion")
    image, zs, device, dtype, pipe, source = _prepare(image, params, slices, cancel)
    factor = pipe.vae_scale_factor
    window = run_window(image, params.window_percentiles)
    canvases = [
        SliceCanvas.create(
            z,
            slice_of(image, z),
            np.zeros(slice_of(image, z).shape, dtype=bool),
            window,
            resolution=params.resolution,
            context=0,
            seed=slice_seed(params.seed, z),
            whole_slice=True,
        )
        for z in zs
    ]
    total = sum(len(c.crops) for c in canvases)
    labels = np.zeros(image.shape, dtype=np.uint8)
    done = 0
    for canvas in canvases:
        padded = np.zeros(canvas.unit.shape, dtype=bool)
        for index, crop in enumerate(canvas.crops):
            check_cancelled(cancel)
            unit, _ = canvas.crop_input(index)
            with batch_invariant_numerics(device):
                latent = pipe.generate_mask(
                    image=gray_to_rgb(unit[None]),
                    source_prompt=params.source_prompt,
                    target_prompt=params.prompt,
                    num_maps_per_mask=int(params.mask_maps),
                    mask_encode_strength=params.mask_encode_strength,
                    mask_thresholding_ratio=params.mask_threshold,
                    num_inference_steps=int(params.steps),
                    guidance_scale=params.guidance_scale,
                    generator=[canvas.generator] * int(params.mask_maps),
                    output_type="np",
                )
            pixel = upsample_latent_mask(np.asarray(latent)[0], factor)
            core = crop.core.offset(-crop.window.y0, -crop.window.x0)
            padded[crop.core.slices] = pixel[core.slices]
            done += 1
            yield Progress(
                done, total, f"mask for slice {canvas.z}: crop {index + 1}/{len(canvas.crops)}"
            )
        result = unpad(padded, canvas.pads).astype(np.uint8)
        if image.ndim == 2:
            labels[...] = result
        else:
            labels[canvas.z] = result
    provenance = _provenance(
        MASK_ENGINE,
        params,
        image,
        zs,
        canvases,
        window,
        source,
        device,
        dtype,
        {"latent_factor": factor, "masked_pixels": int(np.count_nonzero(labels))},
    )
    return EngineResult(data=labels, provenance=provenance, labels={MASK_LABEL: labels})


def _edit_round(pipe, items, params: DiffEditParams, relay):
    """Invert and edit one batch of crops; returns (grayscale outputs, edit masks)."""
    import torch

    inputs = [canvas.crop_input(k) for canvas, k in items]
    units = np.stack([unit for unit, _ in inputs])
    masks = np.stack([mask for _, mask in inputs])
    latent = torch.from_numpy(latent_mask(masks, pipe.vae_scale_factor))[:, None]
    generators = [canvas.generator for canvas, _ in items]

    def on_step(step, timestep, latents):
        relay.step_or_raise()

    with batch_invariant_numerics(str(pipe.device)):
        return _invert_and_edit(pipe, params, units, latent, generators, on_step), masks


def _invert_and_edit(pipe, params, units, latent, generators, on_step):
    count = len(generators)
    inverted = pipe.invert(
        prompt=[params.source_prompt] * count,
        image=gray_to_rgb(units),
        num_inference_steps=int(params.steps),
        inpaint_strength=params.strength,
        guidance_scale=params.guidance_scale,
        generator=generators,
        callback=on_step,
    ).latents
    edited = pipe(
        prompt=[params.prompt] * count,
        negative_prompt=[params.source_prompt] * count,
        mask_image=latent,
        image_latents=inverted,
        num_inference_steps=int(params.steps),
        inpaint_strength=params.strength,
        guidance_scale=params.guidance_scale,
        generator=generators,
        output_type="latent",
        callback=on_step,
    ).images
    return rgb_to_gray(decode_latents_one_by_one(pipe, edited))


def run_diffedit(
    image: np.ndarray,
    mask: np.ndarray | None,
    params: DiffEditParams,
    *,
    slices=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Edit the masked region of each selected slice towards ``prompt``.

    Parameters
    ----------
    image : numpy.ndarray
        2D slice or 3D volume (uint8, uint16, int16 or float32); never modified.
    mask : numpy.ndarray or None
        Painted mask/labels (non-zero = edit) of the image's shape, or one 2D mask
        shared by every slice. ``None`` generates DiffEdit's automatic mask first
        (as :func:`run_generate_mask` would) and returns it in ``labels``.
    params : DiffEditParams
        ``prompt`` must be set.
    slices : sequence of int, optional
        Slices to process (all by default); others are copied unchanged.
    cancel : CancelToken, optional
        Checked at every denoising step; raises ``Cancelled`` and returns nothing.

    Yields
    ------
    Progress
        Per denoising step (inversion and editing) and per finished batch.

    Returns
    -------
    EngineResult
        ``data``: a copy of ``image`` (same dtype) with the masked pixels of the
        processed slices edited; every pixel outside the mask is bit-identical.
        ``labels["diffedit_mask"]``: the mask used (uint8). Provenance records model,
        parameters, per-slice seeds, the intensity window and the crops used.
    """
    check_prompt(params.prompt, "prompt", "describe what the masked region should become")
    image = check_image(image)
    zs = selected_slices(image, slices)
    mask_source = "painted"
    if mask is None:
        generated = yield from run_generate_mask(image, params, slices=zs, cancel=cancel)
        mask_bool = generated.labels[MASK_LABEL] > 0
        mask_source = "generate_mask"
    else:
        mask_bool = check_mask(mask, image.shape, allow_empty=True)
    if not any(slice_of(mask_bool, z).any() for z in zs):
        raise InvalidInputError(
            f"the mask is empty in {describe_zs(zs)}: paint the region to edit, or use the automatic mask"
        )
    yield Progress(0, 0, "loading Stable Diffusion")
    image, zs, device, dtype, pipe, source = _prepare(image, params, zs, cancel)
    window = run_window(image, params.window_percentiles)
    canvases = [
        SliceCanvas.create(
            z,
            slice_of(image, z),
            slice_of(mask_bool, z),
            window,
            resolution=params.resolution,
            context=params.context,
            seed=slice_seed(params.seed, z),
        )
        for z in zs
    ]
    rounds = batch_rounds(canvases, int(params.batch_size))
    per_call = 2 * params.edit_steps
    counter = StepCounter(len(rounds) * per_call)
    for number, items in enumerate(rounds, start=1):
        check_cancelled(cancel)
        zs_here = [canvas.z for canvas, _ in items]
        message = f"batch {number}/{len(rounds)} ({describe_zs(zs_here)})"
        grays, masks = yield from counter.relay(
            lambda relay, items=items: _edit_round(pipe, items, params, relay),
            cancel,
            message,
            per_call,
        )
        check_cancelled(cancel)
        for (canvas, k), gray, edit_mask in zip(items, grays, masks, strict=True):
            canvas.paste(k, gray, edit_mask)
        yield Progress(counter.done, counter.total, f"{message}: done")
    output = np.array(image, copy=True)
    for canvas in canvases:
        original = slice_of(image, canvas.z)
        edited = finish_slice(
            original, slice_of(mask_bool, canvas.z), canvas.result_unit(), window, params.feather
        )
        if image.ndim == 2:
            output = edited
        else:
            output[canvas.z] = edited
    mask_labels = mask_bool.astype(np.uint8)
    provenance = _provenance(
        ENGINE,
        params,
        image,
        zs,
        canvases,
        window,
        source,
        device,
        dtype,
        {
            "mask_source": mask_source,
            "latent_factor": pipe.vae_scale_factor,
            "edit_steps": params.edit_steps,
            "slices_without_mask": [c.z for c in canvases if not c.crops],
        },
    )
    return EngineResult(data=output, provenance=provenance, labels={MASK_LABEL: mask_labels})
