"""Control images for ControlNet: Canny edges, user layers, the inpaint condition.

- :func:`canny_condition`: Canny edges of a slice computed with scikit-image on the
  run's intensity window (fast and pure: the napari widget shows it as a live preview,
  and the engine conditions on exactly that map);
- :func:`control_from_layer`: any user layer, e.g. painted Labels of grains/pores
  (their boundaries, or the filled mask) or an image, as an RGB control image;
- :func:`inpaint_condition`: what the inpaint ControlNet
  (``lllyasviel/control_v11p_sd15_inpaint``) was trained on, the slice with the
  masked pixels set to -1.

Everything here is NumPy / scikit-image except :func:`inpaint_condition`, which
returns a torch tensor (torch imported inside it).
"""

from __future__ import annotations

import numpy as np

from ...core.stack import Window, percentile_window
from ...core.validation import InvalidInputError, check_image
from .canvas import slice_of

#: Integer layers with at most this many distinct values are treated as labels.
MAX_LABEL_VALUES = 32


def canny_condition(
    slice_data: np.ndarray,
    *,
    sigma: float = 2.0,
    low: float = 0.1,
    high: float = 0.2,
    use_quantiles: bool = False,
    window: Window | None = None,
) -> np.ndarray:
    """Canny edge map of a slice, as ControlNet-Canny expects (white edges on black).

    The slice is first mapped to [0, 1] with an intensity window (by default its
    0.5-99.5 percentile range), so thresholds mean the same for 8-bit, 16-bit and
    float data: ``low``/``high`` are hysteresis thresholds on scikit-image's Sobel
    gradient magnitude of the Gaussian-smoothed windowed slice, i.e. in units of the
    window's intensity range (scikit-image's convention for float images). With
    ``use_quantiles=True`` they are quantiles of the gradient magnitude instead
    (``0.8``/``0.9`` keep roughly the strongest 10-20 % of gradients).

    Parameters
    ----------
    slice_data : numpy.ndarray
        2D grayscale slice (uint8, uint16, int16 or float32).
    sigma : float
        Gaussian smoothing in pixels (more = fewer, smoother edges).
    low, high : float
        Hysteresis thresholds, ``0 <= low <= high`` (``<= 1`` with quantiles).
    use_quantiles : bool
        Interpret the thresholds as quantiles.
    window : Window, optional
        Intensity window to use instead of the slice's percentiles (e.g. the volume's).

    Returns
    -------
    numpy.ndarray
        uint8 ``(Y, X)`` map with 255 on edges and 0 elsewhere.
    """
    from skimage.feature import canny

    data = check_image(slice_data, name="slice", ndim=(2,))
    if sigma < 0:
        raise InvalidInputError(f"Canny sigma must be >= 0, got {sigma}")
    if not 0 <= low <= high:
        raise InvalidInputError(
            f"Canny thresholds must satisfy 0 <= low <= high, got {low}, {high}"
        )
    if use_quantiles and high > 1:
        raise InvalidInputError(f"with use_quantiles the thresholds are quantiles <= 1, got {high}")
    window = window if window is not None else percentile_window(data, 0.5, 99.5)
    unit = window.to_unit(data).astype(np.float64)
    edges = canny(
        unit,
        sigma=float(sigma),
        low_threshold=float(low),
        high_threshold=float(high),
        use_quantiles=bool(use_quantiles),
        mode="nearest",
    )
    return edges.astype(np.uint8) * np.uint8(255)


def _is_label_layer(array: np.ndarray) -> bool:
    if array.dtype == bool:
        return True
    if not np.issubdtype(array.dtype, np.integer):
        return False
    values = np.unique(array)
    if len(values) > MAX_LABEL_VALUES:
        return False
    return not (array.dtype == np.uint8 and set(values.tolist()) <= {0, 255})


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return np.array(array, copy=True)
    window = percentile_window(array, 0.5, 99.5)
    return np.rint(window.to_unit(array) * 255.0).astype(np.uint8)


