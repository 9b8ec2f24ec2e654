"""Learned slice interpolation: train on the volume, check on held-out kept slices, fill.

:func:`run_learned_interpolation` is the generator behind the ``learned`` and ``auto``
interpolation engines:

1. plan the job on the output grid (kept slices copied bit for bit);
2. hold out a few kept slices (:func:`~.geometry.training_geometry`): rebuilt at the
   job's own gap when blanking kept slices allows it, else at the next longer gap;
3. train the residual U-Net on crops of this volume at that geometry (:mod:`.sampling`),
   starting from the shipped default weights (or a file, or random weights);
4. predict the synthesized and the held-out rows on the xz and yz planes, fused over
   planes and flips (:mod:`.inference`); the spread is the uncertainty;
5. score learned, linear and flow on the held-out slices (:mod:`.selfcheck`): the
   expected error of the fill. ``learned`` falls back to linear when it loses (unless
   forced), ``auto`` fills with the best method;
6. return the filled volume, the uncertainty image and the full record.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Generator

import numpy as np

from ...core.progress import CancelToken, Progress, check_cancelled, relay_progress
from ...core.provenance import make_provenance
from ...core.result import EngineResult
from ...core.stack import cast_to_range
from ..interpolation.classical import prepare
from .geometry import Grid, make_grid, training_geometry
from .params import AutoInterpolateParams, LearnedInterpolateParams
from .sampling import InterpolationSampler, in_plane_sources
from .selfcheck import SelfValidation, decide, error_correlation, flow_rebuild, score

#: Share of the progress scale each stage takes.
STAGES = {"train": (0.0, 0.7), "predict": (0.7, 0.93), "check": (0.93, 0.97), "fill": (0.97, 1.0)}
#: Progress scale.
SCALE = 1000


def stage(name: str):
    """``progress(fraction, message)`` mapping a stage's fraction onto the job's scale."""
    start, end = STAGES[name]

    def progress(fraction: float, message: str) -> Progress:
        value = start + (end - start) * min(1.0, max(0.0, fraction))
        return Progress(int(round(SCALE * value)), SCALE, message)

    return progress


def in_plane_zoom(voxel_size, factor: int | None) -> tuple[float, float, str]:
    """How in-plane rows are resampled to the output z spacing, and what was assumed."""
    if voxel_size is None:
        if factor:
            return (
                1.0,
                1.0,
                (
                    f"voxel size not given: assumed the z spacing is {factor} x the pixel size, so "
                    "the upsampled output is isotropic (in-plane rows used as they are)"
                ),
            )
        return 1.0, 1.0, "voxel size not given: assumed isotropic voxels"
    dz, dy, dx = (float(v) for v in voxel_size)
    out_z = dz / factor if factor else dz
    zoom_y, zoom_x = dy / out_z, dx / out_z
    text = (
        f"voxel size z,y,x = {dz:g},{dy:g},{dx:g}: output z spacing {out_z:g}; in-plane "
        f"rows resampled by {zoom_y:.3g} (y) and {zoom_x:.3g} (x)"
    )
    return zoom_y, zoom_x, text


def _task_key(grid: Grid, known: np.ndarray, rows, params, mode: str) -> str:
    model_fields = {
        k: v
        for k, v in params.to_dict().items()
        if k
        not in {
            "train_steps",
            "train_seconds",
            "checkpoint_dir",
            "resume",
            "checkpoint_every",
            "uncertainty",
            "tta",
            "device",
            "threads",
            "force_learned",
            "auto_metric",
        }
    }
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            [
                mode,
                list(grid.volume.shape),
                grid.low,
                grid.high,
                known.astype(int).tolist(),
                list(rows),
                model_fields,
            ],
            sort_keys=True,
            default=str,
        ).encode()
    )
    digest.update(np.ascontiguousarray(grid.volume[known]).tobytes())
    return digest.hexdigest()


def _self_validation(array, plan, grid, known_train, geometry, prediction):
    """Score learned, linear and flow on the held-out kept rows (None when there are none)."""
    from .geometry import neighbours

    rows = list(geometry.validation_rows)
    if not rows:
        return None
    source = dict((target, index) for index, target in plan.kept)

    def real(row: int) -> np.ndarray:
        return array[source[int(row)]].astype(np.float64)

    truth = np.stack([real(r) for r in rows])
    below, above, t = neighbours(known_train)
    linear = np.stack([(1 - t[r]) * real(below[r]) + t[r] * real(above[r]) for r in rows])
    flow = np.stack([flow_rebuild(real(below[r]), real(above[r]), float(t[r])) for r in rows])
    low, high = float(array.min()), float(array.max())
    rebuilt = [("linear", linear), ("flow", flow)]
    if prediction is not None:
        learned, spread = prediction.take(rows)
        rebuilt.insert(0, ("learned", grid.to_data(learned)))
    candidates = {
        name: cast_to_range(values, array.dtype, low, high).astype(np.float64)
        for name, values in rebuilt
    }
    gaps = sorted({int(above[r] - below[r]) for r in rows})
    validation = SelfValidation(
        scores=score(truth, candidates, (grid.low, grid.high)),
        what=f"kept slices rebuilt at gap {', '.join(map(str, gaps))}",
        count=len(rows),
    )
    if prediction is not None:
        validation.extra["uncertainty_error_spearman"] = round(
            error_correlation(candidates["learned"] - truth, spread), 4
        )
    validation.extra["held_out_output_indices"] = rows
    return validation


#: Why the network is not used where no kept slice can be rebuilt at the job's own gap.
UNVERIFIABLE = (
    "NOT VERIFIABLE: no kept slice can be rebuilt at gap {gaps} (only at the harder proxy gap "
    "{proxy}), and on real scans the proxy did not predict the network's error at the job's "
    "gap (docs/validation.md); filling with {chosen} instead"
)


def _classical_fill(chosen, array, missing, factor, cancel, label):
    """Fill with ``linear`` or ``flow`` (their default parameters), relaying progress."""
    from ..interpolation.classical import FlowParams, LinearParams, run_flow, run_linear

    if chosen == "linear":
        engine = run_linear(array, LinearParams(), missing=missing, factor=factor, cancel=cancel)
    else:
        engine = run_flow(array, FlowParams(), missing=missing, factor=factor, cancel=cancel)
    filled = yield from relay_progress(
        engine, lambda e: stage("fill")(e.fraction, f"{label}: {e.message}")
    )
    return filled.data


def _result(mode, params, array, data, extra, images=None) -> EngineResult:
    """The engine's result with its provenance."""
    provenance = make_provenance(
        f"interpolate-{mode}",
        params,
        seed=params.seed,
        source={"shape": array.shape, "dtype": array.dtype.name},
        extra=extra,
    )
    return EngineResult(data=data, provenance=provenance, images=images or {})


