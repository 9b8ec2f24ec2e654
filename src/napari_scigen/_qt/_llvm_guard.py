"""Keep torch's triton from crashing napari on Mesa OpenGL (Linux).

Worker code must never import triton after Mesa's ``libLLVM`` is loaded: see
:func:`avoid_triton_llvm_clash`. :func:`napari_scigen._qt._runner.start_job` calls it
on the GUI thread before every job, so every widget is covered.
"""

from __future__ import annotations

import sys


def _system_llvm_loaded() -> bool:
    """Whether a shared ``libLLVM`` (e.g. Mesa's OpenGL driver) is mapped into this process."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("libLLVM" in line for line in maps)
    except OSError:
        return False


def avoid_triton_llvm_clash() -> bool:
    """Stop torch from importing triton when a system LLVM is already loaded (Linux).

    triton links its own LLVM; importing it after Mesa's ``libLLVM`` (llvmpipe under
    Xvfb/VNC, radeonsi, ...), which napari's OpenGL canvas loads, segfaults the whole
    process. torch imports triton with ``torch._dynamo``, which every ``torch.optim``
    optimizer imports, so StyleGAN training would crash napari. When triton is not
    imported yet and a ``libLLVM`` is mapped, triton is marked unavailable
    (``sys.modules["triton"] = None``): torch then runs without it (only
    ``torch.compile`` GPU kernels are lost in this process). Importing triton before
    the OpenGL context exists avoids the clash altogether.

    Returns
    -------
    bool
        Whether triton was marked unavailable by this call.
    """
    if not sys.platform.startswith("linux") or "triton" in sys.modules:
        return False
    if not _system_llvm_loaded():
        return False
    sys.modules["triton"] = None
    return True
