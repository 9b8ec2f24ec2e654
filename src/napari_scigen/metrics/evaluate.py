"""One evaluation engine over every metric: a table of rows plus maps for napari.

:func:`run_evaluate` is a generator like every engine: it yields one
:class:`~napari_scigen.core.progress.Progress` per metric and returns an
:class:`~napari_scigen.core.result.EngineResult` whose

* ``data`` is the SSIM map (else the LPIPS map, else ``|generated - reference|``)
  as float32,
* ``images`` holds ``"ssim map"`` and ``"lpips map"`` when computed,
* ``provenance["table"]`` is a list of rows
  ``{"metric", "value", "region", "details", "note"}``.

Each metric succeeds or reports its own row: a metric whose weights are missing
becomes a row with value ``nan`` and a ``note`` starting ``"skipped: "`` naming the
missing file; a metric that fails (a constant image for morphology, too few slices
for PRDC, ...) becomes a row with value ``nan`` and a ``note`` starting ``"failed: "``
with the one-line error. The other metrics still run (FID, KID and PRDC share one
feature extraction, and each reports on its own). If only one metric was requested,
its error is raised instead.

With a mask, every paired metric is reported ``"inside"`` and ``"outside"`` it:
SSIM, PSNR and LPIPS pixel by pixel; GMSD as the deviation of its similarity map
over the region (at its half resolution); morphology with the porosity over the
region's voxels and S2, surface and pore sizes over the mask's bounding box
(``"inside"``) or the whole image (``"outside"``), as each row's note says.
``slices`` restricts a comparison of two stacks to some z slices (recorded in the
provenance).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from ..core.indices import check_indices
from ..core.models import ModelNotAvailableError
from ..core.progress import Cancelled, CancelToken, Progress, check_cancelled
from ..core.provenance import make_provenance, strict_jsonable, to_jsonable
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


def _gmsd_rows(ref, gen, mask, data_range) -> list[dict]:
    from .gradient import gmsd

    scores = gmsd(ref, gen, data_range=data_range)
    if mask is None:
        return [_row("gmsd", scores.value, "all", _score_details(scores))]
    return _gmsd_region_rows(ref, gen, mask, data_range, scores.data_range, scores.window)


def _gmsd_region_rows(ref, gen, mask, data_range, value_range, window) -> list[dict]:
    """GMSD inside and outside ``mask``: the similarity map's deviation over each region.

    The similarity map has half the resolution of the slices (see
    :mod:`napari_scigen.metrics.gradient`); a map pixel belongs to "inside" when its
    2x2 block touches the mask, otherwise to "outside".
    """
    from scipy import ndimage

    from .gradient import GMSD_CONSTANT, _gradient_magnitude, _to_255
    from .pixel import _as_slices

    low = window[0] if window is not None else float(np.min(ref))
    if window is None and np.issubdtype(ref.dtype, np.integer):
        low = float(np.iinfo(ref.dtype).min)
    span = float(value_range) if value_range > 0 else 1.0
    boolean = np.asarray(check_mask(mask, ref.shape, allow_empty=True))
    values: dict[str, list[float]] = {"inside": [], "outside": []}
    for ref_slice, gen_slice, mask_slice in zip(
        _as_slices(ref), _as_slices(gen), _as_slices(boolean), strict=True
    ):
        m_ref = _gradient_magnitude(_to_255(ref_slice, low, span))
        m_gen = _gradient_magnitude(_to_255(gen_slice, low, span))
        similarity = (2.0 * m_ref * m_gen + GMSD_CONSTANT) / (m_ref**2 + m_gen**2 + GMSD_CONSTANT)
        touched = ndimage.uniform_filter(mask_slice.astype(np.float32), 2, mode="nearest")
        inside = touched[::2, ::2] > 0
        for region, selected in (("inside", inside), ("outside", ~inside)):
            chosen = similarity[selected]
            values[region].append(float(np.std(chosen, ddof=1)) if chosen.size > 1 else math.nan)
    rows = []
    for region, per_slice in values.items():
        finite = [v for v in per_slice if not math.isnan(v)]
        details = {
            "per_slice": per_slice,
            "data_range": value_range,
            "window": list(window) if window is not None else None,
        }
        note = "deviation of the gradient similarity map over the region (half resolution)"
        rows.append(
            _row("gmsd", float(np.mean(finite)) if finite else math.nan, region, details, note)
        )
    return rows


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


def _morphology_comparison_rows(comparison: dict, region: str, note: str = "") -> list[dict]:
    rows = []
    for name, values in comparison["metrics"].items():
        rows.append(
            _row(
                name,
                values["generated"],
                region,
                {
                    "reference": values["reference"],
                    "relative_error": values["relative_error"],
                    "threshold": comparison["segmentation"]["threshold"],
                    "voxel_size": comparison["voxel_size"],
                },
                note,
            )
        )
    s2_note = "RMS difference of the pore two-point correlation curves"
    rows.append(
        _row(
            "s2_rmse",
            comparison["s2"]["rmse"],
            region,
            {"r_max": comparison["s2"]["r"][-1], "phase": "pore"},
            f"{s2_note}; {note}" if note else s2_note,
        )
    )
    return rows


def _mask_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of the non-zero voxels of ``mask`` (which has at least one)."""
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _morphology_rows(ref, gen, mask, voxel_size) -> list[dict]:
    from .morphology import compare_morphology, otsu_threshold, relative_error

    if mask is None:
        return _morphology_comparison_rows(
            compare_morphology(ref, gen, voxel_size=voxel_size), "all"
        )
    threshold = otsu_threshold(ref)  # of the whole reference, so both regions share it
    boolean = np.asarray(check_mask(mask, ref.shape, allow_empty=True))
    rows = []
    for region, selected in (("inside", boolean), ("outside", ~boolean)):
        if not selected.any():
            rows.append(_row("porosity", math.nan, region, {}, "failed: the region is empty"))
            continue
        box = _mask_box(selected) if region == "inside" else tuple(slice(None) for _ in ref.shape)
        where = "the mask's bounding box" if region == "inside" else "the whole image"
        comparison = compare_morphology(
            ref[box], gen[box], segmentation="threshold", threshold=threshold, voxel_size=voxel_size
        )
        # pores are the voxels at or below the threshold (morphology.segment)
        pores = [float(np.mean((image <= threshold)[selected])) for image in (ref, gen)]
        comparison["metrics"]["porosity"] = {
            "reference": pores[0],
            "generated": pores[1],
            "relative_error": relative_error(pores[0], pores[1]),
        }
        rows += _morphology_comparison_rows(
            comparison, region, f"porosity over the region's voxels, the rest over {where}"
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


def _unavailable_rows(metric: str, note: str, regions: tuple[str, ...] = ("all",)) -> list[dict]:
    names = {
        "prdc": ("precision", "recall", "density", "coverage"),
        "morphology": ("morphology",),
    }.get(metric, (metric,))
    return [_row(name, float("nan"), region, {}, note) for region in regions for name in names]


class _SharedFeatures:
    """A feature extractor that computes each batch once, so FID, KID and PRDC share it.

    ``make`` builds the extractor on first use, so a missing weight file is reported
    by the metric that needed it (as its own row).
    """

    def __init__(self, make) -> None:
        self._make = make
        self._extractor = None
        self._features: dict[tuple, np.ndarray] = {}

    @property
    def extractor(self):
        if self._extractor is None:
            self._extractor = self._make()
        return self._extractor

    @property
    def name(self) -> str:
        inner = self.extractor
        return str(getattr(inner, "name", getattr(inner, "__name__", type(inner).__name__)))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import hashlib

        batch = np.ascontiguousarray(images)
        key = (batch.shape, batch.dtype.str, hashlib.sha1(batch.view(np.uint8)).hexdigest())
        if key not in self._features:
            self._features[key] = np.asarray(self.extractor(batch))
        return self._features[key]


def _failure_note(error: BaseException) -> str:
    """``"failed: <one line>"``; the exception type is named when it is not an input error."""
    if isinstance(error, (InvalidInputError, ValueError)):
        return f"failed: {_first_line(error)}"
    if isinstance(error, MemoryError):
        return "failed: not enough memory for this metric"
    return f"failed: {type(error).__name__}: {_first_line(error)}"


def _select_slices(ref, gen, mask, slices):
    """Keep only ``slices`` (z indices) of both stacks and of a 3D mask."""
    if ref.ndim != 3 or gen.ndim != 3:
        raise InvalidInputError(
            "slices selects z slices of two stacks, but the images are single 2D slices"
        )
    depth = min(ref.shape[0], gen.shape[0])
    chosen = list(dict.fromkeys(check_indices(slices, name="slices", n=depth)))
    if not chosen:
        raise InvalidInputError("slices selects no slice")
    if mask is not None and np.ndim(mask) == 3:
        mask = np.asarray(mask)[chosen]
    return ref[chosen], gen[chosen], mask, chosen


def _run_step(step, ref, gen, mask, options, images, cancel) -> list[dict]:
    """The rows of one metric (may raise; :func:`run_evaluate` turns errors into rows)."""
    data_range = options["data_range"]
    if step == "ssim":
        rows, images["ssim map"] = _ssim_rows(ref, gen, mask, data_range)
        return rows
    if step == "psnr":
        return _psnr_rows(ref, gen, mask, data_range)
    if step == "lpips":
        rows, images["lpips map"] = _lpips_rows(
            ref, gen, mask, options["device"], options["lpips_net"], cancel
        )
        return rows
    if step == "gmsd":
        return _gmsd_rows(ref, gen, mask, data_range)
    if step == "morphology":
        return _morphology_rows(ref, gen, mask, options["voxel_size"])
    if step in ("fid", "kid", "prdc"):
        if ref.ndim != 3 or gen.ndim != 3:
            raise InvalidInputError("fid/kid/prdc need stacks of slices (3D), not single slices")
        return _distribution_rows(ref, gen, (step,), options["device"], options["features"], cancel)
    # clipscore
    prompt = options["prompt"]
    if not prompt:
        return [
            _row("clipscore", math.nan, "all", {}, "needs a prompt (the text to score against)")
        ]
    from .clipscore import clip_score
    from .weights import DEFAULT_CLIP_MODEL

    result = clip_score(
        gen,
        prompt,
        model=options["clip_model"] or DEFAULT_CLIP_MODEL,
        device=options["device"],
        cancel=cancel,
    )
    details = result.as_dict()
    for key in ("metric", "value"):
        details.pop(key)
    return [_row("clipscore", result.value, "all", details)]


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
    slices: Sequence[int] | None = None,
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
        Region of interest (e.g. the inpainted area). Paired metrics are then reported
        ``"inside"`` and ``"outside"`` the mask (see the module notes).
    data_range : None, "span", float or (low, high)
        For SSIM/PSNR/GMSD. ``None`` (default): the reference's 0.5-99.5 percentile
        window, computed on the whole reference before ``slices`` are picked, the same
        default as the Metrics dock, ``validate`` and ``compare``; ``"span"``: the dtype
        span (see :func:`napari_scigen.metrics.pixel.scoring_window`). The window used
        is stated in ``provenance["extra"]["scoring_window"]``.
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
    slices : sequence of int, optional
        Score only these z slices of both stacks (and of a 3D mask); recorded in the
        provenance. Default: every slice.
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
        Bad inputs, unknown metrics, bad ``slices``, shapes that paired metrics cannot
        compare, or the error of the only requested metric.
    """
    wanted = parse_metrics(metrics)
    ref = check_image(reference, name="reference")
    gen = check_image(generated, name="generated")
    from ..core.params import check_value, field_spec
    from .pixel import scoring_window
    from .settings import MetricsParams

    device = check_value(field_spec(MetricsParams, "device"), device)  # "gpu": a clear error
    scoring = scoring_window(ref, data_range)  # on the whole reference, before --slices
    chosen_slices = None
    if slices is not None:
        ref, gen, mask, chosen_slices = _select_slices(ref, gen, mask, slices)
    paired = [m for m in wanted if m in PAIRED_METRICS]
    if paired and (ref.shape != gen.shape or ref.dtype != gen.dtype):
        raise InvalidInputError(
            f"{', '.join(paired)} compare pixel by pixel, but reference is {ref.shape} {ref.dtype} and "
            f"generated is {gen.shape} {gen.dtype}; resample/convert one onto the other first"
        )
    if mask is not None:
        mask = check_mask(mask, ref.shape)
    steps = [name for name in EVALUATE_METRICS if name in wanted]
    options = {
        "data_range": scoring.data_range,
        "device": device,
        "lpips_net": lpips_net,
        "voxel_size": voxel_size,
        "prompt": prompt,
        "clip_model": clip_model,
        "features": None,
    }
    if any(step in ("fid", "kid", "prdc") for step in steps):

        def make_extractor():
            if feature_extractor is not None:
                return feature_extractor
            from .distribution import InceptionFeatureExtractor

            return InceptionFeatureExtractor(device=device)

        options["features"] = _SharedFeatures(make_extractor)
    rows: list[dict] = []
    images: dict[str, np.ndarray] = {}
    single = len(wanted) == 1
    for index, step in enumerate(steps):
        check_cancelled(cancel)
        yield Progress(index, len(steps), f"computing {step}")
        regions = _regions(mask) if step in PAIRED_METRICS else ("all",)
        try:
            rows.extend(_run_step(step, ref, gen, mask, options, images, cancel))
        except Cancelled:
            raise
        except ModelNotAvailableError as error:
            if single:
                raise
            rows.extend(_unavailable_rows(step, f"skipped: {_first_line(error)}", regions))
        except Exception as error:  # noqa: BLE001 - one failing metric must not discard the others
            if single:
                raise
            rows.extend(_unavailable_rows(step, _failure_note(error), regions))
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
            "slices": chosen_slices,
        },
        extra={"scoring_window": scoring.as_dict()},
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
    return [strict_jsonable(row) for row in rows]
