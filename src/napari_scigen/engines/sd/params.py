"""Parameters of the Stable Diffusion engines, declared once.

:class:`StableDiffusionParams` holds what DiffEdit and ControlNet share (model,
sampling, crop geometry, device, intensity window); :class:`DiffEditParams` and
:class:`ControlNetParams` add their own fields. The CLI flags and the widget fields
are built from these declarations (:mod:`napari_scigen.core.params`). Nothing here
imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...core.params import EngineParams, ParameterError, count_param, device_param, param
from ...core.validation import InvalidInputError

#: Default Stable Diffusion base model (SD 1.5 community mirror; the runwayml id was removed).
DEFAULT_SD_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
#: Default ControlNet for txt2img generation (Canny edges, SD 1.5).
DEFAULT_CONTROLNET_MODEL = "lllyasviel/sd-controlnet-canny"
#: Default ControlNet for masked generation (SD 1.5 v1.1 inpaint).
DEFAULT_INPAINT_CONTROLNET_MODEL = "lllyasviel/control_v11p_sd15_inpaint"
#: Default description of the data, used as DiffEdit's source prompt and ControlNet's prompt.
DEFAULT_ROCK_PROMPT = "a grayscale microCT slice of porous rock"
#: Smallest core (mask area covered by one crop) a resolution/context pair may leave.
MIN_CORE = 8
#: ControlNet samplers that can be chosen by name.
SCHEDULERS = ("unipc", "ddim")
#: What conditions masked ControlNet runs that get no control layer.
MASKED_CONTROLS = ("inpaint", "canny")


def max_context(resolution: int) -> int:
    """The largest ``context`` (px) that leaves a usable core in a ``resolution`` crop."""
    return (int(resolution) - MIN_CORE) // 2


def steps_param(default: int) -> Any:
    """The ``steps`` declaration (each engine has its own default)."""
    return param(default, help="denoising steps of the full schedule", min=1, max=1000)


def variants_param() -> Any:
    """The ``count`` of outputs per slice of the engines that make variants (each its own seed)."""
    return count_param(
        1,
        "outputs per slice, each with its own seed (seed + z + 1000003 * variant)",
        aliases=("n_variants", "variants"),
    )


def strength_param(default: float, help: str) -> Any:  # noqa: A002 - the argparse word
    """A ``strength`` declaration: a fraction of the schedule in (0, 1]."""
    return param(default, help=help, min=0.0, min_exclusive=True, max=1.0, step=0.05)


def model_param(default: str, help: str, label: str = "SD model") -> Any:  # noqa: A002 - argparse
    """A model declaration: a hub id or local folder (each engine has its own default)."""
    return param(default, help=help, label=label, kind="text")


def local_files_only_param() -> Any:
    """The ``local_files_only`` declaration every engine that loads hub models shares."""
    return param(
        False,
        help="never download model weights; fail with instructions when they are not cached",
        label="local files only (never download)",
    )


def window_percentiles_param(help: str) -> Any:  # noqa: A002 - the argparse word
    """A ``window_percentiles`` declaration: the intensity window as two percentiles."""
    return param((0.5, 99.5), help=help, min=0.0, max=100.0, increasing=True, advanced=True)


def steps_run(steps: int, strength: float) -> int:
    """Denoising steps actually run when a call covers ``strength`` of a ``steps`` schedule."""
    return min(int(steps * strength), int(steps))


def check_runs_a_step(steps: int, strength: float) -> None:
    """Raise :class:`ParameterError` when ``steps * strength`` leaves no step to run."""
    if steps_run(steps, strength) < 1:
        raise ParameterError(
            "strength", f"* steps = {strength} * {steps} runs no step; raise either"
        )


def check_prompt(prompt: str, name: str, hint: str) -> None:
    """Raise :class:`InvalidInputError` when a required prompt is empty."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInputError(f"{name} is empty: {hint}")


