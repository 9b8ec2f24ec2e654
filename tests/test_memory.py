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
