"""Classical (offline, CPU) engines: biharmonic inpainting and slice interpolation.

These are the baselines every generative engine is compared against. Both are
generator functions in the engine style of :mod:`napari_scigen.core.progress`:
they yield :class:`~napari_scigen.core.progress.Progress` events and return an
:class:`~napari_scigen.core.result.EngineResult`. Neither modifies its input;
results keep the input dtype and stay inside the input's own ``[min, max]``.

* :func:`run_inpaint` fills masked pixels with
  :func:`skimage.restoration.inpaint_biharmonic`, slice by slice, working only
  on boxes around the masked regions (see :mod:`napari_scigen.core.tiling`).
* :func:`run_interpolate` rebuilds missing slices of a volume, or upsamples it
  along z, by linear blending or by motion-compensated blending along a TV-L1
  optical flow.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from ..core.progress import CancelToken, Progress, check_cancelled
from ..core.provenance import make_provenance
from ..core.result import EngineResult
from ..core.tiling import Box, blend_weights, mask_bounding_boxes, tiles_covering
from ..core.validation import InvalidInputError, check_image, check_mask

#: Radius of the biharmonic stencil: masked pixels closer than this to a box edge
#: see a truncated stencil, so boxes need at least this much known context.
BIHARMONIC_RADIUS = 2

INTERPOLATION_METHODS = ("linear", "flow")


def _cast_like(values: np.ndarray, dtype: np.dtype, low: float, high: float) -> np.ndarray:
    """Clip float values to ``[low, high]``, round for integer dtypes, cast to ``dtype``."""
    clipped = np.clip(values, low, high)
    if np.issubdtype(dtype, np.integer):
        clipped = np.rint(clipped)
    return clipped.astype(dtype)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# --------------------------------------------------------------------------- inpainting


@dataclass(frozen=True)
class InpaintParams:
    """Parameters of :func:`run_inpaint`.

    Parameters
    ----------
    tile_size : int
        Largest box side solved in one piece. Masked regions whose box (with
        context) is larger are solved on overlapping tiles of this size, with
        Dirichlet values from a coarse solve on the tile seams, and blended.
    context : int
        Known pixels kept around each masked region as its boundary condition
        (``>= 2``, the biharmonic stencil radius).
    """

    tile_size: int = 256
    context: int = 16

    def __post_init__(self) -> None:
        if not _is_int(self.tile_size):
            raise InvalidInputError(f"tile_size must be an integer, got {self.tile_size!r}")
        if not _is_int(self.context):
            raise InvalidInputError(f"context must be an integer, got {self.context!r}")
        if self.context < BIHARMONIC_RADIUS:
            raise InvalidInputError(
                f"context must be >= {BIHARMONIC_RADIUS} pixels (the biharmonic stencil "
                f"radius), got {self.context}"
            )
        if self.tile_size < 2 * self.context + 16:
            raise InvalidInputError(
                f"tile_size ({self.tile_size}) must be at least 2 * context + 16 = "
                f"{2 * self.context + 16} so a tile has room for masked pixels besides its "
                "context; raise tile_size or lower context"
            )


def _coarse_fill(data: np.ndarray, mask: np.ndarray, box: Box, target: int) -> np.ndarray:
    """A cheap approximate fill of a box's masked pixels from a low-resolution biharmonic solve.

    The box plus a margin of known pixels is block-averaged by an integer factor
    so its longer side is at most ``target`` (a block counts as known only when
    all its pixels are), inpainted at that resolution, and upsampled bilinearly.

    Returns
    -------
    numpy.ndarray
        float64 crop of ``box`` with its masked pixels filled approximately.
    """
    from skimage.restoration import inpaint_biharmonic
    from skimage.transform import resize

    factor = max(2, math.ceil(max(box.shape) / target))
    margin = (BIHARMONIC_RADIUS + 1) * factor  # the coarse stencil needs 2 known blocks
    y0, x0 = max(0, box.y0 - margin), max(0, box.x0 - margin)
    y1, x1 = min(data.shape[0], box.y1 + margin), min(data.shape[1], box.x1 + margin)
    values = data[y0:y1, x0:x1].astype(np.float64)
    region_mask = mask[y0:y1, x0:x1]
    rows, cols = values.shape
    pad = ((0, -rows % factor), (0, -cols % factor))
    padded = np.pad(values, pad, mode="edge")
    known = np.pad(~region_mask, pad, mode="edge")
    blocks = (padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    coarse = padded.reshape(blocks).mean(axis=(1, 3))
    coarse_mask = ~known.reshape(blocks).all(axis=(1, 3))
    if coarse_mask.all():  # no fully known block: fall back to blocks with any known pixel
        counts = known.reshape(blocks).sum(axis=(1, 3))
        coarse = np.where(known, padded, 0.0).reshape(blocks).sum(axis=(1, 3))
        coarse = coarse / np.maximum(counts, 1)
        coarse_mask = counts == 0
    coarse = inpaint_biharmonic(coarse, coarse_mask)
    upsampled = resize(
        coarse, padded.shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True
    )[:rows, :cols]
    values[region_mask] = upsampled[region_mask]
    inner = Box(box.y0 - y0, box.y1 - y0, box.x0 - x0, box.x1 - x0)
    return values[inner.slices]


def _seam_band(tile: Box, crop_shape: tuple[int, int]) -> np.ndarray:
    """Pixels of ``tile`` within the stencil radius of an edge that lies inside the crop."""
    band = np.zeros(tile.shape, dtype=bool)
    r = BIHARMONIC_RADIUS
    if tile.y0 > 0:
        band[:r] = True
    if tile.y1 < crop_shape[0]:
        band[-r:] = True
    if tile.x0 > 0:
        band[:, :r] = True
    if tile.x1 < crop_shape[1]:
        band[:, -r:] = True
    return band


def _inpaint_large_box(
    data: np.ndarray,
    slice_mask: np.ndarray,
    box: Box,
    params: InpaintParams,
    cancel: CancelToken | None,
) -> tuple[np.ndarray, int]:
    """Inpaint a crop larger than ``tile_size`` on overlapping, blended tiles.

    Each tile is solved with the known pixels as boundary condition plus, on
    its seams inside the crop, Dirichlet values from :func:`_coarse_fill`
    (a tile deep inside a big region may hold no known pixel at all). Seam
    pixels get zero weight in their own tile; the neighbour tile, which
    overlaps by ``2 * context`` pixels, provides them.

    Returns
    -------
    tuple
        The filled crop (float64) and the number of tile solves.
    """
    from skimage.restoration import inpaint_biharmonic

    tile_size, overlap = params.tile_size, 2 * params.context
    crop = data[box.slices].astype(np.float64)
    mask = np.array(slice_mask[box.slices], dtype=bool)
    coarse = _coarse_fill(data, slice_mask, box, tile_size)
    accumulated = np.zeros(crop.shape, dtype=np.float64)
    weights = np.zeros(crop.shape, dtype=np.float64)
    n_solves = 0
    for tile in tiles_covering(crop.shape, tile_size, overlap):
        tile_mask = mask[tile.slices]
        band = _seam_band(tile, crop.shape)
        solve_mask = tile_mask & ~band
        if not solve_mask.any():
            continue
        check_cancelled(cancel)
        values = crop[tile.slices].copy()
        seam = tile_mask & band
        values[seam] = coarse[tile.slices][seam]
        filled = inpaint_biharmonic(values, solve_mask)
        weight = blend_weights(tile.shape, overlap).astype(np.float64)
        weight[band] = 0.0
        accumulated[tile.slices] += weight * filled
        weights[tile.slices] += weight
        n_solves += 1
    if not (weights[mask] > 0).all():  # guaranteed by the tile_size check in InpaintParams
        raise RuntimeError("internal error: a masked pixel was not covered by any tile core")
    result = crop.copy()
    result[mask] = accumulated[mask] / weights[mask]
    return result, n_solves


def _inpaint_slice(
    data: np.ndarray, mask: np.ndarray, params: InpaintParams, cancel: CancelToken | None
) -> tuple[list[tuple[Box, np.ndarray, np.ndarray]], int, int]:
    """Biharmonic fill of one slice, box by box.

    Returns
    -------
    tuple
        ``(fills, n_boxes, n_tiled)``: for each box the box, its mask and the
        float64 values of its masked pixels; the number of boxes; and how many
        of them were larger than ``tile_size`` and solved on tiles.
    """
    from skimage.restoration import inpaint_biharmonic

    fills = []
    n_tiled = 0
    boxes = mask_bounding_boxes(mask, context=params.context)
    for box in boxes:
        check_cancelled(cancel)
        crop = data[box.slices].astype(np.float64)
        box_mask = np.array(mask[box.slices], dtype=bool)  # writable: skimage needs it
        if max(box.shape) <= params.tile_size:
            filled = inpaint_biharmonic(crop, box_mask)
        else:
            filled, _ = _inpaint_large_box(data, mask, box, params, cancel)
            n_tiled += 1
        fills.append((box, box_mask, filled[box_mask]))
    return fills, len(boxes), n_tiled


def run_inpaint(
    image,
    mask,
    params: InpaintParams = InpaintParams(),  # noqa: B008 - frozen dataclass, immutable
    *,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Fill masked pixels with a biharmonic (smooth) continuation of their surroundings.

    Works slice by slice on a 2D slice or a 3D volume (Z, Y, X). Within a slice
    only boxes around the masked regions are solved (the known pixels in
    ``params.context`` around a region are its boundary condition), so a large
    slice with a small mask costs little. The computation is in float64; the
    result is rounded (integer dtypes), clipped to the input's own
    ``[min, max]`` and cast back to the input dtype. Pixels outside the mask are
    bit-identical to the input, which is never modified. Slices with an empty
    mask are skipped.

    Parameters
    ----------
    image : array-like
        2D slice or 3D volume (uint8, uint16, int16 or float32).
    mask : array-like
        Non-zero where pixels are to be filled; same shape as ``image``, or one
        2D slice's shape for a volume (then used on every slice).
    params : InpaintParams
        Box size and context.
    cancel : CancelToken, optional
        Checked before each slice and each box.

    Yields
    ------
    Progress
        One event per slice (``"inpaint slice 3/10"``).

    Returns
    -------
    EngineResult
        ``data`` is the filled copy. Provenance engine ``"inpaint-biharmonic"``
        with the masked pixel count, boxes per slice and skipped slices.

    Raises
    ------
    InvalidInputError
        Empty mask, mask shape mismatch, NaN/inf, RGB or unsupported dtype, or a
        slice that is masked entirely (nothing to continue from).
    Cancelled
        When ``cancel`` is set; nothing is returned.
    """
    array = check_image(image, name="image")
    boolean = check_mask(mask, array.shape, name="mask")
    volume = array[np.newaxis] if array.ndim == 2 else array
    masks = boolean[np.newaxis] if boolean.ndim == 2 else boolean
    n_slices = volume.shape[0]
    fully_masked = [z for z in range(n_slices) if masks[z].all()]
    if fully_masked:
        raise InvalidInputError(
            f"slice(s) {fully_masked} are masked entirely: biharmonic inpainting needs "
            "known pixels around the masked region; shrink the mask"
        )
    low, high = float(array.min()), float(array.max())
    out = np.array(volume, copy=True)
    boxes_per_slice: list[int] = []
    tiled_per_slice: list[int] = []
    skipped: list[int] = []
    for z in range(n_slices):
        check_cancelled(cancel)
        slice_mask = masks[z]
        if slice_mask.any():
            fills, n_boxes, n_tiled = _inpaint_slice(volume[z], slice_mask, params, cancel)
            target = out[z]
            for box, box_mask, values in fills:
                region = target[box.slices]
                region[box_mask] = _cast_like(values, array.dtype, low, high)
        else:
            n_boxes = n_tiled = 0
            skipped.append(z)
        boxes_per_slice.append(n_boxes)
        tiled_per_slice.append(n_tiled)
        yield Progress(z + 1, n_slices, f"inpaint slice {z + 1}/{n_slices}")

    data = out[0] if array.ndim == 2 else out
    provenance = make_provenance(
        "inpaint-biharmonic",
        params,
        source={"shape": array.shape, "dtype": array.dtype.name},
        extra={
            "masked_pixels": int(np.count_nonzero(masks)),
            "boxes_per_slice": boxes_per_slice,
            "n_boxes": int(sum(boxes_per_slice)),
            "tiled_boxes_per_slice": tiled_per_slice,
            "skipped_slices": skipped,
            "output_range": [low, high],
        },
    )
    return EngineResult(data=data, provenance=provenance)


