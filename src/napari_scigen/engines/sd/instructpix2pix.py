"""InstructPix2Pix: edit microCT slices by an instruction ("make the pores larger").

Built on diffusers' ``StableDiffusionInstructPix2PixPipeline`` (Brooks et al. 2023; one
of the models Sordo et al., J. Imaging 2025, compared). The model conditions its UNet on
the input crop itself (8 input channels) and on the instruction; ``image_guidance_scale``
says how closely the output follows the input, ``guidance_scale`` how strongly the
instruction applies.

With a mask, crops around the mask are edited and only the masked pixels are replaced
(feathered seam inside the mask, every pixel outside bit-identical); without a mask the
whole slice is edited, tile by tile. Windowing, padding, crops, seeds (slice ``z`` uses
``seed + z``), batching and compositing are the shared slice canvas (:mod:`.canvas`,
:mod:`.family`).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ...core.params import param
from ...core.progress import CancelToken, Progress
from ...core.result import EngineResult
from .family import crop_batch, decode_gray, encode_one_by_one, run_masked_edit, step_callback
from .hub import scheduler_from
from .params import StableDiffusionParams, check_prompt, model_param, steps_param

ENGINE = "instructpix2pix"
PIPELINE = "StableDiffusionInstructPix2PixPipeline"
#: Default InstructPix2Pix model (Brooks et al., SD 1.5 based, 8-channel UNet).
DEFAULT_IP2P_MODEL = "timbrooks/instruct-pix2pix"


@dataclass(frozen=True)
class InstructPix2PixParams(StableDiffusionParams):
    """Parameters of an InstructPix2Pix run (see :func:`run_instructpix2pix`)."""

    model: str = model_param(
        DEFAULT_IP2P_MODEL,
        "Hugging Face id or local folder of an InstructPix2Pix pipeline",
        "InstructPix2Pix model",
    )
    prompt: str = param(
        "",
        help="the edit as an instruction, e.g. 'make the pores larger' (required)",
        kind="prompt",
        aliases=("instruction",),
    )
    negative_prompt: str = param("", help="what to avoid", kind="prompt")
    steps: int = steps_param(20)
    image_guidance_scale: float = param(
        1.5,
        help="how closely the output follows the input slice (1 = not at all beyond the "
        "noise; higher = closer)",
        min=0.0,
        step=0.1,
        label="image guidance",
    )


def _fresh_scheduler(cached) -> dict:
    return {"scheduler": scheduler_from(type(cached.scheduler), cached.scheduler.config)}


def _edit_round(pipe, items, params: InstructPix2PixParams, relay) -> np.ndarray:
    units, _, generators = crop_batch(items)
    count = len(generators)
    latents = pipe(
        prompt=[params.prompt] * count,
        negative_prompt=[params.negative_prompt] * count if params.negative_prompt else None,
        image=encode_one_by_one(pipe, units),
        num_inference_steps=int(params.steps),
        guidance_scale=params.guidance_scale,
        image_guidance_scale=params.image_guidance_scale,
        generator=generators,
        output_type="latent",
        callback_on_step_end=step_callback(relay),
    ).images
    return decode_gray(pipe, latents)


def run_instructpix2pix(
    image: np.ndarray,
    mask: np.ndarray | None,
    params: InstructPix2PixParams,
    *,
    slices=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Edit the masked region (or whole slices) of ``image`` following ``params.prompt``.

    Parameters
    ----------
    image : numpy.ndarray
        2D slice or 3D volume (uint8, uint16, int16 or float32); never modified.
    mask : numpy.ndarray or None
        Non-zero where to edit (the image's shape, or one 2D mask for every slice);
        ``None`` edits the whole of each selected slice.
    params : InstructPix2PixParams
        ``prompt`` must be set.
    slices : sequence of int, optional
        Slices to process (default all); the others are copied unchanged.
    cancel : CancelToken, optional
        Checked at every denoising step.

    Yields
    ------
    Progress

    Returns
    -------
    EngineResult
        ``data``: the image's shape and dtype; outside the mask bit-identical.
        ``labels["mask"]``: the mask used (uint8; absent without a mask). Provenance records the model,
        per-slice seeds, the intensity window, crops and the adapter.
    """
    check_prompt(params.prompt, "prompt", "say how the slice should change")
    return (
        yield from run_masked_edit(
            ENGINE,
            PIPELINE,
            image,
            mask,
            params,
            lambda pipe, items, relay: _edit_round(pipe, items, params, relay),
            slices=slices,
            loading="loading InstructPix2Pix",
            steps_per_call=int(params.steps),
            cancel=cancel,
            overrides=_fresh_scheduler,
        )
    )
