"""Boxes around masked regions, overlapping tiles and blending weights for 2D slices.

Engines that only need to touch the masked part of a large slice (biharmonic
inpainting here, the diffusion engines later) work on boxes: the bounding boxes
of the connected masked regions, grown by some context so the known pixels
around a region act as its boundary condition, merged when they overlap, and
split into overlapping tiles when they are too big. Overlapping tiles are put
back together with :func:`blend_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


@dataclass(frozen=True)
class Box:
    """A half-open rectangle ``[y0, y1) x [x0, x1)`` on a 2D slice.

    Parameters
    ----------
    y0, y1 : int
        First row and one past the last row.
    x0, x1 : int
        First column and one past the last column.
    """

    y0: int
    y1: int
    x0: int
    x1: int

    def __post_init__(self) -> None:
        if not (0 <= self.y0 < self.y1 and 0 <= self.x0 < self.x1):
            raise ValueError(
                f"a Box needs 0 <= y0 < y1 and 0 <= x0 < x1, got "
                f"y {self.y0}..{self.y1}, x {self.x0}..{self.x1}"
            )

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(slice(y0, y1), slice(x0, x1))`` to index a slice with."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.y1 - self.y0, self.x1 - self.x0

    def overlaps(self, other: Box) -> bool:
        """Whether the two boxes share at least one pixel."""
        return (
            self.y0 < other.y1 and other.y0 < self.y1 and self.x0 < other.x1 and other.x0 < self.x1
        )

    def union(self, other: Box) -> Box:
        """The smallest box containing both."""
        return Box(
            min(self.y0, other.y0),
            max(self.y1, other.y1),
            min(self.x0, other.x0),
            max(self.x1, other.x1),
        )

    def offset(self, dy: int, dx: int) -> Box:
        """The same box moved by ``(dy, dx)``."""
        return Box(self.y0 + dy, self.y1 + dy, self.x0 + dx, self.x1 + dx)


def _check_shape(shape) -> tuple[int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be a 2D slice shape (rows, cols) >= 1, got {shape}")
    return shape


def _axis_starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile + 1, step))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


def tiles_covering(shape: tuple[int, int], tile: int, overlap: int) -> list[Box]:
    """Overlapping tiles that together cover every pixel of a slice.

    Tiles are ``tile`` pixels on a side (smaller only where the slice itself is
    smaller), neighbours overlap by at least ``overlap`` pixels, and the last
    tile of each row and column is flush with the slice edge (so that one may
    overlap its neighbour by more than ``overlap``).

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the slice.
    tile : int
        Tile side in pixels (``>= 1``).
    overlap : int
        Minimum overlap between neighbouring tiles, ``0 <= overlap < tile``.

    Returns
    -------
    list of Box
        Tiles in row-major order.
    """
    rows, cols = _check_shape(shape)
    if int(tile) < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if not 0 <= int(overlap) < int(tile):
        raise ValueError(f"overlap must satisfy 0 <= overlap < tile ({tile}), got {overlap}")
    tile, overlap = int(tile), int(overlap)
    return [
        Box(y, min(y + tile, rows), x, min(x + tile, cols))
        for y in _axis_starts(rows, tile, overlap)
        for x in _axis_starts(cols, tile, overlap)
    ]


def blend_weights(shape: tuple[int, int], ramp: int) -> np.ndarray:
    """Separable linear-ramp weights for blending overlapping tiles.

    The weight rises linearly over ``ramp`` pixels from each edge,
    ``w(i) = min(1, (i + 1) / (ramp + 1), (n - i) / (ramp + 1))`` per axis, and
    the 2D weight is the outer product. Weights are strictly positive, so a
    pixel covered by a single tile keeps that tile's value after dividing by
    the summed weights.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the tile.
    ramp : int
        Ramp length in pixels (``0`` gives uniform weights).

    Returns
    -------
    numpy.ndarray
        float32 weights in ``(0, 1]`` with ``shape``.
    """
    rows, cols = _check_shape(shape)
    if int(ramp) < 0:
        raise ValueError(f"ramp must be >= 0, got {ramp}")
    ramp = int(ramp)

    def profile(n: int) -> np.ndarray:
        i = np.arange(n, dtype=np.float64)
        return np.minimum(1.0, np.minimum(i + 1, n - i) / (ramp + 1))

    return np.outer(profile(rows), profile(cols)).astype(np.float32)


def _grow_to(lo: int, hi: int, size: int, limit: int) -> tuple[int, int]:
    """Grow ``[lo, hi)`` to ``size`` around its centre, shifted to stay in ``[0, limit)``."""
    if hi - lo >= size:
        return lo, hi
    size = min(size, limit)
    lo = max(0, (lo + hi - size) // 2)
    hi = lo + size
    if hi > limit:
        hi, lo = limit, limit - size
    return lo, hi


#: Up to this many boxes are merged pairwise (an n x n overlap test); more are
#: first merged by rasterizing them (see ``_rasterized_merge``).
_MAX_PAIRWISE_MERGE = 2048


def _rasterized_merge(boxes: list[Box]) -> list[Box]:
    """Merge many boxes at once: bounding boxes of the 4-connected union of their pixels.

    Overlapping boxes end up together; boxes that only touch may be merged too.
    """
    rows = max(b.y1 for b in boxes)
    cols = max(b.x1 for b in boxes)
    corners = np.zeros((rows + 1, cols + 1), dtype=np.int32)
    arr = np.array([(b.y0, b.y1, b.x0, b.x1) for b in boxes])
    np.add.at(corners, (arr[:, 0], arr[:, 2]), 1)
    np.add.at(corners, (arr[:, 0], arr[:, 3]), -1)
    np.add.at(corners, (arr[:, 1], arr[:, 2]), -1)
    np.add.at(corners, (arr[:, 1], arr[:, 3]), 1)
    covered = corners.cumsum(axis=0).cumsum(axis=1)[:rows, :cols] > 0
    labels, _ = ndi.label(covered)
    return [Box(sy.start, sy.stop, sx.start, sx.stop) for sy, sx in ndi.find_objects(labels)]


def _merge_overlapping(boxes: list[Box]) -> list[Box]:
    """Repeatedly merge boxes that share pixels until none do."""
    boxes = list(boxes)
    while len(boxes) > _MAX_PAIRWISE_MERGE:
        merged = _rasterized_merge(boxes)
        if len(merged) == len(boxes):
            # every connected component is a single box: no two boxes share a pixel
            return merged
        boxes = merged
    while len(boxes) > 1:
        arr = np.array([(b.y0, b.y1, b.x0, b.x1) for b in boxes])
        hit = (
            (arr[:, None, 0] < arr[None, :, 1])
            & (arr[None, :, 0] < arr[:, None, 1])
            & (arr[:, None, 2] < arr[None, :, 3])
            & (arr[None, :, 2] < arr[:, None, 3])
        )
        np.fill_diagonal(hit, False)
        if not hit.any():
            break
        # one union box per connected group of the overlap graph
        n_groups, group = _connected_groups(hit)
        grouped: list[Box | None] = [None] * n_groups
        for box, g in zip(boxes, group, strict=True):
            grouped[g] = box if grouped[g] is None else grouped[g].union(box)
        boxes = [b for b in grouped if b is not None]
    return boxes


def _connected_groups(adjacency: np.ndarray) -> tuple[int, np.ndarray]:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    return connected_components(csr_matrix(adjacency), directed=False)


def mask_bounding_boxes(
    mask2d: np.ndarray,
    *,
    context: int = 0,
    min_size: int | None = None,
    max_size: int | None = None,
    shape: tuple[int, int] | None = None,
    overlap: int | None = None,
) -> list[Box]:
    """Boxes around the connected masked regions of a slice.

    1. The bounding box of each 8-connected masked region is grown by
       ``context`` pixels on every side and clipped to the slice.
    2. Boxes that overlap are merged (repeatedly, until none overlap). With
       thousands of regions (a noisy threshold mask) they are first merged by
       rasterizing, which may also merge boxes that merely touch.
    3. With ``min_size``, boxes smaller than ``min_size`` along an axis are grown
       to it around their centre (shifted to stay inside the slice, capped at
       the slice size), then merged again.
    4. With ``max_size``, boxes larger than ``max_size`` along an axis are split
       into overlapping tiles of at most ``max_size`` (see
       :func:`tiles_covering`); tiles that hold no masked pixel are dropped.
       Tiles of one split box overlap each other; blend them with
       :func:`blend_weights`.

    Parameters
    ----------
    mask2d : numpy.ndarray
        2D mask; non-zero means masked.
    context : int
        Pixels of surrounding context added around each region (``>= 0``).
    min_size : int, optional
        Smallest box side, e.g. the input size of a diffusion model.
    max_size : int, optional
        Largest box side; larger boxes are split into tiles.
    shape : tuple of int, optional
        Slice shape the boxes are clipped to; defaults to ``mask2d.shape`` and
        must equal it when given (a guard for callers passing both).
    overlap : int, optional
        Overlap of the tiles a box larger than ``max_size`` is split into;
        defaults to ``2 * context`` (capped at ``max_size // 2``).

    Returns
    -------
    list of Box
        Boxes sorted by ``(y0, x0)``; empty when nothing is masked.
    """
    mask2d = np.asarray(mask2d)
    if mask2d.ndim != 2:
        raise ValueError(f"mask2d must be 2D, got shape {mask2d.shape}")
    limit = _check_shape(mask2d.shape if shape is None else shape)
    if limit != mask2d.shape:
        raise ValueError(f"shape {limit} does not match the mask shape {mask2d.shape}")
    context = int(context)
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    if min_size is not None and int(min_size) < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    if max_size is not None and int(max_size) < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    if min_size is not None and max_size is not None and int(min_size) > int(max_size):
        raise ValueError(f"min_size ({min_size}) must not exceed max_size ({max_size})")

    masked = mask2d != 0
    if not masked.any():
        return []
    rows, cols = limit
    labels, _ = ndi.label(masked, structure=np.ones((3, 3), dtype=bool))
    boxes = [
        Box(
            max(0, sy.start - context),
            min(rows, sy.stop + context),
            max(0, sx.start - context),
            min(cols, sx.stop + context),
        )
        for sy, sx in ndi.find_objects(labels)
    ]
    boxes = _merge_overlapping(boxes)

    if min_size is not None:
        min_size = int(min_size)
        resized = []
        for box in boxes:
            y0, y1 = _grow_to(box.y0, box.y1, min_size, rows)
            x0, x1 = _grow_to(box.x0, box.x1, min_size, cols)
            resized.append(Box(y0, y1, x0, x1))
        boxes = _merge_overlapping(resized)

    if max_size is not None:
        max_size = int(max_size)
        tile_overlap = min(2 * context, max_size // 2) if overlap is None else int(overlap)
        if not 0 <= tile_overlap < max_size:
            raise ValueError(f"overlap must satisfy 0 <= overlap < max_size, got {tile_overlap}")
        split = []
        for box in boxes:
            if max(box.shape) <= max_size:
                split.append(box)
                continue
            for tile in tiles_covering(box.shape, max_size, tile_overlap):
                tile = tile.offset(box.y0, box.x0)
                if masked[tile.slices].any():
                    split.append(tile)
        boxes = split
    return sorted(boxes, key=lambda b: (b.y0, b.x0, b.y1, b.x1))
