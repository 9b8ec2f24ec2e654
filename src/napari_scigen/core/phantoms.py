"""Deterministic synthetic microCT volumes (rock and fibre composite) with ground truth.

Each generator builds a phase map (labels) on the voxel grid, turns it into a map of
linear attenuation, and simulates a parallel-beam CT acquisition slice by slice:

1. line integrals (Radon transform) at ``n_angles`` angles over 180 degrees,
2. a small Gaussian detector blur,
3. transmitted intensity with Poisson photon noise (``photon_count`` photons per
   detector pixel in the flat field),
4. optionally a few miscalibrated detector pixels whose gain error is the same at every
   angle: after reconstruction each one draws a **ring** around the rotation centre of
   radius equal to its distance from the centre of the detector (as in real scans),
5. ``-log`` flat-field normalisation and filtered back projection (ramp filter).

The same acquisition without noise and detector errors gives ``Phantom.clean``, so a
correction method can be scored against what the scanner would have seen without
artifacts (rather than against the ideal phase map, which no scan reaches).

The projector is a vectorised equivalent of :func:`skimage.transform.radon` /
:func:`skimage.transform.iradon` (same geometry, angle and detector conventions and
ramp filter; see ``tests/test_phantoms.py``): it processes all slices of a volume in one
sparse matrix product per block of angles, about 20 times faster than calling the
scikit-image functions slice by slice.

Intensity mapping (fixed, so grey values are comparable across slices, seeds and
volumes): ``uint16 = clip(round(INTENSITY_OFFSET + INTENSITY_PER_ATTENUATION * mu), 0,
65535)`` where ``mu`` is the reconstructed linear attenuation coefficient times the voxel
size (attenuation per voxel, dimensionless). Air reads ``INTENSITY_OFFSET``; pixels
outside the reconstruction circle are set to that air value, like a reconstruction
masked to its field of view.

Nothing is cached: every call returns new, writeable arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import fft as sp_fft
from scipy import sparse
from scipy.ndimage import gaussian_filter1d
from scipy.spatial import cKDTree

from napari_scigen.core.validation import InvalidInputError

#: uint16 value of zero attenuation (air).
INTENSITY_OFFSET = 8000
#: uint16 counts per unit of attenuation per voxel.
INTENSITY_PER_ATTENUATION = 1.0e6

#: Rock phases (label values).
ROCK_PHASES = {0: "outside sample", 1: "pore", 2: "quartz grain", 3: "dense mineral grain"}
#: Attenuation per voxel of each rock phase (pores are dry, i.e. air).
ROCK_ATTENUATION = {0: 0.0, 1: 0.0, 2: 0.012, 3: 0.030}

#: Fibre composite phases (label values).
FIBRE_PHASES = {0: "outside sample", 1: "matrix (epoxy)", 2: "fibre", 3: "void"}
#: Attenuation per voxel of each fibre composite phase.
FIBRE_ATTENUATION = {0: 0.0, 1: 0.007, 2: 0.013, 3: 0.0}

#: Radius of the cylindrical sample as a fraction of the slice width.
SAMPLE_RADIUS_FRACTION = 0.44
#: Angles projected per sparse matrix (about 26 MB of weights for 256 x 256 slices).
_ANGLE_BLOCK = 32
#: Half-width in pixels of the annulus marked around each ring radius in ``ring_mask``.
RING_HALF_WIDTH_PX = 1.0
#: Smallest distance in pixels between two ring radii.
RING_SPACING_PX = 3
#: Relative gain error range of a miscalibrated detector pixel (random sign).
_GAIN_ERROR_RANGE = (0.04, 0.10)

_FORMAT_VERSION = 1
#: Grain candidates drawn at once by the rock packing.
_GRAIN_BATCH = 256


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic microCT volume with its ground truth.

    Parameters
    ----------
    volume : numpy.ndarray
        Simulated reconstruction, uint16, (Z, Y, X), with noise and (optionally) rings.
    labels : numpy.ndarray
        Ground-truth phase of each voxel, uint8, (Z, Y, X); values are keys of
        ``phase_names``.
    phase_names : dict of int to str
        Meaning of each label value (0 is always "outside sample").
    voxel_size : tuple of float
        Voxel size (z, y, x) in ``unit``.
    unit : str
        Unit of ``voxel_size`` (``"um"``).
    clean : numpy.ndarray or None
        The same acquisition without photon noise and detector errors, uint16.
    ring_mask : numpy.ndarray or None
        Boolean (Y, X) map of the annuli where the ring artifacts are (known from the
        miscalibrated detector pixels); all False when the volume has no rings.
    parameters : dict
        Everything needed to regenerate the phantom, including the seed (see
        :func:`phantom_from_parameters`), plus derived facts under ``"derived"``.
    """

    volume: np.ndarray
    labels: np.ndarray
    phase_names: dict[int, str]
    voxel_size: tuple[float, float, float]
    unit: str = "um"
    clean: np.ndarray | None = None
    ring_mask: np.ndarray | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    def phase_fractions(self) -> dict[str, float]:
        """Volume fraction of each phase inside the sample (label 0 excluded).

        Returns
        -------
        dict
            ``{phase name: fraction}``; fractions sum to 1.
        """
        counts = np.bincount(self.labels.ravel(), minlength=max(self.phase_names) + 1)
        inside = counts[1:].sum()
        return {
            name: float(counts[value]) / float(inside) if inside else 0.0
            for value, name in self.phase_names.items()
            if value != 0
        }


