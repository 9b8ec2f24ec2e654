"""Apply the interpolation network to the xz and yz planes of a volume and fuse them.

Every xz plane (fixed y) and yz plane (fixed x) of the output grid is a 2D image whose
known rows are the kept slices. Its unknown rows are filled linearly, the network adds
its residual, and the predictions of both plane families and of ``tta`` flips of each
plane (along z and along the in-plane axis) are averaged. Their standard deviation at
each voxel is the uncertainty estimate: it is large where planes and flips disagree,
i.e. where the synthesis is unreliable (a lower bound of the error, not a calibrated
error bar).

Inference streams with bounded memory (issue 19): the rows to predict are cut into
*slabs* (consecutive rows, whose predictions are final once the slab is done); within a
slab every plane is cut into tiles read with a halo of :data:`~.tiles.HALO` pixels
(:mod:`.tiles`), and batches of tiles of at most ``batch_pixels`` input pixels go
through the network. The linear fill is computed per tile, never for the whole volume,
and the planes and flips are fused in place (float32 running mean and squared
deviations). The result does not depend on the tile size (bit-identical on a CPU; see
``tests/test_learned_inference.py``). A finished slab is written to ``out`` or handed to
``on_slab``. On a device out-of-memory error the slab is redone with half the batch
pixels, down to :data:`~.tiles.MIN_BATCH_PIXELS`, then on the CPU (:func:`~.tiles.shrink`).

With ``concurrent_tiles`` the batches of different planes go through the network side
by side on a CPU, one call per torch thread (at most :data:`MAX_CONCURRENT_CALLS`, each
with its share of the threads; :func:`concurrent_calls`): small convolutions scale worse
over threads inside one call than over calls. Each batch writes only its own planes, and
a slab's orientations run one after the other, so every voxel still fuses its
predictions in the same order and the result has the same bits as calls in turn
(tested). It costs memory: every call in flight holds its activations, and each thread
keeps its own glibc arena (:func:`~.tiles.keep_arena_heaps`), so it is off by default.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Generator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from ...core.progress import CancelToken, Progress, check_cancelled
from .geometry import neighbours
from .tiles import (
    BATCH_PIXELS,
    HALO,
    Span,
    apply,
    core_sizes,
    cores,
    default_batch_pixels,
    finish,
    fuse,
    is_out_of_memory,
    prepare,
    shrink,
    span,
)

__all__ = ["BATCH_PIXELS", "FLIPS", "PlaneSource", "Prediction", "predict_rows"]

#: Flips of a plane used for test-time augmentation, in order: (along z, in-plane).
FLIPS = ((False, False), (True, False), (False, True), (True, True))
#: Float32 accumulator bytes a slab may hold when results are not written in place.
SLAB_BYTES = 256 * 2**20
#: Network calls run side by side on a CPU, at most (see :func:`concurrent_calls`).
MAX_CONCURRENT_CALLS = 4


def concurrent_calls(device: str, threads: int | None = None) -> tuple[int, int]:
    """``(calls, threads per call)``: how inference spends a CPU's torch threads.

    With ``concurrent_tiles`` on a CPU, tiles of different planes go through the network
    side by side, each call with its share of the threads: 2 calls of 1 thread ran the
    network 1.9x as fast as one thread where one call of 2 threads ran it 1.6x (bfloat16;
    float32 2.1x vs 1.8x, 2 cores). The values do not depend on it (tested). On a GPU:
    one call at a time.

    Parameters
    ----------
    device : str
        Resolved torch device.
    threads : int, optional
        Torch threads to spend (default: torch's current setting).
    """
    if not device.startswith("cpu"):
        return 1, 0
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    threads = max(1, int(threads))
    calls = min(threads, MAX_CONCURRENT_CALLS)
    return calls, max(1, threads // calls)


@contextlib.contextmanager
def _calls_side_by_side(device: str, wanted: bool):
    """A thread pool for :func:`concurrent_calls` calls (None for one, or unless
    ``wanted``), torch's threads set to each call's share meanwhile (restored afterwards)."""
    calls, per_call = concurrent_calls(device) if wanted else (1, 0)
    if calls < 2:
        yield None
        return
    import torch

    from .tiles import keep_arena_heaps

    keep_arena_heaps()
    before = torch.get_num_threads()
    torch.set_num_threads(per_call)
    pool = ThreadPoolExecutor(calls, thread_name_prefix="scigen-tiles")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(before)


@dataclass
class Prediction:
    """The fused prediction of the rows a job synthesizes.

    Attributes
    ----------
    rows : numpy.ndarray
        Output-grid rows predicted, ascending.
    mean : numpy.ndarray or None
        ``(len(rows), Y, X)`` float32 in network units (the ``out`` arrays when given;
        None when the slabs were only handed to ``on_slab``).
    spread : numpy.ndarray or None
        ``(len(rows), Y, X)`` float32 standard deviation over planes and flips.
    count : int
        Predictions averaged per voxel.
    """

    rows: np.ndarray
    mean: np.ndarray | None
    spread: np.ndarray | None
    count: int

    def take(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, spread)`` of some of :attr:`rows`."""
        index = np.searchsorted(self.rows, np.asarray(rows, dtype=int))
        return np.asarray(self.mean[index]), np.asarray(self.spread[index])


class PlaneSource:
    """Network inputs of tiles of the xz/yz planes of an output grid.

    Channel 0 is the linear fill of the unknown rows (computed for the tile only, with
    the same float32 arithmetic as :func:`~.geometry.linear_fill`), channel 1 the
    known-row mask. This is the one place planes are extracted; inputs made of several
    neighbouring planes would be built here.

    Parameters
    ----------
    volume : numpy.ndarray or KnownRows
        ``(n_out, Y, X)`` output grid in network units (unknown rows are not read;
        :class:`~.geometry.KnownRows` converts the known rows as they are read).
    known : numpy.ndarray
        ``(n_out,)`` bool, rows the network may see.
    """

    channels = 2

    def __init__(self, volume: np.ndarray, known: np.ndarray) -> None:
        self.volume = volume
        self.known = np.asarray(known, dtype=bool)
        self.below, self.above, self.t = neighbours(self.known)

    def shape(self, orientation: str) -> tuple[int, int, int]:
        """``(planes, rows, width)`` of the ``orientation`` planes."""
        depth, height, width = self.volume.shape
        return (height, depth, width) if orientation == "xz" else (width, depth, height)

    def inputs(self, orientation: str, planes: slice, rows: slice, cols: slice) -> np.ndarray:
        """``(n, channels, h, w)`` float32 inputs of a tile of planes ``planes``."""
        index = np.arange(rows.start, rows.stop)
        where = (planes, cols) if orientation == "xz" else (cols, planes)
        weight = self.t[index].reshape(-1, 1, 1)
        # one read of the known rows on both sides (a KnownRows grid converts each once)
        both = self.volume[(np.concatenate([self.below[index], self.above[index]]), *where)]
        below, above = both[: index.size], both[index.size :]
        fill = ((1.0 - weight) * below + weight * above).astype(np.float32)
        order = (1, 0, 2) if orientation == "xz" else (2, 0, 1)
        fill = fill.transpose(order)
        out = np.empty((fill.shape[0], self.channels, *fill.shape[1:]), np.float32)
        out[:, 0] = fill
        out[:, 1] = self.known[index, None].astype(np.float32)
        return out


def slabs(rows: np.ndarray, span_rows: int, per_slab: int) -> list[tuple[int, int]]:
    """Group sorted ``rows`` into index ranges spanning < ``span_rows`` rows, <= ``per_slab``."""
    groups, first = [], 0
    for i in range(1, rows.size + 1):
        if i == rows.size or rows[i] - rows[first] >= span_rows or i - first >= per_slab:
            groups.append((first, i))
            first = i
    return groups


def predict_rows(
    network,
    volume: np.ndarray,
    known: np.ndarray,
    rows: np.ndarray,
    *,
    orientations: tuple[str, ...],
    tta: int,
    device: str,
    progress: Callable[[float, str], Progress],
    label: str,
    cancel: CancelToken | None = None,
    tile: int | tuple[int, int] | None = None,
    batch_pixels: int | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
    on_slab: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    precision: str = "float32",
    frame: tuple[int, int] | None = None,
    concurrent_tiles: bool = False,
) -> Generator[Progress, None, Prediction]:
    """Predict the output ``rows`` of ``volume`` from its ``known`` rows, slab by slab.

    Parameters
    ----------
    network : ResidualUNet
        Trained network (eval mode) on ``device``; moved to the CPU if the device runs
        out of memory even for the smallest tiles.
    volume : numpy.ndarray or KnownRows
        Output grid ``(n_out, Y, X)`` in network units; unknown rows are ignored.
    known : numpy.ndarray
        Rows the network may see.
    rows : numpy.ndarray
        Rows to predict (unknown, with known rows on both sides).
    orientations : tuple of str
        ``("xz", "yz")`` or one of them.
    tta : int
        Flips per plane (1, 2 or 4; see :data:`FLIPS`).
    device : str
        Resolved torch device.
    progress : callable
        ``progress(fraction, message)`` on the job's scale.
    label : str
        Engine name for messages.
    cancel : CancelToken, optional
        Checked between network calls.
    tile : int or tuple of int, optional
        Core ``(rows, width)`` of the plane tiles; by default whole planes when they fit
        ``batch_pixels``, else the largest tiles that do. The result does not depend on it.
    batch_pixels : int, optional
        Input pixels per network call (default :func:`default_batch_pixels`).
    out : tuple of numpy.ndarray, optional
        Preallocated ``(mean, spread)`` targets of shape ``(len(rows), Y, X)`` (NumPy
        arrays, memory maps, or anything that takes slice assignment), filled slab by slab.
    on_slab : callable, optional
        ``on_slab(slab_rows, mean, spread)`` once the rows of a slab are final.
    precision : str
        ``"float32"`` (default), or ``"bfloat16"``: bfloat16 autocast on a CPU too
        (about 4x faster where the CPU has AMX/AVX512-BF16; results differ from float32
        by about 1e-3 network units). On CUDA autocast is always on.
    frame : tuple of int, optional
        ``(offset, length)``: ``volume`` is rows ``[offset, offset + len(volume))`` of a
        grid of ``length`` rows (a z-chunk of a batch job). Tiles are then aligned and
        end-padded as in the whole grid (see :mod:`.tiles`), so the rows equal the whole
        grid's prediction within float32 rounding, provided ``volume`` holds every row a
        tile reads (``HALO`` + 3 rows around ``rows``) and the known neighbours of those
        rows; else a ValueError.
    concurrent_tiles : bool
        On a CPU, run tiles of different planes side by side, one per torch thread
        (:func:`concurrent_calls`; same result, faster, more memory).

    Returns
    -------
    Prediction
        Its ``mean``/``spread`` are ``out`` (or new arrays; None with ``on_slab`` and no
        ``out``).
    """
    rows = np.asarray(sorted(int(r) for r in rows), dtype=int)
    prepare(network)
    source = PlaneSource(volume, known)
    flips = FLIPS[:tta]
    n_predictions = len(orientations) * len(flips)
    budget = int(batch_pixels or default_batch_pixels(device))
    plane_voxels = int(np.prod(volume.shape[1:]))
    if out is None and on_slab is None:
        shape = (rows.size, *volume.shape[1:])
        out = (np.empty(shape, np.float32), np.empty(shape, np.float32))
    in_place = out is not None and all(type(a) in (np.ndarray, np.memmap) for a in out)
    height = volume.shape[0]
    widest = max(source.shape(o)[2] for o in orientations)
    span_rows = int(tile if isinstance(tile, int) else tile[0]) if tile else None
    span_rows = span_rows or core_sizes(height, widest, budget)[0]
    per_slab = rows.size if in_place else max(1, SLAB_BYTES // (8 * plane_voxels))
    groups = slabs(rows, span_rows, per_slab)
    state = {"device": device, "budget": budget, "done": 0, "yielded": 0.0}
    state["precision"] = precision
    state["frame"] = frame or (0, volume.shape[0])
    total = rows.size * plane_voxels * n_predictions
    started = time.perf_counter()

    def report(message: str) -> Progress:
        seconds = max(time.perf_counter() - started, 1e-9)
        rate = state["done"] / n_predictions / seconds
        left = (total - state["done"]) / n_predictions / max(rate, 1e-9)
        state["yielded"] = time.perf_counter()
        return progress(
            state["done"] / max(total, 1),
            f"{label}: {message}, {rate / 1e6:.2f} Mvoxel/s, about {left:.0f} s left "
            f"({n_predictions} predictions per voxel, {state['device']})",
        )

    with _calls_side_by_side(device, concurrent_tiles) as pool:
        state["pool"] = pool
        yield from _predict_slabs(
            network, source, rows, groups, out, on_slab, in_place, volume.shape[1:],
            orientations, flips, tile, state, cancel, report, label,
        )  # fmt: skip
    mean_out, spread_out = out if out is not None else (None, None)
    return Prediction(rows, mean_out, spread_out, n_predictions)


def _predict_slabs(
    network,
    source,
    rows,
    groups,
    out,
    on_slab,
    in_place,
    plane_shape,
    orientations,
    flips,
    tile,
    state,
    cancel,
    report,
    label,
):
    """Predict the slabs ``groups`` of ``rows`` in turn (see :func:`predict_rows`)."""
    n_predictions = len(orientations) * len(flips)
    for number, (first, last) in enumerate(groups, start=1):
        slab_rows = rows[first:last]
        if in_place:
            mean, m2 = out[0][first:last], out[1][first:last]
        else:
            mean = np.empty((slab_rows.size, *plane_shape), np.float32)
            m2 = np.empty_like(mean)
        done_before = state["done"]
        while True:
            try:
                yield from _predict_slab(
                    network, source, slab_rows, mean, m2, orientations, flips, tile, state,
                    cancel, lambda m, n=number: report(f"{m}, slab {n}/{len(groups)}"),
                )  # fmt: skip
                break
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                state["done"] = done_before
                yield report(shrink(network, state, label))
        finish(m2, n_predictions)
        if not in_place and out is not None:
            out[0][first:last], out[1][first:last] = mean, m2
        if on_slab is not None:
            on_slab(slab_rows, mean, m2)
        yield report(f"rows {slab_rows[0]}-{slab_rows[-1]} done")


def _z_span(height: int, core: tuple[int, int], flip: bool, frame: tuple[int, int]) -> Span:
    """The z span of a tile of a grid that is rows ``frame[0]...`` of ``frame[1]`` rows."""
    offset, length = frame
    if (offset, length) == (0, height):
        return span(height, core, HALO, flip)
    whole = span(length, (core[0] + offset, core[1] + offset), HALO, flip).read
    read = slice(whole.start - offset, whole.stop - offset)
    if read.start < 0 or read.stop > height:
        raise ValueError(
            f"rows {core[0]}-{core[1] - 1} need grid rows {whole.start}-{whole.stop - 1} but "
            f"the chunk holds rows {offset}-{offset + height - 1}: its halo is too short"
        )
    return Span(slice(*core), read)


def _predict_slab(
    network, source, slab_rows, mean, m2, orientations, flips, tile, state, cancel, report
):
    """Fuse every prediction of ``slab_rows`` into ``mean``/``m2`` (slab-shaped, in place).

    Per voxel the predictions arrive in a fixed order (orientation, then flip), whatever
    the tiles, so the fused values do not depend on the tiling.
    """
    first_row, last_row = int(slab_rows[0]), int(slab_rows[-1]) + 1
    for o_index, orientation in enumerate(orientations):
        n_planes, height, width = source.shape(orientation)
        if tile:
            size = (tile, tile) if isinstance(tile, int) else tuple(tile)
        else:
            size = core_sizes(last_row - first_row, width, state["budget"])
        for z_core in cores(last_row - first_row, size[0]):
            z_core = (first_row + z_core[0], first_row + z_core[1])
            wanted = slab_rows[(slab_rows >= z_core[0]) & (slab_rows < z_core[1])]
            if wanted.size == 0:
                continue
            start = int(np.searchsorted(slab_rows, wanted[0]))
            place = slice(start, start + wanted.size)
            for w_core in cores(width, size[1]):
                spans = [
                    (_z_span(height, z_core, flip[0], state["frame"]),
                     span(width, w_core, HALO, flip[1]))
                    for flip in flips
                ]  # fmt: skip
                area = max((z.read.stop - z.read.start) * (w.read.stop - w.read.start)
                           for z, w in spans)  # fmt: skip
                step = max(1, state["budget"] // area)
                batch = functools.partial(
                    _fuse_planes, network, source, orientation, flips, spans, wanted, place,
                    mean, m2, o_index * len(flips), state, cancel,
                )  # fmt: skip
                planes = [slice(p0, min(n_planes, p0 + step)) for p0 in range(0, n_planes, step)]
                yield from _run_batches(
                    batch, planes, state, lambda o=orientation: report(f"{o} planes")
                )
        yield report(f"{orientation} planes")


def _fuse_planes(
    network,
    source,
    orientation,
    flips,
    spans,
    wanted,
    place,
    mean,
    m2,
    first,
    state,
    cancel,
    planes,
) -> int:
    """Predict the tile ``planes`` x ``spans`` in every flip and fuse it; the values done.

    Writes only the planes ``planes`` of the slab, so batches of other planes may run at
    the same time (each voxel still gets its flips in order).
    """
    cached = {}
    done = 0
    for f_index, (flip, (z_span, w_span)) in enumerate(zip(flips, spans, strict=True)):
        check_cancelled(cancel)
        key = (z_span.read.start, z_span.read.stop, w_span.read.start, w_span.read.stop)
        if key not in cached:
            cached.clear()
            cached[key] = source.inputs(orientation, planes, z_span.read, w_span.read)
        values = apply(network, cached[key], flip, state["device"], state["precision"])
        values = values[:, wanted - z_span.read.start, w_span.crop]
        if orientation == "xz":
            target = (place, planes, w_span.core)
            values = values.transpose(1, 0, 2)
        else:
            target = (place, w_span.core, planes)
            values = values.transpose(1, 2, 0)
        fuse(mean[target], m2[target], values, first + f_index + 1)
        done += values.size
    return done


def _run_batches(batch, planes, state, report):
    """Run ``batch(p)`` for every plane range ``p``: in turn, or side by side on the
    calls of ``state["pool"]``; yields progress about once a second.

    On an error (or when the caller stops) the batches not started are dropped and the
    running ones finished before it returns, so none writes into the slab afterwards.
    """
    pool = state.get("pool")
    if pool is None:
        for part in planes:
            state["done"] += batch(part)
            if time.perf_counter() - state["yielded"] > 1.0:
                yield report()
        return
    futures = [pool.submit(batch, part) for part in planes]
    try:
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in finished:
                state["done"] += future.result()
            if time.perf_counter() - state["yielded"] > 1.0:
                yield report()
    finally:
        for future in futures:
            future.cancel()
        wait(futures)
