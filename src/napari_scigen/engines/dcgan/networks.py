"""DCGAN generator and discriminator (Radford, Metz & Chintala 2016) for grayscale slices.

Generator: ``z -> 4x4`` by a transposed convolution, then transposed convolutions of
stride 2 (BatchNorm, ReLU) doubling the size and halving the feature maps up to the
resolution, ``tanh`` output in ``[-1, 1]``. Discriminator: the mirror image with strided
convolutions and LeakyReLU(0.2), BatchNorm from the second layer on, one logit out.
Weights start from N(0, 0.02) (BatchNorm scales from N(1, 0.02)), as in the paper.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DCGANConfig:
    """Architecture of a DCGAN pair.

    Attributes
    ----------
    resolution : int
        Output side, a power of two >= 8.
    z_dim : int
        Latent size.
    channels : int
        Feature maps at full resolution (``channels * 2**k`` at the k-th smaller scale,
        at most ``8 * channels``).
    """

    resolution: int = 64
    z_dim: int = 100
    channels: int = 64

    def __post_init__(self) -> None:
        levels = math.log2(self.resolution)
        if self.resolution < 8 or levels != int(levels):
            raise ValueError(f"resolution must be a power of two >= 8, got {self.resolution}")

    @property
    def widths(self) -> list[int]:
        """Feature maps from 4x4 up to ``resolution / 2``."""
        scales = int(math.log2(self.resolution)) - 2  # 4x4 -> resolution
        return [self.channels * min(8, 2 ** (scales - 1 - k)) for k in range(scales)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DCGANConfig:
        return cls(**{k: int(values[k]) for k in ("resolution", "z_dim", "channels")})


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), BatchNorm N(1, 0.02) and bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """``z (N, z_dim) -> images (N, 1, R, R)`` in ``[-1, 1]``."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config
        widths = config.widths
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(config.z_dim, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for width_in, width_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(width_in, width_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width_out),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], 1, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """``images (N, 1, R, R) -> logits (N,)``."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config
        widths = list(reversed(config.widths))
        layers: list[nn.Module] = [
            nn.Conv2d(1, widths[0], 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, True),
        ]
        for width_in, width_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.Conv2d(width_in, width_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width_out),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).flatten()


def build_dcgan(config: DCGANConfig, *, seed: int = 0) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    """A freshly initialised ``(G, D)`` pair (seeded, without touching the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return DCGANGenerator(config), DCGANDiscriminator(config)