# --------------------------------------------------------------------------- public API


def make_rock_volume(
    shape: tuple[int, int, int] = (64, 256, 256),
    *,
    seed: int = 0,
    grain_radius_range: tuple[float, float] = (6, 18),
    target_porosity: float = 0.3,
    dense_grain_fraction: float = 0.08,
    ring_artifacts: bool = True,
    n_bad_detectors: int = 8,
    photon_count: float | None = 2e4,
    n_angles: int = 180,
    detector_blur_px: float = 0.7,
    voxel_size_um: float = 2.5,
) -> Phantom:
    """Simulate a microCT scan of a cylindrical sandstone-like core.

    Grains are ellipsoids (equivalent radius uniform in ``grain_radius_range``, random
    orientation, aspect ratios up to about 1.5) placed in 3D, so they continue across
    slices. Placement is random sequential addition that first allows only slight
    interpenetration (compacted grains) and relaxes towards a Boolean model when no
    more grains fit, until the pore fraction of the sample reaches ``target_porosity``.
    A fraction of the grains is a dense mineral (third, brighter phase). Pores are air.

    Parameters
    ----------
    shape : tuple of int
        Volume shape (Z, Y, X); slices must be square (Y == X) and at least 32 pixels.
    seed : int
        Seed of :func:`numpy.random.default_rng`. Same seed and arguments give
        byte-identical arrays. Structure, detector errors and photon noise use
        independent streams, so turning rings or noise off keeps the same rock.
    grain_radius_range : tuple of float
        Smallest and largest equivalent grain radius in voxels.
    target_porosity : float
        Pore fraction of the sample to reach, in (0.05, 0.9).
    dense_grain_fraction : float
        Fraction of grains that are the dense mineral, in [0, 1].
    ring_artifacts : bool
        Whether ``n_bad_detectors`` detector pixels have gain errors (rings).
    n_bad_detectors : int
        Number of miscalibrated detector pixels (each gives one ring).
    photon_count : float or None
        Incident photons per detector pixel and projection; None means no photon noise.
    n_angles : int
        Number of projection angles over 180 degrees.
    detector_blur_px : float
        Standard deviation of the Gaussian detector blur in pixels (0 for none).
    voxel_size_um : float
        Isotropic voxel size in micrometres (metadata only).

    Returns
    -------
    Phantom
        Labels: 0 outside sample, 1 pore, 2 quartz grain, 3 dense mineral grain.

    Raises
    ------
    InvalidInputError
        For invalid shapes or parameters.

    Examples
    --------
    >>> rock = make_rock_volume((8, 64, 64), seed=1)
    >>> rock.volume.dtype, rock.volume.shape
    (dtype('uint16'), (8, 64, 64))
    """
    parameters = {
        "generator": "make_rock_volume",
        "format_version": _FORMAT_VERSION,
        "shape": [int(s) for s in shape] if _is_int_sequence(shape) else shape,
        "seed": seed,
        "grain_radius_range": [float(r) for r in grain_radius_range],
        "target_porosity": float(target_porosity),
        "dense_grain_fraction": float(dense_grain_fraction),
        "ring_artifacts": bool(ring_artifacts),
        "n_bad_detectors": int(n_bad_detectors),
        "photon_count": None if photon_count is None else float(photon_count),
        "n_angles": int(n_angles),
        "detector_blur_px": float(detector_blur_px),
        "voxel_size_um": float(voxel_size_um),
    }
    shape = _check_common(
        shape, seed, n_bad_detectors, photon_count, n_angles, detector_blur_px, voxel_size_um
    )
    parameters["seed"] = int(seed)
    low, high = (float(r) for r in grain_radius_range)
    if not 1.0 <= low <= high <= _sample_radius(shape[1]) / 1.5:
        raise InvalidInputError(
            f"grain_radius_range must satisfy 1 <= min <= max <= "
            f"{_sample_radius(shape[1]) / 1.5:.1f} (two thirds of the sample radius for "
            f"{shape[1]}-pixel slices), got {grain_radius_range}"
        )
    if not 0.05 < target_porosity < 0.9:
        raise InvalidInputError(f"target_porosity must be in (0.05, 0.9), got {target_porosity}")
    if not 0.0 <= dense_grain_fraction <= 1.0:
        raise InvalidInputError(
            f"dense_grain_fraction must be in [0, 1], got {dense_grain_fraction}"
        )

    structure_rng, detector_rng, noise_rng = _child_generators(seed)
    labels = _pack_grains(shape, (low, high), target_porosity, dense_grain_fraction, structure_rng)
    return _scan(
        labels,
        attenuation=ROCK_ATTENUATION,
        phase_names=ROCK_PHASES,
        parameters=parameters,
        ring_artifacts=ring_artifacts,
        detector_rng=detector_rng,
        noise_rng=noise_rng,
    )


