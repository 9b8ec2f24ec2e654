"""Parameters of the LoRA fine-tuning (``finetune-sd``), declared once; nothing imports torch."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.params import (
    EngineParams,
    ParameterError,
    device_param,
    learning_rate_param,
    param,
    train_steps_param,
    warn_deprecated,
)
from .params import (
    DEFAULT_ROCK_PROMPT,
    DEFAULT_SD_MODEL,
    local_files_only_param,
    model_param,
    window_percentiles_param,
)

#: Mixed-precision modes: ``auto`` = fp16 on CUDA, full precision elsewhere.
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
#: The former values of ``mixed_precision`` (accepted one release, with a warning).
LEGACY_PRECISIONS = {"no": "float32", "fp16": "float16", "bf16": "bfloat16"}
#: Slicing directions (the axis the training planes are perpendicular to).
AXIS_NAMES = ("z", "y", "x")
#: Modules of the SD UNet that get LoRA layers (attention projections).
UNET_LORA_MODULES = ("to_k", "to_q", "to_v", "to_out.0")
#: Modules of the CLIP text encoder that get LoRA layers.
TEXT_ENCODER_LORA_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")
#: Fields that define an adapter's architecture: a resumed run must keep them.
ADAPTER_FIELDS = ("model", "rank", "alpha", "train_text_encoder", "token")


@dataclass(frozen=True)
class SDLoRATrainParams(EngineParams):
    """How :func:`~.finetune.run_finetune_sd` adapts Stable Diffusion to a volume."""

    model: str = model_param(
        DEFAULT_SD_MODEL,
        "Hugging Face id or local folder of the Stable Diffusion pipeline to adapt",
    )
    prompt: str = param(
        DEFAULT_ROCK_PROMPT,
        help="domain prompt paired with every training tile (include the token when one is "
        "learned); use the same words when generating",
        kind="prompt",
    )
    train_steps: int = train_steps_param(1000)
    batch_size: int = param(2, help="training tiles per step", min=1)
    learning_rate: float = learning_rate_param(
        1e-4, "AdamW learning rate of the LoRA (and token) weights", step=1e-5
    )
    rank: int = param(8, help="LoRA rank (size of the low-rank update)", min=1)
    alpha: float | None = param(
        None,
        help="LoRA alpha (scale = alpha / rank); none = rank",
        min=0.0,
        min_exclusive=True,
        advanced=True,
    )
    train_text_encoder: bool = param(False, help="also put LoRA layers in the CLIP text encoder")
    token: str | None = param(
        None,
        help="learn a new textual-inversion token, e.g. '<microct>' (must appear in the prompt); "
        "none = no token",
        kind="text",
    )
    token_init: str = param(
        "rock",
        help="word whose embedding the new token starts from",
        advanced=True,
    )
    resolution: int = param(
        512,
        help="training tile size in pixels, a multiple of 8 (512 for SD 1.5)",
        min=16,
        step=8,
    )
    crop: bool = param(True, help="random resolution-sized tiles (off: resize whole slices)")
    axes: tuple[str, ...] = param(
        ("z",),
        help="slicing directions: z (YX planes), or z,y,x for isotropic volumes",
        choices=AXIS_NAMES,
    )
    augment: bool = param(True, help="random flips and 90-degree rotations of the tiles")
    prior_preservation: bool = param(
        False,
        help="DreamBooth prior preservation: also train on images the base model makes from "
        "class_prompt, so the adapter does not forget the class",
    )
    class_prompt: str = param(
        "a grayscale photograph of a rock surface",
        help="prior preservation: the class the domain belongs to",
        kind="prompt",
        advanced=True,
    )
    class_images: int = param(
        50,
        help="prior preservation: class images generated once (kept in the folder)",
        min=1,
        advanced=True,
    )
    class_steps: int = param(
        25, help="prior preservation: denoising steps per class image", min=1, advanced=True
    )
    prior_loss_weight: float = param(
        1.0, help="prior preservation: weight of the class loss", min=0.0, advanced=True
    )
    precision: str = param(
        "auto",
        help="arithmetic of the training passes: auto (float16 on CUDA, float32 elsewhere), "
        "float32, bfloat16 or float16 (CUDA only)",
        choices=PRECISIONS,
        aliases=("mixed_precision",),
    )
    gradient_checkpointing: bool = param(
        False, help="recompute activations in the backward pass (less memory, ~30 % slower)"
    )
    checkpoint_every: int = param(250, help="steps between resumable checkpoints", min=1)
    keep_checkpoints: int = param(
        2, help="newest checkpoints kept in the folder (0 = all)", min=0, advanced=True
    )
    preview_steps: int = param(
        20,
        help="denoising steps of the preview image made with the adapter at the end "
        "(0 = no preview)",
        min=0,
        advanced=True,
    )
    seed: int = param(0, help="seed of initialisation, tiles, noise and timesteps", min=0)
    device: str = device_param()
    local_files_only: bool = local_files_only_param()
    window_percentiles: tuple[float, float] = window_percentiles_param(
        "percentiles of the volume mapped to the model's [0, 1] intensity range"
    )

    def __post_init__(self) -> None:
        former = LEGACY_PRECISIONS.get(self.precision) if isinstance(self.precision, str) else None
        if former is not None:
            warn_deprecated(f"precision {self.precision!r}", repr(former), type(self).__name__)
            object.__setattr__(self, "precision", former)
        super().__post_init__()

    def check(self) -> None:
        if self.resolution % 8:
            raise ParameterError("resolution", f"must be a multiple of 8, got {self.resolution}")
        if not self.axes or len(set(self.axes)) != len(self.axes):
            raise ParameterError("axes", f"must name distinct slicing directions, got {self.axes}")
        if self.token is not None:
            if not self.token.strip() or " " in self.token.strip():
                raise ParameterError(
                    "token", f"must be one word such as '<microct>', got {self.token!r}"
                )
            if self.token.strip() not in self.prompt:
                raise ParameterError(
                    "token", f"{self.token!r} does not appear in the prompt {self.prompt!r}"
                )
        if not self.prompt.strip():
            raise ParameterError("prompt", "is empty: describe the training tiles")

    @property
    def lora_alpha(self) -> float:
        """The LoRA alpha actually used."""
        return float(self.alpha) if self.alpha is not None else float(self.rank)

    def adapter_settings(self) -> dict:
        """The architecture-defining fields (:data:`ADAPTER_FIELDS`)."""
        return {name: getattr(self, name) for name in ADAPTER_FIELDS}
