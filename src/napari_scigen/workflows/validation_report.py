"""Write the held-out validation report: CSV tables, Markdown, JSON and a figure."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..core.result import EngineResult
from ..core.validation import InvalidInputError

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
        "s2": "pore S2 distance (lower is better)",
        "psd": "pore-size distribution distance (px, lower is better)",
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
        _geometry_text(params)
        + f": {len(held_out)} slice(s) ({', '.join(map(str, held_out))}). Each method rebuilt "
        "them from the kept slices only (the held-out slices were blanked before any method "
        "ran); the scores compare the rebuilt slices with the real ones.",
        "",
    ]
    ceiling = extra.get("noise_ceiling")
    if ceiling:
        lines += [
            f"Noise ceiling: the kept slices have noise sigma ~ {_format(ceiling['sigma'])} grey "
            f"levels, so no reconstruction can expect a PSNR above ~ "
            f"{_format(ceiling['psnr_db'])} dB against the real (noisy) slices "
            f"({ceiling['method']}).",
            "",
        ]
    for method in params.get("methods", []):
        lines.append(f"## {method}")
        lines.append("")
        if method in extra.get("failed_methods", {}):
            lines.append(f"Not run: {extra['failed_methods'][method]}")
            lines.append("")
            continue
        if method in extra.get("seconds", {}):
            lines.append(f"Run time: {_format(extra['seconds'][method])} s.")
            lines.append("")
        lines += _engine_note_lines(extra.get("engine_notes", {}).get(method))
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


def _engine_note_lines(notes: dict | None) -> list[str]:
    """What a self-validating engine said about itself, next to what was measured."""
    if not notes:
        return []
    lines = []
    if "filled_with" in notes:
        lines.append(f"Filled with **{notes['filled_with']}**: {notes.get('choice_reason', '')}.")
    expected = notes.get("expected_error")
    if expected:
        lines.append(
            f"Its own self-validation expected PSNR {_format(expected['psnr'])} dB / SSIM "
            f"{_format(expected['ssim'])} (on kept slices it held out, in the engine's "
            "intensity window; the table above is the real held-out score)."
        )
    if "held_out_uncertainty_error_spearman" in notes:
        lines.append(
            "Rank correlation of its uncertainty map with the real error on the held-out "
            f"slices: {_format(notes['held_out_uncertainty_error_spearman'])}."
        )
    return [*lines, ""] if lines else []


def _geometry_text(params: dict) -> str:
    every, offset = params.get("every"), params.get("offset")
    if params.get("geometry") == "keep-every":
        return (
            f"Kept every {every}th slice from {offset} and rebuilt the {every - 1} slice(s) "
            "between each kept pair"
        )
    return f"Held out every {every}th slice starting at {offset}"


def _write_slice_csv(result: EngineResult, path: Path) -> None:
    """One row per held-out slice and method: every per-slice score."""
    held_out = result.provenance.get("extra", {}).get("held_out", [])
    rows = [r for r in result.provenance.get("table", []) if "per_slice" in r.get("details", {})]
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "slice", *metrics])
        for method in methods:
            by_metric = {
                r["metric"]: r["details"]["per_slice"] for r in rows if r["method"] == method
            }
            for i, z in enumerate(held_out):
                writer.writerow(
                    [method, z, *(by_metric.get(m, [""] * len(held_out))[i] for m in metrics)]
                )


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
    """Write ``validation.csv``, ``validation_slices.csv``, ``validation.md``,
    ``validation.json`` and ``validation.png`` into ``out_dir``.

    Parameters
    ----------
    results : EngineResult
        As returned by :func:`~napari_scigen.workflows.validate.run_validation`.
    out_dir : str or Path
        Created if needed; existing report files are overwritten.
    example : int, optional
        Which held-out slice (index into the held-out list) the figure shows;
        default the middle one.

    Returns
    -------
    dict
        ``{"csv": path, "slices_csv": path, "markdown": path, "figure": path, "json": path}``.
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
        "slices_csv": out / "validation_slices.csv",
        "markdown": out / "validation.md",
        "figure": out / "validation.png",
        "json": out / "validation.json",
    }
    _write_csv(rows, paths["csv"])
    _write_slice_csv(results, paths["slices_csv"])
    _write_figure(results, paths["figure"], example)
    paths["markdown"].write_text(_markdown(results, paths["figure"].name), encoding="utf-8")
    from ..metrics.evaluate import table_rows_for_json

    record = dict(results.provenance)
    record["table"] = table_rows_for_json(rows)
    paths["json"].write_text(
        json.dumps(table_rows_for_json([record])[0], indent=2), encoding="utf-8"
    )
    return paths