def make_fibre_volume(
    shape: tuple[int, int, int] = (64, 256, 256),
    *,
    seed: int = 0,
    fibre_radius: float = 5.0,
    fibre_radius_spread: float = 0.05,
    fibre_fraction: float = 0.45,
    misalignment_deg: float = 2.0,
    twist_deg_per_slice: float = 0.05,
    n_voids: int = 6,
    ring_artifacts: bool = False,
    n_bad_detectors: int = 8,
    photon_count: float | None = 2e4,
    n_angles: int = 180,
    detector_blur_px: float = 0.7,
    voxel_size_um: float = 1.0,
) -> Phantom:
    """Simulate a microCT scan of a cylindrical unidirectional fibre composite.

    Fibres are non-overlapping circles (random packing relaxed until no two fibres are
    closer than half a voxel) in an epoxy matrix. They run along z with a small tilt
    (``misalignment_deg``) and twist of the whole bundle about the sample axis, so slices
    change gradually while fibres never intersect. A few voids, elongated along the
    fibres, sit in the matrix.

    Parameters
    ----------
    shape : tuple of int
        Volume shape (Z, Y, X); slices must be square (Y == X) and at least 32 pixels.
    seed : int
        Seed of :func:`numpy.random.default_rng` (same seed, same bytes).
    fibre_radius : float
        Mean fibre radius in voxels, in [1.5, slice width / 8].
    fibre_radius_spread : float
        Relative standard deviation of the fibre radius, in [0, 0.2].
    fibre_fraction : float
        Fibre volume fraction of the sample, in (0, 0.6].
    misalignment_deg : float
        Angle between the fibres and the z axis, in [0, 20).
    twist_deg_per_slice : float
        Rotation of the fibre bundle about the sample axis per slice.
    n_voids : int
        Number of voids in the matrix.
    ring_artifacts, n_bad_detectors, photon_count, n_angles, detector_blur_px
        As in :func:`make_rock_volume`.
    voxel_size_um : float
        Isotropic voxel size in micrometres (metadata only).

    Returns
    -------
    Phantom
        Labels: 0 outside sample, 1 matrix, 2 fibre, 3 void.

    Raises
    ------
    InvalidInputError
        For invalid shapes or parameters.
    """
    parameters = {
        "generator": "make_fibre_volume",
        "format_version": _FORMAT_VERSION,
        "shape": [int(s) for s in shape] if _is_int_sequence(shape) else shape,
        "seed": seed,
        "fibre_radius": float(fibre_radius),
        "fibre_radius_spread": float(fibre_radius_spread),
        "fibre_fraction": float(fibre_fraction),
        "misalignment_deg": float(misalignment_deg),
        "twist_deg_per_slice": float(twist_deg_per_slice),
        "n_voids": int(n_voids),
        "ring_artifacts": bool(ring_artifacts),
        "n_bad_detectors": int(n_bad_detectors),
        "photon_count": None if photon_count is None else float(photon_count),
        "n_angles": int(n_angles),
        "detector_blur_px": float(detector_blur_px),
        "voxel_size_um": float(voxel_size_um),
    }
    shape = _check_common(
        shape, seed, n_bad_detectors, photon_count, n_angles, detector_blur_px, voxel_size_um
    )
    parameters["seed"] = int(seed)
    if not 1.5 <= fibre_radius <= shape[1] / 8:
        raise InvalidInputError(
            f"fibre_radius must be in [1.5, {shape[1] / 8:g}] voxels for {shape[1]}-pixel slices, "
            f"got {fibre_radius}"
        )
    if not 0.0 <= fibre_radius_spread <= 0.2:
        raise InvalidInputError(
            f"fibre_radius_spread must be in [0, 0.2], got {fibre_radius_spread}"
        )
    if not 0.0 < fibre_fraction <= 0.6:
        raise InvalidInputError(
            f"fibre_fraction must be in (0, 0.6] (denser random packings of circles jam), got {fibre_fraction}"
        )
    if not 0.0 <= misalignment_deg < 20.0:
        raise InvalidInputError(f"misalignment_deg must be in [0, 20), got {misalignment_deg}")
    if not abs(twist_deg_per_slice) <= 1.0:
        raise InvalidInputError(
            f"twist_deg_per_slice must be in [-1, 1], got {twist_deg_per_slice}"
        )
    if n_voids < 0:
        raise InvalidInputError(f"n_voids must be >= 0, got {n_voids}")

    structure_rng, detector_rng, noise_rng = _child_generators(seed)
    labels = _fibre_labels(
        shape,
        fibre_radius=fibre_radius,
        radius_spread=fibre_radius_spread,
        fibre_fraction=fibre_fraction,
        misalignment_deg=misalignment_deg,
        twist_deg_per_slice=twist_deg_per_slice,
        n_voids=n_voids,
        rng=structure_rng,
    )
    return _scan(
        labels,
        attenuation=FIBRE_ATTENUATION,
        phase_names=FIBRE_PHASES,
        parameters=parameters,
        ring_artifacts=ring_artifacts,
        detector_rng=detector_rng,
        noise_rng=noise_rng,
    )


