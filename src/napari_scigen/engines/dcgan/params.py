"""Parameters of the DCGAN engines, declared once (no torch is imported here)."""

from __future__ import annotations

from dataclasses import dataclass

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

#: Generator output sizes the networks support (powers of two).
DCGAN_RESOLUTIONS = (16, 32, 64, 128, 256)
#: Slicing directions (the axis the planes are perpendicular to).
AXIS_NAMES = ("z", "y", "x")
#: The training fields that make up the architecture (``DCGANConfig``).
DCGAN_NETWORK_FIELDS = ("resolution", "z_dim", "channels")


@dataclass(frozen=True)
class DCGANTrainParams(EngineParams):
    """How :func:`~.train.run_train_dcgan` trains, and the network it builds."""

    train_steps: int = train_steps_param(5_000)
    resolution: int = param(
        64,
        help="generator output size = crop size of the training slices",
        choices=DCGAN_RESOLUTIONS,
    )
    batch_size: int = param(32, help="real and generated images per step", min=1)
    augment: bool = param(
        True,
        help="random flips/rotations of real slices and differentiable augmentation of the "
        "discriminator's inputs (for small data sets)",
    )
    crop: bool = param(True, help="train on random resolution-sized crops (off: resize slices)")
    axes: tuple[str, ...] = param(
        ("z",),
        help="slicing directions: z (YX planes), or z,y,x for isotropic volumes",
        choices=AXIS_NAMES,
    )
    sample_every: int = param(200, help="steps between preview grids", min=1, label="preview every")
    checkpoint_every: int = param(1000, help="steps between checkpoints", min=1)
    seed: int = seed_param(
        "seed of initialisation, data order, latents and augmentation (a resumed run keeps its own)"
    )
    device: str = device_param()
    learning_rate: float = learning_rate_param(
        0.0002, "Adam learning rate (DCGAN: 2e-4)", advanced=True, aliases=("lr",)
    )
    beta1: float = param(0.5, help="Adam beta1 (DCGAN: 0.5)", min=0.0, max=1.0, advanced=True)
    z_dim: int = param(100, help="size of the input latent z", min=1, advanced=True)
    channels: int = param(
        64,
        help="feature maps of the last generator / first discriminator layer "
        "(doubling per scale, at most 8x)",
        min=1,
        advanced=True,
    )
    window_percentiles: tuple[float, float] = param(
        (0.5, 99.5),
        help="percentiles of the training volume mapped to the generator's [-1, 1]",
        min=0.0,
        max=100.0,
        increasing=True,
        advanced=True,
    )
    keep_checkpoints: int = param(
        2, help="newest checkpoints kept in the run folder (0 = all)", min=0, advanced=True
    )
    preview_count: int = param(16, help="samples in a preview grid", min=1, advanced=True)

    def check(self) -> None:
        if not self.axes:
            raise ParameterError("axes", "must name at least one slicing direction")
        if len(set(self.axes)) != len(self.axes):
            raise ParameterError("axes", f"must not repeat a direction, got {self.axes}")

    def network_config(self):
        """The :class:`~.networks.DCGANConfig` of these sizes (imports torch)."""
        from .networks import DCGANConfig

        return DCGANConfig(**{name: getattr(self, name) for name in DCGAN_NETWORK_FIELDS})


@dataclass(frozen=True)
class DCGANSampleParams(EngineParams):
    """What :func:`~.sample.run_sample_dcgan` draws. Sample ``i`` depends only on ``seed + i``."""

    generator: str | None = param(
        None,
        help="DCGAN training run folder (its newest checkpoint) or checkpoint folder "
        "(required: train one with the training method 'dcgan' first)",
        kind="path",
        aliases=("checkpoint",),
    )
    count: int = count_param(16, label="slices", aliases=("n",))
    seed: int = seed_param("seed of the first slice (slice i uses seed + i)")
    device: str = device_param()
    window: str = param(
        "training",
        help="'training': map slices to data values with the window recorded at training; "
        "'unit': float32 in [0, 1]",
        choices=("training", "unit"),
        advanced=True,
    )
    batch_size: int = param(64, help="slices generated together", min=1, advanced=True)
