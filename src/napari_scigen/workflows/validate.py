"""Held-out slice benchmark: remove real slices, rebuild them, score against the truth.

The honest test of a slice-interpolation method on *your* data. Two geometries:

* ``drop_every=G``: one interior slice in ``G`` is removed
  (:func:`~napari_scigen.engines.interpolation.plan.drop_every`), so each gap is one slice;
* ``keep_every=G``: only slices ``0, G, 2G, ...`` are kept and the ``G - 1`` slices
  between them are rebuilt (:func:`~napari_scigen.engines.interpolation.plan.keep_every`):
  the realistic z-upsampling test.

The removed slices are blanked before any engine sees the volume, every method
(any registered interpolation engine) rebuilds them from the kept ones through
:mod:`napari_scigen.api`, and only the removed slices are scored: PSNR, SSIM, LPIPS (when
its weights are on the machine), GMSD (weight-free; the offline substitute for LPIPS)
and morphology errors (porosity and pore specific surface, the distance of the pore S2
curves and of the pore-size distributions, :mod:`napari_scigen.metrics.realism`; one Otsu
threshold of the whole volume). A noise ceiling, estimated from the kept slices, says how close any
method can get. :func:`~napari_scigen.workflows.validation_report.write_validation_report`
writes the CSV, Markdown and figure.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any

import numpy as np

from ..core.models import ModelNotAvailableError
from ..core.progress import CancelToken, Progress, check_cancelled, relay_progress
from ..core.provenance import make_provenance, to_jsonable
from ..core.result import EngineResult
from ..core.validation import InvalidInputError, check_image

#: Methods compared when none are named.
DEFAULT_METHODS = ("linear", "flow")

#: Metrics scored on the held-out slices.
VALIDATION_METRICS = ("psnr", "ssim", "lpips", "gmsd", "porosity", "surface", "s2", "psd")

#: Direction of each metric, for the report.
HIGHER_IS_BETTER = {
    "psnr": True,
    "ssim": True,
    "lpips": False,
    "gmsd": False,
    "porosity": False,
    "surface": False,
    "s2": False,
    "psd": False,
}


def validation_methods() -> tuple[str, ...]:
    """Every method ``validate`` can run: the registered interpolation engines."""
    from ..engines.registry import engine_names

    return engine_names("interpolate")


def parse_names(values: str | Sequence[str], known: Sequence[str], what: str) -> tuple[str, ...]:
    """Comma-separated text or a sequence of names, checked against ``known``."""
    names = values.split(",") if isinstance(values, str) else list(values)
    cleaned = tuple(dict.fromkeys(str(n).strip().lower() for n in names if str(n).strip()))
    unknown = [n for n in cleaned if n not in known]
    if unknown:
        raise InvalidInputError(f"unknown {what} {unknown}; choose from {', '.join(known)}")
    if not cleaned:
        raise InvalidInputError(f"no {what} given")
    return cleaned


def held_out_slices(
    n_slices: int,
    settings=None,
    *,
    drop_every: int | None = None,
    keep_every: int | None = None,
    offset: int | None = None,
) -> tuple[tuple[int, ...], dict[str, Any]]:
    """The slices to hold out and a record of the geometry.

    ``settings`` is a :class:`~napari_scigen.workflows.settings.ValidateParams` (whose
    construction checked the geometry): one of ``drop_every``/``keep_every`` (neither:
    ``drop_every=4``); ``offset`` is the first held-out slice for ``drop_every``
    (default 1) and the first kept slice for ``keep_every`` (default 0). Without
    ``settings`` the geometry may be given as those keywords
    (``held_out_slices(n, keep_every=2)``), checked the same way.
    """
    from .settings import ValidateParams

    geometry = {"drop_every": drop_every, "keep_every": keep_every, "offset": offset}
    if settings is None:
        settings = ValidateParams(**geometry)
    elif any(value is not None for value in geometry.values()):
        raise TypeError("held_out_slices: give settings or the geometry keywords, not both")
    from ..engines.interpolation.plan import drop_every as plan_drop
    from ..engines.interpolation.plan import keep_every as plan_keep

    if settings.keep_every is not None:
        start = 0 if settings.offset is None else settings.offset
        return plan_keep(n_slices, settings.keep_every, offset=start), {
            "geometry": "keep-every",
            "every": settings.keep_every,
            "offset": start,
        }
    every = 4 if settings.drop_every is None else settings.drop_every
    start = 1 if settings.offset is None else settings.offset
    return plan_drop(n_slices, every, offset=start), {
        "geometry": "drop-every",
        "every": every,
        "offset": start,
    }


def _joined(names: str | Sequence[str]) -> str:
    """Comma-separated names (``ValidateParams`` holds them as text, like the flags)."""
    return names if isinstance(names, str) else ",".join(str(name) for name in names)


def noise_ceiling(volume: np.ndarray, kept: Sequence[int], span: float):
    """Noise level of the kept slices and the best PSNR any reconstruction can expect.

    The real held-out slices carry noise independent of everything a method can see,
    so even a perfect noise-free reconstruction has an expected squared error of at
    least ``sigma**2``: the ceiling is ``20 log10(data range / sigma)``.

    Returns
    -------
    dict
        ``{"sigma", "psnr_db", "method", "slices"}``.
    """
    from skimage.restoration import estimate_sigma

    step = max(1, len(kept) // 8)
    chosen = list(kept)[::step][:8]
    sigmas = [float(estimate_sigma(volume[z].astype(np.float64))) for z in chosen]
    sigma = float(np.mean(sigmas))
    span = float(span)
    ceiling = float(20 * np.log10(span / sigma)) if sigma > 0 and span > 0 else float("inf")
    return {
        "sigma": sigma,
        "psnr_db": ceiling,
        "method": "skimage.restoration.estimate_sigma (wavelet median absolute deviation), "
        "mean over kept slices; ceiling = 20 log10(data range / sigma)",
        "slices": chosen,
    }


def _row(method: str, metric: str, value: float, details=None, note: str = "") -> dict:
    return {
        "method": method,
        "metric": metric,
        "value": float(value),
        "details": details or {},
        "note": note,
    }


def _relative(reference: float, generated: float) -> float:
    return float((generated - reference) / reference) if reference else float("nan")


def _morphology_rows(method, truth, rebuilt, threshold, metrics) -> list[dict]:
    from ..metrics.morphology import specific_surface_area

    rows = []
    truth_pores, rebuilt_pores = truth <= threshold, rebuilt <= threshold
    if "porosity" in metrics:
        per_truth = [float(p.mean()) for p in truth_pores]
        per_rebuilt = [float(p.mean()) for p in rebuilt_pores]
        true_value, rebuilt_value = float(np.mean(per_truth)), float(np.mean(per_rebuilt))
        rows.append(
            _row(
                method,
                "porosity",
                _relative(true_value, rebuilt_value),
                {
                    "truth": true_value,
                    "rebuilt": rebuilt_value,
                    "threshold": threshold,
                    "per_slice_truth": per_truth,
                    "per_slice_rebuilt": per_rebuilt,
                },
                "signed relative error of the held-out slices' porosity",
            )
        )
    if "surface" in metrics:
        per_truth = [specific_surface_area(p) for p in truth_pores]
        per_rebuilt = [specific_surface_area(p) for p in rebuilt_pores]
        true_value, rebuilt_value = float(np.mean(per_truth)), float(np.mean(per_rebuilt))
        rows.append(
            _row(
                method,
                "surface",
                _relative(true_value, rebuilt_value),
                {
                    "truth": true_value,
                    "rebuilt": rebuilt_value,
                    "threshold": threshold,
                    "unit": "pore perimeter per pixel area (2D, per slice)",
                },
                "signed relative error of the pore specific surface (perimeter per area)",
            )
        )
    if {"s2", "psd"} & set(metrics):
        from ..metrics.realism import realism

        scores = realism(truth, rebuilt, threshold)
        if "s2" in metrics:
            note = f"RMS difference of the mean pore S2(r), r <= {scores['s2']['r_max']} px"
            rows.append(_row(method, "s2", scores["s2"]["distance"], scores["s2"], note))
        if "psd" in metrics:
            note = "pore-size distribution distance (1-Wasserstein of equivalent diameters, px)"
            rows.append(
                _row(method, "psd", scores["pore_size"]["distance"], scores["pore_size"], note)
            )
    return rows


def _method_params(method: str, given: Mapping[str, Any], device: str):
    """The params of ``method``: the given ones, with the run's ``device`` where declared."""
    from ..core.params import fields_of, make_params
    from ..engines.registry import get_engine

    cls = get_engine("interpolate", method).params_class
    params = make_params(cls, given.get(method))
    declared = {spec.name for spec in fields_of(cls)}
    user_set = given.get(method)
    user_device = isinstance(user_set, Mapping) and "device" in user_set
    if "device" in declared and not user_device and params.device == "auto":
        params = params.replace(device=device)
    return params


