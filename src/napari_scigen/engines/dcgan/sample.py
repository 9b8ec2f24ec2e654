"""New random slices from a trained DCGAN (task ``sample``, method ``dcgan``)."""

from __future__ import annotations

from collections.abc import Generator as PyGenerator

import numpy as np

from ...core.models import ModelNotAvailableError
from ...core.progress import CancelToken, Progress, check_cancelled
from ...core.provenance import make_provenance
from ...core.result import EngineResult
from .params import DCGANSampleParams


def run_sample_dcgan(
    params: DCGANSampleParams, *, cancel: CancelToken | None = None
) -> PyGenerator[Progress, None, EngineResult]:
    """Generate ``params.count`` slices; sample ``i`` depends only on ``params.seed + i``.

    The generator runs in eval mode (BatchNorm with its running statistics), so a
    sample does not depend on the batch it is generated in.

    Returns
    -------
    EngineResult
        ``data`` ``(n, R, R)``: the training data's dtype and range with
        ``window="training"`` (float32 in ``[0, 1]`` with ``window="unit"``); provenance
        engine ``"sample-dcgan"``.

    Raises
    ------
    ModelNotAvailableError
        Without ``checkpoint`` (DCGAN ships no default generator).
    """
    import torch

    from ...core.device import resolve_device
    from ...core.stack import Window
    from .train import load_dcgan

    if not params.generator:
        raise ModelNotAvailableError(
            "no DCGAN generator given: train one on your volume with the training method "
            "'dcgan' and run again with generator=RUN_DIR (its output folder)",
            options=["generator"],
        )
    device = resolve_device(params.device)
    G, _, record = load_dcgan(params.generator, device)
    G.eval().requires_grad_(False)
    metadata = record["metadata"]
    target = Window(**metadata["window"]) if params.window == "training" else None
    n, seed = params.count, params.seed
    chunks = []
    with torch.no_grad():
        for start in range(0, n, params.batch_size):
            check_cancelled(cancel)
            indices = range(start, min(start + params.batch_size, n))
            z = torch.stack(
                [
                    torch.randn(G.config.z_dim, generator=torch.Generator().manual_seed(seed + i))
                    for i in indices
                ]
            ).to(device)
            images = G(z)[:, 0].float().cpu().numpy()
            chunks.append(((images + 1.0) / 2.0).clip(0.0, 1.0).astype(np.float32))
            yield Progress(indices[-1] + 1, n, f"sample {indices[-1] + 1}/{n}")
    unit = np.concatenate(chunks)
    data = target.from_unit(unit) if target is not None else unit
    provenance = make_provenance(
        "sample-dcgan",
        {**params.to_dict(), "device": device},
        model=str(record["path"]),
        seed=[seed + i for i in range(n)],
        extra={
            "window": target.as_dict() if target is not None else None,
            "generator_step": metadata.get("step"),
            "generator_config": metadata.get("config"),
        },
    )
    return EngineResult(data=data, provenance=provenance)