def _fill_unverifiable(
    array, plan, grid, known_train, geometry, params, missing, factor, cancel, mode, started, notes
):
    """Fill with a classical method where the network's result could not be checked.

    ``learned`` fills with linear (``force_learned`` uses the network anyway); ``auto``
    fills with whichever of linear and flow scores better on the proxy gap (only ``auto``
    scores them: for ``learned`` the proxy would decide nothing).
    """
    validation = None
    chosen = "linear"
    if mode == "auto":
        validation = _self_validation(array, plan, grid, known_train, geometry, None)
        if validation is not None:
            chosen = validation.best(params.auto_metric)
    gaps = ", ".join(map(str, sorted(geometry.target_gaps)))
    proxy = ", ".join(map(str, sorted(geometry.blank_gaps))) or "none"
    reason = UNVERIFIABLE.format(gaps=gaps, proxy=proxy, chosen=chosen)
    if validation is not None:
        reason += f" (best {params.auto_metric} of linear and flow on the proxy gap: "
        reason += f"{validation.summary(params.auto_metric)})"
    elif mode == "learned":
        reason += "; force_learned=True (--force-learned) uses the network anyway"
    yield stage("fill")(0.0, f"{mode}: {reason}")
    data = yield from _classical_fill(chosen, array, missing, factor, cancel, mode)
    extra = {
        **plan.provenance(),
        "filled_with": chosen,
        "choice_reason": reason,
        "learned_lost_self_validation": False,
        "learned_not_verifiable": True,
        "self_validation": validation.as_dict() if validation is not None else None,
        "expected_error": validation.scores[chosen] if validation is not None else None,
        "geometry": geometry.describe(),
        "exact_supervision": False,
        "assumptions": notes,
        "training": None,
        "seconds": {"total": round(time.perf_counter() - started, 2)},
    }
    return _result(mode, params, array, data, extra)


