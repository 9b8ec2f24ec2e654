"""Parameters of the learned engines, declared once (no torch is imported here).

* :class:`LearnedInterpolateParams`: slice interpolation by a network trained on the
  volume (task ``interpolate``, method ``learned``);
* :class:`AutoInterpolateParams`: the same training, then whichever of learned,
  linear and flow scored best on held-out kept slices fills the gaps (``auto``);
* :class:`LearnedInpaintParams`: inpainting by a network trained on the volume's own
  unmasked voxels (task ``inpaint``, method ``learned``).

The training fields every learned engine shares live in :class:`LearnedTrainingParams`.

Examples
--------
>>> LearnedInterpolateParams().train_steps
600
>>> LearnedInterpolateParams(crop_size=30)
Traceback (most recent call last):
...
napari_scigen.core.params.declare.ParameterError: crop_size must be a multiple of 8, got 30
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...core.params import (
    EngineParams,
    ParameterError,
    device_param,
    learning_rate_param,
    param,
    seed_param,
)

#: Loss functions of the training (``l1+ssim``: L1 plus 0.2 x (1 - SSIM); ``auto``: l1 on
#: grey-level data, l2 on label-like data with at most :data:`FEW_LEVELS` grey levels).
LOSSES = ("auto", "l1", "l1+ssim", "l2")
#: Volumes with at most this many distinct values train with l2 under ``loss="auto"``.
FEW_LEVELS = 16
#: Where the first weights come from.
INIT_CHOICES = ("default", "scratch")
#: Widths of the network the shipped default weights have.
DEFAULT_BASE_CHANNELS = 24
#: Planes the interpolation network is applied to (fused when both).
PLANE_CHOICES = ("both", "xz", "yz")
#: Arithmetic of the inference (see :func:`~.tiles.apply`).
PRECISIONS = ("float32", "bfloat16")
#: Scores ``auto`` ranks methods by.
AUTO_METRICS = ("psnr", "ssim")


def _force_param(baseline: str) -> Any:
    return param(
        False,
        help=f"use the learned result even when self-validation finds it worse than "
        f"{baseline} (default: fall back to {baseline} and say so)",
        advanced=True,
    )


@dataclass(frozen=True)
class LearnedTrainingParams(EngineParams):
    """The training fields every learned engine shares."""

    train_steps: int = param(
        600,
        help="optimisation steps of the per-volume training (0: use the starting weights "
        "as they are); a step budget gives bit-identical results for a seed on a CPU",
        min=0,
        max=1_000_000,
        label="training steps",
    )
    train_seconds: float | None = param(
        None,
        help="stop training after this many seconds even if steps remain (none: no time "
        "limit; a time limit makes the result depend on the machine's speed)",
        min=0.0,
        min_exclusive=True,
        label="training time limit (s)",
    )
    init: str = param(
        "default",
        help="starting weights: 'default' = the small network shipped with napari-scigen "
        "(trained on procedural phantoms), fine-tuned on this volume; 'scratch' = random",
        choices=INIT_CHOICES,
        label="starting weights",
    )
    init_weights: str | None = param(
        None,
        help="a .safetensors weights file written by this engine (e.g. from a checkpoint "
        "folder) to start from instead of 'init'",
        kind="path",
        advanced=True,
    )
    uncertainty: bool = param(
        True,
        help="also return the per-voxel spread of the test-time-augmented predictions "
        "(planes and flips) as an 'uncertainty' image: high where the synthesis is unreliable",
        label="uncertainty map",
    )
    tta: int = param(
        2,
        help="flip augmentations per plane at inference (1, 2 or 4; more = smoother "
        "result and a better uncertainty estimate, proportionally slower)",
        choices=(1, 2, 4),
        advanced=True,
        label="test-time flips",
    )
    crop_size: int = param(
        64, help="side of the training crops in pixels", min=16, max=256, step=8, advanced=True
    )
    batch_size: int = param(12, help="crops per training step", min=1, max=512, advanced=True)
    learning_rate: float = learning_rate_param(
        1e-3, "peak Adam learning rate (warm-up, then cosine decay to 5 %)", max=1.0, advanced=True
    )
    loss: str = param(
        "auto",
        help="training loss on the synthesized pixels: l1, l1+ssim (L1 + 0.2 (1 - SSIM)), l2, "
        f"or auto (l1; l2 on label-like volumes with <= {FEW_LEVELS} grey levels, where l1 "
        "does not learn)",
        choices=LOSSES,
        advanced=True,
    )
    gradient_weight: float = param(
        0.0,
        help="weight of an L1 term on image gradients (sharper edges; 0: off)",
        min=0.0,
        max=10.0,
        advanced=True,
    )
    adversarial_weight: float = param(
        0.0,
        help="weight of a non-saturating GAN term from a small StyleGAN2 residual "
        "discriminator (sharper texture at large gaps, usually lower PSNR; 0: off)",
        min=0.0,
        max=1.0,
        advanced=True,
    )
    base_channels: int = param(
        DEFAULT_BASE_CHANNELS,
        help="feature maps of the network's first level (x2, x4 below); the shipped default "
        f"weights have {DEFAULT_BASE_CHANNELS}",
        min=4,
        max=128,
        advanced=True,
    )
    checkpoint_dir: str | None = param(
        None,
        help="folder for training checkpoints (written every checkpoint_every steps and on "
        "cancel); none: no checkpoints",
        kind="dir",
        advanced=True,
    )
    resume: bool = param(
        True,
        help="continue from the newest checkpoint in checkpoint_dir when it was made for "
        "this volume and these settings",
        advanced=True,
    )
    checkpoint_every: int = param(
        200, help="steps between checkpoints", min=1, max=1_000_000, advanced=True
    )
    seed: int = seed_param("seed of weight initialisation, crops, masks and augmentation")
    device: str = device_param()
    threads: int | None = param(
        None,
        help="CPU threads torch may use (none: torch's default)",
        min=1,
        max=256,
        advanced=True,
    )
    precision: str = param(
        "float32",
        help="arithmetic of the inference: float32, or bfloat16 (about 4x faster on CPUs "
        "with AMX/AVX512-BF16, results differ by about 1e-3 of the intensity window; on a "
        "GPU bf16/fp16 autocast is always on)",
        choices=PRECISIONS,
        advanced=True,
    )

    def resolved_loss(self, sample) -> str:
        """The loss ``auto`` stands for on data like ``sample`` (any other is itself)."""
        if self.loss != "auto":
            return self.loss
        import numpy as np

        return "l2" if np.unique(np.asarray(sample)).size <= FEW_LEVELS else "l1"

    def check(self) -> None:
        if self.crop_size % 8:
            raise ParameterError("crop_size", f"must be a multiple of 8, got {self.crop_size}")
        if self.adversarial_weight > 0 and (
            self.crop_size < 32 or self.crop_size & (self.crop_size - 1)
        ):
            raise ParameterError(
                "crop_size",
                f"must be a power of two of at least 32 (32, 64, 128) with adversarial_weight > 0 (the "
                f"discriminator's input size), got {self.crop_size}",
            )
        if (
            self.init == "default"
            and self.init_weights is None
            and self.base_channels != DEFAULT_BASE_CHANNELS
        ):
            raise ParameterError(
                "base_channels",
                f"({self.base_channels}) differs from the shipped default weights "
                f"({DEFAULT_BASE_CHANNELS}): use init='scratch' for another network size",
                options=["init"],
            )


@dataclass(frozen=True)
class _InterpolationFields(LearnedTrainingParams):
    """Fields of the learned slice interpolation (``learned`` and ``auto``)."""

    validation_slices: int = param(
        6,
        help="runs of kept slices held out of training to score learned vs linear vs flow "
        "along z, at the gap being filled where the kept slices allow it (else at a longer "
        "gap, as a proxy), before filling (0: no z self-validation)",
        min=0,
        max=64,
        label="self-validation slices",
    )
    in_plane_check_slices: int = param(
        3,
        help="kept xy slices held out of in-plane training whose rows are dropped with the "
        "job's own gap pattern and rebuilt, to score learned vs linear at exactly the gap "
        "being filled (0: no in-plane check)",
        min=0,
        max=4,
        label="in-plane check slices",
    )
    slice_thickness: float | None = param(
        None,
        help="thickness of the acquired slices in output z spacings (full width at half "
        "maximum of a Gaussian slice profile): in-plane training rows are blurred with it "
        "before rows are dropped; none: thin slices (point samples)",
        min=0.0,
        max=64.0,
        advanced=True,
        label="slice thickness",
    )
    in_plane_fraction: float | None = param(
        None,
        help="share of training crops taken from kept xy slices with rows dropped at the z "
        "spacing (valid for isotropic voxels); none: 0.25 when blanking kept slices gives "
        "the exact gap, else 0.75",
        min=0.0,
        max=1.0,
        advanced=True,
    )
    voxel_size: tuple[float, float, float] | None = param(
        None,
        help="voxel size z,y,x of the input (any unit); none: assumed isotropic. In-plane "
        "training rows are resampled to the output's z spacing",
        min=0.0,
        min_exclusive=True,
        advanced=True,
    )
    planes: str = param(
        "both",
        help="planes the network is applied to: xz and yz fused ('both'), or one of them",
        choices=PLANE_CHOICES,
        advanced=True,
    )
    concurrent_tiles: bool = param(
        False,
        help="on a CPU, run the network on tiles of different planes side by side, one "
        "per thread, instead of one tile at a time with every thread: the same result, "
        "9-25 % faster on 2 cores, 110-230 MiB more peak memory (measured)",
        advanced=True,
        label="tiles side by side",
    )


@dataclass(frozen=True)
class LearnedInterpolateParams(_InterpolationFields):
    """How the ``learned`` interpolation engine trains, validates and fills."""

    force_learned: bool = _force_param("linear interpolation")


@dataclass(frozen=True)
class AutoInterpolateParams(_InterpolationFields):
    """How ``auto`` trains the learned engine and picks the best method for this volume."""

    auto_metric: str = param(
        "psnr",
        help="self-validation score that picks the method (psnr or ssim)",
        choices=AUTO_METRICS,
    )

    def check(self) -> None:
        super().check()
        if self.validation_slices < 1:
            raise ParameterError(
                "validation_slices",
                "must be >= 1 for auto (it picks the method by self-validation)",
            )


@dataclass(frozen=True)
class LearnedInpaintParams(LearnedTrainingParams):
    """How the ``learned`` inpainting engine trains, validates and fills."""

    context_slices: int = param(
        2,
        help="neighbouring slices on each side the network sees (3D context; 0: the slice alone)",
        min=0,
        max=4,
    )
    validation_masks: int = param(
        6,
        help="masks like yours placed on known voxels (held out of training) to score "
        "learned vs biharmonic before filling (0: no self-validation)",
        min=0,
        max=64,
        label="self-validation masks",
    )
    force_learned: bool = _force_param("biharmonic inpainting")
