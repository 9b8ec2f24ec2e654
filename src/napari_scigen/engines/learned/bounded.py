"""Training cost independent of the volume's size: fit on a bounded, seeded sample.

A learned interpolation trains on crops, checks itself on a few held-out kept slices
and decides; none of that needs the whole volume. When the volume holds more than
:data:`MAX_FIT_VOXELS` (2^24, about 256^3: such scans train exactly as before), the fit
runs on a sub-volume of at most that many voxels: at most :data:`MAX_FIT_SIDE` pixels
along y and x, and as many slices as the budget then allows (at least
:data:`MIN_FIT_SLICES`), chosen from the seed (:func:`fit_window`) and read alone from
the input: a lazy TIFF or OME-Zarr volume (dask or zarr array) is never
loaded whole for training. In missing-slice mode the window is centred on a missing
slice drawn from the seed, so that it holds gaps of the job. Only the fill then reads
the whole volume (slab by slab in a batch job).

NumPy only.
"""

from __future__ import annotations

import numpy as np

#: Volumes with at most this many voxels are fitted whole; larger ones on a sample of
#: about this many.
MAX_FIT_VOXELS = 2**24
#: Most pixels along y and along x of the training sample.
MAX_FIT_SIDE = 512
#: Fewest source slices of a sample (when the in-plane size leaves fewer in the budget).
MIN_FIT_SLICES = 16


def _sample_shape(shape) -> tuple[int, int, int] | None:
    """``(slices, height, width)`` of the sample, or None when the volume is in budget."""
    depth, height, width = (int(s) for s in shape)
    if depth * height * width <= MAX_FIT_VOXELS:
        return None
    sy, sx = min(height, MAX_FIT_SIDE), min(width, MAX_FIT_SIDE)
    sz = min(depth, max(MIN_FIT_SLICES, MAX_FIT_VOXELS // (sy * sx)))
    return sz, sy, sx


def fit_window(shape, missing, factor, seed: int) -> tuple[slice, slice, slice] | None:
    """The seeded sub-volume a fit trains on, or None when the volume is within bounds.

    The z range starts and ends on kept slices (missing slices are never at the ends
    of a volume), so it is a valid interpolation job of its own with the same gaps.
    """
    sample = _sample_shape(shape)
    if sample is None:
        return None
    depth, height, width = (int(s) for s in shape)
    sz, sy, sx = sample
    rng = np.random.default_rng([int(seed), 19])
    gone = set() if missing is None else {int(z) for z in missing}
    if sz >= depth:
        z0, z1 = 0, depth
    else:
        if gone:
            centre = sorted(gone)[int(rng.integers(len(gone)))]
            z0 = min(max(0, centre - sz // 2), depth - sz)
        else:
            z0 = int(rng.integers(0, depth - sz + 1))
        z1 = z0 + sz
        while z0 in gone:
            z0 -= 1
        while z1 - 1 in gone:
            z1 += 1
    y0 = int(rng.integers(0, height - sy + 1))
    x0 = int(rng.integers(0, width - sx + 1))
    return slice(z0, z1), slice(y0, y0 + sy), slice(x0, x0 + sx)


def inpaint_window(shape, mask, seed: int) -> tuple[slice, slice, slice] | None:
    """The seeded sub-volume a learned inpainting trains on (None: within bounds).

    Centred on a masked voxel drawn from the seed, so that it holds masks like the
    user's; ``mask`` is 3D or one slice for every slice, a NumPy, zarr or dask array: a
    3D mask is read :data:`MASK_SLAB` slices at a time (twice: to count its voxels, then
    to find the drawn one), never whole.
    """
    sample = _sample_shape(shape)
    if sample is None:
        return None
    depth = int(shape[0])
    rng = np.random.default_rng([int(seed), 23])
    if len(np.shape(mask)) == 2:
        where = np.flatnonzero(np.asarray(mask).reshape(-1))
        if where.size == 0:
            return None
        centre = np.unravel_index(int(where[int(rng.integers(where.size))]), np.shape(mask))
        centre = (int(rng.integers(depth)), *centre)
    else:
        total = sum(np.count_nonzero(slab) for _, slab in _slabs(mask))
        if total == 0:
            return None
        centre = _nth_nonzero(mask, int(rng.integers(total)))
    bounds = []
    for c, n, most in zip(centre, shape, sample, strict=True):
        first = min(max(0, int(c) - most // 2), max(0, int(n) - most))
        bounds.append(slice(first, min(int(n), first + most)))
    return tuple(bounds)


#: Slices of a mask read at a time when a masked voxel is drawn from it.
MASK_SLAB = 16


def _slabs(volume):
    """``(first slice, slab)`` of a (lazy) 3D volume, :data:`MASK_SLAB` slices at a time."""
    for z in range(0, int(np.shape(volume)[0]), MASK_SLAB):
        yield z, read_window(volume, (slice(z, z + MASK_SLAB), slice(None), slice(None)))


def _nth_nonzero(volume, n: int) -> tuple[int, int, int]:
    """Index of the ``n``-th nonzero voxel of ``volume`` in C order, read slab by slab
    (the same voxel as ``np.flatnonzero(volume)[n]``)."""
    seen = 0
    for z, slab in _slabs(volume):
        count = int(np.count_nonzero(slab))
        if seen + count > n:
            flat = int(np.flatnonzero(slab.reshape(-1))[n - seen])
            dz, y, x = np.unravel_index(flat, slab.shape)
            return z + int(dz), int(y), int(x)
        seen += count
    raise IndexError(f"the volume has {seen} nonzero voxels, not {n + 1}")


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


def with_output_range(fitted, volume, value_range=None):
    """``fitted`` with the whole volume's ``(min, max)`` as its output range (for chunks).

    ``value_range`` when the caller measured it already (a batch job's range pass), else
    read slab by slab (:func:`volume_range`).
    """
    low_high = value_range if value_range is not None else volume_range(volume)
    fitted.record["output_range"] = [float(v) for v in low_high]
    return fitted


def describe(window: tuple[slice, slice, slice], shape) -> dict:
    """The sample, for the provenance."""
    return {
        "z": [window[0].start, window[0].stop],
        "y": [window[1].start, window[1].stop],
        "x": [window[2].start, window[2].stop],
        "of_shape": [int(s) for s in shape],
        "why": f"training and self-validation on a sample of about {MAX_FIT_VOXELS:,} voxels "
        "drawn from the seed: their cost does not grow with the volume",
    }
