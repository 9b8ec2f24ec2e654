"""An engine registered by the tests (one registration, like a plugin's), removed afterwards."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from napari_scigen.core.params import EngineParams, param
from napari_scigen.core.progress import Progress
from napari_scigen.core.provenance import make_provenance
from napari_scigen.core.result import EngineResult
from napari_scigen.engines import registry


@dataclass(frozen=True)
class ConstantParams(EngineParams):
    """A sampler registered by the tests: slices of one grey value."""

    count: int = param(2, help="number of slices", min=1)
    value: float = param(7.0, help="the grey value of every slice")


def run_constant(params=ConstantParams(), *, cancel=None):
    """The ``sample`` task's signature: ``run(params, *, cancel=None)``."""
    yield Progress(1, 1, "constant slices")
    data = np.full((params.count, 4, 4), params.value, np.float32)
    return EngineResult(data=data, provenance=make_provenance("sample-constant", params))


@contextlib.contextmanager
def registered_constant_sampler():
    """``sample/constant`` registered while the block runs (the only line a new engine adds)."""
    engine = registry.register(
        registry.Engine(
            "sample",
            "constant",
            f"{__name__}:ConstantParams",
            f"{__name__}:run_constant",
            "slices of one grey value (a test engine)",
        )
    )
    try:
        yield engine
    finally:
        registry._REGISTRY.pop(engine.key)
