"""The embedded default generator: a small StyleGAN2 trained on the rock phantom.

It ships inside the package (``napari_scigen/data/stylegan_rock64.safetensors`` +
``.json``) so the StyleGAN engine works offline out of the box. It models 64x64
crops of :func:`napari_scigen.core.phantoms.make_rock_volume` slices; larger
slices are handled by tiling. How it was trained is recorded in its JSON
(``default_generator`` key) and in ``docs/stylegan_training.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .params import StyleGANTrainParams

#: File name stem of the embedded generator in ``napari_scigen/data``.
DEFAULT_NAME = "stylegan_rock64"

#: Arguments of ``make_rock_volume`` for the training volume.
DEFAULT_PHANTOM: dict[str, Any] = {"shape": (64, 256, 256), "seed": 0}

#: Training parameters and architecture of the embedded generator (sized for CPU
#: training and inference; ``train_steps`` is an upper bound: the run is stopped by wall
#: time, see the JSON for the step actually reached).
DEFAULT_TRAIN_PARAMS = StyleGANTrainParams(
    train_steps=20_000,
    resolution=64,
    z_dim=128,
    w_dim=128,
    mapping_layers=4,
    channel_base=2048,
    channel_max=64,
    batch_size=16,
    learning_rate=0.0025,
    augment=True,
    crop=True,
    axes=("z",),
    sample_every=100,
    checkpoint_every=100,
    keep_checkpoints=2,
    seed=0,
    device="cpu",
)

#: Architecture of the embedded generator.
DEFAULT_CONFIG = DEFAULT_TRAIN_PARAMS.network_config()


def default_generator_path() -> Path:
    """Path of the embedded generator's ``.safetensors`` file (its ``.json`` is beside it)."""
    return Path(__file__).resolve().parents[2] / "data" / f"{DEFAULT_NAME}.safetensors"


def load_default_generator(device: str = "cpu"):
    """Load the embedded default generator (cached per device).

    Parameters
    ----------
    device : str
        Torch device string.

    Returns
    -------
    (Generator, dict)
        The generator (eval mode, no gradients) and its metadata.

    Raises
    ------
    ModelNotAvailableError
        If the package was installed without its data files.
    """
    from ...core.models import MODEL_CACHE, ModelNotAvailableError
    from .checkpoint import load_generator

    path = default_generator_path()
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise ModelNotAvailableError(
            f"the embedded StyleGAN generator is missing ({path}); reinstall napari-scigen "
            "with its package data, or pass generator=<checkpoint or .safetensors> explicitly"
        )
    return MODEL_CACHE.get(
        ("stylegan", str(path), device, "float32"), lambda: load_generator(path, device)
    )


def resolve_generator(generator=None, device: str = "cpu"):
    """Turn a generator argument into ``(Generator, metadata, name)``.

    Parameters
    ----------
    generator : None, path or Generator
        ``None``: the embedded default; a path: an exported ``.safetensors``,
        a checkpoint or a run directory; a :class:`Generator` instance: used as is
        (copied when on another device; never modified).
    device : str
        Torch device (instances are moved there).

    Returns
    -------
    (Generator, dict, str)
        The generator, its metadata (empty for bare instances) and a name for
        provenance.
    """
    import copy
    import os

    import torch

    from .checkpoint import load_generator
    from .networks import Generator

    if generator is None:
        model, metadata = load_default_generator(device)
        return model, metadata, f"embedded:{DEFAULT_NAME}"
    if isinstance(generator, Generator):
        # Never modify the caller's module: copy it when it lives on another device.
        if generator.w_avg.device != torch.device(device):
            generator = copy.deepcopy(generator).to(device)
        return generator, {}, "in-memory generator"
    if isinstance(generator, (str, os.PathLike)):
        from ...core.models import MODEL_CACHE

        path = Path(generator).expanduser().resolve()
        if not path.exists():
            raise FileNotFoundError(
                f"StyleGAN generator {path} does not exist (leave it empty for the embedded one)"
            )
        # The modification time is part of the key: a run directory that gained a
        # newer checkpoint, or an overwritten file, is loaded again.
        key = ("stylegan", str(path), path.stat().st_mtime_ns, device, "float32")
        model, metadata = MODEL_CACHE.get(key, lambda: load_generator(path, device))
        return model, metadata, str(path)
    raise TypeError(
        f"generator must be None, a path or a Generator, got {type(generator).__name__}"
    )