def control_from_layer(
    array: np.ndarray, *, kind: str = "auto", labels_as: str = "boundaries"
) -> np.ndarray:
    """Turn a user layer into an RGB control image.

    Parameters
    ----------
    array : numpy.ndarray
        ``(Y, X)`` labels/mask/image, or ``(Y, X, 3|4)`` RGB(A).
    kind : {"auto", "labels", "image"}
        How to read a 2D layer. ``"auto"``: boolean arrays and integer arrays with at
        most 32 distinct values are labels, except uint8 0/255 maps (already an
        edge map); anything else is an image.
    labels_as : {"boundaries", "mask"}
        For labels: white label boundaries on black (what a Canny ControlNet
        expects: paint grains/pores, get their outlines) or the filled non-zero region.

    Returns
    -------
    numpy.ndarray
        uint8 ``(Y, X, 3)`` control image; images are windowed to their 0.5-99.5
        percentile range unless already uint8.
    """
    from skimage.segmentation import find_boundaries

    if kind not in ("auto", "labels", "image"):
        raise InvalidInputError(f"kind must be 'auto', 'labels' or 'image', got {kind!r}")
    if labels_as not in ("boundaries", "mask"):
        raise InvalidInputError(f"labels_as must be 'boundaries' or 'mask', got {labels_as!r}")
    layer = np.asarray(array)
    if layer.size == 0:
        raise InvalidInputError("the control layer is empty")
    if layer.ndim == 3 and layer.shape[-1] in (3, 4):
        rgb = layer[..., :3]
        if not (np.issubdtype(rgb.dtype, np.number) or rgb.dtype == bool):
            raise InvalidInputError(f"control layer has unsupported dtype {rgb.dtype}")
        return _to_uint8(rgb.astype(np.float32) if rgb.dtype == bool else rgb)
    if layer.ndim != 2:
        raise InvalidInputError(
            f"a control layer must be (Y, X) or (Y, X, 3), got shape {layer.shape}"
        )
    as_labels = kind == "labels" or (kind == "auto" and _is_label_layer(layer))
    if as_labels:
        if labels_as == "boundaries":
            gray = find_boundaries(layer, mode="inner").astype(np.uint8) * np.uint8(255)
        else:
            gray = (layer != 0).astype(np.uint8) * np.uint8(255)
    else:
        gray = _to_uint8(check_image(layer, name="control layer", ndim=(2,)))
    return np.repeat(gray[..., None], 3, axis=-1)


def control_maps(control, image: np.ndarray, zs: list[int]) -> dict[int, np.ndarray]:
    """Per-slice RGB uint8 control images from a user control layer.

    ``control`` is one slice ``(Y, X)`` shared by every slice, the image's shape (one
    control slice per slice), or either with a trailing RGB(A) axis.

    Raises
    ------
    InvalidInputError
        For a layer that fits neither one slice nor the image.
    """
    layer = np.asarray(control)
    slice_shape = image.shape[-2:]
    is_rgb = layer.ndim >= 3 and layer.shape[-1] in (3, 4) and layer.shape[-3:-1] == slice_shape
    spatial = layer.shape[:-1] if is_rgb else layer.shape
    if spatial == slice_shape:
        shared = control_from_layer(layer)
        return dict.fromkeys(zs, shared)
    if image.ndim == 3 and spatial == image.shape:
        return {z: control_from_layer(layer[z]) for z in zs}
    raise InvalidInputError(
        f"control layer shape {layer.shape} fits neither one slice {tuple(slice_shape)} "
        f"nor the volume {image.shape}"
    )


def canny_maps(
    image: np.ndarray,
    zs: list[int],
    window: Window,
    *,
    sigma: float,
    low: float,
    high: float,
    use_quantiles: bool,
) -> dict[int, np.ndarray]:
    """RGB uint8 Canny control images of the slices ``zs``, on the run's intensity ``window``."""
    return {
        z: np.repeat(
            canny_condition(
                slice_of(image, z),
                sigma=sigma,
                low=low,
                high=high,
                use_quantiles=use_quantiles,
                window=window,
            )[..., None],
            3,
            axis=-1,
        )
        for z in zs
    }


def inpaint_condition(units: np.ndarray, masks: np.ndarray):
    """Control image for the inpaint ControlNet: the image with masked pixels set to -1.

    Parameters
    ----------
    units : numpy.ndarray
        ``(B, H, W)`` grayscale in [0, 1].
    masks : numpy.ndarray
        ``(B, H, W)`` boolean, True where the model generates.

    Returns
    -------
    torch.Tensor
        ``(B, 3, H, W)`` float32.
    """
    import torch

    control = np.repeat(np.asarray(units, dtype=np.float32)[:, None], 3, axis=1)
    control[np.repeat(np.asarray(masks, dtype=bool)[:, None], 3, axis=1)] = -1.0
    return torch.from_numpy(control)
