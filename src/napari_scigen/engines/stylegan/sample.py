"""New random slices and latent walks from a StyleGAN generator (task ``sample``)."""

from __future__ import annotations

from collections.abc import Generator as PyGenerator

import numpy as np

from ...core.progress import CancelToken, Progress, check_cancelled
from ...core.provenance import make_provenance
from ...core.result import EngineResult
from ...core.stack import Window
from .params import StyleGANSampleParams, StyleGANWalkParams


def _training_window(metadata: dict) -> Window | None:
    """The intensity window recorded when the generator was trained, if any."""
    return Window(**metadata["window"]) if metadata.get("window") else None


def _to_unit(images) -> np.ndarray:
    """Generator output ``(N, 1, R, R)`` in ``[-1, 1]`` as float32 ``(N, R, R)`` in ``[0, 1]``."""
    return ((images[:, 0].float().cpu().numpy() + 1.0) / 2.0).clip(0.0, 1.0).astype(np.float32)


def run_sample_slices(
    params: StyleGANSampleParams, *, cancel: CancelToken | None = None
) -> PyGenerator[Progress, None, EngineResult]:
    """Generate ``params.count`` new random slices.

    Sample ``i`` depends only on ``params.seed + i`` (not on ``n`` or ``batch_size``).

    Parameters
    ----------
    params : StyleGANSampleParams
        Generator, count, seed, truncation, noise, window, batch size, device.
    cancel : CancelToken, optional
        Checked between batches.

    Yields
    ------
    Progress
        One event per batch.

    Returns
    -------
    EngineResult
        ``data`` ``(n, R, R)``: the training data's dtype and range with
        ``window="training"`` (float32 in ``[0, 1]`` when the generator records no
        window, or with ``window="unit"``); provenance engine ``"sample-stylegan"``.
    """
    import torch

    from ...core.device import resolve_device
    from .default import resolve_generator

    device = resolve_device(params.device)
    G, metadata, name = resolve_generator(params.generator, device)
    target = _training_window(metadata) if params.window == "training" else None
    n, batch_size, seed = params.count, params.batch_size, params.seed
    chunks = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            check_cancelled(cancel)
            indices = range(start, min(start + batch_size, n))
            gens = [torch.Generator().manual_seed(seed + i) for i in indices]
            z = torch.stack([torch.randn(G.config.z_dim, generator=g) for g in gens]).to(device)
            ws = G.mapping(z, params.truncation_psi)
            if params.noise == "random":
                per_sample = [G.synthesis.make_noise(1, generator=g, device=device) for g in gens]
                noise = [torch.cat(layer) for layer in zip(*per_sample, strict=True)]
                images = G.synthesis(ws, noise=noise)
            else:
                images = G.synthesis(ws, noise_mode=params.noise)
            chunks.append(_to_unit(images))
            yield Progress(indices[-1] + 1, n, f"sample {indices[-1] + 1}/{n}")
    unit = np.concatenate(chunks)
    data = target.from_unit(unit) if target is not None else unit
    provenance = make_provenance(
        "sample-stylegan",
        {**params.to_dict(), "device": device},
        model=name,
        seed=[seed + i for i in range(n)],
        extra={
            "window": target.as_dict() if target is not None else None,
            "generator_step": metadata.get("step"),
            "generator_config": G.config.to_dict(),
        },
    )
    return EngineResult(data=data, provenance=provenance)


def latent_walk(
    generator,
    seed_a: int,
    seed_b: int,
    frames: int,
    *,
    truncation_psi: float = 0.7,
    slerp: bool = True,
    noise_mode: str = "const",
) -> np.ndarray:
    """Frames of a walk between the latents of two seeds (the numbers behind
    :func:`run_latent_walk`).

    Parameters
    ----------
    generator : Generator
        A loaded generator (its device is used).
    seed_a, seed_b : int
        Seeds of the start and end latents ``z`` (same seeding as
        :func:`run_sample_slices`, so frame 0 matches its sample of ``seed_a``
        up to noise).
    frames : int
        Number of frames (``>= 2``), end points included.
    truncation_psi : float
        Truncation trick strength.
    slerp : bool
        Spherical interpolation of ``z`` (``True``) or linear interpolation in W.
    noise_mode : str
        ``"const"`` keeps the noise fixed along the walk (smooth); ``"none"`` drops it.

    Returns
    -------
    numpy.ndarray
        float32 ``(frames, R, R)`` in ``[0, 1]``.
    """
    import torch

    from .latents import lerp
    from .latents import slerp as slerp_fn

    device = generator.w_avg.device
    z_a, z_b = (
        torch.randn(generator.config.z_dim, generator=torch.Generator().manual_seed(int(s))).to(
            device
        )
        for s in (seed_a, seed_b)
    )
    fractions = torch.linspace(0.0, 1.0, int(frames)).tolist()
    with torch.no_grad():
        if slerp:
            z = torch.stack([slerp_fn(z_a, z_b, t) for t in fractions])
            ws = generator.mapping(z, truncation_psi)
        else:
            ends = generator.mapping(torch.stack([z_a, z_b]), truncation_psi)
            ws = torch.stack([lerp(ends[0], ends[1], t) for t in fractions])
        images = generator.synthesis(ws, noise_mode=noise_mode)
    return _to_unit(images)


def run_latent_walk(
    params: StyleGANWalkParams, *, cancel: CancelToken | None = None
) -> PyGenerator[Progress, None, EngineResult]:
    """Render a smooth walk through the latent space, one slice per frame.

    Parameters
    ----------
    params : StyleGANWalkParams
        Generator, the two seeds, number of frames, truncation, slerp, noise, device.
    cancel : CancelToken, optional
        Checked before and after rendering.

    Returns
    -------
    EngineResult
        ``data`` ``(frames, R, R)`` in the grey values of :func:`run_sample_slices`: the
        training data's dtype and range when the generator records its window (float32
        in ``[0, 1]`` otherwise); provenance engine ``"latent-walk-stylegan"`` with the
        generator, both seeds and the window.
    """
    from ...core.device import resolve_device
    from .default import resolve_generator

    check_cancelled(cancel)
    device = resolve_device(params.device)
    G, metadata, name = resolve_generator(params.generator, device)
    yield Progress(
        0,
        1,
        f"rendering {params.frames} frames from seed {params.seed_a} to seed {params.seed_b}",
    )
    # the same grey values as samples: the training data's window when the generator
    # records one (a params ``window="unit"``, where declared, keeps [0, 1])
    target = (
        _training_window(metadata) if getattr(params, "window", "training") == "training" else None
    )
    unit = latent_walk(
        G,
        params.seed_a,
        params.seed_b,
        params.frames,
        truncation_psi=params.truncation_psi,
        slerp=params.slerp,
        noise_mode=params.noise,
    )
    data = target.from_unit(unit) if target is not None else unit
    check_cancelled(cancel)
    yield Progress(1, 1, "done")
    provenance = make_provenance(
        "latent-walk-stylegan",
        {**params.to_dict(), "device": device},
        model=name,
        seed=[params.seed_a, params.seed_b],
        extra={
            "window": target.as_dict() if target is not None else None,
            "generator_step": metadata.get("step"),
            "generator_config": G.config.to_dict(),
        },
    )
    return EngineResult(data=data, provenance=provenance)
