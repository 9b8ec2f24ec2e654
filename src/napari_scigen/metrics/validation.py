"""Held-out slice benchmark: drop real slices, rebuild them, score against the truth.

This is the honest test of a slice-interpolation method on *your* data: every
``every``-th interior slice is removed (:func:`napari_scigen.engines.classical.drop_every`),
each method rebuilds the removed slices from the kept ones, and only the held-out
slices are scored against the real ones with PSNR, SSIM, LPIPS (when its weights are
on the machine), GMSD (a weight-free perceptual score, the offline substitute for
LPIPS) and morphology errors (porosity and specific surface of the pores,
segmented with one Otsu threshold of the whole volume).

:func:`write_validation_report` writes a CSV, a Markdown report and a PNG figure.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.models import ModelNotAvailableError
from ..core.progress import CancelToken, Progress, check_cancelled, relay_progress
from ..core.provenance import make_provenance, to_jsonable
from ..core.result import EngineResult
from ..core.validation import InvalidInputError, check_image

#: Methods the benchmark can run.
VALIDATION_METHODS = ("linear", "flow", "stylegan")

#: Metrics scored on the held-out slices.
VALIDATION_METRICS = ("psnr", "ssim", "lpips", "gmsd", "porosity", "surface")

#: Direction of each metric, for the report.
HIGHER_IS_BETTER = {
    "psnr": True,
    "ssim": True,
    "lpips": False,
    "gmsd": False,
    "porosity": False,
    "surface": False,
}

#: Said in the report when LPIPS could not run.
LPIPS_SUBSTITUTE_NOTE = (
    "LPIPS needs ImageNet backbone weights that are not on this machine; GMSD (gradient "
    "magnitude similarity deviation, Xue et al. 2014, no learned weights) is reported as "
    "the offline perceptual substitute."
)

PIXEL_METRICS_CAVEAT = (
    "PSNR, SSIM and LPIPS measure pixel and perceptual agreement only; they miss scientific "
    "fidelity (Sordo et al., J. Imaging 2025). A method can score well and still change pore "
    "connectivity, surface area or phase fractions: read the morphology errors too."
)


def _parse(values: str | Sequence[str], known: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = values.split(",") if isinstance(values, str) else list(values)
    cleaned = tuple(dict.fromkeys(str(n).strip().lower() for n in names if str(n).strip()))
    unknown = [n for n in cleaned if n not in known]
    if unknown:
        raise InvalidInputError(f"unknown {what} {unknown}; choose from {', '.join(known)}")
    if not cleaned:
        raise InvalidInputError(f"no {what} given")
    return cleaned


def _method_generator(
    method: str, volume: np.ndarray, missing: tuple[int, ...], options: dict, cancel, device: str
):
    if method == "stylegan":
        options = {"device": device, **options}
        try:
            from ..engines.stylegan.interpolate import run_interpolate_stylegan
        except ImportError as error:
            raise ModelNotAvailableError(
                f"the StyleGAN engine cannot be imported ({error}); install napari-scigen with its "
                "torch dependencies"
            ) from error
        return run_interpolate_stylegan(volume, missing=missing, cancel=cancel, **options)
    from ..engines.classical import InterpolateParams, run_interpolate

    return run_interpolate(
        volume, InterpolateParams(method=method, missing=missing, **options), cancel=cancel
    )


def _row(
    method: str, metric: str, value: float, details: dict | None = None, note: str = ""
) -> dict:
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
    from .morphology import specific_surface_area

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
    return rows


def run_validation(
    volume,
    *,
    every: int = 4,
    methods: str | Sequence[str] = ("linear", "flow"),
    metrics: str | Sequence[str] = VALIDATION_METRICS,
    offset: int = 1,
    data_range=None,
    device: str = "auto",
    lpips_net: str = "alex",
    method_options: dict[str, dict[str, Any]] | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Hold out every ``every``-th slice, rebuild it with each method and score it.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(Z, Y, X)`` volume with at least 3 slices.
    every : int
        Hold out one slice in ``every`` (``>= 2``), never the first or last.
    methods : str or sequence of {"linear", "flow", "stylegan"}
        Methods to compare. A method that cannot run (e.g. StyleGAN not importable)
        is reported as failed; if it was the only method the error is raised.
    metrics : str or sequence of {"psnr", "ssim", "lpips", "gmsd", "porosity", "surface"}
        Scores on the held-out slices. LPIPS is skipped with a note when its backbone
        weights are missing; GMSD (:mod:`napari_scigen.metrics.gradient`) needs no
        weights and is the stated offline substitute.
    offset : int
        Index of the first held-out slice.
    data_range : float, (low, high) or None
        For PSNR/SSIM/GMSD (see :mod:`napari_scigen.metrics.pixel`). ``None`` (default)
        uses the 0.5-99.5 percentile window of the whole volume, so scores reflect the
        grey levels the sample actually occupies (a 16-bit scan using a third of the
        dtype span would otherwise get flattering PSNR/SSIM); pass a number (e.g.
        65535) for a fixed data range.
    device : str
        For LPIPS and StyleGAN.
    lpips_net : {"alex", "vgg"}
        LPIPS backbone.
    method_options : dict, optional
        Extra keyword arguments per method, e.g. ``{"stylegan": {"projection_steps": 100}}``
        or ``{"flow": {"flow_num_iter": 20}}``.
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
        of the rebuilt held-out slices; ``provenance["table"]``: rows
        ``{"method", "metric", "value", "details", "note"}``; ``provenance["extra"]``
        has ``held_out``, ``skipped_metrics`` and ``failed_methods``.
    """
    from ..engines.classical import drop_every
    from .gradient import gmsd
    from .pixel import psnr, resolve_data_range, ssim

    array = check_image(volume, name="volume", ndim=(3,))
    chosen_methods = _parse(methods, VALIDATION_METHODS, "methods")
    chosen_metrics = _parse(metrics, VALIDATION_METRICS, "metrics")
    options = method_options or {}
    missing = drop_every(array.shape[0], every, offset=offset)
    truth = array[list(missing)].copy()
    requested_range = data_range
    if data_range is None:
        from ..core.stack import percentile_window

        volume_window = percentile_window(array, 0.5, 99.5)
        if volume_window.high > volume_window.low:
            data_range = (volume_window.low, volume_window.high)
    value_range, window = resolve_data_range(array, data_range)
    pixel_range = window if window is not None else value_range
    skipped: dict[str, str] = {}
    if "lpips" in chosen_metrics:
        from .perceptual import backbone_file

        try:
            backbone_file(lpips_net)
        except ModelNotAvailableError as error:
            skipped["lpips"] = str(error).splitlines()[0]
    threshold = None
    if {"porosity", "surface"} & set(chosen_metrics):
        from .morphology import otsu_threshold

        threshold = otsu_threshold(array)

    rows: list[dict] = []
    images: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    span = 100
    total = span * len(chosen_methods)
    for index, method in enumerate(chosen_methods):
        check_cancelled(cancel)
        base = index * span
        yield Progress(base, total, f"{method}: rebuilding {len(missing)} held-out slice(s)")
        try:
            generator = _method_generator(
                method, array, missing, dict(options.get(method, {})), cancel, device
            )
            result = yield from relay_progress(
                generator,
                lambda event, base=base, method=method: Progress(
                    base + int(80 * event.fraction), total, f"{method}: {event.message}"
                ),
            )
        except (ModelNotAvailableError, ImportError) as error:
            if len(chosen_methods) == 1:
                raise
            failed[method] = str(error).splitlines()[0]
            continue
        rebuilt = np.asarray(result.data)[list(missing)]
        images[f"{method} rebuilt"] = rebuilt.copy()
        yield Progress(base + 85, total, f"{method}: scoring")
        if "psnr" in chosen_metrics:
            scores = psnr(truth, rebuilt, data_range=pixel_range)
            rows.append(_row(method, "psnr", scores.value, {"per_slice": list(scores.values)}))
        if "ssim" in chosen_metrics:
            scores = ssim(truth, rebuilt, data_range=pixel_range)
            rows.append(_row(method, "ssim", scores.value, {"per_slice": list(scores.values)}))
        if "gmsd" in chosen_metrics:
            scores = gmsd(truth, rebuilt, data_range=pixel_range)
            rows.append(_row(method, "gmsd", scores.value, {"per_slice": list(scores.values)}))
        if "lpips" in chosen_metrics and "lpips" not in skipped:
            from .perceptual import lpips_distance

            check_cancelled(cancel)
            lp = lpips_distance(truth, rebuilt, net=lpips_net, device=device, cancel=cancel)
            rows.append(
                _row(
                    method,
                    "lpips",
                    lp.value,
                    {
                        "per_slice": list(lp.values),
                        "net": lp.net,
                        "lpips_version": lp.lpips_version,
                    },
                )
            )
        if threshold is not None:
            rows.extend(_morphology_rows(method, truth, rebuilt, threshold, chosen_metrics))
        yield Progress(base + span, total, f"{method}: done")
    if not images:
        raise InvalidInputError(
            "no method could run: " + "; ".join(f"{m}: {why}" for m, why in failed.items())
        )
    provenance = make_provenance(
        "validation",
        {
            "every": every,
            "offset": offset,
            "methods": list(chosen_methods),
            "metrics": list(chosen_metrics),
            "data_range": requested_range,
            "lpips_net": lpips_net,
            "method_options": options,
        },
        source={"shape": array.shape, "dtype": array.dtype.name},
        extra={
            "held_out": list(missing),
            "data_range_used": value_range,
            "window": window,
            "morphology_threshold": threshold,
            "skipped_metrics": skipped,
            "failed_methods": failed,
        },
    )
    provenance["table"] = to_jsonable(rows)
    return EngineResult(data=truth, provenance=provenance, images=images)


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def _format(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.4g}"


