"""One evaluation engine over every metric: a table of rows plus maps for napari.

:func:`run_evaluate` is a generator like every engine: it yields one
:class:`~napari_scigen.core.progress.Progress` per metric and returns an
:class:`~napari_scigen.core.result.EngineResult` whose

* ``data`` is the SSIM map (else the LPIPS map, else ``|generated - reference|``)
  as float32,
* ``images`` holds ``"ssim map"`` and ``"lpips map"`` when computed,
* ``provenance["table"]`` is a list of rows
  ``{"metric", "value", "region", "details", "note"}``.

A metric whose weights are missing becomes a row with value ``nan`` and a ``note``
naming the missing file, so the other metrics still run; if it was the only metric
requested, the :class:`~napari_scigen.core.models.ModelNotAvailableError` is raised.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from ..core.models import ModelNotAvailableError
from ..core.progress import CancelToken, Progress, check_cancelled
from ..core.provenance import make_provenance, to_jsonable
from ..core.result import EngineResult
from ..core.validation import InvalidInputError, check_image, check_mask

#: Metrics :func:`run_evaluate` knows, in the order they run.
EVALUATE_METRICS = (
    "ssim",
    "psnr",
    "lpips",
    "gmsd",
    "morphology",
    "fid",
    "kid",
    "prdc",
    "clipscore",
)

#: Metrics comparing the two images pixel by pixel (same shape and dtype needed).
PAIRED_METRICS = ("ssim", "psnr", "lpips", "gmsd", "morphology")

DEFAULT_METRICS = ("ssim", "psnr")


def parse_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """Normalise ``"ssim,psnr"`` or a sequence to a tuple of known metric names.

    ``"all"`` expands to every metric except ``clipscore`` (which needs a prompt).
    """
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    cleaned: list[str] = []
    for name in (str(n).strip().lower() for n in names):
        if not name:
            continue
        if name == "all":
            cleaned.extend(m for m in EVALUATE_METRICS if m != "clipscore")
            continue
        if name not in EVALUATE_METRICS:
            raise InvalidInputError(
                f"unknown metric {name!r}; choose from {', '.join(EVALUATE_METRICS)} or 'all'"
            )
        cleaned.append(name)
    unique = tuple(dict.fromkeys(cleaned))
    if not unique:
        raise InvalidInputError("no metric requested")
    return unique


def _row(
    metric: str, value: float, region: str = "all", details: dict | None = None, note: str = ""
) -> dict:
    return {
        "metric": metric,
        "value": float(value) if value is not None else float("nan"),
        "region": region,
        "details": details or {},
        "note": note,
    }


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _regions(mask) -> tuple[str, ...]:
    return ("all",) if mask is None else ("inside", "outside")


def _score_details(scores) -> dict:
    details = scores.as_dict()
    for key in ("metric", "value", "region"):
        details.pop(key)
    return details


def _ssim_rows(ref, gen, mask, data_range) -> tuple[list[dict], np.ndarray]:
    from .pixel import ssim_report

    scores, full_map = ssim_report(
        ref, gen, data_range=data_range, mask=mask, regions=_regions(mask)
    )
    rows = [_row("ssim", s.value, region, _score_details(s)) for region, s in scores.items()]
    return rows, full_map


def _psnr_rows(ref, gen, mask, data_range) -> list[dict]:
    from .pixel import psnr

    rows = []
    for region in _regions(mask):
        scores = psnr(ref, gen, data_range=data_range, mask=mask, region=region)
        rows.append(_row("psnr", scores.value, region, _score_details(scores)))
    return rows


def _gmsd_rows(ref, gen, data_range) -> list[dict]:
    from .gradient import gmsd

    scores = gmsd(ref, gen, data_range=data_range)
    return [_row("gmsd", scores.value, "all", _score_details(scores))]


def _lpips_rows(ref, gen, mask, device, net, cancel) -> tuple[list[dict], np.ndarray]:
    from .perceptual import lpips_distance

    result = lpips_distance(ref, gen, net=net, device=device, spatial=True, cancel=cancel)
    details = result.as_dict()
    for key in ("metric", "value"):
        details.pop(key)
    rows = [_row("lpips", result.value, "all", details)]
    if mask is not None:
        boolean = np.asarray(check_mask(mask, ref.shape, allow_empty=True))
        for region, selected in (("inside", boolean), ("outside", ~boolean)):
            values = result.map[selected]
            value = float(values.mean()) if values.size else float("nan")
            rows.append(
                _row(
                    "lpips",
                    value,
                    region,
                    {"net": result.net},
                    "mean of the spatial LPIPS map over the region",
                )
            )
    return rows, result.map


def _morphology_rows(ref, gen, voxel_size) -> list[dict]:
    from .morphology import compare_morphology

    comparison = compare_morphology(ref, gen, voxel_size=voxel_size)
    rows = []
    for name, values in comparison["metrics"].items():
        rows.append(
            _row(
                name,
                values["generated"],
                "all",
                {
                    "reference": values["reference"],
                    "relative_error": values["relative_error"],
                    "threshold": comparison["segmentation"]["threshold"],
                    "voxel_size": comparison["voxel_size"],
                },
            )
        )
    rows.append(
        _row(
            "s2_rmse",
            comparison["s2"]["rmse"],
            "all",
            {"r_max": comparison["s2"]["r"][-1], "phase": "pore"},
            "RMS difference of the pore two-point correlation curves",
        )
    )
    return rows


def _distribution_rows(ref, gen, wanted, device, feature_extractor, cancel) -> list[dict]:
    from .distribution import distribution_metrics

    result = distribution_metrics(
        ref, gen, metrics=wanted, feature_extractor=feature_extractor, device=device, cancel=cancel
    )
    common = {
        "n_reference": result["n_reference"],
        "n_generated": result["n_generated"],
        "feature_extractor": result["feature_extractor"],
    }
    note = "; ".join(result["warnings"])
    rows = []
    if "fid" in wanted:
        rows.append(_row("fid", result["fid"], "all", dict(common), note))
    if "kid" in wanted:
        rows.append(_row("kid", result["kid_mean"], "all", {**common, "std": result["kid_std"]}))
    if "prdc" in wanted:
        rows.extend(
            _row(name, result[name], "all", dict(common))
            for name in ("precision", "recall", "density", "coverage")
        )
    return rows


def _unavailable_rows(metric: str, note: str) -> list[dict]:
    names = {"prdc": ("precision", "recall", "density", "coverage")}.get(metric, (metric,))
    return [_row(name, float("nan"), "all", {}, note) for name in names]


def run_evaluate(
    reference,
    generated,
    *,
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    mask=None,
    data_range=None,
    device: str = "auto",
    lpips_net: str = "alex",
    voxel_size: float = 1.0,
    prompt: str | None = None,
    clip_model: str | None = None,
    feature_extractor=None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Compare a generated image with its reference on the requested metrics.

    Parameters
    ----------
    reference, generated : numpy.ndarray
        2D slices or 3D volumes. Paired metrics (``ssim``, ``psnr``, ``lpips``,
        ``gmsd``, ``morphology``) need the same shape and dtype; ``fid``, ``kid``, ``prdc``
        compare the slices of two stacks as sample sets; ``clipscore`` scores the
        generated slices against ``prompt``.
    metrics : str or sequence of str
        Names from :data:`EVALUATE_METRICS`, or ``"all"``.
    mask : numpy.ndarray, optional
        Region of interest (e.g. the inpainted area). Pixel metrics are then reported
        ``"inside"`` and ``"outside"`` the mask.
    data_range : float, (low, high) or None
        For SSIM/PSNR/GMSD (see :mod:`napari_scigen.metrics.pixel`). GMSD is always
        computed over the whole image (``region="all"``), also with a mask.
    device : str
        For LPIPS, Inception and CLIP.
    lpips_net : {"alex", "vgg"}
        LPIPS backbone.
    voxel_size : float
        For morphology (lengths, areas).
    prompt : str, optional
        Text for CLIPScore.
    clip_model : str, optional
        CLIP model id or directory (default ``openai/clip-vit-base-patch32``).
    feature_extractor : callable, optional
        Replaces the FID Inception for ``fid``/``kid``/``prdc``.
    cancel : CancelToken, optional
        Checked between metrics.

    Yields
    ------
    Progress
        One event per metric.

    Returns
    -------
    EngineResult
        See the module notes.

    Raises
    ------
    ModelNotAvailableError
        When the only requested metric needs weights that are missing.
    InvalidInputError
        Bad inputs, unknown metrics, or shapes that paired metrics cannot compare.
    """
    wanted = parse_metrics(metrics)
    ref = check_image(reference, name="reference")
    gen = check_image(generated, name="generated")
    paired = [m for m in wanted if m in PAIRED_METRICS]
    if paired and (ref.shape != gen.shape or ref.dtype != gen.dtype):
        raise InvalidInputError(
            f"{', '.join(paired)} compare pixel by pixel, but reference is {ref.shape} {ref.dtype} and "
            f"generated is {gen.shape} {gen.dtype}; resample/convert one onto the other first"
        )
    if mask is not None:
        mask = check_mask(mask, ref.shape)
    distribution = [m for m in wanted if m in ("fid", "kid", "prdc")]
    steps: list[str] = []
    for name in EVALUATE_METRICS:
        if name not in wanted:
            continue
        step = "distribution" if name in distribution else name
        if step not in steps:
            steps.append(step)
    rows: list[dict] = []
    images: dict[str, np.ndarray] = {}
    single = len(wanted) == 1
    for index, step in enumerate(steps):
        check_cancelled(cancel)
        label = "fid/kid/prdc" if step == "distribution" else step
        yield Progress(index, len(steps), f"computing {label}")
        try:
            if step == "ssim":
                ssim_rows, images["ssim map"] = _ssim_rows(ref, gen, mask, data_range)
                rows.extend(ssim_rows)
            elif step == "psnr":
                rows.extend(_psnr_rows(ref, gen, mask, data_range))
            elif step == "lpips":
                lpips_rows, lpips_map = _lpips_rows(ref, gen, mask, device, lpips_net, cancel)
                rows.extend(lpips_rows)
                images["lpips map"] = lpips_map
            elif step == "gmsd":
                rows.extend(_gmsd_rows(ref, gen, data_range))
            elif step == "morphology":
                rows.extend(_morphology_rows(ref, gen, voxel_size))
            elif step == "distribution":
                if ref.ndim != 3 or gen.ndim != 3:
                    raise InvalidInputError(
                        "fid/kid/prdc need stacks of slices (3D), not single slices"
                    )
                rows.extend(
                    _distribution_rows(ref, gen, distribution, device, feature_extractor, cancel)
                )
            elif step == "clipscore":
                if not prompt:
                    rows.append(
                        _row(
                            "clipscore",
                            float("nan"),
                            "all",
                            {},
                            "needs a prompt (the text to score against)",
                        )
                    )
                    continue
                from .clipscore import clip_score
                from .weights import DEFAULT_CLIP_MODEL

                result = clip_score(
                    gen,
                    prompt,
                    model=clip_model or DEFAULT_CLIP_MODEL,
                    device=device,
                    cancel=cancel,
                )
                details = result.as_dict()
                for key in ("metric", "value"):
                    details.pop(key)
                rows.append(_row("clipscore", result.value, "all", details))
        except ModelNotAvailableError as error:
            if single:
                raise
            for name in distribution if step == "distribution" else (step,):
                rows.extend(_unavailable_rows(name, f"skipped: {_first_line(error)}"))
    check_cancelled(cancel)
    yield Progress(len(steps), len(steps), "done")
    if "ssim map" in images:
        data = images["ssim map"]
    elif "lpips map" in images:
        data = images["lpips map"]
    elif ref.shape == gen.shape:
        data = np.abs(gen.astype(np.float32) - ref.astype(np.float32))
    else:
        data = np.zeros(ref.shape, dtype=np.float32)
    provenance = make_provenance(
        "evaluate",
        {
            "metrics": list(wanted),
            "data_range": data_range,
            "lpips_net": lpips_net,
            "voxel_size": voxel_size,
            "masked": mask is not None,
            "prompt": prompt,
            "clip_model": clip_model,
        },
        source={
            "reference": {"shape": ref.shape, "dtype": ref.dtype.name},
            "generated": {"shape": gen.shape, "dtype": gen.dtype.name},
        },
    )
    provenance["table"] = to_jsonable(rows)
    return EngineResult(
        data=data.astype(np.float32, copy=False), provenance=provenance, images=images
    )


def table_rows_for_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ``nan``/``inf`` replaced by ``None``/strings so strict JSON accepts them."""

    def clean(value):
        if isinstance(value, float):
            if math.isnan(value):
                return None
            if math.isinf(value):
                return "inf" if value > 0 else "-inf"
            return value
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return [clean(to_jsonable(row)) for row in rows]
