"""StyleGAN2 generator and residual discriminator for single-channel images.

Written from the papers, not from any reference code:

* Karras, Laine, Aila (2019), "A Style-Based Generator Architecture for GANs"
  (mapping network, per-layer styles, noise inputs, truncation trick).
* Karras et al. (2020), "Analyzing and Improving the Image Quality of StyleGAN"
  (weight modulation/demodulation, skip generator, residual discriminator,
  lazy R1 regularisation).
* Karras et al. (2018), "Progressive Growing of GANs" (equalized learning rate,
  minibatch standard deviation).

Resampling uses the [1, 3, 3, 1] binomial filter the papers use, expressed as
bilinear 2x upsampling (half-pixel centres) and antialiased bilinear 2x
downsampling, which apply exactly that filter (with edge replication instead of
zero padding at the border).

Torch is imported at module level here: this module is only imported lazily by
the engine functions, never by ``napari_scigen`` itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Leaky ReLU slope and the gain that keeps activations at unit variance after it.
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


@dataclass(frozen=True)
class StyleGANConfig:
    """Architecture of a generator/discriminator pair.

    Parameters
    ----------
    resolution : int
        Output image size (a power of two between 8 and 1024; 32-512 are the
        supported working sizes, tests use 16).
    z_dim : int
        Size of the input latent ``z``.
    w_dim : int
        Size of the intermediate latent ``w``.
    mapping_layers : int
        Fully connected layers of the mapping network (8 in the paper).
    channel_base : int
        Feature maps at resolution ``r`` are ``min(channel_base // r, channel_max)``.
    channel_max : int
        Upper bound on feature maps per layer.
    img_channels : int
        Image channels (1: grayscale microCT).
    mapping_lr_multiplier : float
        Learning-rate multiplier of the mapping network (0.01 in the paper).
    mbstd_group_size : int
        Group size of the discriminator's minibatch standard deviation layer.
    """

    resolution: int = 64
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    channel_base: int = 4096
    channel_max: int = 128
    img_channels: int = 1
    mapping_lr_multiplier: float = 0.01
    mbstd_group_size: int = 4

    def __post_init__(self) -> None:
        res = self.resolution
        if res < 8 or res > 1024 or res & (res - 1):
            raise ValueError(f"resolution must be a power of two in [8, 1024], got {res}")
        for name in (
            "z_dim",
            "w_dim",
            "mapping_layers",
            "channel_base",
            "channel_max",
            "img_channels",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")

    @property
    def log2_resolution(self) -> int:
        """``log2(resolution)``."""
        return int(round(math.log2(self.resolution)))

    @property
    def num_ws(self) -> int:
        """Number of per-layer styles the synthesis network consumes (``2*log2(res) - 2``)."""
        return 2 * self.log2_resolution - 2

    def channels(self, res: int) -> int:
        """Feature maps used at resolution ``res``."""
        return max(1, min(self.channel_base // res, self.channel_max))

    def to_dict(self) -> dict:
        """JSON-friendly dictionary (inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> StyleGANConfig:
        """Build a config from :meth:`to_dict` output (unknown keys are an error)."""
        return cls(**values)


# --------------------------------------------------------------------------- layers


class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate.

    Weights are stored as N(0, 1/lr_multiplier) and scaled at run time by
    ``lr_multiplier / sqrt(fan_in)``, so every layer learns at the same speed.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.bias_gain
        x = F.linear(x, self.weight * self.weight_gain, bias)
        if self.activation:
            x = F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN
        return x


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate and optional 2x down-sampling (discriminator)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        activation: bool = True,
        down: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.activation = activation
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = downsample2x(x)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        if self.activation:
            x = F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN
        return x


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x upsampling with the [1, 3, 3, 1] filter (bilinear, half-pixel centres)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x downsampling with the [1, 3, 3, 1] filter (antialiased bilinear).

    Computed in float32 (the antialiased kernel has no bfloat16 CPU implementation);
    the result has the dtype of ``x``.
    """
    out = F.interpolate(
        x.float(), scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True
    )
    return out.to(x.dtype)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row of ``x`` to unit mean square ("pixel norm" of the latent)."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    padding: int = 1,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Convolution whose weights are scaled per sample by ``styles`` (StyleGAN2 Eq. 1-3).

    Parameters
    ----------
    x : torch.Tensor
        Input ``(N, C_in, H, W)``.
    weight : torch.Tensor
        Shared weights ``(C_out, C_in, k, k)`` (already multiplied by their gain).
    styles : torch.Tensor
        Per-sample input-channel scales ``(N, C_in)``.
    demodulate : bool
        Normalise each output feature map to unit expected variance (Eq. 3).

    Returns
    -------
    torch.Tensor
        ``(N, C_out, H, W)``.
    """
    batch, in_channels, height, width = x.shape
    out_channels = weight.shape[0]
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, in_channels, 1, 1)
    if demodulate:
        w = w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + eps)
    # One grouped convolution: every sample is its own group.
    x = x.reshape(1, batch * in_channels, height, width)
    w = w.reshape(batch * out_channels, in_channels, *weight.shape[2:])
    x = F.conv2d(x, w, padding=padding, groups=batch)
    return x.reshape(batch, out_channels, height, width)


