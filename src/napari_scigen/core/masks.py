"""Mask helpers: grow, shrink, feather, threshold, copy across slices, ring detection.

All functions return new arrays and never modify their inputs. Masks are 2D
(Y, X) or 3D (Z, Y, X); morphology works per slice (a disk in each slice,
never across z), because masks are painted slice by slice and microCT slices
are often anisotropic. Label images (integer dtype) keep their dtype and label
values where that makes sense (:func:`grow_mask`, :func:`shrink_mask`,
:func:`copy_slice_mask`); boolean masks stay boolean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .params import EngineParams, param
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


@dataclass(frozen=True)
class RingDetectorParams(EngineParams):
    """The settings of :func:`detect_ring_artifacts` (the Mask painting widget's form)."""

    n_sigma: float = param(
        6.0,
        help="detection threshold: how consistent (t statistic over slices and directions) "
        "a radius must be to count as a ring; higher = fewer rings",
        min=0.0,
        min_exclusive=True,
        step=0.5,
        label="threshold (t)",
        cli=False,
    )
    relative_contrast: float = param(
        0.01,
        help="smallest ring contrast as a fraction of the image's 1-99 percentile span "
        "(0 = no limit); higher = only strong rings",
        min=0.0,
        max=1.0,
        step=0.005,
        label="min contrast (fraction)",
        cli=False,
    )
    margin: int = param(
        1,
        help="pixels added on each side of a detected ring radius (1 covers a ring's width)",
        min=0,
        max=20,
        label="margin (px)",
        cli=False,
    )
    min_contrast: float = param(
        0.0,
        help="smallest ring contrast in data units (0 = no limit)",
        min=0.0,
        label="min contrast (data units)",
        advanced=True,
        cli=False,
    )
    smooth_radius: int = param(
        1,
        help="half-width of the median filter along the radius: features narrower than "
        "2 * this + 1 pixels count as rings",
        min=1,
        max=20,
        label="smoothing half-width (px)",
        advanced=True,
        cli=False,
    )
    sectors: int = param(
        8,
        help="angular sectors per slice compared with each other (a ring is the same in all)",
        min=2,
        max=64,
        advanced=True,
        cli=False,
    )
    min_radius: int = param(
        4,
        help="smallest radius considered (very small radii have too few pixels)",
        min=0,
        label="min radius (px)",
        advanced=True,
        cli=False,
    )


#: Default parameters of :func:`detect_ring_artifacts`.
RING_DEFAULTS = RingDetectorParams().to_dict()


def _sector_profiles(array: np.ndarray, center: tuple[float, float], sectors: int):
    """Azimuthal mean of every slice in ``sectors`` angular sectors, per integer radius.

    Returns ``(radius, profiles, counts)``: the integer radius of each pixel, profiles of
    shape ``(slices * sectors, n_radii)`` and the pixel count of each (sector, radius) bin.
    """
    ny, nx = array.shape[-2:]
    yy, xx = np.indices((ny, nx), dtype=np.float64)
    dy, dx = yy - center[0], xx - center[1]
    radius = np.rint(np.hypot(dy, dx)).astype(np.intp)
    sector = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * sectors).astype(np.intp)
    sector = np.minimum(sector, sectors - 1)
    n_radii = int(radius.max()) + 1
    bins = (sector * n_radii + radius).ravel()
    counts = np.bincount(bins, minlength=sectors * n_radii).reshape(sectors, n_radii)
    planes = array if array.ndim == 3 else array[np.newaxis]
    profiles = np.empty((planes.shape[0], sectors, n_radii))
    for index, plane in enumerate(planes):
        weights = plane.ravel().astype(np.float64)
        sums = np.bincount(bins, weights=weights, minlength=sectors * n_radii)
        profiles[index] = sums.reshape(sectors, n_radii) / np.maximum(counts, 1)
    return radius, profiles.reshape(-1, n_radii), counts


