"""Learned inpainting with 3D context: trained on the volume's own unmasked voxels.

:func:`run_learned_inpainting` is the generator behind the ``learned`` inpainting engine:

1. place a few masks like the user's on known voxels, away from the user's mask, and
   hold them out of training (self-validation);
2. train the residual U-Net on crops of known voxels hidden by random masks like the
   user's (:mod:`.shapes`); the input is the masked slice plus its neighbours
   (:mod:`.context`), the target the real voxels;
3. predict the held-out and the user's masked pixels (averaged over flips; the spread
   is the uncertainty), score learned vs biharmonic on the held-out masks, and fill with
   the learned result unless it lost (then biharmonic, unless forced).

Pixels outside the mask are bit-identical; the input is never modified.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Generator

import numpy as np

from ...core.progress import CancelToken, Progress, check_cancelled, relay_progress
from ...core.provenance import make_provenance, to_jsonable
from ...core.result import EngineResult
from ...core.stack import cast_to_range
from ...core.tiling import mask_bounding_boxes
from ...core.validation import InvalidInputError, check_image, check_mask
from .._slices import select_slices
from .bounded import inpaint_window
from .context import channel_count, slice_inputs, window
from .fitted import Fitted
from .interpolate import stage
from .params import LearnedInpaintParams
from .sampling import Batch
from .selfcheck import SelfValidation, decide, error_correlation, score
from .shapes import MaskShapes

#: Known pixels around a masked region the network sees at inference.
MARGIN = 32


class InpaintSampler:
    """Random crops of known voxels hidden by masks like the user's."""

    def __init__(self, volume, unknown, shapes: MaskShapes, side: int, context: int, rng):
        self.volume, self.unknown, self.shapes = volume, unknown, shapes
        self.side, self.context, self.rng = side, context, rng
        depth = volume.shape[0]
        known_share = 1.0 - unknown.reshape(depth, -1).mean(axis=1)
        self.slices = np.flatnonzero(known_share > 0.2)
        if self.slices.size == 0:
            raise InvalidInputError("no slice has enough unmasked pixels to learn from")

    def sample(self, batch: int, *, with_real: bool = False) -> Batch:
        """Draw ``batch`` crops (flipped and rotated at random)."""
        side = self.side
        channels = channel_count(self.context)
        inputs = np.empty((batch, channels, side, side), np.float32)
        target = np.empty((batch, 1, side, side), np.float32)
        weight = np.zeros((batch, 1, side, side), np.float32)
        depth, height, width = self.volume.shape
        for i in range(batch):
            for _ in range(20):
                z = int(self.slices[int(self.rng.integers(self.slices.size))])
                top = int(self.rng.integers(0, height - side + 1))
                left = int(self.rng.integers(0, width - side + 1))
                span = window(depth, z)
                stack = self.volume[span, top : top + side, left : left + side]
                hidden = self.unknown[span, top : top + side, left : left + side].copy()
                center = z - span.start
                shape = self.shapes.draw(self.rng, depth)
                first = center - int(self.rng.integers(0, shape.shape[0]))
                for k in range(shape.shape[0]):
                    if 0 <= first + k < stack.shape[0]:
                        hidden[first + k] |= shape[k]
                scored = hidden[center] & ~self.unknown[z, top : top + side, left : left + side]
                if scored.sum() >= 4:
                    break
            turns = int(self.rng.integers(4))
            stack, hidden = np.rot90(stack, turns, (1, 2)), np.rot90(hidden, turns, (1, 2))
            scored = np.rot90(scored, turns)
            if self.rng.random() < 0.5:
                stack, hidden, scored = stack[:, :, ::-1], hidden[:, :, ::-1], scored[:, ::-1]
            if self.rng.random() < 0.5:
                stack, hidden, center = stack[::-1], hidden[::-1], stack.shape[0] - 1 - center
            stack, hidden = np.ascontiguousarray(stack), np.ascontiguousarray(hidden)
            inputs[i] = slice_inputs(stack, hidden, center, self.context)
            target[i, 0] = stack[center]
            weight[i, 0] = scored
        return Batch(inputs, target, weight)


