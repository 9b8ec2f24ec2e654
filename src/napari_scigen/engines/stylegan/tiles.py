"""Cutting slices into generator-sized tiles and putting tile images back without seams.

A StyleGAN generator makes images of one size (its resolution); slices larger than that
are cut into overlapping tiles (:func:`napari_scigen.core.tiling.tiles_covering`). Tile
images are put back with a *smooth* window: the weight of a tile rises from near 0 at its
edge to 1 with a raised cosine over the overlap (:func:`smooth_weights`), so the blended
slice and its first derivative are continuous across tile borders (a linear ramp has a
kink where it reaches 1). NumPy only.
"""

from __future__ import annotations

import numpy as np


def smooth_weights(shape: tuple[int, int], ramp: int) -> np.ndarray:
    """Separable raised-cosine weights for blending overlapping tiles.

    Per axis, ``w(i) = 0.5 - 0.5 cos(pi * min(1, (i + 1) / (ramp + 1), (n - i) / (ramp + 1)))``:
    strictly positive (a pixel covered by one tile keeps its value after dividing by the
    summed weights), 1 away from the edges, with zero slope where it reaches 1 and near
    the edge. The 2D weight is the outer product.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the tile.
    ramp : int
        Ramp length in pixels (``0``: uniform weights).

    Returns
    -------
    numpy.ndarray
        float64 weights in ``(0, 1]``.
    """

    def profile(n: int) -> np.ndarray:
        i = np.arange(n, dtype=np.float64)
        linear = np.minimum(1.0, np.minimum(i + 1, n - i) / (int(ramp) + 1))
        return 0.5 - 0.5 * np.cos(np.pi * linear)

    return np.outer(profile(int(shape[0])), profile(int(shape[1])))


def tile_stack(unit: np.ndarray, tiles, resolution: int) -> np.ndarray:
    """The tiles of a slice, each mirror-padded to ``resolution`` where the slice is smaller.

    Parameters
    ----------
    unit : numpy.ndarray
        ``(Y, X)`` slice (any scale).
    tiles : sequence of Box
        Tiles covering it.
    resolution : int
        Generator size.

    Returns
    -------
    numpy.ndarray
        float32 ``(len(tiles), resolution, resolution)``.
    """
    out = np.empty((len(tiles), resolution, resolution), np.float32)
    for i, tile in enumerate(tiles):
        crop = unit[tile.slices]
        pad = ((0, resolution - crop.shape[0]), (0, resolution - crop.shape[1]))
        out[i] = np.pad(crop, pad, mode="symmetric") if any(p[1] for p in pad) else crop
    return out


class TileBlender:
    """Blend per-tile images of one slice shape back into whole slices.

    Parameters
    ----------
    tiles : sequence of Box
        Tiles covering the slice.
    shape : tuple of int
        ``(Y, X)`` of the slice.
    overlap : int
        Overlap of neighbouring tiles (the ramp length of the window).
    """

    def __init__(self, tiles, shape: tuple[int, int], overlap: int) -> None:
        self.tiles = list(tiles)
        self.shape = tuple(int(s) for s in shape)
        self.weights = [smooth_weights(tile.shape, overlap) for tile in self.tiles]
        total = np.zeros(self.shape, np.float64)
        for tile, weight in zip(self.tiles, self.weights, strict=True):
            total[tile.slices] += weight
        self.normaliser = 1.0 / total

    def blend(self, tile_images: np.ndarray) -> np.ndarray:
        """``(n_tiles, R, R)`` tile images -> ``(Y, X)`` float64 slice."""
        out = np.zeros(self.shape, np.float64)
        for image, tile, weight in zip(tile_images, self.tiles, self.weights, strict=True):
            h, w = tile.shape
            out[tile.slices] += image[:h, :w] * weight
        return out * self.normaliser
