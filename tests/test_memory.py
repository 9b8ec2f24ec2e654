"""Returning freed heap memory to the operating system (issue 19)."""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

from napari_scigen.core.memory import release_free_memory


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(
    not GLIBC or "MALLOC_MMAP_THRESHOLD_" in os.environ,
    reason="glibc's malloc_trim, with its own mmap threshold",
)
def test_freed_heap_blocks_go_back_to_the_system_after_a_release():
    warm = np.ones(4 * 2**20 // 8)  # freeing a 4 MiB mapping raises glibc's mmap threshold:
    del warm  # the 1 MiB blocks below then come from the heap, as activations and tiles do
    blocks = [np.ones(2**20 // 8) for _ in range(200)]
    keep = blocks.pop()  # the last block pins the heap's top: no automatic trim
    del blocks
    before = _rss_mib()
    assert release_free_memory() is True
    assert before - _rss_mib() > 100  # ~199 MiB held by the process, then given back
    assert keep.sum() == 2**17  # what is still used is untouched


def test_release_trims_with_glibc_and_does_nothing_with_other_c_libraries():
    assert release_free_memory() is GLIBC
    assert release_free_memory() is GLIBC  # again: nothing left to give, no harm


_THREAD_HEAPS = """
import resource, sys, threading
import numpy as np
from napari_scigen.engines.learned.tiles import keep_arena_heaps, keep_freed_memory

keep_freed_memory()
if sys.argv[1] == "kept":
    assert keep_arena_heaps()
faults = []

def call():  # like a network call side by side: a thread of its own, so an arena of its own
    first = np.empty(40 * 2**20 // 8)
    first.fill(1)  # the arena's first 64 MiB heap
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        second = np.empty(40 * 2**20 // 8)
        second.fill(1)  # does not fit beside the first: a second heap
        del second
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

thread = threading.Thread(target=call)
thread.start()
thread.join()
print(max(faults[1:]))
"""


@pytest.mark.skipif(
    not GLIBC
    or platform.system() != "Linux"
    or "MALLOC_TOP_PAD_" in os.environ
    or "MALLOC_MMAP_THRESHOLD_" in os.environ,
    reason="glibc's per-thread arenas, with our own top pad",
)
def test_with_tiles_side_by_side_a_thread_reuses_the_heap_its_last_call_freed():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _THREAD_HEAPS, "kept"], capture_output=True, text=True, check=True
    )
    # a kept heap takes no fault; a new one faults its pages in again (measured without the
    # pad: 532 faults per call with transparent huge pages, 10,240 4 KiB pages without)
    assert int(done.stdout.strip()) < 100