@dataclass(frozen=True)
class StableDiffusionParams(EngineParams):
    """What every Stable Diffusion engine run is configured by (frozen, recorded in provenance)."""

    model: str = model_param(
        DEFAULT_SD_MODEL,
        "Hugging Face id or local folder of a Stable Diffusion 1.x/2.x(-base) pipeline",
    )
    steps: int = steps_param(50)
    guidance_scale: float = param(
        7.5,
        help="classifier-free guidance scale",
        min=0.0,
        step=0.5,
        flag="guidance",
        label="guidance",
    )
    seed: int = param(0, help="base seed; slice z uses seed + z", min=0)
    resolution: int = param(
        512,
        help="model crop size in pixels, a multiple of 8 (512 for SD 1.5 and SD 2.x-base); "
        "larger slices are processed in crops of this size, smaller ones padded to it",
        min=16,
        step=8,
        label="model size (px)",
        advanced=True,
    )
    context: int = param(
        64,
        help="unmasked pixels kept around the mask in each crop",
        min=0,
        label="context (px)",
        advanced=True,
    )
    feather: float = param(
        3.0,
        help="width of the blend ramp inside the mask edge in pixels (0 = hard edge)",
        min=0.0,
        step=0.5,
        label="feather (px)",
        advanced=True,
    )
    batch_size: int = param(
        1, help="images per pipeline call (the main speed lever on GPUs)", min=1, advanced=True
    )
    device: str = device_param(
        "torch device: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps; "
        "fp16 on CUDA, fp32 elsewhere"
    )
    local_files_only: bool = local_files_only_param()
    window_percentiles: tuple[float, float] = window_percentiles_param(
        "percentiles of the whole image mapped to the model's [0, 1] intensity range"
    )
    adapter: str | None = param(
        None,
        help="LoRA adapter folder written by the LoRA fine-tuning (training method 'sd-lora'; "
        "or any diffusers LoRA folder); "
        "none = the base model",
        kind="dir",
        advanced=True,
    )
    adapter_scale: float = param(
        1.0,
        help="strength of the adapter's LoRA: 0 = the base weights (a learned token still "
        "applies), 1 = as trained",
        min=0.0,
        max=4.0,
        step=0.1,
        advanced=True,
    )

    def check(self) -> None:
        """Resolution a multiple of 8, context leaving a core, ordered percentiles."""
        if self.resolution % 8:
            raise ParameterError(
                "resolution",
                f"must be a multiple of 8 (512 for SD 1.5/2.x-base), got {self.resolution}",
            )
        if self.context > max_context(self.resolution):
            raise ParameterError(
                "context",
                f"{self.context} leaves no room in a {self.resolution}px crop: need "
                f"0 <= context <= {max_context(self.resolution)}",
            )


@dataclass(frozen=True)
class DiffEditParams(StableDiffusionParams):
    """Parameters of a DiffEdit run (see :mod:`napari_scigen.engines.sd.diffedit`)."""

    source_prompt: str = param(
        DEFAULT_ROCK_PROMPT,
        help="what the image shows now (used for inversion and the automatic mask)",
        kind="prompt",
    )
    prompt: str = param(
        "",
        help="what the masked region should become (required)",
        kind="prompt",
        aliases=("target_prompt",),
    )
    strength: float = strength_param(
        0.8,
        "how far to invert (DiffEdit's inpaint_strength): int(steps * strength) steps "
        "are run for inversion and for editing",
    )
    mask_encode_strength: float = param(
        0.5,
        help="automatic mask: noise level at which the two prompts are compared",
        min=0.0,
        min_exclusive=True,
        max=1.0,
        advanced=True,
    )
    mask_threshold: float = param(
        3.0,
        help="automatic mask: the prompt difference is clamped at this multiple of its mean "
        "and binarised at half of it (higher = smaller mask)",
        min=0.0,
        min_exclusive=True,
        step=0.25,
    )
    mask_maps: int = param(
        10, help="automatic mask: noise maps averaged per mask", min=1, advanced=True
    )

    def check(self) -> None:
        super().check()
        check_runs_a_step(self.steps, self.strength)

    @property
    def edit_steps(self) -> int:
        """Steps actually run for inversion and for editing (each)."""
        return steps_run(self.steps, self.strength)