def run_learned_interpolation(
    volume,
    params: LearnedInterpolateParams | AutoInterpolateParams,
    *,
    missing=None,
    factor=None,
    cancel: CancelToken | None = None,
    mode: str = "learned",
) -> Generator[Progress, None, EngineResult]:
    """Rebuild missing slices (or upsample z) with a network trained on this volume.

    Parameters
    ----------
    volume : array-like
        3D volume (Z, Y, X); never modified.
    params : LearnedInterpolateParams or AutoInterpolateParams
        Training, self-validation and inference settings.
    missing, factor
        See :func:`~napari_scigen.engines.interpolation.plan.plan_slices`.
    cancel : CancelToken, optional
        Checked every training step and inference batch.
    mode : {"learned", "auto"}
        ``learned`` fills with the network (falling back to linear when it loses the
        self-validation, unless forced); ``auto`` fills with the best-scoring method.

    Returns
    -------
    EngineResult
        ``data``: the filled volume (input dtype, kept slices bit-identical, values in
        the input's range); ``images["uncertainty"]``: per-voxel spread (data units, 0 on
        kept slices) when the network filled and ``params.uncertainty`` is on.
    """
    from ...core.device import resolve_device
    from . import store
    from .inference import predict_rows
    from .training import torch_threads, train_network

    started = time.perf_counter()
    array, plan, out, low, high = prepare(volume, missing, factor)
    grid = make_grid(array, plan)
    label = mode
    geometry = training_geometry(grid.known, params.validation_slices)
    known_train = grid.known.copy()
    known_train[list(geometry.validation_rows)] = False
    zoom_y, zoom_x, assumption = in_plane_zoom(params.voxel_size, plan.factor)
    fraction = params.in_plane_fraction
    if fraction is None:
        fraction = 0.25 if geometry.exact else 0.75
    notes = [assumption]
    if max(zoom_y, zoom_x) > 1.25:
        fraction = 0.0
        notes.append("the output z spacing is finer than the pixel size: no in-plane training")
    if not (geometry.exact or getattr(params, "force_learned", False)):
        # nothing is trained: skip the training set-up below
        return (
            yield from _fill_unverifiable(
                array, plan, grid, known_train, geometry, params, missing, factor, cancel,
                mode, started, notes,
            )
        )  # fmt: skip
    orientations = ("xz", "yz") if params.planes == "both" else (params.planes,)
    depth, height, width = grid.volume.shape
    crop = (min(params.crop_size, depth), min(params.crop_size, height, width))
    rng = np.random.default_rng(params.seed)
    sources = (
        in_plane_sources(grid.volume, np.flatnonzero(known_train), zoom_y, zoom_x)
        if fraction > 0
        else []
    )
    try:
        sampler = InterpolationSampler(
            grid.volume,
            known_train,
            geometry.blank_gaps,
            sources,
            fraction,
            crop,
            orientations,
            rng,
        )
    except ValueError as error:
        from ...core.validation import InvalidInputError

        raise InvalidInputError(f"{label}: {error}") from None
    device = resolve_device(params.device)
    network, init_record = store.initial_network(params, "interpolate", in_channels=2)
    yield stage("train")(
        0.0, f"{label}: learning {geometry.describe()} from this volume on {device}"
    )
    synthesized = np.array(plan.synthesized, dtype=int)
    predicted_rows = np.union1d(synthesized, np.array(geometry.validation_rows, dtype=int))
    timings = {}
    kept_sources = [source for source, _ in plan.kept]
    sample = array[kept_sources[:: max(1, len(kept_sources) // 8)]]
    training = params.replace(
        loss=params.resolved_loss(sample.ravel()[:: max(1, sample.size // 1_000_000)])
    )
    with torch_threads(device, params.threads):
        report = yield from train_network(
            network,
            sampler.sample,
            training,
            device=device,
            task_key=_task_key(grid, known_train, geometry.validation_rows, params, mode),
            rng=rng,
            progress=stage("train"),
            label=label,
            cancel=cancel,
        )
        timings["train"] = round(report.seconds, 2)
        mark = time.perf_counter()
        prediction = yield from predict_rows(
            network,
            grid.volume,
            known_train,
            predicted_rows,
            orientations=orientations,
            tta=params.tta,
            device=device,
            progress=stage("predict"),
            label=label,
            cancel=cancel,
        )
        timings["predict"] = round(time.perf_counter() - mark, 2)
    check_cancelled(cancel)
    mark = time.perf_counter()
    validation = _self_validation(array, plan, grid, known_train, geometry, prediction)
    timings["self_validation"] = round(time.perf_counter() - mark, 2)
    if mode == "auto":
        if validation is None:
            chosen, lost, reason = (
                "linear",
                False,
                "no kept slice could be held out: linear, the safe default",
            )
        else:
            chosen = validation.best(params.auto_metric)
            lost = (
                validation.scores["learned"][params.auto_metric]
                < validation.scores["linear"][params.auto_metric]
            )
            reason = f"best {params.auto_metric} on self-validation ({validation.summary(params.auto_metric)})"
    else:
        chosen, lost, reason = decide(validation, baseline="linear", force=params.force_learned)
    if validation is not None:
        yield stage("check")(
            1.0,
            f"{label}: self-validation on {validation.count} held-out {validation.what}: "
            f"{validation.summary()}",
        )
    yield stage("fill")(0.0, f"{label}: filling with {chosen}: {reason}")
    images = {}
    if chosen == "learned":
        mean, spread = prediction.take(synthesized)
        values = grid.to_data(mean)
        for i, target in enumerate(synthesized):
            out[target] = cast_to_range(values[i], array.dtype, low, high)
        if params.uncertainty:
            uncertainty = np.zeros(out.shape, np.float32)
            uncertainty[synthesized] = spread * np.float32(grid.high - grid.low)
            images["uncertainty"] = uncertainty
    else:
        out = yield from _classical_fill(chosen, array, missing, factor, cancel, label)
    timings["total"] = round(time.perf_counter() - started, 2)
    extra = {
        **plan.provenance(),
        "output_range": [low, high],
        "network_window": [grid.low, grid.high],
        "filled_with": chosen,
        "choice_reason": reason,
        "learned_lost_self_validation": bool(lost),
        "self_validation": validation.as_dict() if validation is not None else None,
        "expected_error": validation.scores[chosen] if validation is not None else None,
        "geometry": geometry.describe(),
        "exact_supervision": geometry.exact,
        "training_gaps": sorted(geometry.blank_gaps),
        "in_plane_fraction": fraction,
        "assumptions": notes,
        "training": {**report.as_dict(), "loss": training.loss},
        "init": init_record,
        "network": {
            **network.config.to_dict(),
            "parameters": int(sum(p.numel() for p in network.parameters())),
        },
        "device": device,
        "threads": params.threads,
        "predictions_per_voxel": prediction.count,
        "uncertainty": "std over planes x flips (data units)" if "uncertainty" in images else None,
        "seconds": timings,
    }
    return _result(mode, params, array, out, extra, images)