def _validation_masks(unknown, shapes: MaskShapes, count: int, rng) -> np.ndarray:
    """Up to ``count`` masks like the user's on known voxels, clear of the user's mask."""
    from scipy import ndimage

    depth, height, width = unknown.shape
    placed = np.zeros_like(unknown)
    if count == 0:
        return placed
    keep_out = ndimage.binary_dilation(unknown, iterations=4) if unknown.any() else unknown.copy()
    side = min(shapes.side, height, width)
    done = 0
    for _ in range(count * 30):
        if done >= count:
            break
        shape = shapes.draw(rng, depth)[:, :side, :side]
        z0 = int(rng.integers(0, depth - shape.shape[0] + 1))
        y0 = int(rng.integers(0, height - side + 1))
        x0 = int(rng.integers(0, width - side + 1))
        region = (slice(z0, z0 + shape.shape[0]), slice(y0, y0 + side), slice(x0, x0 + side))
        if (keep_out[region] & shape).any() or (placed[region] & shape).any():
            continue
        placed[region] |= shape
        keep_out[region] |= ndimage.binary_dilation(shape, iterations=4)
        done += 1
    return placed


def _predict(
    network,
    volume,
    unknown,
    targets,
    context,
    tta,
    device,
    progress,
    label,
    cancel,
    *,
    batch_pixels=None,
    precision="float32",
    frame=None,
    on_slice=None,
):
    """Mean and spread (network units) of the network's fill of ``targets`` voxels.

    Each masked region's box (with :data:`MARGIN` known pixels around it) is one network
    input; boxes larger than ``batch_pixels`` go through the network in tiles with a
    halo covering its receptive field (:mod:`.tiles`; equal to the whole box within
    float32 rounding), tiles without a target pixel are skipped, and the flips are
    fused in place. A device out-of-memory error halves the tiles (then moves to the
    CPU) instead of failing. ``precision`` as in
    :func:`~napari_scigen.engines.learned.inference.predict_rows`. ``frame``:
    ``(offset, depth)`` when ``volume`` is slices ``offset...`` of a volume of ``depth``
    slices (a z-chunk; each slice's context window is the whole volume's). With
    ``on_slice(z, mean, spread)`` (slice-shaped, valid on ``targets[z]``) nothing
    volume-sized is allocated and ``(None, None)`` is returned.
    """
    from .inference import FLIPS
    from .tiles import default_batch_pixels, finish, is_out_of_memory, prepare, shrink

    mean = spread = None
    if on_slice is None:
        mean = np.zeros(volume.shape, np.float32)
        spread = np.zeros(volume.shape, np.float32)
    offset, depth = frame or (0, volume.shape[0])
    prepare(network)
    state = {"device": device, "budget": int(batch_pixels or default_batch_pixels(device))}
    state["precision"] = precision
    flips = FLIPS[:tta]
    slices = [z for z in range(volume.shape[0]) if targets[z].any()]
    total = int(sum(targets[z].sum() for z in slices))
    done_voxels, started = 0, time.perf_counter()
    for done, z in enumerate(slices, start=1):
        check_cancelled(cancel)
        whole = window(depth, z + offset)
        span = slice(whole.start - offset, whole.stop - offset)
        if span.start < 0 or span.stop > volume.shape[0]:
            raise ValueError(f"slice {z + offset} needs slices {whole.start}-{whole.stop - 1}")
        slice_mean = np.zeros(volume.shape[1:], np.float32)
        slice_spread = np.zeros(volume.shape[1:], np.float32)
        for box in mask_bounding_boxes(targets[z], context=MARGIN):
            stack = volume[span, box.slices[0], box.slices[1]]
            hidden = unknown[span, box.slices[0], box.slices[1]]
            inputs = slice_inputs(stack, hidden, z - span.start, context)[None]
            region = targets[z][box.slices]
            box_mean = np.zeros(region.shape, np.float32)
            box_m2 = np.zeros(region.shape, np.float32)
            while True:
                try:
                    _predict_box(network, inputs, region, box_mean, box_m2, flips, state, cancel)
                    break
                except Exception as error:
                    if not is_out_of_memory(error):
                        raise
                    yield progress(done / len(slices), f"{label}: {shrink(network, state, label)}")
            finish(box_m2, len(flips))
            slice_mean[box.slices][region] = box_mean[region]
            slice_spread[box.slices][region] = box_m2[region]
        if on_slice is not None:
            on_slice(z, slice_mean, slice_spread)
        else:
            mean[z], spread[z] = slice_mean, slice_spread
        done_voxels += int(targets[z].sum())
        rate = done_voxels / max(time.perf_counter() - started, 1e-9)
        yield progress(
            done / len(slices),
            f"{label}: inpainting slice {z} ({done}/{len(slices)}), {rate:.0f} voxel/s, "
            f"about {(total - done_voxels) / max(rate, 1e-9):.0f} s left",
        )
    return mean, spread


