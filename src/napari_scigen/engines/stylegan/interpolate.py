"""Slice interpolation with a StyleGAN2: project the kept slices, walk between their latents.

For every gap between two kept slices ``a`` (below) and ``b`` (above):

1. ``a`` and ``b`` are projected into the generator's latent space
   (:func:`.project.run_project`; each kept slice is projected once even when it
   bounds two gaps). Slices larger than the generator are cut into overlapping
   tiles of the generator's size and every tile is projected on its own.
2. The slice at fraction ``t`` is synthesized from the interpolated latents
   (``lerp`` or ``slerp`` around ``w_avg``) and interpolated noise maps, tiles
   blended back with linear ramps.
3. Optionally the projection residual of the kept slices is carried over
   (``residual_correction``) and/or the result is blended with the linear
   interpolation of the kept slices (``pixel_blend``).
4. Values are mapped back to the volume's dtype and range with the intensity
   window (a percentile window of the kept slices, recorded in provenance).

Same planning and validation as every interpolation engine
(:func:`napari_scigen.engines.interpolation.plan.plan_slices`):
``missing`` indices keep the volume's shape, ``factor`` turns ``n`` slices into
``(n - 1) * factor + 1`` with original slice ``i`` at ``i * factor``, missing
slices at the volume boundary are an error. Kept slices are copied bit-identically.
"""

from __future__ import annotations

import math
from collections.abc import Generator as PyGenerator
from collections.abc import Sequence

import numpy as np

from ...core.io.memory import check_upsampled_fits
from ...core.progress import CancelToken, Progress, check_cancelled, relay_progress
from ...core.provenance import make_provenance
from ...core.result import EngineResult
from ...core.stack import percentile_window
from ...core.tiling import blend_weights, tiles_covering
from ...core.validation import InvalidInputError, check_image
from .params import StyleGANInterpolateParams


def _tile_stack(unit: np.ndarray, tiles, resolution: int) -> np.ndarray:
    """Crop the tiles of a ``[0, 1]`` slice, mirror-padded to ``resolution`` when smaller."""
    out = np.empty((len(tiles), resolution, resolution), np.float32)
    for i, tile in enumerate(tiles):
        crop = unit[tile.slices]
        pad = ((0, resolution - crop.shape[0]), (0, resolution - crop.shape[1]))
        out[i] = np.pad(crop, pad, mode="symmetric") if any(p[1] for p in pad) else crop
    return out


def _blend(tile_images: np.ndarray, tiles, shape: tuple[int, int], overlap: int) -> np.ndarray:
    """Put overlapping tile images back together with linear-ramp weights."""
    total = np.zeros(shape, np.float64)
    weight = np.zeros(shape, np.float64)
    for image, tile in zip(tile_images, tiles, strict=True):
        h, w = tile.shape
        ramp = blend_weights((h, w), overlap)
        total[tile.slices] += image[:h, :w] * ramp
        weight[tile.slices] += ramp
    return (total / weight).astype(np.float32)


def _perceptual_distance(choice: str, device: str):
    """The projection's image distance for a declared ``perceptual`` choice.

    ``"structure"`` is the projector's offline default (``None``); ``"lpips-alex"`` /
    ``"lpips-vgg"`` load LPIPS with local backbone weights (never downloaded).
    """
    if choice == "structure":
        return None
    from ...metrics.perceptual import load_lpips

    return load_lpips(choice.split("-", 1)[1], device=device)


