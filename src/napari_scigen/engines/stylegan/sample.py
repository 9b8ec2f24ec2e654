"""New random slices and latent walks from a StyleGAN generator."""

from __future__ import annotations

from collections.abc import Generator as PyGenerator

import numpy as np

from ...core.progress import CancelToken, Progress, check_cancelled
from ...core.provenance import make_provenance
from ...core.result import EngineResult
from ...core.stack import Window
from ...core.validation import InvalidInputError


def _window_for(window, metadata: dict) -> Window | None:
    if isinstance(window, Window):
        return window
    if window == "training":
        return Window(**metadata["window"]) if metadata.get("window") else None
    if window is None:
        return None
    raise InvalidInputError(f"window must be 'training', None or a Window, got {window!r}")


def run_sample_slices(
    generator=None,
    n: int = 8,
    seed: int = 0,
    truncation_psi: float = 0.7,
    *,
    noise_mode: str = "random",
    window: Window | str | None = "training",
    batch_size: int = 16,
    device: str = "auto",
    cancel: CancelToken | None = None,
) -> PyGenerator[Progress, None, EngineResult]:
    """Generate ``n`` new random slices.

    Sample ``i`` depends only on ``seed + i`` (not on ``n`` or ``batch_size``).

    Parameters
    ----------
    generator : None, path or Generator
        ``None`` for the embedded default (see :func:`.default.resolve_generator`).
    n : int
        Number of slices.
    seed : int
        Base seed.
    truncation_psi : float
        Truncation trick strength (1: none, lower: more typical, less varied).
    noise_mode : str
        ``"random"`` (seeded per sample), ``"const"`` or ``"none"``.
    window : Window, "training" or None
        Map samples to data values: ``"training"`` uses the window recorded when
        the generator was trained (uint16 etc.); ``None`` returns float32 in ``[0, 1]``.
    batch_size : int
        Samples generated together.
    device : str
        Torch device request.
    cancel : CancelToken, optional
        Checked between batches.

    Returns
    -------
    EngineResult
        ``data`` ``(n, R, R)``; provenance engine ``"sample-stylegan"``.
    """
    import torch

    from ...core.device import resolve_device
    from .default import resolve_generator

    if int(n) < 1 or int(batch_size) < 1:
        raise InvalidInputError(
            f"n and batch_size must be at least 1, got n={n}, batch_size={batch_size}"
        )
    if noise_mode not in ("random", "const", "none"):
        raise InvalidInputError(
            f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}"
        )
    device = resolve_device(device)
    G, metadata, name = resolve_generator(generator, device)
    target = _window_for(window, metadata)
    cfg = G.config
    chunks = []
    with torch.no_grad():
        for start in range(0, int(n), int(batch_size)):
            check_cancelled(cancel)
            indices = range(start, min(start + int(batch_size), int(n)))
            gens = [torch.Generator().manual_seed(int(seed) + i) for i in indices]
            z = torch.stack([torch.randn(cfg.z_dim, generator=g) for g in gens]).to(device)
            ws = G.mapping(z, truncation_psi)
            if noise_mode == "random":
                per_sample = [G.synthesis.make_noise(1, generator=g, device=device) for g in gens]
                noise = [torch.cat(layer) for layer in zip(*per_sample, strict=True)]
                images = G.synthesis(ws, noise=noise)
            else:
                images = G.synthesis(ws, noise_mode=noise_mode)
            chunks.append(((images[:, 0].float().cpu().numpy() + 1.0) / 2.0).clip(0.0, 1.0))
            yield Progress(indices[-1] + 1, int(n), f"sample {indices[-1] + 1}/{n}")
    unit = np.concatenate(chunks).astype(np.float32)
    data = target.from_unit(unit) if target is not None else unit
    provenance = make_provenance(
        "sample-stylegan",
        {"n": int(n), "truncation_psi": truncation_psi, "noise_mode": noise_mode, "device": device},
        model=name,
        seed=[int(seed) + i for i in range(int(n))],
        extra={
            "window": target.as_dict() if target is not None else None,
            "generator_step": metadata.get("step"),
        },
    )
    return EngineResult(data=data, provenance=provenance)


def latent_walk(
    generator,
    seed_a: int,
    seed_b: int,
    steps: int,
    *,
    truncation_psi: float = 0.7,
    slerp: bool = True,
    noise_mode: str = "const",
    device: str = "cpu",
) -> np.ndarray:
    """Frames of a walk between the latents of two seeds (for a latent-walk viewer).

    Parameters
    ----------
    generator : None, path or Generator
        ``None`` for the embedded default.
    seed_a, seed_b : int
        Seeds of the start and end latents ``z`` (same seeding as
        :func:`run_sample_slices`, so frame 0 matches its sample of ``seed_a``
        up to noise).
    steps : int
        Number of frames (``>= 2``), end points included.
    truncation_psi : float
        Truncation trick strength.
    slerp : bool
        Spherical interpolation of ``z`` (``True``) or linear interpolation in W.
    noise_mode : str
        ``"const"`` keeps the noise fixed along the walk (smooth); ``"none"`` drops it.
    device : str
        Torch device request.

    Returns
    -------
    numpy.ndarray
        float32 ``(steps, R, R)`` in ``[0, 1]``.
    """
    import torch

    from ...core.device import resolve_device
    from .default import resolve_generator
    from .latents import lerp
    from .latents import slerp as slerp_fn

    if int(steps) < 2:
        raise InvalidInputError(f"steps must be at least 2, got {steps}")
    if noise_mode not in ("const", "none"):
        raise InvalidInputError(
            f"noise_mode must be 'const' or 'none' for a smooth walk, got {noise_mode!r}"
        )
    G, _, _ = resolve_generator(generator, resolve_device(device))
    dev = G.w_avg.device
    z_a, z_b = (
        torch.randn(G.config.z_dim, generator=torch.Generator().manual_seed(int(s))).to(dev)
        for s in (seed_a, seed_b)
    )
    fractions = torch.linspace(0.0, 1.0, int(steps)).tolist()
    with torch.no_grad():
        if slerp:
            z = torch.stack([slerp_fn(z_a, z_b, t) for t in fractions])
            ws = G.mapping(z, truncation_psi)
        else:
            ends = G.mapping(torch.stack([z_a, z_b]), truncation_psi)
            ws = torch.stack([lerp(ends[0], ends[1], t) for t in fractions])
        images = G.synthesis(ws, noise_mode=noise_mode)
    return ((images[:, 0].float().cpu().numpy() + 1.0) / 2.0).clip(0.0, 1.0).astype(np.float32)
