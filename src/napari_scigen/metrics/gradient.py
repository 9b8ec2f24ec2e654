"""Gradient magnitude similarity deviation (GMSD), an offline perceptual score.

GMSD (Xue, Zhang, Mou, Bovik, *Gradient Magnitude Similarity Deviation: A Highly
Efficient Perceptual Image Quality Index*, IEEE TIP 23(2), 2014) compares the local
gradient magnitudes of two images and reports how *unevenly* they agree: the
standard deviation of the gradient magnitude similarity map. 0 means the images have
the same gradient structure; larger is worse. It needs no network weights, so it is
the stated offline substitute wherever LPIPS' ImageNet backbone is not on the machine.

Steps, per slice, as in the paper's reference implementation: both slices are mapped
to ``[0, 255]`` with the data-range window (see :mod:`napari_scigen.metrics.pixel`),
smoothed with a 2x2 mean filter and downsampled by 2, filtered with the 3x3 Prewitt
kernels (divided by 3); the similarity map is
``(2 m_r m_g + c) / (m_r**2 + m_g**2 + c)`` with ``c = 170``; GMSD is its standard
deviation (``ddof=1``, as MATLAB's ``std2``). The volume value is the mean of the
per-slice values. One deliberate difference from the reference code: borders are
padded by edge replication instead of zeros, so a constant grey-level offset (common
between microCT scans) does not create fake edges along the image border.
"""

from __future__ import annotations

import numpy as np

from .pixel import DataRange, SliceScores, _as_slices, check_pair, resolve_data_range

#: Stabilising constant of the similarity map for images scaled to [0, 255].
GMSD_CONSTANT = 170.0

_PREWITT_X = np.array([[1.0, 0.0, -1.0]] * 3) / 3.0


def _gradient_magnitude(image: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    smoothed = ndimage.uniform_filter(image, size=2, mode="nearest")[::2, ::2]
    gx = ndimage.correlate(smoothed, _PREWITT_X, mode="nearest")
    gy = ndimage.correlate(smoothed, _PREWITT_X.T, mode="nearest")
    return np.sqrt(gx**2 + gy**2)


def _to_255(image: np.ndarray, low: float, span: float) -> np.ndarray:
    return (np.clip(image.astype(np.float64), low, low + span) - low) * (255.0 / span)


def gmsd(reference, generated, *, data_range: DataRange = None) -> SliceScores:
    """GMSD of a slice or, slice by slice, of a volume (lower is better, 0 = same).

    Parameters
    ----------
    reference, generated : numpy.ndarray
        2D or 3D images with the same shape and dtype, at least 4x4 pixels per slice.
    data_range : float, (low, high) or None
        Intensity window mapped to ``[0, 255]`` (see :mod:`napari_scigen.metrics.pixel`):
        ``None`` uses the reference's dtype span (integers) or its min-max (floats); a
        number ``d`` a span of ``d`` starting at the dtype minimum (integers) or at the
        reference minimum (floats); a pair ``(low, high)`` that window.

    Returns
    -------
    SliceScores
        ``metric="gmsd"``, per-slice values and their mean.

    Raises
    ------
    InvalidInputError
        If the images differ in shape or dtype, or are invalid.
    """
    from ..core.validation import InvalidInputError

    ref, gen = check_pair(reference, generated)
    if min(ref.shape[-2:]) < 4:
        raise InvalidInputError(f"GMSD needs slices of at least 4x4 pixels, got {ref.shape[-2:]}")
    value_range, window = resolve_data_range(ref, data_range)
    low = window[0] if window is not None else float(np.min(ref))
    if window is None and np.issubdtype(ref.dtype, np.integer):
        low = float(np.iinfo(ref.dtype).min)
    span = float(value_range) if value_range > 0 else 1.0
    values = []
    for ref_slice, gen_slice in zip(_as_slices(ref), _as_slices(gen), strict=True):
        m_ref = _gradient_magnitude(_to_255(ref_slice, low, span))
        m_gen = _gradient_magnitude(_to_255(gen_slice, low, span))
        similarity = (2.0 * m_ref * m_gen + GMSD_CONSTANT) / (m_ref**2 + m_gen**2 + GMSD_CONSTANT)
        values.append(float(np.std(similarity, ddof=1)))
    return SliceScores(
        "gmsd", tuple(values), float(np.mean(values)), float(value_range), "all", window
    )
