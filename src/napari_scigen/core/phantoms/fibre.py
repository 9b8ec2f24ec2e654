"""Synthetic unidirectional fibre composite: packed fibres in epoxy, with a few voids."""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from napari_scigen.core.validation import InvalidInputError

from .common import (
    _FORMAT_VERSION,
    Phantom,
    _check_common,
    _child_generators,
    _is_int_sequence,
    _paint_ellipsoid,
    _radius_map,
    _sample_radius,
)
from .ct import _scan

#: Fibre composite phases (label values).
FIBRE_PHASES = {0: "outside sample", 1: "matrix (epoxy)", 2: "fibre", 3: "void"}
#: Attenuation per voxel of each fibre composite phase.
FIBRE_ATTENUATION = {0: 0.0, 1: 0.007, 2: 0.013, 3: 0.0}


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
