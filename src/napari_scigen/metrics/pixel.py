"""SSIM and PSNR with an explicit data range, per slice and per volume, optionally masked.

Conventions
-----------
* ``data_range`` is never guessed from the pixel values of *both* images. By default
  it is the span of the reference's integer dtype (``uint16`` -> 65535) or, for float
  references, ``max - min`` of the reference. Pass a number to set it, or a window
  ``(low, high)``: both images are then clipped to ``[low, high]`` and
  ``data_range = high - low``. For 16-bit microCT whose values fill only part of the
  dtype range, a window (e.g. the 0.5-99.5 percentiles of the reference) gives far
  more meaningful SSIM values than the dtype span, which makes SSIM's stabilising
  constants huge and every comparison look good.
* Volumes ``(Z, Y, X)`` are compared slice by slice with 2D SSIM; the per-slice values
  are returned together with the volume value.
* SSIM values are means of the SSIM map, ignoring the ``(win_size - 1) // 2`` border
  strip exactly as :func:`skimage.metrics.structural_similarity` does. With a mask,
  the mean is restricted to the region (``"inside"`` the mask or ``"outside"`` it) of
  that interior. PSNR uses the mean squared error over the region.
* The volume SSIM is the mean of the SSIM map over every counted pixel of every slice
  (without a mask: the mean of the per-slice values). The volume PSNR uses the MSE
  pooled over all counted voxels (not the mean of per-slice PSNRs, which is ``inf``
  as soon as one slice is identical).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.stack import data_range_for
from ..core.validation import InvalidInputError, check_image, check_mask

#: Regions a masked metric can be computed over.
REGIONS = ("all", "inside", "outside")

DataRange = float | tuple[float, float] | None


@dataclass(frozen=True)
class SliceScores:
    """A metric computed slice by slice, plus its value for the whole image.

    Parameters
    ----------
    metric : str
        ``"ssim"`` or ``"psnr"``.
    values : tuple of float
        One value per slice (a 2D image has one slice). ``nan`` for slices with no
        pixel in the region.
    value : float
        The value for the whole image or volume (see the module notes for pooling).
    data_range : float
        The data range used.
    region : str
        ``"all"``, ``"inside"`` or ``"outside"``.
    window : tuple of float or None
        The ``(low, high)`` window both images were clipped to, if any.
    """

    metric: str
    values: tuple[float, ...]
    value: float
    data_range: float
    region: str
    window: tuple[float, float] | None = None

    @property
    def mean(self) -> float:
        """Alias of :attr:`value` (mean SSIM, pooled PSNR)."""
        return self.value

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly description."""
        return {
            "metric": self.metric,
            "value": self.value,
            "per_slice": list(self.values),
            "data_range": self.data_range,
            "region": self.region,
            "window": list(self.window) if self.window is not None else None,
        }