def phantom_from_parameters(parameters: dict[str, Any]) -> Phantom:
    """Regenerate a phantom from its ``parameters`` (e.g. read back from provenance).

    Parameters
    ----------
    parameters : dict
        ``Phantom.parameters`` of an earlier call (``"derived"`` is ignored).

    Returns
    -------
    Phantom
        Byte-identical to the original on the same software versions.
    """
    generators = {"make_rock_volume": make_rock_volume, "make_fibre_volume": make_fibre_volume}
    kwargs = {
        k: v for k, v in parameters.items() if k not in ("generator", "format_version", "derived")
    }
    name = parameters.get("generator")
    if name not in generators:
        raise InvalidInputError(
            f"unknown phantom generator {name!r}; expected one of {sorted(generators)}"
        )
    if parameters.get("format_version", _FORMAT_VERSION) != _FORMAT_VERSION:
        raise InvalidInputError(
            f"phantom parameters have format_version {parameters.get('format_version')}, "
            f"this version builds format {_FORMAT_VERSION}; results would differ"
        )
    kwargs["shape"] = tuple(kwargs["shape"])
    for key in ("grain_radius_range",):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    return generators[name](**kwargs)


def to_uint16(attenuation: np.ndarray) -> np.ndarray:
    """Map attenuation per voxel to uint16 with the fixed, documented mapping.

    Parameters
    ----------
    attenuation : numpy.ndarray
        Linear attenuation coefficient times voxel size (dimensionless).

    Returns
    -------
    numpy.ndarray
        ``clip(round(INTENSITY_OFFSET + INTENSITY_PER_ATTENUATION * attenuation), 0, 65535)``
        as uint16.
    """
    scaled = INTENSITY_OFFSET + INTENSITY_PER_ATTENUATION * np.asarray(
        attenuation, dtype=np.float64
    )
    return np.clip(np.rint(scaled), 0, 65535).astype(np.uint16)


