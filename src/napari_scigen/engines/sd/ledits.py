"""LEDITS++: edit microCT slices towards (or away from) a concept, with implicit masks.

Built on diffusers' ``LEditsPPPipelineStableDiffusion`` (Brack et al. 2024; with DiffEdit
the best-scoring open model of Sordo et al., J. Imaging 2025). Each crop is inverted
exactly (edit-friendly DPM-Solver++ inversion, no optimisation), then regenerated with
semantic guidance towards ``prompt`` (or away from it with ``reverse``), applied
only where the model's own attention and noise-difference masks say the concept lives
(``edit_threshold``: the fraction of the crop left out of that implicit mask).

A painted mask is passed to LEDITS++ as its ``user_mask`` (at latent resolution) and,
as with every engine here, only the masked pixels are replaced (feathered seam inside
the mask, every pixel outside bit-identical). Without a mask, whole slices are edited,
tile by tile. Windowing, padding, crops, seeds (``seed + z``), batching and compositing
are the shared slice canvas (:mod:`.canvas`, :mod:`.family`).

The pipeline stores its inversion on the pipeline object and swaps the UNet's attention
processors, so every run works on its own pipeline with a structural clone of the cached
UNet (:func:`~.adapters.clone_module`): the cached model is never changed.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ...core.params import ParameterError, param
from ...core.progress import CancelToken, Progress
from ...core.result import EngineResult
from .adapters import clone_module
from .canvas import latent_mask
from .family import crop_batch, decode_gray, encode_one_by_one, run_masked_edit, step_callback
from .hub import scheduler_from
from .numerics import gray_to_rgb, rgb_to_gray
from .params import StableDiffusionParams, check_prompt, steps_param

ENGINE = "ledits"
PIPELINE = "LEditsPPPipelineStableDiffusion"
#: Samplers LEDITS++ supports: DPM-Solver++ (SDE, 2nd order; its default) or DDIM
#: (edit-friendly DDPM inversion).
LEDITS_SCHEDULERS = ("dpmsolver++", "ddim")
#: LEDITS++ works on sides that are multiples of this.
LEDITS_MULTIPLE = 32


@dataclass(frozen=True)
class LEditsParams(StableDiffusionParams):
    """Parameters of a LEDITS++ run (see :func:`run_ledits`)."""

    prompt: str = param(
        "",
        help="the concept to add (or, with reverse, to remove), e.g. 'large pores' (required)",
        kind="prompt",
        aliases=("editing_prompt",),
    )
    reverse: bool = param(False, help="remove the concept instead of adding it")
    source_prompt: str = param(
        "",
        help="description of the slice for the inversion (empty = unconditional, the "
        "LEDITS++ default)",
        kind="prompt",
        advanced=True,
    )
    steps: int = steps_param(50)
    guidance_scale: float = param(
        7.5,
        help="edit guidance scale: how strongly the concept is pushed",
        min=0.0,
        step=0.5,
        flag="guidance",
        label="edit guidance",
    )
    source_guidance_scale: float = param(
        3.5,
        help="guidance of the inversion towards source_prompt (used when it is set)",
        min=0.0,
        step=0.5,
        advanced=True,
    )
    edit_threshold: float = param(
        0.9,
        help="implicit mask: quantile of the guidance left out (higher = smaller edited area)",
        min=0.0,
        max=1.0,
        step=0.05,
    )
    skip: float = param(
        0.15,
        help="fraction of the schedule skipped before inversion (lower = stronger changes)",
        min=0.0,
        max=1.0,
        step=0.05,
    )
    warmup_steps: int = param(
        0, help="steps without edit guidance at the start", min=0, advanced=True
    )
    scheduler: str = param(
        "dpmsolver++",
        help="sampler: 'dpmsolver++' (SDE DPM-Solver++, the LEDITS++ default) or 'ddim' "
        "(edit-friendly DDPM inversion)",
        choices=LEDITS_SCHEDULERS,
        advanced=True,
    )

    def check(self) -> None:
        super().check()
        if self.resolution % LEDITS_MULTIPLE:
            raise ParameterError(
                "resolution",
                f"must be a multiple of {LEDITS_MULTIPLE} for LEDITS++, got {self.resolution}",
            )
        if self.skip >= 1.0:
            raise ParameterError(
                "skip", f"must be below 1 (it skips that part of the schedule), got {self.skip}"
            )


def _scheduler(cached, name: str):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    config = dict(cached.scheduler.config)
    if name == "ddim":
        return scheduler_from(DDIMScheduler, config)
    config.update(algorithm_type="sde-dpmsolver++", solver_order=2)
    return scheduler_from(DPMSolverMultistepScheduler, config)


def _batch_invariant_encoder(pipe):
    """Replace the pipeline's batched VAE encoding by one crop at a time (this run only)."""

    def encode_image(image, dtype=None, **_):
        latents = encode_one_by_one(pipe, rgb_to_gray(image))
        return (pipe.vae.config.scaling_factor * latents).to(dtype), None

    pipe.encode_image = encode_image


