"""Stable unCLIP image variation: new slices that share the look of real ones.

Built on diffusers' ``StableUnCLIPImg2ImgPipeline`` (one of the models Sordo et al.,
J. Imaging 2025, compared). The UNet is conditioned on the CLIP image embedding of the
input (noised by ``noise_level``: higher = more varied) and optionally a prompt; the
input's pixels are *not* kept, only what CLIP sees in them.

* :func:`run_unclip` (task ``generate``): one variation per slice and variant, at the
  slice's own size (padded to at least ``resolution``, cropped back), mapped to the
  input's dtype and intensity window: ``(count, n_slices, Y, X)`` like ControlNet.
* :func:`run_unclip_inpaint` (task ``inpaint``): each crop around the mask is replaced by
  a variation of that crop inside the mask (feathered seam inside the mask, every pixel
  outside bit-identical).

Image embeddings are computed one crop at a time (the CLIP encoder is batch-dependent on
CPU), and slice ``z`` (variant ``v``) uses ``seed + z + 1000003 * v``, so a slice gives
the same result alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ...core.params import param
from ...core.progress import CancelToken, Progress, check_cancelled
from ...core.provenance import make_provenance
from ...core.result import EngineResult
from ...core.validation import check_image
from .adapters import adapter_provenance, applied_adapter
from .canvas import (
    VARIANT_SEED_STRIDE,
    chunked,
    describe_zs,
    make_generator,
    pad_widths,
    reflect_pad,
    run_window,
    selected_slices,
    slice_of,
    slice_seed,
    unpad,
)
from .family import crop_batch, decode_gray, load_engine_pipeline, run_masked_edit
from .hub import load_from_source, pretrained_kwargs, scheduler_from
from .numerics import batch_invariant_numerics, gray_to_rgb
from .params import StableDiffusionParams, model_param, steps_param, variants_param
from .relay import StepCounter

ENGINE = "unclip"
INPAINT_ENGINE = "unclip-inpaint"
PIPELINE = "StableUnCLIPImg2ImgPipeline"
#: Default Stable unCLIP model (SD 2.1, CLIP ViT-L/14 image embeddings, 768 px).
DEFAULT_UNCLIP_MODEL = "stabilityai/stable-diffusion-2-1-unclip-small"


@dataclass(frozen=True)
class UnCLIPParams(StableDiffusionParams):
    """Parameters of a Stable unCLIP run (see :func:`run_unclip`)."""

    model: str = model_param(
        DEFAULT_UNCLIP_MODEL,
        "Hugging Face id or local folder of a Stable unCLIP (img2img) pipeline",
        "unCLIP model",
    )
    resolution: int = param(
        768,
        help="model crop size in pixels, a multiple of 8 (768 for the SD 2.1 unCLIP models); "
        "smaller slices are padded to it",
        min=16,
        step=8,
        label="model size (px)",
        advanced=True,
    )
    steps: int = steps_param(20)
    guidance_scale: float = param(
        10.0,
        help="classifier-free guidance scale (image embedding and prompt)",
        min=0.0,
        step=0.5,
        flag="guidance",
        label="guidance",
    )
    prompt: str = param("", help="optional text guidance (empty = image only)", kind="prompt")
    negative_prompt: str = param("", help="what to avoid", kind="prompt")
    noise_level: int = param(
        0,
        help="noise added to the image embedding (0..999): higher = more varied, less like "
        "the input",
        min=0,
        max=999,
    )
    count: int = variants_param()


def _load(cls, source, dtype):
    """unCLIP keeps its CLIP image processor (the default loader drops feature extractors)."""
    return load_from_source(
        source,
        lambda location, flags: cls.from_pretrained(location, **pretrained_kwargs(dtype), **flags),
        what="Stable unCLIP",
    )


def image_embeddings(pipe, units: np.ndarray):
    """CLIP image embeddings of grayscale crops ``(B, H, W)`` in [0, 1], one crop at a time."""
    import torch

    encoder = pipe.image_encoder
    with torch.no_grad():
        pixels = pipe.feature_extractor(
            images=list(gray_to_rgb(units)), do_rescale=False, return_tensors="pt"
        ).pixel_values.to(device=pipe.device, dtype=encoder.dtype)
        return torch.cat([encoder(pixels[i : i + 1]).image_embeds for i in range(len(pixels))])


def _variations(pipe, params: UnCLIPParams, units, generators, relay) -> np.ndarray:
    """One pipeline call: a variation of each crop, grayscale ``(B, H, W)`` in [0, 1]."""
    count = len(generators)
    height, width = units.shape[-2:]

    def on_step(step, timestep, latents):
        relay.step_or_raise()

    latents = pipe(
        image_embeds=image_embeddings(pipe, units),
        prompt=[params.prompt] * count,
        negative_prompt=[params.negative_prompt] * count if params.negative_prompt else None,
        height=height,
        width=width,
        num_inference_steps=int(params.steps),
        guidance_scale=params.guidance_scale,
        noise_level=int(params.noise_level),
        generator=list(generators),
        output_type="latent",
        callback=on_step,
    ).images
    return decode_gray(pipe, latents)


def _fresh_schedulers(cached) -> dict:
    """The run's own copies of the cached pipeline's two schedulers."""
    return {
        "scheduler": scheduler_from(type(cached.scheduler), cached.scheduler.config),
        "image_noising_scheduler": scheduler_from(
            type(cached.image_noising_scheduler), cached.image_noising_scheduler.config
        ),
    }


def _prepare(params: UnCLIPParams):
    cached, source, device, dtype = load_engine_pipeline(ENGINE, PIPELINE, params, loader=_load)
    return device, dtype, cached, source, _fresh_schedulers(cached)


def run_unclip(
    image: np.ndarray,
    params: UnCLIPParams,
    *,
    slices=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Generate image variations of the selected slices.

    Parameters
    ----------
    image : numpy.ndarray
        2D slice or 3D volume; its dtype and intensity window define the output's.
    params : UnCLIPParams
    slices : sequence of int, optional
        Slices to vary (default all).
    cancel : CancelToken, optional
        Checked at every denoising step.

    Returns
    -------
    EngineResult
        ``data``: ``(count, n_slices, Y, X)`` for a 3D input (the selected slices
        in order) or ``(count, Y, X)`` for a 2D one, in the input dtype.
    """
    image = check_image(image)
    zs = selected_slices(image, slices)
    window = run_window(image, params.window_percentiles)
    yield Progress(0, 0, "loading Stable unCLIP")
    check_cancelled(cancel)
    device, dtype, cached, source, overrides = _prepare(params)
    slice_shape = image.shape[-2:]
    pads = pad_widths(slice_shape, params.resolution)
    items = [(z, v) for z in zs for v in range(int(params.count))]
    seeds = {f"{z}:{v}": slice_seed(params.seed, z, v) for z, v in items}
    batches = chunked(items, int(params.batch_size))
    counter = StepCounter(len(batches) * int(params.steps))
    output = np.empty((int(params.count), len(zs), *slice_shape), dtype=image.dtype)
    position = {z: i for i, z in enumerate(zs)}
    with applied_adapter(cached, params, **overrides) as (pipe, adapter):
        for number, batch in enumerate(batches, start=1):
            check_cancelled(cancel)
            units = np.stack(
                [reflect_pad(window.to_unit(slice_of(image, z)), pads) for z, _ in batch]
            )
            generators = [make_generator(seeds[f"{z}:{v}"]) for z, v in batch]
            message = (
                f"batch {number}/{len(batches)} ({describe_zs(sorted({z for z, _ in batch}))})"
            )

            def work(relay, units=units, generators=generators):
                with batch_invariant_numerics(str(pipe.device)):
                    return _variations(pipe, params, units, generators, relay)

            grays = yield from counter.relay(work, cancel, message, int(params.steps))
            check_cancelled(cancel)
            for (z, v), gray in zip(batch, grays, strict=True):
                output[v, position[z]] = window.from_unit(unpad(gray, pads))
            yield Progress(counter.done, counter.total, f"{message}: done")
    if image.ndim == 2:
        output = output[:, 0]
    provenance = make_provenance(
        ENGINE,
        params,
        model=params.model,
        seed=list(seeds.values()),
        source={"shape": list(image.shape), "dtype": image.dtype.name, "slices": zs},
        extra={
            "model_location": source.location,
            "pipeline": f"{PIPELINE} (diffusers)",
            "device": device,
            "dtype": str(dtype).replace("torch.", ""),
            "window": window.as_dict(),
            "seeds": seeds,
            "seed_rule": f"seed + z + {VARIANT_SEED_STRIDE} * variant",
            "output_layout": "(variant, slice, Y, X)" if image.ndim == 3 else "(variant, Y, X)",
            "padding": [list(p) for p in pads],
            "adapter": adapter_provenance(adapter),
        },
    )
    return EngineResult(data=output, provenance=provenance)


def run_unclip_inpaint(
    image: np.ndarray,
    mask: np.ndarray,
    params: UnCLIPParams,
    *,
    slices=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Replace the masked region of each selected slice by an unCLIP variation of its crop.

    Returns
    -------
    EngineResult
        ``data``: the image's shape (``(count, *image.shape)`` when
        ``count > 1``) and dtype, every pixel outside the mask bit-identical;
        ``labels["mask"]``: the mask used (uint8).
    """

    def call(pipe, items, relay):
        units, _, generators = crop_batch(items)
        return _variations(pipe, params, units, generators, relay)

    return (
        yield from run_masked_edit(
            INPAINT_ENGINE,
            PIPELINE,
            image,
            mask,
            params,
            call,
            slices=slices,
            loading="loading Stable unCLIP",
            steps_per_call=int(params.steps),
            cancel=cancel,
            cache_engine=ENGINE,
            loader=_load,
            overrides=_fresh_schedulers,
        )
    )
