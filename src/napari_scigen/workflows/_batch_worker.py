"""One chunk of a batch job, as a worker runs it: read, run the engine, write, mark done.

Inputs are opened once per worker process and cached; only the chunk's slices (and its
halo) are read. The engine runs through :mod:`napari_scigen.api`, like everywhere else,
with one thread pool of the size the cluster chose.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._batch_cluster import pin_one_gpu
from ._batch_job import BatchJob, BatchRequest
from ._batch_plan import Chunk, range_slice
from ._batch_store import _batch_folder, _write_json

# --------------------------------------------------------------------------------------
# one chunk (runs on a worker)
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _open_input(path: str, labels: bool, stamp: tuple, series: int | None = None) -> Any:
    from ..core.io import read_volume

    return read_volume(path, lazy=True, labels=labels, series=series).data


def _opened(path: str, *, labels: bool = False, series: int | None = None) -> Any:
    """The lazily opened volume at ``path`` (cached while the file is unchanged)."""
    status = Path(path).stat()
    return _open_input(str(path), labels, (status.st_mtime_ns, status.st_size), series)


def _input_slices(request: BatchRequest, start: int, stop: int) -> np.ndarray:
    """Slices ``[start, stop)`` of the job's input (its chosen image series)."""
    return _read_slices(request.input, start, stop, series=request.series)


def _read_slices(
    path: str, start: int, stop: int, *, labels: bool = False, series: int | None = None
) -> np.ndarray:
    """Slices ``[start, stop)`` of a volume file or store (the opened file is cached).

    ``series``: the image series of a multi-series TIFF (the job's input only).
    """
    data = _opened(path, labels=labels, series=series)
    if data.ndim == 2:  # a 2D mask applies to every slice
        return np.array(data)
    part = data[start:stop]
    return part.compute(scheduler="synchronous") if hasattr(part, "compute") else np.array(part)


_THREADS_SET: list[int] = []


def _limit_threads(threads: int | None, uses_torch: bool) -> None:
    """One thread pool of ``threads`` per worker (OpenMP/BLAS via env, torch directly)."""
    if not threads or _THREADS_SET == [threads]:
        return
    from ._batch_cluster import THREAD_VARIABLES

    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if uses_torch or "torch" in sys.modules:
        import torch

        torch.set_num_threads(int(threads))
    _THREADS_SET[:] = [threads]


def _run_engine(job: BatchJob, chunk: Chunk) -> tuple[np.ndarray, np.ndarray | None]:
    """The engine's result for the chunk's sub-volume (whole sub-volume), and its
    uncertainty image (shaped alike) when the engine returned one."""
    from .. import api

    request = job.request
    image = _input_slices(request, chunk.source_start, chunk.source_stop)
    mask = control = None
    if request.mask is not None:
        mask = _read_slices(request.mask, chunk.source_start, chunk.source_stop, labels=True)
    if request.control is not None:
        control = _read_slices(request.control, chunk.source_start, chunk.source_stop)
    carrier = None
    if chunk.range_slot is not None and job.value_range is not None:
        carrier = range_slice(image.shape[1:], image.dtype, job.value_range)
    if request.task == "interpolate":
        if carrier is not None:
            image[chunk.range_slot] = carrier
        result = api.interpolate(
            image,
            method=request.method,
            missing=chunk.missing,
            factor=chunk.factor,
            params=job.params,
        )
        return result.data, result.images.get("uncertainty")
    if (
        mask is not None
        and not np.asarray(mask if mask.ndim == 2 else mask[list(chunk.slices)]).any()
    ):
        return image, None  # nothing masked here: every engine copies unmasked pixels as they are
    if carrier is not None:
        image = np.concatenate([image, carrier[np.newaxis]])
        if mask is not None and mask.ndim == 3:
            mask = np.concatenate([mask, np.zeros((1, *mask.shape[1:]), mask.dtype)])
        if control is not None:
            control = np.concatenate([control, np.zeros((1, *control.shape[1:]), control.dtype)])
    slices = list(chunk.slices)
    common = {"method": request.method, "params": job.params, "slices": slices}
    if request.task == "inpaint":
        result = api.inpaint(image, mask, control=control, **common)
    elif request.task == "edit":
        result = api.edit(image, mask, **common)
    elif request.task == "mask":
        result = api.make_mask(image, **common)
    else:
        result = api.generate(image, control=control, **common)
    kept = slice(0, chunk.source_stop - chunk.source_start)
    spread = result.images.get("uncertainty")
    return result.data[kept], (None if spread is None else np.asarray(spread)[kept])


def model_folder(store) -> Path:
    """Where a job trained once keeps its network (safetensors) and record (JSON)."""
    return _batch_folder(store) / "model"