# --------------------------------------------------------------------------- interpolation


@dataclass(frozen=True)
class InterpolateParams:
    """Parameters of :func:`run_interpolate`.

    Exactly one of ``missing`` and ``factor`` must be given.

    Parameters
    ----------
    method : str
        ``"linear"`` (blend of the neighbour slices) or ``"flow"``
        (motion-compensated blend along a TV-L1 optical flow).
    missing : tuple of int, optional
        Indices of the slices to rebuild; the output has the input's shape.
        Every missing slice needs a kept slice below and above it.
    factor : int, optional
        Upsample along z by this integer factor (``>= 2``): ``n`` slices become
        ``(n - 1) * factor + 1``, original slice ``i`` lands at ``i * factor``.
    flow_attachment, flow_tightness, flow_num_warp, flow_num_iter
        Passed to :func:`skimage.registration.optical_flow_tvl1` as
        ``attachment``, ``tightness``, ``num_warp`` and ``num_iter``.
    """

    method: str = "linear"
    missing: tuple[int, ...] | None = None
    factor: int | None = None
    flow_attachment: float = 15.0
    flow_tightness: float = 0.3
    flow_num_warp: int = 5
    flow_num_iter: int = 10

    def __post_init__(self) -> None:
        if self.method not in INTERPOLATION_METHODS:
            raise InvalidInputError(
                f"method must be one of {INTERPOLATION_METHODS}, got {self.method!r}"
            )
        if (self.missing is None) == (self.factor is None):
            raise InvalidInputError(
                "give exactly one of `missing` (slice indices to rebuild) and "
                "`factor` (integer z upsampling)"
            )
        if self.missing is not None:
            indices = tuple(self.missing)
            if not indices:
                raise InvalidInputError("`missing` is empty: name at least one slice to rebuild")
            bad = [i for i in indices if not _is_int(i)]
            if bad:
                raise InvalidInputError(f"`missing` must hold integer slice indices, got {bad}")
            negative = sorted({int(i) for i in indices if i < 0})
            if negative:
                raise InvalidInputError(f"`missing` holds negative slice indices {negative}")
            seen: set[int] = set()
            duplicated = sorted({int(i) for i in indices if i in seen or seen.add(i)})
            if duplicated:
                raise InvalidInputError(f"`missing` lists slice(s) {duplicated} more than once")
            object.__setattr__(self, "missing", tuple(sorted(int(i) for i in indices)))
        if self.factor is not None:
            if not _is_int(self.factor) or self.factor < 2:
                raise InvalidInputError(f"factor must be an integer >= 2, got {self.factor!r}")
            object.__setattr__(self, "factor", int(self.factor))
        if not self.flow_attachment > 0:
            raise InvalidInputError(f"flow_attachment must be > 0, got {self.flow_attachment}")
        if not self.flow_tightness > 0:
            raise InvalidInputError(f"flow_tightness must be > 0, got {self.flow_tightness}")
        for name in ("flow_num_warp", "flow_num_iter"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class _Gap:
    """Two kept source slices and the output slices synthesized between them."""

    below: int
    above: int
    targets: tuple[tuple[int, float], ...]  # (output index, fraction t)


def _plan(
    n_slices: int, params: InterpolateParams
) -> tuple[int, list[tuple[int, int]], list[_Gap]]:
    """Output length, ``(source, output)`` index pairs of kept slices, and the gaps."""
    if params.factor is not None:
        k = params.factor
        kept = [(i, i * k) for i in range(n_slices)]
        gaps = [
            _Gap(i, i + 1, tuple((i * k + r, r / k) for r in range(1, k)))
            for i in range(n_slices - 1)
        ]
        return (n_slices - 1) * k + 1, kept, gaps

    missing = params.missing
    out_of_range = [i for i in missing if i >= n_slices]
    if out_of_range:
        raise InvalidInputError(
            f"missing slice index(es) {out_of_range} out of range for a volume of "
            f"{n_slices} slices (valid: 0..{n_slices - 1})"
        )
    missing_set = set(missing)
    kept_indices = [i for i in range(n_slices) if i not in missing_set]
    if not kept_indices:
        raise InvalidInputError("every slice is listed as missing: nothing to interpolate from")
    boundary = [i for i in missing if i < kept_indices[0] or i > kept_indices[-1]]
    if boundary:
        raise InvalidInputError(
            f"missing slice(s) {boundary} lie at the volume boundary, with no kept slice on "
            f"one side (kept slices span {kept_indices[0]}..{kept_indices[-1]}); "
            "interpolation cannot extrapolate: crop the volume or keep those slices"
        )
    gaps: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for below, above in pairwise(kept_indices):
        if above - below > 1:
            gaps[(below, above)] = [
                (z, (z - below) / (above - below)) for z in range(below + 1, above)
            ]
    return (
        n_slices,
        [(i, i) for i in kept_indices],
        [_Gap(b, a, tuple(t)) for (b, a), t in gaps.items()],
    )


def _tvl1_flow(a: np.ndarray, b: np.ndarray, params: InterpolateParams) -> np.ndarray:
    """TV-L1 flow ``(2, Y, X)`` with ``b(x + flow(x)) ~ a(x)``, on jointly normalised images."""
    from skimage.registration import optical_flow_tvl1

    low = min(float(a.min()), float(b.min()))
    span = max(float(a.max()), float(b.max())) - low
    if span <= 0:  # two identical constant slices: nothing moves
        return np.zeros((2, *a.shape), dtype=np.float32)
    a_unit = ((a - low) / span).astype(np.float32)
    b_unit = ((b - low) / span).astype(np.float32)
    return optical_flow_tvl1(
        a_unit,
        b_unit,
        attachment=params.flow_attachment,
        tightness=params.flow_tightness,
        num_warp=params.flow_num_warp,
        num_iter=params.flow_num_iter,
    )


def _flow_blend(
    a: np.ndarray, b: np.ndarray, flow: np.ndarray, t: float, grid: np.ndarray
) -> np.ndarray:
    """Motion-compensated in-between frame at fraction ``t`` from ``a`` (t=0) to ``b`` (t=1).

    A point at ``x`` in ``a`` sits at ``x + flow(x)`` in ``b``, so at time ``t``
    the frame is ``a(y - t flow(y))`` seen from ``a`` and ``b(y + (1 - t) flow(y))``
    seen from ``b`` (flow evaluated at the output pixel, the usual
    backward-warping approximation); the two are blended ``(1 - t) : t``.
    """
    from skimage.transform import warp

    from_a = warp(a, grid - t * flow, order=1, mode="edge", preserve_range=True)
    from_b = warp(b, grid + (1.0 - t) * flow, order=1, mode="edge", preserve_range=True)
    return (1.0 - t) * from_a + t * from_b


def run_interpolate(
    volume,
    params: InterpolateParams,
    *,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Rebuild missing slices of a volume, or upsample it along z.

    Each synthesized slice at fraction ``t`` between its kept neighbours ``a``
    (below) and ``b`` (above) is ``(1 - t) a + t b`` for ``method="linear"``, or
    ``(1 - t) warp(a) + t warp(b)`` along a TV-L1 optical flow from ``a`` to ``b``
    for ``method="flow"`` (flow computed once per neighbour pair on jointly
    intensity-normalised images and reused for every slice of that gap).

    Missing slices at the volume boundary (no kept slice on one side) are an
    error: interpolation never extrapolates. Kept slices are copied
    bit-identically; synthesized slices are computed in float, rounded for
    integer dtypes and clipped to the input's ``[min, max]``. The input is never
    modified.

    Parameters
    ----------
    volume : array-like
        3D volume (Z, Y, X) with at least 2 slices.
    params : InterpolateParams
        Method and either ``missing`` or ``factor``.
    cancel : CancelToken, optional
        Checked before each flow computation and each synthesized slice.

    Yields
    ------
    Progress
        One event per synthesized slice.

    Returns
    -------
    EngineResult
        ``data`` has the input shape (missing mode) or ``(n - 1) * factor + 1``
        slices (factor mode). Provenance engine ``"interpolate-linear"`` or
        ``"interpolate-flow"`` with the synthesized and kept indices.

    Raises
    ------
    InvalidInputError
        Bad volume, out-of-range or boundary missing indices.
    Cancelled
        When ``cancel`` is set.
    """
    array = check_image(volume, name="volume", ndim=(3,))
    if array.shape[0] < 2:
        raise InvalidInputError(
            f"volume needs at least 2 slices to interpolate between, got shape {array.shape}"
        )
    n_out, kept, gaps = _plan(array.shape[0], params)
    low, high = float(array.min()), float(array.max())
    out = np.empty((n_out, *array.shape[1:]), dtype=array.dtype)
    for source, target in kept:
        out[target] = array[source]

    total = sum(len(gap.targets) for gap in gaps)
    grid = None
    if params.method == "flow":
        grid = np.indices(array.shape[1:], dtype=np.float64)
    done = 0
    flow_magnitude: list[float] = []
    for gap in gaps:
        check_cancelled(cancel)
        below = array[gap.below].astype(np.float64)
        above = array[gap.above].astype(np.float64)
        flow = None
        if params.method == "flow":
            flow = _tvl1_flow(below, above, params).astype(np.float64)
            flow_magnitude.append(float(np.hypot(flow[0], flow[1]).mean()))
        for target, t in gap.targets:
            check_cancelled(cancel)
            if flow is None:
                frame = (1.0 - t) * below + t * above
            else:
                frame = _flow_blend(below, above, flow, t, grid)
            out[target] = _cast_like(frame, array.dtype, low, high)
            done += 1
            yield Progress(done, total, f"interpolate slice {target} ({done}/{total})")

    extra = {
        "synthesized_indices": [target for gap in gaps for target, _ in gap.targets],
        "kept_source_indices": [source for source, _ in kept],
        "kept_output_indices": [target for _, target in kept],
        "neighbour_pairs": [[gap.below, gap.above] for gap in gaps],
        "boundary_policy": "error",
        "output_range": [low, high],
    }
    if params.method == "flow":
        extra["mean_flow_magnitude_px"] = flow_magnitude
    provenance = make_provenance(
        f"interpolate-{params.method}",
        params,
        source={"shape": array.shape, "dtype": array.dtype.name},
        extra=extra,
    )
    return EngineResult(data=out, provenance=provenance)


def drop_every(n_slices: int, every: int, *, offset: int = 1) -> tuple[int, ...]:
    """Indices of every ``every``-th slice to hold out, never the first or last slice.

    Parameters
    ----------
    n_slices : int
        Number of slices in the volume (``>= 3``).
    every : int
        Hold out one slice in ``every`` (``>= 2``).
    offset : int
        Index of the first held-out slice (``>= 1``).

    Returns
    -------
    tuple of int
        ``offset, offset + every, ...`` below ``n_slices - 1``, so every held-out
        slice has kept neighbours on both sides (with ``every >= 2``).

    Raises
    ------
    InvalidInputError
        Bad arguments, or when no interior slice matches.

    Examples
    --------
    >>> drop_every(10, 3)
    (1, 4, 7)
    """
    for name, value, minimum in (
        ("n_slices", n_slices, 3),
        ("every", every, 2),
        ("offset", offset, 1),
    ):
        if not _is_int(value) or value < minimum:
            raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    indices = tuple(range(int(offset), int(n_slices) - 1, int(every)))
    if not indices:
        raise InvalidInputError(
            f"no interior slice to hold out with n_slices={n_slices}, every={every}, "
            f"offset={offset}"
        )
    return indices
