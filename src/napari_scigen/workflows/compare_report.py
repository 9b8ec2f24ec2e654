"""Write the engine comparison: the table (Markdown, CSV, JSON with provenance) and the figure.

The table has one row per engine and one column per score, ``mean ± std`` over the
compared slices (FID over the whole set), as in Sordo et al.'s Tables 6-8; the figure
is a grid of real slices and every engine's output for them (their Figs. 20-22).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from ..core.result import EngineResult
from .validation_report import PIXEL_METRICS_CAVEAT

#: Column titles of the scores.
METRIC_TITLES = {
    "ssim": "SSIM ↑",
    "psnr": "PSNR ↑ (dB)",
    "lpips": "LPIPS ↓",
    "gmsd": "GMSD ↓",
    "fid": "FID ↓",
    "kid": "KID ↓",
    "clipscore": "CLIPScore ↑",
    "porosity": "porosity err.",
    "s2": "S2 RMSE ↓",
    "surface": "surface err.",
    "psd": "pore sizes ↓ (px)",
}
#: Files written by :func:`write_compare_report`, by key.
REPORT_FILES = {
    "markdown": "compare.md",
    "csv": "compare.csv",
    "json": "compare.json",
    "figure": "compare.png",
}


def _number(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.4g}"


def format_cell(row: dict | None) -> str:
    """``"0.512 ± 0.031"``, ``"46.3"`` (no spread), or ``"n/a"``."""
    if row is None:
        return "n/a"
    mean, std = row.get("mean"), row.get("std")
    if std is None or (isinstance(std, float) and not math.isfinite(std)):
        return _number(mean)
    return f"{_number(mean)} ± {std:.2g}"


def compare_table_markdown(result: EngineResult) -> str:
    """The Markdown table: one row per engine that ran, one column per requested score."""
    rows = result.provenance.get("table", [])
    params = result.provenance.get("params", {})
    metrics = list(params.get("metrics", []))
    engines = [e for e in params.get("engines", []) if e in result.images]
    lookup = {(r["engine"], r["metric"]): r for r in rows}
    lines = [
        "| engine | " + " | ".join(METRIC_TITLES.get(m, m) for m in metrics) + " |",
        "| --- | " + " | ".join("---" for _ in metrics) + " |",
    ]
    for engine in engines:
        cells = [format_cell(lookup.get((engine, m))) for m in metrics]
        lines.append(f"| `{engine}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markdown(result: EngineResult, figure: str) -> str:
    record = result.provenance
    params, extra, source = record["params"], record["extra"], record.get("source", {})
    lines = [
        "# Engine comparison",
        "",
        f"Volume: shape {tuple(source.get('shape', ()))}, dtype {source.get('dtype', '?')}"
        + (f", file `{source['file']}`" if source.get("file") else "")
        + f". Slices compared: {', '.join(map(str, extra['slices']))}. Mask of the inpaint and "
        f"edit engines: {extra['mask']} ({100 * extra['mask_fraction']:.1f} % of each slice). "
        f"Prompt: {params['prompt']!r}; edit prompt: {params['edit_prompt']!r}.",
        "",
        compare_table_markdown(result),
        "",
        "Mean ± standard deviation over the compared slices; FID and KID over the set of "
        "slices (KID ± its subset spread). Paired scores compare each output with its real "
        "slice (sample engines: the i-th real slice, centre-cropped to the sample size; "
        "they are unpaired). Porosity and surface: signed relative error of the pore "
        "fraction and pore specific surface (pores: grey value <= "
        f"{_number(extra['morphology_threshold'])}, Otsu of the whole volume); S2: RMS "
        "difference of the pore two-point correlation curves.",
        "",
        "## Run time",
        "",
    ]
    lines += [f"- `{k}`: {_number(v)} s" for k, v in extra.get("seconds", {}).items()] or ["None."]
    lines += ["", "## Skipped engines", ""]
    skipped = extra.get("skipped_engines", {})
    lines += [f"- `{k}`: {why}" for k, why in skipped.items()] or ["None."]
    lines += ["", "## Skipped metrics", ""]
    lines += [f"- {k}: {why}" for k, why in extra.get("skipped_metrics", {}).items()] or ["None."]
    lines += ["", "## Notes", "", f"- {PIXEL_METRICS_CAVEAT}"]
    scoring = extra.get("scoring_window")
    if scoring:
        lines.append(f"- SSIM, PSNR, GMSD, FID and KID scale: {scoring['description']}.")
    if extra.get("engine_params"):
        lines.append("- Every engine's parameters are in compare.json (`extra.engine_params`).")
    lines += ["", f"![real slices and every engine's output]({figure})", ""]
    return "\n".join(lines)


def _write_csv(result: EngineResult, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["engine", "metric", "mean", "std", "n", "per_slice", "note"])
        for row in result.provenance.get("table", []):
            per_slice = ";".join(f"{v:.6g}" for v in row.get("per_slice", []))
            writer.writerow(
                [
                    row["engine"],
                    row["metric"],
                    row["mean"],
                    row["std"],
                    row["n"],
                    per_slice,
                    row.get("note", ""),
                ]
            )
        for engine, why in result.provenance["extra"].get("skipped_engines", {}).items():
            writer.writerow([engine, "", "", "", 0, "", f"skipped: {why}"])


def write_compare_figure(result: EngineResult, path: str | Path, *, examples: int = 3) -> Path:
    """A grid of real slices (rows) and each engine's output for them (columns)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend switch inside napari

    engines = [e for e in result.provenance["params"]["engines"] if e in result.images]
    chosen = result.provenance["extra"]["slices"]
    count = min(examples, result.data.shape[0])
    picks = sorted({int(i) for i in np.linspace(0, result.data.shape[0] - 1, count)})
    low, high = result.provenance["extra"]["window"]
    mask = result.labels.get("mask")
    columns = 1 + len(engines)
    figure = Figure(figsize=(2.2 * columns, 2.3 * len(picks) + 0.3), layout="constrained")
    axes = figure.subplots(len(picks), columns, squeeze=False)
    for row, index in enumerate(picks):
        panels = [("real", result.data[index])] + [(e, result.images[e][index]) for e in engines]
        for column, (title, image) in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(image, cmap="gray", vmin=low, vmax=high)
            if column == 0 and mask is not None and mask[index].any():
                axis.contour(mask[index], levels=[0.5], colors="tab:orange", linewidths=0.6)
            if column == 0:
                axis.set_title(f"real, slice {chosen[index]}", fontsize=7)
            elif row == 0:
                axis.set_title(title, fontsize=7)
            axis.set_axis_off()
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path


def write_compare_report(result: EngineResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``compare.md``, ``compare.csv``, ``compare.json`` and ``compare.png``.

    Parameters
    ----------
    result : EngineResult
        As returned by :func:`~napari_scigen.workflows.compare.run_compare`.
    out_dir : path
        Created if needed; existing report files are replaced.

    Returns
    -------
    dict
        ``{"markdown", "csv", "json", "figure"}`` paths.
    """
    from ..metrics.evaluate import table_rows_for_json

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in REPORT_FILES.items()}
    write_compare_figure(result, paths["figure"])
    paths["markdown"].write_text(_markdown(result, paths["figure"].name), encoding="utf-8")
    _write_csv(result, paths["csv"])
    record = table_rows_for_json([dict(result.provenance)])[0]
    paths["json"].write_text(json.dumps(record, indent=2), encoding="utf-8")
    return paths