def fit_model(
    job: BatchJob, threads: int | None = None, gpu_slots: int = 0, fit_threads: int | None = None
) -> dict:
    """Train the job's learned engine once on the whole volume; write it for the chunks.

    Runs on one worker before the chunks (a ``fit_once`` job). The worker keeps its
    ``threads``; training and self-validation run with ``fit_threads`` torch threads
    (:attr:`~._batch_cluster.ClusterInfo.fit_threads`: the cores of the workers waiting
    for it, at most this machine's), unless the engine's ``threads`` fixes them; the
    count is recorded as ``fit_threads`` (float sums depend on it). The network goes to
    :func:`model_folder` as safetensors + JSON (written to a temporary folder, then
    renamed, so a killed worker leaves none half written); a rerun reuses it.

    Returns
    -------
    dict
        ``{"status": "trained" | "reused", "filled_with", "seconds", "worker"}`` and,
        when trained, ``"threads"`` (the fit's torch threads).
    """
    from ..core.progress import drain
    from ..engines.learned.fitted import load_fitted, save_fitted

    folder = model_folder(job.store)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    if (folder / "learned.json").is_file():
        fitted = load_fitted(folder)
        return {"status": "reused", "filled_with": fitted.record["filled_with"], "worker": worker}
    started = time.time()
    if gpu_slots:
        pin_one_gpu(gpu_slots)
    _limit_threads(threads, True)
    request = job.request
    if request.task == "interpolate":
        from ..engines.learned.bounded import fit_window
        from ..engines.learned.interpolate import run_learned_interpolation

        sampled = fit_window(job.input_shape, request.missing, request.factor, job.params.seed)
        if sampled is not None:  # only the seeded training sample is read
            image = _opened(request.input, series=request.series)
        else:
            image = _input_slices(request, 0, job.input_shape[0])
        generator = run_learned_interpolation(
            image, job.params, missing=request.missing, factor=request.factor, fit_only=True,
            value_range=job.value_range,
        )  # fmt: skip
    else:
        from ..engines.learned.bounded import inpaint_window
        from ..engines.learned.inpaint import run_learned_inpainting

        # read slab by slab to draw the sample's centre
        mask = _opened(request.mask, labels=True)
        if inpaint_window(job.input_shape, mask, job.params.seed) is not None:
            # only the seeded training sample is read
            image = _opened(request.input, series=request.series)
        else:
            image = _input_slices(request, 0, job.input_shape[0])
            mask = _read_slices(request.mask, 0, job.input_shape[0], labels=True)
        generator = run_learned_inpainting(
            image, mask, job.params, slices=request.slices, fit_only=True,
            value_range=job.value_range,
        )  # fmt: skip
    import torch

    from ..engines.learned.training import torch_threads
    from ._batch_cluster import available_cores

    wanted = min(int(fit_threads), available_cores()) if fit_threads else None
    with torch_threads("cpu", wanted):  # torch only: the worker's own pools stay
        fitted = drain(generator)
        used = int(getattr(job.params, "threads", None) or torch.get_num_threads())
    fitted.record["extra"]["fit_threads"] = used  # training's float sums depend on it
    if wants_uncertainty(job) and fitted.record["filled_with"] == "learned":
        uncertainty_array(job)  # before the network: its chunks write into it
    draft = folder.with_name(f"model.{os.getpid()}.{secrets.token_hex(4)}")
    save_fitted(fitted, draft)
    # no malloc_trim here (unlike one process, before its fill): a worker trimmed after
    # the fit took 3.7 million minor page faults a minute through the chunks that
    # followed, and its chunk took 160 s where an untrimmed worker took 144 s
    try:
        os.replace(draft, folder)
    except OSError:  # another worker finished first: keep its network
        import shutil

        shutil.rmtree(draft, ignore_errors=True)
    return {
        "status": "trained",
        "filled_with": fitted.record["filled_with"],
        "seconds": round(time.time() - started, 2),
        "worker": worker,
        "threads": used,
    }


@functools.lru_cache(maxsize=2)
def _load_model(folder: str, stamp: tuple):
    from ..engines.learned.fitted import load_fitted

    return load_fitted(folder)