def detect_ring_artifacts(
    image,
    *,
    center: tuple[float, float] | None = None,
    n_sigma: float = RING_DEFAULTS["n_sigma"],
    relative_contrast: float = RING_DEFAULTS["relative_contrast"],
    min_contrast: float = RING_DEFAULTS["min_contrast"],
    smooth_radius: int = RING_DEFAULTS["smooth_radius"],
    sectors: int = RING_DEFAULTS["sectors"],
    min_radius: int = RING_DEFAULTS["min_radius"],
    margin: int = RING_DEFAULTS["margin"],
) -> np.ndarray:
    """Detect concentric ring artifacts (tomographic reconstruction) and mask them.

    A miscalibrated detector pixel draws, in every slice, a thin circle of the same
    radius around the rotation axis, as bright (or dark) all the way round. Real
    structure is neither the same in every slice nor the same in every direction. So:

    Method
        1. Every slice is split into ``sectors`` angular sectors about ``center``;
           each (slice, sector) gives a radial profile: the mean at each integer
           radius ``r``.
        2. Each profile minus its median filter along r (window
           ``2 * smooth_radius + 1``) keeps features narrower than the window
           (rings are 1-2 pixels wide) and drops grains, pores and the sample's edge.
        3. For each radius, the mean of these residuals over all (slice, sector)
           samples divided by its standard error is a t statistic: large only where
           the residual has the same sign in every slice and direction.
        4. Ring radii: ``|t| > n_sigma``, a contrast of at least
           ``relative_contrast`` times the image's 1-99 percentile span and at least
           ``min_contrast`` data units, and the strongest of their neighbours (a
           reconstructed ring has a weaker side lobe of opposite sign next to it).
        5. The mask is the annulus of those radii, widened by ``margin`` pixels.

    On the rock sample (``make_rock_volume()``, 8 rings) this masks 8.8 % of the
    volume with an IoU of 0.62 against the true ring mask; on the artifact-free
    scan and the fibre sample it masks nothing.

    Limits
        Rings must be centred on ``center`` (the rotation axis) and narrower than
        about ``2 * smooth_radius + 1`` pixels; partial arcs are weakened by the
        sector statistics. A thin real circular feature concentric with the axis (a
        container wall) is detected too. Radii below ``min_radius`` (too few
        pixels) are never flagged.

    Parameters
    ----------
    image : array-like
        2D slice or 3D volume.
    center : tuple of float, optional
        ``(row, col)`` of the rotation axis; defaults to ``(rows // 2, cols // 2)``,
        the axis of a parallel-beam reconstruction such as
        :func:`skimage.transform.iradon` (and of the synthetic samples).
    n_sigma : float
        Detection threshold on the t statistic (> 0).
    relative_contrast : float
        Smallest ring contrast as a fraction of the image's 1-99 percentile span
        (``0`` disables it).
    min_contrast : float
        Smallest ring contrast in data units (``0`` disables it).
    smooth_radius : int
        Half-width (>= 1) of the median filter along r.
    sectors : int
        Angular sectors per slice (>= 2).
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
    if not n_sigma > 0 or min_contrast < 0 or relative_contrast < 0:
        raise InvalidInputError(
            "n_sigma must be > 0 and min_contrast, relative_contrast >= 0, got "
            f"{n_sigma}, {min_contrast}, {relative_contrast}"
        )
    smooth_radius = _check_radius(smooth_radius, "smooth_radius")
    margin = _check_radius(margin, "margin")
    min_radius = _check_radius(min_radius, "min_radius")
    sectors = _check_radius(sectors, "sectors")
    if smooth_radius < 1:
        raise InvalidInputError("smooth_radius must be >= 1")
    if sectors < 2:
        raise InvalidInputError(f"sectors must be >= 2, got {sectors}")
    if center is None:
        center = (array.shape[-2] // 2, array.shape[-1] // 2)
    radius, profiles, counts = _sector_profiles(array, center, sectors)
    result = np.zeros(array.shape, dtype=bool)
    n_samples, n_radii = profiles.shape
    if n_samples < 3 or n_radii < 2 * smooth_radius + 2:
        return result
    window = 2 * smooth_radius + 1
    residual = profiles - ndi.median_filter(profiles, size=(1, window), mode="nearest")
    mean = residual.mean(axis=0)
    error = residual.std(axis=0, ddof=1) / np.sqrt(n_samples)
    valid = (counts.min(axis=0) >= 3) & (np.arange(n_radii) >= min_radius)
    low, high = np.percentile(array, (1.0, 99.0))
    contrast = max(float(min_contrast), relative_contrast * float(high - low))
    floor = 1e-12 * max(float(high - low), 1e-12)  # a noiseless ring: infinite t
    score = np.where(valid, np.abs(mean) / np.maximum(error, floor), 0.0)
    rings = valid & (score > n_sigma) & (np.abs(mean) >= contrast)
    rings &= score >= ndi.maximum_filter1d(score, 3, mode="nearest")
    if not rings.any():
        return result
    if margin:
        rings = ndi.binary_dilation(rings, np.ones(2 * margin + 1, dtype=bool))
    result[...] = rings[radius]
    return result