def _score(method, truth, rebuilt, chosen, pixel_range, threshold, lpips_net, device, cancel):
    from ..metrics.gradient import gmsd
    from ..metrics.pixel import psnr, ssim

    rows = []
    for metric, function in (("psnr", psnr), ("ssim", ssim), ("gmsd", gmsd)):
        if metric in chosen:
            scores = function(truth, rebuilt, data_range=pixel_range)
            rows.append(_row(method, metric, scores.value, {"per_slice": list(scores.values)}))
    if "lpips" in chosen:
        from ..metrics.perceptual import lpips_distance

        check_cancelled(cancel)
        lp = lpips_distance(truth, rebuilt, net=lpips_net, device=device, cancel=cancel)
        details = {"per_slice": list(lp.values), "net": lp.net, "lpips_version": lp.lpips_version}
        rows.append(_row(method, "lpips", lp.value, details))
    if threshold is not None:
        rows.extend(_morphology_rows(method, truth, rebuilt, threshold, chosen))
    return rows


#: What a self-validating engine (``learned``, ``auto``) reports about itself.
ENGINE_NOTE_KEYS = (
    "filled_with",
    "choice_reason",
    "decided_by",
    "learned_lost_self_validation",
    "expected_error",
    "self_validation",
    "z_check_exact",
    "in_plane_check",
    "seconds",
)


