"""Training masks shaped like the user's: copies of its regions, discs, rings and strokes.

The learned inpainting engine trains on known voxels hidden by masks that look like the
one it must fill. :class:`MaskShapes` describes the user's mask by its 3D connected
regions (each cut to at most the crop size) and draws, at random, either a copy of one
of them (flipped and rotated in-plane) or a disc, ring or stroke of a similar size and
depth. NumPy and SciPy only.
"""

from __future__ import annotations

import numpy as np

#: Share of training masks that are copies of the user's own regions.
COPY_FRACTION = 0.6


class MaskShapes:
    """The regions of a user's mask and random masks like them.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(Z, Y, X)`` bool, True where the user's mask is.
    side : int
        Training crop side: regions are cut to ``side x side`` in-plane.
    max_regions : int
        At most this many regions are kept (the largest).
    """

    def __init__(self, mask: np.ndarray, side: int, max_regions: int = 32) -> None:
        from scipy import ndimage

        labels, count = ndimage.label(mask)
        boxes = ndimage.find_objects(labels)
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1)) if count else []
        order = np.argsort(sizes)[::-1][:max_regions] if count else []
        self.side = int(side)
        self.regions: list[np.ndarray] = []
        for index in order:
            box = boxes[int(index)]
            region = labels[box] == int(index) + 1
            self.regions.append(region)
        depths = [r.shape[0] for r in self.regions] or [1]
        widths = [min(r.shape[1], r.shape[2]) for r in self.regions] or [side // 3]
        self.depth = int(np.median(depths))
        self.radius = max(2.0, float(np.median(widths)) / 2)
        areas = [r.sum(axis=(1, 2)).max() for r in self.regions] or [1]
        perimeters = [_perimeter(r[r.shape[0] // 2]) for r in self.regions] or [1]
        self.thin = bool(np.median(np.array(areas) / np.maximum(perimeters, 1)) < 1.5)

    def draw(self, rng: np.random.Generator, depth: int) -> np.ndarray:
        """A random mask ``(d, side, side)`` (``d <= depth``), not empty."""
        if self.regions and rng.random() < COPY_FRACTION:
            shape = self._copy(rng)
        else:
            kind = ("ring", "stroke", "disc")[int(rng.integers(3))]
            if self.thin and kind == "disc":
                kind = "ring"
            shape = getattr(self, f"_{kind}")(rng)
        shape = shape[: max(1, depth)]
        if not shape.any():
            shape[shape.shape[0] // 2, self.side // 2, self.side // 2] = True
        return shape

    def _copy(self, rng) -> np.ndarray:
        region = self.regions[int(rng.integers(len(self.regions)))]
        k = int(rng.integers(4))
        region = np.rot90(region, k, axes=(1, 2))
        if rng.random() < 0.5:
            region = region[:, :, ::-1]
        depth, height, width = region.shape
        out = np.zeros((depth, self.side, self.side), dtype=bool)
        top = int(rng.integers(0, max(1, height - self.side) + 1))
        left = int(rng.integers(0, max(1, width - self.side) + 1))
        cut = region[:, top : top + self.side, left : left + self.side]
        y0 = int(rng.integers(0, self.side - cut.shape[1] + 1))
        x0 = int(rng.integers(0, self.side - cut.shape[2] + 1))
        out[:, y0 : y0 + cut.shape[1], x0 : x0 + cut.shape[2]] = cut
        return out

    def _grid(self):
        yy, xx = np.mgrid[: self.side, : self.side]
        return yy - (self.side - 1) / 2, xx - (self.side - 1) / 2

    def _depth(self, rng) -> int:
        return max(1, int(round(self.depth * rng.uniform(0.5, 1.5))))

    def _disc(self, rng) -> np.ndarray:
        yy, xx = self._grid()
        radius = min(self.side / 2 - 2, self.radius * rng.uniform(0.5, 1.3))
        cy, cx = rng.uniform(-0.2, 0.2, 2) * self.side
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        return np.repeat(disc[None], self._depth(rng), axis=0)

    def _ring(self, rng) -> np.ndarray:
        yy, xx = self._grid()
        radius = rng.uniform(0.2, 0.5) * self.side
        width = rng.uniform(1.0, 3.0) if self.thin else rng.uniform(2.0, max(2.5, self.radius / 2))
        cy, cx = rng.uniform(-0.5, 0.5, 2) * self.side
        distance = np.hypot(yy - cy, xx - cx)
        ring = np.abs(distance - radius) <= width / 2
        return np.repeat(ring[None], self._depth(rng), axis=0)

    def _stroke(self, rng) -> np.ndarray:
        from scipy import ndimage

        plane = np.zeros((self.side, self.side), dtype=bool)
        point = rng.uniform(0.2, 0.8, 2) * self.side
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(8, 24))):
            angle += rng.normal(0, 0.5)
            step = np.array([np.sin(angle), np.cos(angle)]) * 2.0
            for _ in range(3):
                point = np.clip(point + step / 3, 0, self.side - 1)
                plane[int(point[0]), int(point[1])] = True
        width = rng.uniform(1.0, 3.0) if self.thin else rng.uniform(2.0, max(2.5, self.radius / 2))
        plane = ndimage.binary_dilation(plane, iterations=max(1, int(round(width / 2))))
        return np.repeat(plane[None], self._depth(rng), axis=0)


def _perimeter(plane: np.ndarray) -> int:
    """Boundary pixels of a 2D region (4-neighbourhood)."""
    from scipy import ndimage

    return int((plane & ~ndimage.binary_erosion(plane)).sum())