def check_pair(
    reference, generated, *, ndim: tuple[int, ...] = (2, 3)
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two images for comparison (same shape and dtype).

    Parameters
    ----------
    reference, generated : array-like
        2D slices or 3D volumes.
    ndim : tuple of int
        Accepted numbers of dimensions.

    Returns
    -------
    tuple of numpy.ndarray

    Raises
    ------
    InvalidInputError
        If either image is invalid or their shapes or dtypes differ.
    """
    ref = check_image(reference, name="reference", ndim=ndim)
    gen = check_image(generated, name="generated", ndim=ndim)
    if ref.shape != gen.shape:
        raise InvalidInputError(
            f"reference shape {ref.shape} and generated shape {gen.shape} differ; "
            "metrics compare images pixel by pixel, so crop or resample one onto the other's grid"
        )
    if ref.dtype != gen.dtype:
        raise InvalidInputError(
            f"reference dtype {ref.dtype} and generated dtype {gen.dtype} differ; convert the "
            f"generated image to {ref.dtype} on the same intensity scale (e.g. Window.from_unit) "
            "so the data range means the same for both"
        )
    return ref, gen


def resolve_data_range(
    reference: np.ndarray, data_range: DataRange
) -> tuple[float, tuple[float, float] | None]:
    """Turn a ``data_range`` argument into ``(range, window)``.

    Parameters
    ----------
    reference : numpy.ndarray
        The reference image (its dtype or values set the default).
    data_range : float, (low, high) or None
        ``None``: dtype span for integers, ``max - min`` for floats. A number: used
        as is. A pair: a window both images are clipped to.

    Returns
    -------
    tuple
        ``(data_range, window or None)``.
    """
    if data_range is None:
        return data_range_for(reference), None
    if np.ndim(data_range) == 0:
        value = float(data_range)
        if not np.isfinite(value) or value <= 0:
            raise InvalidInputError(f"data_range must be a positive number, got {data_range!r}")
        return value, None
    low, high = (float(v) for v in data_range)
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        raise InvalidInputError(f"window (low, high) must satisfy low < high, got {data_range!r}")
    return high - low, (low, high)


#: The default scoring window of every front-end: these percentiles of the reference.
SCORING_PERCENTILES = (0.5, 99.5)
#: ``data_range`` value asking for the old default, the dtype span / reference max-min.
SPAN = "span"


@dataclass(frozen=True)
class ScoringWindow:
    """The intensity scale pixel metrics are scored on, and the sentence saying which.

    Attributes
    ----------
    data_range : float, (low, high) or None
        What to pass as ``data_range`` to :func:`psnr`, :func:`ssim` and
        :func:`~napari_scigen.metrics.gradient.gmsd`.
    description : str
        One line for every report (``"window: reference 0.5-99.5 percentiles [a, b]"``).
    """

    data_range: DataRange
    description: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"data_range", "description"}``."""
        value = self.data_range
        return {
            "data_range": list(value) if isinstance(value, tuple) else value,
            "description": self.description,
        }


def scoring_window(reference: np.ndarray, data_range: DataRange | str = None) -> ScoringWindow:
    """The one default scoring window every front-end uses (metrics, dock, validate, compare).

    Parameters
    ----------
    reference : numpy.ndarray
        The whole reference (volume or slice), before any slice selection.
    data_range : None, "span", float or (low, high)
        ``None`` (default): the reference's :data:`SCORING_PERCENTILES` window, so a
        16-bit scan that fills part of its dtype is not flattered by the dtype span (a
        constant reference's window is widened to one grey level). ``"span"``: the dtype span for
        integers, ``max - min`` for floats. A number or a window: used as given.

    Returns
    -------
    ScoringWindow

    Examples
    --------
    >>> reference = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    >>> scoring_window(reference, "span").description
    'data range: dtype span 65535'
    >>> scoring_window(reference, (0, 4000)).data_range
    (0.0, 4000.0)
    """
    from ..core.stack import percentile_window

    if isinstance(data_range, str):
        if data_range.strip().lower() != SPAN:
            raise InvalidInputError(
                f"data_range must be a number, (low, high), {SPAN!r} or None; got {data_range!r}"
            )
        value = data_range_for(reference)
        what = "dtype span" if np.issubdtype(np.asarray(reference).dtype, np.integer) else "max-min"
        return ScoringWindow(None, f"data range: {what} {value:g}")
    if data_range is None:
        low, high = SCORING_PERCENTILES
        window = percentile_window(reference, low, high)  # a constant one is widened by 1
        return ScoringWindow(
            (float(window.low), float(window.high)),
            f"window: reference {low:g}-{high:g} percentiles [{window.low:g}, {window.high:g}]",
        )
    value_range, window = resolve_data_range(reference, data_range)
    if window is not None:
        return ScoringWindow(window, f"window: given [{window[0]:g}, {window[1]:g}]")
    return ScoringWindow(value_range, f"data range: given {value_range:g}")


def _region_mask(mask: np.ndarray | None, region: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """Boolean array of the counted pixels (``None`` means every pixel)."""
    if region not in REGIONS:
        raise InvalidInputError(f"unknown region {region!r}; choose one of {', '.join(REGIONS)}")
    if mask is None:
        if region != "all":
            raise InvalidInputError(f"region={region!r} needs a mask")
        return None
    boolean = check_mask(mask, shape, allow_empty=True)
    if region == "inside":
        return np.asarray(boolean)
    if region == "outside":
        return ~boolean
    return None


def _as_slices(array: np.ndarray) -> np.ndarray:
    return array[np.newaxis] if array.ndim == 2 else array


def _windowed(slice_: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    if window is None:
        return slice_
    return np.clip(slice_.astype(np.float64), window[0], window[1])


def _ssim_slice_map(
    ref: np.ndarray,
    gen: np.ndarray,
    *,
    data_range: float,
    window: tuple[float, float] | None,
    win_size: int | None,
    gaussian_weights: bool,
    sigma: float,
    use_sample_covariance: bool,
    K1: float,
    K2: float,
) -> tuple[np.ndarray, int]:
    """The full SSIM map of one slice and the border width skimage ignores."""
    from skimage.metrics import structural_similarity

    if win_size is None:
        win_size = 2 * int(3.5 * sigma + 0.5) + 1 if gaussian_weights else 7
    if min(ref.shape) < win_size:
        raise InvalidInputError(
            f"slices of shape {ref.shape} are smaller than the SSIM window ({win_size}); "
            "pass a smaller odd win_size"
        )
    _, full_map = structural_similarity(
        _windowed(ref, window),
        _windowed(gen, window),
        data_range=data_range,
        win_size=win_size,
        gaussian_weights=gaussian_weights,
        sigma=sigma,
        use_sample_covariance=use_sample_covariance,
        K1=K1,
        K2=K2,
        full=True,
    )
    return full_map, (win_size - 1) // 2


def _interior(shape: tuple[int, int], pad: int) -> np.ndarray:
    inside = np.zeros(shape, dtype=bool)
    inside[pad : shape[0] - pad, pad : shape[1] - pad] = True
    return inside


def ssim_report(
    reference,
    generated,
    *,
    data_range: DataRange = None,
    mask=None,
    regions: tuple[str, ...] = ("all",),
    win_size: int | None = None,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    use_sample_covariance: bool = True,
    K1: float = 0.01,
    K2: float = 0.03,
) -> tuple[dict[str, SliceScores], np.ndarray]:
    """SSIM over several regions and the float32 SSIM map, computing the map once.

    Parameters are those of :func:`ssim`, with ``regions`` a tuple of region names.

    Returns
    -------
    tuple
        ``({region: SliceScores}, ssim map)``.
    """
    ref, gen = check_pair(reference, generated)
    value_range, window = resolve_data_range(ref, data_range)
    counted = {region: _region_mask(mask, region, ref.shape) for region in regions}
    ref_slices, gen_slices = _as_slices(ref), _as_slices(gen)
    maps = np.empty(ref_slices.shape, dtype=np.float32)
    values: dict[str, list[float]] = {region: [] for region in regions}
    totals = {region: [0.0, 0] for region in regions}
    for index in range(ref_slices.shape[0]):
        full_map, pad = _ssim_slice_map(
            ref_slices[index],
            gen_slices[index],
            data_range=value_range,
            window=window,
            win_size=win_size,
            gaussian_weights=gaussian_weights,
            sigma=sigma,
            use_sample_covariance=use_sample_covariance,
            K1=K1,
            K2=K2,
        )
        maps[index] = full_map
        interior = _interior(full_map.shape, pad)
        for region in regions:
            keep = (
                interior
                if counted[region] is None
                else interior & _as_slices(counted[region])[index]
            )
            n = int(keep.sum())
            if n == 0:
                values[region].append(float("nan"))
                continue
            slice_sum = float(full_map[keep].sum(dtype=np.float64))
            values[region].append(slice_sum / n)
            totals[region][0] += slice_sum
            totals[region][1] += n
    scores = {
        region: SliceScores(
            "ssim",
            tuple(values[region]),
            totals[region][0] / totals[region][1] if totals[region][1] else float("nan"),
            value_range,
            region,
            window,
        )
        for region in regions
    }
    return scores, (maps[0] if ref.ndim == 2 else maps)


def ssim(
    reference,
    generated,
    *,
    data_range: DataRange = None,
    mask=None,
    region: str = "all",
    win_size: int | None = None,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    use_sample_covariance: bool = True,
    K1: float = 0.01,
    K2: float = 0.03,
) -> SliceScores:
    """Structural similarity of a slice or, slice by slice, of a volume.

    Parameters
    ----------
    reference, generated : numpy.ndarray
        2D ``(Y, X)`` or 3D ``(Z, Y, X)`` images with the same shape and dtype.
    data_range : float, (low, high) or None
        See the module notes; the default is the reference dtype's span (integers)
        or ``max - min`` of the reference (floats).
    mask : numpy.ndarray, optional
        Non-zero pixels form the region (a 2D mask applies to every slice).
    region : {"all", "inside", "outside"}
        Which pixels of the SSIM map are averaged; ``"inside"``/``"outside"`` need
        ``mask``.
    win_size, gaussian_weights, sigma, use_sample_covariance, K1, K2
        As in :func:`skimage.metrics.structural_similarity`. Wang et al. (2004) use
        ``gaussian_weights=True, use_sample_covariance=False``.

    Returns
    -------
    SliceScores
        Per-slice SSIM and the mean over all counted pixels.

    Raises
    ------
    InvalidInputError
        On shape or dtype mismatch, a bad window, or a region without a mask.
    """
    scores, _ = ssim_report(
        reference,
        generated,
        data_range=data_range,
        mask=mask,
        regions=(region,),
        win_size=win_size,
        gaussian_weights=gaussian_weights,
        sigma=sigma,
        use_sample_covariance=use_sample_covariance,
        K1=K1,
        K2=K2,
    )
    return scores[region]


def ssim_map(
    reference,
    generated,
    *,
    data_range: DataRange = None,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    use_sample_covariance: bool = True,
    K1: float = 0.01,
    K2: float = 0.03,
) -> np.ndarray:
    """The full SSIM map, slice by slice, as float32 (for an image layer).

    Parameters
    ----------
    reference, generated : numpy.ndarray
        2D or 3D images with the same shape and dtype.
    data_range, win_size, gaussian_weights, sigma, use_sample_covariance, K1, K2
        As in :func:`ssim`.

    Returns
    -------
    numpy.ndarray
        float32 array with the input's shape; values in ``[-1, 1]``. The border strip
        of width ``(win_size - 1) // 2`` is included but is not used by :func:`ssim`.
    """
    _, full_map = ssim_report(
        reference,
        generated,
        data_range=data_range,
        win_size=win_size,
        gaussian_weights=gaussian_weights,
        sigma=sigma,
        use_sample_covariance=use_sample_covariance,
        K1=K1,
        K2=K2,
    )
    return full_map


def _psnr_from_mse(mse: float, data_range: float) -> float:
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def psnr(
    reference,
    generated,
    *,
    data_range: DataRange = None,
    mask=None,
    region: str = "all",
) -> SliceScores:
    """Peak signal-to-noise ratio (dB) of a slice or, slice by slice, of a volume.

    Parameters
    ----------
    reference, generated : numpy.ndarray
        2D or 3D images with the same shape and dtype.
    data_range : float, (low, high) or None
        See the module notes.
    mask : numpy.ndarray, optional
        Non-zero pixels form the region (a 2D mask applies to every slice).
    region : {"all", "inside", "outside"}
        Which pixels enter the mean squared error.

    Returns
    -------
    SliceScores
        Per-slice PSNR and the PSNR of the MSE pooled over all counted voxels
        (``inf`` where the images are identical there).
    """
    ref, gen = check_pair(reference, generated)
    value_range, window = resolve_data_range(ref, data_range)
    counted = _region_mask(mask, region, ref.shape)
    ref_slices, gen_slices = _as_slices(ref), _as_slices(gen)
    counted_slices = None if counted is None else _as_slices(counted)
    values: list[float] = []
    total, count = 0.0, 0
    for index in range(ref_slices.shape[0]):
        ref_slice = _windowed(ref_slices[index], window).astype(np.float64)
        gen_slice = _windowed(gen_slices[index], window).astype(np.float64)
        squared = (ref_slice - gen_slice) ** 2
        if counted_slices is not None:
            squared = squared[counted_slices[index]]
        if squared.size == 0:
            values.append(float("nan"))
            continue
        slice_sum = float(squared.sum())
        values.append(_psnr_from_mse(slice_sum / squared.size, value_range))
        total += slice_sum
        count += squared.size
    value = _psnr_from_mse(total / count, value_range) if count else float("nan")
    return SliceScores("psnr", tuple(values), value, value_range, region, window)
