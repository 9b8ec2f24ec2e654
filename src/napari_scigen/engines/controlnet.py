"""ControlNet: structure-conditioned generation and inpainting of microCT slices.

Built on diffusers' ``StableDiffusionControlNetPipeline`` (txt2img conditioned on a
control image) and ``StableDiffusionControlNetInpaintPipeline`` (masked mode).

Control images
--------------
- :func:`canny_condition`: Canny edges of a slice computed with scikit-image on the
  real data range (fast and pure: the napari widget shows it as a live preview);
- :func:`control_from_layer`: any user layer, e.g. painted Labels of grains/pores
  (their boundaries, or the filled mask) or an image, as an RGB control image;
- in masked mode without a control layer, the inpaint ControlNet
  (``lllyasviel/control_v11p_sd15_inpaint``) is conditioned on the slice with the
  masked pixels set to -1, as that model was trained.

Outputs
-------
:func:`run_controlnet` returns generated slices shaped ``(n_variants, n_slices, Y, X)``
(``(n_variants, Y, X)`` for a 2D input), in the input dtype and intensity window.
:func:`run_controlnet_inpaint` returns the input with the masked region regenerated
(``(n_variants, *image.shape)`` when ``n_variants > 1``), every pixel outside the mask
bit-identical to the input. Windowing, crops, padding, compositing, seeds and batching
are shared with DiffEdit (:mod:`._sd_common`). Variant ``v`` of slice ``z`` uses seed
``seed + z + 1000003 * v``.

Cancellation uses the pipelines' ``callback_on_step_end``: it sets the pipeline's
``_interrupt`` flag (read by its ``interrupt`` property), and the engine raises
:class:`~napari_scigen.core.progress.Cancelled` once the call returns.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.device import default_dtype_for, resolve_device
from ..core.progress import Cancelled, CancelToken, Progress, check_cancelled
from ..core.provenance import make_provenance
from ..core.result import EngineResult
from ..core.stack import Window, percentile_window
from ..core.validation import InvalidInputError, check_image, check_mask
from ._sd_common import (
    DEFAULT_SD_MODEL,
    SD_WHAT,
    VARIANT_SEED_STRIDE,
    ModelSource,
    SliceCanvas,
    StepCounter,
    batch_invariant_numerics,
    batch_rounds,
    block_dilate,
    cached_model,
    check_common_params,
    check_prompt,
    chunked,
    decode_latents_one_by_one,
    describe_zs,
    finish_slice,
    fresh_pipeline,
    gray_to_rgb,
    load_from_source,
    locate_model,
    make_generator,
    pad_widths,
    pretrained_kwargs,
    rgb_to_gray,
    run_window,
    scheduler_from,
    select_slices,
    slice_of,
    slice_seed,
    unpad,
)

ENGINE = "controlnet"
INPAINT_ENGINE = "controlnet-inpaint"
CONTROLNET_WHAT = "ControlNet"
#: Default ControlNet for txt2img generation (Canny edges, SD 1.5).
DEFAULT_CONTROLNET_MODEL = "lllyasviel/sd-controlnet-canny"
#: Default ControlNet for masked generation (SD 1.5 v1.1 inpaint).
DEFAULT_INPAINT_CONTROLNET_MODEL = "lllyasviel/control_v11p_sd15_inpaint"
#: Schedulers that can be chosen by name.
SCHEDULERS = ("unipc", "ddim")
#: Integer layers with at most this many distinct values are treated as labels.
MAX_LABEL_VALUES = 32


# --------------------------------------------------------------------------------------
# Control images (pure NumPy / scikit-image: fast enough for a live preview)
# --------------------------------------------------------------------------------------


def canny_condition(
    slice_data: np.ndarray,
    *,
    sigma: float = 2.0,
    low: float = 0.1,
    high: float = 0.2,
    use_quantiles: bool = False,
    window: Window | None = None,
) -> np.ndarray:
    """Canny edge map of a slice, as ControlNet-Canny expects (white edges on black).

    The slice is first mapped to [0, 1] with an intensity window (by default its
    0.5-99.5 percentile range), so thresholds mean the same for 8-bit, 16-bit and
    float data: ``low``/``high`` are hysteresis thresholds on scikit-image's Sobel
    gradient magnitude of the Gaussian-smoothed windowed slice, i.e. in units of the
    window's intensity range (scikit-image's convention for float images). With
    ``use_quantiles=True`` they are quantiles of the gradient magnitude instead
    (``0.8``/``0.9`` keep roughly the strongest 10-20 % of gradients).

    Parameters
    ----------
    slice_data : numpy.ndarray
        2D grayscale slice (uint8, uint16, int16 or float32).
    sigma : float
        Gaussian smoothing in pixels (more = fewer, smoother edges).
    low, high : float
        Hysteresis thresholds, ``0 <= low <= high`` (``<= 1`` with quantiles).
    use_quantiles : bool
        Interpret the thresholds as quantiles.
    window : Window, optional
        Intensity window to use instead of the slice's percentiles (e.g. the volume's).

    Returns
    -------
    numpy.ndarray
        uint8 ``(Y, X)`` map with 255 on edges and 0 elsewhere.
    """
    from skimage.feature import canny

    data = check_image(slice_data, name="slice", ndim=(2,))
    if sigma < 0:
        raise InvalidInputError(f"Canny sigma must be >= 0, got {sigma}")
    if not 0 <= low <= high:
        raise InvalidInputError(
            f"Canny thresholds must satisfy 0 <= low <= high, got {low}, {high}"
        )
    if use_quantiles and high > 1:
        raise InvalidInputError(f"with use_quantiles the thresholds are quantiles <= 1, got {high}")
    window = window if window is not None else percentile_window(data, 0.5, 99.5)
    unit = window.to_unit(data).astype(np.float64)
    edges = canny(
        unit,
        sigma=float(sigma),
        low_threshold=float(low),
        high_threshold=float(high),
        use_quantiles=bool(use_quantiles),
        mode="nearest",
    )
    return edges.astype(np.uint8) * np.uint8(255)


def _is_label_layer(array: np.ndarray) -> bool:
    if array.dtype == bool:
        return True
    if not np.issubdtype(array.dtype, np.integer):
        return False
    values = np.unique(array)
    if len(values) > MAX_LABEL_VALUES:
        return False
    return not (array.dtype == np.uint8 and set(values.tolist()) <= {0, 255})


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return np.array(array, copy=True)
    window = percentile_window(array, 0.5, 99.5)
    return np.rint(window.to_unit(array) * 255.0).astype(np.uint8)


def control_from_layer(
    array: np.ndarray, *, kind: str = "auto", labels_as: str = "boundaries"
) -> np.ndarray:
    """Turn a user layer into an RGB control image.

    Parameters
    ----------
    array : numpy.ndarray
        ``(Y, X)`` labels/mask/image, or ``(Y, X, 3|4)`` RGB(A).
    kind : {"auto", "labels", "image"}
        How to read a 2D layer. ``"auto"``: boolean arrays and integer arrays with at
        most 32 distinct values are labels, except uint8 0/255 maps (already an
        edge map); anything else is an image.
    labels_as : {"boundaries", "mask"}
        For labels: white label boundaries on black (what a Canny ControlNet
        expects: paint grains/pores, get their outlines) or the filled non-zero region.

    Returns
    -------
    numpy.ndarray
        uint8 ``(Y, X, 3)`` control image; images are windowed to their 0.5-99.5
        percentile range unless already uint8.
    """
    from skimage.segmentation import find_boundaries

    if kind not in ("auto", "labels", "image"):
        raise InvalidInputError(f"kind must be 'auto', 'labels' or 'image', got {kind!r}")
    if labels_as not in ("boundaries", "mask"):
        raise InvalidInputError(f"labels_as must be 'boundaries' or 'mask', got {labels_as!r}")
    layer = np.asarray(array)
    if layer.size == 0:
        raise InvalidInputError("the control layer is empty")
    if layer.ndim == 3 and layer.shape[-1] in (3, 4):
        rgb = layer[..., :3]
        if not (np.issubdtype(rgb.dtype, np.number) or rgb.dtype == bool):
            raise InvalidInputError(f"control layer has unsupported dtype {rgb.dtype}")
        return _to_uint8(rgb.astype(np.float32) if rgb.dtype == bool else rgb)
    if layer.ndim != 2:
        raise InvalidInputError(
            f"a control layer must be (Y, X) or (Y, X, 3), got shape {layer.shape}"
        )
    as_labels = kind == "labels" or (kind == "auto" and _is_label_layer(layer))
    if as_labels:
        if labels_as == "boundaries":
            gray = find_boundaries(layer, mode="inner").astype(np.uint8) * np.uint8(255)
        else:
            gray = (layer != 0).astype(np.uint8) * np.uint8(255)
    else:
        gray = _to_uint8(check_image(layer, name="control layer", ndim=(2,)))
    return np.repeat(gray[..., None], 3, axis=-1)


def _control_maps(control, image: np.ndarray, zs: list[int]) -> dict[int, np.ndarray]:
    """Per-slice RGB uint8 control images from a user control layer."""
    layer = np.asarray(control)
    slice_shape = image.shape[-2:]
    is_rgb = layer.ndim >= 3 and layer.shape[-1] in (3, 4) and layer.shape[-3:-1] == slice_shape
    spatial = layer.shape[:-1] if is_rgb else layer.shape
    if spatial == slice_shape:
        shared = control_from_layer(layer)
        return dict.fromkeys(zs, shared)
    if image.ndim == 3 and spatial == image.shape:
        return {z: control_from_layer(layer[z]) for z in zs}
    raise InvalidInputError(
        f"control layer shape {layer.shape} fits neither one slice {tuple(slice_shape)} "
        f"nor the volume {image.shape}"
    )


def inpaint_condition(units: np.ndarray, masks: np.ndarray):
    """Control image for the inpaint ControlNet: the image with masked pixels set to -1.

    Parameters
    ----------
    units : numpy.ndarray
        ``(B, H, W)`` grayscale in [0, 1].
    masks : numpy.ndarray
        ``(B, H, W)`` boolean, True where the model generates.

    Returns
    -------
    torch.Tensor
        ``(B, 3, H, W)`` float32.
    """
    import torch

    control = np.repeat(np.asarray(units, dtype=np.float32)[:, None], 3, axis=1)
    control[np.repeat(np.asarray(masks, dtype=bool)[:, None], 3, axis=1)] = -1.0
    return torch.from_numpy(control)


# --------------------------------------------------------------------------------------
# Parameters and model loading
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlNetParams:
    """Parameters of a ControlNet run (frozen, JSON-serialisable for provenance).

    Parameters
    ----------
    model : str
        Hub id or local directory of the Stable Diffusion 1.5 base pipeline.
    controlnet_model : str
        ControlNet used with :func:`canny_condition` or a control layer.
    inpaint_controlnet_model : str
        ControlNet used in masked mode without a control layer.
    prompt, negative_prompt : str
        Text guidance.
    steps : int
        Denoising steps.
    guidance_scale : float
        Classifier-free guidance.
    conditioning_scale : float
        ControlNet residual scale (0 = ignore the control image).
    control_start, control_end : float
        Fraction of the schedule during which the ControlNet is applied.
    strength : float
        Masked mode only: 1 regenerates the mask from noise, lower keeps more of it.
    seed : int
        Base seed; variant ``v`` of slice ``z`` uses ``seed + z + 1000003 * v``.
    n_variants : int
        Outputs per slice, each with its own seed.
    resolution : int
        Model size in pixels (512 for SD 1.5); slices are padded up to it; in masked
        mode larger slices are processed in crops of this size around the mask.
    context : int
        Masked mode: unmasked pixels kept around the mask in each crop.
    feather : float
        Masked mode: blend ramp width inside the mask edge, in pixels.
    batch_size : int
        Images per pipeline call (slices x variants).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    canny_sigma, canny_low, canny_high : float
        :func:`canny_condition` settings.
    canny_use_quantiles : bool
        Interpret Canny thresholds as quantiles.
    scheduler : {"unipc", "ddim"}
        Sampler.
    local_files_only : bool
        Never download.
    window_percentiles : tuple of float
        Percentiles of the whole image mapped to [0, 1].
    """

    model: str = DEFAULT_SD_MODEL
    controlnet_model: str = DEFAULT_CONTROLNET_MODEL
    inpaint_controlnet_model: str = DEFAULT_INPAINT_CONTROLNET_MODEL
    prompt: str = "a grayscale microCT slice of porous rock"
    negative_prompt: str = ""
    steps: int = 20
    guidance_scale: float = 7.5
    conditioning_scale: float = 1.0
    control_start: float = 0.0
    control_end: float = 1.0
    strength: float = 1.0
    seed: int = 0
    n_variants: int = 1
    resolution: int = 512
    context: int = 64
    feather: float = 3.0
    batch_size: int = 1
    device: str = "auto"
    canny_sigma: float = 2.0
    canny_low: float = 0.1
    canny_high: float = 0.2
    canny_use_quantiles: bool = False
    scheduler: str = "unipc"
    local_files_only: bool = False
    window_percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        check_common_params(
            steps=self.steps,
            guidance_scale=self.guidance_scale,
            resolution=self.resolution,
            context=self.context,
            feather=self.feather,
            batch_size=self.batch_size,
            window_percentiles=self.window_percentiles,
            strength=self.strength,
        )
        if not 0 <= self.control_start < self.control_end <= 1:
            raise InvalidInputError(
                "control_start/control_end must satisfy 0 <= start < end <= 1, "
                f"got {self.control_start}, {self.control_end}"
            )
        if self.conditioning_scale < 0:
            raise InvalidInputError(
                f"conditioning_scale must be >= 0, got {self.conditioning_scale}"
            )
        if int(self.n_variants) < 1:
            raise InvalidInputError(f"n_variants must be >= 1, got {self.n_variants}")
        if self.scheduler not in SCHEDULERS:
            raise InvalidInputError(
                f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}"
            )


def load_controlnet_pipeline(
    model: str,
    controlnet_model: str,
    *,
    inpaint: bool,
    device: str,
    dtype,
    local_files_only: bool = False,
) -> tuple[Any, ModelSource, ModelSource]:
    """Load (or fetch from the model cache) a ControlNet pipeline.

    Both models are located first, so a missing one fails before anything loads.

    Parameters
    ----------
    model : str
        Base Stable Diffusion pipeline (hub id or local directory).
    controlnet_model : str
        ControlNet (hub id or local directory with ``config.json``).
    inpaint : bool
        Build ``StableDiffusionControlNetInpaintPipeline`` instead of the txt2img one.
    device : str
        Concrete torch device.
    dtype : torch.dtype
        Weights dtype.
    local_files_only : bool
        Never download.

    Returns
    -------
    pipeline, ModelSource, ModelSource
        The cached pipeline (do not mutate it) and where base and ControlNet came from.

    Raises
    ------
    ModelNotAvailableError
        When weights are missing and cannot be downloaded.
    """
    base = locate_model(
        model, what=SD_WHAT, index_file="model_index.json", local_files_only=local_files_only
    )
    net = locate_model(
        controlnet_model,
        what=CONTROLNET_WHAT,
        index_file="config.json",
        local_files_only=local_files_only,
    )

    def loader():
        from diffusers import (
            ControlNetModel,
            StableDiffusionControlNetInpaintPipeline,
            StableDiffusionControlNetPipeline,
        )

        controlnet = load_from_source(
            net,
            lambda location, flags: ControlNetModel.from_pretrained(
                location, **pretrained_kwargs(dtype), **flags
            ),
            what=CONTROLNET_WHAT,
        )
        cls = (
            StableDiffusionControlNetInpaintPipeline
            if inpaint
            else StableDiffusionControlNetPipeline
        )
        pipe = load_from_source(
            base,
            lambda location, flags: cls.from_pretrained(
                location,
                controlnet=controlnet,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
                **pretrained_kwargs(dtype),
                **flags,
            ),
            what=SD_WHAT,
        )
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    key = (
        INPAINT_ENGINE if inpaint else ENGINE,
        base.location,
        net.location,
        str(device),
        str(dtype),
    )
    return cached_model(key, loader), base, net


def _scheduler_for(pipe, name: str):
    from diffusers import DDIMScheduler, UniPCMultistepScheduler

    cls = {"unipc": UniPCMultistepScheduler, "ddim": DDIMScheduler}[name]
    return scheduler_from(cls, pipe.scheduler.config)


def _step_callback(relay):
    """A ``callback_on_step_end`` that reports steps and interrupts when cancelled."""

    def on_step_end(pipe, step, timestep, callback_kwargs):
        relay.step()
        if relay.should_stop():
            pipe._interrupt = True  # read by the pipeline's ``interrupt`` property
        return callback_kwargs

    return on_step_end


def _raise_if_interrupted(relay) -> None:
    if relay.should_stop():
        raise Cancelled("the job was cancelled; nothing was written")


def _run_pipeline(pipe, params: ControlNetParams, generators, relay, **inputs) -> np.ndarray:
    """One pipeline call with the shared settings, batch-invariant numerics and step
    callback; returns grayscale ``(B, H, W)`` in [0, 1] (latents decoded one by one)."""
    count = len(generators)
    with batch_invariant_numerics(str(pipe.device)):
        latents = pipe(
            prompt=[params.prompt] * count,
            negative_prompt=[params.negative_prompt] * count if params.negative_prompt else None,
            num_inference_steps=int(params.steps),
            guidance_scale=params.guidance_scale,
            controlnet_conditioning_scale=params.conditioning_scale,
            control_guidance_start=params.control_start,
            control_guidance_end=params.control_end,
            output_type="latent",
            generator=list(generators),
            callback_on_step_end=_step_callback(relay),
            **inputs,
        ).images
        _raise_if_interrupted(relay)
        return rgb_to_gray(decode_latents_one_by_one(pipe, latents))


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
    return _run_pipeline(
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
    slices : None, int, slice or sequence of int, optional
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
        ``data``: ``(n_variants, n_slices, Y, X)`` for a 3D input (``n_slices`` =
        the selected slices, in order, recorded in ``provenance["source"]["slices"]``)
        or ``(n_variants, Y, X)`` for a 2D input, in the input dtype. Slices smaller
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
    zs = select_slices(image, slices)
    window = run_window(image, params.window_percentiles)
    if control is None:
        maps = {
            z: np.repeat(
                canny_condition(
                    slice_of(image, z),
                    sigma=params.canny_sigma,
                    low=params.canny_low,
                    high=params.canny_high,
                    use_quantiles=params.canny_use_quantiles,
                    window=window,
                )[..., None],
                3,
                axis=-1,
            )
            for z in zs
        }
        control_source = "canny"
    else:
        maps = _control_maps(control, image, zs)
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
    pipe = fresh_pipeline(cached, scheduler=_scheduler_for(cached, params.scheduler))
    slice_shape = image.shape[-2:]
    pads = pad_widths(slice_shape, params.resolution)
    items = [(z, v) for z in zs for v in range(int(params.n_variants))]
    seeds = {f"{z}:{v}": slice_seed(params.seed, z, v) for z, v in items}
    batches = chunked(items, int(params.batch_size))
    counter = StepCounter(len(batches) * int(params.steps))
    output = np.empty((int(params.n_variants), len(zs), *slice_shape), dtype=image.dtype)
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
            [layer_controls[canvas.z][canvas.crops[k].window] for canvas, k in items]
        ).astype(np.float32)
        control = control / 255.0
    size = units.shape[-1]
    generated = _run_pipeline(
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
        ``None`` uses ``params.inpaint_controlnet_model`` conditioned on the slice with
        the masked pixels set to -1. A control layer (as for :func:`run_controlnet`)
        uses ``params.controlnet_model`` with that layer, e.g. painted grain labels.
    slices : None, int, slice or sequence of int, optional
        Slices to process (all by default); the others are copied unchanged.
    cancel : CancelToken, optional
        Checked at every denoising step.

    Yields
    ------
    Progress

    Returns
    -------
    EngineResult
        ``data``: the image's shape (``n_variants == 1``) or ``(n_variants, *image.shape)``,
        input dtype, every pixel outside the mask bit-identical to the input.
        ``labels["mask"]``: the mask used (uint8).
    """
    check_prompt(params.prompt, "prompt", "describe what the masked region should show")
    image = check_image(image)
    zs = select_slices(image, slices)
    mask_bool = check_mask(mask, image.shape, allow_empty=True)
    if not any(slice_of(mask_bool, z).any() for z in zs):
        raise InvalidInputError(f"the mask is empty in {describe_zs(zs)}: paint the region first")
    layer_maps = None if control is None else _control_maps(control, image, zs)
    window = run_window(image, params.window_percentiles)
    device = resolve_device(params.device)
    dtype = default_dtype_for(device)
    yield Progress(0, 0, "loading Stable Diffusion + ControlNet")
    check_cancelled(cancel)
    controlnet_model = (
        params.inpaint_controlnet_model if control is None else params.controlnet_model
    )
    cached, base, net = load_controlnet_pipeline(
        params.model,
        controlnet_model,
        inpaint=True,
        device=device,
        dtype=dtype,
        local_files_only=params.local_files_only,
    )
    pipe = fresh_pipeline(cached, scheduler=_scheduler_for(cached, params.scheduler))
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
        for v in range(int(params.n_variants))
    ]
    layer_controls = None
    if layer_maps is not None:
        pads = canvases[0].pads
        layer_controls = {
            z: np.pad(m, (*pads, (0, 0)), mode="reflect") for z, m in layer_maps.items()
        }
    rounds = batch_rounds(canvases, int(params.batch_size))
    per_call = min(int(params.steps * params.strength), int(params.steps))
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
    n_variants = int(params.n_variants)
    output = np.stack([np.array(image, copy=True) for _ in range(n_variants)])
    for canvas in canvases:
        original = slice_of(image, canvas.z)
        edited = finish_slice(
            original, slice_of(mask_bool, canvas.z), canvas.result_unit(), window, params.feather
        )
        if image.ndim == 2:
            output[canvas.variant] = edited
        else:
            output[canvas.variant, canvas.z] = edited
    if n_variants == 1:
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
            "control_source": "inpaint" if control is None else "layer",
            "output_layout": "image shape" if n_variants == 1 else "(variant, *image shape)",
            "tiles": {f"{c.z}:{c.variant}": c.crops_in_slice_coordinates() for c in canvases},
            "padding": [list(p) for p in canvases[0].pads],
            "latent_factor": pipe.vae_scale_factor,
            "slices_without_mask": sorted({c.z for c in canvases if not c.crops}),
        },
    )
    return EngineResult(
        data=output, provenance=provenance, labels={"mask": mask_bool.astype(np.uint8)}
    )