def _run_fitted(job: BatchJob, chunk: Chunk) -> tuple[np.ndarray, np.ndarray | None]:
    """A chunk of a job trained once: the shipped network applied to the chunk's slices.

    Returns the chunk's slices from output slice ``chunk.first_output`` on, as
    :func:`_run_engine` does, and their uncertainty (float32, data units; None unless
    the network fills and the job asks for it).
    """
    from ..core.device import resolve_device
    from ..engines.learned.fitted import inpaint_chunk, interpolation_chunk, interpolation_sources

    folder = model_folder(job.store)
    record = folder / "learned.json"
    if not record.is_file():
        raise RuntimeError(f"{record} is missing: the job's network was not trained yet")
    status = record.stat()
    fitted = _load_model(str(folder), (status.st_mtime_ns, status.st_size))
    request = job.request
    device = resolve_device(getattr(job.params, "device", "auto"))
    depth = job.input_shape[0]
    spread = wants_uncertainty(job) and fitted.record["filled_with"] == "learned"
    if request.task == "interpolate":
        first, last = interpolation_sources(
            depth, request.missing, request.factor, chunk.start, chunk.stop
        )
        # as the engine's result for the chunk's sub-volume: output slices from first_output
        shape = (chunk.stop - chunk.first_output, *job.output_shape[1:])
        uncertainty = np.zeros(shape, np.float32) if spread else None
        mine = None if uncertainty is None else uncertainty[chunk.start - chunk.first_output :]
        block = interpolation_chunk(
            fitted, _input_slices(request, first, last), source_start=first,
            n_slices=depth, missing=request.missing, factor=request.factor,
            start=chunk.start, stop=chunk.stop, device=device, uncertainty=mine,
        )  # fmt: skip
        result = np.empty(shape, block.dtype)
        result[chunk.start - chunk.first_output :] = block
        return result, uncertainty
    own = _read_slices(request.mask, chunk.start, chunk.stop, labels=True)
    chosen = [chunk.source_start + z - chunk.start for z in chunk.slices]
    if not np.asarray(own if own.ndim == 2 else own[chosen]).any():
        # nothing to fill here: the chunk's own slices, without reading its halo
        shape = (chunk.source_stop - chunk.source_start, *job.output_shape[1:])
        result = np.empty(shape, job.output_dtype)
        result[chunk.start - chunk.source_start : chunk.stop - chunk.source_start] = _input_slices(
            request, chunk.start, chunk.stop
        )
        return result, None  # its uncertainty: zeros (see _write_uncertainty)
    image = _input_slices(request, chunk.source_start, chunk.source_stop)
    mask = _read_slices(request.mask, chunk.source_start, chunk.source_stop, labels=True)
    uncertainty = np.zeros(image.shape, np.float32) if spread else None
    result = inpaint_chunk(
        fitted, image, mask, source_start=chunk.source_start, n_slices=depth,
        slices=chunk.slices, device=device, uncertainty=uncertainty,
    )  # fmt: skip
    return result, uncertainty


def compute_chunk(
    job: BatchJob, index: int, threads: int | None = None, gpu_slots: int = 0
) -> dict:
    """Compute one chunk, write its region of the store, then its done marker.

    Runs on a worker. A chunk that already has a marker is skipped (a rerun, or a
    result lost with a worker after it was written).

    Returns
    -------
    dict
        ``{"index", "status": "computed" | "skipped", "seconds", "worker"}``.
    """
    folder = _batch_folder(job.store)
    marker = folder / "done" / f"{index:06d}.json"
    worker = f"{socket.gethostname()}:{os.getpid()}"
    if marker.exists():
        return {"index": index, "status": "skipped", "seconds": 0.0, "worker": worker}
    try:
        return _compute(job, index, threads, gpu_slots, folder, marker, worker)
    except USER_ERRORS as error:  # the same on every retry: reported once, not retried
        text = " ".join(str(error).split()) or type(error).__name__
        return {"index": index, "status": "failed", "error": text, "worker": worker}


def _user_errors() -> tuple[type[BaseException], ...]:
    import pickle

    from ..core.models import ModelNotAvailableError
    from ..core.validation import InvalidInputError

    return (InvalidInputError, ModelNotAvailableError, pickle.UnpicklingError)


#: Failures caused by the user's files or settings (a bad mask, NaN input, a missing
#: model, an unsafe checkpoint): deterministic, so a chunk failing so is not retried.
USER_ERRORS = _user_errors()


def _compute(job: BatchJob, index: int, threads, gpu_slots, folder, marker, worker) -> dict:
    from ..core.io.zarr_write import write_zarr_slices

    started = time.time()
    attempt = folder / "attempts" / f"{index:06d}.{os.getpid()}.{secrets.token_hex(4)}.json"
    _write_json(attempt, {"worker": worker, "started": started})
    if gpu_slots:
        pin_one_gpu(gpu_slots)
    from ..engines.registry import get_engine

    engine = get_engine(job.request.task, job.request.method)
    _limit_threads(threads, "torch" in engine.extras)
    chunk = job.chunks[index]
    spread = None
    if chunk.copy:
        result = _input_slices(job.request, chunk.source_start, chunk.source_stop)
    elif job.fit_once:
        result, spread = _run_fitted(job, chunk)
    else:
        result, spread = _run_engine(job, chunk)
    here = slice(chunk.start - chunk.first_output, chunk.stop - chunk.first_output)
    block = result[here]
    expected = (chunk.stop - chunk.start, *job.output_shape[1:])
    if block.shape != expected:
        raise RuntimeError(
            f"chunk {index}: the {job.request.method} engine returned slices of shape "
            f"{block.shape}, expected {expected}"
        )
    dtype = np.dtype(job.output_dtype)
    if block.dtype != dtype:
        if not (job.kind == "labels" and block.dtype.kind in "biu" and block.max() <= 255):
            raise RuntimeError(f"chunk {index}: the engine returned {block.dtype}, not {dtype}")
        block = block.astype(dtype)
    write_zarr_slices(job.store, chunk.start, block)
    _write_uncertainty(job, chunk, None if spread is None else spread[here])
    seconds = time.time() - started
    _write_json(
        marker,
        {"index": index, "slices": [chunk.start, chunk.stop], "worker": worker, "seconds": seconds},
    )
    return {"index": index, "status": "computed", "seconds": seconds, "worker": worker}


