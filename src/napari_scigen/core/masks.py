"""Mask helpers: grow, shrink, feather, threshold, copy across slices, ring detection.

All functions return new arrays and never modify their inputs. Masks are 2D
(Y, X) or 3D (Z, Y, X); morphology works per slice (a disk in each slice,
never across z), because masks are painted slice by slice and microCT slices
are often anisotropic. Label images (integer dtype) keep their dtype and label
values where that makes sense (:func:`grow_mask`, :func:`shrink_mask`,
:func:`copy_slice_mask`); boolean masks stay boolean.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .validation import InvalidInputError, check_image


def _as_mask(mask, name: str = "mask") -> np.ndarray:
    array = np.asarray(mask)
    if array.ndim not in (2, 3):
        raise InvalidInputError(
            f"{name} must be 2D (Y, X) or 3D (Z, Y, X), got shape {array.shape}"
        )
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.integer)):
        raise InvalidInputError(
            f"{name} must be boolean or integer labels, got dtype {array.dtype}"
        )
    return array


def _check_radius(radius, name: str = "radius") -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise InvalidInputError(f"{name} must be an integer >= 0 (pixels), got {radius!r}")
    return int(radius)


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return yy * yy + xx * xx <= radius * radius


def _per_slice(function, array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return function(array)
    return np.stack([function(plane) for plane in array])


def labels_to_bool(labels, label: int | None = None) -> np.ndarray:
    """A boolean mask from a label image.

    Parameters
    ----------
    labels : array-like
        Label image (any dtype); non-zero counts as masked.
    label : int, optional
        Only this label value counts as masked.

    Returns
    -------
    numpy.ndarray
        New boolean array of the same shape.
    """
    array = np.asarray(labels)
    if label is None:
        return array != 0
    return array == label


def grow_mask(mask, radius: int) -> np.ndarray:
    """Dilate a mask by a disk of ``radius`` pixels in every slice.

    Boolean masks are dilated. Label images grow every label by up to
    ``radius`` pixels into background without overwriting other labels
    (:func:`skimage.segmentation.expand_labels`, nearest label wins), which for
    a single label is the same as a disk dilation.

    Parameters
    ----------
    mask : array-like
        2D or 3D boolean mask or integer labels.
    radius : int
        Disk radius in pixels (``0`` returns a copy).

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype.
    """
    array = _as_mask(mask)
    radius = _check_radius(radius)
    if radius == 0:
        return array.copy()
    if array.dtype == bool:
        footprint = _disk(radius)
        return _per_slice(lambda plane: ndi.binary_dilation(plane, footprint), array)

    from skimage.segmentation import expand_labels

    return _per_slice(lambda plane: expand_labels(plane, distance=radius), array).astype(
        array.dtype, copy=False
    )


def shrink_mask(mask, radius: int) -> np.ndarray:
    """Erode a mask by a disk of ``radius`` pixels in every slice.

    The image border does not erode the mask (a region painted up to the edge
    is assumed to continue outside). For label images a pixel keeps its label
    only when every pixel within ``radius`` has the same label, so touching
    labels shrink away from each other too.

    Parameters
    ----------
    mask : array-like
        2D or 3D boolean mask or integer labels.
    radius : int
        Disk radius in pixels (``0`` returns a copy).

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype.
    """
    array = _as_mask(mask)
    radius = _check_radius(radius)
    if radius == 0:
        return array.copy()
    footprint = _disk(radius)
    if array.dtype == bool:
        return _per_slice(lambda plane: ndi.binary_erosion(plane, footprint, border_value=1), array)

    def erode_labels(plane: np.ndarray) -> np.ndarray:
        low = ndi.grey_erosion(plane, footprint=footprint, mode="nearest")
        high = ndi.grey_dilation(plane, footprint=footprint, mode="nearest")
        return np.where((low == plane) & (high == plane), plane, 0).astype(plane.dtype)

    return _per_slice(erode_labels, array)


def _inward_distance(plane: np.ndarray) -> np.ndarray:
    """Distance (pixels) of each masked pixel to the nearest unmasked one; 0 outside.

    The slice border is not an edge: a fully masked slice is infinitely far from one.
    """
    if plane.all():
        return np.full(plane.shape, np.inf)
    return ndi.distance_transform_edt(plane)


def _inward_weights(mask, width: float, name: str, profile, dtype) -> np.ndarray:
    """``profile(d, width)`` of each masked pixel's inward distance ``d``, 0 outside, per slice."""
    array = _as_mask(mask)
    if not np.isfinite(width) or width < 0:
        raise InvalidInputError(f"{name} must be a finite number >= 0 (pixels), got {width!r}")
    inside = array != 0
    if width == 0:
        return inside.astype(dtype)

    def weights(plane: np.ndarray) -> np.ndarray:
        return np.where(plane, profile(_inward_distance(plane), width), 0.0).astype(dtype)

    return _per_slice(weights, inside)


