"""Tiny StyleGAN networks and volumes shared by the ``test_stylegan_*`` files (CPU, fast)."""

from __future__ import annotations

import numpy as np

#: A generator/discriminator small enough for a training step in ~0.1 s on one core.
TINY_CONFIG_KWARGS = {
    "resolution": 16,
    "z_dim": 16,
    "w_dim": 16,
    "mapping_layers": 2,
    "channel_base": 128,
    "channel_max": 16,
}


def tiny_config():
    """The tiny :class:`StyleGANConfig`."""
    from napari_scigen.engines.stylegan.networks import StyleGANConfig

    return StyleGANConfig(**TINY_CONFIG_KWARGS)


def tiny_generator(seed: int = 1):
    """A randomly initialised tiny generator in eval mode."""
    from napari_scigen.engines.stylegan.checkpoint import build_networks

    generator, _ = build_networks(tiny_config(), seed=seed, discriminator=False)
    return generator.eval().requires_grad_(False)


def tiny_params(**overrides):
    """Training parameters of the tiny network for a few CPU steps."""
    from napari_scigen.engines.stylegan.params import StyleGANTrainParams

    values = {
        **TINY_CONFIG_KWARGS,
        "train_steps": 4,
        "batch_size": 4,
        "sample_every": 2,
        "checkpoint_every": 2,
        "device": "cpu",
        "seed": 3,
    }
    return StyleGANTrainParams(**{**values, **overrides})


def textured_volume(shape=(6, 24, 24), dtype=np.uint16, seed: int = 0) -> np.ndarray:
    """A smooth random texture that changes slowly along z, scaled to ``dtype``."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.standard_normal(shape), sigma=(1.5, 2.0, 2.0))
    field = (field - field.min()) / (field.max() - field.min())
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        low, high = info.min + (info.max - info.min) * 0.1, info.min + (info.max - info.min) * 0.9
        return np.rint(low + field * (high - low)).astype(dtype)
    return field.astype(dtype)