# ------------------------------------------------------------------- shared scan helper


def _is_int_sequence(value) -> bool:
    try:
        return all(isinstance(v, (int, np.integer)) for v in value)
    except TypeError:
        return False


def _check_common(
    shape, seed, n_bad_detectors, photon_count, n_angles, detector_blur_px, voxel_size_um
):
    if not _is_int_sequence(shape) or len(shape) != 3:
        raise InvalidInputError(f"shape must be three integers (Z, Y, X), got {shape!r}")
    z, y, x = (int(s) for s in shape)
    if z < 1 or y != x or y < 32:
        raise InvalidInputError(
            f"shape must have Z >= 1 and square slices of at least 32 x 32 (Y == X, as a CT "
            f"reconstruction is square), got {tuple(shape)}"
        )
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    if n_bad_detectors < 0:
        raise InvalidInputError(f"n_bad_detectors must be >= 0, got {n_bad_detectors}")
    if photon_count is not None and not (np.isfinite(photon_count) and photon_count >= 10):
        raise InvalidInputError(
            f"photon_count must be >= 10 photons or None (no noise), got {photon_count}"
        )
    if not 8 <= n_angles <= 4096:
        raise InvalidInputError(f"n_angles must be in [8, 4096], got {n_angles}")
    if not 0.0 <= detector_blur_px <= 10.0:
        raise InvalidInputError(f"detector_blur_px must be in [0, 10], got {detector_blur_px}")
    if not (np.isfinite(voxel_size_um) and voxel_size_um > 0):
        raise InvalidInputError(f"voxel_size_um must be a positive number, got {voxel_size_um}")
    return z, y, x


def _child_generators(seed: int) -> list[np.random.Generator]:
    """Independent streams for structure, detector errors and photon noise."""
    return [np.random.default_rng(child) for child in np.random.SeedSequence(int(seed)).spawn(3)]


def _sample_radius(n: int) -> float:
    return SAMPLE_RADIUS_FRACTION * n


def _radius_map(n: int) -> np.ndarray:
    """Distance of each pixel centre from the rotation centre ``(n // 2, n // 2)``."""
    offsets = np.arange(n) - n // 2
    return np.hypot(offsets[:, None], offsets[None, :])


def _reconstruction_circle(n: int) -> np.ndarray:
    """Pixels reconstructed (inside radius ``n // 2 - 1``, so every ray stays on the detector)."""
    return _radius_map(n) <= n // 2 - 1


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


# ----------------------------------------------------------------------- CT simulation


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


