"""Training cost independent of the volume's size: fit on a bounded, seeded sample.

A learned interpolation trains on crops, checks itself on a few held-out kept slices
and decides; none of that needs the whole volume. When the volume is larger than
:data:`MAX_FIT_SLICES` x :data:`MAX_FIT_SIDE` x :data:`MAX_FIT_SIDE`, the fit runs on a
sub-volume of at most that size, chosen from the seed (:func:`fit_window`) and read
alone from the input: a lazy TIFF or OME-Zarr volume (dask or zarr array) is never
loaded whole for training. In missing-slice mode the window is centred on a missing
slice drawn from the seed, so that it holds gaps of the job. Only the fill then reads
the whole volume (slab by slab in a batch job).

NumPy only.
"""

from __future__ import annotations

import numpy as np

#: Most source slices of the training sample.
MAX_FIT_SLICES = 64
#: Most pixels along y and along x of the training sample.
MAX_FIT_SIDE = 384


def fit_window(shape, missing, factor, seed: int) -> tuple[slice, slice, slice] | None:
    """The seeded sub-volume a fit trains on, or None when the volume is within bounds.

    The z range starts and ends on kept slices (missing slices are never at the ends
    of a volume), so it is a valid interpolation job of its own with the same gaps.
    """
    depth, height, width = (int(s) for s in shape)
    if depth <= MAX_FIT_SLICES and height <= MAX_FIT_SIDE and width <= MAX_FIT_SIDE:
        return None
    rng = np.random.default_rng([int(seed), 19])
    gone = set() if missing is None else {int(z) for z in missing}
    if depth <= MAX_FIT_SLICES:
        z0, z1 = 0, depth
    else:
        if gone:
            centre = sorted(gone)[int(rng.integers(len(gone)))]
            z0 = min(max(0, centre - MAX_FIT_SLICES // 2), depth - MAX_FIT_SLICES)
        else:
            z0 = int(rng.integers(0, depth - MAX_FIT_SLICES + 1))
        z1 = z0 + MAX_FIT_SLICES
        while z0 in gone:
            z0 -= 1
        while z1 - 1 in gone:
            z1 += 1
    y0 = int(rng.integers(0, max(0, height - MAX_FIT_SIDE) + 1))
    x0 = int(rng.integers(0, max(0, width - MAX_FIT_SIDE) + 1))
    return (
        slice(z0, z1),
        slice(y0, min(height, y0 + MAX_FIT_SIDE)),
        slice(x0, min(width, x0 + MAX_FIT_SIDE)),
    )


def inpaint_window(shape, mask, seed: int) -> tuple[slice, slice, slice] | None:
    """The seeded sub-volume a learned inpainting trains on (None: within bounds).

    Centred on a masked voxel drawn from the seed, so that it holds masks like the
    user's; ``mask`` is 3D or one slice for every slice.
    """
    depth, height, width = (int(s) for s in shape)
    if depth <= MAX_FIT_SLICES and height <= MAX_FIT_SIDE and width <= MAX_FIT_SIDE:
        return None
    rng = np.random.default_rng([int(seed), 23])
    mask = np.asarray(mask)
    where = np.flatnonzero(mask.reshape(-1))
    if where.size == 0:
        return None
    centre = np.unravel_index(int(where[int(rng.integers(where.size))]), mask.shape)
    if mask.ndim == 2:
        centre = (int(rng.integers(depth)), *centre)
    bounds = []
    for c, n, most in zip(centre, shape, (MAX_FIT_SLICES, MAX_FIT_SIDE, MAX_FIT_SIDE), strict=True):
        first = min(max(0, int(c) - most // 2), max(0, int(n) - most))
        bounds.append(slice(first, min(int(n), first + most)))
    return tuple(bounds)


def window_missing(window: tuple[slice, slice, slice], missing):
    """The missing slices of the job inside ``window``, relative to its first slice."""
    if missing is None:
        return None
    z = window[0]
    return tuple(int(m) - z.start for m in missing if z.start < int(m) < z.stop - 1)


def read_window(volume, window: tuple[slice, slice, slice]) -> np.ndarray:
    """The sub-volume ``window`` of a NumPy, zarr or dask array (only that part is read)."""
    part = volume[window]
    if hasattr(part, "compute"):
        part = part.compute(scheduler="synchronous")
    return np.asarray(part)


def volume_range(volume, step: int = 16) -> tuple[float, float]:
    """``(min, max)`` of a (lazy) volume, read ``step`` slices at a time."""
    low, high = np.inf, -np.inf
    for z in range(0, int(np.shape(volume)[0]), step):
        part = read_window(volume, (slice(z, z + step), slice(None), slice(None)))
        low, high = min(low, float(part.min())), max(high, float(part.max()))
    return low, high


def describe(window: tuple[slice, slice, slice], shape) -> dict:
    """The sample, for the provenance."""
    return {
        "z": [window[0].start, window[0].stop],
        "y": [window[1].start, window[1].stop],
        "x": [window[2].start, window[2].stop],
        "of_shape": [int(s) for s in shape],
        "why": f"training and self-validation on at most {MAX_FIT_SLICES} x {MAX_FIT_SIDE} x "
        f"{MAX_FIT_SIDE} voxels drawn from the seed: their cost does not grow with the volume",
    }
