"""The inputs of the inpainting network: smooth fills and the 3D context of a slice.

For a target slice the network sees, as channels (all in network units):

0. a smooth in-plane fill of its masked pixels (normalised Gaussian convolution of the
   known pixels at the smallest scale that reaches them; its residual is predicted);
1. the mask;
2. a *z-line fill*: each masked pixel blended linearly between the nearest known voxels
   above and below it along z (within :data:`Z_WINDOW` slices; the in-plane fill where
   there is none);
3. the distance in slices to those voxels (divided by :data:`Z_WINDOW`, 1 where none);
4. for each of ``k`` neighbouring slices on each side: the slice with its own masked
   pixels smoothly filled, and its mask (beyond the volume: the target's fill, all masked).

NumPy and SciPy only.
"""

from __future__ import annotations

import numpy as np

#: How far (slices) the z-line fill looks for known voxels.
Z_WINDOW = 16
#: Gaussian scales of the smooth fill, small to large (pixels).
FILL_SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


def channel_count(context: int) -> int:
    """Input channels for ``context`` neighbouring slices on each side."""
    return 4 + 4 * int(context)


def smooth_fill(image: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """``image`` with its unknown pixels replaced by a normalised-convolution fill."""
    from scipy import ndimage

    out = np.array(image, dtype=np.float32, copy=True)
    if not unknown.any():
        return out
    known = (~unknown).astype(np.float32)
    if not known.any():
        out[:] = 0.0
        return out
    values = np.where(unknown, 0.0, out).astype(np.float32)
    remaining = unknown.copy()
    for sigma in FILL_SIGMAS:
        weight = ndimage.gaussian_filter(known, sigma, mode="nearest")
        ready = remaining & (weight > 0.05)
        if ready.any():
            total = ndimage.gaussian_filter(values, sigma, mode="nearest")
            out[ready] = total[ready] / weight[ready]
            remaining &= ~ready
        if not remaining.any():
            break
    if remaining.any():
        out[remaining] = float(values.sum() / known.sum())
    return out


def z_line_fill(stack: np.ndarray, unknown: np.ndarray, center: int):
    """Blend of the nearest known voxels along z for slice ``center`` of ``stack``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(values, distance)``: float32 values (NaN where no known voxel is within
        :data:`Z_WINDOW` on either side) and the distance in slices to the nearer one.
    """
    depth = stack.shape[0]
    shape = stack.shape[1:]
    below = np.full(shape, np.nan, np.float32)
    above = np.full(shape, np.nan, np.float32)
    d_below = np.zeros(shape, np.float32)
    d_above = np.zeros(shape, np.float32)
    for offset in range(1, Z_WINDOW + 1):
        for index, value, distance in (
            (center - offset, below, d_below),
            (center + offset, above, d_above),
        ):
            if not 0 <= index < depth:
                continue
            hit = np.isnan(value) & ~unknown[index]
            value[hit] = stack[index][hit]
            distance[hit] = offset
    both = ~np.isnan(below) & ~np.isnan(above)
    t = np.where(both, d_below / np.maximum(d_below + d_above, 1), 0.0)
    values = np.where(both, (1 - t) * below + t * above, np.where(np.isnan(below), above, below))
    nearest = np.where(
        both,
        np.minimum(d_below, d_above),
        np.where(np.isnan(below), np.where(np.isnan(above), Z_WINDOW, d_above), d_below),
    )
    return values.astype(np.float32), nearest.astype(np.float32)


def slice_inputs(stack: np.ndarray, unknown: np.ndarray, center: int, context: int) -> np.ndarray:
    """The network input ``(channels, Y, X)`` for slice ``center`` of a stack."""
    fill = smooth_fill(stack[center], unknown[center])
    along_z, distance = z_line_fill(stack, unknown, center)
    along_z = np.where(np.isnan(along_z), fill, along_z)
    channels = [
        fill,
        unknown[center].astype(np.float32),
        np.where(unknown[center], along_z, fill),
        np.where(unknown[center], np.minimum(distance / Z_WINDOW, 1.0), 0.0),
    ]
    for offset in [*range(-context, 0), *range(1, context + 1)]:
        index = center + offset
        if 0 <= index < stack.shape[0]:
            channels.append(smooth_fill(stack[index], unknown[index]))
            channels.append(unknown[index].astype(np.float32))
        else:
            channels.append(fill)
            channels.append(np.ones_like(fill))
    return np.stack(channels).astype(np.float32)


def window(depth: int, center: int) -> slice:
    """Slices of the volume a target slice's inputs depend on."""
    return slice(max(0, center - Z_WINDOW), min(depth, center + Z_WINDOW + 1))
