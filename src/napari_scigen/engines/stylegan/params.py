"""Parameters of the StyleGAN engines, declared once (no torch is imported here).

* :class:`StyleGANInterpolateParams`: slice interpolation by projecting the kept
  slices and walking between their latents (task ``interpolate``, method ``stylegan``);
* :class:`StyleGANTrainParams`: training a generator on a volume's slices, with its
  network sizes (task ``train``);
* :class:`StyleGANSampleParams`: new random slices (task ``sample``);
* :class:`StyleGANWalkParams`: a smooth walk between two seeds' latents (task
  ``sample``, method ``stylegan-walk``).

The CLI flags and the widget fields are built from these declarations. The generator
is a path (``--generator``): an exported ``.safetensors``, a checkpoint folder or a
training run folder; none means the embedded rock generator. An in-memory
:class:`~.networks.Generator` can be written to a file with
:func:`~.checkpoint.save_generator` first.

Examples
--------
>>> StyleGANInterpolateParams().projection_steps
200
>>> StyleGANTrainParams(axes=("z", "y", "x")).axes
('z', 'y', 'x')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...core.params import (
    EngineParams,
    ParameterError,
    count_param,
    device_param,
    learning_rate_param,
    param,
    seed_param,
    train_steps_param,
)

#: Projection steps per kept slice unless told otherwise (engine and projector).
PROJECTION_STEPS = 200
#: How noise maps of in-between slices are chosen.
NOISE_MODES = ("interpolate", "const", "none")
#: Image distances the projection can use (see :mod:`.project`).
PERCEPTUAL_CHOICES = ("structure", "lpips-alex", "lpips-vgg")
#: Slicing planes by the axis they are perpendicular to.
AXIS_NAMES = ("z", "y", "x")
#: Generator output sizes the networks support.
RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512, 1024)
#: The training fields that make up the network architecture (``StyleGANConfig``).
NETWORK_FIELDS = ("resolution", "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max")
#: Arithmetic of the training step's forward passes (autocast); weights stay float32.
TRAIN_PRECISIONS = ("float32", "bfloat16", "float16")


# One declaration per shared field, used by every class that has it.
def _generator_param() -> Any:
    return param(
        None,
        help="StyleGAN generator: an exported .safetensors, a checkpoint folder or a training "
        "run folder (its newest checkpoint); none = the embedded rock generator",
        kind="path",
        aliases=("checkpoint",),
    )


def _device_param() -> Any:
    return device_param()


def _seed_param(help_text: str, default: int = 0, label: str | None = None) -> Any:
    return seed_param(help_text, default, label=label)


def _truncation_param() -> Any:
    return param(
        0.7,
        help="truncation psi: 1 = none, lower = more typical, less varied slices",
        min=0.0,
        max=2.0,
        step=0.05,
        flag="truncation",
        label="truncation psi",
    )


def _window_param(help_text: str) -> Any:
    return param((0.5, 99.5), help=help_text, min=0.0, max=100.0, increasing=True, advanced=True)


@dataclass(frozen=True)
class StyleGANInterpolateParams(EngineParams):
    """How :func:`~.interpolate.run_interpolate_stylegan` rebuilds slices.

    ``missing``/``factor`` are inputs of the call, not parameters.
    """

    generator: str | None = _generator_param()
    projection_steps: int = param(
        PROJECTION_STEPS,
        help="optimisation steps projecting each kept slice (tile) into the latent space",
        min=1,
    )
    pixel_blend: float = param(
        0.0,
        help="weight of the plain linear interpolation blended in (0: pure GAN, 1: linear)",
        min=0.0,
        max=1.0,
        step=0.05,
    )
    residual_correction: bool = param(
        True,
        help="build on the linear interpolation of the kept slices and add only what the "
        "generator changes between them, so results meet the kept slices at both ends "
        "(off: the generator's own slices)",
    )
    validation_slices: int = param(
        4,
        help="kept slices held out, rebuilt and scored against linear before filling; "
        "linear fills when StyleGAN loses (0 = no check: StyleGAN fills unchecked)",
        min=0,
        max=64,
    )
    force_stylegan: bool = param(
        False,
        help="fill with StyleGAN even when it loses its self-validation (the result says so)",
        advanced=True,
    )
    seed: int = _seed_param("seed of the projections' initial noise maps and latent jitter")
    device: str = _device_param()
    w_plus: bool = param(
        True, help="project into W+ (one latent per layer) rather than W", advanced=True
    )
    slerp: bool = param(
        False,
        help="spherical instead of linear interpolation of the latents (around w_avg)",
        advanced=True,
    )
    noise: str = param(
        "interpolate",
        help="noise maps of in-between slices: 'interpolate' the projected ones, the "
        "generator's 'const' noise, or 'none'",
        choices=NOISE_MODES,
        advanced=True,
    )
    perceptual: str = param(
        "structure",
        help="image distance of the projection: 'structure' (offline multi-scale SSIM and "
        "gradients) or LPIPS with local backbone weights ('lpips-alex', 'lpips-vgg')",
        choices=PERCEPTUAL_CHOICES,
        advanced=True,
    )
    tile_overlap: int | None = param(
        None,
        help="overlap of neighbouring tiles in pixels (none = a quarter of the generator "
        "resolution; must be below the resolution)",
        min=0,
        advanced=True,
    )
    batch_size: int = param(
        8, help="tiles projected and synthesized together", min=1, advanced=True
    )
    window_percentiles: tuple[float, float] = _window_param(
        "percentiles of the kept slices mapped to the generator's intensity range"
    )


@dataclass(frozen=True)
class StyleGANTrainParams(EngineParams):
    """How :func:`~.train.run_train_stylegan` trains, and the network it builds.

    The network sizes (``resolution`` ... ``channel_max``) make a
    :class:`~.networks.StyleGANConfig` (:meth:`network_config`). When a run resumes
    from a checkpoint, the checkpoint's saved architecture is used instead.
    """

    train_steps: int = train_steps_param(10_000)
    resolution: int = param(
        64, help="generator output size = crop size of the training slices", choices=RESOLUTIONS
    )
    batch_size: int = param(16, help="real and generated images per step", min=1)
    augment: bool = param(
        True,
        help="random flips/rotations of real slices and differentiable augmentation of the "
        "discriminator's inputs (for small data sets)",
    )
    crop: bool = param(
        True,
        help="train on random resolution-sized crops (off: resize whole slices)",
    )
    axes: tuple[str, ...] = param(
        ("z",),
        help="slicing directions: z (YX planes), or z,y,x for isotropic volumes",
        choices=AXIS_NAMES,
    )
    sample_every: int = param(200, help="steps between preview grids", min=1, label="preview every")
    checkpoint_every: int = param(1000, help="steps between checkpoints", min=1)
    seed: int = _seed_param(
        "seed of initialisation, data order, latents, noise and augmentation (a resumed run "
        "keeps its own)"
    )
    device: str = _device_param()
    precision: str = param(
        "float32",
        help="arithmetic of the forward passes: float32, or bfloat16/float16 autocast (mixed "
        "precision; weights, optimizer and the R1 penalty stay float32). float16 needs a "
        "CUDA GPU (with gradient scaling); CPU autocast supports bfloat16 only",
        choices=TRAIN_PRECISIONS,
        advanced=True,
    )
    channels_last: bool = param(
        False,
        help="keep networks and images in channels-last memory layout (faster convolutions "
        "on recent GPUs with bfloat16/float16; little gain on CPUs)",
        advanced=True,
    )
    learning_rate: float = learning_rate_param(0.0025, advanced=True, aliases=("lr",))
    r1_gamma: float | None = param(
        None,
        help="R1 regularisation weight (none = 0.0002 * resolution**2 / batch_size)",
        min=0.0,
        advanced=True,
    )
    r1_interval: int = param(16, help="R1 is applied every this many steps", min=1, advanced=True)
    ema_kimg: float | None = param(
        None,
        help="half-life of the generator EMA in thousands of images (none = batch_size * 10 / 32)",
        min=0.0,
        min_exclusive=True,
        advanced=True,
    )
    ema_rampup: float | None = param(
        0.05,
        help="early in training the EMA half-life is at most this times the images seen "
        "(none = no ramp-up)",
        min=0.0,
        min_exclusive=True,
        advanced=True,
    )
    mixing_prob: float = param(
        0.9, help="probability of style mixing per batch", min=0.0, max=1.0, advanced=True
    )
    window_percentiles: tuple[float, float] = _window_param(
        "percentiles of the training volume mapped to the generator's [-1, 1]"
    )
    keep_checkpoints: int = param(
        2, help="newest checkpoints kept in the run folder (0 = all)", min=0, advanced=True
    )
    preview_count: int = param(
        16, help="samples in a preview grid (a square number looks best)", min=1, advanced=True
    )
    z_dim: int = param(128, help="size of the input latent z", min=1, advanced=True)
    w_dim: int = param(128, help="size of the intermediate latent w", min=1, advanced=True)
    mapping_layers: int = param(
        4, help="fully connected layers of the mapping network", min=1, advanced=True
    )
    channel_base: int = param(
        4096,
        help="feature maps at resolution r are min(channel_base // r, channel_max)",
        min=1,
        advanced=True,
    )
    channel_max: int = param(128, help="most feature maps per layer", min=1, advanced=True)

    def check(self) -> None:
        if not self.axes:
            raise ParameterError("axes", "must name at least one slicing direction")
        if len(set(self.axes)) != len(self.axes):
            raise ParameterError("axes", f"must not repeat a direction, got {self.axes}")

    def network_sizes(self) -> dict[str, int]:
        """The architecture fields (:data:`NETWORK_FIELDS`) as a dict."""
        return {name: getattr(self, name) for name in NETWORK_FIELDS}

    def network_config(self):
        """The :class:`~.networks.StyleGANConfig` these sizes describe (imports torch)."""
        from .networks import StyleGANConfig

        return StyleGANConfig(**self.network_sizes())

    def resolved_r1_gamma(self) -> float:
        """The R1 weight actually used."""
        if self.r1_gamma is not None:
            return float(self.r1_gamma)
        return 0.0002 * self.resolution**2 / self.batch_size

    def resolved_ema_kimg(self) -> float:
        """The EMA half-life (thousands of images) actually used."""
        return float(self.ema_kimg) if self.ema_kimg is not None else self.batch_size * 10 / 32


@dataclass(frozen=True)
class StyleGANSampleParams(EngineParams):
    """What :func:`~.sample.run_sample_slices` draws. Sample ``i`` depends only on ``seed + i``."""

    generator: str | None = _generator_param()
    count: int = count_param(16, label="slices", aliases=("n",))
    seed: int = _seed_param("seed of the first slice (slice i uses seed + i)")
    truncation_psi: float = _truncation_param()
    device: str = _device_param()
    noise: str = param(
        "random",
        help="noise maps: 'random' (seeded per slice), the generator's 'const' noise, or 'none'",
        choices=("random", "const", "none"),
        advanced=True,
        aliases=("noise_mode",),
    )
    window: str = param(
        "training",
        help="'training': map slices to data values with the window recorded at training "
        "(e.g. uint16); 'unit': float32 in [0, 1]",
        choices=("training", "unit"),
        advanced=True,
    )
    batch_size: int = param(16, help="slices generated together", min=1, advanced=True)


@dataclass(frozen=True)
class StyleGANWalkParams(EngineParams):
    """The latent walk of :func:`~.sample.run_latent_walk`: one slice per frame, seed A to B."""

    generator: str | None = _generator_param()
    seed_a: int = _seed_param("seed of the start latent (as in sampling)", 0, "seed A")
    seed_b: int = _seed_param("seed of the end latent", 1, "seed B")
    frames: int = param(16, help="frames of the walk, both ends included", min=2)
    truncation_psi: float = _truncation_param()
    slerp: bool = param(True, help="spherical interpolation of z (off: linear interpolation in W)")
    device: str = _device_param()
    noise: str = param(
        "const",
        help="noise along the walk: the generator's fixed 'const' noise (smooth) or 'none'",
        choices=("const", "none"),
        advanced=True,
        aliases=("noise_mode",),
    )