@dataclass(frozen=True)
class ControlNetParams(StableDiffusionParams):
    """Parameters of a ControlNet run (see :mod:`napari_scigen.engines.sd.controlnet`)."""

    steps: int = steps_param(20)
    controlnet_model: str = param(
        DEFAULT_CONTROLNET_MODEL,
        help="ControlNet used with Canny edges or a control layer (hub id or local folder)",
        label="ControlNet",
        kind="text",
    )
    inpaint_controlnet_model: str = param(
        DEFAULT_INPAINT_CONTROLNET_MODEL,
        help="ControlNet used in masked mode with masked_control 'inpaint'",
        label="inpaint ControlNet",
        kind="text",
    )
    prompt: str = param(DEFAULT_ROCK_PROMPT, help="text guidance", kind="prompt")
    negative_prompt: str = param("", help="what to avoid", kind="prompt")
    conditioning_scale: float = param(
        1.0,
        help="ControlNet residual scale (0 = ignore the control image)",
        min=0.0,
        step=0.1,
        label="control scale",
    )
    control_start: float = param(
        0.0,
        help="fraction of the schedule at which the ControlNet starts to apply",
        min=0.0,
        max=1.0,
        step=0.05,
        advanced=True,
    )
    control_end: float = param(
        1.0,
        help="fraction of the schedule at which the ControlNet stops applying",
        min=0.0,
        max=1.0,
        step=0.05,
        advanced=True,
    )
    strength: float = strength_param(
        1.0, "masked mode: 1 regenerates the mask from noise, lower keeps more of it"
    )
    count: int = variants_param()
    masked_control: str = param(
        "inpaint",
        help="masked mode without a control layer: 'inpaint' conditions the inpaint "
        "ControlNet on the image with the mask blanked out, 'canny' the ControlNet "
        "(controlnet_model) on each slice's Canny edges",
        choices=MASKED_CONTROLS,
    )
    canny_sigma: float = param(
        2.0,
        help="Canny edges: Gaussian smoothing in pixels (more = fewer, smoother edges)",
        min=0.0,
        step=0.25,
        label="Canny sigma",
    )
    canny_low: float = param(
        0.1,
        help="Canny edges: low hysteresis threshold, as a fraction of the intensity window",
        min=0.0,
        step=0.01,
        label="Canny low",
    )
    canny_high: float = param(
        0.2,
        help="Canny edges: high hysteresis threshold, as a fraction of the intensity window",
        min=0.0,
        step=0.01,
        label="Canny high",
    )
    canny_use_quantiles: bool = param(
        False,
        help="Canny edges: the thresholds are quantiles of the gradient magnitude",
        label="thresholds are quantiles",
    )
    scheduler: str = param("unipc", help="sampler", choices=SCHEDULERS, advanced=True)

    def check(self) -> None:
        super().check()
        check_runs_a_step(self.steps, self.strength)
        if not self.control_start < self.control_end:
            raise ParameterError(
                "control_start",
                f"must be below control_end (0 <= start < end <= 1), got "
                f"{self.control_start} >= {self.control_end}",
            )

    @property
    def inpaint_steps(self) -> int:
        """Steps actually run per masked-mode call."""
        return steps_run(self.steps, self.strength)

    @property
    def canny_settings(self) -> dict[str, Any]:
        """The Canny fields as keyword arguments of ``control.canny_condition``."""
        return {
            "sigma": self.canny_sigma,
            "low": self.canny_low,
            "high": self.canny_high,
            "use_quantiles": self.canny_use_quantiles,
        }
