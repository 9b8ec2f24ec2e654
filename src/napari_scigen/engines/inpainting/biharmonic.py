"""Biharmonic inpainting: the smooth classical baseline for masked regions.

:func:`run_biharmonic` fills masked pixels with
:func:`skimage.restoration.inpaint_biharmonic`, slice by slice, working only on boxes
around the masked regions (see :mod:`napari_scigen.core.tiling`), so a large slice with
a small mask costs little; regions larger than ``tile_size`` are solved on blended
tiles. Pixels outside the mask are bit-identical; the input is never modified.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ...core.params import EngineParams, ParameterError, param
from ...core.progress import CancelToken, Progress, check_cancelled
from ...core.provenance import make_provenance
from ...core.result import EngineResult
from ...core.stack import cast_to_range
from ...core.tiling import Box, blend_weights, mask_bounding_boxes, tiles_covering
from ...core.validation import InvalidInputError, check_finite_outside, check_image, check_mask
from .._slices import select_slices

#: Radius of the biharmonic stencil: masked pixels closer than this to a box edge
#: see a truncated stencil, so boxes need at least this much known context.
BIHARMONIC_RADIUS = 2


@dataclass(frozen=True)
class BiharmonicParams(EngineParams):
    """Parameters of :func:`run_biharmonic`."""

    tile_size: int = param(
        256,
        help="largest box side solved in one piece; larger masked regions are solved on "
        "overlapping tiles of this size, seams fixed by a coarse solve, then blended",
        min=32,
        max=8192,
        step=32,
        label="tile size (px)",
    )
    context: int = param(
        16,
        help="known pixels kept around each masked region as its boundary condition",
        min=BIHARMONIC_RADIUS,
        max=1024,
        label="context (px)",
    )

    def check(self) -> None:
        if self.tile_size < 2 * self.context + 16:
            raise ParameterError(
                "tile_size",
                f"({self.tile_size}) must be at least 2 * context + 16 = "
                f"{2 * self.context + 16} so a tile has room for masked pixels besides its "
                "context; raise tile_size or lower context",
            )


def _coarse_fill(data: np.ndarray, mask: np.ndarray, box: Box, target: int) -> np.ndarray:
    """A cheap approximate fill of a box's masked pixels from a low-resolution biharmonic solve.

    The box plus a margin of known pixels is block-averaged by an integer factor
    so its longer side is at most ``target`` (a block counts as known only when
    all its pixels are), inpainted at that resolution, and upsampled bilinearly.

    Returns
    -------
    numpy.ndarray
        float64 crop of ``box`` with its masked pixels filled approximately.
    """
    from skimage.restoration import inpaint_biharmonic
    from skimage.transform import resize

    factor = max(2, math.ceil(max(box.shape) / target))
    margin = (BIHARMONIC_RADIUS + 1) * factor  # the coarse stencil needs 2 known blocks
    y0, x0 = max(0, box.y0 - margin), max(0, box.x0 - margin)
    y1, x1 = min(data.shape[0], box.y1 + margin), min(data.shape[1], box.x1 + margin)
    values = data[y0:y1, x0:x1].astype(np.float64)
    region_mask = mask[y0:y1, x0:x1]
    rows, cols = values.shape
    pad = ((0, -rows % factor), (0, -cols % factor))
    padded = np.pad(values, pad, mode="edge")
    known = np.pad(~region_mask, pad, mode="edge")
    blocks = (padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    coarse = padded.reshape(blocks).mean(axis=(1, 3))
    coarse_mask = ~known.reshape(blocks).all(axis=(1, 3))
    if coarse_mask.all():  # no fully known block: fall back to blocks with any known pixel
        counts = known.reshape(blocks).sum(axis=(1, 3))
        coarse = np.where(known, padded, 0.0).reshape(blocks).sum(axis=(1, 3))
        coarse = coarse / np.maximum(counts, 1)
        coarse_mask = counts == 0
    coarse = inpaint_biharmonic(coarse, coarse_mask)
    upsampled = resize(
        coarse, padded.shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True
    )[:rows, :cols]
    values[region_mask] = upsampled[region_mask]
    inner = Box(box.y0 - y0, box.y1 - y0, box.x0 - x0, box.x1 - x0)
    return values[inner.slices]


def _seam_band(tile: Box, crop_shape: tuple[int, int]) -> np.ndarray:
    """Pixels of ``tile`` within the stencil radius of an edge that lies inside the crop."""
    band = np.zeros(tile.shape, dtype=bool)
    r = BIHARMONIC_RADIUS
    if tile.y0 > 0:
        band[:r] = True
    if tile.y1 < crop_shape[0]:
        band[-r:] = True
    if tile.x0 > 0:
        band[:, :r] = True
    if tile.x1 < crop_shape[1]:
        band[:, -r:] = True
    return band


def _inpaint_large_box(
    data: np.ndarray,
    slice_mask: np.ndarray,
    box: Box,
    params: BiharmonicParams,
    cancel: CancelToken | None,
) -> tuple[np.ndarray, int]:
    """Inpaint a crop larger than ``tile_size`` on overlapping, blended tiles.

    Each tile is solved with the known pixels as boundary condition plus, on
    its seams inside the crop, Dirichlet values from :func:`_coarse_fill`
    (a tile deep inside a big region may hold no known pixel at all). Seam
    pixels get zero weight in their own tile; the neighbour tile, which
    overlaps by ``2 * context`` pixels, provides them.

    Returns
    -------
    tuple
        The filled crop (float64) and the number of tile solves.
    """
    from skimage.restoration import inpaint_biharmonic

    tile_size, overlap = params.tile_size, 2 * params.context
    crop = data[box.slices].astype(np.float64)
    mask = np.array(slice_mask[box.slices], dtype=bool)
    coarse = _coarse_fill(data, slice_mask, box, tile_size)
    accumulated = np.zeros(crop.shape, dtype=np.float64)
    weights = np.zeros(crop.shape, dtype=np.float64)
    n_solves = 0
    for tile in tiles_covering(crop.shape, tile_size, overlap):
        tile_mask = mask[tile.slices]
        band = _seam_band(tile, crop.shape)
        solve_mask = tile_mask & ~band
        if not solve_mask.any():
            continue
        check_cancelled(cancel)
        values = crop[tile.slices].copy()
        seam = tile_mask & band
        values[seam] = coarse[tile.slices][seam]
        filled = inpaint_biharmonic(values, solve_mask)
        weight = blend_weights(tile.shape, overlap).astype(np.float64)
        weight[band] = 0.0
        accumulated[tile.slices] += weight * filled
        weights[tile.slices] += weight
        n_solves += 1
    if not (weights[mask] > 0).all():  # guaranteed by the tile_size check in BiharmonicParams
        raise RuntimeError("internal error: a masked pixel was not covered by any tile core")
    result = crop.copy()
    result[mask] = accumulated[mask] / weights[mask]
    return result, n_solves


def _inpaint_slice(
    data: np.ndarray, mask: np.ndarray, params: BiharmonicParams, cancel: CancelToken | None
) -> tuple[list[tuple[Box, np.ndarray, np.ndarray]], int, int]:
    """Biharmonic fill of one slice, box by box.

    Returns
    -------
    tuple
        ``(fills, n_boxes, n_tiled)``: for each box the box, its mask and the
        float64 values of its masked pixels; the number of boxes; and how many
        of them were larger than ``tile_size`` and solved on tiles.
    """
    from skimage.restoration import inpaint_biharmonic

    fills = []
    n_tiled = 0
    boxes = mask_bounding_boxes(mask, context=params.context)
    for box in boxes:
        check_cancelled(cancel)
        crop = data[box.slices].astype(np.float64)
        box_mask = np.array(mask[box.slices], dtype=bool)  # writable: skimage needs it
        if max(box.shape) <= params.tile_size:
            filled = inpaint_biharmonic(crop, box_mask)
        else:
            filled, _ = _inpaint_large_box(data, mask, box, params, cancel)
            n_tiled += 1
        fills.append((box, box_mask, filled[box_mask]))
    return fills, len(boxes), n_tiled


def run_biharmonic(
    image,
    mask,
    params: BiharmonicParams = BiharmonicParams(),  # noqa: B008 - frozen dataclass, immutable
    *,
    slices=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Fill masked pixels with a biharmonic (smooth) continuation of their surroundings.

    Works slice by slice on a 2D slice or a 3D volume (Z, Y, X). Within a slice
    only boxes around the masked regions are solved (the known pixels in
    ``params.context`` around a region are its boundary condition), so a large
    slice with a small mask costs little. The computation is in float64; the
    result is rounded (integer dtypes), clipped to the input's own
    ``[min, max]`` and cast back to the input dtype. Pixels outside the mask are
    bit-identical to the input, which is never modified. Slices with an empty
    mask are skipped.

    Parameters
    ----------
    image : array-like
        2D slice or 3D volume (uint8, uint16, int16 or float32).
    mask : array-like
        Non-zero where pixels are to be filled; same shape as ``image``, or one
        2D slice's shape for a volume (then used on every slice).
    params : BiharmonicParams
        Box size and context.
    slices : sequence of int, optional
        Slices of a volume to fill (default: all); masked pixels of other slices
        keep their input values.
    cancel : CancelToken, optional
        Checked before each slice and each box.

    Yields
    ------
    Progress
        One event per slice (``"inpaint slice 3/10"``).

    Returns
    -------
    EngineResult
        ``data`` is the filled copy. Provenance engine ``"inpaint-biharmonic"``
        with the masked pixel count, boxes per slice and skipped slices.

    Raises
    ------
    InvalidInputError
        Empty mask, mask shape mismatch, NaN/inf outside the mask of the processed
        slices (inside it they are replaced like any masked pixel), RGB or
        unsupported dtype, or a slice that is masked entirely (nothing to continue from).
    Cancelled
        When ``cancel`` is set; nothing is returned.
    """
    array = check_image(image, name="image", finite=False)
    boolean = check_mask(mask, array.shape, name="mask")
    volume = array[np.newaxis] if array.ndim == 2 else array
    masks = boolean[np.newaxis] if boolean.ndim == 2 else boolean
    n_slices = volume.shape[0]
    chosen = select_slices(n_slices, slices)
    nonfinite_masked = 0
    if np.issubdtype(array.dtype, np.floating):  # NaN/inf may only sit where pixels are filled
        replaced = np.zeros(masks.shape, dtype=bool)
        replaced[sorted(chosen)] = masks[sorted(chosen)]
        nonfinite_masked = check_finite_outside(volume, replaced)
    fully_masked = [z for z in chosen if masks[z].all()]
    if fully_masked:
        raise InvalidInputError(
            f"slice(s) {fully_masked} are masked entirely: biharmonic inpainting needs "
            "known pixels around the masked region; shrink the mask"
        )
    known = volume[~replaced] if nonfinite_masked else array
    low, high = float(known.min()), float(known.max())
    out = np.array(volume, copy=True)
    boxes_per_slice: list[int] = []
    tiled_per_slice: list[int] = []
    skipped: list[int] = []
    for z in range(n_slices):
        check_cancelled(cancel)
        slice_mask = masks[z]
        if z in chosen and slice_mask.any():
            fills, n_boxes, n_tiled = _inpaint_slice(volume[z], slice_mask, params, cancel)
            target = out[z]
            for box, box_mask, values in fills:
                region = target[box.slices]
                region[box_mask] = cast_to_range(values, array.dtype, low, high)
        else:
            n_boxes = n_tiled = 0
            skipped.append(z)
        boxes_per_slice.append(n_boxes)
        tiled_per_slice.append(n_tiled)
        yield Progress(z + 1, n_slices, f"inpaint slice {z + 1}/{n_slices}")

    data = out[0] if array.ndim == 2 else out
    provenance = make_provenance(
        "inpaint-biharmonic",
        params,
        source={"shape": array.shape, "dtype": array.dtype.name},
        extra={
            "masked_pixels": int(sum(np.count_nonzero(masks[z]) for z in chosen)),
            "slices": None if slices is None else sorted(chosen),
            "boxes_per_slice": boxes_per_slice,
            "n_boxes": int(sum(boxes_per_slice)),
            "tiled_boxes_per_slice": tiled_per_slice,
            "skipped_slices": skipped,
            "output_range": [low, high],
        },
    )
    return EngineResult(data=data, provenance=provenance)