def _edit_round(pipe, items, params: LEditsParams, relay) -> np.ndarray:
    """Edit the crops of one round, one pipeline call each.

    LEDITS++ keeps one inversion per call on the pipeline, and its attention store
    groups a batch's maps by position rather than by image, so a crop edited in a
    batch would depend on its neighbours: each crop gets its own inversion and edit.
    """
    return np.concatenate([_edit_one(pipe, item, params, relay) for item in items])


def _edit_one(pipe, item, params: LEditsParams, relay) -> np.ndarray:
    import torch

    units, masks, generators = crop_batch([item])
    pipe.invert(
        image=gray_to_rgb(units),
        source_prompt=params.source_prompt,
        source_guidance_scale=params.source_guidance_scale,
        num_inversion_steps=int(params.steps),
        skip=params.skip,
        generator=generators[0],
    )
    relay.step_or_raise(int(params.steps))
    user_mask = None
    if not masks.all():
        user_mask = torch.from_numpy(latent_mask(masks, pipe.vae_scale_factor))[:, None]
        user_mask = user_mask.to(device=pipe.device, dtype=pipe.unet.dtype)
    latents = pipe(
        editing_prompt=[params.prompt],
        reverse_editing_direction=[params.reverse],
        edit_guidance_scale=[params.guidance_scale],
        edit_threshold=[params.edit_threshold],
        edit_warmup_steps=[params.warmup_steps],
        user_mask=user_mask,
        generator=generators[0],
        output_type="latent",
        callback_on_step_end=step_callback(relay),
    ).images
    return decode_gray(pipe, latents)


def run_ledits(
    image: np.ndarray,
    mask: np.ndarray | None,
    params: LEditsParams,
    *,
    slices=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Edit the masked region (or whole slices) of ``image`` towards ``params.prompt``.

    Parameters
    ----------
    image : numpy.ndarray
        2D slice or 3D volume (uint8, uint16, int16 or float32); never modified.
    mask : numpy.ndarray or None
        Non-zero where edits may happen (the image's shape, or one 2D mask for every
        slice); ``None`` lets LEDITS++'s implicit masks decide over whole slices.
    params : LEditsParams
        ``prompt`` must be set.
    slices : sequence of int, optional
        Slices to process (default all); the others are copied unchanged.
    cancel : CancelToken, optional
        Checked after each inversion and at every editing step.

    Yields
    ------
    Progress

    Returns
    -------
    EngineResult
        ``data``: the image's shape and dtype, outside the mask bit-identical;
        ``labels["mask"]``: the mask used (uint8; absent without a mask).
    """
    check_prompt(params.prompt, "prompt", "name the concept to add or remove")
    return (
        yield from run_masked_edit(
            ENGINE,
            PIPELINE,
            image,
            mask,
            params,
            lambda pipe, items, relay: _edit_round(pipe, items, params, relay),
            slices=slices,
            loading="loading LEDITS++ (Stable Diffusion)",
            steps_per_call=lambda items: 2 * int(params.steps) * len(items),
            cancel=cancel,
            overrides=lambda cached: {
                "scheduler": _scheduler(cached, params.scheduler),
                "unet": clone_module(cached.unet),
            },
            prepare=_batch_invariant_encoder,
            extra={"user_mask": mask is not None},
        )
    )
