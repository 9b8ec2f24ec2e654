"""Synthetic sandstone-like rock core: packed ellipsoidal grains, pores, a dense mineral."""

from __future__ import annotations

import numpy as np

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

#: Rock phases (label values).
ROCK_PHASES = {0: "outside sample", 1: "pore", 2: "quartz grain", 3: "dense mineral grain"}
#: Attenuation per voxel of each rock phase (pores are dry, i.e. air).
ROCK_ATTENUATION = {0: 0.0, 1: 0.0, 2: 0.012, 3: 0.030}
#: Grain candidates drawn at once by the rock packing.
_GRAIN_BATCH = 256


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
