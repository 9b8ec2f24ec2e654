"""The main job: an offline, end-to-end check of the engines on a procedural rock volume.

:func:`run_demo` builds the synthetic rock microCT volume (ring artifacts included),
holds out every 4th slice and rebuilds it with each interpolation method (by default
linear, flow, the learned network trained on this volume, and ``auto``), inpaints a
"damaged" region (biharmonic and learned) and the ring artifacts, scores everything
against the ground truth the phantom provides, and writes volumes, a metrics table (CSV +
JSON) and a figure. Held-out slices are blanked before any engine sees them, so no method
can peek. StyleGAN (about 90 s on its own at the demo size on 2 CPU cores) is no longer a
default method; ``methods=(..., "stylegan")`` still runs it.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.models import ModelNotAvailableError
from ..core.progress import Progress

#: The interpolation methods the demo compares by default, in order (any registered
#: interpolation engine can be chosen).
DEMO_METHODS = ("linear", "flow", "learned", "auto")

#: The inpainting methods the demo runs on the damaged region (ring artifacts: biharmonic).
DEMO_INPAINT_METHODS = ("biharmonic", "learned")

#: Training steps of the learned engines in the demo: they fine-tune the shipped default
#: network (trained on other procedural phantoms) on the demo volume, so the demo finishes
#: in about a minute and a half on 2 CPU cores (raise them for better results).
DEMO_TRAIN_STEPS = 120

#: Engine parameters the demo uses instead of the engines' defaults (see above).
DEMO_METHOD_PARAMS: dict[str, dict[str, Any]] = {
    "stylegan": {"projection_steps": 50},
    "learned": {"train_steps": DEMO_TRAIN_STEPS, "threads": 2},
    "auto": {"train_steps": DEMO_TRAIN_STEPS, "threads": 2},
}

#: Parameters of the learned inpainting in the demo.
DEMO_INPAINT_PARAMS: dict[str, Any] = {"train_steps": 80, "threads": 2}


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs.

    Parameters
    ----------
    shape : tuple of int
        Size of the synthetic rock volume (Z, Y, X).
    every : int
        Hold out one slice in ``every``.
    methods : tuple of str
        Registered interpolation methods to compare.
    seed : int
        Seed of the procedural volume.
    damaged_radius : int
        Radius (px) of the simulated damaged region that is inpainted.
    damaged_slices : int
        Number of central slices carrying the damaged region.
    ring_slices : int
        Number of slices whose ring artifacts are inpainted.
    method_params : dict
        ``{method: {field: value}}`` engine parameters; by default
        :data:`DEMO_METHOD_PARAMS` (StyleGAN projects 50 steps per tile instead of the
        engine's 200, the learned engines train :data:`DEMO_TRAIN_STEPS` steps).
    inpaint_methods : tuple of str
        Inpainting methods run on the damaged region (``biharmonic`` always runs, it is
        also the ring-artifact method).
    inpaint_params : dict
        Parameters of the learned inpainting (default :data:`DEMO_INPAINT_PARAMS`).
    """

    shape: tuple[int, int, int] = (32, 128, 128)
    every: int = 4
    methods: tuple[str, ...] = DEMO_METHODS
    seed: int = 0
    damaged_radius: int = 20
    damaged_slices: int = 8
    ring_slices: int = 8
    method_params: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEMO_METHOD_PARAMS.items()}
    )
    inpaint_methods: tuple[str, ...] = DEMO_INPAINT_METHODS
    inpaint_params: dict[str, Any] = field(default_factory=lambda: dict(DEMO_INPAINT_PARAMS))


