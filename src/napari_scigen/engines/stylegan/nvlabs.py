"""Load the weights of a stylegan2-ada-pytorch generator into our :class:`Generator`.

NVlabs distributes trained networks as pickles that embed their (non-commercially
licensed) source code; we never unpickle them. If you have such a network and
its licence allows your use, export the EMA generator's *state dict* once, in an
environment where their code is importable::

    import pickle, torch
    with open("network.pkl", "rb") as f:
        G_ema = pickle.load(f)["G_ema"]
    torch.save(G_ema.state_dict(), "g_ema.pt")

and load ``g_ema.pt`` here (``torch.load(weights_only=True)``: tensors only, no code).

The architecture is inferred from the tensor shapes. Only unconditional
generators with the "skip" synthesis architecture (StyleGAN2 config "f", the
stylegan2-ada-pytorch default) map onto ours. RGB generators are turned into
grayscale ones by folding the luminance weights (0.299, 0.587, 0.114) into the
last (linear, non-demodulated) to-image layers, which is exact.

What is *not* bit-exact: our 2x resampling applies the same [1, 3, 3, 1] filter
as bilinear interpolation with edge replication, while the reference pads with
zeros and fuses upsampling into a transposed convolution; we also do not clamp
activations (``conv_clamp``). Expect images that are very close but not
identical to the reference implementation's, mostly at the borders.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from .checkpoint import build_networks
from .networks import Generator, StyleGANConfig

#: Luminance weights used to fold RGB to-image layers into one grayscale channel.
LUMINANCE = (0.299, 0.587, 0.114)

_LAYER_FIELDS = ("weight", "bias", "noise_strength", "noise_const", "affine.weight", "affine.bias")


class NvlabsImportError(ValueError):
    """The state dict does not describe a generator we can map."""


def _infer_config(state: dict[str, torch.Tensor]) -> StyleGANConfig:
    if any(k.startswith("mapping.embed") for k in state):
        raise NvlabsImportError("conditional generators (mapping.embed.*) are not supported")
    if any(re.match(r"synthesis\.b\d+\.skip\.", k) for k in state):
        raise NvlabsImportError("the 'resnet' synthesis architecture is not supported, only 'skip'")
    fc = sorted(
        int(m.group(1)) for k in state if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k))
    )
    if not fc or fc != list(range(len(fc))):
        raise NvlabsImportError(
            "no mapping.fc<i>.weight tensors: is this a stylegan2-ada-pytorch G_ema state dict?"
        )
    resolutions = sorted(
        {int(m.group(1)) for k in state if (m := re.match(r"synthesis\.b(\d+)\.", k))}
    )
    if not resolutions or resolutions[0] != 4:
        raise NvlabsImportError("no synthesis.b4.* tensors found")
    channels = {res: int(state[f"synthesis.b{res}.conv1.weight"].shape[0]) for res in resolutions}
    top = resolutions[-1]
    channel_max = max(channels.values())
    channel_base = next(
        (channels[r] * r for r in resolutions if channels[r] < channel_max), channel_max * top
    )
    config = StyleGANConfig(
        resolution=top,
        z_dim=int(state["mapping.fc0.weight"].shape[1]),
        w_dim=int(state[f"mapping.fc{fc[-1]}.weight"].shape[0]),
        mapping_layers=len(fc),
        channel_base=channel_base,
        channel_max=channel_max,
        img_channels=1,
    )
    wrong = {r: c for r, c in channels.items() if config.channels(r) != c}
    if wrong:
        raise NvlabsImportError(
            f"channel counts {channels} do not follow min(channel_base // res, channel_max) for any "
            f"channel_base; cannot map them onto our generator (mismatch at {wrong})"
        )
    return config


def map_nvlabs_names(
    state: dict[str, torch.Tensor], config: StyleGANConfig
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename stylegan2-ada-pytorch ``G_ema`` tensors to our names (RGB folded to gray).

    Returns
    -------
    (dict, list of str)
        Our state dict and the source keys that were ignored (resampling filters).
    """
    ours: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(src: str, dst: str, reshape=None) -> None:
        if src not in state:
            raise NvlabsImportError(f"missing tensor {src!r}")
        tensor = state[src].detach().to("cpu", torch.float32)
        ours[dst] = tensor.reshape(reshape) if reshape is not None else tensor
        used.add(src)

    for i in range(config.mapping_layers):
        take(f"mapping.fc{i}.weight", f"mapping_network.layers.{i}.weight")
        take(f"mapping.fc{i}.bias", f"mapping_network.layers.{i}.bias")
    take("mapping.w_avg", "w_avg")
    take("synthesis.b4.const", "synthesis.const")
    blocks = [("synthesis.b4.conv1", 0)]
    for log2_res in range(3, config.log2_resolution + 1):
        k = log2_res - 2
        blocks += [
            (f"synthesis.b{2**log2_res}.conv0", 2 * k - 1),
            (f"synthesis.b{2**log2_res}.conv1", 2 * k),
        ]
    for src, index in blocks:
        for name in _LAYER_FIELDS:
            shape = (
                (1, 1, *state[f"{src}.noise_const"].shape[-2:]) if name == "noise_const" else None
            )
            take(f"{src}.{name}", f"synthesis.convs.{index}.{name}", shape)
    for k, log2_res in enumerate(range(2, config.log2_resolution + 1)):
        src = f"synthesis.b{2**log2_res}.torgb"
        for name in ("weight", "bias", "affine.weight", "affine.bias"):
            take(f"{src}.{name}", f"synthesis.to_images.{k}.{name}")
        weight, bias = (
            ours[f"synthesis.to_images.{k}.weight"],
            ours[f"synthesis.to_images.{k}.bias"],
        )
        if weight.shape[0] == 3:
            coeffs = torch.tensor(LUMINANCE)
            ours[f"synthesis.to_images.{k}.weight"] = (weight * coeffs.reshape(3, 1, 1, 1)).sum(
                0, keepdim=True
            )
            ours[f"synthesis.to_images.{k}.bias"] = (bias * coeffs).sum().reshape(1)
        elif weight.shape[0] != 1:
            raise NvlabsImportError(
                f"{src}.weight has {weight.shape[0]} output channels; expected 1 or 3"
            )
    ignored = sorted(k for k in state if k not in used)
    unexpected = [k for k in ignored if not k.endswith("resample_filter")]
    if unexpected:
        raise NvlabsImportError(f"unexpected tensors that cannot be mapped: {unexpected[:8]}")
    return ours, ignored


def import_nvlabs_state_dict(
    path: str | os.PathLike, device: str = "cpu"
) -> tuple[Generator, dict[str, Any]]:
    """Build our generator from a stylegan2-ada-pytorch ``G_ema`` state-dict file.

    Parameters
    ----------
    path : path
        File written by ``torch.save(G_ema.state_dict(), "g_ema.pt")`` (see module doc).
    device : str
        Torch device.

    Returns
    -------
    (Generator, dict)
        The grayscale generator (eval mode) and metadata with its ``config``
        (no intensity window: pass one when sampling).

    Raises
    ------
    NvlabsImportError
        For conditional, ``resnet``-architecture or otherwise unmappable networks.
    """
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NvlabsImportError(f"{path} does not hold a flat state dict of tensors")
    config = _infer_config(state)
    ours, ignored = map_nvlabs_names(state, config)
    generator, _ = build_networks(config, discriminator=False)
    generator.load_state_dict(ours, strict=True)
    metadata = {
        "config": config.to_dict(),
        "source": {"nvlabs_state_dict": str(path), "ignored_tensors": ignored},
        "notes": "imported from stylegan2-ada-pytorch; RGB folded to luminance; resampling not bit-exact",
    }
    return generator.to(device).eval().requires_grad_(False), metadata
