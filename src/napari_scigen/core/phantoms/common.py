"""What every phantom shares: the result type, intensity mapping, geometry and checks.

:class:`Phantom` (volume plus ground truth), :func:`to_uint16` (the fixed
attenuation-to-grey mapping), the cylindrical sample and reconstruction circle,
the checks of the acquisition parameters and the seeded random streams.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_scigen.core.validation import InvalidInputError

#: uint16 value of zero attenuation (air).
INTENSITY_OFFSET = 8000
#: uint16 counts per unit of attenuation per voxel.
INTENSITY_PER_ATTENUATION = 1.0e6

#: Radius of the cylindrical sample as a fraction of the slice width.
SAMPLE_RADIUS_FRACTION = 0.44
#: Version of the parameter layout; :func:`phantom_from_parameters` refuses others.
_FORMAT_VERSION = 1


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