@dataclass
class DemoReport:
    """What the demo produced: metric rows, written files, skipped methods and timings."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _score_rows(
    task: str, method: str, truth, result, *, window, mask=None
) -> list[dict[str, Any]]:
    from ..metrics.pixel import psnr, ssim

    region = "all" if mask is None else "inside"
    rows = []
    for scores in (
        psnr(truth, result, data_range=window, mask=mask, region=region),
        ssim(truth, result, data_range=window, mask=mask, region=region),
    ):
        rows.append(
            {
                "task": task,
                "method": method,
                "metric": scores.metric,
                "value": round(float(scores.value), 4),
                "region": region,
                "window": f"{window[0]:.0f}-{window[1]:.0f}",
            }
        )
    return rows


def _porosity_row(task: str, method: str, truth, result, threshold: float) -> dict[str, Any]:
    true_porosity = float(np.mean(truth < threshold))
    porosity = float(np.mean(result < threshold))
    return {
        "task": task,
        "method": method,
        "metric": "porosity_rel_error",
        "value": round(abs(porosity - true_porosity) / max(true_porosity, 1e-12), 4),
        "region": "all",
        "window": f"otsu<{threshold:.0f}",
    }


def run_demo(
    out_dir: str | Path,
    config: DemoConfig = DemoConfig(),
    *,
    on_progress: Callable[[Progress], None] | None = None,
    log: Callable[[str], None] = print,
) -> DemoReport:
    """Run the demo and write its outputs to ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created if needed).
    config : DemoConfig
        Volume size, held-out spacing and methods.
    on_progress : callable, optional
        Receives engine progress events.
    log : callable
        Receives one line per stage (default: print).

    Returns
    -------
    DemoReport
    """
    from skimage.filters import threshold_otsu

    from .. import api
    from ..core.io import write_volume
    from ..core.phantoms import make_rock_volume
    from ..engines.interpolation.plan import drop_every

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = DemoReport()

    def timed(stage: str, start: float) -> None:
        report.seconds[stage] = round(time.perf_counter() - start, 2)

    start = time.perf_counter()
    rock = make_rock_volume(config.shape, seed=config.seed)
    timed("build rock volume", start)
    truth = rock.volume
    log(
        f"rock volume {truth.shape} {truth.dtype}, voxel {rock.voxel_size[0]} um, built in {report.seconds['build rock volume']} s"
    )
    from ..metrics.pixel import scoring_window

    scoring = scoring_window(truth)  # the one default of every front-end
    window = scoring.data_range
    threshold = float(threshold_otsu(truth[:: max(1, truth.shape[0] // 8)]))
    sample_provenance = {"engine": "sample-rock", "params": rock.parameters}
    report.files.append(
        str(
            write_volume(
                out / "rock.tif", truth, voxel_size=rock.voxel_size, provenance=sample_provenance
            )
        )
    )

    # 1. held-out slice interpolation
    missing = drop_every(truth.shape[0], config.every)
    kept = np.setdiff1d(np.arange(truth.shape[0]), missing)
    observed = truth.copy()
    observed[list(missing)] = 0  # the engines never see the held-out slices
    log(f"held out {len(missing)} of {truth.shape[0]} slices (every {config.every}th)")
    rebuilt: dict[str, np.ndarray] = {}
    spreads: dict[str, np.ndarray] = {}
    for method in config.methods:
        start = time.perf_counter()
        try:
            result = api.interpolate(
                observed,
                missing=missing,
                method=method,
                params=config.method_params.get(method),
                on_progress=on_progress,
            )
        except (ImportError, ModelNotAvailableError) as error:
            report.skipped[method] = str(error).splitlines()[0]
            log(f"  {method}: skipped ({report.skipped[method]})")
            continue
        timed(f"interpolate {method}", start)
        if not np.array_equal(result.data[kept], observed[kept]):
            raise AssertionError(f"{method} changed kept slices: integrity check failed")
        rebuilt[method] = result.data
        report.rows += _score_rows(
            "held-out slices",
            method,
            truth[list(missing)],
            result.data[list(missing)],
            window=window,
        )
        report.rows.append(
            _porosity_row(
                "held-out slices",
                method,
                truth[list(missing)],
                result.data[list(missing)],
                threshold,
            )
        )
        path = write_volume(
            out / f"rebuilt_{method}.tif",
            result.data,
            voxel_size=rock.voxel_size,
            provenance=result.provenance,
        )
        report.files.append(str(path))
        if "uncertainty" in result.images:
            spreads[method] = result.images["uncertainty"]
            report.files.append(
                str(
                    write_volume(
                        out / f"rebuilt_{method}_uncertainty.tif",
                        result.images["uncertainty"],
                        voxel_size=rock.voxel_size,
                        provenance=result.provenance,
                    )
                )
            )
        filled = result.provenance.get("extra", {}).get("filled_with")
        note = f", filled with {filled}" if filled and filled != method else ""
        log(f"  {method}: {report.seconds[f'interpolate {method}']} s{note}")

    # 2. a damaged region, inpainted
    z0 = truth.shape[0] // 2 - config.damaged_slices // 2
    zs = slice(z0, z0 + config.damaged_slices)
    yy, xx = np.mgrid[: truth.shape[1], : truth.shape[2]]
    disk = (yy - truth.shape[1] * 0.4) ** 2 + (
        xx - truth.shape[2] * 0.55
    ) ** 2 <= config.damaged_radius**2
    region_mask = np.zeros(truth.shape, np.uint8)
    region_mask[zs] = disk
    damaged = truth.copy()
    damaged[region_mask != 0] = 0
    report.files.append(
        str(
            write_volume(
                out / "region_mask.tif", region_mask, voxel_size=rock.voxel_size, kind="labels"
            )
        )
    )
    inpainted_by: dict[str, np.ndarray] = {}
    for method in dict.fromkeys(("biharmonic", *config.inpaint_methods)):
        start = time.perf_counter()
        params = config.inpaint_params if method == "learned" else None
        try:
            result = api.inpaint(
                damaged, region_mask, method=method, params=params, on_progress=on_progress
            )
        except (ImportError, ModelNotAvailableError) as error:
            report.skipped[f"inpaint {method}"] = str(error).splitlines()[0]
            log(f"  inpaint {method}: skipped ({report.skipped[f'inpaint {method}']})")
            continue
        stage = "inpaint region" if method == "biharmonic" else f"inpaint region {method}"
        timed(stage, start)
        if not np.array_equal(result.data[region_mask == 0], damaged[region_mask == 0]):
            raise AssertionError(
                f"{method} changed pixels outside the mask: integrity check failed"
            )
        inpainted_by[method] = result.data
        report.rows += _score_rows(
            "damaged region",
            method,
            truth[zs],
            result.data[zs],
            window=window,
            mask=region_mask[zs],
        )
        name = (
            "inpainted_region.tif" if method == "biharmonic" else f"inpainted_region_{method}.tif"
        )
        report.files.append(
            str(
                write_volume(
                    out / name,
                    result.data,
                    voxel_size=rock.voxel_size,
                    provenance=result.provenance,
                )
            )
        )
        filled = result.provenance.get("extra", {}).get("filled_with")
        note = f" (filled with {filled})" if filled and filled != method else ""
        log(
            f"inpainted a {config.damaged_radius}-px damaged region on {config.damaged_slices} "
            f"slices with {method}{note} in {report.seconds[stage]} s"
        )

    # 3. ring artifacts, inpainted and compared with the artifact-free simulation
    ring_rows = []
    ring_result = None
    if rock.ring_mask is not None and rock.clean is not None and rock.ring_mask.any():
        rz = slice(0, config.ring_slices)
        start = time.perf_counter()
        ring_result = api.inpaint(truth[rz], rock.ring_mask, on_progress=on_progress)
        timed("inpaint rings", start)
        clean = rock.clean[rz]
        ring_mask3 = np.broadcast_to(rock.ring_mask, clean.shape)
        before = _score_rows(
            "ring artifacts", "none (input)", clean, truth[rz], window=window, mask=ring_mask3
        )
        after = _score_rows(
            "ring artifacts", "biharmonic", clean, ring_result.data, window=window, mask=ring_mask3
        )
        ring_rows = before + after
        report.rows += ring_rows
        report.files.append(
            str(
                write_volume(
                    out / "ring_inpainted.tif",
                    ring_result.data,
                    voxel_size=rock.voxel_size,
                    provenance=ring_result.provenance,
                )
            )
        )
        log(
            f"inpainted ring artifacts on {config.ring_slices} slices in {report.seconds['inpaint rings']} s"
        )

    report.files += _write_tables(out, report, config)
    report.files.append(
        str(
            _write_figure(
                out / "demo.png",
                truth,
                rebuilt,
                missing,
                damaged,
                inpainted_by,
                zs,
                ring_result,
                rock,
                spreads,
            )
        )
    )
    return report


def _write_tables(out: Path, report: DemoReport, config: DemoConfig) -> list[str]:
    csv_path, json_path = out / "metrics.csv", out / "metrics.json"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["task", "method", "metric", "value", "region", "window"]
        )
        writer.writeheader()
        writer.writerows(report.rows)
    from ..core.provenance import software_versions

    json_path.write_text(
        json.dumps(
            {
                "config": asdict(config),
                "rows": report.rows,
                "skipped": report.skipped,
                "seconds": report.seconds,
                "software": software_versions(),
                "note": "PSNR/SSIM are computed on held-out (never seen) slices or inside the mask only, "
                "with data_range = the 0.5-99.5 percentile window of the ground truth "
                "(metrics.pixel.scoring_window, the default of every front-end).",
            },
            indent=2,
        )
    )
    return [str(csv_path), str(json_path)]


def _write_figure(
    path: Path, truth, rebuilt, missing, damaged, inpainted, zs, ring_result, rock, spreads=None
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = missing[len(missing) // 2]
    zc = (zs.start + zs.stop) // 2
    panels = [(f"ground truth, held-out slice {z}", truth[z])]
    panels += [(f"{method} rebuild", volume[z]) for method, volume in rebuilt.items()]
    panels += [("damaged region", damaged[zc])]
    panels += [(f"{method} inpaint", volume[zc]) for method, volume in inpainted.items()]
    if ring_result is not None:
        panels += [("ring artifacts (input)", truth[0]), ("rings inpainted", ring_result.data[0])]
    panels += [(f"{method} uncertainty", spread[z]) for method, spread in (spreads or {}).items()]
    low, high = np.percentile(truth, [0.5, 99.5])
    columns = 4
    rows = int(np.ceil(len(panels) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.3 * rows))
    for axis in np.ravel(axes):
        axis.axis("off")
    for axis, (title, image) in zip(np.ravel(axes), panels, strict=False):
        if title.endswith("uncertainty"):
            axis.imshow(image, cmap="magma", vmin=0, vmax=max(float(image.max()), 1e-6))
        else:
            axis.imshow(image, cmap="gray", vmin=low, vmax=high)
        axis.set_title(title, fontsize=9)
    figure.suptitle("napari-scigen demo: synthetic rock microCT", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def format_summary(report: DemoReport) -> str:
    """A short text table of the metric rows."""
    lines = [f"{'task':<18} {'method':<14} {'metric':<20} {'value':>10}"]
    for row in report.rows:
        lines.append(
            f"{row['task']:<18} {row['method']:<14} {row['metric']:<20} {row['value']:>10}"
        )
    for method, why in report.skipped.items():
        lines.append(f"skipped {method}: {why}")
    return "\n".join(lines)