def feather_mask(mask, sigma: float) -> np.ndarray:
    """Soft compositing weights that fall off inward from the mask edge (Gaussian profile).

    ``w = 1 - exp(-d**2 / (2 sigma**2))`` where ``d`` is each masked pixel's
    distance (pixels, per slice) to the nearest unmasked pixel, and ``w = 0``
    outside the mask. So compositing ``w * generated + (1 - w) * original``
    never changes an unmasked pixel, and blends smoothly into the mask over
    about ``2 sigma`` pixels. The image border is not treated as an edge.
    :func:`ramp_mask` is the same with a linear profile.

    Parameters
    ----------
    mask : array-like
        2D or 3D mask or labels; non-zero is masked.
    sigma : float
        Feather width in pixels (``0`` gives the hard mask as 0/1 weights).

    Returns
    -------
    numpy.ndarray
        float32 weights in ``[0, 1]``, exactly 0 outside the mask.
    """

    def gaussian(distance: np.ndarray, sigma: float) -> np.ndarray:
        return -np.expm1(-(distance**2) / (2.0 * sigma * sigma))

    return _inward_weights(mask, sigma, "sigma", gaussian, np.float32)


def ramp_mask(mask, width: float) -> np.ndarray:
    """Compositing weights rising linearly from the mask edge to 1 over ``width`` pixels.

    ``w = min(1, d / width)`` inside the mask, with ``d`` as in :func:`feather_mask`
    (the image border is not an edge), and exactly 0 outside it; what the Stable
    Diffusion engines blend their output in with.

    Parameters
    ----------
    mask : array-like
        2D or 3D mask or labels; non-zero is masked.
    width : float
        Ramp width in pixels (``0`` gives the hard mask as 0/1 weights).

    Returns
    -------
    numpy.ndarray
        float64 weights in ``[0, 1]``, exactly 0 outside the mask.
    """

    def linear(distance: np.ndarray, width: float) -> np.ndarray:
        return np.clip(distance / width, 0.0, 1.0)

    return _inward_weights(mask, width, "width", linear, np.float64)


