"""LPIPS (Zhang et al., CVPR 2018) for single-channel microCT slices.

Both images are mapped to ``[-1, 1]`` with one shared intensity window (the
reference dtype's full range for integer data, the reference's min-max for float
data, or a window you give), replicated to three channels and compared slice by
slice in batches. Lower is more similar; 0 means identical features.

Weights: the linear calibration layers ship inside the ``lpips`` package. The
ImageNet backbone (torchvision ``alexnet-owt-7be5be79.pth`` or
``vgg16-397923af.pth``) is looked for in ``$NAPARI_SCIGEN_WEIGHTS`` and
``$TORCH_HOME/hub/checkpoints`` and loaded by us with ``weights_only=True``;
nothing is downloaded. If the file is missing a
:class:`~napari_scigen.core.models.ModelNotAvailableError` says which file and
where to put it. LPIPS values depend on the backbone, the lpips version and the
window, so all three are recorded in the result.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from ..core.models import MODEL_CACHE, ModelNotAvailableError
from ..core.stack import Window, dtype_window
from ..core.validation import InvalidInputError
from .pixel import check_pair
from .weights import (
    LPIPS_BACKBONE_FILES,
    find_weight_file,
    lpips_backbone_instructions,
    lpips_linear_weights,
    search_dirs,
)

LPIPS_NETS = tuple(LPIPS_BACKBONE_FILES)

#: Smallest slice side the backbones accept.
MIN_SIDE = 32


@dataclass(frozen=True)
class LpipsResult:
    """LPIPS per slice, with what is needed to reproduce it.

    Parameters
    ----------
    values : tuple of float
        One distance per slice.
    value : float
        Mean over slices.
    net : str
        ``"alex"`` or ``"vgg"``.
    lpips_version : str
        Version of the ``lpips`` package.
    window : tuple of float
        ``(low, high)`` data values mapped to -1 and 1.
    pretrained_backbone : bool
        ``False`` when a random backbone was used (testing only: not LPIPS).
    device : str
        Where it ran.
    map : numpy.ndarray or None
        float32 spatial LPIPS map with the input's shape when requested.
    """

    values: tuple[float, ...]
    value: float
    net: str
    lpips_version: str
    window: tuple[float, float]
    pretrained_backbone: bool
    device: str
    map: np.ndarray | None = field(default=None, repr=False)

    @property
    def mean(self) -> float:
        """Alias of :attr:`value`."""
        return self.value

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly description (without the map)."""
        return {
            "metric": "lpips",
            "value": self.value,
            "per_slice": list(self.values),
            "net": self.net,
            "lpips_version": self.lpips_version,
            "window": list(self.window),
            "pretrained_backbone": self.pretrained_backbone,
            "device": self.device,
        }


def lpips_version() -> str:
    """The installed ``lpips`` package version (it has no ``__version__``)."""
    try:
        return version("lpips")
    except PackageNotFoundError:
        return "not installed"


def lpips_window(reference: np.ndarray, window=None) -> tuple[float, float]:
    """The shared ``(low, high)`` window used to map both images to ``[-1, 1]``.

    Parameters
    ----------
    reference : numpy.ndarray
        The reference image.
    window : Window, (low, high) or None
        ``None``: the integer dtype's full range, or min-max for float data.

    Returns
    -------
    tuple of float
    """
    if window is None:
        if np.issubdtype(reference.dtype, np.integer):
            chosen = dtype_window(reference.dtype)
            return chosen.low, chosen.high
        low, high = float(np.min(reference)), float(np.max(reference))
        return (low, high) if high > low else (low, low + 1.0)
    if isinstance(window, Window):
        low, high = window.low, window.high
    else:
        low, high = (float(v) for v in window)
    if high <= low:
        raise InvalidInputError(f"window (low, high) must satisfy low < high, got {(low, high)}")
    return float(low), float(high)


