"""The working state of one slice in a Stable Diffusion run, from the data to the model and back.

- **slices and seeds**: which slices run, one ``torch.Generator`` per slice (and
  variant) seeded ``seed + z (+ VARIANT_SEED_STRIDE * variant)``, so a slice's result
  does not depend on the batch it runs in;
- **intensity**: one :class:`~napari_scigen.core.stack.Window` per run (percentiles
  of the whole image) maps any dtype to the model's [0, 1] and back;
- **geometry**: slices smaller than the model resolution are reflect-padded, larger
  ones processed in model-size crops around the mask (never downscaled; see
  :func:`napari_scigen.core.tiling.core_tiles`); masks go to latent resolution without
  missing a masked pixel;
- **compositing**: the result is blended in with a linear ramp inside the mask
  (:func:`napari_scigen.core.masks.ramp_mask`), every pixel outside the mask
  bit-identical to the input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ...core.masks import ramp_mask
from ...core.stack import Window, percentile_window
from ...core.tiling import CoreTile, core_tiles, grid_tiles
from .._slices import select_slices

T = TypeVar("T")

#: Seed offset between variants of one slice: seed(z, v) = seed + z + VARIANT_SEED_STRIDE * v.
VARIANT_SEED_STRIDE = 1_000_003

# --------------------------------------------------------------------------------------
# Slices, seeds and batches
# --------------------------------------------------------------------------------------


def selected_slices(image: np.ndarray, slices: Iterable[int] | None) -> list[int]:
    """The sorted z indices to process (``None`` = every slice; a 2D image has slice 0).

    Raises
    ------
    InvalidInputError
        For indices outside the image or an empty selection.
    """
    depth = 1 if image.ndim == 2 else image.shape[0]
    return sorted(select_slices(depth, slices))


def slice_of(array: np.ndarray, z: int) -> np.ndarray:
    """Slice ``z`` of a volume, or the array itself when it is a 2D slice."""
    return array if array.ndim == 2 else array[z]


def slice_seed(seed: int, z: int, variant: int = 0) -> int:
    """The seed of slice ``z`` (and variant): ``seed + z + VARIANT_SEED_STRIDE * variant``."""
    return int(seed) + int(z) + VARIANT_SEED_STRIDE * int(variant)


def make_generator(seed: int):
    """A CPU ``torch.Generator`` seeded with ``seed`` (CPU so noise is the same on every device)."""
    import torch

    return torch.Generator(device="cpu").manual_seed(int(seed))


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    """Split ``items`` into consecutive lists of at most ``size`` elements."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def describe_zs(zs: Iterable[int]) -> str:
    """Short human description of slice indices for messages."""
    zs = list(zs)
    return f"slice {zs[0]}" if len(zs) == 1 else f"slices {zs[0]}..{zs[-1]} ({len(zs)})"


def run_window(image: np.ndarray, percentiles: tuple[float, float]) -> Window:
    """The intensity window of a run: percentiles of the whole image (recorded in provenance).

    Computed over every slice, not only the processed ones, so a slice gives the same
    result whichever other slices are selected with it.
    """
    return percentile_window(image, float(percentiles[0]), float(percentiles[1]))


# --------------------------------------------------------------------------------------
# Latent-resolution masks
# --------------------------------------------------------------------------------------


def latent_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """Downsample a pixel mask to latent resolution by max-pooling (no masked pixel missed).

    Parameters
    ----------
    mask : numpy.ndarray
        ``(..., H, W)`` boolean mask; ``H`` and ``W`` must be multiples of ``factor``.
    factor : int
        The VAE scale factor (8 for Stable Diffusion).

    Returns
    -------
    numpy.ndarray
        ``(..., H/factor, W/factor)`` float32 in {0, 1}: a latent cell is 1 when any
        pixel of its ``factor x factor`` block is masked.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(
            f"mask shape {mask.shape[-2:]} is not a multiple of the latent factor {factor}"
        )
    blocks = mask.reshape(*mask.shape[:-2], height // factor, factor, width // factor, factor)
    return blocks.any(axis=(-3, -1)).astype(np.float32)


def upsample_latent_mask(latent: np.ndarray, factor: int) -> np.ndarray:
    """Latent-resolution mask -> pixel resolution (each cell becomes a ``factor`` block), bool."""
    latent = np.asarray(latent) > 0.5
    return np.repeat(np.repeat(latent, factor, axis=-2), factor, axis=-1)


def block_dilate(mask: np.ndarray, factor: int) -> np.ndarray:
    """Grow a pixel mask to whole latent blocks (what the model can actually change)."""
    return upsample_latent_mask(latent_mask(mask, factor), factor)


# --------------------------------------------------------------------------------------
# Padding
# --------------------------------------------------------------------------------------


def pad_widths(
    shape: tuple[int, int], minimum: int, multiple: int = 8
) -> tuple[tuple[int, int], ...]:
    """Centered padding that makes each side ``>= minimum`` and a multiple of ``multiple``."""
    widths = []
    for size in shape:
        target = max(int(minimum), int(math.ceil(size / multiple) * multiple))
        extra = target - size
        widths.append((extra // 2, extra - extra // 2))
    return tuple(widths)


def reflect_pad(array: np.ndarray, widths) -> np.ndarray:
    """Reflect-pad a 2D array (numpy repeats the reflection for pads wider than the array)."""
    if not any(a or b for a, b in widths):
        return np.array(array, copy=True)
    if min(array.shape) < 2:
        return np.pad(array, widths, mode="edge")
    return np.pad(array, widths, mode="reflect")


def unpad(array: np.ndarray, widths) -> np.ndarray:
    """Undo :func:`pad_widths` padding on the last two axes."""
    (top, bottom), (left, right) = widths
    height, width = array.shape[-2:]
    return array[..., top : height - bottom, left : width - right]


# --------------------------------------------------------------------------------------
# Compositing
# --------------------------------------------------------------------------------------


def composite(original: np.ndarray, generated: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Blend ``generated`` into ``original`` with ``weights``; where weight is 0, copy bits.

    Parameters
    ----------
    original, generated : numpy.ndarray
        2D slices of the same shape and dtype.
    weights : numpy.ndarray
        E.g. from :func:`~napari_scigen.core.masks.ramp_mask`.

    Returns
    -------
    numpy.ndarray
        New array of ``original``'s dtype; pixels with weight 0 are bit-identical copies.
    """
    out = np.array(original, copy=True)
    inside = weights > 0
    if not inside.any():
        return out
    w = weights[inside]
    blend = (
        original[inside].astype(np.float64) * (1.0 - w) + generated[inside].astype(np.float64) * w
    )
    if np.issubdtype(out.dtype, np.integer):
        info = np.iinfo(out.dtype)
        blend = np.clip(np.rint(blend), info.min, info.max)
    out[inside] = blend.astype(out.dtype)
    return out


