"""Tiled, bounded-memory application of the residual U-Net to large 2D images.

The network of :mod:`.networks` is local: an output pixel depends only on the input
pixels within its *receptive radius* (:func:`receptive_radius`, 42 pixels for the
three-level U-Net). So an image can be cut into tiles whose *cores* partition it, each
tile read with a :data:`HALO` of at least that radius around its core, and the cores of
the outputs pasted together give the whole-image output. Two details make the result
bit-identical to one call on the whole image (tested in ``tests/test_learned_inference.py``):

* the network downsamples twice by stride 2, so a tile's input must start at a multiple
  of 4 (the halo is a multiple of 4 and tile inputs are aligned down to 4): its strided
  grids then coincide with the whole image's;
* the network pads an image to a multiple of 4 at its end (right and bottom). A tile
  that reaches the end of the image therefore has the same padding as the whole image,
  and an interior tile's input is a multiple of 4 long (no padding).

Test-time flips are handled in the flipped frame: the image is flipped, tiled with
the same rules *in the flipped coordinates* (so its alignment and end padding are those
of the flipped whole image) and the output flipped back.

:func:`fuse` accumulates the predictions of planes and flips in place (Welford's running
mean and sum of squared deviations, float32). Torch is imported inside functions only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Multiple of which a tile's input must start (two stride-2 downsamplings).
ALIGN = 4
#: Smallest pixel budget per network call before giving up on the GPU after repeated OOM.
MIN_BATCH_PIXELS = 4096
#: Input pixels per network call (CPU, GPU); the GPU figure is capped by free memory.
#: On 2 CPU cores ~100 k pixels ran fastest (larger batches fault in fresh pages).
BATCH_PIXELS = {"cpu": 98_304, "gpu": 16_000_000}
#: Device bytes per input pixel assumed when sizing GPU batches (24 base channels,
#: half-precision activations, with room to spare; an OOM halves the batch anyway).
GPU_BYTES_PER_PIXEL = 1024


def receptive_radius(levels: int = 3, convs_per_block: int = 2) -> int:
    """Radius (input pixels) of the receptive field of :class:`~.networks.ResidualUNet`.

    Walks the architecture: the stem (one 3x3 conv), a residual block per level on the
    way down (``convs_per_block`` convs), a stride-2 3x3 conv between levels, two
    residual blocks at the bottom, and on the way up per level: bilinear upsampling by 2
    (one coarse pixel), a merging 3x3 conv and a residual block, then the 3x3 head. A
    3x3 conv at a level whose pixels are ``s`` input pixels apart adds ``s``.

    Returns
    -------
    int
        42 for the default three levels (checked against the gradient support in the
        tests).
    """
    radius, step = 1, 1  # stem
    radius += convs_per_block * step  # level 1
    for _ in range(levels - 1):
        radius += step  # stride-2 conv (centred on the finer grid)
        step *= 2
        if _ < levels - 2:
            radius += convs_per_block * step  # residual block of the middle levels
    radius += 2 * convs_per_block * step  # two residual blocks at the bottom
    for _ in range(levels - 1):
        radius += step  # bilinear upsampling: one coarse pixel
        step //= 2
        radius += step + convs_per_block * step  # merge conv + residual block
    return radius + step  # head


#: Halo read around every tile core: the receptive radius rounded up to :data:`ALIGN`.
HALO = -(-receptive_radius() // ALIGN) * ALIGN


@dataclass(frozen=True)
class Span:
    """One tile along one axis, in the image's own (unflipped) coordinates.

    Attributes
    ----------
    core : slice
        Output positions this tile provides.
    read : slice
        Input positions it reads (the core and its halo, aligned in the network's frame).
    """

    core: slice
    read: slice

    @property
    def crop(self) -> slice:
        """The core inside the tile's output."""
        return slice(self.core.start - self.read.start, self.core.stop - self.read.start)


def span(length: int, core: tuple[int, int], halo: int, flip: bool) -> Span:
    """The input to read for output ``core`` of an axis of ``length`` (see module doc)."""
    start, stop = core
    if flip:
        start, stop = length - stop, length - start
    first = max(0, (start - halo) // ALIGN * ALIGN)
    last = min(length, first + -(-(stop + halo - first) // ALIGN) * ALIGN)
    if flip:
        first, last = length - last, length - first
    return Span(slice(*core), slice(first, last))


def cores(length: int, size: int) -> list[tuple[int, int]]:
    """Cut ``[0, length)`` into cores of at most ``size`` (a multiple of 4 unless whole)."""
    if size >= length:
        return [(0, length)]
    size = max(ALIGN, size // ALIGN * ALIGN)
    return [(i, min(length, i + size)) for i in range(0, length, size)]


def core_sizes(height: int, width: int, batch_pixels: int, halo: int = HALO) -> tuple[int, int]:
    """Core ``(height, width)`` of tiles whose input fits ``batch_pixels`` pixels.

    The whole image when it fits; else full rows of fewer lines when that keeps at least
    ``2 * halo`` lines per core; else square cores.
    """
    if height * width <= batch_pixels or min(height, width) < ALIGN:
        return height, width
    lines = batch_pixels // width - 2 * halo
    if lines >= 2 * halo:
        return lines // ALIGN * ALIGN, width
    side = max(ALIGN, (int(np.sqrt(batch_pixels)) - 2 * halo) // ALIGN * ALIGN)
    return min(height, side), min(width, side)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a device out-of-memory error (CUDA, or its RuntimeError form)."""
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(error, oom):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def default_batch_pixels(device: str) -> int:
    """Input pixels per network call: a CPU constant, or sized from free GPU memory."""
    if not device.startswith("cuda"):
        return BATCH_PIXELS["cpu"]
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(max(MIN_BATCH_PIXELS, min(BATCH_PIXELS["gpu"], free // 2 // GPU_BYTES_PER_PIXEL)))


def shrink(network, state: dict, label: str) -> str:
    """React to an out-of-memory error: halve ``state["budget"]``, or leave the GPU.

    ``state`` holds the ``device`` and the ``budget`` (input pixels per call). Below
    :data:`MIN_BATCH_PIXELS` on a GPU the network moves to the CPU; on the CPU a
    :class:`MemoryError` is raised. Returns the message to show.
    """
    release_memory(state["device"])
    if state["budget"] > MIN_BATCH_PIXELS:
        state["budget"] = max(MIN_BATCH_PIXELS, state["budget"] // 2)
        return (
            f"out of memory on {state['device']}: retrying with {state['budget']} pixels per batch"
        )
    if state["device"] != "cpu":
        network.to("cpu")
        state["device"], state["budget"] = "cpu", BATCH_PIXELS["cpu"]
        return "out of memory on the GPU even for small tiles: continuing on the CPU"
    raise MemoryError(f"{label}: out of memory even for {MIN_BATCH_PIXELS}-pixel batches")


def release_memory(device: str) -> None:
    """Return cached device memory after an out-of-memory error."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def apply(
    network: Callable,
    inputs: np.ndarray,
    flip: tuple[bool, bool],
    device: str,
    precision: str = "float32",
):
    """``inputs[:, :1] + network(inputs)`` for ``(n, C, h, w)`` inputs seen flipped.

    The image is flipped along its rows (``flip[0]``) and/or columns (``flip[1]``),
    run through ``network`` (channels-last, which oneDNN runs about twice as fast on a
    CPU; bf16/fp16 autocast on CUDA; on a CPU bfloat16 autocast only with
    ``precision="bfloat16"``), and the result flipped back: float32 ``(n, h, w)`` on
    the CPU.
    """
    import torch

    from .training import autocast

    dims = [d for d, on in ((2, flip[0]), (3, flip[1])) if on]
    with torch.inference_mode():
        x = torch.from_numpy(inputs).to(device)
        if dims:
            x = x.flip(dims)
        x = x.contiguous(memory_format=torch.channels_last)
        if precision == "bfloat16" and not device.startswith("cuda"):
            context = torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        else:
            context = autocast(device)
        with context:
            residual = network(x).float()
        values = (x[:, :1] + residual)[:, 0]
        if dims:
            values = values.flip([d - 1 for d in dims])
        return values.cpu().numpy()


def prepare(network) -> None:
    """Ready a process and a network for many calls.

    The module's weights go to channels-last layout (in place; no effect on its
    values), and glibc is told to keep freed memory (:func:`keep_freed_memory`).
    """
    import torch

    if hasattr(network, "to"):
        network.to(memory_format=torch.channels_last)
    keep_freed_memory()


#: glibc settings of :func:`keep_freed_memory` (the values batch workers get through
#: ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in workflows/_batch_cluster.py).
MALLOC_SETTINGS = {"mmap_threshold": 64 * 2**20, "trim_threshold": 256 * 2**20}
#: glibc's top pad while tiles run side by side (:func:`keep_arena_heaps`).
TOP_PAD = 64 * 2**20


def keep_freed_memory() -> bool:
    """Stop glibc from unmapping and trimming the tensors of every network call.

    A forward pass allocates tensors of tens of MiB; with glibc's default thresholds
    they are mapped, freed to the kernel and faulted in again on every call (measured:
    37 million minor page faults and 66 s of system time in a 204 s float32 inference).
    Sets :data:`MALLOC_SETTINGS` once per process with ``mallopt``, unless the
    environment already chose (``MALLOC_MMAP_THRESHOLD_``); elsewhere than glibc it does
    nothing. Returns whether the settings are in force.
    """
    import os

    global _MALLOC_DONE
    if _MALLOC_DONE is not None:
        return _MALLOC_DONE
    _MALLOC_DONE = False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    mmap_ok = _mallopt(-3, MALLOC_SETTINGS["mmap_threshold"])  # M_MMAP_THRESHOLD
    trim_ok = _mallopt(-1, MALLOC_SETTINGS["trim_threshold"])  # M_TRIM_THRESHOLD
    _MALLOC_DONE = mmap_ok and trim_ok
    return _MALLOC_DONE


_MALLOC_DONE: bool | None = None


def keep_arena_heaps() -> bool:
    """Stop glibc from deleting the heaps of threads' arenas after every network call.

    Tiles run side by side (``concurrent_tiles``) are computed in threads, and each
    thread allocates from its own glibc arena of 64 MiB heaps. An arena deletes a heap
    that empties whenever less than the *top pad* (128 KiB by default) would remain, so a
    float32 call that needed a second heap mapped it and faulted it in again every time
    (measured: 13.7 million minor faults and 22 s of system time in a 75 s fill of
    150 x 256^2; 0.5 million with a 64 MiB pad). Sets :data:`TOP_PAD` with ``mallopt``
    for the rest of the process, unless ``MALLOC_TOP_PAD_`` chose already; it keeps
    freed memory in every arena (about 70-160 MiB more peak RSS measured, which is why
    it is set only for tiles side by side). Returns whether it is in force.
    """
    import os

    if "MALLOC_TOP_PAD_" in os.environ:
        return False
    return _mallopt(-2, TOP_PAD)  # M_TOP_PAD


def _mallopt(option: int, value: int) -> bool:
    """glibc's ``mallopt(option, value)``; False where it failed or there is no glibc."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(option, value))
    except (OSError, AttributeError):
        return False


def fuse(mean: np.ndarray, m2: np.ndarray, values: np.ndarray, count: int) -> None:
    """Add the ``count``-th prediction ``values`` to running ``mean`` and ``m2`` in place.

    Welford's update in float32: ``count == 1`` overwrites (so a restarted pass needs no
    reset); the variance is ``m2 / n`` at the end. Against a float64 sum and sum of
    squares the mean differs by a few float32 ulps (|diff| < 1e-6 in network units).
    """
    if count == 1:
        mean[...] = values
        m2[...] = 0.0
        return
    delta = values - mean
    mean += delta / np.float32(count)
    m2 += delta * (values - mean)


def finish(m2: np.ndarray, count: int) -> np.ndarray:
    """Turn ``m2`` into the standard deviation over ``count`` predictions, in place."""
    m2 /= np.float32(count)
    np.maximum(m2, 0.0, out=m2)
    return np.sqrt(m2, out=m2)
