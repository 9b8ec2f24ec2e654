"""Classical slice interpolation: linear blend and optical-flow blend.

The baselines every learned or generative engine is compared against. Each engine is
a generator ``run(volume, params, *, missing=None, factor=None, cancel=None)`` (see
:mod:`napari_scigen.engines.registry`) that plans the job with
:func:`~napari_scigen.engines.interpolation.plan.plan_slices`, copies kept slices bit
for bit and synthesizes each slice at fraction ``t`` between its kept neighbours ``a``
(below) and ``b`` (above):

* ``linear``: ``(1 - t) a + t b``;
* ``flow``: ``(1 - t) warp(a) + t warp(b)`` along a TV-L1 optical flow from ``a`` to
  ``b``, computed once per neighbour pair on jointly intensity-normalised images.

Synthesized slices are computed in float64, rounded for integer dtypes and clipped to
the input's own ``[min, max]``. The input is never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from ...core.io.memory import check_upsampled_fits
from ...core.params import EngineParams, param
from ...core.progress import CancelToken, Progress, check_cancelled
from ...core.provenance import make_provenance
from ...core.result import EngineResult
from ...core.stack import cast_to_range
from ...core.validation import check_image
from .plan import SlicePlan, plan_slices


@dataclass(frozen=True)
class LinearParams(EngineParams):
    """Linear interpolation has no parameters."""


@dataclass(frozen=True)
class FlowParams(EngineParams):
    """Parameters of the optical-flow interpolation (see
    :func:`skimage.registration.optical_flow_tvl1`)."""

    flow_attachment: float = param(
        15.0,
        help="TV-L1 data attachment: higher follows the images more closely",
        min=0.0,
        min_exclusive=True,
        advanced=True,
    )
    flow_tightness: float = param(
        0.3,
        help="TV-L1 tightness between the flow and its auxiliary variable",
        min=0.0,
        min_exclusive=True,
        advanced=True,
    )
    flow_num_warp: int = param(
        5, help="TV-L1 warps per pyramid level", min=1, max=100, advanced=True
    )
    flow_num_iter: int = param(
        10, help="TV-L1 fixed-point iterations per warp", min=1, max=1000, advanced=True
    )


def prepare(volume, missing, factor) -> tuple[np.ndarray, SlicePlan, np.ndarray, float, float]:
    """Check the volume, plan the job, and start the output with the kept slices copied.

    Returns
    -------
    tuple
        ``(array, plan, out, low, high)``: the input as an array, the plan, the output
        volume with kept slices filled in, and the input's value range.
    """
    array = check_image(volume, name="volume", ndim=(3,))
    check_upsampled_fits(array, factor)  # before planning: the plan grows with the output
    plan = plan_slices(array.shape[0], missing=missing, factor=factor)
    out = np.empty((plan.n_out, *array.shape[1:]), dtype=array.dtype)
    for source, target in plan.kept:
        out[target] = array[source]
    return array, plan, out, float(array.min()), float(array.max())


#: ``frame(below, above, t, pair_state) -> float64 slice``.
FrameFunction = Callable[[np.ndarray, np.ndarray, float, object], np.ndarray]


def run_blend(
    engine: str,
    volume,
    params: EngineParams,
    missing,
    factor,
    cancel: CancelToken | None,
    frame: FrameFunction,
    prepare_pair: Callable[[np.ndarray, np.ndarray], object] | None = None,
    record_pair: Callable[[object], dict] | None = None,
) -> Generator[Progress, None, EngineResult]:
    """The loop the classical engines share: per gap, prepare the pair, then each slice.

    Parameters
    ----------
    engine : str
        Method name (provenance engine ``"interpolate-<engine>"``, progress messages).
    volume, params, missing, factor, cancel
        As the engines receive them.
    frame : callable
        ``frame(below, above, t, state)`` -> the float64 slice at fraction ``t``.
    prepare_pair : callable, optional
        ``prepare_pair(below, above)`` -> ``state``, once per pair of kept neighbours.
    record_pair : callable, optional
        ``record_pair(state)`` -> dict of values recorded per pair in the provenance.
    """
    array, plan, out, low, high = prepare(volume, missing, factor)
    total = plan.n_synthesized
    done = 0
    pair_records: list[dict] = []
    for gap in plan.gaps:
        check_cancelled(cancel)
        below = array[gap.below].astype(np.float64)
        above = array[gap.above].astype(np.float64)
        if prepare_pair is not None:  # e.g. the optical flow: the slow part, say so first
            message = f"{engine}: comparing slices {gap.below} and {gap.above}"
            yield Progress(done, total, f"{message} ({done}/{total} rebuilt)")
        state = prepare_pair(below, above) if prepare_pair is not None else None
        if record_pair is not None:
            pair_records.append(record_pair(state))
        for target, t in gap.targets:
            check_cancelled(cancel)
            out[target] = cast_to_range(frame(below, above, t, state), array.dtype, low, high)
            done += 1
            yield Progress(done, total, f"{engine}: slice {target} ({done}/{total})")
    extra = {**plan.provenance(), "output_range": [low, high]}
    if pair_records:
        for key in pair_records[0]:
            extra[key] = [record[key] for record in pair_records]
    provenance = make_provenance(
        f"interpolate-{engine}",
        params,
        source={"shape": array.shape, "dtype": array.dtype.name},
        extra=extra,
    )
    return EngineResult(data=out, provenance=provenance)


def run_linear(
    volume,
    params: LinearParams = LinearParams(),  # noqa: B008 - frozen, immutable
    *,
    missing=None,
    factor=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Rebuild missing slices (or upsample z) by blending the kept neighbours linearly.

    Parameters
    ----------
    volume : array-like
        3D volume (Z, Y, X) with at least 2 slices.
    params : LinearParams
        No parameters.
    missing, factor
        See :func:`~napari_scigen.engines.interpolation.plan.plan_slices`.
    cancel : CancelToken, optional
        Checked before each synthesized slice.

    Yields
    ------
    Progress
        One event per synthesized slice.

    Returns
    -------
    EngineResult
        Provenance engine ``"interpolate-linear"`` with the synthesized and kept indices.
    """
    return run_blend(
        "linear",
        volume,
        params,
        missing,
        factor,
        cancel,
        lambda below, above, t, _state: (1.0 - t) * below + t * above,
    )


def tvl1_flow(a: np.ndarray, b: np.ndarray, params: FlowParams) -> np.ndarray:
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


def flow_blend(
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


def run_flow(
    volume,
    params: FlowParams = FlowParams(),  # noqa: B008 - frozen, immutable
    *,
    missing=None,
    factor=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Rebuild missing slices (or upsample z) by a motion-compensated blend (TV-L1 flow).

    The flow is computed once per pair of kept neighbours and reused for every slice
    of that gap. Arguments and result as :func:`run_linear`; provenance engine
    ``"interpolate-flow"`` adds the mean flow magnitude of each pair
    (``mean_flow_magnitude_px``).
    """
    grid: list[np.ndarray] = []

    def prepare_pair(below: np.ndarray, above: np.ndarray) -> np.ndarray:
        if not grid:
            grid.append(np.indices(below.shape, dtype=np.float64))
        return tvl1_flow(below, above, params).astype(np.float64)

    return run_blend(
        "flow",
        volume,
        params,
        missing,
        factor,
        cancel,
        lambda below, above, t, flow: flow_blend(below, above, flow, t, grid[0]),
        prepare_pair,
        lambda flow: {"mean_flow_magnitude_px": float(np.hypot(flow[0], flow[1]).mean())},
    )
