"""Which input slices each z-chunk of a batch job reads, and how it calls the engine.

The output volume is cut into z-chunks of whole stored chunks (so that no two tasks
write the same zarr chunk). For each chunk :func:`plan_chunks` derives the engine call
that reproduces, for the chunk's output slices, exactly what one call on the whole
volume would compute:

* **interpolation**: from the :class:`~napari_scigen.engines.interpolation.plan.SlicePlan`
  of the whole volume, the gaps with a synthesized slice in the chunk, widened by the
  engine's ``halo`` kept slices on each side (halo 1 = the nearest kept slice below and
  above). The sub-volume keeps the same missing slices (or the same ``factor``), so each
  gap has the same neighbours and the same fractions ``t`` as in the whole-volume run;
* **per-slice engines** (inpaint, mask, edit, generate): the chunk's slices plus
  ``halo`` context slices on each side, processed with ``slices=`` the chunk's own.

**The value range.** The deterministic engines clip what they synthesize to the input's
own ``[min, max]``. A sub-volume has a narrower range, which would change clipped values
(biharmonic fills can overshoot). So the runner measures the whole input's range once
and carries it into each chunk: a *range slice* whose pixels hold the whole-volume
minimum and maximum, placed where the engine reads it only for its range, never as
data: in one of the sub-volume's missing slots (interpolation, missing-slice mode), or
as an extra slice outside ``slices=`` with an empty mask (per-slice engines without a
halo). Upsampling (``factor``) has no free slot: there the classical engines' blends stay
within the two neighbours anyway, so the clip changes nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.validation import InvalidInputError

#: Tasks whose engines map a volume to a volume slice by slice (or z by z).
PER_SLICE_TASKS = ("inpaint", "mask", "edit", "generate")
#: Every task the batch runner can run.
BATCH_TASKS = ("interpolate", *PER_SLICE_TASKS)


@dataclass(frozen=True)
class Chunk:
    """One task of a batch job: output slices ``[start, stop)`` and how to compute them.

    Attributes
    ----------
    index : int
        Position of the chunk (its done marker is named after it).
    start, stop : int
        Output slices the chunk writes.
    source_start, source_stop : int
        Input slices it reads (``stop`` excluded).
    first_output : int
        Output index of the first slice of the engine's result for the sub-volume.
    missing : tuple of int or None
        Missing slices relative to ``source_start`` (interpolation, missing-slice mode).
    factor : int or None
        z upsampling factor (interpolation, upsampling mode).
    slices : tuple of int or None
        Slices to process, relative to ``source_start`` (per-slice engines).
    range_slot : int or None
        Where the range slice goes (relative); ``-1`` appends it after the sub-volume;
        ``None``: no range slice.
    copy : bool
        Nothing to synthesize: the chunk's output is its input slices.
    """

    index: int
    start: int
    stop: int
    source_start: int
    source_stop: int
    first_output: int
    missing: tuple[int, ...] | None = None
    factor: int | None = None
    slices: tuple[int, ...] | None = None
    range_slot: int | None = None
    copy: bool = False


def chunk_bounds(n_out: int, chunk_slices: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` cutting ``n_out`` slices into runs of ``chunk_slices``."""
    if chunk_slices < 1:
        raise InvalidInputError(f"chunk_slices must be >= 1, got {chunk_slices}")
    return [(z, min(z + chunk_slices, n_out)) for z in range(0, n_out, chunk_slices)]