def to_lpips_range(slices: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Map data to float32 ``[-1, 1]`` with ``window`` (clipping outside it)."""
    low, high = window
    unit = (np.asarray(slices, dtype=np.float64) - low) / (high - low)
    return (np.clip(unit, 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def backbone_file(net: str) -> Path:
    """The backbone weight file for ``net``.

    Raises
    ------
    ModelNotAvailableError
        If the file is in none of the searched folders, naming the file and where
        to put it.
    """
    file_name = LPIPS_BACKBONE_FILES[net]
    found = find_weight_file(file_name)
    if found is None:
        looked = ", ".join(str(d) for d in search_dirs())
        raise ModelNotAvailableError(
            f"LPIPS (net={net!r}) needs the ImageNet backbone weights {file_name}, which are not "
            f"on this machine (looked in: {looked}). napari-scigen never downloads them itself.\n"
            f"{lpips_backbone_instructions(net)}\n"
            "For pipeline tests only, pretrained_backbone=False uses a random backbone "
            "(the values are then not LPIPS)."
        )
    return found


def _backbone_state_dict(model, path: Path) -> dict:
    """Map torchvision ``features.N.*`` keys onto the lpips ``sliceK.N.*`` modules."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    slice_of: dict[str, str] = {}
    for slice_name, block in model.net.named_children():
        for index, _ in block.named_children():
            slice_of[index] = slice_name
    mapped = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] != "features" or len(parts) != 3:
            continue
        if parts[1] not in slice_of:
            continue  # layers after the last LPIPS tap (e.g. the final max-pool has no weights)
        mapped[f"{slice_of[parts[1]]}.{parts[1]}.{parts[2]}"] = tensor
    return mapped


def _load_lpips(net: str, pretrained_backbone: bool, device: str):
    import lpips
    import torch

    linear = lpips_linear_weights(net)
    if linear is None:
        raise ModelNotAvailableError(
            f"the lpips package has no linear-layer weights for net={net!r}; reinstall it: pip install lpips"
        )
    backbone = backbone_file(net) if pretrained_backbone else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's 'pretrained' deprecation notice
        model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    linear_state = torch.load(linear, map_location="cpu", weights_only=True)
    result = model.load_state_dict(linear_state, strict=False)
    if result.unexpected_keys:
        raise ModelNotAvailableError(
            f"{linear} does not hold LPIPS linear layers: {result.unexpected_keys[:3]}"
        )
    if backbone is not None:
        model.net.load_state_dict(_backbone_state_dict(model, backbone), strict=True)
    model.eval().requires_grad_(False)
    return model.to(device)


def load_lpips(net: str = "alex", *, pretrained_backbone: bool = True, device: str = "auto"):
    """The LPIPS model for ``net``, loaded once per process (cached in MODEL_CACHE).

    Parameters
    ----------
    net : {"alex", "vgg"}
        Backbone network.
    pretrained_backbone : bool
        ``False`` uses a random backbone (no file needed; for tests only).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...

    Returns
    -------
    lpips.LPIPS
        In eval mode on the device.

    Raises
    ------
    ModelNotAvailableError
        If the backbone file is missing (checked before anything is built).
    """
    from ..core.device import resolve_device

    if net not in LPIPS_NETS:
        raise InvalidInputError(f"unknown LPIPS net {net!r}; choose one of {', '.join(LPIPS_NETS)}")
    resolved = resolve_device(device)
    backbone = str(backbone_file(net)) if pretrained_backbone else "random"
    key = ("lpips", net, backbone, resolved)
    return MODEL_CACHE.get(key, lambda: _load_lpips(net, pretrained_backbone, resolved))


