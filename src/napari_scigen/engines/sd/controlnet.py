"""ControlNet: structure-conditioned generation and inpainting of microCT slices.

Built on diffusers' ``StableDiffusionControlNetPipeline`` (txt2img conditioned on a
control image) and ``StableDiffusionControlNetInpaintPipeline`` (masked mode); see
:mod:`.controlnet_pipeline`. Parameters:
:class:`~napari_scigen.engines.sd.params.ControlNetParams`.

Control images (:mod:`.control`)
--------------------------------
- Canny edges of each slice on the run's intensity window (the default, and in masked
  mode with ``masked_control="canny"``);
- a user layer (``control=``), e.g. painted Labels of grains/pores (their boundaries)
  or an image;
- in masked mode without a control layer and ``masked_control="inpaint"`` (the
  default), the inpaint ControlNet (``lllyasviel/control_v11p_sd15_inpaint``) is
  conditioned on the slice with the masked pixels set to -1, as that model was trained.

Outputs
-------
:func:`run_controlnet` returns generated slices shaped ``(count, n_slices, Y, X)``
(``(count, Y, X)`` for a 2D input), in the input dtype and intensity window.
:func:`run_controlnet_inpaint` returns the input with the masked region regenerated
(``(count, *image.shape)`` when ``count > 1``), every pixel outside the mask
bit-identical to the input. Windowing, crops, padding, compositing, seeds and batching
are shared with DiffEdit (:mod:`.canvas`). Variant ``v`` of slice ``z`` uses seed
``seed + z + 1000003 * v``.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ...core.device import default_dtype_for, resolve_device
from ...core.progress import CancelToken, Progress, check_cancelled
from ...core.provenance import make_provenance
from ...core.result import EngineResult
from ...core.validation import InvalidInputError, check_image, check_mask
from .adapters import adapted_pipeline, adapter_provenance
from .canvas import (
    VARIANT_SEED_STRIDE,
    SliceCanvas,
    batch_rounds,
    block_dilate,
    chunked,
    describe_zs,
    finish_slice,
    make_generator,
    pad_widths,
    run_window,
    selected_slices,
    slice_of,
    slice_seed,
    unpad,
)
from .control import canny_maps, control_maps, inpaint_condition
from .controlnet_pipeline import load_controlnet_pipeline, run_pipeline, scheduler_for
from .numerics import gray_to_rgb
from .params import ControlNetParams, check_prompt
from .relay import StepCounter

__all__ = ["ControlNetParams", "run_controlnet", "run_controlnet_inpaint"]

ENGINE = "controlnet"
INPAINT_ENGINE = "controlnet-inpaint"


def _provenance(engine, params, image, zs, seeds, window, sources, device, dtype, extra):
    base, net = sources
    record_extra = {
        "model_location": base.location,
        "controlnet": net.requested,
        "controlnet_location": net.location,
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "window": window.as_dict(),
        "seeds": seeds,
        "seed_rule": f"seed + z + {VARIANT_SEED_STRIDE} * variant",
    }
    record_extra.update(extra)
    return make_provenance(
        engine,
        params,
        model=params.model,
        seed=list(seeds.values()),
        source={"shape": list(image.shape), "dtype": image.dtype.name, "slices": zs},
        extra=record_extra,
    )


# --------------------------------------------------------------------------------------
# txt2img conditioned on Canny edges or a control layer
# --------------------------------------------------------------------------------------


def _generate_batch(pipe, params, controls: np.ndarray, generators, relay) -> np.ndarray:
    """One txt2img call; returns grayscale ``(B, H, W)`` in [0, 1]."""
    height, width = controls.shape[1:3]
    return run_pipeline(
        pipe,
        params,
        generators,
        relay,
        image=controls.astype(np.float32) / 255.0,
        height=height,
        width=width,
    )


def run_controlnet(
    image: np.ndarray,
    params: ControlNetParams,
    *,
    control: np.ndarray | None = None,
    slices=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Generate new slices whose structure follows each slice's Canny edges (or a control layer).

    Parameters
    ----------
    image : numpy.ndarray
        2D slice or 3D volume; its edges condition the generation and its dtype and
        intensity window define the output's. Never modified.
    params : ControlNetParams
        ``prompt`` must be set.
    control : numpy.ndarray, optional
        A user control layer instead of Canny edges: one slice ``(Y, X)`` shared by all
        slices, or the volume's shape (per slice), or RGB ``(..., 3)``; converted with
        :func:`control_from_layer`.
    slices : sequence of int, optional
        Slices to generate from (all by default).
    cancel : CancelToken, optional
        Checked at every denoising step.

    Yields
    ------
    Progress
        Per denoising step and per finished batch.

    Returns
    -------
    EngineResult
        ``data``: ``(count, n_slices, Y, X)`` for a 3D input (``n_slices`` =
        the selected slices, in order, recorded in ``provenance["source"]["slices"]``)
        or ``(count, Y, X)`` for a 2D input, in the input dtype. Slices smaller
        than ``resolution`` are generated padded and cropped back; larger ones are
        generated at their own size (rounded up to a multiple of 8).
        ``images["control"]``: the RGB control images used, ``(n_slices, Y, X, 3)``
        (``(Y, X, 3)`` for 2D). Canny edges use the run's intensity window (the whole
        image's ``window_percentiles``), so thresholds mean the same on every slice and
        ``canny_condition(slice, ..., window=percentile_window(image, 0.5, 99.5))``
        previews exactly the control image used.
    """
    check_prompt(params.prompt, "prompt", "describe the image to generate")
    image = check_image(image)
    zs = selected_slices(image, slices)
    window = run_window(image, params.window_percentiles)
    if control is None:
        maps = canny_maps(image, zs, window, **params.canny_settings)
        control_source = "canny"
    else:
        maps = control_maps(control, image, zs)
        control_source = "layer"
    device = resolve_device(params.device)
    dtype = default_dtype_for(device)
    yield Progress(0, 0, "loading Stable Diffusion + ControlNet")
    check_cancelled(cancel)
    cached, base, net = load_controlnet_pipeline(
        params.model,
        params.controlnet_model,
        inpaint=False,
        device=device,
        dtype=dtype,
        local_files_only=params.local_files_only,
    )
    pipe, adapter = adapted_pipeline(
        cached,
        params.adapter,
        params.adapter_scale,
        scheduler=scheduler_for(cached, params.scheduler),
    )
    slice_shape = image.shape[-2:]
    pads = pad_widths(slice_shape, params.resolution)
    items = [(z, v) for z in zs for v in range(int(params.count))]
    seeds = {f"{z}:{v}": slice_seed(params.seed, z, v) for z, v in items}
    batches = chunked(items, int(params.batch_size))
    counter = StepCounter(len(batches) * int(params.steps))
    output = np.empty((int(params.count), len(zs), *slice_shape), dtype=image.dtype)
    position = {z: i for i, z in enumerate(zs)}
    for number, batch in enumerate(batches, start=1):
        check_cancelled(cancel)
        controls = np.stack([np.pad(maps[z], (*pads, (0, 0)), mode="reflect") for z, _ in batch])
        generators = [make_generator(seeds[f"{z}:{v}"]) for z, v in batch]
        message = f"batch {number}/{len(batches)} ({describe_zs(sorted({z for z, _ in batch}))})"
        grays = yield from counter.relay(
            lambda relay, c=controls, g=generators: _generate_batch(pipe, params, c, g, relay),
            cancel,
            message,
            int(params.steps),
        )
        check_cancelled(cancel)
        for (z, v), gray in zip(batch, grays, strict=True):
            output[v, position[z]] = window.from_unit(unpad(gray, pads))
        yield Progress(counter.done, counter.total, f"{message}: done")
    controls_used = np.stack([maps[z] for z in zs])
    if image.ndim == 2:
        output = output[:, 0]
        controls_used = controls_used[0]
    provenance = _provenance(
        ENGINE,
        params,
        image,
        zs,
        seeds,
        window,
        (base, net),
        device,
        dtype,
        {
            "adapter": adapter_provenance(adapter),
            "control_source": control_source,
            "output_layout": "(variant, slice, Y, X)" if image.ndim == 3 else "(variant, Y, X)",
            "generated_size": [slice_shape[0] + sum(pads[0]), slice_shape[1] + sum(pads[1])],
            "padding": [list(p) for p in pads],
        },
    )
    return EngineResult(data=output, provenance=provenance, images={"control": controls_used})


