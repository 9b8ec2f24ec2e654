"""A batch job's request and its plan: what runs, on which slices, into which store.

:class:`BatchRequest` says what to run; :func:`plan_batch` checks it against the
registry and the inputs' metadata and returns the :class:`BatchJob` every worker
receives. The chunks are derived from the job on each process (they are a pure
function of it, see :mod:`~napari_scigen.workflows._batch_plan`), so the job that
travels to the workers stays small.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.params.declare import ParameterError
from ..core.provenance import to_jsonable
from ..core.validation import InvalidInputError
from ._batch_plan import (
    BATCH_TASKS,
    PER_SLICE_TASKS,
    Chunk,
    chunk_bounds,
    plan_interpolation_chunks,
    plan_slice_chunks,
)

#: Version of ``job.json``.
JOB_FORMAT = 1


@dataclass(frozen=True)
class BatchRequest:
    """What to run: an engine, its inputs and the output store.

    Attributes
    ----------
    task, method : str
        A registered engine (``napari-scigen engines``); tasks: interpolate, inpaint,
        mask, edit, generate.
    input : str
        TIFF file, folder of TIFF slices, or zarr/OME-Zarr store (3D).
    series : int, optional
        Image series of a multi-series TIFF input to read (default: the only one, or
        the stack of several series of one shape, as :func:`~napari_scigen.core.io.read_volume`).
    output : str
        The OME-Zarr store to write (``.zarr``/``.ome.zarr``).
    params : params dataclass or dict, optional
        The engine's parameters.
    missing, factor
        Interpolation: slices to rebuild, or the z upsampling factor.
    mask : str, optional
        Mask volume (inpaint; edit), same shape as the input or one slice.
    control : str, optional
        Control volume for engines that take one (ControlNet).
    slices : tuple of int, optional
        Per-slice engines: the slices to process (default all).
    chunk_slices : int, optional
        Output slices per task (default: one stored chunk of about 4 MiB, at most 16
        slices; for a learned interpolation trained once, the stored chunks that one
        inference tile fills: :func:`fitted_chunk_slices`). Stored chunks are never
        deeper than this; a larger value is rounded up to whole stored chunks.
    levels : int or None
        Resolution levels of the output store (1: none; None: automatic).
    ngff_version : {"0.5", "0.4"}
        Output format (NGFF 0.5 on zarr v3 by default).
    """

    task: str
    method: str
    input: str
    output: str
    params: Any = None
    missing: tuple[int, ...] | None = None
    factor: int | None = None
    mask: str | None = None
    control: str | None = None
    slices: tuple[int, ...] | None = None
    chunk_slices: int | None = None
    levels: int | None = 1
    ngff_version: str = "0.5"
    series: int | None = None


@dataclass(frozen=True)
class BatchJob:
    """A planned batch job: the request checked, with the geometry every worker shares.

    ``learns_from_input``: the engine trains a network on the volume it is given (the
    registry's flag: the learned engines). ``fit_once``: such an engine that is chunk-invariant (see the
    registry): the job trains it once on the whole volume, before the chunks, and the
    chunks apply the shipped weights (:mod:`napari_scigen.engines.learned.fitted`);
    another learned engine's job is one task over the whole volume unless the request
    sets ``chunk_slices``. ``note``: what the chunking changes, for the log and the
    provenance (None when the result does not depend on it). ``inputs_content``: per
    input file or store (volume, mask, control, weights named by a parameter), its
    :func:`~napari_scigen.core.io.identity.content_identity`, so that a changed input is
    never resumed into an output made from the old one. ``created``: this run made the
    store (a run that ends before any chunk is done removes it again).
    """

    request: BatchRequest
    params: Any
    input_shape: tuple[int, ...]
    input_dtype: str
    output_shape: tuple[int, ...]
    output_dtype: str
    voxel_size: tuple[float, ...]
    unit: str
    kind: str
    store_chunk_slices: int
    chunk_slices: int
    halo: int
    deterministic: bool
    carry_range: bool
    value_range: tuple[float, float] | None = None
    learns_from_input: bool = False
    fit_once: bool = False
    note: str | None = None
    inputs_content: tuple[tuple[str, str], ...] = ()
    created: bool = False

    @property
    def store(self) -> Path:
        """The output store."""
        return Path(self.request.output)

    @property
    def chunks(self) -> list[Chunk]:
        """The chunks (computed once per process from the job)."""
        return _chunks_of(self.geometry())[0]

    def geometry(self) -> tuple:
        """What the chunks depend on (hashable: the per-process cache key)."""
        request = self.request
        return (
            request.task,
            self.input_shape[0],
            self.output_shape[0],
            self.chunk_slices,
            request.missing,
            request.factor,
            request.slices,
            self.halo,
            self.carry_range,
        )

    def fingerprint(self) -> dict:
        """What identifies the job: a rerun resumes only when this is unchanged."""
        request = self.request
        return to_jsonable(
            {
                "format": JOB_FORMAT,
                "task": request.task,
                "method": request.method,
                "params": self.params,
                "input": str(Path(request.input).resolve()),
                "input_shape": self.input_shape,
                "input_dtype": self.input_dtype,
                "mask": str(Path(request.mask).resolve()) if request.mask else None,
                "control": str(Path(request.control).resolve()) if request.control else None,
                "missing": request.missing,
                "factor": request.factor,
                "slices": request.slices,
                "chunk_slices": self.chunk_slices,
                "output_shape": self.output_shape,
                "output_dtype": self.output_dtype,
                "inputs_content": [list(pair) for pair in self.inputs_content],
                # only when chosen, so that stores begun before series existed still resume
                **({"series": request.series} if request.series is not None else {}),
            }
        )


@functools.lru_cache(maxsize=8)
def _chunks_of(geometry: tuple) -> tuple[list[Chunk], dict | None]:
    task, depth, n_out, chunk_slices, missing, factor, slices, halo, carry_range = geometry
    bounds = chunk_bounds(n_out, chunk_slices)
    if task == "interpolate":
        chunks, _, plan = plan_interpolation_chunks(
            depth, bounds, missing=missing, factor=factor, halo=halo, carry_range=carry_range
        )
        return chunks, plan
    chunks = plan_slice_chunks(depth, bounds, slices=slices, halo=halo, carry_range=carry_range)
    return chunks, None


# --------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------


def _check_companion(path: str | None, name: str, shape: tuple[int, ...], allow_2d: bool):
    if path is None:
        return
    from ..core.io import read_volume
    from ..core.io.zarr_read import refuse_missing_chunks

    companion = read_volume(path, lazy=True, labels=name == "mask")
    refuse_missing_chunks(companion, name)
    ok = companion.shape == shape or (allow_2d and companion.shape == shape[1:])
    if not ok:
        raise InvalidInputError(
            f"{name} {path} has shape {companion.shape} but the input has {shape}"
            + (" (or one slice of it)" if allow_2d else "")
        )


def job_inputs(request: BatchRequest, params: Any = None) -> list[str]:
    """Every file or folder a job reads: its volumes and the paths among its parameters.

    Weights files, adapters and checkpoints named by a parameter count as inputs too, so
    that no output store is ever made around or inside one.
    """
    found = [p for p in (request.input, request.mask, request.control) if p]
    for name in getattr(type(params), "__dataclass_fields__", {}):
        value = getattr(params, name, None)
        if isinstance(value, (str, os.PathLike)) and str(value) and os.path.exists(value):
            found.append(str(value))
    return found


def plan_batch(request: BatchRequest) -> BatchJob:
    """Check a request and plan its chunks (reads only the inputs' metadata).

    Raises
    ------
    InvalidInputError
        Unknown task or method, a task without volume output, missing extras, a
        non-zarr output, an output that is, contains or lies inside an input (or is a
        symbolic link), a 2D input, mismatched shapes, bad indices or params.
    """
    from .. import api
    from ..core.indices import check_indices
    from ..core.io import is_zarr_path, read_volume
    from ..core.io.identity import content_identity
    from ..core.io.outputs import check_output_location
    from ..core.io.zarr_read import refuse_missing_chunks
    from ..core.io.zarr_store import slice_chunks
    from ..engines.registry import get_engine

    task = request.task
    if task not in BATCH_TASKS:
        raise InvalidInputError(
            f"batch runs the {', '.join(BATCH_TASKS)} engines; {task!r} does not map a "
            "volume to a volume slice by slice"
        )
    engine = get_engine(task, request.method)
    missing_extras = engine.missing_extras()
    if missing_extras:
        engine.load()  # raises ImportError naming what to install
    params = api.engine_params(task, request.method, request.params)
    if not is_zarr_path(request.output):
        raise InvalidInputError(
            f"{request.output}: a batch job writes an OME-Zarr store; name it *.ome.zarr"
        )
    inputs = job_inputs(request, params)
    check_output_location(request.output, inputs, store=True)
    volume = read_volume(request.input, lazy=True, series=request.series)
    refuse_missing_chunks(volume)
    shape = volume.shape
    if len(shape) != 3 or volume.channel_axis is not None:
        raise InvalidInputError(
            f"{request.input} has shape {shape}; batch jobs process one 3D (Z, Y, X) volume"
        )
    if task == "interpolate":
        if (request.missing is None) == (request.factor is None):
            raise InvalidInputError("interpolation needs exactly one of missing and factor")
        if request.missing is not None:
            request = replace(
                request, missing=tuple(sorted(check_indices(request.missing, n=shape[0])))
            )
        if request.mask or request.control or request.slices is not None:
            raise InvalidInputError("interpolation takes no mask, control or slices")
    else:
        if request.missing is not None or request.factor is not None:
            raise InvalidInputError(f"{task} takes no missing slices or factor")
        if request.slices is not None:
            request = replace(
                request,
                slices=tuple(sorted(set(check_indices(request.slices, name="slices", n=shape[0])))),
            )
        if task == "inpaint" and request.mask is None:
            raise InvalidInputError("inpainting needs a mask volume")
        if request.mask is not None and task not in ("inpaint", "edit"):
            raise InvalidInputError(f"{task} takes no mask")
        if request.control is not None and "control" not in engine.inputs:
            raise InvalidInputError(f"the {request.method} {task} engine takes no control input")
    _check_companion(request.mask, "mask", shape, allow_2d=True)
    _check_companion(request.control, "control", shape, allow_2d=False)

    output_dtype = np.dtype(np.uint8) if task == "mask" else volume.dtype
    voxel_size = tuple(volume.voxel_size)
    if request.factor is not None:
        voxel_size = (voxel_size[0] / int(request.factor), *voxel_size[1:])
    carry_range = engine.deterministic and (
        (task == "interpolate" and request.missing is not None)
        or (task in PER_SLICE_TASKS and engine.halo == 0)
    )
    draft = BatchJob(
        inputs_content=tuple(
            (str(Path(p).expanduser().resolve()), content_identity(p)) for p in inputs
        ),
        request=replace(request, params=None),
        params=params,
        input_shape=shape,
        input_dtype=volume.dtype.name,
        output_shape=shape,
        output_dtype=output_dtype.name,
        voxel_size=voxel_size,
        unit=volume.unit,
        kind="labels" if task == "mask" else "image",
        store_chunk_slices=1,
        chunk_slices=1,
        halo=int(engine.halo),
        deterministic=bool(engine.deterministic),
        carry_range=bool(carry_range),
    )
    n_out = shape[0]
    if task == "interpolate":
        from ..engines.interpolation.plan import plan_slices

        if request.factor is not None:  # the size checks of one process, before planning
            # an uncertainty image (float32, the output's grid) may be written beside it
            maybe_uncertainty = engine.outputs_uncertainty and getattr(params, "uncertainty", False)
            _check_factor(
                request.factor,
                shape,
                output_dtype,
                request.output,
                extra_itemsize=4 if maybe_uncertainty else 0,
            )
        n_out = plan_slices(shape[0], missing=request.missing, factor=request.factor).n_out
    output_shape = (n_out, *shape[1:])
    store_chunk = slice_chunks(output_shape, output_dtype)[0]
    learns = bool(engine.learns_from_input)
    fit_once = learns and engine.chunk_invariant
    default = store_chunk
    if learns and not fit_once:  # trains on what it is given: one task by default
        default = n_out
    elif fit_once and task == "interpolate":
        default = fitted_chunk_slices(output_shape, store_chunk)
    if request.chunk_slices is not None and (
        isinstance(request.chunk_slices, bool) or int(request.chunk_slices) < 1
    ):
        raise ParameterError("chunk_slices", f"must be >= 1, got {request.chunk_slices!r}")
    wanted = int(request.chunk_slices or default)
    store_chunk = min(store_chunk, wanted)  # smaller tasks: smaller stored chunks
    chunk_slices = -(-wanted // store_chunk) * store_chunk
    n_chunks = -(-n_out // chunk_slices)
    return replace(
        draft,
        output_shape=output_shape,
        store_chunk_slices=store_chunk,
        chunk_slices=chunk_slices,
        learns_from_input=learns,
        fit_once=fit_once and n_chunks > 1,
        note=_chunking_note(engine, n_chunks, learns, fit_once),
    )


def fitted_chunk_slices(output_shape: tuple[int, ...], store_chunk: int) -> int:
    """Default output slices per task of a learned interpolation trained once.

    One process fills the output rows slab by slab, each slab as tall as the core of the
    CPU tiles (:func:`~napari_scigen.engines.learned.tiles.core_sizes`) and read with
    :data:`~napari_scigen.engines.learned.tiles.HALO` rows on each side. A chunk of the
    whole stored chunks that fit in one such tile costs one slab, as in one process; a
    taller one pays an extra, nearly empty slab, and a shorter one more halo. At
    600 x 256^2, factor 2, counted in network input pixels: 192-slice chunks (the former
    default) 14 % more than one process, 288-slice ones (this default) 2 % more, as two
    608-slice chunks, but in five tasks that share out evenly. The chunks follow the
    CPU tiles; GPU workers tile whole planes, so there each chunk re-reads its halo
    (about 90 rows) where one process would not.

    Parameters
    ----------
    output_shape : tuple of int
        ``(Z, Y, X)`` of the output.
    store_chunk : int
        Slices per stored chunk of the output.

    Returns
    -------
    int
        Whole stored chunks, at most the tiles' core rows (288 of 256-pixel planes,
        about 220 of 600-2048-pixel ones); at least :data:`SMALL_JOB_SLICES` or half the
        output, so that a job splits in two or more tasks where the former default did.
    """
    from ..engines.learned.tiles import BATCH_PIXELS, core_sizes

    budget = BATCH_PIXELS["cpu"]
    # an image ``budget`` rows tall never fits one tile (planes >= 4 wide): a tall one's cores
    rows = core_sizes(budget, max(output_shape[1:]), budget)[0]
    in_one_tile = max(store_chunk, rows // store_chunk * store_chunk)
    half = -(-output_shape[0] // 2)
    half = -(-half // store_chunk) * store_chunk  # two tasks at least...
    return min(in_one_tile, max(half, SMALL_JOB_SLICES))  # ...unless the job is small


#: Output slices of a learned interpolation job too small to split by default (the
#: former fixed default chunk).
SMALL_JOB_SLICES = 192


def _chunking_note(engine, n_chunks: int, learns: bool, fit_once: bool) -> str | None:
    """What the chunking does to the result (one line), None when it changes nothing."""
    if fit_once:
        if n_chunks == 1:
            return None
        same = (
            "equal to one process bit for bit"
            if engine.task != "interpolate"
            else "equal to one process within one grey level (float32 rounding of other tiles)"
        )
        return (
            f"the {engine.name} engine is trained once on the whole volume, then its weights "
            f"are shipped to the {n_chunks} chunks: {same}"
        )
    if learns:
        return _learned_note(engine.name, n_chunks)
    if not engine.chunk_invariant and n_chunks > 1:
        return (
            f"warning: the {engine.task} engine {engine.name} is not chunk-invariant: its "
            f"result depends on the chunking ({n_chunks} chunks; chunk_slices=N larger than "
            "the output makes it one task)"
        )
    return None


#: At most this many output slices per job (a larger factor is a typing error).
MAX_OUTPUT_SLICES = 1_000_000


def _check_factor(
    factor, shape: tuple[int, ...], dtype, output: str, *, extra_itemsize: int = 0
) -> None:
    """Refuse an upsampling factor whose output cannot be planned or stored.

    ``extra_itemsize``: bytes per output voxel of a second image written beside the
    output (4: a float32 uncertainty image), counted in the disk check.

    Raises
    ------
    InvalidInputError
        Not an integer >= 2; more than :data:`MAX_OUTPUT_SLICES` output slices; more
        bytes (uncompressed) than the output's disk has free.
    """
    import math
    import shutil

    from ..core.indices import is_index
    from ..core.io.memory import format_bytes

    if not is_index(factor) or factor < 2:
        raise ParameterError("factor", f"must be an integer >= 2, got {factor!r}")
    n_out = (shape[0] - 1) * int(factor) + 1
    if n_out > MAX_OUTPUT_SLICES:
        raise InvalidInputError(
            f"factor={factor} makes {n_out:,} output slices (more than "
            f"{MAX_OUTPUT_SLICES:,}): choose a smaller factor",
            options=["factor"],
        )
    nbytes = n_out * math.prod(shape[1:]) * (np.dtype(dtype).itemsize + extra_itemsize)
    folder = Path(output).expanduser().resolve().parent
    try:
        free = shutil.disk_usage(folder).free if folder.is_dir() else None
    except OSError:
        free = None
    if free is not None and nbytes > free:
        raise InvalidInputError(
            f"factor={factor} makes an output of {format_bytes(nbytes)} (uncompressed"
            + (", with its float32 uncertainty image" if extra_itemsize else "")
            + f") but "
            f"{folder} has only {format_bytes(free)} free: choose a smaller factor or "
            "write to a larger disk",
            options=["factor"],
        )


def _learned_note(method: str, n_chunks: int) -> str:
    if n_chunks == 1:
        return (
            f"the {method} engine learns from the whole volume, so the job is one task over "
            "the whole volume (equal to one process for the same seed, step budget and "
            "threads); chunk_slices=N splits it, each chunk then learning on its own"
        )
    return (
        f"the {method} engine learns from the volume it is given: each of the {n_chunks} "
        "chunks trains its own network and takes its own intensity window, so the result "
        "depends on the chunking (without chunk_slices=N the job is one task over the "
        "whole volume)"
    )