# ----------------------------------------------------------------------- rock structure


def _rotation_from_normals(normals: np.ndarray) -> np.ndarray:
    """A uniformly random rotation matrix from a 3 x 3 matrix of standard normal draws."""
    q, r = np.linalg.qr(normals)
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _clear_of(centres, radii, placed_centres, placed_radii, overlap) -> np.ndarray:
    """Which spheres ``(centres, radii)`` keep ``(1 - overlap) * (r_i + r_j)`` from all placed ones."""
    if placed_radii.size == 0:
        return np.ones(len(radii), dtype=bool)
    separation = np.linalg.norm(centres[:, None, :] - placed_centres[None], axis=-1)
    return (separation >= (1.0 - overlap) * (radii[:, None] + placed_radii[None, :])).all(axis=1)


def _pack_grains(shape, radius_range, target_porosity, dense_fraction, rng) -> np.ndarray:
    """Rock phase map: ellipsoidal grains added until the sample's porosity reaches the target.

    Candidates come in batches of ``_GRAIN_BATCH`` (all random draws per batch, so the
    result depends only on the seed). A candidate is accepted when its centre is at
    least ``(1 - overlap) * (r_i + r_j)`` from every accepted grain; ``overlap`` starts at
    0.2 (slightly interpenetrating, compacted grains) and grows by 0.1 whenever a batch
    accepts fewer than 1 % of its candidates, ending as a Boolean model (any overlap).
    """
    z, n, _ = shape
    low, high = radius_range
    centre = n // 2
    sample_radius = _sample_radius(n)
    sample = _radius_map(n) <= sample_radius
    labels = np.zeros((z, n, n), dtype=np.uint8)
    labels[:, sample] = 1
    target_solid = (1.0 - target_porosity) * float(sample.sum()) * z
    solid = 0.0
    overlap = 0.2
    placed_centres = np.empty((0, 3))
    placed_radii = np.empty(0)
    while solid < target_solid:
        radius = rng.uniform(low, high, size=_GRAIN_BATCH)
        angle = rng.uniform(0, 2 * np.pi, size=_GRAIN_BATCH)
        distance = (sample_radius + radius) * np.sqrt(rng.uniform(size=_GRAIN_BATCH))
        positions = np.stack(
            [
                rng.uniform(-radius, z - 1 + radius),
                centre + distance * np.sin(angle),
                centre + distance * np.cos(angle),
            ],
            axis=1,
        )
        stretch = np.exp(rng.normal(0.0, 0.12, size=(_GRAIN_BATCH, 3)))
        stretch /= np.cbrt(stretch.prod(axis=1))[:, None]
        normals = rng.normal(size=(_GRAIN_BATCH, 3, 3))
        phases = np.where(rng.uniform(size=_GRAIN_BATCH) < dense_fraction, 3, 2)

        candidates = np.flatnonzero(
            _clear_of(positions, radius, placed_centres, placed_radii, overlap)
        )
        accepted: list[int] = []
        for index in candidates:
            if (
                accepted
                and not _clear_of(
                    positions[index : index + 1],
                    radius[index : index + 1],
                    positions[accepted],
                    radius[accepted],
                    overlap,
                )[0]
            ):
                continue
            accepted.append(int(index))
            rotation = _rotation_from_normals(normals[index])
            solid += _paint_ellipsoid(
                labels, positions[index], radius[index] * stretch[index], rotation, phases[index]
            )
            if solid >= target_solid:
                break
        placed_centres = np.concatenate([placed_centres, positions[accepted]])
        placed_radii = np.concatenate([placed_radii, radius[accepted]])
        if len(accepted) < 0.01 * _GRAIN_BATCH:
            overlap = min(1.0, overlap + 0.1)
    return labels