# --------------------------------------------------------------------------------------
# the uncertainty image (learned engines): a second OME-Zarr image inside the store
# --------------------------------------------------------------------------------------

#: The uncertainty image's name inside the output store (``STORE/uncertainty.ome.zarr``:
#: an OME-Zarr image of its own, so ``read_volume``, ``info`` and napari open it by path).
UNCERTAINTY = "uncertainty.ome.zarr"


def uncertainty_store(store) -> Path:
    """Where a job's uncertainty image is (an OME-Zarr image inside the output store)."""
    return Path(store) / UNCERTAINTY


def wants_uncertainty(job: BatchJob) -> bool:
    """Whether the job writes an uncertainty image: its engine returns one (registry flag),
    its ``uncertainty`` parameter is on, and its result does not depend on the chunking
    (trained once, or one task; the chunks of an engine that chooses per chunk, such as
    ``auto`` split by ``--chunk-slices``, would not make one image)."""
    from ..engines.registry import get_engine

    engine = get_engine(job.request.task, job.request.method)
    single = job.fit_once or len(job.chunks) == 1
    return bool(engine.outputs_uncertainty and getattr(job.params, "uncertainty", False) and single)


def uncertainty_array(job: BatchJob) -> Path:
    """Create the job's uncertainty image (float32 zeros, the output's grid and chunks).

    Made in the bookkeeping folder, then renamed into place, so that a killed worker
    leaves none half made and two creators keep one. The output's provenance says where
    it is (``extra["uncertainty_image"]``).
    """
    from ..core.io.read import read_volume
    from ..core.io.zarr_write import create_zarr, update_zarr_record

    target = uncertainty_store(job.store)
    if target.is_dir():
        return target
    draft = _batch_folder(job.store) / f"uncertainty.{os.getpid()}.{secrets.token_hex(4)}"
    provenance = read_volume(job.store, lazy=True).provenance or {}
    what = "per-voxel spread of the network's test-time-augmented predictions (data units; "
    request = job.request
    create_zarr(
        draft, job.output_shape, np.float32, voxel_size=job.voxel_size, unit=job.unit,
        provenance={**provenance, "output": f"uncertainty: {what}0 where it did not synthesize)"},
        chunk_slices=job.store_chunk_slices, levels=request.levels,
        ngff_version=request.ngff_version, name="uncertainty",
    )  # fmt: skip
    try:
        os.replace(draft, target)
    except OSError:  # another worker made it first
        import shutil

        shutil.rmtree(draft, ignore_errors=True)
        return target
    extra = {**(provenance.get("extra") or {}), "uncertainty_image": UNCERTAINTY}
    update_zarr_record(job.store, provenance={**provenance, "extra": extra})
    return target


def _write_uncertainty(job: BatchJob, chunk: Chunk, spread: np.ndarray | None) -> None:
    """Write the chunk's region of the uncertainty image (zeros where it has none)."""
    from ..core.io.zarr_write import write_zarr_slices

    target = uncertainty_store(job.store)
    if spread is None:
        if not (job.fit_once and target.is_dir()):
            return  # no image: the engine fell back, or the job asks for none
        # a chunk the network did not touch (kept slices only): nothing synthesized;
        # zeros one stored chunk at a time (float32 is 4x a uint8 chunk)
        step = job.store_chunk_slices
        zeros = np.zeros((step, *job.output_shape[1:]), np.float32)
        for first in range(chunk.start, chunk.stop, step):
            write_zarr_slices(target, first, zeros[: min(step, chunk.stop - first)])
        return
    if wants_uncertainty(job):
        write_zarr_slices(uncertainty_array(job), chunk.start, spread)


def _slab_range(
    path: str, start: int, stop: int, refuse_nonfinite: bool = True, series: int | None = None
):
    from ..core.validation import finite_range

    slab = _read_slices(path, start, stop, series=series)
    name = f"volume (slices {start}-{stop - 1})"
    return finite_range(slab, name=name, refuse_nonfinite=refuse_nonfinite)