def _metric_label(metric: str) -> str:
    return {
        "psnr": "PSNR (dB, higher is better)",
        "ssim": "SSIM (higher is better)",
        "lpips": "LPIPS (lower is better)",
        "gmsd": "GMSD (lower is better)",
        "porosity": "porosity relative error (0 is best)",
        "surface": "pore specific surface relative error (0 is best)",
    }.get(metric, metric)


def _write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "metric", "value", "truth", "rebuilt", "note"])
        for row in rows:
            details = row.get("details", {})
            writer.writerow(
                [
                    row["method"],
                    row["metric"],
                    row["value"],
                    details.get("truth", ""),
                    details.get("rebuilt", ""),
                    row.get("note", ""),
                ]
            )


def _markdown(result: EngineResult, figure_name: str) -> str:
    provenance = result.provenance
    extra = provenance.get("extra", {})
    params = provenance.get("params", {})
    rows = provenance.get("table", [])
    source = provenance.get("source", {})
    held_out = extra.get("held_out", [])
    lines = [
        "# Held-out slice validation",
        "",
        f"Volume: shape {tuple(source.get('shape', ()))}, dtype {source.get('dtype', '?')}.",
        f"Held out every {params.get('every')}th slice starting at {params.get('offset')}: "
        f"{len(held_out)} slice(s) ({', '.join(map(str, held_out))}). Each method rebuilt them "
        "from the kept slices only; the scores compare the rebuilt slices with the real ones.",
        "",
    ]
    for method in params.get("methods", []):
        lines.append(f"## {method}")
        lines.append("")
        if method in extra.get("failed_methods", {}):
            lines.append(f"Not run: {extra['failed_methods'][method]}")
            lines.append("")
            continue
        lines.append("| metric | value | truth | rebuilt |")
        lines.append("| --- | --- | --- | --- |")
        for row in rows:
            if row["method"] != method:
                continue
            details = row.get("details", {})
            lines.append(
                f"| {_metric_label(row['metric'])} | {_format(row['value'])} | "
                f"{_format(details['truth']) if 'truth' in details else ''} | "
                f"{_format(details['rebuilt']) if 'rebuilt' in details else ''} |"
            )
        lines.append("")
    skipped = extra.get("skipped_metrics", {})
    lines.append("## Skipped metrics")
    lines.append("")
    if skipped:
        lines.extend(f"- {metric}: {why}" for metric, why in skipped.items())
        if "lpips" in skipped and "gmsd" in params.get("metrics", []):
            lines.append(f"- {LPIPS_SUBSTITUTE_NOTE}")
    else:
        lines.append("None.")
    lines.append("")
    lines.append("## Notes")
    lines.append("")
    lines.append(
        f"- Data range of PSNR, SSIM and GMSD: {_format(extra.get('data_range_used'))}"
        + (_window_text(extra.get("window"), params.get("data_range")))
        + "."
    )
    if extra.get("morphology_threshold") is not None:
        lines.append(
            f"- Pores: grey value <= {_format(extra['morphology_threshold'])} "
            "(Otsu threshold of the whole volume, shared by truth and every method)."
        )
    lines.append(f"- {PIXEL_METRICS_CAVEAT}")
    lines.append("")
    lines.append(f"![held-out slices and scores]({figure_name})")
    lines.append("")
    return "\n".join(lines)