# --------------------------------------------------------------------------------------
# Masked mode (inpainting)
# --------------------------------------------------------------------------------------


def _inpaint_round(pipe, items, params, layer_controls, relay):
    """One inpaint call over ``(canvas, crop)`` items; returns (grays, edit masks)."""
    inputs = [canvas.crop_input(k) for canvas, k in items]
    units = np.stack([unit for unit, _ in inputs])
    masks = np.stack([mask for _, mask in inputs])
    factor = pipe.vae_scale_factor
    generate = np.stack([block_dilate(mask, factor) for mask in masks])
    if layer_controls is None:
        control = inpaint_condition(units, generate)
    else:
        control = np.stack(
            [layer_controls[canvas.z][canvas.crops[k].window.slices] for canvas, k in items]
        ).astype(np.float32)
        control = control / 255.0
    size = units.shape[-1]
    generated = run_pipeline(
        pipe,
        params,
        [canvas.generator for canvas, _ in items],
        relay,
        image=gray_to_rgb(units),
        mask_image=generate.astype(np.float32),
        control_image=control,
        height=size,
        width=size,
        strength=params.strength,
    )
    return generated, masks


def run_controlnet_inpaint(
    image: np.ndarray,
    mask: np.ndarray,
    params: ControlNetParams,
    *,
    control: np.ndarray | None = None,
    slices=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Regenerate the masked region of each selected slice with ControlNet.

    Parameters
    ----------
    image : numpy.ndarray
        2D slice or 3D volume; never modified.
    mask : numpy.ndarray
        Mask/labels (non-zero = regenerate) of the image's shape, or one 2D mask for all slices.
    params : ControlNetParams
        ``prompt`` must be set.
    control : numpy.ndarray, optional
        A control layer (as for :func:`run_controlnet`), e.g. painted grain labels,
        used with ``params.controlnet_model``. ``None``: with
        ``params.masked_control == "inpaint"`` the ``params.inpaint_controlnet_model``
        is conditioned on the slice with the masked pixels set to -1; with ``"canny"``
        ``params.controlnet_model`` is conditioned on each slice's Canny edges (the
        ``canny_*`` fields, on the run's intensity window).
    slices : sequence of int, optional
        Slices to process (all by default); the others are copied unchanged.
    cancel : CancelToken, optional
        Checked at every denoising step.

    Yields
    ------
    Progress

    Returns
    -------
    EngineResult
        ``data``: the image's shape (``count == 1``) or ``(count, *image.shape)``,
        input dtype, every pixel outside the mask bit-identical to the input.
        ``labels["mask"]``: the mask used (uint8). ``provenance["extra"]["control_source"]``
        is ``"inpaint"``, ``"canny"`` or ``"layer"``.
    """
    check_prompt(params.prompt, "prompt", "describe what the masked region should show")
    image = check_image(image)
    zs = selected_slices(image, slices)
    mask_bool = check_mask(mask, image.shape, allow_empty=True)
    if not any(slice_of(mask_bool, z).any() for z in zs):
        raise InvalidInputError(f"the mask is empty in {describe_zs(zs)}: paint the region first")
    window = run_window(image, params.window_percentiles)
    if control is not None:
        layer_maps, control_source = control_maps(control, image, zs), "layer"
    elif params.masked_control == "canny":
        layer_maps = canny_maps(image, zs, window, **params.canny_settings)
        control_source = "canny"
    else:
        layer_maps, control_source = None, "inpaint"
    device = resolve_device(params.device)
    dtype = default_dtype_for(device)
    yield Progress(0, 0, "loading Stable Diffusion + ControlNet")
    check_cancelled(cancel)
    controlnet_model = (
        params.inpaint_controlnet_model if layer_maps is None else params.controlnet_model
    )
    cached, base, net = load_controlnet_pipeline(
        params.model,
        controlnet_model,
        inpaint=True,
        device=device,
        dtype=dtype,
        local_files_only=params.local_files_only,
    )
    pipe, adapter = adapted_pipeline(
        cached,
        params.adapter,
        params.adapter_scale,
        scheduler=scheduler_for(cached, params.scheduler),
    )
    canvases = [
        SliceCanvas.create(
            z,
            slice_of(image, z),
            slice_of(mask_bool, z),
            window,
            resolution=params.resolution,
            context=params.context,
            seed=slice_seed(params.seed, z, v),
            variant=v,
        )
        for z in zs
        for v in range(int(params.count))
    ]
    layer_controls = None
    if layer_maps is not None:
        pads = canvases[0].pads
        layer_controls = {
            z: np.pad(m, (*pads, (0, 0)), mode="reflect") for z, m in layer_maps.items()
        }
    rounds = batch_rounds(canvases, int(params.batch_size))
    per_call = params.inpaint_steps
    counter = StepCounter(len(rounds) * per_call)
    for number, items in enumerate(rounds, start=1):
        check_cancelled(cancel)
        message = f"batch {number}/{len(rounds)} ({describe_zs(sorted({c.z for c, _ in items}))})"
        grays, masks = yield from counter.relay(
            lambda relay, items=items: _inpaint_round(pipe, items, params, layer_controls, relay),
            cancel,
            message,
            per_call,
        )
        check_cancelled(cancel)
        for (canvas, k), gray, edit_mask in zip(items, grays, masks, strict=True):
            canvas.paste(k, gray, edit_mask)
        yield Progress(counter.done, counter.total, f"{message}: done")
    count = int(params.count)
    output = np.stack([np.array(image, copy=True) for _ in range(count)])
    for canvas in canvases:
        original = slice_of(image, canvas.z)
        edited = finish_slice(
            original, slice_of(mask_bool, canvas.z), canvas.result_unit(), window, params.feather
        )
        if image.ndim == 2:
            output[canvas.variant] = edited
        else:
            output[canvas.variant, canvas.z] = edited
    if count == 1:
        output = output[0]
    seeds = {f"{c.z}:{c.variant}": c.seed for c in canvases}
    provenance = _provenance(
        INPAINT_ENGINE,
        params,
        image,
        zs,
        seeds,
        window,
        (base, net),
        device,
        dtype,
        {
            "adapter": adapter_provenance(adapter),
            "control_source": control_source,
            "output_layout": "image shape" if count == 1 else "(variant, *image shape)",
            "tiles": {f"{c.z}:{c.variant}": c.crops_in_slice_coordinates() for c in canvases},
            "padding": [list(p) for p in canvases[0].pads],
            "latent_factor": pipe.vae_scale_factor,
            "slices_without_mask": sorted({c.z for c in canvases if not c.crops}),
        },
    )
    return EngineResult(
        data=output, provenance=provenance, labels={"mask": mask_bool.astype(np.uint8)}
    )
