"""A learned engine trained once, then applied to z-chunks (batch jobs, issue 19).

A learned engine trains on the whole volume, checks itself and decides what fills
(:func:`~.interpolate.run_learned_interpolation` and
:func:`~.inpaint.run_learned_inpainting` with ``fit_only=True``). The result is a
:class:`Fitted`: the network (or None when a classical method fills) and a JSON record
(the intensity window, the output range, the decision, the inference settings and the
provenance). :func:`save_fitted` writes it as safetensors + JSON (never a pickle), the
batch workers read it back with :func:`load_fitted` and fill their z-chunk:

* :func:`interpolation_chunk`: the chunk's synthesized rows, predicted on a sub-grid
  holding the chunk and a halo of :data:`INTERPOLATION_HALO` output rows plus the known
  neighbours of those rows. Its tiles are aligned and end-padded as in the whole grid
  (``frame=`` of :func:`~.inference.predict_rows`), so each value equals the one-process
  prediction within float32 rounding (a different tile shape: measured max |diff| about
  1e-7 network units); after rounding to an integer dtype a voxel lying within that of a
  half grey level can differ by one level.
* :func:`inpaint_chunk`: each masked slice's inputs (its :data:`~.context.Z_WINDOW`
  neighbours on each side, the box around each masked region) are the whole volume's,
  so the fill is bit-identical to one process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core.progress import CancelToken, Progress
from ...core.stack import cast_to_range
from .tiles import ALIGN, HALO

#: Output rows a z-chunk of an interpolation reads beyond its rows (tiles' halo plus
#: their alignment), before the known neighbours of the rows at its edges.
INTERPOLATION_HALO = HALO + ALIGN - 1
#: Name of the files :func:`save_fitted` writes (``.safetensors`` / ``.json``).
STEM = "learned"


@dataclass
class Fitted:
    """A trained network (None: a classical method fills) and what applying it needs.

    Attributes
    ----------
    task : {"interpolate", "inpaint"}
    network : ResidualUNet or None
    record : dict
        JSON-able: ``filled_with``, ``window`` (network units), ``output_range``,
        inference settings (``orientations``, ``tta``, ``precision``, ``context``...)
        and ``extra`` (the provenance of the fit).
    """

    task: str
    network: Any
    record: dict


def save_fitted(fitted: Fitted, folder: str | Path) -> Path:
    """Write ``folder/learned.json`` (and ``learned.safetensors`` with a network)."""
    from . import store

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"task": fitted.task, **fitted.record}
    if fitted.network is not None:
        store.save_weights(fitted.network, folder / STEM, {"fitted": record})
    else:
        (folder / f"{STEM}.json").write_text(json.dumps({"fitted": record}, sort_keys=True))
    return folder / f"{STEM}.json"


def load_fitted(folder: str | Path) -> Fitted:
    """Read what :func:`save_fitted` wrote (weights checked by :func:`.store.load_weights`)."""
    from . import store

    folder = Path(folder)
    weights = folder / f"{STEM}.safetensors"
    if weights.is_file():
        network, record = store.load_weights(weights)
        network.eval()
    else:
        network, record = None, json.loads((folder / f"{STEM}.json").read_text())
    fitted = dict(record["fitted"])
    return Fitted(fitted.pop("task"), network, fitted)


def fill_rows(
    network,
    grid,
    rows: np.ndarray,
    out: np.ndarray,
    uncertainty: np.ndarray | None,
    *,
    value_range: tuple[float, float],
    orientations: tuple[str, ...],
    tta: int,
    device: str,
    label: str,
    progress: Callable[[float, str], Progress],
    cancel: CancelToken | None = None,
    precision: str = "float32",
    frame: tuple[int, int] | None = None,
    out_first: int = 0,
    concurrent_tiles: bool = False,
) -> Generator[Progress, None, int]:
    """Predict ``rows`` of ``grid`` and write them, slab by slab, into ``out`` (data dtype).

    ``out[row - out_first]`` receives each row cast to the data's range (and
    ``uncertainty[row - out_first]`` its spread in data units); no array of all the rows
    is ever held. ``frame`` and ``concurrent_tiles`` as in
    :func:`~.inference.predict_rows`. Returns the predictions fused per voxel.
    """
    from .inference import predict_rows

    low, high = value_range
    scale = np.float32(grid.high - grid.low)

    def write(slab_rows, mean, spread) -> None:
        for i, row in enumerate(slab_rows):
            place = int(row) - out_first
            out[place] = cast_to_range(grid.to_data(mean[i]), out.dtype, low, high)
            if uncertainty is not None:
                np.multiply(spread[i], scale, out=uncertainty[place])

    prediction = yield from predict_rows(
        network,
        grid.volume,
        grid.known,
        np.asarray(rows, dtype=int),
        orientations=tuple(orientations),
        tta=tta,
        device=device,
        progress=progress,
        label=label,
        cancel=cancel,
        on_slab=write,
        precision=precision,
        frame=frame,
        concurrent_tiles=concurrent_tiles,
    )
    return prediction.count


def _drain(generator):
    from ...core.progress import drain

    return drain(generator)


def interpolation_chunk(fitted: Fitted, sub: np.ndarray, **kwargs) -> np.ndarray:
    """:func:`fill_chunk` run to its end (no progress)."""
    return _drain(fill_chunk(fitted, sub, **kwargs))


def fill_chunk(
    fitted: Fitted,
    sub: np.ndarray,
    *,
    source_start: int,
    n_slices: int,
    missing,
    factor,
    start: int,
    stop: int,
    device: str | None = None,
    uncertainty: np.ndarray | None = None,
    progress: Callable[[float, str], Progress] | None = None,
) -> Generator[Progress, None, np.ndarray]:
    """Output slices ``[start, stop)`` of a fitted interpolation, from input slices ``sub``.

    Parameters
    ----------
    fitted : Fitted
        From ``run_learned_interpolation(..., fit_only=True)`` on the whole volume.
    sub : numpy.ndarray
        Input slices ``[source_start, source_start + len(sub))``: every kept slice whose
        output row lies within :data:`INTERPOLATION_HALO` rows of the chunk, and the known
        neighbours beyond (see :func:`interpolation_sources`).
    n_slices, missing, factor
        The whole job (:func:`~napari_scigen.engines.interpolation.plan.plan_slices`).
    device : str, optional
        Torch device (default: resolved from ``"auto"``).
    uncertainty : numpy.ndarray, optional
        ``(stop - start, Y, X)`` float32 receiving the spread (data units) of the
        synthesized rows.
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    numpy.ndarray
        ``(stop - start, Y, X)`` in the input's dtype; kept slices copied bit for bit.
    """
    from ...core.device import resolve_device
    from ..interpolation.plan import plan_slices
    from .geometry import Grid, KnownRows
    from .training import torch_threads

    record = fitted.record
    plan = plan_slices(n_slices, missing=missing, factor=factor)
    source_stop = source_start + sub.shape[0]
    kept = [(s, t) for s, t in plan.kept if source_start <= s < source_stop]
    first_row, last_row = kept[0][1], kept[-1][1]
    if not (first_row <= start and stop - 1 <= last_row):
        raise ValueError(f"input slices {source_start}-{source_stop - 1} do not cover the chunk")
    block = np.empty((stop - start, *sub.shape[1:]), sub.dtype)
    if not any(start <= r < stop for r in plan.synthesized):
        for source, target in kept:
            if start <= target < stop:
                block[target - start] = sub[source - source_start]
        return block
    if record["filled_with"] != "learned":
        part = sub[kept[0][0] - source_start : kept[-1][0] - source_start + 1]
        return _classical_chunk(record["filled_with"], part, kept, plan, start, stop, block)
    low, high = (float(v) for v in record["window"])
    # the grid's known rows are converted from ``sub`` as the tiles read them (a float32
    # grid of every output row would be 4 x factor times a uint8 chunk)
    rows_of = {source - source_start: target - first_row for source, target in kept}
    volume = KnownRows(sub, rows_of, last_row - first_row + 1, low, high)
    known = np.zeros(volume.shape[0], bool)
    for source, target in kept:
        known[target - first_row] = True
        if start <= target < stop:
            block[target - start] = sub[source - source_start]
    rows = [r - first_row for r in plan.synthesized if start <= r < stop]
    if rows:
        device = device or resolve_device("auto")
        network = fitted.network.to(device)
        with torch_threads(device, record.get("threads")):
            yield from fill_rows(
                network,
                Grid(volume, known, low, high),
                np.asarray(rows),
                block,
                uncertainty,
                value_range=tuple(record["output_range"]),
                orientations=tuple(record["orientations"]),
                tta=int(record["tta"]),
                device=device,
                label=f"learned, rows {start}-{stop - 1}",
                progress=progress or (lambda f, m: Progress(int(1000 * f), 1000, m)),
                precision=record.get("precision", "float32"),
                frame=(first_row, plan.n_out),
                out_first=start - first_row,
                concurrent_tiles=bool(record.get("concurrent_tiles", False)),
            )
    return block


def _classical_chunk(method, part, kept, plan, start, stop, block) -> np.ndarray:
    """The classical fill of a chunk from ``part``, its kept slices first to last.

    Linear blends stay between their two kept slices, so the whole volume's clip
    changes nothing (as in the classical batch path).
    """
    from ..interpolation.classical import FlowParams, LinearParams, run_flow, run_linear

    first_row = kept[0][1]
    if plan.factor is not None:
        geometry = {"factor": plan.factor, "missing": None}
    else:
        rows = {t - first_row for _, t in kept}
        geometry = {"factor": None, "missing": [z for z in range(len(part)) if z not in rows]}
        geometry["missing"] = geometry["missing"] or None
    run = run_linear if method == "linear" else run_flow
    params = LinearParams() if method == "linear" else FlowParams()
    result = _drain(run(part, params, **geometry)).data
    block[:] = result[start - first_row : stop - first_row]
    return block


def interpolation_sources(n_slices: int, missing, factor, start: int, stop: int) -> tuple[int, int]:
    """Input slices ``[first, last)`` a chunk of output rows ``[start, stop)`` reads.

    The kept slices from the known row at or below ``start -`` :data:`INTERPOLATION_HALO`
    to the known row at or above ``stop - 1 +`` :data:`INTERPOLATION_HALO` (clamped to
    the volume).
    """
    from ..interpolation.plan import plan_slices

    plan = plan_slices(n_slices, missing=missing, factor=factor)
    sources = [s for s, _ in plan.kept]
    targets = np.array([t for _, t in plan.kept])
    low = int(np.searchsorted(targets, start - INTERPOLATION_HALO, side="right")) - 1
    high = int(np.searchsorted(targets, stop - 1 + INTERPOLATION_HALO, side="left"))
    return sources[max(0, low)], sources[min(len(sources) - 1, high)] + 1


def inpaint_chunk(
    fitted: Fitted,
    sub: np.ndarray,
    mask: np.ndarray,
    *,
    source_start: int,
    n_slices: int,
    slices,
    device: str | None = None,
    uncertainty: np.ndarray | None = None,
) -> np.ndarray:
    """The fitted inpainting of slices ``slices`` (relative) of the sub-volume ``sub``.

    ``sub`` is input slices ``[source_start, source_start + len(sub))`` and must hold
    :data:`~.context.Z_WINDOW` slices on each side of ``slices`` (or the volume's end);
    ``mask`` is its mask (3D, or one slice for every slice). Returns ``sub`` with the
    masked pixels of ``slices`` filled (bit-identical to one process); ``uncertainty``
    (float32, shaped like ``sub``) receives the spread in data units.
    """
    from ...core.device import resolve_device
    from ...core.validation import check_mask
    from .inpaint import fill_masked, to_units
    from .training import torch_threads

    record = fitted.record
    boolean = check_mask(mask, sub.shape, name="mask", allow_empty=True)
    masks = np.broadcast_to(boolean, sub.shape) if boolean.ndim == 2 else boolean
    targets = np.zeros(sub.shape, bool)
    chosen = [int(z) for z in slices]
    targets[chosen] = masks[chosen]
    out = np.array(sub, copy=True)
    if not targets.any():
        return out
    if record["filled_with"] != "learned":
        return _biharmonic_chunk(sub, masks, chosen, record["output_range"], out)
    device = device or resolve_device("auto")
    units = to_units(sub, record["window"])
    with torch_threads(device, record.get("threads")):
        _drain(
            fill_masked(
                fitted.network.to(device), units, np.ascontiguousarray(masks), targets, out,
                record, device=device, frame=(source_start, n_slices), uncertainty=uncertainty,
            )
        )  # fmt: skip
    return out


def _biharmonic_chunk(sub, masks, chosen, value_range, out) -> np.ndarray:
    """Biharmonic per slice, clipped to the whole volume's range (a range slice appended)."""
    from ..inpainting.biharmonic import BiharmonicParams, run_biharmonic

    low, high = value_range
    carrier = np.empty((1, *sub.shape[1:]), sub.dtype)
    flat = carrier.reshape(-1)
    flat[: max(1, flat.size // 2)] = np.asarray(low).astype(sub.dtype)
    flat[max(1, flat.size // 2) :] = np.asarray(high).astype(sub.dtype)
    image = np.concatenate([sub, carrier])
    mask = np.concatenate([masks, np.zeros_like(carrier, dtype=bool)])
    result = _drain(run_biharmonic(image, mask, BiharmonicParams(), slices=chosen)).data
    out[chosen] = result[chosen]
    return out
