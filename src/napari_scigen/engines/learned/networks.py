"""The compact residual U-Net the learned engines train on each volume.

Three levels (``c``, ``2c``, ``3c`` feature maps with ``c = base_channels``), two
3x3 convolutions per residual block, strided convolutions down, bilinear upsampling and
skip connections up, SiLU activations and no normalisation layers (small batches, and
a result that does not depend on the batch). The last convolution starts at zero, so an
untrained network returns its base image unchanged: the engines add its output to a
linear blend (interpolation) or a smooth fill (inpainting) and it learns a residual.
Inputs of any size are padded to a multiple of 4 and the output cropped back.

Torch is imported at module level here: this module is only imported lazily by the
engine functions, never by ``napari_scigen`` itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a :class:`ResidualUNet`.

    Parameters
    ----------
    in_channels : int
        Input channels (e.g. linear fill + known-row mask = 2).
    base_channels : int
        Feature maps of the first level.
    """

    in_channels: int = 2
    base_channels: int = 24

    def to_dict(self) -> dict:
        """JSON-friendly form (stored with checkpoints and weights)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> UNetConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        return cls(**values)


class ResidualBlock(nn.Module):
    """``x + conv(silu(conv(silu(x))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first = nn.Conv2d(channels, channels, 3, padding=1)
        self.second = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.second(F.silu(self.first(F.silu(x))))


class ResidualUNet(nn.Module):
    """A three-level residual U-Net mapping ``(B, in_channels, H, W)`` to ``(B, 1, H, W)``."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c1 = config.base_channels
        c2, c3 = 2 * c1, 3 * c1
        self.stem = nn.Conv2d(config.in_channels, c1, 3, padding=1)
        self.level1 = ResidualBlock(c1)
        self.down1 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.level2 = ResidualBlock(c2)
        self.down2 = nn.Conv2d(c2, c3, 3, stride=2, padding=1)
        self.bottom = nn.Sequential(ResidualBlock(c3), ResidualBlock(c3))
        self.merge2 = nn.Conv2d(c3 + c2, c2, 3, padding=1)
        self.up2 = ResidualBlock(c2)
        self.merge1 = nn.Conv2d(c2 + c1, c1, 3, padding=1)
        self.up1 = ResidualBlock(c1)
        self.head = nn.Conv2d(c1, 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % 4, -width % 4
        if pad_h or pad_w:
            mode = "reflect" if min(height, width) > max(pad_h, pad_w) else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        h1 = self.level1(self.stem(x))
        h2 = self.level2(self.down1(F.silu(h1)))
        h3 = self.bottom(self.down2(F.silu(h2)))
        u2 = F.interpolate(h3, size=h2.shape[-2:], mode="bilinear", align_corners=False)
        u2 = self.up2(self.merge2(torch.cat([F.silu(u2), h2], dim=1)))
        u1 = F.interpolate(u2, size=h1.shape[-2:], mode="bilinear", align_corners=False)
        u1 = self.up1(self.merge1(torch.cat([F.silu(u1), h1], dim=1)))
        return self.head(F.silu(u1))[..., :height, :width]


def build_network(config: UNetConfig, *, seed: int = 0) -> ResidualUNet:
    """A new network with weights drawn from ``seed`` (the global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return ResidualUNet(config)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
