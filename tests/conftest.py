"""Shared fixtures. Widget tests live in tests/_qt and use napari's make_napari_viewer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep torch from fighting over the 2 CI cores and never let tests reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

#: ../shared/data beside the project root; tests that use it are skipped when absent.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """Path to the real microCT volumes in ../shared/data (skip when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="module")
def reliability_template(tmp_path_factory) -> Path:
    """The bad-input tables' input files (``_reliability.make_inputs``), once per module."""
    pytest.importorskip("zarr", minversion="3")
    from _reliability import make_inputs

    d = tmp_path_factory.mktemp("reliability_template") / "in"
    d.mkdir()
    make_inputs(d)
    return d


@pytest.fixture
def inputs(reliability_template, tmp_path) -> Path:
    """A fresh copy of the bad-input tables' input files (tests/test_reliability_*.py;
    ``_reliability.run_case`` checks they are unchanged). Modules with their own inputs
    (tests/test_bad_inputs.py) define their own ``inputs``."""
    from _reliability import copy_inputs

    return copy_inputs(reliability_template, tmp_path / "in")


def pytest_configure(config):
    """Load triton (through torch._dynamo) before any test opens an OpenGL context.

    triton links its own LLVM; loading it after Mesa's libLLVM (napari's canvas under
    Xvfb) segfaults the process, e.g. a StyleGAN test (torch.optim imports triton) run
    after a widget test. See napari_scigen._qt._llvm_guard.
    """
    try:
        import torch._dynamo  # noqa: F401
    except ImportError:
        pass


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` when no CUDA device is visible."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in gpu_items:
            item.add_marker(skip)