def run_interpolate_stylegan(
    volume,
    params: StyleGANInterpolateParams,
    *,
    missing: Sequence[int] | None = None,
    factor: int | None = None,
    cancel: CancelToken | None = None,
) -> PyGenerator[Progress, None, EngineResult]:
    """Rebuild missing slices (or upsample along z) by walking the StyleGAN latent space.

    Parameters
    ----------
    volume : array-like
        ``(Z, Y, X)`` grayscale volume with at least 2 slices.
    params : StyleGANInterpolateParams
        Generator (a path; none = the embedded 64x64 rock generator), projection
        steps, W/W+, slerp, noise, pixel blend, residual correction, tiling, window,
        perceptual distance, seed and device (see the class for each).
    missing : sequence of int, optional
        Slices to rebuild (output has the input's shape).
    factor : int, optional
        Integer z upsampling (``n`` slices -> ``(n - 1) * factor + 1``).
    cancel : CancelToken, optional
        Checked at every projection step and every synthesized slice.

    Yields
    ------
    Progress
        Projection steps, then one event per synthesized slice.

    Returns
    -------
    EngineResult
        ``data`` in the input dtype; provenance engine ``"interpolate-stylegan"``
        with the window, generator, perceptual distance and projection losses.

    Raises
    ------
    InvalidInputError
        Bad volume/indices/options (as in the classical engines).
    ModelNotAvailableError
        An LPIPS distance was asked for without its backbone weights.
    """
    from ...core.device import resolve_device
    from ..interpolation.plan import plan_slices
    from .default import resolve_generator
    from .latents import lerp, mix_noise
    from .latents import slerp as slerp_fn
    from .project import run_project

    array = check_image(volume, name="volume", ndim=(3,))
    check_upsampled_fits(array, factor)  # before planning: the plan grows with the output
    plan = plan_slices(array.shape[0], missing=missing, factor=factor)
    n_out, kept, gaps = plan.n_out, plan.kept, plan.gaps
    steps, batch_size, seed = params.projection_steps, params.batch_size, params.seed
    noise, pixel_blend = params.noise, params.pixel_blend
    residual_correction = params.residual_correction

    device = resolve_device(params.device)
    G, metadata, model_name = resolve_generator(params.generator, device)
    lpips_net = _perceptual_distance(params.perceptual, device)
    import torch

    resolution = G.config.resolution
    overlap = resolution // 4 if params.tile_overlap is None else params.tile_overlap
    if not overlap < resolution:
        raise InvalidInputError(
            f"tile_overlap must be in [0, {resolution - 1}] for this {resolution}px generator, "
            f"got {params.tile_overlap}"
        )

    out = np.empty((n_out, *array.shape[1:]), dtype=array.dtype)
    for source, target in kept:
        out[target] = array[source]

    bounding = sorted({g.below for g in gaps} | {g.above for g in gaps})
    # Window from (at most 16 evenly spaced) kept slices that bound a gap.
    sample = bounding[:: max(1, len(bounding) // 16)]
    window = percentile_window(np.stack([array[b] for b in sample]), *params.window_percentiles)
    shape = array.shape[1:]
    tiles = tiles_covering(shape, resolution, overlap)
    n_tiles = len(tiles)
    # Kept slices are projected in groups just before the first gap that needs them, and
    # forgotten after the last one. A group holds enough slices that its tiles fill whole
    # batches (9 tiles per slice with batch 8: groups of 8 slices = 9 full batches, rather
    # than a batch of 8 and a batch of 1 per slice).
    group_size = batch_size // math.gcd(batch_size, n_tiles)
    groups = [bounding[i : i + group_size] for i in range(0, len(bounding), group_size)]
    n_synth = sum(len(g.targets) for g in gaps)
    projection_total = sum(-(-len(group) * n_tiles // batch_size) * steps for group in groups)
    total = projection_total + n_synth
    cache: dict[int, dict] = {}
    final_losses: dict[int, float] = {}
    perceptual_name, projection_settings = None, {}
    done = 0

    def project_group(group):
        nonlocal done, perceptual_name, projection_settings
        units = {b: window.to_unit(array[b]) for b in group}
        stack = np.concatenate([_tile_stack(units[b], tiles, resolution) for b in group]) * 2 - 1
        projector = run_project(
            G,
            stack,
            steps=steps,
            w_plus=params.w_plus,
            batch_size=batch_size,
            seeds=[seed + 7919 * b + i for b in group for i in range(n_tiles)],
            lpips_net=lpips_net,
            cancel=cancel,
        )
        offset = done

        def overall(event: Progress) -> Progress:
            nonlocal done
            done = offset + event.step
            return Progress(
                done, total, f"projecting kept slices {group[0]}..{group[-1]}: {event.message}"
            )

        projection = yield from relay_progress(projector, overall)
        perceptual_name, projection_settings = projection.perceptual, projection.settings
        for k, b in enumerate(group):
            rows = slice(k * n_tiles, (k + 1) * n_tiles)
            entry = {
                "unit": units[b],
                "ws": projection.ws[rows].to(device),
                "noise": [maps[rows].to(device) for maps in projection.noise],
            }
            if residual_correction:
                recon = (projection.reconstructions[rows] + 1.0) / 2.0
                entry["recon"] = _blend(recon, tiles, shape, overlap)
            cache[b] = entry
            final_losses[int(b)] = float(np.mean(projection.final_loss[rows]))

    synthesized = []
    w_centre = G.w_avg.detach()
    next_group = 0
    for gap in gaps:
        while gap.below not in cache or gap.above not in cache:
            yield from project_group(groups[next_group])
            next_group += 1
        for old in [b for b in cache if b < gap.below]:
            del cache[old]
        a, b = cache[gap.below], cache[gap.above]
        for target, t in gap.targets:
            check_cancelled(cancel)
            with torch.no_grad():
                if params.slerp:
                    ws_t = slerp_fn(a["ws"], b["ws"], t, centre=w_centre)
                else:
                    ws_t = lerp(a["ws"], b["ws"], t)
                noise_t = None
                if noise == "interpolate":
                    noise_t = [
                        mix_noise(na, nb, t) for na, nb in zip(a["noise"], b["noise"], strict=True)
                    ]
                images = []
                for start in range(0, n_tiles, batch_size):
                    part = slice(start, min(start + batch_size, n_tiles))
                    kwargs = (
                        {"noise": [maps[part] for maps in noise_t]}
                        if noise_t is not None
                        else {"noise_mode": noise}
                    )
                    images.append(G.synthesis(ws_t[part], **kwargs)[:, 0].float().cpu().numpy())
            unit = (_blend(np.concatenate(images), tiles, shape, overlap) + 1.0) / 2.0
            below, above = a["unit"], b["unit"]
            if residual_correction:
                unit = unit + (1 - t) * (below - a["recon"]) + t * (above - b["recon"])
            if pixel_blend:
                unit = (1 - pixel_blend) * unit + pixel_blend * ((1 - t) * below + t * above)
            out[target] = window.from_unit(unit)
            synthesized.append(target)
            done += 1
            yield Progress(done, total, f"rebuilding slice {target} ({len(synthesized)}/{n_synth})")

    recorded = {
        **params.to_dict(),
        "missing": sorted(int(i) for i in missing) if missing is not None else None,
        "factor": plan.factor,
        "tile_overlap": overlap,
        "device": device,
    }
    provenance = make_provenance(
        "interpolate-stylegan",
        recorded,
        model=model_name,
        seed=seed,
        source={"shape": array.shape, "dtype": array.dtype.name},
        extra={
            "window": window.as_dict(),
            "generator_config": G.config.to_dict(),
            "generator_step": metadata.get("step"),
            "perceptual": perceptual_name,
            "projection_final_loss": final_losses,
            "projection_settings": projection_settings,
            "tiles_per_slice": n_tiles,
            "tile_size": resolution,
            **plan.provenance(),
        },
    )
    return EngineResult(data=out, provenance=provenance)