def lpips_forward(model, in0, in1, *, spatial: bool = False):
    """LPIPS of two ``(N, 3, H, W)`` tensors in ``[-1, 1]``, optionally with the map.

    The distance is exactly the lpips package's ``LPIPS.forward`` (v0.1, linear
    layers, spatial average per layer); the map is the sum of the per-layer maps
    upsampled bilinearly to ``(H, W)``, as ``LPIPS(spatial=True)`` computes it. One
    backbone pass gives both.

    Returns
    -------
    tuple
        ``(distances (N,), map (N, H, W) or None)`` as tensors.
    """
    import lpips
    import torch.nn.functional as F

    features0 = model.net(model.scaling_layer(in0))
    features1 = model.net(model.scaling_layer(in1))
    distance = 0.0
    spatial_map = 0.0
    for layer in range(model.L):
        diff = (
            lpips.normalize_tensor(features0[layer]) - lpips.normalize_tensor(features1[layer])
        ) ** 2
        weighted = model.lins[layer](diff)
        distance = distance + weighted.mean(dim=(2, 3))
        if spatial:
            spatial_map = spatial_map + F.interpolate(
                weighted, size=tuple(in0.shape[2:]), mode="bilinear", align_corners=False
            )
    distances = distance.reshape(-1)
    return distances, (spatial_map[:, 0] if spatial else None)


def lpips_distance(
    reference,
    generated,
    *,
    net: str = "alex",
    window=None,
    device: str = "auto",
    batch_size: int = 16,
    spatial: bool = False,
    pretrained_backbone: bool = True,
    cancel=None,
) -> LpipsResult:
    """LPIPS between two slices or, slice by slice, two volumes.

    Parameters
    ----------
    reference, generated : numpy.ndarray
        2D ``(Y, X)`` or 3D ``(Z, Y, X)`` with the same shape and dtype; slices at
        least 32 pixels on each side.
    net : {"alex", "vgg"}
        Backbone (``"alex"`` is the lpips authors' recommendation for a metric).
    window : Window, (low, high) or None
        Shared intensity window mapped to ``[-1, 1]``; default from the reference
        (integer dtype range, or min-max for floats).
    device : str
        ``"auto"`` uses CUDA when available.
    batch_size : int
        Slice pairs per forward pass.
    spatial : bool
        Also return the float32 spatial LPIPS map (same shape as the input).
    pretrained_backbone : bool
        ``False`` uses a random backbone (tests only; the result is not LPIPS).
    cancel : CancelToken, optional
        Checked between batches.

    Returns
    -------
    LpipsResult

    Raises
    ------
    ModelNotAvailableError
        If the backbone weights file is not on this machine.
    InvalidInputError
        On shape/dtype mismatch or slices smaller than 32 pixels.
    """
    import torch

    from ..core.progress import check_cancelled

    ref, gen = check_pair(reference, generated)
    if min(ref.shape[-2:]) < MIN_SIDE:
        raise InvalidInputError(
            f"LPIPS needs slices of at least {MIN_SIDE}x{MIN_SIDE} pixels, got {ref.shape[-2:]}"
        )
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
    chosen_window = lpips_window(ref, window)
    model = load_lpips(net, pretrained_backbone=pretrained_backbone, device=device)
    target = next(model.parameters()).device
    ref_slices = ref[np.newaxis] if ref.ndim == 2 else ref
    gen_slices = gen[np.newaxis] if gen.ndim == 2 else gen
    values: list[float] = []
    maps = np.empty(ref_slices.shape, dtype=np.float32) if spatial else None
    with torch.inference_mode():
        for start in range(0, ref_slices.shape[0], batch_size):
            check_cancelled(cancel)
            stop = min(start + batch_size, ref_slices.shape[0])
            in0 = torch.from_numpy(to_lpips_range(ref_slices[start:stop], chosen_window))
            in1 = torch.from_numpy(to_lpips_range(gen_slices[start:stop], chosen_window))
            in0 = in0[:, None].expand(-1, 3, -1, -1).to(target)
            in1 = in1[:, None].expand(-1, 3, -1, -1).to(target)
            distances, spatial_map = lpips_forward(model, in0, in1, spatial=spatial)
            values.extend(float(v) for v in distances.float().cpu())
            if maps is not None:
                maps[start:stop] = spatial_map.float().cpu().numpy()
    if maps is not None and ref.ndim == 2:
        maps = maps[0]
    return LpipsResult(
        values=tuple(values),
        value=float(np.mean(values)),
        net=net,
        lpips_version=lpips_version(),
        window=chosen_window,
        pretrained_backbone=pretrained_backbone,
        device=str(target),
        map=maps,
    )
