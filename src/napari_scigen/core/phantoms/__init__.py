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

Modules: :mod:`~napari_scigen.core.phantoms.rock` and
:mod:`~napari_scigen.core.phantoms.fibre` build the phase maps,
:mod:`~napari_scigen.core.phantoms.ct` simulates the scan,
:mod:`~napari_scigen.core.phantoms.common` holds :class:`Phantom`, the intensity mapping
and the shared checks, :mod:`~napari_scigen.core.phantoms.regenerate` rebuilds a phantom
from its recorded parameters.
"""

from __future__ import annotations

from .common import (
    INTENSITY_OFFSET,
    INTENSITY_PER_ATTENUATION,
    SAMPLE_RADIUS_FRACTION,
    Phantom,
    to_uint16,
)
from .common import _radius_map as _radius_map
from .common import _reconstruction_circle as _reconstruction_circle
from .common import _sample_radius as _sample_radius
from .ct import RING_HALF_WIDTH_PX, RING_SPACING_PX
from .fibre import FIBRE_ATTENUATION, FIBRE_PHASES, make_fibre_volume
from .regenerate import phantom_from_parameters
from .rock import ROCK_ATTENUATION, ROCK_PHASES, make_rock_volume

__all__ = [
    "FIBRE_ATTENUATION",
    "FIBRE_PHASES",
    "INTENSITY_OFFSET",
    "INTENSITY_PER_ATTENUATION",
    "RING_HALF_WIDTH_PX",
    "RING_SPACING_PX",
    "ROCK_ATTENUATION",
    "ROCK_PHASES",
    "SAMPLE_RADIUS_FRACTION",
    "Phantom",
    "make_fibre_volume",
    "make_rock_volume",
    "phantom_from_parameters",
    "to_uint16",
]
