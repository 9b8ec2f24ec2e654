"""Refuse an allocation that cannot fit before making it, with a message that says why.

A TIFF header can declare any size (a 139-byte deflate file may claim 100000 x 100000
pixels), and a few options multiply sizes (z upsampling by a large factor). Before
such data are read or computed, :func:`check_fits_in_memory` compares the bytes they
need with the memory available now (``psutil`` when installed, else
``/proc/meminfo``; no check where neither says) and raises
:class:`NotEnoughMemoryError`, an
:class:`~napari_scigen.core.validation.InvalidInputError`, instead of letting NumPy
raise a ``MemoryError`` half-way or the system kill the process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from napari_scigen.core.validation import InvalidInputError

#: What to try when a volume does not fit (appended to every refusal).
LARGE_DATA_HINT = (
    "crop it or work on fewer slices, use a machine with more memory, or read it lazily "
    "and process it in parts (the batch workflow)"
)

#: What to try when a result (e.g. z upsampling by a large factor) would not fit.
OUTPUT_TOO_LARGE_HINT = (
    "choose a smaller upsampling factor or fewer slices, or crop the volume first"
)


class NotEnoughMemoryError(InvalidInputError):
    """Data would not fit into the memory available; nothing was allocated."""


def _system_available() -> int | None:
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return int(psutil.virtual_memory().available)
        except (OSError, RuntimeError, AttributeError):
            pass
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_left() -> int | None:
    """What an address-space limit (``ulimit -v``) still allows this process, if one is set."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm", encoding="ascii") as handle:
            used = int(handle.read().split()[0]) * resource.getpagesize()
        return max(0, soft - used)
    except (ImportError, OSError, ValueError, IndexError, AttributeError):
        return None


def available_memory_bytes() -> int | None:
    """Bytes of memory available to new allocations now, or ``None`` if unknown.

    ``psutil.virtual_memory().available`` when psutil is installed, otherwise
    ``MemAvailable`` from ``/proc/meminfo`` (Linux), lowered to what an address-space
    limit (``ulimit -v``) leaves; ``None`` when nothing says.
    """
    known = [n for n in (_system_available(), _address_space_left()) if n is not None]
    return min(known) if known else None


def format_bytes(nbytes: float) -> str:
    """``1536`` -> ``'1.5 KiB'``; binary units up to TiB."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def array_nbytes(shape: Sequence[int], dtype) -> int:
    """Bytes of an array of ``shape`` and ``dtype`` (no allocation)."""
    return math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize


def check_fits_in_memory(nbytes: int, what: str, *, hint: str = LARGE_DATA_HINT) -> None:
    """Raise :class:`NotEnoughMemoryError` when ``nbytes`` exceed the available memory.

    Parameters
    ----------
    nbytes : int
        Bytes the operation needs (an estimate; include copies it makes).
    what : str
        What needs them, for the message (``"scan.tif (5000 x 1024 x 1024 uint16)"``).
    hint : str
        What the user can do instead.

    Raises
    ------
    NotEnoughMemoryError
        Naming both sizes and the hint. Nothing is raised when the available memory
        is unknown.
    """
    available = available_memory_bytes()
    if available is None or nbytes <= available:
        return
    raise NotEnoughMemoryError(
        f"{what} needs about {format_bytes(nbytes)} of memory but only "
        f"{format_bytes(available)} are available: {hint}"
    )


def check_array_fits(
    shape: Sequence[int], dtype, what: str, *, hint: str = LARGE_DATA_HINT
) -> None:
    """Refuse to allocate an array of ``shape`` and ``dtype`` that cannot fit into memory.

    Parameters
    ----------
    shape : sequence of int
        Shape of the array about to be allocated.
    dtype : numpy dtype
        Its dtype.
    what : str
        What the array is, for the message (``"the output volume"``).
    hint : str
        What the user can do instead.

    Raises
    ------
    NotEnoughMemoryError
        See :func:`check_fits_in_memory`.
    """
    described = f"{what} ({' x '.join(str(int(n)) for n in shape)} {np.dtype(dtype)})"
    check_fits_in_memory(array_nbytes(shape, dtype), described, hint=hint)


def check_upsampled_fits(volume: np.ndarray, factor) -> None:
    """Refuse z upsampling of ``volume`` by ``factor`` when the result cannot fit into memory.

    ``n`` slices become ``floor((n - 1) * factor) + 1``; a factor that is not a valid z
    upsampling factor is left to the engine's own checks.

    Raises
    ------
    NotEnoughMemoryError
    """
    from ..upsampling import upsampled_length

    try:
        n_out = upsampled_length(volume.shape[0], factor)
    except InvalidInputError:  # a bad factor: the engine's own check says why
        return
    shape = (n_out, *volume.shape[1:])
    check_array_fits(shape, volume.dtype, "the upsampled volume", hint=OUTPUT_TOO_LARGE_HINT)