def mask_from_threshold(image, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Boolean mask of the pixels with ``low <= value <= high``.

    Parameters
    ----------
    image : array-like
        2D slice or 3D volume.
    low, high : float, optional
        Inclusive bounds; at least one must be given.

    Returns
    -------
    numpy.ndarray
        New boolean array of the image's shape.
    """
    array = check_image(image, name="image")
    if low is None and high is None:
        raise InvalidInputError("give at least one of `low` and `high`")
    if low is not None and high is not None and low > high:
        raise InvalidInputError(f"low ({low}) must not exceed high ({high})")
    result = np.ones(array.shape, dtype=bool)
    if low is not None:
        result &= array >= low
    if high is not None:
        result &= array <= high
    return result


def copy_slice_mask(mask3d, source_index: int, start: int, stop: int) -> np.ndarray:
    """Copy one slice's mask (labels) onto slices ``start..stop`` inclusive.

    Those slices are overwritten (not merged) with the source slice; other
    slices are unchanged.

    Parameters
    ----------
    mask3d : array-like
        3D mask or labels (Z, Y, X).
    source_index : int
        Slice to copy from.
    start, stop : int
        First and last slice (inclusive) to copy onto.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype.
    """
    array = _as_mask(mask3d, "mask3d")
    if array.ndim != 3:
        raise InvalidInputError(f"mask3d must be 3D (Z, Y, X), got shape {array.shape}")
    n = array.shape[0]
    for name, value in (("source_index", source_index), ("start", start), ("stop", stop)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidInputError(f"{name} must be an integer slice index, got {value!r}")
        if not 0 <= value < n:
            raise InvalidInputError(
                f"{name}={value} is out of range for a mask of {n} slices (valid: 0..{n - 1})"
            )
    if start > stop:
        raise InvalidInputError(f"start ({start}) must not exceed stop ({stop})")
    result = array.copy()
    result[start : stop + 1] = array[source_index]
    return result


def _radial_profile(image2d: np.ndarray, center: tuple[float, float]):
    """Integer radius of every pixel, azimuthal mean and pixel count for each radius."""
    yy, xx = np.indices(image2d.shape, dtype=np.float64)
    radius = np.rint(np.hypot(yy - center[0], xx - center[1])).astype(np.intp)
    counts = np.bincount(radius.ravel())
    sums = np.bincount(radius.ravel(), weights=image2d.ravel().astype(np.float64))
    return radius, sums / np.maximum(counts, 1), counts


def detect_ring_artifacts(
    image,
    *,
    center: tuple[float, float] | None = None,
    min_contrast: float = 0.0,
    n_sigma: float = 8.0,
    smooth_radius: int = 5,
    min_radius: int = 4,
    margin: int = 1,
) -> np.ndarray:
    """Detect concentric ring artifacts (tomographic reconstruction) and mask them.

    Method
        1. A volume is averaged over z (rings sit at the same radii in every
           slice, real structure averages out).
        2. Polar view about ``center`` (default: the slice centre): the
           azimuthal mean ``p(r)`` and its standard error over the pixels at
           each integer radius ``r``.
        3. The residual ``p(r) - median_filter(p)(r)`` (window
           ``2 * smooth_radius + 1`` along r) keeps narrow radial features (rings)
           and drops slow trends and steps such as a cylindrical sample's edge.
        4. The residual is scaled by ``sqrt(n(r))`` (the mean over ``n(r)``
           pixels fluctuates like ``1 / sqrt(n(r))``), then by its robust spread
           (1.4826 x median absolute deviation over radii).
           Radii beyond ``n_sigma`` that also differ by at least ``min_contrast``
           (data units) from the smoothed profile are ring radii.
        5. The mask is the annulus of those radii, widened by ``margin`` pixels.

    Limits
        Rings must be centred on ``center`` (the rotation axis) and narrower
        than about ``smooth_radius`` pixels; partial arcs and rings that change
        along z are weakened by the averaging; a thin real circular feature
        concentric with the axis (a container wall) is detected too. Radii
        below ``min_radius`` (too few pixels) are never flagged.

    Parameters
    ----------
    image : array-like
        2D slice or 3D volume.
    center : tuple of float, optional
        ``(row, col)`` of the rotation axis; defaults to the slice centre.
    min_contrast : float
        Smallest ring contrast in data units (``0`` relies on ``n_sigma`` only).
    n_sigma : float
        Detection threshold in robust standard deviations.
    smooth_radius : int
        Half-width of the median filter along r.
    min_radius : int
        Smallest radius considered.
    margin : int
        Pixels added on each side of a detected ring radius.

    Returns
    -------
    numpy.ndarray
        Boolean mask of the image's shape (the same annulus on every slice of a
        volume); all False when no ring was found.
    """
    array = check_image(image, name="image")
    if n_sigma <= 0 or min_contrast < 0:
        raise InvalidInputError(
            f"n_sigma must be > 0 and min_contrast >= 0, got {n_sigma}, {min_contrast}"
        )
    smooth_radius = _check_radius(smooth_radius, "smooth_radius")
    margin = _check_radius(margin, "margin")
    min_radius = _check_radius(min_radius, "min_radius")
    if smooth_radius < 1:
        raise InvalidInputError("smooth_radius must be >= 1")
    plane = array.mean(axis=0, dtype=np.float64) if array.ndim == 3 else array.astype(np.float64)
    if center is None:
        center = ((plane.shape[0] - 1) / 2.0, (plane.shape[1] - 1) / 2.0)
    radius, mean, counts = _radial_profile(plane, center)

    # radii sampled by enough pixels for a meaningful mean
    valid = (counts >= 8) & (np.arange(counts.size) >= min_radius)
    result = np.zeros(array.shape, dtype=bool)
    if valid.sum() < 4 * smooth_radius + 1:
        return result
    residual = mean - ndi.median_filter(mean, size=2 * smooth_radius + 1, mode="nearest")
    # the mean over n(r) pixels fluctuates ~ 1/sqrt(n(r)): scale to a common noise level
    score = residual * np.sqrt(counts)
    centre = np.median(score[valid])
    spread = 1.4826 * np.median(np.abs(score[valid] - centre))
    if spread <= 0:
        return result
    robust = np.abs(score - centre) / spread
    rings = valid & (robust > n_sigma) & (np.abs(residual) >= min_contrast)
    if not rings.any():
        return result
    if margin:
        rings = ndi.binary_dilation(rings, np.ones(2 * margin + 1, dtype=bool))
    annulus = rings[radius]
    result[...] = annulus
    return result