def finish_slice(
    original: np.ndarray, mask: np.ndarray, unit: np.ndarray, window: Window, feather: float
) -> np.ndarray:
    """Map a slice back to the data's dtype/range and composite it into the original.

    Pixels outside ``mask`` are bit-identical to ``original``; inside, the result is
    blended in over ``feather`` pixels from the mask edge.
    """
    generated = window.from_unit(unit)
    return composite(original, generated, ramp_mask(np.asarray(mask, dtype=bool), feather))


# --------------------------------------------------------------------------------------
# One slice (or variant) of a masked run
# --------------------------------------------------------------------------------------


@dataclass
class SliceCanvas:
    """The working state of one slice (or one variant of it) in a masked run.

    Holds the padded slice in model units, the padded mask, its crops and the
    slice's random generator. Crops are generated in order, each seeing the
    previous crops' results as context.

    Parameters
    ----------
    z : int
        Slice index in the volume (0 for a 2D image).
    variant : int
        Variant index (0 unless several variants are generated).
    seed : int
        Seed of this slice/variant.
    unit : numpy.ndarray
        Padded slice in [0, 1] (float32), updated as crops are pasted.
    mask : numpy.ndarray
        Padded boolean mask.
    pads : tuple
        Padding applied, for :func:`unpad`.
    crops : list of CoreTile
        Model-size windows to generate, in order, each with the core it owns.
    generator : torch.Generator
        This slice's generator (consumed across its crops).
    """

    z: int
    variant: int
    seed: int
    unit: np.ndarray
    mask: np.ndarray
    pads: tuple
    crops: list[CoreTile]
    generator: Any = None

    @classmethod
    def create(
        cls,
        z: int,
        slice_data: np.ndarray,
        slice_mask: np.ndarray,
        window: Window,
        *,
        resolution: int,
        context: int,
        seed: int,
        variant: int = 0,
        whole_slice: bool = False,
    ) -> SliceCanvas:
        """Pad a slice and its mask and plan its crops (``whole_slice`` tiles it all)."""
        pads = pad_widths(slice_data.shape, resolution)
        unit = reflect_pad(window.to_unit(slice_data), pads)
        mask = np.pad(np.asarray(slice_mask, dtype=bool), pads, mode="constant")
        crops = (
            grid_tiles(unit.shape, resolution)
            if whole_slice
            else core_tiles(mask, resolution, context)
        )
        return cls(z, variant, seed, unit, mask, pads, crops, make_generator(seed))

    def crop_input(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Model-unit image and edit mask (core ∩ mask) of crop ``index``."""
        crop = self.crops[index]
        unit = self.unit[crop.window.slices].copy()
        owned = np.zeros_like(self.mask)
        owned[crop.core.slices] = self.mask[crop.core.slices]
        return unit, owned[crop.window.slices]

    def paste(self, index: int, generated: np.ndarray, edit_mask: np.ndarray) -> None:
        """Write a crop's generated unit values where its edit mask is set."""
        region = self.unit[self.crops[index].window.slices]
        region[edit_mask] = np.clip(generated[edit_mask], 0.0, 1.0)

    def result_unit(self) -> np.ndarray:
        """The slice (unpadded) in model units."""
        return unpad(self.unit, self.pads)

    def crops_in_slice_coordinates(self) -> list[list[int]]:
        """Crop windows as ``[y0, x0, y1, x1]`` in slice coordinates (negative where padded)."""
        top, left = self.pads[0][0], self.pads[1][0]
        return [
            [c.window.y0 - top, c.window.x0 - left, c.window.y1 - top, c.window.x1 - left]
            for c in self.crops
        ]


def batch_rounds(
    canvases: Sequence[SliceCanvas], batch_size: int
) -> list[list[tuple[SliceCanvas, int]]]:
    """Group ``(canvas, crop index)`` items into pipeline calls of at most ``batch_size``.

    Canvases are taken ``batch_size`` at a time; within such a group, round ``k``
    processes crop ``k`` of every canvas that has one, so a slice's crops run in order.
    """
    rounds = []
    for group in chunked(list(canvases), batch_size):
        most = max((len(c.crops) for c in group), default=0)
        for k in range(most):
            items = [(c, k) for c in group if k < len(c.crops)]
            if items:
                rounds.append(items)
    return rounds
