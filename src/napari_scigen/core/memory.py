"""Hand the memory a finished phase freed back to the operating system.

glibc keeps freed heap memory of mid-sized blocks (network activations, tile buffers)
for reuse instead of returning it; after the training and self-validation of a learned
engine that is some hundreds of MiB the long fill that follows does not reuse (it
allocates its output and uncertainty image besides). :func:`release_free_memory` trims
every heap arena (``malloc_trim(0)``); elsewhere (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import sys


@functools.lru_cache(maxsize=1)
def _trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the free pages of the C heap to the operating system.

    Returns
    -------
    bool
        True when the C library could trim (glibc), False where there is nothing to do.
    """
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True
