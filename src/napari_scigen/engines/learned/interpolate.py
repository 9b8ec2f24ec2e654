"""Learned slice interpolation: train on the volume, check on held-out kept slices, fill.

:func:`run_learned_interpolation` is the generator behind the ``learned`` and ``auto``
interpolation engines:

1. plan the job on the output grid (kept slices copied bit for bit);
2. hold out a few runs of kept slices (:func:`~.geometry.training_geometry`): rebuilt
   at the job's own gap when blanking kept slices allows it (drop-every-G, a run of k
   missing slices: gap k + 1), else at the next longer gap (keep-every-G: 2G, a proxy);
   and hold a few kept xy slices out of in-plane training: their rows are rebuilt at the
   job's *exact* gap (:mod:`.inplane`);
3. train the residual U-Net on crops of this volume at that geometry (:mod:`.sampling`):
   in-plane rows dropped with the job's pattern, plus blanked kept z-slices; starting
   from the shipped default weights (or a file, or random weights);
4. predict the synthesized rows on the xz and yz planes from every kept slice, fused
   over planes and flips (:mod:`.inference`); the spread is the uncertainty; predict the
   held-out z rows again without them, as the check needs;
5. score learned against linear (and flow) on the held-out data
   (:func:`~.selfcheck.decide_z`: an exact z-check decides alone; otherwise the in-plane
   exact-gap check, vetoed by the z-proxy): the expected error of the fill. ``learned``
   falls back to linear when it loses (unless forced), ``auto`` fills with the best
   method it could measure at the job's gap;
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
from .bounded import fit_window
from .fitted import Fitted, fill_rows
from .geometry import Grid, make_grid, training_geometry
from .params import AutoInterpolateParams, LearnedInterpolateParams
from .sampling import InterpolationSampler, in_plane_sources
from .selfcheck import SelfValidation, decide_z, error_correlation, flow_rebuild, score

#: Share of the progress scale each stage takes.
STAGES = {"train": (0.0, 0.7), "predict": (0.7, 0.93), "check": (0.93, 0.97), "fill": (0.97, 1.0)}
#: Fields that do not change what the network learns (left out of the checkpoint key).
RUN_ONLY_FIELDS = {
    "train_steps", "train_seconds", "checkpoint_dir", "resume", "checkpoint_every",
    "uncertainty", "tta", "device", "threads", "force_learned", "auto_metric", "precision",
    "concurrent_tiles",
}  # fmt: skip
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
    model_fields = {k: v for k, v in params.to_dict().items() if k not in RUN_ONLY_FIELDS}
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


#: Why the network is not used where neither check exists.
UNVERIFIABLE = (
    "NOT VERIFIABLE: no kept slice can be rebuilt at gap {gaps} along z (only at the longer "
    "gap {proxy}) and no kept slice's rows could be held out to check the gap in-plane, so "
    "the network's error here cannot be measured; filling with {chosen} instead"
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
    array, plan, grid, known_train, geometry, params, missing, factor, cancel, mode, started, notes,
    fit_only=False,
):  # fmt: skip
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
        reason += f" (best {params.auto_metric} of linear and flow on the longer gap: "
        reason += f"{validation.summary(params.auto_metric)})"
    yield stage("fill")(0.0, f"{mode}: {reason}")
    data = None
    if not fit_only:
        data = yield from _classical_fill(chosen, array, missing, factor, cancel, mode)
    extra = {
        **plan.provenance(),
        "filled_with": chosen,
        "choice_reason": reason,
        "decided_by": "not verifiable",
        "learned_lost_self_validation": False,
        "learned_not_verifiable": True,
        "self_validation": validation.as_dict() if validation is not None else None,
        "in_plane_check": None,
        "expected_error": validation.scores[chosen] if validation is not None else None,
        "geometry": geometry.describe(),
        "exact_supervision": False,
        "assumptions": notes,
        "training": None,
        "seconds": {"total": round(time.perf_counter() - started, 2)},
    }
    if fit_only:
        return Fitted("interpolate", None, _fit_record(mode, params, grid, array, chosen, extra))
    return _result(mode, params, array, data, extra)


def _auto_choice(params, z_check, z_exact, in_plane) -> tuple[str, bool, str, str]:
    """``auto``: the best method among those whose error at the job's gap was measured.

    With an exact z-check every method (learned, linear, flow) is scored there and the
    best fills. Without one only learned and linear have an exact-gap score (in-plane):
    the rule of :func:`~.selfcheck.decide_z` picks between them and flow is left out
    (its error at this gap cannot be measured, and on real scans its longer-gap proxy
    did not predict it).
    """
    metric = params.auto_metric
    if z_exact and z_check is not None:
        chosen = z_check.best(metric)
        lost = z_check.scores["learned"][metric] < z_check.scores["linear"][metric]
        reason = (
            f"best {metric} on self-validation, kept slices held out at the same gap "
            f"({z_check.summary(metric)})"
        )
        return chosen, lost, reason, "z exact"
    decision = decide_z(z_check, z_exact, in_plane, metric=metric)
    reason = decision.reason
    if in_plane is not None:
        reason += "; flow not considered (its error at this gap cannot be measured)"
    return decision.chosen, decision.lost, reason, decision.decided_by


def run_learned_interpolation(
    volume,
    params: LearnedInterpolateParams | AutoInterpolateParams,
    *,
    missing=None,
    factor=None,
    cancel: CancelToken | None = None,
    mode: str = "learned",
    fit_only: bool = False,
    value_range: tuple[float, float] | None = None,
) -> Generator[Progress, None, EngineResult]:
    r"""Rebuild missing slices (or upsample z) with a network trained on this volume.

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
    fit_only : bool
        Train, check and decide, but fill nothing: return the :class:`~.fitted.Fitted`
        network and record that z-chunks of a batch job fill from
        (:func:`~.fitted.interpolation_chunk`). Whole factors only.
    value_range : tuple of float, optional
        The whole volume's ``(min, max)`` when known (a batch job measures it slab by
        slab); with ``fit_only`` on a volume larger than the training sample
        (:mod:`.bounded`) it spares a pass over the volume.

    A volume of more than :data:`~.bounded.MAX_FIT_VOXELS` voxels is fitted on a seeded
    sub-volume of about that many (read alone from a lazy input), then filled whole.

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
    from .inplane import held_out_slices, in_plane_check
    from .training import torch_threads, train_network

    started = time.perf_counter()
    window = None
    if factor is None or float(factor).is_integer():
        window = fit_window(np.shape(volume), missing, factor, params.seed)
    if window is not None:
        return (
            yield from _fit_on_sample(
                volume, params, window, missing, factor, cancel, mode, fit_only, value_range
            )
        )
    array, plan, out, low, high = prepare(volume, missing, factor)
    if isinstance(plan.factor, float):
        if fit_only:
            raise ValueError("a fractional factor cannot be filled chunk by chunk")
        return (yield from _fractional_factor(array, params, plan, cancel, mode))
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
    if params.slice_thickness:
        notes.append(
            f"slice thickness {params.slice_thickness:g} output z spacings (Gaussian profile "
            "FWHM): in-plane rows blurred with it before dropping"
        )
    if max(zoom_y, zoom_x) > 1.25:
        fraction = 0.0
        notes.append("the output z spacing is finer than the pixel size: no in-plane training")
    kept_rows = np.flatnonzero(known_train)
    check_slices = held_out_slices(kept_rows, params.in_plane_check_slices) if fraction > 0 else ()
    forced = getattr(params, "force_learned", False)
    if not (geometry.exact or check_slices or forced):
        # nothing can be checked, so nothing is trained: skip the training set-up below
        return (
            yield from _fill_unverifiable(
                array, plan, grid, known_train, geometry, params, missing, factor, cancel,
                mode, started, notes, fit_only,
            )
        )  # fmt: skip
    orientations = ("xz", "yz") if params.planes == "both" else (params.planes,)
    depth, height, width = grid.volume.shape
    crop = (min(params.crop_size, depth), min(params.crop_size, height, width))
    rng = np.random.default_rng(params.seed)
    training_slices = np.setdiff1d(kept_rows, np.array(check_slices, dtype=int))
    sources = (
        in_plane_sources(grid.volume, training_slices, zoom_y, zoom_x, params.slice_thickness)
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
            protected=check_slices,
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
    held_out = np.array(geometry.validation_rows, dtype=int)
    timings = {}
    kept_sources = [source for source, _ in plan.kept]
    sample = array[kept_sources[:: max(1, len(kept_sources) // 8)]]
    training = params.replace(
        loss=params.resolved_loss(sample.ravel()[:: max(1, sample.size // 1_000_000)])
    )
    predict = dict(orientations=orientations, tta=params.tta, device=device, label=label)
    predict["precision"] = params.precision
    predict["concurrent_tiles"] = params.concurrent_tiles
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
        check_prediction = None
        if held_out.size:
            check_prediction = yield from predict_rows(
                network,
                grid.volume,
                known_train,
                held_out,
                progress=_sub_stage("check", 0.0, 0.5),
                cancel=cancel,
                **predict,
            )
        check_cancelled(cancel)
        mark = time.perf_counter()
        in_plane = in_plane_check(
            network,
            grid.volume,
            check_slices,
            grid.known,
            zoom_y=zoom_y,
            zoom_x=zoom_x,
            thickness=params.slice_thickness,
            tta=params.tta,
            device=device,
        )
    z_check = _self_validation(array, plan, grid, known_train, geometry, check_prediction)
    timings["self_validation"] = round(time.perf_counter() - mark, 2)
    if mode == "auto":
        chosen, lost, reason, decided_by = _auto_choice(params, z_check, geometry.exact, in_plane)
    else:
        decision = decide_z(z_check, geometry.exact, in_plane, force=forced)
        chosen, lost, reason, decided_by = (
            decision.chosen, decision.lost, decision.reason, decision.decided_by,
        )  # fmt: skip
    for check in (z_check, in_plane):
        if check is not None:
            yield stage("check")(
                1.0,
                f"{label}: self-validation on {check.count} held-out {check.what}: "
                f"{check.summary()}",
            )
    expected = None
    if z_check is not None and geometry.exact:
        expected = z_check.scores.get(chosen)
    elif in_plane is not None:
        expected = in_plane.scores.get(chosen)
    n_predictions = len(orientations) * params.tta
    extra = {
        **plan.provenance(),
        "output_range": [low, high],
        "network_window": [grid.low, grid.high],
        "filled_with": chosen,
        "choice_reason": reason,
        "decided_by": decided_by,
        "learned_lost_self_validation": bool(lost),
        "learned_not_verifiable": decided_by == "forced" and z_check is None and in_plane is None,
        "self_validation": z_check.as_dict() if z_check is not None else None,
        "z_check_exact": geometry.exact,
        "in_plane_check": in_plane.as_dict() if in_plane is not None else None,
        "expected_error": expected,
        "geometry": geometry.describe(),
        "exact_supervision": geometry.exact or fraction > 0,
        "training_gaps": sorted(geometry.blank_gaps),
        "in_plane_fraction": fraction,
        "slice_thickness": params.slice_thickness,
        "assumptions": notes,
        "training": {**report.as_dict(), "loss": training.loss},
        "init": init_record,
        "network": {
            **network.config.to_dict(),
            "parameters": int(sum(p.numel() for p in network.parameters())),
        },
        "device": device,
        "threads": params.threads,
        "predictions_per_voxel": n_predictions,
        "uncertainty": None,
        "seconds": timings,
    }
    if fit_only:
        timings["total"] = round(time.perf_counter() - started, 2)
        record = _fit_record(mode, params, grid, array, chosen, extra)
        return Fitted("interpolate", network if chosen == "learned" else None, record)
    yield stage("fill")(0.0, f"{label}: filling with {chosen}: {reason}")
    images = {}
    if chosen == "learned":
        mark = time.perf_counter()
        if params.uncertainty:
            images["uncertainty"] = np.zeros(out.shape, np.float32)
            extra["uncertainty"] = "std over planes x flips (data units)"
        with torch_threads(device, params.threads):
            yield from fill_rows(
                network, grid, synthesized, out, images.get("uncertainty"),
                value_range=(low, high), progress=stage("fill"), cancel=cancel, **predict,
            )  # fmt: skip
        timings["predict"] = round(time.perf_counter() - mark, 2)
    else:
        out = yield from _classical_fill(chosen, array, missing, factor, cancel, label)
    timings["total"] = round(time.perf_counter() - started, 2)
    return _result(mode, params, array, out, extra, images)


def _fit_record(mode, params, grid, array, chosen, extra) -> dict:
    """What z-chunks of a batch job need to fill as one process would (JSON-able)."""
    from ...core.provenance import to_jsonable

    orientations = ("xz", "yz") if params.planes == "both" else (params.planes,)
    return to_jsonable(
        {
            "mode": mode,
            "filled_with": chosen,
            "window": [grid.low, grid.high],
            "output_range": [float(array.min()), float(array.max())],
            "orientations": list(orientations),
            "tta": params.tta,
            "precision": params.precision,
            "concurrent_tiles": params.concurrent_tiles,
            "threads": params.threads,
            "extra": extra,
        }
    )


def _fit_on_sample(volume, params, window, missing, factor, cancel, mode, fit_only, value_range):
    """Fit on the seeded sample ``window`` of ``volume`` (see :mod:`.bounded`), fill whole."""
    from ...core.device import resolve_device
    from ...core.memory import release_free_memory
    from ...core.validation import check_image
    from .bounded import describe, read_window, window_missing, with_output_range
    from .fitted import fill_chunk

    started = time.perf_counter()
    shape = np.shape(volume)
    sample = read_window(volume, window)
    fitted = yield from run_learned_interpolation(
        sample, params, missing=window_missing(window, missing), factor=factor,
        cancel=cancel, mode=mode, fit_only=True,
    )  # fmt: skip
    record = fitted.record
    record["extra"]["fit_sample"] = describe(window, shape)
    if fit_only:
        return with_output_range(fitted, volume, value_range)
    del sample
    release_free_memory()  # what training and the checks freed, before the long fill
    array, plan, _, low, high = prepare(
        check_image(volume, name="volume", ndim=(3,)), missing, factor
    )
    record["output_range"] = [low, high]
    images = {}
    if params.uncertainty and record["filled_with"] == "learned":
        images["uncertainty"] = np.zeros((plan.n_out, *array.shape[1:]), np.float32)
    yield stage("fill")(0.0, f"{mode}: filling with {record['filled_with']}")
    device = resolve_device(params.device)
    mark = time.perf_counter()
    data = yield from fill_chunk(
        fitted, array, source_start=0, n_slices=array.shape[0], missing=missing,
        factor=factor, start=0, stop=plan.n_out, device=device,
        uncertainty=images.get("uncertainty"), progress=stage("fill"),
    )  # fmt: skip
    extra = {**record["extra"], **plan.provenance(), "output_range": [low, high]}
    extra["seconds"] = {
        **extra["seconds"],
        "predict": round(time.perf_counter() - mark, 2),
        "total": round(time.perf_counter() - started, 2),
    }
    if images:
        extra["uncertainty"] = "std over planes x flips (data units)"
    return _result(mode, params, array, data, extra, images)


def _fractional_factor(array, params, plan, cancel, mode):
    """z upsampling by a simple fraction ``p / q``: upsample by ``p``, keep every ``q``-th slice.

    Every output slice (and every source slice) lies on the grid of the whole factor
    ``p``, so the network is trained, checked and applied there exactly as for a whole
    factor; output slice ``j`` is row ``j q`` of that grid.
    """
    from ...core.upsampling import factor_fraction

    fraction = factor_fraction(plan.factor)
    whole, step = fraction.numerator, fraction.denominator
    fine = yield from run_learned_interpolation(
        array, params, factor=whole, cancel=cancel, mode=mode
    )
    data = np.ascontiguousarray(fine.data[::step])
    images = {name: np.ascontiguousarray(image[::step]) for name, image in fine.images.items()}
    extra = {
        **fine.provenance["extra"],
        **plan.provenance(),
        "internal_grid": (
            f"factor {plan.factor:g} = {whole}/{step}: upsampled by {whole} (every output and "
            f"every source slice lies on that grid), then every {step}th slice kept"
        ),
    }
    return _result(mode, params, array, data, extra, images)


def _sub_stage(name: str, start: float, end: float):
    """A part ``start..end`` of stage ``name``."""
    progress = stage(name)
    return lambda fraction, message: progress(start + (end - start) * fraction, message)