def _paint_ellipsoid(labels, centre, semi_axes, rotation, phase) -> int:
    """Set pore voxels (label 1) inside the ellipsoid to ``phase``; return how many changed."""
    form = rotation @ np.diag(1.0 / semi_axes**2) @ rotation.T
    half = np.sqrt(np.diag(rotation @ np.diag(semi_axes**2) @ rotation.T))
    lower = np.maximum(np.floor(centre - half).astype(int), 0)
    upper = np.minimum(np.ceil(centre + half).astype(int) + 1, labels.shape)
    if np.any(upper <= lower):
        return 0
    dz, dy, dx = (np.arange(lo, hi) - c for lo, hi, c in zip(lower, upper, centre, strict=True))
    dz, dy, dx = dz[:, None, None], dy[None, :, None], dx[None, None, :]
    quadratic = (
        form[0, 0] * dz**2
        + form[1, 1] * dy**2
        + form[2, 2] * dx**2
        + 2 * (form[0, 1] * dz * dy + form[0, 2] * dz * dx + form[1, 2] * dy * dx)
    )
    view = labels[lower[0] : upper[0], lower[1] : upper[1], lower[2] : upper[2]]
    fill = (quadratic <= 1.0) & (view == 1)
    view[fill] = phase
    return int(fill.sum())


# ---------------------------------------------------------------------- fibre structure


def _relax_disks(positions, radii, margins, boundary_radius, iterations=2000):
    """Push disks apart until disks ``i`` and ``j`` are at least ``margins[i] + margins[j]`` apart."""
    positions = positions.copy()
    reach = 2 * (radii.max() + margins.max())
    for _ in range(iterations):
        pairs = cKDTree(positions).query_pairs(reach, output_type="ndarray")
        if len(pairs) == 0:
            break
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        first, second = pairs[:, 0], pairs[:, 1]
        delta = positions[second] - positions[first]
        distance = np.maximum(np.linalg.norm(delta, axis=1), 1e-9)
        overlap = radii[first] + radii[second] + margins[first] + margins[second] - distance
        hit = overlap > 0
        if not hit.any():
            break
        push = (0.5 * overlap[hit] + 1e-3)[:, None] * delta[hit] / distance[hit, None]
        np.add.at(positions, first[hit], -push)
        np.add.at(positions, second[hit], push)
        radial = np.linalg.norm(positions, axis=1)
        limit = boundary_radius - radii
        outside = radial > limit
        positions[outside] *= (limit[outside] / radial[outside])[:, None]
    return positions


def _bundle_positions(positions, offset, tilt_vector, twist_deg_per_slice) -> np.ndarray:
    """Fibre centres (relative to the sample axis) ``offset`` slices from the middle slice.

    The bundle moves rigidly (twist about the axis plus a tilt shift), so fibres that do
    not overlap in one slice overlap in none.
    """
    twist = math.radians(twist_deg_per_slice * offset)
    rotation = np.array([[math.cos(twist), -math.sin(twist)], [math.sin(twist), math.cos(twist)]])
    return positions @ rotation.T + offset * tilt_vector


def _disk_pixels(centres, radii, n):
    """Pixels ``(rows, cols, disk index)`` whose centres lie inside the disks (image coordinates)."""
    k = int(math.ceil(radii.max())) + 1
    oy, ox = np.mgrid[-k : k + 1, -k : k + 1]
    rows = np.rint(centres[:, 0]).astype(int)[:, None, None] + oy
    cols = np.rint(centres[:, 1]).astype(int)[:, None, None] + ox
    inside = (rows - centres[:, 0, None, None]) ** 2 + (cols - centres[:, 1, None, None]) ** 2
    inside = inside <= radii[:, None, None] ** 2
    inside &= (rows >= 0) & (rows < n) & (cols >= 0) & (cols < n)
    index = np.broadcast_to(np.arange(len(radii))[:, None, None], inside.shape)
    return rows[inside], cols[inside], index[inside]