class StyledConv(nn.Module):
    """Modulated 3x3 convolution + noise + bias + leaky ReLU, with optional 2x upsampling."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *, up: bool
    ) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.weight_gain = 1.0 / math.sqrt(in_channels * 9)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.resolution = resolution
        self.up = up

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if self.up:
            x = upsample2x(x)
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, demodulate=True)
        if noise is not None:
            x = x + noise * self.noise_strength
        x = x + self.bias.reshape(1, -1, 1, 1)
        return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN


class ToImage(nn.Module):
    """Modulated 1x1 convolution to image channels (no demodulation), the skip branch."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, padding=0)
        return x + self.bias.reshape(1, -1, 1, 1)


# ----------------------------------------------------------------------- generator


class MappingNetwork(nn.Module):
    """z -> w: latent normalisation followed by ``mapping_layers`` fully connected layers."""

    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__()
        dims = [config.z_dim] + [config.w_dim] * config.mapping_layers
        self.layers = nn.ModuleList(
            EqualLinear(
                dims[i], dims[i + 1], lr_multiplier=config.mapping_lr_multiplier, activation=True
            )
            for i in range(config.mapping_layers)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        for layer in self.layers:
            x = layer(x)
        return x


class SynthesisNetwork(nn.Module):
    """Skip-architecture synthesis network: per-layer styles ``ws`` -> image in ~[-1, 1]."""

    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__()
        self.config = config
        first = config.channels(4)
        self.const = nn.Parameter(torch.randn(first, 4, 4))
        convs = [StyledConv(first, first, config.w_dim, 4, up=False)]
        to_images = [ToImage(first, config.img_channels, config.w_dim)]
        in_channels = first
        for log2_res in range(3, config.log2_resolution + 1):
            res = 2**log2_res
            out_channels = config.channels(res)
            convs.append(StyledConv(in_channels, out_channels, config.w_dim, res, up=True))
            convs.append(StyledConv(out_channels, out_channels, config.w_dim, res, up=False))
            to_images.append(ToImage(out_channels, config.img_channels, config.w_dim))
            in_channels = out_channels
        self.convs = nn.ModuleList(convs)
        self.to_images = nn.ModuleList(to_images)

    @property
    def noise_shapes(self) -> list[tuple[int, int]]:
        """``(H, W)`` of the noise input of each convolution, in order."""
        return [(conv.resolution, conv.resolution) for conv in self.convs]

    def make_noise(
        self, batch: int, *, generator: torch.Generator | None = None, device=None
    ) -> list[torch.Tensor]:
        """Fresh unit Gaussian noise maps ``(batch, 1, H, W)`` for every convolution."""
        device = device if device is not None else self.const.device
        gen_device = generator.device if generator is not None else device
        return [
            torch.randn(batch, 1, h, w, generator=generator, device=gen_device).to(device)
            for h, w in self.noise_shapes
        ]

    def forward(
        self,
        ws: torch.Tensor,
        *,
        noise_mode: str = "random",
        noise: list[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        batch = ws.shape[0]
        if ws.ndim != 3 or ws.shape[1] != self.config.num_ws:
            raise ValueError(
                f"ws must have shape (N, {self.config.num_ws}, {self.config.w_dim}), got {tuple(ws.shape)}"
            )
        if noise is None:
            if noise_mode == "random":
                noise = self.make_noise(batch, generator=generator, device=ws.device)
            elif noise_mode == "const":
                noise = [conv.noise_const.expand(batch, -1, -1, -1) for conv in self.convs]
            elif noise_mode == "none":
                noise = [None] * len(self.convs)
            else:
                raise ValueError(
                    f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}"
                )
        elif len(noise) != len(self.convs):
            raise ValueError(f"expected {len(self.convs)} noise maps, got {len(noise)}")

        x = self.const.unsqueeze(0).expand(batch, -1, -1, -1)
        x = self.convs[0](x, ws[:, 0], noise[0])
        image = self.to_images[0](x, ws[:, 1])
        for block in range(1, len(self.to_images)):
            conv0, conv1 = self.convs[2 * block - 1], self.convs[2 * block]
            x = conv0(x, ws[:, 2 * block - 1], noise[2 * block - 1])
            x = conv1(x, ws[:, 2 * block], noise[2 * block])
            image = upsample2x(image) + self.to_images[block](x, ws[:, 2 * block + 1])
        return image


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network + skip synthesis network.

    Parameters
    ----------
    config : StyleGANConfig
        Architecture. Weights are drawn from torch's global RNG: seed it (or use
        ``torch.random.fork_rng``) for a reproducible initialisation.

    Attributes
    ----------
    w_avg : torch.Tensor
        Running average of ``w`` during training (buffer), the centre of the
        truncation trick and the starting point of GAN inversion.
    num_ws : int
        Number of per-layer styles.
    """

    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__()
        self.config = config
        self.mapping_network = MappingNetwork(config)
        self.synthesis = SynthesisNetwork(config)
        self.register_buffer("w_avg", torch.zeros(config.w_dim))
        self.num_ws = config.num_ws

    def mapping(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        *,
        update_w_avg_beta: float | None = None,
    ) -> torch.Tensor:
        """z ``(N, z_dim)`` -> broadcast styles ``ws`` ``(N, num_ws, w_dim)``.

        Parameters
        ----------
        z : torch.Tensor
            Input latents.
        truncation_psi : float
            Truncation trick: ``w = w_avg + psi * (w - w_avg)`` (1 = off).
        update_w_avg_beta : float, optional
            During training, move ``w_avg`` towards the batch mean with this decay.
        """
        w = self.mapping_network(z)
        if update_w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, update_w_avg_beta))
        if truncation_psi != 1.0:
            w = self.w_avg.lerp(w, truncation_psi)
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        *,
        noise_mode: str = "random",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """z -> images ``(N, img_channels, R, R)`` in about ``[-1, 1]``."""
        return self.synthesis(
            self.mapping(z, truncation_psi), noise_mode=noise_mode, generator=generator
        )


# ------------------------------------------------------------------- discriminator


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs (the second downsamples) + a 1x1 downsampling skip."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, down=True)
        self.skip = EqualConv2d(
            in_channels, out_channels, 1, bias=False, activation=False, down=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(x)
        x = self.conv1(self.conv0(x))
        return (x + skip) * math.sqrt(0.5)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator returning one logit per image."""

    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__()
        self.config = config
        top = config.channels(config.resolution)
        self.from_image = EqualConv2d(config.img_channels, top, 1)
        blocks = []
        for log2_res in range(config.log2_resolution, 2, -1):
            res = 2**log2_res
            blocks.append(DiscriminatorBlock(config.channels(res), config.channels(res // 2)))
        self.blocks = nn.ModuleList(blocks)
        last = config.channels(4)
        self.mbstd_group_size = config.mbstd_group_size
        self.conv = EqualConv2d(last + 1, last, 3)
        self.fc = EqualLinear(last * 16, last, activation=True)
        self.out = EqualLinear(last, 1)

    def minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        """Append the average feature standard deviation over sample groups as one channel."""
        batch, channels, height, width = x.shape
        group = min(self.mbstd_group_size, batch)
        while batch % group:
            group -= 1
        y = x.reshape(group, -1, channels, height, width)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (batch // group,)
        y = y.reshape(-1, 1, 1, 1).repeat(group, 1, height, width)
        return torch.cat([x, y], dim=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.from_image(image)
        for block in self.blocks:
            x = block(x)
        x = self.minibatch_stddev(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return self.out(x)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
