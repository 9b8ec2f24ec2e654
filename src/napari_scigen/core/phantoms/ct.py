"""Simulated parallel-beam CT acquisition and reconstruction of a phase map.

Each slice is scanned as follows:

1. line integrals (Radon transform) at ``n_angles`` angles over 180 degrees,
2. a small Gaussian detector blur,
3. transmitted intensity with Poisson photon noise (``photon_count`` photons per
   detector pixel in the flat field),
4. optionally a few miscalibrated detector pixels whose gain error is the same at every
   angle: after reconstruction each one draws a **ring** around the rotation centre of
   radius equal to its distance from the centre of the detector (as in real scans),
5. ``-log`` flat-field normalisation and filtered back projection (ramp filter).

The same acquisition without noise and detector errors gives ``Phantom.clean``.

The projector is a vectorised equivalent of :func:`skimage.transform.radon` /
:func:`skimage.transform.iradon` (same geometry, angle and detector conventions and
ramp filter; see ``tests/test_phantoms.py``): it processes all slices of a volume in one
sparse matrix product per block of angles, about 20 times faster than calling the
scikit-image functions slice by slice.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft as sp_fft
from scipy import sparse
from scipy.ndimage import gaussian_filter1d

from napari_scigen.core.validation import InvalidInputError

from .common import (
    INTENSITY_OFFSET,
    INTENSITY_PER_ATTENUATION,
    Phantom,
    _radius_map,
    _reconstruction_circle,
    _sample_radius,
    to_uint16,
)

#: Angles projected per sparse matrix (about 26 MB of weights for 256 x 256 slices).
_ANGLE_BLOCK = 32
#: Half-width in pixels of the annulus marked around each ring radius in ``ring_mask``.
RING_HALF_WIDTH_PX = 1.0
#: Smallest distance in pixels between two ring radii.
RING_SPACING_PX = 3
#: Relative gain error range of a miscalibrated detector pixel (random sign).
_GAIN_ERROR_RANGE = (0.04, 0.10)


def _scan(
    labels, *, attenuation, phase_names, parameters, ring_artifacts, detector_rng, noise_rng
) -> Phantom:
    """Shared CT simulation: labels -> attenuation -> noisy/clean reconstructions -> Phantom."""
    z, n, _ = labels.shape
    lookup = np.array([attenuation[k] for k in range(max(attenuation) + 1)], dtype=np.float32)
    mu = lookup[labels]
    offsets, gains = _bad_detectors(
        n, z, parameters["n_bad_detectors"] if ring_artifacts else 0, detector_rng
    )
    measured, clean = _simulate_ct(
        mu,
        n_angles=parameters["n_angles"],
        photon_count=parameters["photon_count"],
        detector_gains=gains,
        detector_blur_px=parameters["detector_blur_px"],
        noise_rng=noise_rng,
    )
    ring_radii = sorted(abs(int(d)) for d in offsets)
    parameters = dict(parameters)
    parameters["derived"] = {
        "ring_radii_px": ring_radii,
        "bad_detector_offsets_px": [int(d) for d in offsets],
        "sample_radius_px": _sample_radius(n),
        "reconstruction_radius_px": n // 2 - 1,
        "attenuation_per_voxel": {
            phase_names[k]: float(v) for k, v in attenuation.items() if k in phase_names
        },
        "intensity_mapping": f"uint16 = clip(round({INTENSITY_OFFSET} + {INTENSITY_PER_ATTENUATION:g} * mu))",
        "outside_reconstruction_value": INTENSITY_OFFSET,
    }
    size = parameters["voxel_size_um"]
    return Phantom(
        volume=measured,
        labels=labels,
        phase_names=dict(phase_names),
        voxel_size=(size, size, size),
        unit="um",
        clean=clean,
        ring_mask=_ring_mask(n, ring_radii),
        parameters=parameters,
    )


def _bad_detectors(n: int, z: int, count: int, rng: np.random.Generator):
    """Offsets (from the detector centre) and per-slice gains of miscalibrated pixels.

    Offsets lie within the sample radius, at least 4 pixels from the centre and at
    distinct radii at least ``RING_SPACING_PX`` apart, so each ring is separate. Returns
    ``(offsets, gains)`` with ``gains`` of shape (Z, n) or None when ``count`` is 0.
    """
    if count == 0:
        return np.zeros(0, dtype=int), None
    # Candidate radii RING_SPACING_PX apart (random common offset) inside the sample.
    first = 4 + int(rng.integers(RING_SPACING_PX))
    slots = np.arange(first, int(_sample_radius(n)), RING_SPACING_PX)
    if count > len(slots):
        raise InvalidInputError(
            f"n_bad_detectors={count} rings do not fit {n}-pixel slices "
            f"({RING_SPACING_PX} pixels apart inside the sample); use at most {len(slots)}"
        )
    radii = np.sort(rng.choice(slots, size=count, replace=False))
    signs = rng.choice([-1, 1], size=count)
    offsets = radii * signs
    errors = rng.uniform(*_GAIN_ERROR_RANGE, size=count) * rng.choice([-1.0, 1.0], size=count)
    # The error of one pixel varies a little from detector row to row (slice to slice).
    per_slice = rng.uniform(0.7, 1.3, size=(z, count))
    gains = np.ones((z, n), dtype=np.float32)
    gains[:, offsets + n // 2] = 1.0 + errors[None, :] * per_slice
    return offsets, gains


def _ring_mask(n: int, ring_radii) -> np.ndarray:
    """Annuli of half-width ``RING_HALF_WIDTH_PX`` at each ring radius."""
    radius = _radius_map(n)
    mask = np.zeros((n, n), dtype=bool)
    for ring in ring_radii:
        mask |= np.abs(radius - ring) <= RING_HALF_WIDTH_PX
    return mask


def _ramp_filter(padded_size: int) -> np.ndarray:
    """Ramp filter for ``rfft`` of length ``padded_size`` (Kak & Slaney eq. 61, as skimage)."""
    n = np.concatenate(
        (
            np.arange(1, padded_size / 2 + 1, 2, dtype=int),
            np.arange(padded_size / 2 - 1, 0, -2, dtype=int),
        )
    )
    kernel = np.zeros(padded_size)
    kernel[0] = 0.25
    kernel[1::2] = -1 / (np.pi * n) ** 2
    return (2 * np.real(np.fft.fft(kernel)))[: padded_size // 2 + 1].astype(np.float32)


def _projection_matrix(
    n: int, angles_rad: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> sparse.csr_matrix:
    """Pixel-to-detector weights for one block of angles, shape (pixels, angles * n).

    Detector coordinate of a pixel: ``t = (col - c) cos(theta) - (row - c) sin(theta)``
    with ``c = n // 2`` (the convention of :func:`skimage.transform.iradon`). Each pixel
    projects as a box of width ``max(|cos|, |sin|)`` (distance-driven footprint, area
    preserving), which overlaps at most two detector bins. Its transpose is the forward
    projector; the matrix itself is the back projector (linear interpolation at 0 and
    90 degrees, like skimage).
    """
    c = n // 2
    count = len(angles_rad)
    cos = np.cos(angles_rad).astype(np.float32)
    sin = np.sin(angles_rad).astype(np.float32)
    width = np.maximum(np.abs(cos), np.abs(sin))
    # Footprint start on the detector, plus half a bin so that floor() gives its bin.
    start = np.multiply.outer((cols - c).astype(np.float32), cos)
    start -= np.multiply.outer((rows - c).astype(np.float32), sin)
    start += np.float32(c + 0.5) - width / 2
    first_bin = np.floor(start)
    weights = np.empty((len(rows), count, 2), dtype=np.float32)
    np.subtract(first_bin + 1, start, out=weights[..., 0])
    weights[..., 0] /= width
    np.clip(weights[..., 0], 0.0, 1.0, out=weights[..., 0])
    np.subtract(1.0, weights[..., 0], out=weights[..., 1])
    del start
    indices = np.empty((len(rows), count, 2), dtype=np.int32)
    indices[..., 0] = first_bin
    del first_bin
    np.minimum(indices[..., 0] + 1, n - 1, out=indices[..., 1])
    indices += (np.arange(count, dtype=np.int32) * n)[None, :, None]
    per_row = 2 * count
    indptr = np.arange(0, len(rows) * per_row + 1, per_row, dtype=np.int64)
    return sparse.csr_matrix(
        (weights.ravel(), indices.ravel(), indptr), shape=(len(rows), count * n)
    )


def _measure(line_integrals, photon_count, gains, rng):
    """Detected line integrals: Poisson photon noise, detector gain errors, ``-log``."""
    if photon_count is None:
        measured = line_integrals.copy()
        if gains is not None:
            measured -= np.log(gains)[:, None, :]
        return measured
    expected = photon_count * np.exp(-line_integrals.astype(np.float64))
    counts = rng.poisson(expected).astype(np.float64)
    if gains is not None:
        counts *= gains[:, None, :]
    return (-np.log(np.maximum(counts, 0.5) / photon_count)).astype(np.float32)


def _simulate_ct(mu, *, n_angles, photon_count, detector_gains, detector_blur_px, noise_rng):
    """Parallel-beam scan of every slice of ``mu``; returns (measured, clean) uint16 volumes."""
    z, n, _ = mu.shape
    inside = _reconstruction_circle(n)
    rows, cols = np.nonzero(inside)
    pixels = np.ascontiguousarray(mu[:, rows, cols].T)  # (pixels, Z)
    angles = np.linspace(0.0, np.pi, n_angles, endpoint=False)
    padded = max(64, 2 ** math.ceil(math.log2(2 * n)))
    ramp = _ramp_filter(padded)
    reconstruction = np.zeros((len(rows), 2 * z), dtype=np.float32)
    for start in range(0, n_angles, _ANGLE_BLOCK):
        block = angles[start : start + _ANGLE_BLOCK]
        matrix = _projection_matrix(n, block, rows, cols)
        ideal = np.asarray(matrix.T @ pixels).T.reshape(z, len(block), n)
        if detector_blur_px > 0:
            ideal = gaussian_filter1d(ideal, detector_blur_px, axis=-1, mode="nearest")
        measured = _measure(ideal, photon_count, detector_gains, noise_rng)
        both = np.concatenate([measured, ideal], axis=0)
        spectrum = sp_fft.rfft(both, n=padded, axis=-1, workers=1) * ramp
        filtered = sp_fft.irfft(spectrum, n=padded, axis=-1, workers=1)[..., :n]
        columns = np.ascontiguousarray(filtered.reshape(2 * z, -1).T, dtype=np.float32)
        reconstruction += matrix @ columns
    reconstruction *= np.float32(np.pi / (2 * n_angles))
    volumes = []
    for part in (reconstruction[:, :z], reconstruction[:, z:]):
        volume = np.full((z, n, n), INTENSITY_OFFSET, dtype=np.uint16)
        volume[:, rows, cols] = to_uint16(part.T)
        volumes.append(volume)
    return volumes[0], volumes[1]