def to_units(volume: np.ndarray, window_: tuple[float, float]) -> np.ndarray:
    """``volume`` in network units (float32) for the intensity window ``(low, high)``."""
    low_w, high_w = window_
    return ((volume.astype(np.float32) - low_w) / (high_w - low_w)).astype(np.float32)


def fill_masked(
    network,
    units,
    masks,
    targets,
    out,
    record,
    *,
    device,
    frame=None,
    uncertainty=None,
    progress=None,
    label="learned inpainting",
    cancel=None,
):
    """Write the network's fill of ``targets`` into ``out`` (data dtype), slice by slice.

    ``units``: the volume in network units (:func:`to_units` with ``record["window"]``);
    ``masks``: the user's mask (the voxels the network may not see); ``record``: the
    fit's ``window``, ``output_range``, ``context``, ``tta`` and ``precision``.
    ``uncertainty`` (optional, float32 like ``out``) receives the spread in data units.
    A generator (progress); returns nothing.
    """
    low_w, high_w = (float(v) for v in record["window"])
    low, high = (float(v) for v in record["output_range"])
    scale = high_w - low_w

    def write(z, mean, spread) -> None:
        where = targets[z]
        predicted = mean[where].astype(np.float64) * scale + low_w
        out[z][where] = cast_to_range(predicted, out.dtype, low, high)
        if uncertainty is not None:
            uncertainty[z][where] = spread[where] * np.float32(scale)

    yield from _predict(
        network, units, masks, targets, int(record["context"]), int(record["tta"]), device,
        progress or (lambda f, m: Progress(int(1000 * f), 1000, m)), label, cancel,
        precision=record.get("precision", "float32"), frame=frame, on_slice=write,
    )  # fmt: skip


def _predict_box(network, inputs, region, mean, m2, flips, state, cancel) -> None:
    """Fuse the flips of ``network`` on ``(1, C, h, w)`` inputs into ``mean``/``m2``."""
    from .tiles import HALO, apply, core_sizes, cores, fuse
    from .tiles import span as tile_span

    height, width = inputs.shape[2:]
    size = core_sizes(height, width, state["budget"])
    for rows in cores(height, size[0]):
        for cols in cores(width, size[1]):
            if not region[slice(*rows), slice(*cols)].any():
                continue
            for count, flip in enumerate(flips, start=1):
                check_cancelled(cancel)
                y = tile_span(height, rows, HALO, flip[0])
                x = tile_span(width, cols, HALO, flip[1])
                values = apply(
                    network, inputs[:, :, y.read, x.read], flip, state["device"], state["precision"]
                )
                fuse(mean[y.core, x.core], m2[y.core, x.core], values[0][y.crop, x.crop], count)


