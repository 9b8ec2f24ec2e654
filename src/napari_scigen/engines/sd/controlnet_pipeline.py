"""The ControlNet pipelines: loading (txt2img or inpaint) and one batched call.

Both engines of :mod:`.controlnet` go through :func:`run_pipeline`: the shared
sampling settings, batch-invariant numerics, a ``callback_on_step_end`` that reports
steps and interrupts on cancel (it sets the pipeline's ``_interrupt`` flag, read by
its ``interrupt`` property; :class:`~napari_scigen.core.progress.Cancelled` is raised
once the call returns), and latents decoded one by one. diffusers is imported lazily.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core.progress import Cancelled
from .hub import (
    SD_WHAT,
    ModelSource,
    cached_model,
    load_from_source,
    load_pipeline,
    locate_model,
    pretrained_kwargs,
    scheduler_from,
)
from .numerics import batch_invariant_numerics, decode_latents_one_by_one, rgb_to_gray
from .params import ControlNetParams

#: What ControlNet models are called in user-facing messages.
CONTROLNET_WHAT = "ControlNet"


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
        pipe = load_pipeline(cls, base, dtype, controlnet=controlnet)
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    key = (
        "controlnet-inpaint" if inpaint else "controlnet",
        base.location,
        net.location,
        str(device),
        str(dtype),
    )
    return cached_model(key, loader), base, net


def scheduler_for(pipe, name: str):
    """A fresh scheduler of kind ``name`` (see ``SCHEDULERS``) from ``pipe``'s config."""
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


def run_pipeline(pipe, params: ControlNetParams, generators, relay, **inputs) -> np.ndarray:
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