def _fibre_labels(
    shape,
    *,
    fibre_radius,
    radius_spread,
    fibre_fraction,
    misalignment_deg,
    twist_deg_per_slice,
    n_voids,
    rng,
):
    """Fibre composite phase map: fibres (2), matrix (1), voids (3), outside (0).

    Fibres are scattered over a disk that covers the sample at every slice, with 12 %
    more than needed, pushed apart until none overlap, then randomly chosen fibres of the
    middle slice are removed until the fibre fraction of the sample matches the target.
    """
    z, n, _ = shape
    centre = n // 2
    sample_radius = _sample_radius(n)
    sample = _radius_map(n) <= sample_radius
    mid = (z - 1) / 2
    tilt = math.tan(math.radians(misalignment_deg))
    tilt_direction = rng.uniform(0, 2 * np.pi)
    tilt_vector = tilt * np.array([math.sin(tilt_direction), math.cos(tilt_direction)])
    twist_reach = math.radians(abs(twist_deg_per_slice) * mid) * sample_radius
    region = sample_radius + tilt * mid + twist_reach + 3 * fibre_radius
    usable = region - fibre_radius  # fibre centres stay this close to the axis
    start_fraction = 1.12 * fibre_fraction
    mean_area = np.pi * fibre_radius**2 * (1 + radius_spread**2)
    count = int(math.ceil(start_fraction * np.pi * usable**2 / mean_area))
    radii = np.clip(
        rng.normal(fibre_radius, radius_spread * fibre_radius, size=count),
        0.6 * fibre_radius,
        1.4 * fibre_radius,
    )
    angle = rng.uniform(0, 2 * np.pi, size=count)
    distance = usable * np.sqrt(rng.uniform(size=count))
    positions = np.stack([distance * np.sin(angle), distance * np.cos(angle)], axis=1)
    # Random margins (at least 0.25 voxel each) spread fibres a little more evenly than
    # a packing that only forbids overlaps, while still letting some fibres almost touch;
    # they shrink for dense packings so the pushing converges.
    widest = min(0.25 + 0.2 * fibre_radius, fibre_radius * (math.sqrt(0.72 / start_fraction) - 1))
    margins = rng.uniform(0.25, max(0.25, widest), size=count)
    positions = _relax_disks(positions, radii, margins, boundary_radius=region)

    rows, cols, index = _disk_pixels(positions + centre, radii, n)
    in_sample = sample[rows, cols]
    area = np.bincount(index[in_sample], minlength=count)
    excess = area.sum() - fibre_fraction * sample.sum()
    candidates = rng.permutation(np.flatnonzero(area))
    removed = np.concatenate([[0], np.cumsum(area[candidates])])
    n_remove = int(np.argmin(np.abs(removed - excess)))
    keep = np.ones(count, dtype=bool)
    keep[candidates[:n_remove]] = False
    positions, radii = positions[keep], radii[keep]

    labels = np.zeros((z, n, n), dtype=np.uint8)
    labels[:, sample] = 1
    for index in range(z):
        centres = _bundle_positions(positions, index - mid, tilt_vector, twist_deg_per_slice)
        near = np.all(np.abs(centres) < sample_radius + fibre_radius * 2, axis=1)
        rows, cols, _ = _disk_pixels(centres[near] + centre, radii[near], n)
        keep = labels[index, rows, cols] == 1
        labels[index, rows[keep], cols[keep]] = 2

    for _ in range(n_voids):
        semi_axes = np.array([rng.uniform(6, 16), rng.uniform(2, 5), rng.uniform(2, 5)])
        distance = (sample_radius - semi_axes[1]) * math.sqrt(rng.uniform())
        angle = rng.uniform(0, 2 * np.pi)
        position = np.array(
            [
                rng.uniform(0, z - 1),
                centre + distance * math.sin(angle),
                centre + distance * math.cos(angle),
            ]
        )
        spin = rng.uniform(0, 2 * np.pi)
        rotation = np.array(
            [[1, 0, 0], [0, math.cos(spin), -math.sin(spin)], [0, math.sin(spin), math.cos(spin)]]
        )
        _paint_ellipsoid(labels, position, semi_axes, rotation, 3)  # replaces matrix only
    return labels