def _window_text(window, requested) -> str:
    if not window:
        return ""
    low, high = window
    origin = "0.5-99.5 percentiles of the volume" if requested is None else "as given"
    return f" (window [{low:.6g}, {high:.6g}], {origin})"


def _write_figure(result: EngineResult, path: Path, example: int) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend switch inside napari

    rows = result.provenance.get("table", [])
    methods = [m for m in result.provenance["params"]["methods"] if f"{m} rebuilt" in result.images]
    metrics = list(dict.fromkeys(row["metric"] for row in rows))
    held_out = result.provenance.get("extra", {}).get("held_out", [])
    truth = result.data[example]
    low, high = np.percentile(truth, [0.5, 99.5])
    n_images = 1 + len(methods)
    columns = max(n_images, len(metrics), 1)
    figure = Figure(figsize=(3.0 * columns, 6.4), layout="constrained")
    grid = figure.add_gridspec(2, columns)
    panels = [("truth", truth)] + [(m, result.images[f"{m} rebuilt"][example]) for m in methods]
    for column, (title, image) in enumerate(panels):
        axis = figure.add_subplot(grid[0, column])
        axis.imshow(image, cmap="gray", vmin=low, vmax=high)
        axis.set_title(f"{title} (slice {held_out[example]})" if held_out else title, fontsize=9)
        axis.set_axis_off()
    for column, metric in enumerate(metrics):
        axis = figure.add_subplot(grid[1, column])
        values = [
            next((r["value"] for r in rows if r["method"] == m and r["metric"] == metric), np.nan)
            for m in methods
        ]
        axis.bar(methods, [0.0 if not np.isfinite(v) else v for v in values], color="tab:blue")
        axis.set_title(_metric_label(metric), fontsize=8)
        axis.tick_params(labelsize=8)
        if metric in ("porosity", "surface"):
            axis.axhline(0.0, color="black", linewidth=0.8)
    figure.savefig(path, dpi=100)