def plan_interpolation_chunks(
    n_slices: int,
    bounds: Sequence[tuple[int, int]],
    *,
    missing: Sequence[int] | None,
    factor: int | None,
    halo: int,
    carry_range: bool,
) -> tuple[list[Chunk], int, dict]:
    """Chunks of an interpolation job; also the output length and the plan's provenance.

    Parameters
    ----------
    n_slices : int
        Input slices.
    bounds : sequence of (int, int)
        Output ranges of the chunks (see :func:`chunk_bounds`).
    missing, factor
        As for :func:`~napari_scigen.engines.interpolation.plan.plan_slices`.
    halo : int
        Kept slices each chunk needs on each side of its synthesized slices (>= 1).
    carry_range : bool
        Put the range slice into a missing slot (missing-slice mode only).
    """
    from ..engines.interpolation.plan import plan_slices

    plan = plan_slices(n_slices, missing=missing, factor=factor)
    kept_sources = [source for source, _ in plan.kept]
    kept_outputs = [target for _, target in plan.kept]
    position = {source: i for i, source in enumerate(kept_sources)}
    step = plan.factor or 1
    missing_set = set() if factor is not None else set(missing or ())
    halo = max(1, int(halo))
    chunks = []
    for index, (start, stop) in enumerate(bounds):
        gaps = [g for g in plan.gaps if any(start <= t < stop for t, _ in g.targets)]
        if not gaps:  # kept slices only: copy them
            first = bisect.bisect_left(kept_outputs, start)
            last = bisect.bisect_left(kept_outputs, stop)
            sources = kept_sources[first:last]
            chunks.append(Chunk(index, start, stop, sources[0], sources[-1] + 1, start, copy=True))
            continue
        low_position, high_position = position[gaps[0].below], position[gaps[-1].above]
        low = kept_sources[max(0, low_position - (halo - 1))]
        high = kept_sources[min(len(kept_sources) - 1, high_position + (halo - 1))]
        # kept slices of the chunk outside its gaps are copied by the engine too
        low = min(low, -(-start // step)) if factor is not None else min(low, start)
        high = max(high, (stop - 1) // step) if factor is not None else max(high, stop - 1)
        if factor is not None:
            chunks.append(Chunk(index, start, stop, low, high + 1, low * step, factor=int(factor)))
            continue
        relative = tuple(z - low for z in sorted(missing_set) if low < z < high)
        chunks.append(
            Chunk(
                index,
                start,
                stop,
                low,
                high + 1,
                low,
                missing=relative,
                range_slot=relative[0] if carry_range else None,
            )
        )
    return chunks, plan.n_out, plan.provenance()


def plan_slice_chunks(
    n_slices: int,
    bounds: Sequence[tuple[int, int]],
    *,
    slices: Sequence[int] | None,
    halo: int,
    carry_range: bool,
) -> list[Chunk]:
    """Chunks of a per-slice job (output slice ``z`` is input slice ``z``).

    Parameters
    ----------
    n_slices : int
        Input slices.
    bounds : sequence of (int, int)
        Output ranges of the chunks.
    slices : sequence of int, optional
        Slices to process (default all); the others are copied.
    halo : int
        Context slices read on each side of a chunk (not processed).
    carry_range : bool
        Append the range slice (only without a halo: a context engine would see it).
    """
    chosen = set(range(n_slices)) if slices is None else {int(z) for z in slices}
    chunks = []
    for index, (start, stop) in enumerate(bounds):
        low, high = max(0, start - halo), min(n_slices, stop + halo)
        mine = tuple(z - low for z in range(start, stop) if z in chosen)
        chunks.append(
            Chunk(
                index,
                start,
                stop,
                low,
                high,
                low,
                slices=mine,
                range_slot=-1 if carry_range and halo == 0 and mine else None,
                copy=not mine,
            )
        )
    return chunks


def range_slice(shape: tuple[int, int], dtype, value_range: tuple[float, float]) -> np.ndarray:
    """A slice holding the whole volume's minimum (first half) and maximum (second half)."""
    low, high = value_range
    plane = np.empty(shape, dtype=dtype)
    flat = plane.reshape(-1)
    flat[: max(1, flat.size // 2)] = np.asarray(low).astype(dtype)
    flat[max(1, flat.size // 2) :] = np.asarray(high).astype(dtype)
    return plane