def _engine_notes(result: EngineResult, truth, rebuilt, missing) -> dict[str, Any]:
    """The engine's own expected error and choice, and how its uncertainty tracks the error."""
    extra = result.provenance.get("extra", {})
    notes = {key: extra[key] for key in ENGINE_NOTE_KEYS if key in extra}
    uncertainty = result.images.get("uncertainty")
    if uncertainty is not None:
        from scipy.stats import spearmanr

        spread = np.asarray(uncertainty)[list(missing)].ravel()
        error = np.abs(rebuilt.astype(np.float64) - truth.astype(np.float64)).ravel()
        pick = np.linspace(0, error.size - 1, min(error.size, 200_000)).astype(int)
        if np.ptp(spread[pick]) > 0 and np.ptp(error[pick]) > 0:
            notes["held_out_uncertainty_error_spearman"] = round(
                float(spearmanr(error[pick], spread[pick]).statistic), 4
            )
    return notes


def run_validation(
    volume,
    *,
    drop_every: int | None = None,
    keep_every: int | None = None,
    offset: int | None = None,
    methods: str | Sequence[str] = DEFAULT_METHODS,
    metrics: str | Sequence[str] = VALIDATION_METRICS,
    data_range=None,
    device: str = "auto",
    lpips_net: str = "alex",
    method_params: Mapping[str, Any] | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Hold out slices, rebuild them with each method and score only those.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(Z, Y, X)`` volume with at least 3 slices.
    drop_every, keep_every : int, optional
        The geometry (see the module docstring); default ``drop_every=4``.
    offset : int, optional
        First held-out slice (drop-every, default 1) or first kept slice
        (keep-every, default 0).
    methods : str or sequence of str
        Registered interpolation engines to compare. A method that cannot run here
        (missing extra or weights) is reported as failed; if it was the only method
        the error is raised.
    metrics : str or sequence of {"psnr", "ssim", "lpips", "gmsd", "porosity", "surface", "s2", "psd"}
        Scores on the held-out slices. LPIPS is skipped with a note when its backbone
        weights are missing; GMSD needs no weights and is the offline substitute.
    data_range : None, "span", float or (low, high)
        For PSNR/SSIM/GMSD. ``None`` (default) uses the 0.5-99.5 percentile window of
        the whole volume (:func:`napari_scigen.metrics.pixel.scoring_window`, the default
        of ``metrics``, the Metrics dock and ``compare`` too), so scores reflect the grey
        levels the sample occupies; ``"span"``: the dtype span.
    device : str
        For LPIPS and for every engine that declares a ``device`` parameter.
    lpips_net : {"alex", "vgg"}
        LPIPS backbone.
    method_params : mapping, optional
        ``{method: params dataclass or dict}``, e.g. ``{"flow": {"flow_num_iter": 20}}``.
    cancel : CancelToken, optional
        Passed to the engines and checked between steps.

    Yields
    ------
    Progress
        Engine progress rescaled per method, then scoring events.

    Returns
    -------
    EngineResult
        ``data``: the real held-out slices; ``images``: ``"<method> rebuilt"`` stacks
        of the rebuilt held-out slices; ``provenance["table"]``: rows ``{"method",
        "metric", "value", "details", "note"}`` (``details["per_slice"]`` per held-out
        slice); ``provenance["extra"]`` has ``held_out``, ``geometry``,
        ``noise_ceiling``, ``skipped_metrics``, ``failed_methods``, ``seconds`` and
        ``engine_notes`` (per self-validating method: what it filled with and why, its
        own expected error, and the rank correlation of its uncertainty with the real
        error on the held-out slices); ``images`` also holds ``"<method> uncertainty"``
        for engines that return one.
    """
    import time

    from .. import api
    from ..metrics.pixel import resolve_data_range, scoring_window
    from .settings import ValidateParams

    array = check_image(volume, name="volume", ndim=(3,))
    # the one check of the geometry, methods, metrics and device (the command's too)
    settings = ValidateParams(
        drop_every=drop_every,
        keep_every=keep_every,
        offset=offset,
        methods=_joined(methods),
        metrics=_joined(metrics),
        device=device,
    )
    chosen_methods = settings.method_names()
    chosen_metrics = settings.metric_names()
    given = dict(method_params or {})
    unknown = sorted(set(given) - set(chosen_methods))
    if unknown:
        raise InvalidInputError(f"method_params for methods not run: {unknown}")
    params = {m: _method_params(m, given, device) for m in chosen_methods}
    missing, geometry = held_out_slices(array.shape[0], settings)
    truth = array[list(missing)].copy()
    observed = array.copy()
    observed[list(missing)] = 0  # no engine can peek at the held-out slices
    kept = [z for z in range(array.shape[0]) if z not in set(missing)]
    requested_range = data_range
    scoring = scoring_window(array, data_range)  # the one default of every front-end
    value_range, window = resolve_data_range(array, scoring.data_range)
    pixel_range = window if window is not None else value_range
    ceiling = noise_ceiling(array, kept, value_range)
    skipped: dict[str, str] = {}
    if "lpips" in chosen_metrics:
        from ..metrics.perceptual import backbone_file

        try:
            backbone_file(lpips_net)
        except ModelNotAvailableError as error:
            skipped["lpips"] = str(error).splitlines()[0]
    scored = tuple(m for m in chosen_metrics if m not in skipped)
    threshold = None
    if {"porosity", "surface", "s2", "psd"} & set(scored):
        from ..metrics.morphology import otsu_threshold

        threshold = otsu_threshold(array)

    rows: list[dict] = []
    images: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    seconds: dict[str, float] = {}
    engine_notes: dict[str, dict] = {}
    span = 100
    total = span * len(chosen_methods)
    for index, method in enumerate(chosen_methods):
        check_cancelled(cancel)
        base = index * span
        yield Progress(base, total, f"{method}: rebuilding {len(missing)} held-out slice(s)")
        start = time.perf_counter()
        try:
            job = api.interpolate_job(
                observed, method=method, missing=missing, params=params[method], cancel=cancel
            )
            result = yield from relay_progress(
                job,
                lambda event, base=base, method=method: Progress(
                    base + int(80 * event.fraction), total, f"{method}: {event.message}"
                ),
            )
        except (ModelNotAvailableError, ImportError) as error:
            if len(chosen_methods) == 1:
                raise
            failed[method] = str(error).splitlines()[0]
            continue
        seconds[method] = round(time.perf_counter() - start, 3)
        rebuilt = np.asarray(result.data)[list(missing)]
        images[f"{method} rebuilt"] = rebuilt.copy()
        notes = _engine_notes(result, truth, rebuilt, missing)
        if notes:
            engine_notes[method] = notes
        if "uncertainty" in result.images:
            images[f"{method} uncertainty"] = np.asarray(result.images["uncertainty"])[
                list(missing)
            ]
        yield Progress(base + 85, total, f"{method}: scoring")
        rows += _score(
            method, truth, rebuilt, scored, pixel_range, threshold, lpips_net, device, cancel
        )
        yield Progress(base + span, total, f"{method}: done")
    if not images:
        raise InvalidInputError(
            "no method could run: " + "; ".join(f"{m}: {why}" for m, why in failed.items())
        )
    provenance = make_provenance(
        "validation",
        {
            **geometry,
            "methods": list(chosen_methods),
            "metrics": list(chosen_metrics),
            "data_range": requested_range,
            "lpips_net": lpips_net,
            "method_params": {m: p.to_dict() for m, p in params.items()},
        },
        source={"shape": array.shape, "dtype": array.dtype.name},
        extra={
            "held_out": list(missing),
            "geometry": geometry["geometry"],
            "data_range_used": value_range,
            "window": window,
            "scoring_window": scoring.as_dict(),
            "noise_ceiling": ceiling,
            "morphology_threshold": threshold,
            "skipped_metrics": skipped,
            "failed_methods": failed,
            "seconds": seconds,
            "engine_notes": engine_notes,
        },
    )
    provenance["table"] = to_jsonable(rows)
    return EngineResult(data=truth, provenance=provenance, images=images)