def write_validation_report(
    results: EngineResult, out_dir: str | Path, *, example: int | None = None
) -> dict[str, Path]:
    """Write ``validation.csv``, ``validation.md`` and ``validation.png`` into ``out_dir``.

    Parameters
    ----------
    results : EngineResult
        As returned by :func:`run_validation`.
    out_dir : str or Path
        Created if needed; existing report files are overwritten.
    example : int, optional
        Which held-out slice (index into the held-out list) the figure shows;
        default the middle one.

    Returns
    -------
    dict
        ``{"csv": path, "markdown": path, "figure": path, "json": path}``.
    """
    import json

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    rows = results.provenance.get("table", [])
    n_held = results.data.shape[0]
    example = n_held // 2 if example is None else int(example)
    if not 0 <= example < n_held:
        raise InvalidInputError(f"example must be in [0, {n_held - 1}], got {example}")
    paths = {
        "csv": out / "validation.csv",
        "markdown": out / "validation.md",
        "figure": out / "validation.png",
        "json": out / "validation.json",
    }
    _write_csv(rows, paths["csv"])
    _write_figure(results, paths["figure"], example)
    paths["markdown"].write_text(_markdown(results, paths["figure"].name), encoding="utf-8")
    from .evaluate import table_rows_for_json

    record = dict(results.provenance)
    record["table"] = table_rows_for_json(rows)
    paths["json"].write_text(
        json.dumps(table_rows_for_json([record])[0], indent=2), encoding="utf-8"
    )
    return paths