def run_learned_inpainting(
    image,
    mask,
    params: LearnedInpaintParams,
    *,
    slices=None,
    cancel: CancelToken | None = None,
    fit_only: bool = False,
    value_range: tuple[float, float] | None = None,
) -> Generator[Progress, None, EngineResult]:
    """Fill masked pixels with a network trained on this volume's own known voxels.

    Arguments and result as :func:`~napari_scigen.engines.inpainting.biharmonic.run_biharmonic`;
    ``images["uncertainty"]`` (when ``params.uncertainty``) holds the spread over flips
    inside the mask (data units). The held-out masks are hidden only while they are
    checked: the fill sees every voxel outside the user's mask. With ``fit_only`` it
    trains, checks and decides, and returns the :class:`~.fitted.Fitted` network and
    record that z-chunks fill from (:func:`~.fitted.inpaint_chunk`). A volume larger
    than the bounds of :mod:`.bounded` is fitted on a seeded sub-volume around a masked
    voxel (read alone from a lazy input; ``value_range``: the whole volume's, when known). Provenance engine ``"inpaint-learned"`` with the
    self-validation scores (learned vs biharmonic), ``filled_with`` and the training record.
    """
    from ...core.device import resolve_device
    from ..inpainting.biharmonic import BiharmonicParams, run_biharmonic
    from . import store
    from .training import torch_threads, train_network

    started = time.perf_counter()
    label = "learned inpainting"
    if len(np.shape(image)) == 3:
        window = inpaint_window(np.shape(image), mask, params.seed)
        if window is not None:
            return (
                yield from _fit_on_sample(
                    image, mask, params, window, slices, cancel, fit_only, value_range
                )
            )
    array = check_image(image, name="image")
    boolean = check_mask(mask, array.shape, name="mask")
    volume = array[np.newaxis] if array.ndim == 2 else array
    if boolean.ndim == 2:
        masks = np.broadcast_to(boolean, volume.shape).copy()
    else:
        masks = np.array(boolean, dtype=bool)
    chosen = select_slices(volume.shape[0], slices)
    targets = masks.copy()
    targets[[z for z in range(volume.shape[0]) if z not in chosen]] = False
    if not targets.any():
        raise InvalidInputError("the mask is empty on the chosen slices: nothing to inpaint")
    known_values = volume[~masks]
    if known_values.size == 0:
        raise InvalidInputError("the whole image is masked: nothing to learn from")
    low_w, high_w = (
        float(v)
        for v in np.percentile(known_values[:: max(1, known_values.size // 1_000_000)], [0.5, 99.5])
    )
    if high_w <= low_w:
        high_w = low_w + 1.0
    units = to_units(volume, (low_w, high_w))
    low, high = float(array.min()), float(array.max())
    height, width = volume.shape[1:]
    wanted = 8 * int(np.ceil(1.2 * _extent(masks) / 8))
    side = min(max(params.crop_size, min(wanted, 96)), height, width)
    rng = np.random.default_rng(params.seed)
    shapes = MaskShapes(masks, side)
    held_out = _validation_masks(masks, shapes, params.validation_masks, rng)
    unknown = masks | held_out
    sampler = InpaintSampler(units, unknown, shapes, side, params.context_slices, rng)
    device = resolve_device(params.device)
    network, init_record = store.initial_network(
        params, "inpaint", channel_count(params.context_slices)
    )
    digest = hashlib.sha256(
        units.tobytes() + unknown.tobytes() + repr(sorted(params.to_dict().items())).encode()
    )
    yield stage("train")(
        0.0, f"{label}: learning from {int((~unknown).sum())} known voxels on {device}"
    )
    timings = {}
    training = params.replace(
        loss=params.resolved_loss(known_values[:: max(1, known_values.size // 1_000_000)])
    )
    with torch_threads(device, params.threads):
        report = yield from train_network(
            network,
            sampler.sample,
            training,
            device=device,
            task_key=digest.hexdigest(),
            rng=rng,
            progress=stage("train"),
            label=label,
            cancel=cancel,
        )
        timings["train"] = round(report.seconds, 2)
        mark = time.perf_counter()
        if held_out.any():
            mean, spread = yield from _predict(
                network,
                units,
                unknown,
                held_out,
                params.context_slices,
                params.tta,
                device,
                _part("check", 0.0, 0.5),
                label,
                cancel,
                precision=params.precision,
            )
            timings["predict_held_out"] = round(time.perf_counter() - mark, 2)
    scale = high_w - low_w
    validation = None
    if held_out.any():
        mark = time.perf_counter()
        predicted = mean.astype(np.float64) * scale + low_w
        union = run_biharmonic(volume, unknown, BiharmonicParams(), cancel=cancel)
        biharmonic = yield from relay_progress(
            union,
            lambda e: _part("check", 0.5, 1.0)(
                e.fraction, f"{label}: biharmonic on held-out masks"
            ),
        )
        candidates = {
            "learned": cast_to_range(predicted, array.dtype, low, high).astype(np.float64),
            "biharmonic": biharmonic.data.astype(np.float64),
        }
        validation = SelfValidation(
            scores=score(volume.astype(np.float64), candidates, (low_w, high_w), mask=held_out),
            what="masks like yours on known voxels",
            count=int(_count_regions(held_out)),
        )
        validation.extra["uncertainty_error_spearman"] = round(
            error_correlation((candidates["learned"] - volume)[held_out], spread[held_out]), 4
        )
        del predicted, candidates, biharmonic, mean, spread
        timings["self_validation"] = round(time.perf_counter() - mark, 2)
        yield stage("check")(
            1.0,
            f"{label}: self-validation on {validation.count} held-out masks: {validation.summary()}",
        )
    filled_with, lost, reason = decide(
        validation, baseline="biharmonic", force=params.force_learned
    )
    extra = {
        "masked_pixels": int(targets.sum()),
        "slices": None if slices is None else sorted(chosen),
        "output_range": [low, high],
        "network_window": [low_w, high_w],
        "crop_size": side,
        "filled_with": filled_with,
        "choice_reason": reason,
        "learned_lost_self_validation": bool(lost),
        "self_validation": validation.as_dict() if validation is not None else None,
        "expected_error": validation.scores[filled_with] if validation is not None else None,
        "training": {**report.as_dict(), "loss": training.loss},
        "init": init_record,
        "network": network.config.to_dict(),
        "device": device,
        "seconds": timings,
    }
    record = to_jsonable(
        {
            "filled_with": filled_with,
            "window": [low_w, high_w],
            "output_range": [low, high],
            "context": params.context_slices,
            "tta": params.tta,
            "precision": params.precision,
            "threads": params.threads,
            "extra": extra,
        }
    )
    if fit_only:
        return Fitted("inpaint", network if filled_with == "learned" else None, record)
    yield stage("fill")(0.0, f"{label}: filling with {filled_with}: {reason}")
    images = {}
    if filled_with == "learned":
        mark = time.perf_counter()
        out = np.array(volume, copy=True)
        if params.uncertainty:
            images["uncertainty"] = np.zeros(volume.shape, np.float32)
        with torch_threads(device, params.threads):
            yield from fill_masked(
                network, units, masks, targets, out, record, device=device,
                uncertainty=images.get("uncertainty"), progress=stage("fill"), label=label,
                cancel=cancel,
            )  # fmt: skip
        timings["predict"] = round(time.perf_counter() - mark, 2)
    else:
        job = run_biharmonic(array, boolean, BiharmonicParams(), slices=slices, cancel=cancel)
        fallback = yield from relay_progress(
            job, lambda e: stage("fill")(e.fraction, f"{label}: {e.message}")
        )
        out = fallback.data[np.newaxis] if array.ndim == 2 else fallback.data
    data = out[0] if array.ndim == 2 else out
    if "uncertainty" in images and array.ndim == 2:
        images["uncertainty"] = images["uncertainty"][0]
    timings["total"] = round(time.perf_counter() - started, 2)
    provenance = make_provenance(
        "inpaint-learned", params, seed=params.seed,
        source={"shape": array.shape, "dtype": array.dtype.name}, extra=extra,
    )  # fmt: skip
    return EngineResult(data=data, provenance=provenance, images=images)


def _fit_on_sample(image, mask, params, window, slices, cancel, fit_only, value_range):
    """Fit on the seeded sample ``window`` (see :mod:`.bounded`), then fill the whole volume."""
    from ...core.device import resolve_device
    from ...core.memory import release_free_memory
    from .bounded import describe, read_window, with_output_range
    from .fitted import inpaint_chunk

    started = time.perf_counter()
    shape = np.shape(image)
    sample_mask = read_window(mask, window if len(np.shape(mask)) == 3 else window[1:])
    fitted = yield from run_learned_inpainting(
        read_window(image, window), sample_mask, params, cancel=cancel, fit_only=True
    )
    record = fitted.record
    record["extra"]["fit_sample"] = describe(window, shape)
    if fit_only:
        return with_output_range(fitted, image, value_range)
    del sample_mask
    release_free_memory()  # what training and the checks freed, before the fill
    array = check_image(image, name="image")
    boolean = check_mask(mask, array.shape, name="mask")
    chosen = select_slices(array.shape[0], slices)
    record["output_range"] = [float(array.min()), float(array.max())]
    images = {}
    if params.uncertainty and record["filled_with"] == "learned":
        images["uncertainty"] = np.zeros(array.shape, np.float32)
    yield stage("fill")(0.0, f"learned inpainting: filling with {record['filled_with']}")
    mark = time.perf_counter()
    data = inpaint_chunk(
        fitted, array, boolean, source_start=0, n_slices=array.shape[0], slices=sorted(chosen),
        device=resolve_device(params.device), uncertainty=images.get("uncertainty"),
    )  # fmt: skip
    extra = {**record["extra"], "output_range": record["output_range"]}
    extra["masked_pixels"] = int(sum(int(boolean[z].sum()) for z in chosen))
    extra["slices"] = None if slices is None else sorted(chosen)
    extra["seconds"] = {
        **extra["seconds"],
        "predict": round(time.perf_counter() - mark, 2),
        "total": round(time.perf_counter() - started, 2),
    }
    provenance = make_provenance(
        "inpaint-learned", params, seed=params.seed,
        source={"shape": array.shape, "dtype": array.dtype.name}, extra=extra,
    )  # fmt: skip
    return EngineResult(data=data, provenance=provenance, images=images)


def _part(name: str, start: float, end: float):
    """A part ``start..end`` of stage ``name``."""
    progress = stage(name)
    return lambda fraction, message: progress(start + (end - start) * fraction, message)


def _extent(masks: np.ndarray) -> int:
    """In-plane size of the largest connected region of the mask (pixels)."""
    from scipy import ndimage

    labels, count = ndimage.label(masks)
    if not count:
        return 0
    return max(
        max(b[1].stop - b[1].start, b[2].stop - b[2].start) for b in ndimage.find_objects(labels)
    )


def _count_regions(mask: np.ndarray) -> int:
    from scipy import ndimage

    return int(ndimage.label(mask)[1])
